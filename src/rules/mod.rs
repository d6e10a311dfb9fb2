//! Rules: load and validate, compile, evaluate.
//!
//! - [`load`]: rule files -> [`RuleSet`], every problem as `path:line:column`.
//! - [`yaml`]: the position-carrying YAML tree validation reads.
//! - [`path`], [`condition`], [`script`]: the compiled pieces of a condition.
//! - [`engine`]: evaluation of a batch: derived fields, windows, throttles.
//! - [`state`], [`memory`]: what the engine remembers, and its in-memory form.
//! - [`project`]: parsing a submission down to the fields a rule set reads.
//! - [`testfile`]: rule unit tests (`*.test.yaml`).
pub mod condition;
pub mod engine;
pub mod input;
pub mod load;
pub mod memory;
pub mod path;
pub mod project;
pub mod rule;
pub mod script;
pub mod shipped;
pub mod state;
pub mod testfile;
pub mod time;
pub mod yaml;

pub use condition::ConditionTrace;
pub use engine::{Alert, BatchOutcome, Rejected, RuleError, RuleSet, SubmissionOutcome};
pub use load::{Diagnostic, load_path, load_sources};
pub use memory::MemoryState;
pub use project::Projection;
pub use rule::{Mode, Rule, Severity};
pub use script::ScriptLimits;

//! Rhai scripts in rules: one sandboxed engine, ASTs compiled once.
//!
//! A script is written by a rule author, not by us, so it runs on a budget:
//! a cap on operations, call depth, string/array/map sizes and a wall-clock
//! deadline; `eval` and modules are switched off; `print`/`debug` go to the
//! log, never to standard output (which carries `eval`'s alerts). A script
//! that fails never matches: the error goes back to the engine, which
//! reports it per rule and keeps the other rules running.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{AST, Dynamic, Engine, EvalAltResult, Scope};
use serde_json::Value;

/// Limits every script runs under.
#[derive(Debug, Clone, Copy)]
pub struct ScriptLimits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    pub deadline: Duration,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        ScriptLimits {
            max_operations: 100_000,
            max_call_levels: 32,
            max_string_size: 64 * 1024,
            max_array_size: 10_000,
            max_map_size: 10_000,
            deadline: Duration::from_millis(50),
        }
    }
}

thread_local! {
    // The deadline of the script running on this thread; `on_progress` is a
    // shared callback, so the per-run instant travels through here.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Checking the clock on every operation would dominate short scripts.
const CLOCK_EVERY_OPS: u64 = 256;

/// The sandboxed Rhai engine shared by all scripts of a rule set.
pub struct ScriptEngine {
    engine: Engine,
    limits: ScriptLimits,
}

impl std::fmt::Debug for ScriptEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptEngine")
            .field("limits", &self.limits)
            .finish()
    }
}

/// A compile error with its position inside the script (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct CompileError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl ScriptEngine {
    pub fn new(limits: ScriptLimits) -> ScriptEngine {
        let mut engine = Engine::new();
        engine.set_max_operations(limits.max_operations);
        engine.set_max_call_levels(limits.max_call_levels);
        engine.set_max_string_size(limits.max_string_size);
        engine.set_max_array_size(limits.max_array_size);
        engine.set_max_map_size(limits.max_map_size);
        engine.set_max_expr_depths(64, 32);
        engine.disable_symbol("eval");
        engine.disable_symbol("import");
        engine.disable_symbol("export");
        engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
        engine.on_print(|text| tracing::info!(target: "kyc_sentinel::rules::script", "{text}"));
        engine.on_debug(|text, source, pos| {
            tracing::debug!(target: "kyc_sentinel::rules::script", source, %pos, "{text}")
        });
        engine.on_progress(|ops| {
            if ops % CLOCK_EVERY_OPS == 0 {
                let late = DEADLINE
                    .with(|d| d.get())
                    .is_some_and(|d| Instant::now() > d);
                if late {
                    return Some(Dynamic::from("deadline"));
                }
            }
            None
        });
        // A path a script reads through a missing map (`s.aml.matches` when
        // `aml` is absent) reads as `()` instead of failing.
        engine.register_indexer_get(|_: &mut (), _: &str| Dynamic::UNIT);
        // Rhai has no dates; rules about document expiry and stuck reviews
        // need the distance between two timestamps.
        engine.register_fn("days_between", |a: &str, b: &str| between(a, b, 86_400.0));
        engine.register_fn("hours_between", |a: &str, b: &str| between(a, b, 3_600.0));
        for name in ["days_between", "hours_between"] {
            // Either side missing (`()`) gives `()`, so a script can test for it.
            engine.register_fn(name, |_: (), _: &str| Dynamic::UNIT);
            engine.register_fn(name, |_: &str, _: ()| Dynamic::UNIT);
            engine.register_fn(name, |_: (), _: ()| Dynamic::UNIT);
        }
        ScriptEngine { engine, limits }
    }

    pub fn limits(&self) -> ScriptLimits {
        self.limits
    }

    /// Compiles a script once; the result is run for every submission.
    pub fn compile(&self, source: &str) -> Result<Script, CompileError> {
        match self.engine.compile(source) {
            Ok(ast) => Ok(Script(Arc::new(ScriptInner {
                source: source.to_string(),
                ast,
            }))),
            Err(err) => Err(CompileError {
                line: err.position().line().unwrap_or(1) as u32,
                column: err.position().position().unwrap_or(1) as u32,
                message: err.err_type().to_string(),
            }),
        }
    }

    /// Binds a submission (with `derived` inside) as the `s` map scripts see.
    pub fn bind(&self, submission: &Value, derived: &Value) -> Result<Dynamic, String> {
        let mut map: rhai::Map = match submission {
            Value::Object(_) => rhai::serde::to_dynamic(submission)
                .map_err(|e| format!("cannot bind the submission: {e}"))?
                .cast::<rhai::Map>(),
            _ => rhai::Map::new(),
        };
        let derived = rhai::serde::to_dynamic(derived)
            .map_err(|e| format!("cannot bind the derived fields: {e}"))?;
        map.insert("derived".into(), derived);
        Ok(Dynamic::from_map(map).into_shared())
    }

    fn run(&self, script: &Script, s: &Dynamic) -> Result<bool, String> {
        let mut scope = Scope::new();
        scope.push_constant_dynamic("s", s.clone());
        DEADLINE.with(|d| d.set(Some(Instant::now() + self.limits.deadline)));
        let result = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut scope, &script.0.ast);
        DEADLINE.with(|d| d.set(None));
        match result {
            Ok(v) => v
                .as_bool()
                .map_err(|type_name| format!("script returned {type_name}, not a boolean")),
            Err(err) => Err(self.describe(*err)),
        }
    }

    fn describe(&self, err: EvalAltResult) -> String {
        match err {
            EvalAltResult::ErrorTerminated(_, pos) => format!(
                "script ran past its deadline of {:?} ({pos})",
                self.limits.deadline
            ),
            EvalAltResult::ErrorTooManyOperations(pos) => format!(
                "script exceeded its budget of {} operations ({pos})",
                self.limits.max_operations
            ),
            EvalAltResult::ErrorStackOverflow(pos) => format!(
                "script exceeded the maximum call depth of {} ({pos})",
                self.limits.max_call_levels
            ),
            other => other.to_string(),
        }
    }
}

/// `b - a` in units of `unit` seconds; `()` when either is no timestamp.
fn between(a: &str, b: &str, unit: f64) -> Dynamic {
    match (read_time(a), read_time(b)) {
        (Some(a), Some(b)) => {
            Dynamic::from_float((b - a).num_milliseconds() as f64 / 1000.0 / unit)
        }
        _ => Dynamic::UNIT,
    }
}

/// A timestamp (Argos or RFC 3339) or a date (`YYYY-MM-DD`, midnight UTC).
fn read_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    super::time::parse_timestamp(text).or_else(|| {
        chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|n| n.and_utc())
    })
}

struct ScriptInner {
    source: String,
    ast: AST,
}

/// A compiled script, cheap to clone.
#[derive(Clone)]
pub struct Script(Arc<ScriptInner>);

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Script").field(&self.0.source).finish()
    }
}

impl Script {
    pub fn source(&self) -> &str {
        &self.0.source
    }
}

/// Per-submission script context: binds the submission on first use (many
/// submissions meet no script at all) and collects script errors.
pub struct ScriptCtx<'a> {
    engine: &'a ScriptEngine,
    submission: &'a Value,
    derived: &'a Value,
    bound: Option<Result<Dynamic, String>>,
    /// (script source, error message), drained by the engine after each rule.
    pub errors: Vec<(String, String)>,
}

impl<'a> ScriptCtx<'a> {
    pub fn new(engine: &'a ScriptEngine, submission: &'a Value, derived: &'a Value) -> Self {
        ScriptCtx {
            engine,
            submission,
            derived,
            bound: None,
            errors: Vec::new(),
        }
    }

    pub fn run(&mut self, script: &Script) -> bool {
        let bound = self
            .bound
            .get_or_insert_with(|| self.engine.bind(self.submission, self.derived));
        let outcome = match bound {
            Ok(s) => self.engine.run(script, s),
            Err(e) => Err(e.clone()),
        };
        match outcome {
            Ok(b) => b,
            Err(message) => {
                self.errors.push((script.source().to_string(), message));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(src: &str, s: Value) -> Result<bool, String> {
        let engine = ScriptEngine::new(ScriptLimits::default());
        let script = engine.compile(src).map_err(|e| e.message)?;
        let derived = json!({"applicant_emails": 3});
        let bound = engine.bind(&s, &derived)?;
        engine.run(&script, &bound)
    }

    #[test]
    fn reads_submission_and_derived() {
        let s = json!({"kyc": {"result": "rejected", "attempts": [{"livenessScore": 40}]}});
        assert_eq!(run(r#"s.kyc.result == "rejected""#, s.clone()), Ok(true));
        assert_eq!(run("s.derived.applicant_emails > 2", s.clone()), Ok(true));
        assert_eq!(
            run("s.kyc.attempts[0].livenessScore < 50", s.clone()),
            Ok(true)
        );
        // Missing keys read as (), even through a missing map.
        assert_eq!(run("s.aml == ()", s.clone()), Ok(true));
        assert_eq!(run("s.aml.risk_level_summary == ()", s.clone()), Ok(true));
        assert_eq!(
            run(
                r#"days_between("2024-05-01-00-00-00-000", "2024-05-31") == 30.0"#,
                s.clone()
            ),
            Ok(true)
        );
        assert_eq!(
            run(
                r#"hours_between("2024-05-01T00:00:00Z", "2024-05-01T12:00:00Z") == 12.0"#,
                s.clone()
            ),
            Ok(true)
        );
        assert_eq!(
            run(r#"days_between(s.nothing, "2024-05-31") == ()"#, s.clone()),
            Ok(true)
        );
        assert_eq!(
            run(r#"days_between("soon", "2024-05-31") == ()"#, s.clone()),
            Ok(true)
        );
    }

    #[test]
    fn failures_are_errors() {
        let s = json!({});
        assert_eq!(
            run("42", s.clone()),
            Err("script returned i64, not a boolean".into())
        );
        let e = run("loop { }", s.clone()).unwrap_err();
        assert!(
            e.starts_with("script exceeded its budget of 100000 operations"),
            "{e}"
        );
        let e = run("fn f(x) { f(x + 1) } f(0)", s.clone()).unwrap_err();
        assert!(
            e.starts_with("script exceeded the maximum call depth of 32"),
            "{e}"
        );
        let engine = ScriptEngine::new(ScriptLimits::default());
        let err = engine.compile("eval(\"1\")").unwrap_err();
        assert!(err.message.contains("eval"), "{err:?}");
        let err = engine.compile("import \"x\" as y; true").unwrap_err();
        assert!(err.message.contains("import"), "{err:?}");
    }

    #[test]
    fn deadline_stops_a_slow_script() {
        let engine = ScriptEngine::new(ScriptLimits {
            max_operations: 0, // unlimited: only the clock can stop it
            deadline: Duration::from_millis(20),
            ..ScriptLimits::default()
        });
        let script = engine.compile("loop { }").unwrap();
        let bound = engine.bind(&json!({}), &json!({})).unwrap();
        let start = Instant::now();
        let e = engine.run(&script, &bound).unwrap_err();
        assert!(e.starts_with("script ran past its deadline of 20ms"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}

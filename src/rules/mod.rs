//! Rules: load and validate, compile, evaluate.
pub mod condition;
pub mod path;
pub mod script;
pub mod state;
pub mod yaml;

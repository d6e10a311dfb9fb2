//! Rules: load and validate, compile, evaluate.
pub mod state;

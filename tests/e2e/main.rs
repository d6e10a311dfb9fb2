//! Slow process-level tests (the demo, the daemon under SIGKILL), their own
//! binary so `cargo test --test it` stays quick while iterating.

#[path = "../it/common/mod.rs"]
mod common;

mod console_browser;
mod daemon_process;
mod day_one;
mod demo;
mod ha;
mod hardening_delivery;
mod shadow;

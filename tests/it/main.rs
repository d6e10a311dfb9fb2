//! In-process and CLI integration tests, one binary (each test crate links the
//! whole library; one binary keeps a fresh-clone CI build short).
//! Each module is what used to be `tests/<name>.rs`.

mod architecture;
mod argos_client;
mod argos_crypto;
mod argos_model;
mod audit;
mod backtest;
mod common;
mod config_errors;
mod console;
mod console_four_eyes;
mod console_health;
mod dayone_backfill;
mod dayone_evidence;
mod dayone_reload;
mod differential;
mod digest;
mod escalation;
mod hardening_argos;
mod hardening_delivery;
mod hardening_listeners;
mod ingest_daemon;
mod ingest_endpoint;
mod lifecycle;
mod messages;
mod notify_cli;
mod notify_common;
mod notify_email;
mod notify_pipeline;
mod notify_routing;
mod notify_templates;
mod notify_webhook;
mod pg_store;
mod pipeline;
mod reload;
mod rules_check;
mod rules_determinism;
mod rules_doc;
mod rules_engine;
mod rules_eval;
mod rules_operators;
mod rules_test;
mod simulator_http;
mod store;
pub mod store_conformance;
mod telemetry;

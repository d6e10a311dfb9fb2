//! kyc-sentinel: a compliance rules and alerting engine for Argos Identity.
//!
//! A submission travels through the modules below in this order; data flows
//! one way, and only the edges (client, store, notifiers) do I/O.
//!
//! - [`argos`]: the Argos submission model (typed view beside the raw JSON),
//!   the REST client (pagination, retries, rate limit) and encrypted mode.
//! - [`simulator`]: a faithful local Argos API, for tests, the demo and staging.
//! - [`rules`]: rule files -> compiled rule set -> pure evaluation with
//!   windows, throttles and derived fields; the `check`, `eval`, `test` commands.
//! - [`store`]: the durable state store (SQLite): cursor, seen versions,
//!   window state, alerts, outbox, audit log.
//! - [`commands`]: one module per CLI command, wiring the pieces together.
//! - [`cli`]: the clap definition of the command line.

pub mod argos;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod notify;
pub mod pipeline;
pub mod poller;
pub mod rules;
pub mod simulator;
pub mod store;
pub mod telemetry;
pub mod util;

//! kyc-sentinel: a compliance rules and alerting engine for Argos Identity.
//!
//! A submission travels through the modules below in this order; data flows
//! one way, and only the edges (client, store, notifiers) do I/O.
//!
//! - [`argos`]: the Argos submission model (typed view beside the raw JSON),
//!   the REST client (pagination, retries, rate limit) and encrypted mode.
//! - [`simulator`]: a faithful local Argos API, for tests, the demo and staging.
//! - [`ingest`]: the endpoint receiving Argos webhooks; each is a hint to
//!   fetch that submission now, through the same pipeline as a poll.
//! - [`rules`]: rule files -> compiled rule set -> pure evaluation with
//!   windows, throttles and derived fields; the `check`, `eval`, `test` commands.
//! - [`store`]: the durable state store (SQLite): cursor, seen versions,
//!   window state, alerts, outbox, audit log.
//! - [`notify`]: silences -> routing tree -> durable groups -> outbox ->
//!   receivers (log, file, email, webhook).
//! - [`templates`]: the notification templates (minijinja) and masking filters.
//! - [`digest`]: scheduled summaries (cron in a time zone, catch-up, sent once).
//! - [`commands`]: one module per CLI command, wiring the pieces together.
//! - [`cli`]: the clap definition of the command line.

pub mod api;
pub mod argos;
pub mod audit;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod digest;
pub mod ingest;
pub mod notify;
pub mod pipeline;
pub mod poller;
pub mod reload;
pub mod rules;
pub mod simulator;
pub mod store;
pub mod telemetry;
pub mod templates;
pub mod util;

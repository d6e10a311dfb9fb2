//! kyc-sentinel: a compliance rules and alerting engine for Argos Identity.
//!
//! A submission travels through the modules below in this order; data flows
//! one way, and only the edges (client, ingest, store, notifiers) do I/O.
//!
//! - [`config`]: `sentinel.yaml`: load (with `${ENV}`), validate (pure), build.
//! - [`argos`]: the Argos submission model (typed view beside the raw JSON),
//!   the REST client (pagination, retries, rate limit) and encrypted mode.
//! - [`poller`]: what to fetch each poll (the day's list, undecided
//!   submissions by id) and the API budget.
//! - [`ingest`]: the endpoint receiving Argos webhooks; each is a hint to
//!   fetch that submission now, through the same pipeline as a poll.
//! - [`pipeline`]: change detection (content hash), evaluation in event-time
//!   order, and one transaction per batch for everything it decided.
//! - [`rules`]: rule files -> compiled rule set -> pure evaluation with
//!   windows, throttles and derived fields; the `check`, `eval`, `test` commands.
//! - [`store`]: the durable state store (SQLite): seen versions, rule state,
//!   alerts, notification groups, outbox, alert lifecycle, audit log.
//! - [`notify`]: silences -> routing tree -> durable groups -> outbox ->
//!   receivers (log, file, email, webhook).
//! - [`escalation`]: steps that re-notify other receivers while nobody
//!   acknowledges an alert (a task beside the outbox).
//! - [`templates`]: the notification templates (minijinja) and masking filters.
//! - [`digest`]: scheduled summaries (cron in a time zone, catch-up, sent once).
//! - [`daemon`]: `run` and `backfill` assembled from the above; [`reload`]
//!   (SIGHUP, file watching), [`telemetry`] (logs, metrics, health) and
//!   [`api`] (acknowledge, resolve) run beside it.
//! - [`audit`]: explaining decisions from what the store recorded.
//! - [`simulator`]: a faithful local Argos API, for tests, the demo and staging;
//!   [`demo`] runs everything against it in one command.
//! - [`commands`] (one module per CLI command) and [`cli`] (the clap
//!   definition) sit on top; [`util`] holds durations and hashing.

pub mod api;
pub mod argos;
pub mod audit;
pub mod cli;
pub mod commands;
pub mod config;
pub mod console;
pub mod daemon;
pub mod demo;
pub mod digest;
pub mod escalation;
pub mod http_guard;
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

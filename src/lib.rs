//! kyc-sentinel: a compliance rules and alerting engine for Argos Identity.
//!
//! A submission travels through the modules below in this order; only the
//! edges (client, ingest, store, notifiers) do I/O. Imports go one way, from
//! each group to the groups above it and never back (`tests/it/architecture.rs`
//! parses `src/` and fails on any import cycle):
//!
//! 1. Leaves, used by anyone: [`util`] (durations, hashing, the one
//!    constant-time compare and HMAC signer), [`clock`] (the one `Clock`:
//!    wall, manual, shifted), [`http_guard`] (listener limits), [`telemetry`]
//!    (logs, metrics, health), [`links`] (signed alert links),
//!    [`outbox_payload`] (the notification an outbox row holds, group keys),
//!    [`lifecycle`] (the alert state machine, pure).
//! 2. [`argos`]: the Argos submission model (typed view beside the raw JSON),
//!    the REST client (pagination, retries, rate limit) and encrypted mode;
//!    [`rules`]: rule files -> compiled rule set -> pure evaluation with
//!    windows, throttles and derived fields.
//! 3. [`config`]: `sentinel.yaml` as plain data: load (with `${ENV}`) and
//!    pure validation of itself. It builds nothing.
//! 4. [`store`]: the durable state store behind role traits (SQLite,
//!    PostgreSQL; one backend per file tree): seen versions, rule state, alerts, notification
//!    groups, outbox, alert lifecycle, audit log.
//! 5. Built from config, working on the store: [`templates`] (minijinja,
//!    masking filters), [`notify`] (silences -> routing tree -> durable groups
//!    -> outbox -> receivers), [`escalation`] (re-notify while nobody
//!    acknowledges), [`digest`] (scheduled summaries), [`api`] (acknowledge,
//!    resolve), [`ingest`] (the Argos webhook endpoint: each webhook is a hint
//!    to fetch that submission now), [`audit`] (explaining decisions).
//! 6. [`pipeline`]: change detection, evaluation in event-time order, one
//!    transaction per batch; [`poller`]: what to fetch each poll and the API
//!    budget.
//! 7. [`compose`]: the composition root, the one place config becomes
//!    runtime objects (rules, templates, receivers, router, engine, API) and
//!    where the checks that need them complete config validation.
//! 8. [`daemon`]: `run` (one cancellation token, a task tracker, a main loop
//!    of on-poll / on-hints / on-reload) and `backfill`; [`reload`]
//!    (SIGHUP, file watching) rebuilds through [`compose`]; [`ha`] (several
//!    `run` instances on PostgreSQL: standby, or leader running the daemon);
//!    beside it, [`backtest`] (a candidate rule set replayed over stored
//!    versions) and [`shadow_report`] (shadow rules beside the rules they
//!    would replace).
//! 9. On top: [`simulator`] (a faithful local Argos API, for tests, the demo
//!    and staging), [`demo`] (everything against it in one command),
//!    [`commands`] (one module per CLI command) and [`cli`] (the clap
//!    definition).

pub mod api;
pub mod argos;
pub mod audit;
pub mod backtest;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod compose;
pub mod config;
pub mod config_status;
pub mod console;
pub mod daemon;
pub mod demo;
pub mod digest;
pub mod escalation;
pub mod ha;
pub mod http_guard;
pub mod ingest;
pub mod lifecycle;
pub mod links;
pub mod notify;
pub mod outbox_payload;
pub mod pipeline;
pub mod poller;
pub mod reload;
pub mod rules;
pub mod shadow_report;
pub mod simulator;
pub mod store;
pub mod telemetry;
pub mod templates;
pub mod util;

//! The durable state store.
//!
//! Everything the daemon must remember across restarts lives here: which
//! version of each submission was processed, the rule engine's state (windows,
//! throttles, once-per-submission marks, the applicant index), alerts, the
//! outbox and its delivery attempts, the audit log and the API budget.
//!
//! The guarantee the pipeline builds on: [`PipelineStore::commit_batch`]
//! writes a batch's versions, state changes, alerts, outbox rows and audit
//! rows in one transaction. A crash before it re-does the batch; a crash
//! after it finds the work done.
//!
//! The seam: one role trait per area, each in its own file here (pipeline,
//! outbox, meta, silences, lifecycle, lookup, digests, escalation, audit,
//! maintenance), and [`StateStore`] = all of them. Code outside this module
//! holds `Arc<dyn StateStore>` (or one role); only the composition root opens
//! a backend ([`open`]). Backends: [`SqliteStore`] (`sqlite/`, the only
//! place with SQL). Payloads, group hashes and the alert state machine are
//! built outside (`crate::outbox_payload`, `crate::lifecycle`). Every backend
//! must pass the conformance suite `tests/it/store_conformance.rs`.

pub mod audit;
pub mod cases;
pub mod digests;
pub mod escalation;
pub mod hints;
pub mod leadership;
pub mod lifecycle;
pub mod lock;
pub mod lookup;
pub mod maintenance;
pub mod meta;
pub mod migrations;
pub mod outbox;
pub mod pipeline;
pub mod postgres;
pub mod shadow;
pub mod silences;
mod sqlite;
mod sqlx_errors;
pub mod users;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};

pub use audit::{AlertRecord, AuditEntry, AuditStore, Summary, WindowMembership};
pub use digests::{DeadLetter, DigestAlert, DigestRecord, DigestStore, RuleErrorRow};
pub use escalation::EscalationStore;
pub use lifecycle::LifecycleStore;
pub use lookup::LookupStore;
pub use maintenance::MaintenanceStore;
pub use meta::MetaStore;
pub use outbox::OutboxStore;
pub use pipeline::PipelineStore;
pub use postgres::PgStore;
pub use shadow::ShadowStore;
pub use silences::SilenceStore;
pub use sqlite::SqliteStore;

/// Every role a backend fills, as one object the composition root hands out
/// (`Arc<dyn StateStore>`; a consumer may narrow it to the one role it needs,
/// e.g. `Arc<dyn OutboxStore>`). A new role (users, shadow runs...) is a
/// trait in its own file here, implemented by each backend, and added to
/// this list and to the blanket impl below.
pub trait StateStore:
    PipelineStore
    + OutboxStore
    + MetaStore
    + SilenceStore
    + LifecycleStore
    + LookupStore
    + DigestStore
    + EscalationStore
    + AuditStore
    + MaintenanceStore
    + ShadowStore
    + ConsoleRoles
    + Send
    + Sync
    + 'static
{
}

impl<T> StateStore for T where
    T: PipelineStore
        + OutboxStore
        + MetaStore
        + SilenceStore
        + LifecycleStore
        + LookupStore
        + DigestStore
        + EscalationStore
        + AuditStore
        + MaintenanceStore
        + ShadowStore
        + ConsoleRoles
        + Send
        + Sync
        + 'static
{
}

/// Every role trait, for `use crate::store::prelude::*` where a store's
/// methods are called.
pub mod prelude {
    pub use super::{
        AuditStore, DigestStore, EscalationStore, LifecycleStore, LookupStore, MaintenanceStore,
        MetaStore, OutboxStore, PipelineStore, ShadowStore, SilenceStore, StateStore,
    };
}

/// The analyst console's roles (users and sessions, case work). Every
/// backend has them; the hook stays so a backend without them could return
/// `None` and the daemon would serve the alert API without the console.
pub trait ConsoleRoles {
    fn console_roles(&self) -> Option<(Arc<dyn cases::CaseStore>, Arc<dyn users::UserStore>)> {
        None
    }
}

/// On PostgreSQL the console's writes are a person's actions, valid from any
/// instance: not fenced, so a standby serves the console too (issue 19).
impl ConsoleRoles for PgStore {
    fn console_roles(&self) -> Option<(Arc<dyn cases::CaseStore>, Arc<dyn users::UserStore>)> {
        Some((Arc::new(self.clone()), Arc::new(self.clone())))
    }
}

impl ConsoleRoles for SqliteStore {
    fn console_roles(&self) -> Option<(Arc<dyn cases::CaseStore>, Arc<dyn users::UserStore>)> {
        Some((Arc::new(self.clone()), Arc::new(self.clone())))
    }
}

/// Opens the configured store for several instances (`crate::ha`): `None`
/// when the backend is one instance's own (SQLite), which has nobody to
/// share leadership with.
pub async fn open_shared(
    cfg: &crate::config::StoreConfig,
) -> Result<Option<Arc<dyn leadership::SharedStore>>> {
    Ok(match &cfg.url {
        Some(url) => Some(Arc::new(PgStore::open(url).await?)),
        None => None,
    })
}

/// Opens the configured store read-only, for the commands that must change
/// nothing in a store a daemon may be writing (`shadow report`, `backtest`).
pub async fn open_read_only(cfg: &crate::config::StoreConfig) -> Result<Arc<dyn ShadowStore>> {
    Ok(match &cfg.url {
        Some(url) => Arc::new(PgStore::open_read_only(url).await?),
        None => Arc::new(sqlite::ReadOnlyStore::open(&cfg.path).await?),
    })
}

/// Opens the configured store (the one place that picks a backend).
/// `store.url` means PostgreSQL, otherwise `store.path` is a SQLite file.
/// With `leader_epoch` (set by `crate::ha` for the leader's engine), every
/// write and outbox claim of the engine is fenced by that epoch.
pub async fn open(cfg: &crate::config::StoreConfig) -> Result<Arc<dyn StateStore>> {
    Ok(match &cfg.url {
        Some(url) => {
            let pg = PgStore::open(url).await?;
            Arc::new(match cfg.leader_epoch {
                Some(epoch) => pg.fenced(epoch),
                None => pg,
            })
        }
        None => Arc::new(SqliteStore::open(&cfg.path).await?),
    })
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A store failure, the same shape for every backend: no driver type leaks.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path}: {message}")]
    Open { path: String, message: String },
    #[error("state store migration: {0}")]
    Migrate(String),
    /// The backend refused or failed a statement (its message, no values).
    #[error("state store: {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },
    /// A write of an instance that no longer leads (see `postgres::leader`).
    #[error(
        "state store: refused: this instance led with epoch {held}, the database is at epoch {current} (another instance took over)"
    )]
    Fenced { held: i64, current: i64 },
    #[error("state store holds a bad value in {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// A statement whose bound values do not fill its placeholders: a bug,
    /// refused before the backend (SQLite would quietly shift every later column).
    #[error(
        "state store: internal error: {statement}: {bound} values bound for {placeholders} placeholders"
    )]
    Binding {
        statement: String,
        bound: usize,
        placeholders: usize,
    },
}

/// Formats a time the way the store keeps it: text order is time order.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse_time(what: &'static str, s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt {
            what,
            detail: format!("`{s}`: {e}"),
        })
}

/// What the store knows of the last processed version of a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenVersion {
    pub content_hash: String,
    pub kyc_result: Option<String>,
}

/// A processed version, written in the batch's transaction.
#[derive(Debug, Clone)]
pub struct VersionRow {
    pub submission_id: String,
    pub content_hash: String,
    pub kyc_result: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub event_time: DateTime<Utc>,
    pub raw: String,
}

/// The rule engine's state changes are defined by the engine (one truth).
pub use crate::rules::state::StateChange;

#[derive(Debug, Clone)]
pub struct AlertRow {
    pub fingerprint: String,
    pub rule_id: String,
    pub rule_version: String,
    pub severity: String,
    pub submission_id: String,
    pub group_key: Option<String>,
    pub event_time: DateTime<Utc>,
    /// The alert as `eval` prints it (JSON).
    pub body: String,
}

/// An alert of a shadow rule, and the live rule it is a candidate for.
#[derive(Debug, Clone)]
pub struct ShadowAlertRow {
    pub alert: AlertRow,
    pub replaces: Option<String>,
}

#[derive(Debug, Clone)]
pub struct OutboxInsert {
    pub fingerprint: String,
    pub receiver: String,
    pub payload: String,
}

#[derive(Debug, Clone)]
pub struct AuditRow {
    pub kind: &'static str,
    pub submission_id: Option<String>,
    pub version_hash: Option<String>,
    pub rule_id: Option<String>,
    pub rule_version: Option<String>,
    pub fingerprint: Option<String>,
    pub detail: serde_json::Value,
}

/// The path by which a batch's submissions were fetched. Whichever commits a
/// version first found it first; the store counts versions per path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Source {
    /// The poller's list of the day or its re-fetch of undecided submissions.
    #[default]
    Poll,
    /// A fetch by id triggered by an Argos webhook.
    Webhook,
    /// `kyc-sentinel backfill`.
    Backfill,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Poll => "poll",
            Source::Webhook => "webhook",
            Source::Backfill => "backfill",
        }
    }
}

/// A routed alert joining a notification group of a receiver. The group's
/// notification is written to the outbox by [`OutboxStore::flush_groups`] once its
/// `group_wait` (or the repeat interval after its last notification) has passed.
#[derive(Debug, Clone)]
pub struct GroupInsert {
    pub receiver: String,
    pub group_key: String,
    pub fingerprint: String,
    pub group_wait: std::time::Duration,
    pub repeat_interval: std::time::Duration,
    /// The route's escalation policy: its steps start with this alert, in
    /// this transaction (see `escalation`).
    pub escalation: Option<String>,
}

/// Everything one batch writes, in one transaction.
#[derive(Debug, Default)]
pub struct BatchCommit {
    /// Which path fetched this batch (recorded per version, counted per path).
    pub source: Source,
    pub versions: Vec<VersionRow>,
    pub state: Vec<StateChange>,
    pub alerts: Vec<AlertRow>,
    /// Notifications ready now, bypassing grouping.
    pub outbox: Vec<OutboxInsert>,
    /// Routed alerts that wait in their group.
    pub notify: Vec<GroupInsert>,
    pub audit: Vec<AuditRow>,
    /// Alerts of shadow rules: recorded (mode `shadow`), never routed.
    pub shadow_alerts: Vec<ShadowAlertRow>,
    pub meta: Vec<(String, String)>,
    /// A quiet backfill's batch: its alerts are stored in state `historical`.
    pub historical: bool,
}

/// The submissions of one applicant: (submission_id, email, first event time).
pub type ApplicantRows = Vec<(String, Option<String>, DateTime<Utc>)>;

/// Window members and live throttles `(rule, key, until)`, loaded at start.
pub type OpenWindows = (
    Vec<StoredWindowMember>,
    Vec<(String, String, DateTime<Utc>)>,
);

/// The rule-engine state a batch needs, read before evaluation so the
/// evaluation itself does no I/O.
#[derive(Debug, Default)]
pub struct BatchPrefetch {
    pub results: HashMap<String, Option<String>>,
    pub fired: Vec<(String, String)>,
    /// applicant_id -> (submission_id, email, event_time)
    pub applicants: HashMap<String, ApplicantRows>,
}

/// A window member as stored (consumed ones included).
#[derive(Debug, Clone)]
pub struct StoredWindowMember {
    pub rule_id: String,
    pub key: String,
    pub submission_id: String,
    pub event_time: DateTime<Utc>,
    pub consumed: bool,
}

#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub fingerprint: String,
    pub receiver: String,
    pub payload: String,
    pub created_at: DateTime<Utc>,
    pub attempts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Try again at this time.
    Retry {
        error: String,
        next_attempt_at: DateTime<Utc>,
    },
    /// Give up: moved to the dead-letter state with this reason.
    Dead {
        error: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub pending: i64,
    pub delivered: i64,
    pub dead: i64,
}

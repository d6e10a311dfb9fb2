//! The durable state store.
//!
//! Everything the daemon must remember across restarts lives here: which
//! version of each submission was processed, the rule engine's state (windows,
//! throttles, once-per-submission marks, the applicant index), alerts, the
//! outbox and its delivery attempts, the audit log and the API budget.
//!
//! The guarantee the pipeline builds on: [`Store::commit_batch`] writes a
//! batch's versions, state changes, alerts, outbox rows and audit rows in one
//! transaction. A crash before it re-does the batch; a crash after it finds
//! the work done. The trait keeps the pipeline independent of SQLite so a
//! Postgres implementation can follow.

pub mod cases;
mod digests;
pub mod escalation;
pub mod lifecycle;
pub mod lock;
pub mod lookup;
mod sqlite;
pub mod users;

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, SecondsFormat, Utc};

pub use digests::{DeadLetter, DigestAlert, DigestRecord, RuleErrorRow};
pub use sqlite::{AlertRecord, AuditEntry, SqliteStore, Summary, WindowMembership};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("state store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("state store: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("state store holds a bad value in {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// A statement whose bound values do not fill its placeholders: a bug,
    /// refused before SQLite (which would quietly shift every later column).
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
/// notification is written to the outbox by [`Store::flush_groups`] once its
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

/// The durable state behind the pipeline. One writer: the pipeline task.
pub trait Store: Send + Sync + 'static {
    /// The last processed version of each of these submissions.
    fn seen_versions(
        &self,
        ids: &[&str],
    ) -> impl Future<Output = Result<HashMap<String, SeenVersion>>> + Send;

    /// Submissions whose last processed version is still undecided (no result,
    /// `pending` or `Incomplete`) and was created after `horizon`.
    fn undecided_since(
        &self,
        horizon: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<(String, Option<DateTime<Utc>>)>>> + Send;

    fn prefetch(
        &self,
        submission_ids: &[&str],
        applicant_ids: &[&str],
    ) -> impl Future<Output = Result<BatchPrefetch>> + Send;

    /// Window members with event time after `since`, and throttles still in force after it.
    fn open_windows(
        &self,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<OpenWindows>> + Send;

    /// The stored window members among these `(rule_id, group_key,
    /// submission_id)` triples (consumed ones included).
    fn window_memberships(
        &self,
        members: &[(&str, &str, &str)],
    ) -> impl Future<Output = Result<Vec<StoredWindowMember>>> + Send;

    /// The newest event time in the window state (where a restart resumes).
    fn latest_window_event(&self) -> impl Future<Output = Result<Option<DateTime<Utc>>>> + Send;

    fn commit_batch(&self, batch: BatchCommit) -> impl Future<Output = Result<()>> + Send;

    fn due_outbox(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<OutboxRow>>> + Send;

    /// Due rows of one receiver (each receiver drains its own queue).
    fn due_outbox_for(
        &self,
        receiver: &str,
        now: DateTime<Utc>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<OutboxRow>>> + Send;

    /// The receivers with rows due at `now`.
    fn due_receivers(&self, now: DateTime<Utc>)
    -> impl Future<Output = Result<Vec<String>>> + Send;

    fn record_delivery(
        &self,
        row: &OutboxRow,
        outcome: &DeliveryOutcome,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Several deliveries' outcomes in one transaction.
    fn record_deliveries(
        &self,
        done: &[(OutboxRow, DeliveryOutcome)],
    ) -> impl Future<Output = Result<()>> + Send;

    fn outbox_stats(&self) -> impl Future<Output = Result<OutboxStats>> + Send;

    /// Adds `n` calls to the UTC day's count and returns the new total.
    fn add_api_calls(&self, day: &str, n: u64) -> impl Future<Output = Result<u64>> + Send;

    fn get_meta(&self, key: &str) -> impl Future<Output = Result<Option<String>>> + Send;

    /// Versions found first per path ([`Source::as_str`] -> count).
    fn found_first(&self) -> impl Future<Output = Result<HashMap<String, u64>>> + Send;
    /// Writes the notification of every group due at `now` to the outbox, in
    /// one transaction with marking its alerts sent; returns how many.
    fn flush_groups(&self, now: DateTime<Utc>) -> impl Future<Output = Result<usize>> + Send;

    /// The stored JSON of these submissions (their last processed version).
    fn submissions_raw(
        &self,
        ids: &[&str],
    ) -> impl Future<Output = Result<HashMap<String, serde_json::Value>>> + Send;

    fn add_silence(
        &self,
        s: &crate::notify::silence::NewSilence,
    ) -> impl Future<Output = Result<i64>> + Send;

    /// Silences still in force at `now` (or all, with `include_expired`), newest first.
    fn silences(
        &self,
        now: DateTime<Utc>,
        include_expired: bool,
    ) -> impl Future<Output = Result<Vec<crate::notify::silence::Silence>>> + Send;

    /// Ends a silence now; false when no silence has that id.
    fn expire_silence(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;
}

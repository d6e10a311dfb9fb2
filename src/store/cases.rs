//! What the analyst console reads and writes about alerts (issue 17): the
//! inbox query, one alert's case (alert, audit trail, notifications,
//! assignment, submission), assignment, notes and audited reveals, rule
//! statistics and health facts. State changes go through the one state
//! machine in [`super::lifecycle`].

use super::lifecycle::{Action, AlertState, ChangeError, Policy};
use super::lookup::{AlertView, LookupError};
use super::silences::{NewSilence, Silence};
use super::{AlertRecord, AuditEntry, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Whose alerts the inbox shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Assignee {
    #[default]
    Anyone,
    Nobody,
    Person(String),
}

/// The inbox's filters; every field optional.
#[derive(Debug, Clone, Default)]
pub struct InboxQuery {
    /// open, acknowledged, resolved, historical, pending_approval or silenced.
    pub state: Option<String>,
    pub severity: Option<String>,
    pub rule: Option<String>,
    /// `KEY=VALUE` on the alert's labels (e.g. `team=aml`).
    pub label: Option<(String, String)>,
    pub assignee: Assignee,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Exact submission id, applicant id, user id (group key) or email.
    pub search: Option<String>,
    pub offset: i64,
    pub limit: i64,
}

/// One row of the inbox.
#[derive(Debug, Clone, Serialize)]
pub struct InboxItem {
    pub fingerprint: String,
    pub rule: String,
    pub severity: String,
    pub submission_id: String,
    pub group_key: Option<String>,
    pub fired_at: String,
    pub state: String,
    pub assignee: Option<String>,
    pub silenced: bool,
}

/// One alert with everything its page and case file show.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub view: AlertView,
    pub record: AlertRecord,
    pub audit: Vec<AuditEntry>,
    pub assignee: Option<String>,
    /// The stored JSON of the alert's submission (last processed version).
    pub submission: Option<serde_json::Value>,
    /// Outcome and note of the current state (a pending resolution's proposal).
    pub outcome: Option<String>,
    pub note: Option<String>,
    /// Window members of a windowed alert: (submission id, event time).
    pub members: Vec<(String, String)>,
}

/// A rule's numbers for the Rules page.
#[derive(Debug, Clone, Serialize)]
pub struct RuleStats {
    pub rule: String,
    pub last_24h: i64,
    pub last_7d: i64,
    pub resolved: i64,
    pub false_positive: i64,
}

/// What the Health page shows from the store.
#[derive(Debug, Clone, Serialize)]
pub struct HealthFacts {
    pub last_poll: Option<String>,
    pub api_calls_today: u64,
    pub outbox_pending: i64,
    pub dead_letters: i64,
}

#[async_trait::async_trait]
pub trait CaseStore: Send + Sync {
    /// The full fingerprint of a unique prefix.
    async fn find(&self, prefix: &str) -> Result<std::result::Result<String, LookupError>>;
    /// A page of the inbox (newest first) and how many match in all.
    async fn inbox(&self, q: &InboxQuery) -> Result<(Vec<InboxItem>, i64)>;
    /// Alerts per state under the query's other filters.
    async fn state_counts(&self, q: &InboxQuery) -> Result<Vec<(String, i64)>>;
    /// The oldest open, unassigned alert under the query's other filters.
    async fn next_unassigned(&self, q: &InboxQuery) -> Result<Option<String>>;
    async fn case(&self, fingerprint: &str) -> Result<Option<Case>>;
    async fn change(
        &self,
        fingerprint: &str,
        by: &str,
        action: Action,
        policy: &Policy,
    ) -> std::result::Result<AlertState, ChangeError>;
    async fn assign(
        &self,
        fingerprint: &str,
        to: &str,
        by: &str,
    ) -> std::result::Result<(), ChangeError>;
    async fn add_note(
        &self,
        fingerprint: &str,
        by: &str,
        note: &str,
    ) -> std::result::Result<(), ChangeError>;
    /// Records that `by` saw `field` of the alert's submission unmasked.
    async fn record_reveal(&self, fingerprint: &str, by: &str, field: &str) -> Result<()>;
    async fn rule_stats(&self, now: DateTime<Utc>) -> Result<Vec<RuleStats>>;
    async fn health(&self, today: &str) -> Result<HealthFacts>;
    async fn add_silence(&self, s: &NewSilence) -> Result<i64>;
    async fn silences(&self, now: DateTime<Utc>, include_expired: bool) -> Result<Vec<Silence>>;
    async fn expire_silence(&self, id: i64, now: DateTime<Utc>) -> Result<bool>;
}

/// Filtered counts stop here: exact below, "this many or more" at it.
pub const COUNT_CAP: i64 = 5000;

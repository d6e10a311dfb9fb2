//! The audit side (role [`AuditStore`]): what the store recorded about a
//! submission or an alert, for `audit`, the alert page and summaries.

use chrono::{DateTime, Utc};

use super::Result;

/// One row of the audit log, as `audit` shows and exports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub submission_id: Option<String>,
    pub version_hash: Option<String>,
    pub rule_id: Option<String>,
    pub rule_version: Option<String>,
    pub fingerprint: Option<String>,
    pub detail: serde_json::Value,
}

/// A stored alert and what happened to its notifications.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertRecord {
    pub fingerprint: String,
    pub fired_at: String,
    pub rule_version: String,
    /// The alert as `eval` prints it.
    pub alert: serde_json::Value,
    /// Every notification that carried it (alone, grouped, an escalation
    /// step, a digest): (receiver, state, attempts, last_error)
    pub notifications: Vec<(String, String, i64, Option<String>)>,
    /// (receiver, at, ok, detail)
    pub attempts: Vec<(String, String, bool, Option<String>)>,
}

/// A submission counted in a rule's window (see [`AuditStore::memberships_of`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct WindowMembership {
    pub rule_id: String,
    pub group_key: String,
    /// The member's event time.
    pub event_time: String,
    pub consumed: bool,
    /// The alert that consumed it, with that alert's members in order.
    pub consumed_by: Option<(String, Vec<String>)>,
    /// Event times of the window's members not consumed yet (this one included when open).
    pub open_members: Vec<String>,
    /// The newest event time in the engine's window state (how far time has moved on).
    pub newest_event: Option<String>,
}

/// See [`AuditStore::summary`].
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Distinct submissions processed.
    pub submissions: i64,
    /// (rule, severity, alerts), most alerts first.
    pub alerts_by_rule: Vec<(String, String, i64)>,
    /// (receiver, state, rows).
    pub outbox: Vec<(String, String, i64)>,
}

impl Summary {
    pub fn alerts(&self) -> i64 {
        self.alerts_by_rule.iter().map(|r| r.2).sum()
    }
    pub fn delivered(&self) -> i64 {
        self.outbox
            .iter()
            .filter(|r| r.1 == "delivered")
            .map(|r| r.2)
            .sum()
    }
}

/// Role: reading the audit log and what it refers to.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync {
    /// Audit rows about a submission, oldest first.
    async fn audit_for_submission(&self, id: &str) -> Result<Vec<AuditEntry>>;

    /// Audit rows about an alert, oldest first.
    async fn audit_for_alert(&self, fingerprint: &str) -> Result<Vec<AuditEntry>>;

    /// Audit rows written in `[from, to)`, for an auditor's export.
    async fn audit_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<AuditEntry>>;

    /// The last processed version of a submission: (content hash, result, raw JSON if kept).
    async fn submission(
        &self,
        id: &str,
    ) -> Result<Option<(String, Option<String>, Option<String>)>>;

    /// Fingerprints of the alerts a submission took part in (firing or as a
    /// window member), oldest first.
    async fn alerts_of_submission(&self, id: &str) -> Result<Vec<String>>;

    /// Where a submission was counted in windows: each (rule, group key)
    /// with the alert that consumed it, or the window's open members.
    async fn memberships_of(&self, id: &str) -> Result<Vec<WindowMembership>>;

    /// A stored alert and what happened to its notifications.
    async fn alert(&self, fingerprint: &str) -> Result<Option<AlertRecord>>;

    /// Counts for progress displays and summaries.
    async fn summary(&self) -> Result<Summary>;
}

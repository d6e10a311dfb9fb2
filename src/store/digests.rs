//! What digests read from the store, and the one write that makes a digest go
//! out once: its record and its outbox rows in one transaction.
//!
//! The reads are plain queries over tables other modules own (alerts, audit
//! log, outbox); the digest module turns them into a report (role [`DigestStore`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{OutboxInsert, Result};

/// A digest as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestRecord {
    pub name: String,
    /// The scheduled time it is for (the last one, when combined); with
    /// `name`, unique: the same time is never recorded twice.
    pub scheduled_at: DateTime<Utc>,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// Scheduled times covered (more than one: a combined catch-up).
    pub slots: u32,
    /// `schedule`, `catch_up` or `send_now`.
    pub trigger: String,
    pub content_hash: String,
}

/// An alert as a digest sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestAlert {
    pub fingerprint: String,
    pub rule: String,
    pub severity: String,
    pub submission_id: String,
    pub fired_at: DateTime<Utc>,
    pub labels: BTreeMap<String, String>,
    /// From the firing submission's stored JSON (none once retention purged it).
    pub applicant_id: Option<String>,
    pub userid: Option<String>,
    /// `open`, `acknowledged` or `resolved`.
    pub state: String,
    pub silenced: bool,
}

/// A notification given up (dead letter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub receiver: String,
    pub key: String,
    pub error: String,
    pub at: DateTime<Utc>,
}

/// A rule error from the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleErrorRow {
    pub rule: String,
    pub submission_id: String,
    pub error: String,
    pub at: DateTime<Utc>,
}

/// Role: what digests read, and recording a digest once.
#[async_trait::async_trait]
pub trait DigestStore: Send + Sync {
    /// The last scheduled time done for digest `name`. A digest seen for the
    /// first time, or whose schedule changed, starts from `now`.
    async fn digest_anchor(
        &self,
        name: &str,
        schedule: &str,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>>;

    /// Records the digest and writes its outbox rows in one transaction; with
    /// `advance`, moves the schedule's last done time to `scheduled_at` too.
    /// False (and nothing written) when this digest was already recorded.
    async fn record_digest(
        &self,
        rec: &DigestRecord,
        outbox: &[OutboxInsert],
        advance: bool,
    ) -> Result<bool>;

    /// Moves a schedule past times that produced nothing (no receivers left).
    async fn advance_digest(&self, name: &str, slot: DateTime<Utc>) -> Result<()>;

    /// Digests recorded for `name`, oldest first.
    async fn digests_recorded(&self, name: &str) -> Result<Vec<DigestRecord>>;

    /// Alerts fired in `[start, end)`, oldest first; not those a quiet
    /// backfill recorded (history is not news).
    async fn alerts_fired_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<DigestAlert>>;

    /// Alerts fired before `end` and still open (neither acknowledged nor
    /// resolved), oldest first.
    async fn open_alerts_before(&self, end: DateTime<Utc>) -> Result<Vec<DigestAlert>>;

    /// Rule errors audited in `[start, end)`.
    async fn rule_errors_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<RuleErrorRow>>;

    /// Notifications given up in `[start, end)`.
    async fn dead_letters_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<DeadLetter>>;
}

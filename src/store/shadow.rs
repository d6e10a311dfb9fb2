//! Store operations for safe rule changes (issue 18): shadow rules' alerts
//! beside the live ones, and the stored versions a backtest replays.
//!
//! [`ShadowStore`] is a role of every backend (the digest's "shadow rules"
//! section), and of a store opened read-only ([`super::open_read_only`]):
//! `shadow report` and `backtest` read a store a daemon may be writing, and
//! must change nothing in it.

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

use super::Result;

/// The latest time the store's text order handles (`fmt_time` of
/// `DateTime::MAX_UTC` starts with `+`, which sorts before every year).
pub fn end_of_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z")
        .expect("a valid time")
        .with_timezone(&Utc)
}

/// The earliest time the store's text order handles.
pub fn start_of_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z")
        .expect("a valid time")
        .with_timezone(&Utc)
}

/// One stored alert, as the comparisons need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiredAlert {
    pub fingerprint: String,
    pub rule: String,
    pub submission_id: String,
    pub event_time: DateTime<Utc>,
    /// `live` or `shadow`.
    pub mode: String,
    pub replaces: Option<String>,
    /// The analyst's outcome when the alert was resolved.
    pub outcome: Option<String>,
}

/// Shadow alerts of one rule in a period, and the rule it may replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowCount {
    pub rule: String,
    pub replaces: Option<String>,
    pub count: usize,
}

/// A stored submission version; `raw` is `None` once retention purged it.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    pub submission_id: String,
    pub raw: Option<String>,
}

#[async_trait::async_trait]
pub trait ShadowStore: Send + Sync {
    /// Shadow alerts fired in `[start, end)`, counted per rule.
    async fn shadow_counts(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<ShadowCount>>;

    /// Alerts of both modes fired at or after `since`, oldest first.
    async fn alerts_fired_since(&self, since: DateTime<Utc>) -> Result<Vec<FiredAlert>>;

    /// Live alerts (quiet backfill's included) whose event time is in
    /// `[from, to)`, with their resolution outcome.
    async fn live_alerts_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<FiredAlert>>;

    /// The stored versions with event time in `[from, to)`, in event-time
    /// order (ties by submission id), streamed (one sorted scan; the raw
    /// text is never all in memory).
    fn versions(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxStream<'_, Result<StoredVersion>>;
}

//! The pipeline's state (role [`PipelineStore`]): processed versions, the
//! rule engine's state and one transaction per batch.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{BatchCommit, BatchPrefetch, OpenWindows, Result, SeenVersion, StoredWindowMember};

/// The durable state behind the pipeline. One writer: the pipeline task.
#[async_trait::async_trait]
pub trait PipelineStore: Send + Sync {
    /// The last processed version of each of these submissions.
    async fn seen_versions(&self, ids: &[&str]) -> Result<HashMap<String, SeenVersion>>;

    /// Submissions whose last processed version is still undecided (no result,
    /// `pending` or `Incomplete`) and was created after `horizon`.
    async fn undecided_since(
        &self,
        horizon: DateTime<Utc>,
    ) -> Result<Vec<(String, Option<DateTime<Utc>>)>>;

    async fn prefetch(
        &self,
        submission_ids: &[&str],
        applicant_ids: &[&str],
    ) -> Result<BatchPrefetch>;

    /// Window members with event time after `since`, and throttles still in force after it.
    async fn open_windows(&self, since: DateTime<Utc>) -> Result<OpenWindows>;

    /// The stored window members among these `(rule_id, group_key,
    /// submission_id)` triples (consumed ones included).
    async fn window_memberships(
        &self,
        members: &[(&str, &str, &str)],
    ) -> Result<Vec<StoredWindowMember>>;

    /// The newest event time in the window state (where a restart resumes).
    async fn latest_window_event(&self) -> Result<Option<DateTime<Utc>>>;

    /// Writes a batch's versions, state changes, alerts, outbox rows, group
    /// members, escalation starts, audit rows and meta in ONE transaction.
    /// Idempotent: the same batch committed again (a crash before the caller
    /// learnt of the commit) changes nothing a second time.
    async fn commit_batch(&self, batch: BatchCommit) -> Result<()>;

    /// The stored JSON of these submissions (their last processed version).
    async fn submissions_raw(&self, ids: &[&str]) -> Result<HashMap<String, serde_json::Value>>;
}

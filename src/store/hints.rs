//! Webhook hints handed from a standby to the leader (high availability on
//! PostgreSQL, see `crate::ha`). Not part of [`super::StateStore`]: a single
//! SQLite instance acts on its own webhooks and has nobody to hand them to.

use chrono::{DateTime, Utc};

use super::Result;

/// A webhook's hint as stored: which submission, why, when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHint {
    pub submission_id: String,
    pub trigger: String,
    pub received_at: DateTime<Utc>,
}

#[async_trait::async_trait]
pub trait HintStore: Send + Sync {
    /// Keeps hints a standby received (any instance may write them).
    async fn add_hints(&self, hints: &[StoredHint]) -> Result<()>;

    /// Takes (removes and returns) up to `limit` hints, oldest first. Fenced
    /// when leading: a deposed leader takes nothing.
    async fn take_hints(&self, limit: i64) -> Result<Vec<StoredHint>>;
}

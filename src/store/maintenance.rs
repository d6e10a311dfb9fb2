//! Keeping the store (role [`MaintenanceStore`]): retention and closing.

use chrono::{DateTime, Utc};

use super::Result;

#[async_trait::async_trait]
pub trait MaintenanceStore: Send + Sync {
    /// Retention: forgets the raw JSON of versions unchanged since `cutoff`;
    /// decisions, alerts and the audit log stay. Returns the rows purged.
    async fn purge_raw_older_than(&self, cutoff: DateTime<Utc>) -> Result<u64>;

    /// Closes the backend's connections (waiting for those in use).
    async fn close(&self);
}

//! The outbox (role [`OutboxStore`]): notifications waiting in their group,
//! rows due for delivery, and what became of each attempt.

use chrono::{DateTime, Utc};

use super::{DeliveryOutcome, OutboxRow, OutboxStats, Result};

#[async_trait::async_trait]
pub trait OutboxStore: Send + Sync {
    async fn due_outbox(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<OutboxRow>>;

    /// Due rows of one receiver (each receiver drains its own queue).
    async fn due_outbox_for(
        &self,
        receiver: &str,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>>;

    /// The receivers with rows due at `now`.
    async fn due_receivers(&self, now: DateTime<Utc>) -> Result<Vec<String>>;

    async fn record_delivery(&self, row: &OutboxRow, outcome: &DeliveryOutcome) -> Result<()>;

    /// Several deliveries' outcomes in one transaction; a dead letter also
    /// writes its `dead_letter` audit row.
    async fn record_deliveries(&self, done: &[(OutboxRow, DeliveryOutcome)]) -> Result<()>;

    async fn outbox_stats(&self) -> Result<OutboxStats>;

    /// Writes the notification of every group due at `now` to the outbox
    /// (payload by `crate::outbox_payload`), in one transaction with marking
    /// its alerts sent; returns how many.
    async fn flush_groups(&self, now: DateTime<Utc>) -> Result<usize>;

    /// Pending outbox rows of one notification (every receiver).
    async fn pending_outbox_of(&self, key: &str) -> Result<Vec<OutboxRow>>;
}

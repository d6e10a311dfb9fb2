//! The pipeline's [`Store`] trait on PostgreSQL: each method is the role
//! file's inherent method of the same name.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::PgStore;
use crate::notify::silence::{NewSilence, Silence};
use crate::store::{
    BatchCommit, BatchPrefetch, DeliveryOutcome, OpenWindows, OutboxRow, OutboxStats, Result,
    SeenVersion, Store, StoredWindowMember,
};

impl Store for PgStore {
    async fn seen_versions(&self, ids: &[&str]) -> Result<HashMap<String, SeenVersion>> {
        PgStore::seen_versions(self, ids).await
    }
    async fn undecided_since(
        &self,
        horizon: DateTime<Utc>,
    ) -> Result<Vec<(String, Option<DateTime<Utc>>)>> {
        PgStore::undecided_since(self, horizon).await
    }
    async fn prefetch(&self, submissions: &[&str], applicants: &[&str]) -> Result<BatchPrefetch> {
        PgStore::prefetch(self, submissions, applicants).await
    }
    async fn open_windows(&self, since: DateTime<Utc>) -> Result<OpenWindows> {
        PgStore::open_windows(self, since).await
    }
    async fn window_memberships(
        &self,
        members: &[(&str, &str, &str)],
    ) -> Result<Vec<StoredWindowMember>> {
        self.window_members_among(members).await
    }
    async fn latest_window_event(&self) -> Result<Option<DateTime<Utc>>> {
        PgStore::latest_window_event(self).await
    }
    async fn commit_batch(&self, batch: BatchCommit) -> Result<()> {
        PgStore::commit_batch(self, batch).await
    }
    async fn due_outbox(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<OutboxRow>> {
        PgStore::due_outbox(self, now, limit).await
    }
    async fn due_outbox_for(
        &self,
        receiver: &str,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>> {
        PgStore::due_outbox_for(self, receiver, now, limit).await
    }
    async fn due_receivers(&self, now: DateTime<Utc>) -> Result<Vec<String>> {
        PgStore::due_receivers(self, now).await
    }
    async fn record_delivery(&self, row: &OutboxRow, outcome: &DeliveryOutcome) -> Result<()> {
        PgStore::record_deliveries(self, &[(row.clone(), outcome.clone())]).await
    }
    async fn record_deliveries(&self, done: &[(OutboxRow, DeliveryOutcome)]) -> Result<()> {
        PgStore::record_deliveries(self, done).await
    }
    async fn outbox_stats(&self) -> Result<OutboxStats> {
        PgStore::outbox_stats(self).await
    }
    async fn add_api_calls(&self, day: &str, n: u64) -> Result<u64> {
        PgStore::add_api_calls(self, day, n).await
    }
    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        PgStore::get_meta(self, key).await
    }
    async fn found_first(&self) -> Result<HashMap<String, u64>> {
        PgStore::found_first(self).await
    }
    async fn flush_groups(&self, now: DateTime<Utc>) -> Result<usize> {
        PgStore::flush_groups(self, now).await
    }
    async fn submissions_raw(&self, ids: &[&str]) -> Result<HashMap<String, serde_json::Value>> {
        PgStore::submissions_raw(self, ids).await
    }
    async fn add_silence(&self, s: &NewSilence) -> Result<i64> {
        PgStore::add_silence(self, s).await
    }
    async fn silences(&self, now: DateTime<Utc>, include_expired: bool) -> Result<Vec<Silence>> {
        PgStore::silences(self, now, include_expired).await
    }
    async fn expire_silence(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        PgStore::expire_silence(self, id, now).await
    }
}

//! Silences as the store keeps them (role [`SilenceStore`]); matching them
//! against alerts is pure and lives in `notify::silence`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Result;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Silence {
    pub id: i64,
    pub rule: Option<String>,
    pub matchers: BTreeMap<String, String>,
    pub reason: String,
    pub author: String,
    pub created_at: DateTime<Utc>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// A silence to create (`silence add`).
#[derive(Debug, Clone)]
pub struct NewSilence {
    pub rule: Option<String>,
    pub matchers: BTreeMap<String, String>,
    pub reason: String,
    pub author: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// Role: the silences (`silence add/list/expire`, and the router's view).
#[async_trait::async_trait]
pub trait SilenceStore: Send + Sync {
    async fn add_silence(&self, s: &NewSilence) -> Result<i64>;

    /// Silences still in force at `now` (or all, with `include_expired`), newest first.
    async fn silences(&self, now: DateTime<Utc>, include_expired: bool) -> Result<Vec<Silence>>;

    /// Ends a silence now; false when no silence has that id.
    async fn expire_silence(&self, id: i64, now: DateTime<Utc>) -> Result<bool>;
}

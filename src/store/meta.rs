//! Small counters and markers (role [`MetaStore`]): key/value meta, the API
//! budget per UTC day, versions found first per fetch path.

use std::collections::HashMap;

use super::Result;

#[async_trait::async_trait]
pub trait MetaStore: Send + Sync {
    async fn get_meta(&self, key: &str) -> Result<Option<String>>;

    async fn set_meta(&self, key: &str, value: &str) -> Result<()>;

    /// Adds `n` calls to the UTC day's count and returns the new total.
    async fn add_api_calls(&self, day: &str, n: u64) -> Result<u64>;

    /// Argos calls counted for a UTC day (`YYYY-MM-DD`).
    async fn api_calls_on(&self, day: &str) -> Result<u64>;

    /// Versions found first per path ([`super::Source::as_str`] -> count).
    async fn found_first(&self) -> Result<HashMap<String, u64>>;
}

/// The meta key the daemon writes after each successful poll.
pub const LAST_POLL_META: &str = "last_successful_poll";

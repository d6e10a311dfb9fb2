//! Alert lifecycle in the store (role [`LifecycleStore`]): acknowledge,
//! resolve, list.
//!
//! The state machine is pure and lives in `crate::lifecycle`; a backend reads
//! the alert's current state, asks [`crate::lifecycle::decide`], and writes the
//! decision (state row, change row, audit row) in one transaction, so the
//! audit log always says who moved an alert, when, from what to what.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Result, StoreError};
pub use crate::lifecycle::{
    Action, AlertState, KNOWN_OUTCOMES, LifecycleError, Policy, transition,
};

/// One alert in a list.
#[derive(Debug, Clone, Serialize)]
pub struct AlertListItem {
    pub fingerprint: String,
    pub rule: String,
    pub severity: String,
    pub submission_id: String,
    pub fired_at: String,
    pub state: AlertState,
    pub changed_by: Option<String>,
    pub outcome: Option<String>,
    /// A silence held when it fired: recorded, not sent.
    pub silenced: bool,
}

#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub state: Option<AlertState>,
    pub rule: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Refused(#[from] LifecycleError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Role: moving alerts through their states, and listing them.
#[async_trait::async_trait]
pub trait LifecycleStore: Send + Sync {
    /// Applies `action` by `by` to the alert without four-eyes; returns the new state.
    async fn change_alert(
        &self,
        fingerprint: &str,
        by: &str,
        action: Action,
    ) -> std::result::Result<AlertState, ChangeError> {
        self.change_alert_under(fingerprint, by, action, &Policy::default())
            .await
    }

    /// Applies `action` by `by` to the alert under `policy`; returns the new state.
    async fn change_alert_under(
        &self,
        fingerprint: &str,
        by: &str,
        action: Action,
        policy: &Policy,
    ) -> std::result::Result<AlertState, ChangeError>;

    /// Alerts, newest first, filtered.
    async fn list_alerts(&self, f: &AlertFilter) -> Result<Vec<AlertListItem>>;
}

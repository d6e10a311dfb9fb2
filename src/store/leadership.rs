//! Which of several instances sharing one store leads (high availability,
//! `crate::ha`): the role trait such a backend fills. Not part of
//! [`super::StateStore`]: a single SQLite instance always leads.
//!
//! The leader holds a [`Lease`] and renews it; its engine writes through a
//! store fenced by the lease's epoch ([`LeaderElection::fenced_by`]), so a
//! deposed leader cannot commit. See `store::postgres::leader` for how
//! PostgreSQL holds it.

use std::sync::Arc;
use std::time::Duration;

use super::hints::HintStore;
use super::{Result, StateStore};

/// How leadership is held.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// A leader not renewed for this long (database clock) may be deposed.
    pub lease: Duration,
    /// How long a renewal may take before the leader counts itself lost.
    pub renew_timeout: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(10),
            renew_timeout: Duration::from_secs(2),
        }
    }
}

/// This instance leads, until [`Lease::renew`] says otherwise.
#[async_trait::async_trait]
pub trait Lease: Send + Sync + std::fmt::Debug {
    /// The epoch this instance took over with (what its writes are fenced by).
    fn epoch(&self) -> i64;
    /// Moves the lease forward; false (and no longer leader) when it is lost.
    async fn renew(&mut self) -> bool;
    /// Steps down at once (a standby may take over without waiting out the lease).
    async fn release(self: Box<Self>);
}

#[async_trait::async_trait]
pub trait LeaderElection: Send + Sync {
    /// Tries once to take leadership; `None` while another instance leads.
    async fn try_lead(&self, cfg: &LeaseConfig) -> Result<Option<Box<dyn Lease>>>;
    /// This store with every write transaction fenced by `epoch`.
    fn fenced_by(&self, epoch: i64) -> Arc<dyn SharedStore>;
}

/// A store several instances share: every role of one instance, the webhook
/// hints standbys hand to the leader, and the choice of the leader.
pub trait SharedStore: StateStore + HintStore + LeaderElection {}

impl<T: StateStore + HintStore + LeaderElection> SharedStore for T {}

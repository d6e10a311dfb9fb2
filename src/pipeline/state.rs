//! The rule engine's state during the daemon's life: the engine's one state
//! implementation ([`MemoryState`]) used as a cache of the store, with its
//! journal on. Nothing here decides anything: loading, journaling and
//! forgetting only.
//!
//! Open windows and live throttles are few, so they are loaded once at start
//! and kept in memory. Per-submission facts (previous result, which rules
//! fired, the applicant index, window memberships of the batch's
//! submissions) grow with every submission, so only what a batch needs is
//! loaded before it is evaluated and dropped after it is committed: memory
//! stays flat however many submissions go by.

use chrono::{DateTime, Duration, Utc};

use crate::rules::MemoryState;
use crate::store::{BatchPrefetch, StateChange, StoredWindowMember};

#[derive(Debug)]
pub struct CachedState {
    state: MemoryState,
}

impl Default for CachedState {
    fn default() -> Self {
        Self {
            state: MemoryState::journaled(),
        }
    }
}

impl CachedState {
    pub fn new(
        windows: Vec<StoredWindowMember>,
        throttles: Vec<(String, String, DateTime<Utc>)>,
    ) -> Self {
        let mut s = Self::default();
        s.load_windows(windows);
        for (rule, key, until) in throttles {
            s.state.load_throttle(rule, key, until);
        }
        s
    }

    /// Loads what the next batch needs (see module docs).
    pub fn load_batch(&mut self, pre: BatchPrefetch) {
        for (id, result) in pre.results {
            self.state.load_result(id, result);
        }
        for (rule, id) in pre.fired {
            self.state.load_fired(rule, id);
        }
        for (applicant, rows) in pre.applicants {
            for (id, email, first_seen) in rows {
                self.state
                    .load_applicant_member(applicant.clone(), id, email, first_seen);
            }
        }
    }

    /// Loads window members from the store (at start, and the batch's own
    /// memberships, which may have been forgotten since they were counted).
    pub fn load_windows(&mut self, members: Vec<StoredWindowMember>) {
        for m in members {
            self.state.load_window_member(
                m.rule_id,
                m.key,
                m.submission_id,
                m.event_time,
                m.consumed,
            );
        }
    }

    /// Whether the cache already counts this window membership (no need to ask the store).
    pub fn counts(&self, rule_id: &str, key: &str, submission_id: &str) -> bool {
        self.state.window_counts(rule_id, key, submission_id)
    }

    /// The state the engine evaluates over.
    pub fn engine_state(&mut self) -> &mut MemoryState {
        &mut self.state
    }

    /// Takes the changes made since the last call, for the batch's transaction.
    pub fn take_journal(&mut self) -> Vec<StateChange> {
        self.state.take_journal()
    }

    /// Forgets the per-submission facts once the batch is committed, and
    /// window members older than `horizon` (no window reaches back so far).
    pub fn end_batch(&mut self, horizon: DateTime<Utc>) {
        self.state.forget_submissions();
        self.state.forget_before(horizon);
    }

    /// Window members held in memory (for metrics and the memory benchmark).
    pub fn window_count(&self) -> usize {
        self.state.window_count()
    }
}

/// How far back window state is kept, given the newest event time processed
/// and the longest window or throttle. Twice the longest, so a submission that
/// arrives late (older than the newest) still finds its window's members.
pub fn retention_horizon(newest: DateTime<Utc>, longest: std::time::Duration) -> DateTime<Utc> {
    let keep = Duration::from_std(longest.saturating_mul(2)).unwrap_or(Duration::days(3650));
    newest
        .checked_sub_signed(keep)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

//! What the rule engine remembers between submissions.
//!
//! Evaluation is pure: everything it needs from the past comes in through
//! [`RuleState`], and every change it makes goes out through it. There is one
//! implementation, [`MemoryState`](super::memory::MemoryState): `eval` and
//! `test` use it over the input alone; the daemon uses the same code over what
//! it loaded from the store, with its journal on ([`StateChange`]s, written in
//! the batch's transaction), so no I/O happens inside an evaluation and the
//! daemon cannot decide differently from `eval` (docs/rules.md).

use chrono::{DateTime, Utc};

/// One member of a window: a matching submission and its event time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowMember {
    pub submission_id: String,
    pub event_time: DateTime<Utc>,
}

/// Counts for `derived.applicant_submissions` / `derived.applicant_emails`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplicantCounts {
    pub submissions: u64,
    pub emails: u64,
}

pub trait RuleState {
    /// `kyc.result` of the version of this submission seen before the current
    /// one; `None` on first sight (or when that version had no result).
    fn previous_result(&self, submission_id: &str) -> Option<String>;

    /// Remembers the result of the version being evaluated now; the next
    /// version's `previous_result` reads it.
    fn set_result(&mut self, submission_id: &str, result: Option<&str>);

    /// Records that `submission_id` (with `email`) belongs to `applicant_id`,
    /// first seen at `event_time` (recording it again changes nothing), and
    /// returns the distinct submissions and distinct emails of that applicant
    /// whose event time is at or before `event_time`.
    fn applicant_counts(
        &mut self,
        applicant_id: &str,
        submission_id: &str,
        email: Option<&str>,
        event_time: DateTime<Utc>,
    ) -> ApplicantCounts;

    /// Whether a rule without a window has already fired for this submission.
    fn has_fired(&self, rule_id: &str, submission_id: &str) -> bool;
    fn mark_fired(&mut self, rule_id: &str, submission_id: &str);

    /// Adds a matching submission to the window of `(rule_id, key)`. A
    /// submission already counted there (even if since consumed) is not added
    /// again: a submission counts once however often it is seen.
    fn window_add(&mut self, rule_id: &str, key: &str, member: WindowMember);

    /// The unconsumed members of `(rule_id, key)` with event time in
    /// `(after, until]`, ordered by event time, then submission id.
    fn window_members(
        &self,
        rule_id: &str,
        key: &str,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Vec<WindowMember>;

    /// Marks members consumed by an alert: they never count again.
    fn window_consume(&mut self, rule_id: &str, key: &str, submission_ids: &[String]);

    /// Event time before which the rule must not fire again for this key.
    fn throttled_until(&self, rule_id: &str, key: &str) -> Option<DateTime<Utc>>;
    fn set_throttle(&mut self, rule_id: &str, key: &str, until: DateTime<Utc>);
}

/// A change the rule engine made to its state, as journaled for the store.
/// Only effective changes are journaled (a submission already counted in a
/// window, a rule already fired, an applicant member already known: nothing).
#[derive(Debug, Clone, PartialEq)]
pub enum StateChange {
    Result {
        submission_id: String,
        kyc_result: Option<String>,
    },
    Applicant {
        applicant_id: String,
        submission_id: String,
        email: Option<String>,
        event_time: DateTime<Utc>,
    },
    Fired {
        rule_id: String,
        submission_id: String,
    },
    WindowAdd {
        rule_id: String,
        key: String,
        submission_id: String,
        event_time: DateTime<Utc>,
    },
    WindowConsume {
        rule_id: String,
        key: String,
        submission_ids: Vec<String>,
    },
    Throttle {
        rule_id: String,
        key: String,
        until: DateTime<Utc>,
    },
}

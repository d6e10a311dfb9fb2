//! [`RuleState`]: the one implementation of what the engine remembers.
//!
//! `eval`, `test` and the benchmarks build it from their input alone and
//! throw it away. The daemon (`pipeline::state`) uses this same code as a
//! cache of its store: it loads what a batch needs (`load_*`), turns the
//! journal on so every effective change comes out as a [`StateChange`] for the
//! batch's transaction, and forgets what it no longer needs (`forget_*`).
//! Loading never overrides what the cache holds: with deferred commits the
//! cache is newer than the store.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::state::{ApplicantCounts, RuleState, StateChange, WindowMember};

#[derive(Debug, Default)]
struct WindowState {
    /// Every submission counted here (consumed or not) with its event time:
    /// a submission counts once however often it is seen.
    members: HashMap<String, DateTime<Utc>>,
    /// Unconsumed members, ordered by (event time, submission id).
    live: BTreeSet<(DateTime<Utc>, String)>,
}

/// One member of an applicant: its first event time and its email.
type ApplicantMember = (DateTime<Utc>, Option<String>);

/// In-memory rule state (plain hash maps), optionally journaled.
#[derive(Debug, Default)]
pub struct MemoryState {
    results: HashMap<String, Option<String>>,
    /// applicant id -> submission id -> (first event time, email)
    applicants: HashMap<String, HashMap<String, ApplicantMember>>,
    /// rule id -> submissions it fired for (rules without a window)
    fired: HashMap<String, HashSet<String>>,
    windows: HashMap<String, HashMap<String, WindowState>>,
    throttles: HashMap<String, HashMap<String, DateTime<Utc>>>,
    /// `Some` when changes are journaled (the daemon).
    journal: Option<Vec<StateChange>>,
}

impl MemoryState {
    pub fn new() -> Self {
        Self::default()
    }

    /// A state that journals its changes (see [`Self::take_journal`]).
    pub fn journaled() -> Self {
        Self {
            journal: Some(Vec::new()),
            ..Self::default()
        }
    }

    /// The changes made since the last call (empty when not journaled).
    pub fn take_journal(&mut self) -> Vec<StateChange> {
        self.journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn record(&mut self, change: impl FnOnce() -> StateChange) {
        if let Some(j) = &mut self.journal {
            j.push(change());
        }
    }

    /// Loads a stored `previous_result` unless the state has one.
    pub fn load_result(&mut self, submission_id: String, result: Option<String>) {
        self.results.entry(submission_id).or_insert(result);
    }

    /// Loads a stored once-per-submission mark.
    pub fn load_fired(&mut self, rule_id: String, submission_id: String) {
        self.fired.entry(rule_id).or_default().insert(submission_id);
    }

    /// Loads a known member of an applicant unless the state has it. The
    /// email is normalized as the engine normalizes it (trimmed, lower case).
    pub fn load_applicant_member(
        &mut self,
        applicant_id: String,
        submission_id: String,
        email: Option<String>,
        first_seen: DateTime<Utc>,
    ) {
        let email = email
            .map(|e| e.trim().to_lowercase())
            .filter(|e| !e.is_empty());
        self.applicants
            .entry(applicant_id)
            .or_default()
            .entry(submission_id)
            .or_insert((first_seen, email));
    }

    /// Loads a stored window member unless the state already counts it.
    pub fn load_window_member(
        &mut self,
        rule_id: String,
        key: String,
        submission_id: String,
        event_time: DateTime<Utc>,
        consumed: bool,
    ) {
        let w = self
            .windows
            .entry(rule_id)
            .or_default()
            .entry(key)
            .or_default();
        if w.members.contains_key(&submission_id) {
            return;
        }
        if !consumed {
            w.live.insert((event_time, submission_id.clone()));
        }
        w.members.insert(submission_id, event_time);
    }

    /// Loads a stored throttle unless the state has one for that key.
    pub fn load_throttle(&mut self, rule_id: String, key: String, until: DateTime<Utc>) {
        self.throttles
            .entry(rule_id)
            .or_default()
            .entry(key)
            .or_insert(until);
    }

    /// Whether the state counts `submission_id` in the window `(rule_id, key)`.
    pub fn window_counts(&self, rule_id: &str, key: &str, submission_id: &str) -> bool {
        self.windows
            .get(rule_id)
            .and_then(|m| m.get(key))
            .is_some_and(|w| w.members.contains_key(submission_id))
    }

    /// Forgets the per-submission facts (previous results, fired marks, the
    /// applicant index): the daemon reloads them from the store per batch.
    pub fn forget_submissions(&mut self) {
        self.results.clear();
        self.fired.clear();
        self.applicants.clear();
    }

    /// Forgets window members at or before `horizon` and throttles that end
    /// by then: no evaluation after the horizon can see them. A member
    /// forgotten here and seen again must be loaded again first (the daemon
    /// loads the batch's memberships), or it would count twice.
    pub fn forget_before(&mut self, horizon: DateTime<Utc>) {
        for keys in self.windows.values_mut() {
            keys.retain(|_, w| {
                w.members.retain(|_, t| *t > horizon);
                w.live.retain(|(t, _)| *t > horizon);
                !w.members.is_empty()
            });
        }
        self.windows.retain(|_, keys| !keys.is_empty());
        for keys in self.throttles.values_mut() {
            keys.retain(|_, until| *until > horizon);
        }
        self.throttles.retain(|_, keys| !keys.is_empty());
    }

    /// Window members held (consumed ones included), for metrics.
    pub fn window_count(&self) -> usize {
        self.windows
            .values()
            .flat_map(HashMap::values)
            .map(|w| w.members.len())
            .sum()
    }
}

impl RuleState for MemoryState {
    fn previous_result(&self, submission_id: &str) -> Option<String> {
        self.results.get(submission_id).cloned().flatten()
    }

    fn set_result(&mut self, submission_id: &str, result: Option<&str>) {
        let result = result.map(str::to_string);
        self.results
            .insert(submission_id.to_string(), result.clone());
        self.record(|| StateChange::Result {
            submission_id: submission_id.to_string(),
            kyc_result: result,
        });
    }

    fn applicant_counts(
        &mut self,
        applicant_id: &str,
        submission_id: &str,
        email: Option<&str>,
        event_time: DateTime<Utc>,
    ) -> ApplicantCounts {
        let members = self.applicants.entry(applicant_id.to_string()).or_default();
        let mut added = false;
        members.entry(submission_id.to_string()).or_insert_with(|| {
            added = true;
            (event_time, email.map(str::to_string))
        });
        // Members up to the event time of the version evaluated now (not
        // this submission's first): a submission decided later counts every
        // member that had appeared by then.
        let mut emails = HashSet::new();
        let mut submissions = 0;
        for (t, e) in members.values() {
            if *t <= event_time {
                submissions += 1;
                if let Some(e) = e {
                    emails.insert(e.as_str());
                }
            }
        }
        let counts = ApplicantCounts {
            submissions,
            emails: emails.len() as u64,
        };
        if added {
            self.record(|| StateChange::Applicant {
                applicant_id: applicant_id.to_string(),
                submission_id: submission_id.to_string(),
                email: email.map(str::to_string),
                event_time,
            });
        }
        counts
    }

    fn has_fired(&self, rule_id: &str, submission_id: &str) -> bool {
        self.fired
            .get(rule_id)
            .is_some_and(|s| s.contains(submission_id))
    }

    fn mark_fired(&mut self, rule_id: &str, submission_id: &str) {
        let new = self
            .fired
            .entry(rule_id.to_string())
            .or_default()
            .insert(submission_id.to_string());
        if new {
            self.record(|| StateChange::Fired {
                rule_id: rule_id.to_string(),
                submission_id: submission_id.to_string(),
            });
        }
    }

    fn window_add(&mut self, rule_id: &str, key: &str, member: WindowMember) {
        let w = self
            .windows
            .entry(rule_id.to_string())
            .or_default()
            .entry(key.to_string())
            .or_default();
        if w.members.contains_key(&member.submission_id) {
            return;
        }
        w.members
            .insert(member.submission_id.clone(), member.event_time);
        w.live
            .insert((member.event_time, member.submission_id.clone()));
        self.record(|| StateChange::WindowAdd {
            rule_id: rule_id.to_string(),
            key: key.to_string(),
            submission_id: member.submission_id,
            event_time: member.event_time,
        });
    }

    fn window_members(
        &self,
        rule_id: &str,
        key: &str,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Vec<WindowMember> {
        let Some(w) = self.windows.get(rule_id).and_then(|m| m.get(key)) else {
            return Vec::new();
        };
        w.live
            .iter()
            .filter(|(t, _)| *t > after && *t <= until)
            .map(|(t, id)| WindowMember {
                submission_id: id.clone(),
                event_time: *t,
            })
            .collect()
    }

    fn window_consume(&mut self, rule_id: &str, key: &str, submission_ids: &[String]) {
        if let Some(w) = self.windows.get_mut(rule_id).and_then(|m| m.get_mut(key)) {
            for id in submission_ids {
                if let Some(t) = w.members.get(id) {
                    w.live.remove(&(*t, id.clone()));
                }
            }
        }
        self.record(|| StateChange::WindowConsume {
            rule_id: rule_id.to_string(),
            key: key.to_string(),
            submission_ids: submission_ids.to_vec(),
        });
    }

    fn throttled_until(&self, rule_id: &str, key: &str) -> Option<DateTime<Utc>> {
        self.throttles.get(rule_id)?.get(key).copied()
    }

    fn set_throttle(&mut self, rule_id: &str, key: &str, until: DateTime<Utc>) {
        self.throttles
            .entry(rule_id.to_string())
            .or_default()
            .insert(key.to_string(), until);
        self.record(|| StateChange::Throttle {
            rule_id: rule_id.to_string(),
            key: key.to_string(),
            until,
        });
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 10, min, 0).unwrap()
    }

    fn member(id: &str, t: DateTime<Utc>) -> WindowMember {
        WindowMember {
            submission_id: id.into(),
            event_time: t,
        }
    }

    /// The bug the daemon had: a pending submission decided later counted
    /// its applicant's members only up to its own first event time.
    #[test]
    fn applicant_counts_reach_the_current_versions_event_time() {
        let mut s = MemoryState::new();
        let c = s.applicant_counts("a", "p1", Some("one@x"), at(0));
        assert_eq!((c.submissions, c.emails), (1, 1));
        s.applicant_counts("a", "p2", Some("two@x"), at(1));
        s.applicant_counts("a", "p3", Some("three@x"), at(2));
        // p1 again (decided at 10:05): three members by then, under three emails.
        let c = s.applicant_counts("a", "p1", Some("one@x"), at(5));
        assert_eq!((c.submissions, c.emails), (3, 3));
        // A version before p3 appeared sees only what existed then.
        let c = s.applicant_counts("a", "p2", Some("two@x"), at(1));
        assert_eq!((c.submissions, c.emails), (2, 2));
    }

    #[test]
    fn the_journal_holds_only_effective_changes() {
        let mut s = MemoryState::journaled();
        s.applicant_counts("a", "p1", Some("one@x"), at(0));
        s.applicant_counts("a", "p1", Some("one@x"), at(3));
        s.mark_fired("r", "p1");
        s.mark_fired("r", "p1");
        s.window_add("w", "k", member("p1", at(0)));
        s.window_add("w", "k", member("p1", at(3)));
        let kinds: Vec<&str> = s
            .take_journal()
            .iter()
            .map(|c| match c {
                StateChange::Applicant { .. } => "applicant",
                StateChange::Fired { .. } => "fired",
                StateChange::WindowAdd { .. } => "window_add",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["applicant", "fired", "window_add"]);
        assert!(s.take_journal().is_empty());
        assert!(MemoryState::new().take_journal().is_empty());
    }

    /// What the daemon does: forget old members, then reload the batch's
    /// memberships from the store before it is evaluated. A consumed member
    /// seen again must not come back to life at its new event time.
    #[test]
    fn a_forgotten_member_reloaded_still_counts_once() {
        let mut s = MemoryState::journaled();
        s.window_add("w", "k", member("p1", at(0)));
        s.window_consume("w", "k", &["p1".into()]);
        s.forget_before(at(10));
        assert_eq!(s.window_count(), 0);
        s.load_window_member("w".into(), "k".into(), "p1".into(), at(0), true);
        s.take_journal();
        s.window_add("w", "k", member("p1", at(30)));
        assert!(s.window_members("w", "k", at(0), at(59)).is_empty());
        assert!(s.take_journal().is_empty(), "nothing new to write");
    }

    #[test]
    fn loading_never_overrides_the_cache() {
        let mut s = MemoryState::journaled();
        s.set_result("p1", Some("approved"));
        s.load_result("p1".into(), Some("pending".into()));
        assert_eq!(s.previous_result("p1").as_deref(), Some("approved"));
        s.set_throttle("r", "k", at(30));
        s.load_throttle("r".into(), "k".into(), at(10));
        assert_eq!(s.throttled_until("r", "k"), Some(at(30)));
        // Loaded emails are normalized as the engine normalizes its own.
        s.load_applicant_member("a".into(), "p0".into(), Some(" ONE@x ".into()), at(0));
        let c = s.applicant_counts("a", "p1", Some("one@x"), at(1));
        assert_eq!((c.submissions, c.emails), (2, 1));
    }
}

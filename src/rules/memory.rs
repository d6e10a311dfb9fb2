//! [`RuleState`] in memory: for `eval`, `test` and benchmarks, where the
//! state is built from the input alone and thrown away afterwards.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::state::{ApplicantCounts, RuleState, WindowMember};

#[derive(Debug, Default)]
struct WindowState {
    /// Every submission ever counted here (consumed or not): counts once.
    counted: HashSet<String>,
    /// Unconsumed members, ordered by (event time, submission id).
    live: BTreeMap<(DateTime<Utc>, String), ()>,
}

#[derive(Debug, Default)]
struct Applicant {
    /// submission id -> (first event time, email)
    submissions: HashMap<String, (DateTime<Utc>, Option<String>)>,
}

/// In-memory rule state (plain hash maps).
#[derive(Debug, Default)]
pub struct MemoryState {
    results: HashMap<String, Option<String>>,
    applicants: HashMap<String, Applicant>,
    fired: HashMap<String, HashSet<String>>,
    windows: HashMap<String, HashMap<String, WindowState>>,
    throttles: HashMap<String, HashMap<String, DateTime<Utc>>>,
}

impl MemoryState {
    pub fn new() -> Self {
        Self::default()
    }
}

impl RuleState for MemoryState {
    fn previous_result(&self, submission_id: &str) -> Option<String> {
        self.results.get(submission_id).cloned().flatten()
    }

    fn set_result(&mut self, submission_id: &str, result: Option<&str>) {
        self.results
            .insert(submission_id.to_string(), result.map(str::to_string));
    }

    fn applicant_counts(
        &mut self,
        applicant_id: &str,
        submission_id: &str,
        email: Option<&str>,
        event_time: DateTime<Utc>,
    ) -> ApplicantCounts {
        let applicant = self.applicants.entry(applicant_id.to_string()).or_default();
        applicant
            .submissions
            .entry(submission_id.to_string())
            .or_insert_with(|| (event_time, email.map(str::to_string)));
        let mut emails = HashSet::new();
        let mut submissions = 0;
        for (t, e) in applicant.submissions.values() {
            if *t <= event_time {
                submissions += 1;
                if let Some(e) = e {
                    emails.insert(e.as_str());
                }
            }
        }
        ApplicantCounts {
            submissions,
            emails: emails.len() as u64,
        }
    }

    fn has_fired(&self, rule_id: &str, submission_id: &str) -> bool {
        self.fired
            .get(rule_id)
            .is_some_and(|s| s.contains(submission_id))
    }

    fn mark_fired(&mut self, rule_id: &str, submission_id: &str) {
        self.fired
            .entry(rule_id.to_string())
            .or_default()
            .insert(submission_id.to_string());
    }

    fn window_add(&mut self, rule_id: &str, key: &str, member: WindowMember) {
        let w = self
            .windows
            .entry(rule_id.to_string())
            .or_default()
            .entry(key.to_string())
            .or_default();
        if w.counted.insert(member.submission_id.clone()) {
            w.live.insert((member.event_time, member.submission_id), ());
        }
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
            .keys()
            .filter(|(t, _)| *t > after && *t <= until)
            .map(|(t, id)| WindowMember {
                submission_id: id.clone(),
                event_time: *t,
            })
            .collect()
    }

    fn window_consume(&mut self, rule_id: &str, key: &str, submission_ids: &[String]) {
        if let Some(w) = self.windows.get_mut(rule_id).and_then(|m| m.get_mut(key)) {
            w.live.retain(|(_, id), _| !submission_ids.contains(id));
        }
    }

    fn throttled_until(&self, rule_id: &str, key: &str) -> Option<DateTime<Utc>> {
        self.throttles.get(rule_id)?.get(key).copied()
    }

    fn set_throttle(&mut self, rule_id: &str, key: &str, until: DateTime<Utc>) {
        self.throttles
            .entry(rule_id.to_string())
            .or_default()
            .insert(key.to_string(), until);
    }
}

//! The rule engine's state during the daemon's life: a cache of the store,
//! with a journal of every change the engine makes.
//!
//! Open windows and live throttles are few, so they are loaded once at start
//! and kept in memory. Per-submission facts (previous result, which rules
//! fired, the applicant index) grow with every submission, so only what a
//! batch needs is prefetched before it is evaluated and dropped after it is
//! committed: memory stays flat however many submissions go by.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};

use crate::rules::state::{ApplicantCounts, RuleState, WindowMember};
use crate::store::{ApplicantRows, BatchPrefetch, StateChange, StoredWindowMember};

#[derive(Debug, Clone)]
struct Member {
    submission_id: String,
    event_time: DateTime<Utc>,
    consumed: bool,
}

#[derive(Debug, Default)]
pub struct CachedState {
    results: HashMap<String, Option<String>>,
    fired: HashSet<(String, String)>,
    applicants: HashMap<String, ApplicantRows>,
    windows: HashMap<(String, String), Vec<Member>>,
    throttles: HashMap<(String, String), DateTime<Utc>>,
    journal: Vec<StateChange>,
}

impl CachedState {
    pub fn new(
        windows: Vec<StoredWindowMember>,
        throttles: Vec<(String, String, DateTime<Utc>)>,
    ) -> Self {
        let mut s = Self::default();
        for m in windows {
            s.windows
                .entry((m.rule_id, m.key))
                .or_default()
                .push(Member {
                    submission_id: m.submission_id,
                    event_time: m.event_time,
                    consumed: m.consumed,
                });
        }
        for (rule, key, until) in throttles {
            s.throttles.insert((rule, key), until);
        }
        s
    }

    /// Loads what the next batch needs (see module docs).
    /// What the cache already holds wins: with deferred commits it is newer
    /// than the store.
    pub fn load_batch(&mut self, pre: BatchPrefetch) {
        for (id, result) in pre.results {
            self.results.entry(id).or_insert(result);
        }
        self.fired.extend(pre.fired);
        for (applicant, rows) in pre.applicants {
            self.applicants.entry(applicant).or_insert(rows);
        }
    }

    /// Takes the changes made since the last call, for the batch's transaction.
    pub fn take_journal(&mut self) -> Vec<StateChange> {
        std::mem::take(&mut self.journal)
    }

    /// Forgets the per-submission facts once the batch is committed, and
    /// window members older than `horizon` (no window reaches back so far).
    pub fn end_batch(&mut self, horizon: DateTime<Utc>) {
        self.results.clear();
        self.fired.clear();
        self.applicants.clear();
        self.windows.retain(|_, members| {
            members.retain(|m| m.event_time > horizon);
            !members.is_empty()
        });
        self.throttles.retain(|_, until| *until > horizon);
    }

    /// Window members held in memory (for metrics and the memory benchmark).
    pub fn window_count(&self) -> usize {
        self.windows.values().map(Vec::len).sum()
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

impl RuleState for CachedState {
    fn previous_result(&self, submission_id: &str) -> Option<String> {
        self.results.get(submission_id).cloned().flatten()
    }

    fn set_result(&mut self, submission_id: &str, result: Option<&str>) {
        let result = result.map(str::to_owned);
        self.results
            .insert(submission_id.to_owned(), result.clone());
        self.journal.push(StateChange::Result {
            submission_id: submission_id.to_owned(),
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
        let rows = self.applicants.entry(applicant_id.to_owned()).or_default();
        if !rows.iter().any(|(id, _, _)| id == submission_id) {
            rows.push((
                submission_id.to_owned(),
                email.map(str::to_owned),
                event_time,
            ));
            self.journal.push(StateChange::Applicant {
                applicant_id: applicant_id.to_owned(),
                submission_id: submission_id.to_owned(),
                email: email.map(str::to_owned),
                event_time,
            });
        }
        let upto = rows
            .iter()
            .find(|(id, _, _)| id == submission_id)
            .map(|(_, _, t)| *t)
            .unwrap_or(event_time);
        let mut emails: Vec<String> = Vec::new();
        let mut submissions = 0;
        for (_, e, t) in rows.iter().filter(|(_, _, t)| *t <= upto) {
            let _ = t;
            submissions += 1;
            if let Some(e) = e {
                let e = e.to_lowercase();
                if !emails.contains(&e) {
                    emails.push(e);
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
            .contains(&(rule_id.to_owned(), submission_id.to_owned()))
    }

    fn mark_fired(&mut self, rule_id: &str, submission_id: &str) {
        if self
            .fired
            .insert((rule_id.to_owned(), submission_id.to_owned()))
        {
            self.journal.push(StateChange::Fired {
                rule_id: rule_id.to_owned(),
                submission_id: submission_id.to_owned(),
            });
        }
    }

    fn window_add(&mut self, rule_id: &str, key: &str, member: WindowMember) {
        let members = self
            .windows
            .entry((rule_id.to_owned(), key.to_owned()))
            .or_default();
        if members
            .iter()
            .any(|m| m.submission_id == member.submission_id)
        {
            return;
        }
        self.journal.push(StateChange::WindowAdd {
            rule_id: rule_id.to_owned(),
            key: key.to_owned(),
            submission_id: member.submission_id.clone(),
            event_time: member.event_time,
        });
        members.push(Member {
            submission_id: member.submission_id,
            event_time: member.event_time,
            consumed: false,
        });
    }

    fn window_members(
        &self,
        rule_id: &str,
        key: &str,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Vec<WindowMember> {
        let Some(members) = self.windows.get(&(rule_id.to_owned(), key.to_owned())) else {
            return Vec::new();
        };
        let mut out: Vec<WindowMember> = members
            .iter()
            .filter(|m| !m.consumed && m.event_time > after && m.event_time <= until)
            .map(|m| WindowMember {
                submission_id: m.submission_id.clone(),
                event_time: m.event_time,
            })
            .collect();
        out.sort_by(|a, b| (a.event_time, &a.submission_id).cmp(&(b.event_time, &b.submission_id)));
        out
    }

    fn window_consume(&mut self, rule_id: &str, key: &str, submission_ids: &[String]) {
        if let Some(members) = self.windows.get_mut(&(rule_id.to_owned(), key.to_owned())) {
            for m in members.iter_mut() {
                if submission_ids.contains(&m.submission_id) {
                    m.consumed = true;
                }
            }
        }
        self.journal.push(StateChange::WindowConsume {
            rule_id: rule_id.to_owned(),
            key: key.to_owned(),
            submission_ids: submission_ids.to_vec(),
        });
    }

    fn throttled_until(&self, rule_id: &str, key: &str) -> Option<DateTime<Utc>> {
        self.throttles
            .get(&(rule_id.to_owned(), key.to_owned()))
            .copied()
    }

    fn set_throttle(&mut self, rule_id: &str, key: &str, until: DateTime<Utc>) {
        self.throttles
            .insert((rule_id.to_owned(), key.to_owned()), until);
        self.journal.push(StateChange::Throttle {
            rule_id: rule_id.to_owned(),
            key: key.to_owned(),
            until,
        });
    }
}

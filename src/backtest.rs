//! Safe rule changes (issue 18): a candidate rule set replayed over the
//! stored submission versions, and the comparison of two sets of alerts.
//!
//! The replay is the engine's own evaluation over a fresh [`MemoryState`] (the
//! one rule-state implementation), in event-time order, with no I/O inside
//! it: the versions are read before, and nothing is sent or written after.
//! The comparison is pure, so `shadow report` (a shadow rule against the rule
//! it replaces) and `backtest` (candidates against the live alerts) count
//! alike: one unit, the submission an alert fired on, per rule.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::rules::{MemoryState, Projection, RuleSet};
use futures::StreamExt;

use crate::store::shadow::{FiredAlert, ShadowStore, StoredVersion};

/// How many submission ids each example list shows.
pub const EXAMPLES: usize = 5;

/// Submissions alerted on by two sides, and where they differ.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Overlap {
    /// Distinct submissions alerted on by the first side (live / replaced).
    pub a: usize,
    /// Distinct submissions alerted on by the second side (candidate / shadow).
    pub b: usize,
    pub both: usize,
    pub only_a: usize,
    pub only_b: usize,
    pub examples_both: Vec<String>,
    pub examples_only_a: Vec<String>,
    pub examples_only_b: Vec<String>,
}

/// Compares two sets of submission ids.
pub fn overlap(a: &BTreeSet<String>, b: &BTreeSet<String>) -> Overlap {
    let ex = |it: &mut dyn Iterator<Item = &String>| it.take(EXAMPLES).cloned().collect();
    Overlap {
        a: a.len(),
        b: b.len(),
        both: a.intersection(b).count(),
        only_a: a.difference(b).count(),
        only_b: b.difference(a).count(),
        examples_both: ex(&mut a.intersection(b)),
        examples_only_a: ex(&mut a.difference(b)),
        examples_only_b: ex(&mut b.difference(a)),
    }
}

/// Analysts' outcomes of a group of live alerts (one per submission).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    pub false_positive: usize,
    pub escalated_to_aml_officer: usize,
    pub reported: usize,
    /// Resolved with a free-text outcome.
    pub other: usize,
    /// Not resolved (yet).
    pub unresolved: usize,
}

impl Outcomes {
    fn add(&mut self, outcome: Option<&str>) {
        match outcome {
            Some("false_positive") => self.false_positive += 1,
            Some("escalated_to_aml_officer") => self.escalated_to_aml_officer += 1,
            Some("reported") => self.reported += 1,
            Some(_) => self.other += 1,
            None => self.unresolved += 1,
        }
    }

    /// Confirmed (reported or escalated) over confirmed plus false positives;
    /// `None` when no alert has either outcome.
    pub fn precision(&self) -> Option<f64> {
        let good = self.reported + self.escalated_to_aml_officer;
        let judged = good + self.false_positive;
        (judged > 0).then(|| good as f64 / judged as f64)
    }
}

/// The outcome that says most about a submission with several alerts of
/// one rule: reported, then escalated, then false positive, then free text.
fn rank(outcome: Option<&str>) -> u8 {
    match outcome {
        Some("reported") => 5,
        Some("escalated_to_aml_officer") => 4,
        Some("false_positive") => 3,
        Some(_) => 2,
        None => 1,
    }
}

/// One candidate rule against the live rule it is compared with.
#[derive(Debug, Clone, Serialize)]
pub struct RuleComparison {
    /// The candidate rule's id (`None`: the live rule has no candidate).
    pub candidate: Option<String>,
    /// The live rule compared with: the candidate's `replaces`, else its id.
    pub live: String,
    pub alerts_live: usize,
    pub alerts_candidate: usize,
    pub both: usize,
    pub only_live: usize,
    pub only_candidate: usize,
    pub examples_both: Vec<String>,
    pub examples_only_live: Vec<String>,
    pub examples_only_candidate: Vec<String>,
    /// Outcomes of the live alerts the candidate also fires (keeps).
    pub kept: Outcomes,
    /// Outcomes of the live alerts the candidate would not fire (drops).
    pub dropped: Outcomes,
    pub precision_live: Option<f64>,
    pub precision_candidate: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BacktestReport {
    pub from: String,
    pub to: String,
    /// Stored versions with event time in the period.
    pub versions: usize,
    pub evaluated: usize,
    /// Versions whose raw JSON retention purged (not evaluated), and their ids.
    pub skipped_purged: usize,
    pub skipped: Vec<String>,
    /// Versions that could not be read or evaluated: `id: why`.
    pub unreadable: Vec<String>,
    pub rules: Vec<RuleComparison>,
    /// Over all rules: false positives the candidates would have avoided,
    /// reported / escalated alerts they would have missed.
    pub false_positives_avoided: usize,
    pub reported_missed: usize,
    pub escalated_missed: usize,
    pub rule_errors: usize,
    pub elapsed_ms: u64,
    pub versions_per_second: u64,
}

/// The candidates' alerts: rule id -> submission ids.
pub type Fired = BTreeMap<String, BTreeSet<String>>;

/// What the replay produced.
#[derive(Debug, Default)]
pub struct Replay {
    pub versions: usize,
    pub evaluated: usize,
    pub skipped: Vec<String>,
    pub unreadable: Vec<String>,
    pub fired: Fired,
    pub rule_errors: usize,
}

/// How many versions go to evaluation at a time.
const CHUNK: usize = 2000;

/// Evaluates `rules` over the stored versions with event time in
/// `[from, to)`, in event-time order, with fresh state. Reads only.
pub async fn replay(
    store: Arc<dyn ShadowStore>,
    rules: &RuleSet,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> crate::store::Result<Replay> {
    // A reader task reads and parses the next chunks (on another core) while
    // this one is evaluated.
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    // Only the fields the candidates read are built; the rest is scanned.
    let projection = rules.projection();
    let reader = tokio::spawn(async move {
        let mut stream = store.versions(from, to);
        let mut chunk = Parsed::default();
        while let Some(v) = stream.next().await {
            let v = match v {
                Ok(v) => v,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            chunk.add(v, projection.as_ref());
            if chunk.versions == CHUNK && tx.send(Ok(std::mem::take(&mut chunk))).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Ok(chunk)).await;
    });
    let mut out = Replay::default();
    let mut state = MemoryState::new();
    while let Some(chunk) = rx.recv().await {
        evaluate_chunk(rules, &mut state, chunk?, &mut out);
    }
    let _ = reader.await;
    Ok(out)
}

/// A chunk read: the versions parsed, in event-time order, and those whose
/// raw JSON was purged or cannot be parsed.
#[derive(Default)]
struct Parsed {
    versions: usize,
    docs: Vec<serde_json::Value>,
    skipped: Vec<String>,
    unreadable: Vec<String>,
}

impl Parsed {
    fn add(&mut self, v: StoredVersion, projection: Option<&Projection>) {
        self.versions += 1;
        let Some(raw) = v.raw else {
            self.skipped.push(v.submission_id);
            return;
        };
        let doc = match projection {
            Some(p) => p.parse(&raw),
            None => serde_json::from_str::<serde_json::Value>(&raw),
        };
        match doc {
            Ok(doc) => self.docs.push(doc),
            Err(e) => self
                .unreadable
                .push(format!("{}: stored JSON unreadable: {e}", v.submission_id)),
        }
    }
}

fn evaluate_chunk(rules: &RuleSet, state: &mut MemoryState, chunk: Parsed, out: &mut Replay) {
    out.versions += chunk.versions;
    out.skipped.extend(chunk.skipped);
    out.unreadable.extend(chunk.unreadable);
    // Chunks follow the index's event-time order; within a chunk the engine
    // sorts by the event time it reads from each version.
    let docs = chunk.docs;
    let batch = rules.evaluate_batch(&docs, state);
    for r in batch.rejected {
        let id = r.submission_id.unwrap_or_else(|| "?".into());
        out.unreadable.push(format!("{id}: {}", r.reason));
    }
    for s in &batch.submissions {
        out.evaluated += 1;
        out.rule_errors += s.errors.len();
        for a in &s.alerts {
            out.fired
                .entry(a.rule.clone())
                .or_default()
                .insert(a.submission_id.clone());
        }
    }
}

/// Per live rule: submission id -> the outcome that says most.
fn live_by_rule(live: &[FiredAlert]) -> BTreeMap<String, BTreeMap<String, Option<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Option<String>>> = BTreeMap::new();
    for a in live {
        let subs = out.entry(a.rule.clone()).or_default();
        let slot = subs.entry(a.submission_id.clone()).or_insert(None);
        if rank(a.outcome.as_deref()) > rank(slot.as_deref()) {
            *slot = a.outcome.clone();
        }
    }
    out
}

/// Compares the candidates' alerts with the live alerts of the period.
pub fn compare(candidates: &RuleSet, fired: &Fired, live: &[FiredAlert]) -> Vec<RuleComparison> {
    let live = live_by_rule(live);
    let empty_live = BTreeMap::new();
    let empty_fired = BTreeSet::new();
    let mut out = Vec::new();
    let mut paired = BTreeSet::new();
    for rule in candidates.rules() {
        let target = rule.replaces.clone().unwrap_or_else(|| rule.id.clone());
        paired.insert(target.clone());
        let l = live.get(&target).unwrap_or(&empty_live);
        let c = fired.get(&rule.id).unwrap_or(&empty_fired);
        out.push(one(Some(rule.id.clone()), target, l, c));
    }
    for (rule, l) in &live {
        if !paired.contains(rule) {
            out.push(one(None, rule.clone(), l, &empty_fired));
        }
    }
    out
}

fn one(
    candidate: Option<String>,
    live_rule: String,
    live: &BTreeMap<String, Option<String>>,
    cand: &BTreeSet<String>,
) -> RuleComparison {
    let live_ids: BTreeSet<String> = live.keys().cloned().collect();
    let o = overlap(&live_ids, cand);
    let (mut kept, mut dropped) = (Outcomes::default(), Outcomes::default());
    for (id, outcome) in live {
        let side = if cand.contains(id) {
            &mut kept
        } else {
            &mut dropped
        };
        side.add(outcome.as_deref());
    }
    let mut all = kept;
    all.false_positive += dropped.false_positive;
    all.escalated_to_aml_officer += dropped.escalated_to_aml_officer;
    all.reported += dropped.reported;
    RuleComparison {
        candidate,
        live: live_rule,
        alerts_live: o.a,
        alerts_candidate: o.b,
        both: o.both,
        only_live: o.only_a,
        only_candidate: o.only_b,
        examples_both: o.examples_both,
        examples_only_live: o.examples_only_a,
        examples_only_candidate: o.examples_only_b,
        precision_live: all.precision(),
        precision_candidate: kept.precision(),
        kept,
        dropped,
    }
}

/// Replays `candidates` and compares them with the live alerts of `[from, to)`.
pub async fn run(
    store: Arc<dyn ShadowStore>,
    candidates: &RuleSet,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> crate::store::Result<BacktestReport> {
    let started = Instant::now();
    let replay = replay(store.clone(), candidates, from, to).await?;
    let elapsed = started.elapsed();
    let live = store.live_alerts_between(from, to).await?;
    let rules = compare(candidates, &replay.fired, &live);
    let sum = |f: fn(&RuleComparison) -> usize| rules.iter().map(f).sum();
    Ok(BacktestReport {
        from: crate::store::fmt_time(from),
        to: crate::store::fmt_time(to),
        versions: replay.versions,
        evaluated: replay.evaluated,
        skipped_purged: replay.skipped.len(),
        skipped: replay.skipped,
        unreadable: replay.unreadable,
        false_positives_avoided: sum(|r| r.dropped.false_positive),
        reported_missed: sum(|r| r.dropped.reported),
        escalated_missed: sum(|r| r.dropped.escalated_to_aml_officer),
        rule_errors: replay.rule_errors,
        elapsed_ms: elapsed.as_millis() as u64,
        versions_per_second: (replay.versions as f64 / elapsed.as_secs_f64().max(1e-9)) as u64,
        rules,
    })
}

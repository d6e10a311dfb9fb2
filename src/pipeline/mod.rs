//! The daemon's pipeline: detect changed versions -> evaluate -> commit.
//!
//! [`Pipeline::process`] takes submissions as fetched (from a page, a re-fetch
//! by id, a backfill day or a webhook hint), keeps only versions it has not
//! processed, evaluates them in event-time order and writes everything the
//! evaluation decided in one transaction. Until that transaction commits,
//! nothing is marked processed: a crash anywhere re-does the batch.

pub mod hash;
pub mod state;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::Notify;

use crate::argos::model::{Keys, event_time};
use crate::notify::routing::Router;
use crate::notify::silence::silenced_by;
use crate::rules::state::RuleState;
use crate::rules::{BatchOutcome, RuleSet};
pub use crate::store::Source;
use crate::store::prelude::*;
use crate::store::{AlertRow, AuditRow, BatchCommit, GroupInsert, ShadowAlertRow, VersionRow};
use state::CachedState;

/// What one batch did, for logs, metrics and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchReport {
    pub received: usize,
    pub changed: usize,
    pub alerts: usize,
    pub rule_errors: usize,
    pub unreadable: usize,
    /// Quiet mode only: per rule, the alerts that a receiver would have been
    /// told about (routed, not silenced) had they been live.
    pub would_notify: std::collections::BTreeMap<String, usize>,
    /// Alerts of shadow rules: recorded and audited, never routed.
    pub shadow: usize,
}

/// Generic over the store so tests may name a concrete backend; the daemon
/// uses the default, `dyn StateStore`.
pub struct Pipeline<S: ?Sized = dyn StateStore> {
    store: Arc<S>,
    rules: Arc<RuleSet>,
    state: CachedState,
    router: Arc<Router>,
    outbox_wake: Arc<Notify>,
    /// Latest event time processed: window state older than the longest
    /// window before it can no longer count, and is dropped from memory.
    /// Event time, not the wall clock, so a backfill of last year keeps its windows.
    high_water: Option<DateTime<Utc>>,
    applicant_lookup: Option<ApplicantLookup>,
    /// Batches evaluated but not committed yet (see [`Pipeline::commit_every`]).
    pending: Pending,
    commit_every: usize,
    /// Record alerts as `historical` and route none of them (quiet backfill).
    quiet: bool,
}

/// Evaluated batches waiting for their shared transaction. Their versions
/// count as seen and their state stays in the cache, so a later batch of the
/// same transaction sees them exactly as if they had been committed.
#[derive(Default)]
struct Pending {
    commit: BatchCommit,
    /// submission_id -> content hash of the versions in `commit`.
    versions: HashMap<String, String>,
    alerts: usize,
    newest: Option<DateTime<Utc>>,
}

/// Asks Argos's applicant endpoint which submissions are the same person, so
/// duplicates from before the engine started count too. Cached per applicant
/// for `ttl`; a failed lookup is logged and the store's view is used.
pub struct ApplicantLookup {
    client: crate::argos::ArgosClient,
    ttl: std::time::Duration,
    fetched: HashMap<String, std::time::Instant>,
}

impl ApplicantLookup {
    pub fn new(client: crate::argos::ArgosClient, ttl: std::time::Duration) -> Self {
        Self {
            client,
            ttl,
            fetched: HashMap::new(),
        }
    }

    async fn enrich(&mut self, applicant_ids: &[&str], pre: &mut crate::store::BatchPrefetch) {
        self.fetched.retain(|_, at| at.elapsed() < self.ttl);
        for id in applicant_ids {
            if self.fetched.contains_key(*id) {
                continue;
            }
            match self.client.applicant(id).await {
                Ok(entries) => {
                    self.fetched
                        .insert((*id).to_owned(), std::time::Instant::now());
                    let rows = pre.applicants.entry((*id).to_owned()).or_default();
                    for e in entries {
                        let Some(sid) = e.submission_id else { continue };
                        if !rows.iter().any(|(s, _, _)| *s == sid) {
                            // Known to Argos but never seen here: it came before
                            // anything this engine saw, so it sorts first.
                            rows.push((sid, e.email, DateTime::<Utc>::MIN_UTC));
                        }
                    }
                }
                // The budget logged its one warning; the store's view is used.
                Err(e) if e.is_budget_exhausted() => {}
                Err(e) => tracing::warn!(
                    applicant_id = id,
                    "applicant lookup failed, using the store's view: {e}"
                ),
            }
        }
    }
}

struct Candidate {
    id: String,
    hash: String,
    event_time: DateTime<Utc>,
    doc: Value,
    /// The text as fetched, when the caller kept it (stored as is).
    raw: Option<String>,
}

impl<S: StateStore + ?Sized> Pipeline<S> {
    /// Loads the open windows and live throttles from the store.
    pub async fn new(
        store: impl Into<Arc<S>>,
        rules: Arc<RuleSet>,
        router: Arc<Router>,
        outbox_wake: Arc<Notify>,
    ) -> crate::store::Result<Self> {
        let store: Arc<S> = store.into();
        let high_water = store.latest_window_event().await?;
        let state = Self::load_state(&store, &rules, high_water).await?;
        Ok(Self {
            store,
            rules,
            state,
            router,
            outbox_wake,
            high_water,
            applicant_lookup: None,
            pending: Pending::default(),
            commit_every: 0,
            quiet: false,
        })
    }

    /// Commits once at least `n` changed versions have been evaluated instead
    /// of once per batch; [`Self::flush`] commits the rest. For `backfill`:
    /// submission ids are random, so every commit rewrites pages all over the
    /// key indexes, and fewer, larger commits write far less. Nothing is
    /// marked processed before its commit, so a crash re-does at most `n`
    /// versions. 0 (the default) commits every batch.
    pub fn commit_every(mut self, n: usize) -> Self {
        self.commit_every = n;
        self
    }

    /// Judges quietly: decisions, alerts, audit rows and rule state are
    /// recorded as usual, but alerts are stored as `historical` and never
    /// routed, so no notification, escalation or digest treats them as new.
    /// For a first backfill of history nobody needs to be paged for.
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// Commits the batches evaluated since the last commit.
    pub async fn flush(&mut self) -> crate::store::Result<()> {
        if self.pending.versions.is_empty() && self.pending.commit.audit.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let mut commit = pending.commit;
        commit.state = self.state.take_journal();
        // If the commit fails the in-memory state may be ahead of the store:
        // rebuild it from the store before the next batch.
        if let Err(e) = self.store.commit_batch(commit).await {
            self.state = Self::load_state(&self.store, &self.rules, self.high_water)
                .await
                .unwrap_or_default();
            return Err(e);
        }
        self.high_water = self.high_water.max(pending.newest);
        if let Some(t) = self.high_water {
            self.state
                .end_batch(state::retention_horizon(t, longest_memory(&self.rules)));
        }
        if pending.alerts > 0 {
            self.outbox_wake.notify_one();
        }
        Ok(())
    }

    /// Also ask Argos's applicant endpoint (see [`ApplicantLookup`]).
    pub fn with_applicant_lookup(mut self, lookup: ApplicantLookup) -> Self {
        self.applicant_lookup = Some(lookup);
        self
    }

    async fn load_state(
        store: &S,
        rules: &RuleSet,
        high_water: Option<DateTime<Utc>>,
    ) -> crate::store::Result<CachedState> {
        let horizon = match high_water {
            Some(t) => state::retention_horizon(t, longest_memory(rules)),
            None => DateTime::<Utc>::MIN_UTC,
        };
        let (windows, throttles) = store.open_windows(horizon).await?;
        Ok(CachedState::new(windows, throttles))
    }

    /// Loads the stored window memberships of the batch's submissions the
    /// cache has forgotten (older than the retention horizon): a submission
    /// seen again long after it was counted must not count again.
    async fn load_window_memberships(&mut self, changed: &[Candidate]) -> crate::store::Result<()> {
        let keys: Vec<(&str, String, &str)> = changed
            .iter()
            .flat_map(|c| {
                self.rules
                    .window_keys(&c.doc)
                    .into_iter()
                    .map(|(rule, key)| (rule, key, c.id.as_str()))
            })
            .filter(|(rule, key, id)| !self.state.counts(rule, key, id))
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let triples: Vec<(&str, &str, &str)> = keys
            .iter()
            .map(|(r, k, id)| (*r, k.as_str(), *id))
            .collect();
        let members = self.store.window_memberships(&triples).await?;
        self.state.load_windows(members);
        Ok(())
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Swaps the rule set (hot reload). Window state is kept per rule id.
    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        self.rules = rules;
    }

    /// Swaps the routing tree (hot reload); alerts already routed stay put.
    pub fn set_router(&mut self, router: Arc<Router>) {
        self.router = router;
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// Processes one batch fetched by the poller; `origin` names where it
    /// came from (for errors).
    pub async fn process(
        &mut self,
        items: Vec<Value>,
        origin: &str,
    ) -> crate::store::Result<BatchReport> {
        self.process_from(items, origin, Source::Poll).await
    }

    /// [`Self::process`] for a batch fetched by another path (a webhook hint,
    /// a backfill): the store counts which path found each version first.
    pub async fn process_from(
        &mut self,
        items: Vec<Value>,
        origin: &str,
        source: Source,
    ) -> crate::store::Result<BatchReport> {
        let items = items.into_iter().map(|doc| (doc, None)).collect();
        self.process_items(items, Vec::new(), origin, source).await
    }

    /// [`Self::process_from`] for submissions kept as the text Argos sent
    /// (a backfill's pages): each is parsed here, and its text is what the
    /// store keeps, with no re-serialization.
    pub async fn process_raw(
        &mut self,
        items: Vec<Box<serde_json::value::RawValue>>,
        origin: &str,
        source: Source,
    ) -> crate::store::Result<BatchReport> {
        let mut parsed = Vec::with_capacity(items.len());
        let mut audit = Vec::new();
        for (i, raw) in items.into_iter().enumerate() {
            match serde_json::from_str::<Value>(raw.get()) {
                Ok(doc) => parsed.push((doc, Some(String::from(Box::<str>::from(raw))))),
                // Valid JSON (the page parsed), so only a nesting limit gets here.
                Err(e) => {
                    tracing::error!(
                        "{origin}: item {i} cannot be read ({e}); skipped (recorded in the audit log)"
                    );
                    audit.push(AuditRow {
                        kind: "unreadable",
                        submission_id: None,
                        version_hash: None,
                        rule_id: None,
                        rule_version: None,
                        fingerprint: None,
                        detail: serde_json::json!({ "origin": origin, "item": i, "problem": e.to_string() }),
                    });
                }
            }
        }
        self.process_items(parsed, audit, origin, source).await
    }

    async fn process_items(
        &mut self,
        items: Vec<(Value, Option<String>)>,
        mut audit: Vec<AuditRow>,
        origin: &str,
        source: Source,
    ) -> crate::store::Result<BatchReport> {
        let mut report = BatchReport {
            received: items.len() + audit.len(),
            unreadable: audit.len(),
            ..Default::default()
        };

        // 1. Identify each item; the same submission twice in one batch keeps
        //    its latest version.
        let mut by_id: HashMap<String, Candidate> = HashMap::with_capacity(items.len());
        for (i, (doc, raw)) in items.into_iter().enumerate() {
            let keys = Keys::of(&doc);
            let (Some(id), Some(t)) = (keys.submission_id(), event_time(&doc)) else {
                report.unreadable += 1;
                let what = if keys.submission_id().is_none() {
                    "has no submission_id".to_string()
                } else {
                    format!(
                        "submission {} has no readable updated_at/created_at",
                        keys.submission_id().unwrap_or_default()
                    )
                };
                tracing::error!("{origin}: item {i} {what}; skipped (recorded in the audit log)");
                audit.push(AuditRow {
                    kind: "unreadable",
                    submission_id: keys.submission_id().map(str::to_owned),
                    version_hash: Some(hash::content_hash(&doc)),
                    rule_id: None,
                    rule_version: None,
                    fingerprint: None,
                    detail: serde_json::json!({ "origin": origin, "item": i, "problem": what }),
                });
                continue;
            };
            let cand = Candidate {
                id: id.to_owned(),
                hash: hash::content_hash(&doc),
                event_time: t,
                doc,
                raw,
            };
            match by_id.get(&cand.id) {
                Some(prev) if prev.event_time > cand.event_time => {}
                _ => {
                    by_id.insert(cand.id.clone(), cand);
                }
            }
        }

        // 2. Keep the versions not processed yet.
        let ids: Vec<&str> = by_id.keys().map(String::as_str).collect();
        let seen = self.store.seen_versions(&ids).await?;
        let pending = &self.pending.versions;
        let mut changed: Vec<Candidate> = by_id
            .into_values()
            .filter(|c| match pending.get(&c.id) {
                Some(h) => *h != c.hash,
                None => seen.get(&c.id).is_none_or(|s| s.content_hash != c.hash),
            })
            .collect();
        report.changed = changed.len();
        if changed.is_empty() && audit.is_empty() {
            crate::telemetry::emit::batch(report.received, 0, 0);
            return Ok(report);
        }
        changed.sort_by(|a, b| (a.event_time, &a.id).cmp(&(b.event_time, &b.id)));

        // 3. Prefetch the state this batch needs, then evaluate (no I/O).
        let sub_ids: Vec<&str> = changed.iter().map(|c| c.id.as_str()).collect();
        let applicant_ids: Vec<&str> = {
            let mut set = HashSet::new();
            changed
                .iter()
                .filter_map(|c| Keys::of(&c.doc).applicant_id())
                .filter(|a| set.insert(*a))
                .collect()
        };
        let mut pre = self.store.prefetch(&sub_ids, &applicant_ids).await?;
        if let Some(lookup) = &mut self.applicant_lookup {
            lookup.enrich(&applicant_ids, &mut pre).await;
        }
        self.state.load_batch(pre);
        self.load_window_memberships(&changed).await?;

        let mut commit = BatchCommit {
            source,
            ..BatchCommit::default()
        };
        for c in &mut changed {
            let keys = Keys::of(&c.doc);
            commit.versions.push(VersionRow {
                submission_id: c.id.clone(),
                content_hash: c.hash.clone(),
                kyc_result: keys.kyc_result().map(str::to_owned),
                created_at: keys
                    .created_at()
                    .and_then(crate::argos::model::parse_timestamp),
                event_time: c.event_time,
                raw: c.raw.take().unwrap_or_else(|| c.doc.to_string()),
            });
        }
        let hashes: HashMap<&str, &str> = changed
            .iter()
            .map(|c| (c.id.as_str(), c.hash.as_str()))
            .collect();
        let docs: Vec<&Value> = changed.iter().map(|c| &c.doc).collect();
        let outcome = evaluate(&self.rules, &docs, self.state.engine_state());
        // Silences are read only when something fired (rare), at wall-clock
        // now: a silence is about when people get told, not about event time.
        let now = Utc::now();
        let silences = if outcome.submissions.iter().any(|s| !s.alerts.is_empty()) {
            self.store.silences(now, false).await?
        } else {
            Vec::new()
        };

        for sub in &outcome.submissions {
            for alert in &sub.alerts {
                let body = serde_json::to_string(alert).expect("an alert serializes");
                let rule_version = self
                    .rules
                    .rule(&alert.rule)
                    .map(|r| r.version.clone())
                    .unwrap_or_default();
                // The trace is computed only for alerts (rare), never on the hot path.
                let trace =
                    explain_with_derived(&self.rules, &alert.rule, docs[sub.index], &sub.derived);
                let shadow = self.rules.rule(&alert.rule).filter(|r| r.mode.is_shadow());
                audit.push(AuditRow {
                    kind: "decision",
                    submission_id: Some(alert.submission_id.clone()),
                    version_hash: hashes
                        .get(alert.submission_id.as_str())
                        .map(|h| (*h).to_owned()),
                    rule_id: Some(alert.rule.clone()),
                    rule_version: Some(rule_version.clone()),
                    fingerprint: Some(alert.fingerprint.clone()),
                    detail: serde_json::json!({
                        "outcome": "fired",
                        "rule_set_version": self.rules.version(),
                        "submission_ids": alert.submission_ids,
                        "group_key": alert.group_key,
                        "derived": sub.derived,
                        "conditions": trace,
                        "historical": self.quiet,
                        "mode": if shadow.is_some() { "shadow" } else { "live" },
                        "replaces": shadow.and_then(|r| r.replaces.clone()),
                    }),
                });
                let row = AlertRow {
                    fingerprint: alert.fingerprint.clone(),
                    rule_id: alert.rule.clone(),
                    rule_version,
                    severity: alert.severity.as_str().to_owned(),
                    submission_id: alert.submission_id.clone(),
                    group_key: alert.group_key.clone(),
                    event_time: alert.event_time,
                    body,
                };
                if let Some(rule) = shadow {
                    // Recorded and audited, never routed, silenced or escalated.
                    commit.shadow_alerts.push(ShadowAlertRow {
                        alert: row,
                        replaces: rule.replaces.clone(),
                    });
                    report.shadow += 1;
                    crate::telemetry::emit::alert(&alert.rule, alert.severity.as_str(), "shadow");
                    continue;
                }
                if let Some(s) = silenced_by(&silences, alert, now) {
                    audit.push(AuditRow {
                        kind: "silenced",
                        submission_id: Some(alert.submission_id.clone()),
                        version_hash: None,
                        rule_id: Some(alert.rule.clone()),
                        rule_version: Some(row.rule_version.clone()),
                        fingerprint: Some(alert.fingerprint.clone()),
                        detail: serde_json::json!({
                            "silence_id": s.id,
                            "reason": s.reason,
                            "author": s.author,
                            "ends_at": crate::store::fmt_time(s.ends_at),
                        }),
                    });
                } else if self.quiet {
                    if !self.router.route(alert).is_empty() {
                        *report.would_notify.entry(alert.rule.clone()).or_default() += 1;
                    }
                } else {
                    for m in self.router.route(alert) {
                        commit.notify.push(GroupInsert {
                            receiver: m.receiver,
                            group_key: m.group_key,
                            fingerprint: alert.fingerprint.clone(),
                            group_wait: m.group_wait,
                            repeat_interval: m.repeat_interval,
                            escalation: m.escalation,
                        });
                    }
                }
                commit.alerts.push(row);
                report.alerts += 1;
                crate::telemetry::emit::alert(&alert.rule, alert.severity.as_str(), "live");
            }
            for err in &sub.errors {
                report.rule_errors += 1;
                crate::telemetry::emit::rule_error(&err.rule);
                tracing::error!(rule = %err.rule, submission = %crate::util::display_safe(&err.submission_id), "rule error: {}", err.message);
                audit.push(AuditRow {
                    kind: "rule_error",
                    submission_id: Some(err.submission_id.clone()),
                    version_hash: hashes
                        .get(err.submission_id.as_str())
                        .map(|h| (*h).to_owned()),
                    rule_id: Some(err.rule.clone()),
                    rule_version: self.rules.rule(&err.rule).map(|r| r.version.clone()),
                    fingerprint: None,
                    detail: serde_json::json!({ "error": err.message }),
                });
            }
        }
        commit.audit = audit;

        // 4. One transaction for this batch (or, with `commit_every`, for the
        //    batches gathered so far); the journal is taken at commit time.
        let p = &mut self.pending;
        p.commit.source = commit.source;
        p.commit.historical = self.quiet;
        p.commit.versions.append(&mut commit.versions);
        p.commit.alerts.append(&mut commit.alerts);
        p.commit.notify.append(&mut commit.notify);
        p.commit.audit.append(&mut commit.audit);
        p.commit.shadow_alerts.append(&mut commit.shadow_alerts);
        p.versions
            .extend(changed.iter().map(|c| (c.id.clone(), c.hash.clone())));
        p.alerts += report.alerts;
        p.newest = p.newest.max(changed.last().map(|c| c.event_time));
        if p.versions.len() >= self.commit_every {
            self.flush().await?;
        }
        crate::telemetry::emit::batch(report.received, report.changed, report.unreadable);
        for rule in self.rules.rules() {
            crate::telemetry::emit::rule_evaluations(&rule.id, outcome.submissions.len());
        }
        crate::telemetry::emit::window_members(self.state.window_count());
        Ok(report)
    }
}

/// Evaluates in the order given (already event-time sorted by the caller).
fn evaluate(rules: &RuleSet, docs: &[&Value], state: &mut dyn RuleState) -> BatchOutcome {
    let mut out = BatchOutcome::default();
    for (index, doc) in docs.iter().enumerate() {
        match rules.evaluate(doc, state) {
            Ok(mut o) => {
                o.index = index;
                out.submissions.push(o);
            }
            Err(reason) => out.rejected.push(crate::rules::Rejected {
                index,
                submission_id: Keys::of(doc).submission_id().map(str::to_owned),
                reason,
            }),
        }
    }
    out
}

/// The trace of a rule on a submission as the engine saw it (with `derived`).
fn explain_with_derived(rules: &RuleSet, rule_id: &str, doc: &Value, derived: &Value) -> Value {
    serde_json::to_value(
        rules
            .explain_with(rule_id, doc, derived)
            .unwrap_or_default(),
    )
    .unwrap_or(Value::Null)
}

/// How far back the engine must remember: its longest window or throttle.
pub fn longest_memory(rules: &RuleSet) -> std::time::Duration {
    rules
        .rules()
        .iter()
        .flat_map(|r| [r.window.as_ref().map(|w| w.within), r.throttle])
        .flatten()
        .max()
        .unwrap_or_default()
}

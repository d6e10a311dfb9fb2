//! The poller: finds new and changed submissions and hands them to the pipeline.
//!
//! Argos lists submissions by creation day, so a submission decided days
//! after it was created never reappears in "today's" list. Each poll therefore
//! does two things: it lists the current UTC day (and the previous one for a
//! while after midnight, since days are UTC and dates are inclusive), and it
//! re-fetches by id every submission the store still knows as undecided
//! (`pending`, `Incomplete`, no result) until it is decided or older than the
//! pending horizon. Change detection is by content hash, never by order.
//!
//! What Argos answers is bounded here too: a day's pages are processed as
//! they arrive in batches of at most [`HoldLimit`] (never a whole day held
//! when the day is huge or a server pages forever), items the client set aside
//! as unreadable are audited (`unreadable_item`) once each, and a spent daily
//! API budget stops polling without a call until 00:00 UTC.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::StreamExt;

use crate::argos::budget::Exhausted;
use crate::argos::client::{ArgosClient, ArgosError, ListQuery};
use crate::argos::page::Unreadable;
use crate::config::PollConfig;
use crate::pipeline::{BatchReport, Pipeline};
use crate::store::prelude::*;
use crate::store::{AuditRow, BatchCommit, Source};

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Argos(#[from] ArgosError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Checked before the poll: no call was made.
    #[error("poll skipped: {0}")]
    BudgetSpent(Exhausted),
}

impl PollError {
    /// A short label for metrics: the HTTP status, or the kind of failure.
    pub fn kind(&self) -> String {
        match self {
            PollError::Argos(ArgosError::Auth { status, .. })
            | PollError::Argos(ArgosError::Http { status, .. }) => status.to_string(),
            PollError::Argos(ArgosError::BadRequest { .. }) => "400".into(),
            PollError::Argos(ArgosError::NotJson { .. }) => "not_json".into(),
            PollError::Argos(ArgosError::Transport { .. }) => "transport".into(),
            PollError::Argos(ArgosError::TooLarge { .. }) => "too_large".into(),
            PollError::Argos(ArgosError::Redirect { .. }) => "redirect".into(),
            PollError::Argos(ArgosError::TooManyPages { .. })
            | PollError::Argos(ArgosError::RepeatedPageKey { .. }) => "paging".into(),
            PollError::Argos(ArgosError::BudgetExhausted { .. }) | PollError::BudgetSpent(_) => {
                "budget".into()
            }
            PollError::Argos(_) => "other".into(),
            PollError::Store(_) => "store".into(),
        }
    }

    /// The daily API budget is spent: logged once by the budget itself, so
    /// callers stay quiet until 00:00 UTC.
    pub fn is_budget_exhausted(&self) -> bool {
        match self {
            PollError::BudgetSpent(_) => true,
            PollError::Argos(e) => e.is_budget_exhausted(),
            PollError::Store(_) => false,
        }
    }

    /// A wrong key or similar: polling again cannot help.
    pub fn is_fatal(&self) -> bool {
        matches!(self, PollError::Argos(e) if e.is_fatal())
    }
}

/// What one poll did.
#[derive(Debug, Default, Clone)]
pub struct PollReport {
    pub pages: usize,
    pub refetched: usize,
    pub batch: BatchReport,
    pub api_calls: u64,
}

impl PollReport {
    fn add(&mut self, b: &BatchReport) {
        self.batch.received += b.received;
        self.batch.changed += b.changed;
        self.batch.alerts += b.alerts;
        self.batch.rule_errors += b.rule_errors;
        self.batch.unreadable += b.unreadable;
    }
}

/// Counts API calls per UTC day in the store and warns once at 80%.
pub struct Budget {
    daily: u64,
    counter: Arc<AtomicU64>,
    last_sample: u64,
    warned_day: Option<NaiveDate>,
}

impl Budget {
    pub fn new(daily: u64, counter: Arc<AtomicU64>) -> Self {
        let last_sample = counter.load(Ordering::Relaxed);
        Self {
            daily,
            counter,
            last_sample,
            warned_day: None,
        }
    }

    /// Moves the calls made since the last sample into the store; returns
    /// (calls made since last sample, total of the day).
    pub async fn record<S: StateStore + ?Sized>(
        &mut self,
        store: &S,
        now: DateTime<Utc>,
    ) -> crate::store::Result<(u64, u64)> {
        let current = self.counter.load(Ordering::Relaxed);
        let delta = current.saturating_sub(self.last_sample);
        self.last_sample = current;
        let day = now.date_naive();
        let total = store
            .add_api_calls(&day.format("%Y-%m-%d").to_string(), delta)
            .await?;
        if self.daily > 0 && total * 5 >= self.daily * 4 && self.warned_day != Some(day) {
            self.warned_day = Some(day);
            tracing::warn!(
                "API budget: {total} of {} calls for {day} (UTC) used; polling continues but \
                 consider a longer poll.interval",
                self.daily
            );
        }
        Ok((delta, total))
    }
}

/// How much of a day's listing is held before it is processed: pages are
/// processed in batches of at most this many items or bytes of item text
/// (plus one page). A normal day fits in one batch, so the whole day is
/// judged in event-time order; a huge or endless one cannot fill memory.
#[derive(Debug, Clone, Copy)]
pub struct HoldLimit {
    pub items: usize,
    pub bytes: usize,
}

impl Default for HoldLimit {
    fn default() -> Self {
        Self {
            items: 10_000,
            bytes: 64 * 1024 * 1024,
        }
    }
}

/// Unreadable items already audited: an item stays bad on every poll of its
/// day, and one audit row per item is the record, not one per poll.
const SET_ASIDE_MEMORY: usize = 10_000;

pub struct Poller<S: ?Sized = dyn StateStore> {
    client: ArgosClient,
    cfg: PollConfig,
    budget: Budget,
    hold: HoldLimit,
    /// The store's count of today's calls has been given to the client's budget.
    seeded: bool,
    set_aside: HashSet<(String, String)>,
    _store: std::marker::PhantomData<S>,
}

/// Audits unreadable items (`unreadable_item`: submission id when it could be
/// read, position and kind of problem, never content), logs and counts them.
/// `known` skips those audited before; returns how many were new.
pub async fn set_aside<S: StateStore + ?Sized>(
    store: &S,
    origin: &str,
    bad: &[Unreadable],
    known: &mut HashSet<(String, String)>,
) -> crate::store::Result<usize> {
    let mut audit = Vec::new();
    for u in bad {
        let key = (
            u.submission_id
                .clone()
                .unwrap_or_else(|| format!("{origin}#{}", u.index)),
            u.problem.clone(),
        );
        if known.contains(&key) {
            continue;
        }
        if known.len() >= SET_ASIDE_MEMORY {
            known.clear();
        }
        known.insert(key);
        tracing::error!(
            submission = %crate::util::display_safe(u.submission_id.as_deref().unwrap_or("(not readable)")),
            "{origin}: item {} cannot be read ({}); set aside, the rest is processed \
             (audit row unreadable_item)",
            u.index,
            u.problem
        );
        audit.push(AuditRow {
            kind: "unreadable_item",
            submission_id: u.submission_id.clone(),
            version_hash: None,
            rule_id: None,
            rule_version: None,
            fingerprint: None,
            detail: serde_json::json!({
                "origin": origin,
                "item": u.index,
                "problem": u.problem,
            }),
        });
    }
    let new = audit.len();
    if new > 0 {
        crate::telemetry::emit::unreadable_items(new);
        store
            .commit_batch(BatchCommit {
                source: Source::Poll,
                audit,
                ..BatchCommit::default()
            })
            .await?;
    }
    Ok(new)
}

/// The UTC days a poll at `now` lists: today, and yesterday within `overlap` after midnight.
pub fn days_to_poll(now: DateTime<Utc>, overlap: std::time::Duration) -> Vec<NaiveDate> {
    let today = now.date_naive();
    let since_midnight = now - today.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    let mut days = vec![today];
    if since_midnight < Duration::from_std(overlap).unwrap_or(Duration::zero()) {
        days.push(today - Duration::days(1));
    }
    days
}

impl<S: StateStore + ?Sized> Poller<S> {
    pub fn new(client: ArgosClient, cfg: PollConfig, daily_budget: u64) -> Self {
        let budget = Budget::new(daily_budget, client.call_counter());
        Self {
            client,
            cfg,
            budget,
            hold: HoldLimit::default(),
            seeded: false,
            set_aside: HashSet::new(),
            _store: std::marker::PhantomData,
        }
    }

    /// Another bound on what a day's listing holds (tests use small ones).
    pub fn with_hold_limit(mut self, hold: HoldLimit) -> Self {
        self.hold = hold;
        self
    }

    pub fn client(&self) -> &ArgosClient {
        &self.client
    }

    /// Lists one UTC day page by page, processing the pages as they arrive
    /// in batches bounded by [`HoldLimit`] (pages come newest first; within
    /// a batch the engine sorts by event time, and a normal day is one batch).
    pub async fn poll_day(
        &mut self,
        pipeline: &mut Pipeline<S>,
        day: NaiveDate,
        report: &mut PollReport,
    ) -> Result<(), PollError> {
        let query = ListQuery {
            start_date: Some(day),
            end_date: Some(day),
            ..ListQuery::default()
        };
        let origin = format!("list of {day}");
        let mut pages = std::pin::pin!(self.client.list_all_raw(query));
        let mut held = Vec::new();
        let mut held_bytes = 0usize;
        while let Some(page) = pages.next().await {
            // An error drops what is held: the next poll starts the day again
            // (what was processed is recognised by its hash), nothing is skipped.
            let page = page?;
            report.pages += 1;
            report.batch.received += page.unreadable.len();
            report.batch.unreadable += page.unreadable.len();
            set_aside(
                pipeline.store().as_ref(),
                &origin,
                &page.unreadable,
                &mut self.set_aside,
            )
            .await?;
            held_bytes += page.items.iter().map(|r| r.get().len()).sum::<usize>();
            held.extend(page.items);
            if held.len() >= self.hold.items || held_bytes >= self.hold.bytes {
                let batch = std::mem::take(&mut held);
                held_bytes = 0;
                let b = pipeline.process_raw(batch, &origin, Source::Poll).await?;
                report.add(&b);
            }
        }
        let b = pipeline.process_raw(held, &origin, Source::Poll).await?;
        report.add(&b);
        Ok(())
    }

    /// One poll: list the day(s), then re-fetch the undecided ones. With the
    /// day's API budget spent, nothing is called (see [`PollError::BudgetSpent`]).
    pub async fn poll_once(&mut self, pipeline: &mut Pipeline<S>) -> Result<PollReport, PollError> {
        let now = Utc::now();
        if !self.seeded {
            // Calls an earlier run made today count against today's budget.
            let day = now.date_naive();
            let spent = pipeline
                .store()
                .add_api_calls(&day.format("%Y-%m-%d").to_string(), 0)
                .await?;
            self.client.budget().seed(day, spent);
            self.seeded = true;
        }
        if let Some(ex) = self.client.budget().exhausted(now) {
            crate::telemetry::emit::api_budget(self.client.budget().spent(now), ex.daily);
            return Err(PollError::BudgetSpent(ex));
        }
        let mut report = PollReport::default();
        let result = self.poll_inner(pipeline, now, &mut report).await;
        // Count the calls whatever happened: failed calls cost budget too.
        let (delta, total) = self.budget.record(pipeline.store().as_ref(), now).await?;
        report.api_calls = delta;
        crate::telemetry::emit::api_budget(total, self.client.budget().daily());
        match &result {
            Ok(()) => crate::telemetry::emit::poll_ok(report.pages, delta),
            Err(e) => crate::telemetry::emit::poll_failed(e.kind(), delta),
        }
        result.map(|()| report)
    }

    async fn poll_inner(
        &mut self,
        pipeline: &mut Pipeline<S>,
        now: DateTime<Utc>,
        report: &mut PollReport,
    ) -> Result<(), PollError> {
        let mut listed_days = Vec::new();
        for day in days_to_poll(now, self.cfg.midnight_overlap.0) {
            self.poll_day(pipeline, day, report).await?;
            listed_days.push(day);
        }
        let horizon =
            now - Duration::from_std(self.cfg.pending_horizon.0).unwrap_or(Duration::days(7));
        let undecided = pipeline.store().undecided_since(horizon).await?;
        let mut items = Vec::new();
        let origin = "re-fetch of undecided submissions";
        for (id, created) in undecided {
            // A submission created on a day just listed was fetched already.
            if created.is_some_and(|t| listed_days.contains(&t.date_naive())) {
                continue;
            }
            report.refetched += 1;
            let page = self
                .client
                .list_page(&ListQuery {
                    submission_id: Some(id),
                    ..ListQuery::default()
                })
                .await?;
            set_aside(
                pipeline.store().as_ref(),
                origin,
                &page.unreadable,
                &mut self.set_aside,
            )
            .await?;
            items.extend(page.items.into_iter().take(1));
        }
        if !items.is_empty() {
            let b = pipeline.process(items, origin).await?;
            report.add(&b);
        }
        Ok(())
    }
}

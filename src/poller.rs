//! The poller: finds new and changed submissions and hands them to the pipeline.
//!
//! Argos lists submissions by creation day, so a submission decided days
//! after it was created never reappears in "today's" list. Each poll therefore
//! does two things: it lists the current UTC day (and the previous one for a
//! while after midnight, since days are UTC and dates are inclusive), and it
//! re-fetches by id every submission the store still knows as undecided
//! (`pending`, `Incomplete`, no result) until it is decided or older than the
//! pending horizon. Change detection is by content hash, never by order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::StreamExt;

use crate::argos::client::{ArgosClient, ArgosError, ListQuery};
use crate::config::PollConfig;
use crate::pipeline::{BatchReport, Pipeline};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Argos(#[from] ArgosError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
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
            PollError::Argos(_) => "other".into(),
            PollError::Store(_) => "store".into(),
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
    pub async fn record<S: Store>(
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

    pub fn exhausted(&self, total: u64) -> bool {
        self.daily > 0 && total >= self.daily
    }
}

pub struct Poller<S> {
    client: ArgosClient,
    cfg: PollConfig,
    budget: Budget,
    _store: std::marker::PhantomData<S>,
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

impl<S: Store + Clone> Poller<S> {
    pub fn new(client: ArgosClient, cfg: PollConfig, daily_budget: u64) -> Self {
        let budget = Budget::new(daily_budget, client.call_counter());
        Self {
            client,
            cfg,
            budget,
            _store: std::marker::PhantomData,
        }
    }

    pub fn client(&self) -> &ArgosClient {
        &self.client
    }

    /// Lists one UTC day page by page, and processes the day as one batch so
    /// the engine sees it in event-time order (pages come newest first).
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
        let mut pages = std::pin::pin!(self.client.list_all(query));
        let mut items = Vec::new();
        while let Some(page) = pages.next().await {
            // An error stops the day before anything of it is processed: the
            // next poll starts the day again, nothing is skipped.
            let page = page?;
            report.pages += 1;
            items.extend(page.items);
        }
        let b = pipeline.process(items, &format!("list of {day}")).await?;
        report.add(&b);
        Ok(())
    }

    /// One poll: list the day(s), then re-fetch the undecided ones.
    pub async fn poll_once(&mut self, pipeline: &mut Pipeline<S>) -> Result<PollReport, PollError> {
        let now = Utc::now();
        let mut report = PollReport::default();
        let result = self.poll_inner(pipeline, now, &mut report).await;
        // Count the calls whatever happened: failed calls cost budget too.
        let (delta, total) = self.budget.record(pipeline.store(), now).await?;
        report.api_calls = delta;
        crate::telemetry::emit::api_budget(total, self.budget.daily);
        match &result {
            Ok(()) => crate::telemetry::emit::poll_ok(report.pages, delta),
            Err(e) => crate::telemetry::emit::poll_failed(e.kind(), delta),
        }
        if self.budget.exhausted(total) {
            tracing::error!(
                "API budget for {} exhausted ({total} calls); polls resume at 00:00 UTC",
                now.date_naive()
            );
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
        for (id, created) in undecided {
            // A submission created on a day just listed was fetched already.
            if created.is_some_and(|t| listed_days.contains(&t.date_naive())) {
                continue;
            }
            report.refetched += 1;
            if let Some(v) = self.client.get_submission(&id).await? {
                items.push(v);
            }
        }
        if !items.is_empty() {
            let b = pipeline
                .process(items, "re-fetch of undecided submissions")
                .await?;
            report.add(&b);
        }
        Ok(())
    }
}

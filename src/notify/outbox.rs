//! The outbox delivery loop: at least once, with backoff, then dead letter.
//!
//! Rows are written by the pipeline in the same transaction as their alert,
//! so an alert is never lost between deciding and sending. A delivery that is
//! interrupted by a crash, or cut at the flush deadline on shutdown, is sent
//! again with the same idempotency key (the fingerprint); that is the only way
//! a receiver sees an alert twice. Receivers are isolated: each has its own
//! queue and worker, so a receiver that never answers delays only itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{DeliveryError, Notification, Receiver};
use crate::clock::{Clock, SystemClock};
use crate::config::OutboxConfig;
use crate::store::prelude::*;
use crate::store::{DeliveryOutcome, OutboxRow};

/// Generic over the store so tests may name a concrete backend; the daemon
/// uses the default, `dyn StateStore`.
pub struct Outbox<S: ?Sized = dyn StateStore> {
    store: Arc<S>,
    /// Swapped whole on a template reload; a delivery in flight keeps the
    /// set it started with.
    receivers: std::sync::RwLock<Arc<HashMap<String, Receiver>>>,
    cfg: OutboxConfig,
    stats_at: std::sync::atomic::AtomicI64,
    /// When groups are due and retries come round (the daemon's clock).
    clock: Arc<dyn Clock>,
}

impl<S: StateStore + ?Sized> Outbox<S> {
    pub fn new(store: impl Into<Arc<S>>, receivers: Vec<Receiver>, cfg: OutboxConfig) -> Self {
        Self {
            store: store.into(),
            receivers: std::sync::RwLock::new(Arc::new(
                receivers.into_iter().map(|r| (r.name.clone(), r)).collect(),
            )),
            cfg,
            stats_at: std::sync::atomic::AtomicI64::new(0),
            clock: Arc::new(SystemClock),
        }
    }

    /// With the clock grouping and retries are timed by (moved by hand in tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the receivers (hot reload of templates).
    pub fn set_receivers(&self, receivers: Vec<Receiver>) {
        let map = receivers.into_iter().map(|r| (r.name.clone(), r)).collect();
        *self.receivers.write().expect("receivers lock") = Arc::new(map);
    }

    fn backoff(&self, attempts: i64) -> Duration {
        let base = self.cfg.retry_base.0;
        let factor = 2u32.saturating_pow(attempts.clamp(0, 20) as u32);
        base.saturating_mul(factor).min(self.cfg.retry_max.0)
    }

    /// The notification of a row, with its submissions when the receiver's
    /// templates need them (read at delivery, so PII is not copied into the outbox).
    async fn notification(
        &self,
        row: &OutboxRow,
        r: &Receiver,
    ) -> Result<Notification, DeliveryError> {
        let mut n = Notification::from_payload(&row.fingerprint, &row.receiver, &row.payload)
            .map_err(DeliveryError::Permanent)?;
        if r.wants_submissions() {
            let ids = n.submission_ids();
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let subs = self
                .store
                .submissions_raw(&ids)
                .await
                .map_err(|e| DeliveryError::Transient(format!("reading submissions: {e}")))?;
            n.submissions = subs.into_iter().collect();
        }
        Ok(n)
    }

    async fn outcome(&self, row: &OutboxRow) -> DeliveryOutcome {
        let receivers = self.receivers.read().expect("receivers lock").clone();
        let result = match receivers.get(&row.receiver) {
            Some(r) => match self.notification(row, r).await {
                Ok(n) => r.deliver(&n).await,
                Err(e) => Err(e),
            },
            None => Err(DeliveryError::Permanent(format!(
                "receiver `{}` is no longer configured",
                row.receiver
            ))),
        };
        self.classify(row, result)
    }

    /// A delivery's result as the outbox records it: transient errors retry
    /// with backoff until `max_age`, then dead-letter.
    fn classify(&self, row: &OutboxRow, result: Result<(), DeliveryError>) -> DeliveryOutcome {
        let now = self.clock.now();
        match result {
            Ok(()) => DeliveryOutcome::Delivered,
            Err(DeliveryError::Permanent(error)) => DeliveryOutcome::Dead { error },
            Err(DeliveryError::Transient(error)) => {
                let age = (now - row.created_at).to_std().unwrap_or_default();
                if age >= self.cfg.max_age.0 {
                    DeliveryOutcome::Dead {
                        error: format!("still failing after {}s: {error}", age.as_secs()),
                    }
                } else {
                    let next = now
                        + chrono::Duration::from_std(self.backoff(row.attempts))
                            .unwrap_or_default();
                    DeliveryOutcome::Retry {
                        error,
                        next_attempt_at: next,
                    }
                }
            }
        }
    }

    /// One delivery attempt: the outcome, its metric and its log line.
    async fn attempt(&self, row: &OutboxRow) -> DeliveryOutcome {
        let outcome = self.outcome(row).await;
        self.report(row, &outcome);
        outcome
    }

    /// The metric and log line of a delivery's outcome.
    fn report(&self, row: &OutboxRow, outcome: &DeliveryOutcome) {
        crate::telemetry::emit::delivery(
            &row.receiver,
            match &outcome {
                DeliveryOutcome::Delivered => "delivered",
                DeliveryOutcome::Retry { .. } => "retry",
                DeliveryOutcome::Dead { .. } => "dead",
            },
        );
        match outcome {
            DeliveryOutcome::Delivered => {
                tracing::debug!(receiver = %row.receiver, fingerprint = %row.fingerprint, "delivered")
            }
            DeliveryOutcome::Retry {
                error,
                next_attempt_at,
            } => tracing::warn!(
                receiver = %row.receiver, fingerprint = %row.fingerprint, attempt = row.attempts + 1,
                next_attempt_at = %next_attempt_at, "delivery failed, will retry: {error}"
            ),
            DeliveryOutcome::Dead { error } => tracing::error!(
                receiver = %row.receiver, fingerprint = %row.fingerprint,
                "delivery given up (dead letter): {error}"
            ),
        }
    }

    /// One round of every receiver with rows due, the receivers side by side;
    /// returns how many rows were due. (The daemon runs [`Outbox::run`], which
    /// gives each receiver its own task; tests and one-shot commands use this.)
    pub async fn deliver_due(&self) -> crate::store::Result<usize> {
        // Groups whose wait is over become outbox rows first (one transaction each batch).
        self.store.flush_groups(self.clock.now()).await?;
        let names = self.store.due_receivers(self.clock.now()).await?;
        let rounds = names.iter().map(|n| self.deliver_receiver(n, None));
        let mut total = 0;
        for r in futures::future::join_all(rounds).await {
            total += r?;
        }
        self.refresh_stats(total > 0).await?;
        Ok(total)
    }

    /// One round of one receiver: its due rows (at most [`ROUND`]), at most
    /// `concurrency_per_receiver` in flight; outcomes are recorded as they
    /// complete. When `cut` flips, deliveries in flight are dropped unrecorded:
    /// their rows stay due and are sent again (same key) after a restart.
    async fn deliver_receiver(
        &self,
        name: &str,
        cut: Option<CancellationToken>,
    ) -> crate::store::Result<usize> {
        let rows = self
            .store
            .due_outbox_for(name, self.clock.now(), ROUND)
            .await?;
        let receivers = self.receivers.read().expect("receivers lock").clone();
        match receivers.get(name).filter(|r| r.file().is_some()) {
            Some(r) => self.file_round(r, &rows).await?,
            None => self.concurrent_round(&rows, cut).await?,
        }
        Ok(rows.len())
    }

    /// A `file` receiver gets the whole round in one append and one fsync
    /// (an fsync is about a millisecond here: 15,000 alerts archived one
    /// by one took 15 s after a backfill had finished).
    async fn file_round(&self, r: &Receiver, rows: &[OutboxRow]) -> crate::store::Result<()> {
        let mut done = Vec::with_capacity(rows.len());
        let mut text = String::new();
        let mut appended = Vec::new();
        for row in rows {
            let outcome = match self.notification(row, r).await {
                Ok(n) => {
                    text.push_str(&r.file_text(&n));
                    appended.push(done.len());
                    DeliveryOutcome::Delivered
                }
                Err(e) => self.classify(row, Err(e)),
            };
            done.push((row.clone(), outcome));
        }
        if !text.is_empty() {
            let path = r.file().expect("a file receiver");
            // Not on disk: not delivered. After the retry the lines may be in
            // the file twice, with the same idempotency key (at least once).
            if let Err(e) = super::append_file(path, text, true).await {
                for i in appended {
                    done[i].1 = self.classify(&done[i].0, Err(e.clone()));
                }
            }
        }
        self.record(&done).await
    }

    /// Other receivers: up to `concurrency_per_receiver` requests at once;
    /// what completes together is recorded in one transaction.
    ///
    /// Every notification of the round is read from the store before the
    /// first request: a delivery in flight must not hold a pool connection
    /// while this task records (that deadlocked the pool).
    async fn concurrent_round(
        &self,
        rows: &[OutboxRow],
        cut: Option<CancellationToken>,
    ) -> crate::store::Result<()> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let receivers = self.receivers.read().expect("receivers lock").clone();
        let r = receivers.get(&first.receiver);
        let mut prepared = Vec::with_capacity(rows.len());
        for row in rows {
            prepared.push((row, self.prepare(row, r).await));
        }
        let limit = self.cfg.concurrency_per_receiver.max(1);
        let mut waiting = prepared.into_iter();
        let mut inflight = FuturesUnordered::new();
        inflight.extend(
            waiting
                .by_ref()
                .take(limit)
                .map(|(row, n)| self.delivery(row, r, n)),
        );
        loop {
            let first = tokio::select! {
                biased;
                _ = cut_signal(cut.as_ref()) => {
                    tracing::warn!(receiver = %rows[0].receiver,
                        "outbox: deliveries in flight cut at the flush deadline; sent again after restart");
                    return Ok(());
                }
                next = inflight.next() => match next {
                    Some(done) => done,
                    None => return Ok(()),
                },
            };
            let mut done = vec![first];
            while let Some(Some(more)) = inflight.next().now_or_never() {
                done.push(more);
            }
            inflight.extend(
                waiting
                    .by_ref()
                    .take(done.len())
                    .map(|(row, n)| self.delivery(row, r, n)),
            );
            self.record(&done).await?;
        }
    }

    /// A row's notification, or why it cannot be sent.
    async fn prepare(
        &self,
        row: &OutboxRow,
        r: Option<&Receiver>,
    ) -> Result<Notification, DeliveryError> {
        match r {
            Some(r) => self.notification(row, r).await,
            None => Err(DeliveryError::Permanent(format!(
                "receiver `{}` is no longer configured",
                row.receiver
            ))),
        }
    }

    /// One delivery of a prepared notification, with its row and outcome.
    async fn delivery(
        &self,
        row: &OutboxRow,
        r: Option<&Receiver>,
        n: Result<Notification, DeliveryError>,
    ) -> (OutboxRow, DeliveryOutcome) {
        let result = match (r, n) {
            (Some(r), Ok(n)) => r.deliver(&n).await,
            (_, Err(e)) => Err(e),
            (None, Ok(_)) => Err(DeliveryError::Permanent(format!(
                "receiver `{}` is no longer configured",
                row.receiver
            ))),
        };
        (row.clone(), self.classify(row, result))
    }

    /// Reports and records a set of outcomes (one transaction).
    async fn record(&self, done: &[(OutboxRow, DeliveryOutcome)]) -> crate::store::Result<()> {
        for (row, outcome) in done {
            self.report(row, outcome);
        }
        // A crash before this line re-delivers these rows, which the
        // idempotency key makes harmless (at least once).
        self.store.record_deliveries(done).await
    }

    /// The depth gauge: after deliveries, and every ~10 s when idle.
    async fn refresh_stats(&self, delivered: bool) -> crate::store::Result<()> {
        if delivered || self.stats_due() {
            let stats = self.store.outbox_stats().await?;
            crate::telemetry::emit::outbox(stats.pending, stats.dead);
        }
        Ok(())
    }

    /// Delivers one row now and records the outcome (the `digest --send-now`
    /// command delivers its own rows this way, not the whole queue).
    pub async fn deliver_row(&self, row: &OutboxRow) -> crate::store::Result<DeliveryOutcome> {
        let outcome = self.attempt(row).await;
        self.store.record_delivery(row, &outcome).await?;
        Ok(outcome)
    }

    /// The depth gauge is refreshed after deliveries, and every ~10s when idle.
    fn stats_due(&self) -> bool {
        let now = Utc::now().timestamp();
        let last = self.stats_at.load(std::sync::atomic::Ordering::Relaxed);
        if now - last >= 10 {
            self.stats_at
                .store(now, std::sync::atomic::Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Runs until `shutdown` resolves, then drains what is due within the
    /// flush deadline and cuts what is still in flight. (The daemon resolves
    /// it once its token is cancelled and the tasks that write to the outbox
    /// have ended, so what they wrote last is flushed too.)
    ///
    /// Each receiver with rows due gets its own worker task, which drains its
    /// queue and ends; this loop only moves grouped alerts to the outbox and
    /// starts workers. A receiver that never answers holds only its own worker.
    pub async fn run(
        self: Arc<Self>,
        wake: Arc<Notify>,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        let cut = CancellationToken::new();
        let mut workers = Workers::default();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            self.dispatch(&mut workers, &cut).await;
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
                _ = &mut shutdown => break,
            }
        }
        let deadline = tokio::time::Instant::now() + self.cfg.flush_deadline.0;
        loop {
            let due = self.dispatch(&mut workers, &cut).await;
            if !due && workers.idle() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        cut.cancel();
        workers.finish(CUT_GRACE).await;
    }

    /// Moves due groups to the outbox and starts a worker for every receiver
    /// with rows due that has none; true when rows were due.
    async fn dispatch(self: &Arc<Self>, workers: &mut Workers, cut: &CancellationToken) -> bool {
        workers.reap();
        if let Err(e) = self.store.flush_groups(self.clock.now()).await {
            tracing::error!("outbox: {e}");
        }
        let names = match self.store.due_receivers(self.clock.now()).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("outbox: {e}");
                return false;
            }
        };
        for name in &names {
            if !workers.running(name) {
                let me = self.clone();
                let (name2, cut) = (name.clone(), cut.clone());
                workers.start(
                    name,
                    tokio::spawn(async move { me.drain(&name2, cut).await }),
                );
            }
        }
        if let Err(e) = self.refresh_stats(false).await {
            tracing::error!("outbox: {e}");
        }
        !names.is_empty()
    }

    /// A receiver's worker: rounds until nothing of it is due, or the cut.
    async fn drain(&self, name: &str, cut: CancellationToken) {
        loop {
            if cut.is_cancelled() {
                return;
            }
            match self.deliver_receiver(name, Some(cut.clone())).await {
                Ok(0) => return,
                Ok(_) => {
                    if let Err(e) = self.refresh_stats(true).await {
                        tracing::error!("outbox: {e}");
                    }
                }
                Err(e) => {
                    tracing::error!(receiver = %name, "outbox: {e}");
                    return;
                }
            }
        }
    }
}

/// Rows one receiver takes in one round.
const ROUND: i64 = 200;
/// How often the dispatcher looks for due rows without being woken.
const TICK: Duration = Duration::from_millis(500);
/// After the cut, how long workers get to record what already completed.
const CUT_GRACE: Duration = Duration::from_secs(1);

/// Resolves when `cut` is cancelled; never without one.
async fn cut_signal(cut: Option<&CancellationToken>) {
    match cut {
        Some(c) => c.cancelled().await,
        None => std::future::pending().await,
    }
}

/// The worker task of each receiver that has one.
#[derive(Default)]
struct Workers(HashMap<String, tokio::task::JoinHandle<()>>);

impl Workers {
    fn reap(&mut self) {
        self.0.retain(|_, t| !t.is_finished());
    }

    fn running(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|t| !t.is_finished())
    }

    fn start(&mut self, name: &str, task: tokio::task::JoinHandle<()>) {
        self.0.insert(name.to_owned(), task);
    }

    fn idle(&mut self) -> bool {
        self.reap();
        self.0.is_empty()
    }

    /// Waits up to `grace` for the workers (cut already sent), then aborts
    /// the rest: what they had in flight stays due for the next start.
    async fn finish(self, grace: Duration) {
        let end = tokio::time::Instant::now() + grace;
        for (name, mut task) in self.0 {
            if tokio::time::timeout_at(end, &mut task).await.is_err() {
                tracing::warn!(receiver = %name, "outbox: delivery cut at the flush deadline; sent again after restart");
                task.abort();
            }
        }
    }
}

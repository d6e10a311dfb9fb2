//! The outbox delivery loop: at least once, with backoff, then dead letter.
//!
//! Rows are written by the pipeline in the same transaction as their alert,
//! so an alert is never lost between deciding and sending. A delivery that is
//! interrupted by a crash is sent again with the same idempotency key (the
//! fingerprint); that is the only way a receiver sees an alert twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, watch};

use super::{DeliveryError, Notification, Receiver};
use crate::config::OutboxConfig;
use crate::store::{DeliveryOutcome, OutboxRow, Store};

pub struct Outbox<S> {
    store: S,
    /// Swapped whole on a template reload; a delivery in flight keeps the
    /// set it started with.
    receivers: std::sync::RwLock<Arc<HashMap<String, Receiver>>>,
    cfg: OutboxConfig,
    stats_at: std::sync::atomic::AtomicI64,
}

impl<S: Store + Clone> Outbox<S> {
    pub fn new(store: S, receivers: Vec<Receiver>, cfg: OutboxConfig) -> Self {
        Self {
            store,
            receivers: std::sync::RwLock::new(Arc::new(
                receivers.into_iter().map(|r| (r.name.clone(), r)).collect(),
            )),
            cfg,
            stats_at: std::sync::atomic::AtomicI64::new(0),
        }
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
        let now = Utc::now();
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

    /// Delivers every due row once; returns how many rows were due.
    pub async fn deliver_due(&self) -> crate::store::Result<usize> {
        // Groups whose wait is over become outbox rows first (one transaction each batch).
        self.store.flush_groups(Utc::now()).await?;
        let rows = self.store.due_outbox(Utc::now(), 200).await?;
        let mut done = Vec::with_capacity(rows.len());
        // A `file` receiver gets the whole round in one append and one fsync
        // (an fsync is about a millisecond here: 15,000 alerts archived one
        // by one took 15 s after a backfill had finished).
        let receivers = self.receivers.read().expect("receivers lock").clone();
        let mut appends: HashMap<&std::path::Path, (String, Vec<usize>)> = HashMap::new();
        for row in &rows {
            let file = receivers.get(&row.receiver).filter(|r| r.file().is_some());
            let outcome = match file {
                Some(r) => match self.notification(row, r).await {
                    Ok(n) => {
                        let (text, idx) = appends.entry(r.file().expect("a file")).or_default();
                        text.push_str(&r.file_text(&n));
                        idx.push(done.len());
                        DeliveryOutcome::Delivered
                    }
                    Err(e) => self.classify(row, Err(e)),
                },
                None => self.outcome(row).await,
            };
            done.push((row.clone(), outcome));
        }
        for (path, (text, idx)) in appends {
            // Not on disk: not delivered. After the retry the lines may be in
            // the file twice, with the same idempotency key (at least once).
            if let Err(e) = super::append_file(path, text, true).await {
                for i in idx {
                    let row = &done[i].0;
                    done[i].1 = self.classify(row, Err(e.clone()));
                }
            }
        }
        for (row, outcome) in &done {
            self.report(row, outcome);
        }
        // Recorded together: a crash before this line re-delivers the round,
        // which the idempotency key makes harmless (at least once).
        self.store.record_deliveries(&done).await?;
        if !rows.is_empty() || self.stats_due() {
            let stats = self.store.outbox_stats().await?;
            crate::telemetry::emit::outbox(stats.pending, stats.dead);
        }
        Ok(rows.len())
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

    /// Runs until `shutdown` flips, then drains what is due within the flush deadline.
    pub async fn run(self: Arc<Self>, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.deliver_due().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::error!("outbox: {e}"),
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => break,
            }
        }
        let deadline = tokio::time::Instant::now() + self.cfg.flush_deadline.0;
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout_at(deadline, self.deliver_due()).await {
                Ok(Ok(0)) | Err(_) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!("outbox flush: {e}");
                    break;
                }
            }
        }
    }
}

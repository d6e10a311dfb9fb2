//! The long-running engine (`kyc-sentinel run`) and the one-off history
//! evaluation (`kyc-sentinel backfill`), assembled from the config.
//!
//! Both are library functions taking a shutdown signal, so tests and the demo
//! run the real thing in-process; the CLI adds only signal handling.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDate;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::argos::client::{ArgosClient, ArgosError, ListQuery};
use crate::argos::crypto::{AesEcb, Cipher};
use crate::clock::{Clock, SystemClock};
use crate::compose::{Engine, api_key, load_rules};
use crate::config::Config;
use crate::ingest::{Hint, IngestServer};
use crate::notify::outbox::Outbox;
use crate::pipeline::{BatchReport, Pipeline, Source};
use crate::poller::Poller;
use crate::rules::RuleSet;
use crate::store::StateStore;

/// Runs the daemon until `shutdown` is cancelled: poll every interval,
/// act on webhook hints as they come (when `ingest:` is configured), deliver
/// the outbox, then stop, drop (roll back) a batch in flight, and flush the
/// outbox within its deadline.
///
/// One task owns the pipeline (it is single-writer): the main loop selects
/// over the poll timer, the hint channel fed by the webhook endpoint, reload
/// requests and shutdown, and hands each to one small function.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let rules = Arc::new(load_rules(&cfg)?);
    run_with(cfg, rules, shutdown).await
}

/// [`run`] with a given rule set (the demo's embedded pack).
pub async fn run_with(
    cfg: Config,
    rules: Arc<RuleSet>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with_clock(cfg, rules, Arc::new(SystemClock), shutdown).await
}

/// [`run_with`] with the clock escalation steps and digests are timed by
/// (controlled in tests).
pub async fn run_with_clock(
    cfg: Config,
    rules: Arc<RuleSet>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with_hints(cfg, rules, clock, shutdown, None).await
}

/// [`run_with_clock`] with webhook hints from elsewhere too: `crate::ha`
/// passes the channel it feeds with the hints standbys received.
pub async fn run_with_hints(
    cfg: Config,
    rules: Arc<RuleSet>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
    more_hints: Option<(mpsc::Sender<Hint>, mpsc::Receiver<Hint>)>,
) -> anyhow::Result<()> {
    // Before anything else touches the store: a second daemon is refused.
    let _lock = crate::store::lock::InstanceLock::for_store(&cfg.store, "run")?;
    let engine = Engine::build_with_clock(&cfg, rules, clock.clone()).await?;
    tracing::info!(
        rules = engine.pipeline.rules().rules().len(),
        rule_set_version = %engine.pipeline.rules().version(),
        base_url = %cfg.argos.base_url,
        "kyc-sentinel running"
    );
    // The one token every task stops on: the caller's, or ours on a fatal error.
    let stop = shutdown.child_token();
    // A daemon future dropped where it stands (aborted) stops its tasks too.
    let _stop_on_drop = stop.clone().drop_guard();
    // The tasks that write to the outbox (escalation, digests): the outbox
    // flushes once they have ended, so what they wrote last is sent too.
    let writers = TaskTracker::new();
    let mut daemon = Daemon::start(cfg, engine, clock, &stop, &writers, more_hints).await?;
    let fatal = daemon.main_loop(&stop).await;
    daemon.shut_down(&stop, &writers).await;
    if let Some(e) = fatal {
        return Err(e).context("stopping: the Argos API cannot be used with this configuration");
    }
    tracing::info!("kyc-sentinel stopped");
    Ok(())
}

/// What the main loop does after an event.
enum Next {
    Continue,
    Stop,
    Fatal(anyhow::Error),
}

/// The running daemon: what the main loop's handlers work on.
struct Daemon {
    cfg: Config,
    store: Arc<dyn StateStore>,
    client: ArgosClient,
    pipeline: Pipeline,
    outbox: Arc<Outbox>,
    outbox_task: tokio::task::JoinHandle<()>,
    poller: Poller,
    health: crate::telemetry::Health,
    live: crate::reload::Live,
    ingest: Option<IngestServer>,
    hints: mpsc::Receiver<Hint>,
    /// Hints come from the endpoint or from `crate::ha`.
    hints_on: bool,
    reloads: mpsc::Receiver<crate::reload::ReloadReason>,
    next_poll: tokio::time::Instant,
    next_purge: tokio::time::Instant,
    /// `telemetry.listen` and `console.listen`.
    _listeners: Vec<AbortOnDrop>,
}

impl Daemon {
    /// Starts everything beside the main loop: the webhook endpoint, the
    /// outbox, escalation and digests, metrics and the API, reload watching.
    async fn start(
        cfg: Config,
        engine: Engine,
        clock: Arc<dyn Clock>,
        stop: &CancellationToken,
        writers: &TaskTracker,
        more_hints: Option<(mpsc::Sender<Hint>, mpsc::Receiver<Hint>)>,
    ) -> anyhow::Result<Daemon> {
        let Engine {
            store,
            client,
            pipeline,
            outbox,
            wake,
        } = engine;
        let external_hints = more_hints.is_some();
        let (hint_tx, hints) = more_hints.unwrap_or_else(|| {
            mpsc::channel::<Hint>(cfg.ingest.as_ref().map_or(1, |i| i.queue_capacity))
        });
        let ingest = match &cfg.ingest {
            Some(i) => {
                // Argos encrypts webhook bodies with the same key as API answers;
                // plain bodies are read too, whatever `argos.encrypted` says.
                let cipher: Box<dyn Cipher> = Box::new(AesEcb::from_api_key(&api_key(&cfg)?));
                let server = IngestServer::start(i.clone(), Some(cipher), hint_tx, stop.clone())
                    .await
                    .context("cannot start the webhook endpoint")?;
                Some(server)
            }
            None => None,
        };
        // Escalation and digests are restarted by a reload (see `reload::Live`).
        let live = crate::reload::Live::start(
            &cfg,
            store.clone(),
            wake.clone(),
            clock,
            writers.clone(),
            stop.clone(),
        )?;
        live.record_applied("start").await;
        let flush_when = {
            let (stop, writers) = (stop.clone(), writers.clone());
            async move {
                stop.cancelled().await;
                writers.close();
                writers.wait().await;
            }
        };
        let outbox_task = tokio::spawn(outbox.clone().run(wake, flush_when));
        let poller = Poller::new(client.clone(), cfg.poll.clone(), cfg.argos.daily_budget);
        let health =
            crate::telemetry::Health::new(cfg.poll.interval.0).with_budget(client.budget().clone());
        let _listeners = serve_telemetry(&cfg, &health, &live).await;
        // SIGHUP always reloads; `reload.watch` adds the file watcher.
        let reloads = crate::reload::watch(
            std::iter::once(cfg.rules.clone())
                .chain(cfg.templates.dir.clone())
                .chain(cfg.source.clone())
                .collect(),
            cfg.reload.watch.then_some(cfg.reload.check_every.0),
            true,
        );
        let now = tokio::time::Instant::now();
        Ok(Daemon {
            cfg,
            store,
            client,
            pipeline,
            outbox,
            outbox_task,
            poller,
            health,
            live,
            hints_on: ingest.is_some() || external_hints,
            ingest,
            hints,
            reloads,
            next_poll: now,
            next_purge: now,
            _listeners,
        })
    }

    /// Until `stop` is cancelled or a fatal error (returned).
    async fn main_loop(&mut self, stop: &CancellationToken) -> Option<anyhow::Error> {
        let hints_on = self.hints_on;
        loop {
            self.purge_if_due().await;
            let next = tokio::select! {
                biased;
                _ = stop.cancelled() => Next::Stop,
                _ = tokio::time::sleep_until(self.next_poll) => self.on_poll(stop).await,
                Some(reason) = self.reloads.recv() => self.on_reload(reason).await,
                Some(first) = self.hints.recv(), if hints_on => self.on_hints(first, stop).await,
            };
            match next {
                Next::Continue => {}
                Next::Stop => return None,
                Next::Fatal(e) => return Some(e),
            }
        }
    }

    /// Retention, at most once an hour.
    async fn purge_if_due(&mut self) {
        if let Some(keep) = self.cfg.store.raw_retention
            && tokio::time::Instant::now() >= self.next_purge
        {
            self.next_purge += Duration::from_secs(3600);
            purge_raw(self.store.as_ref(), keep.0).await;
        }
    }

    /// One poll (cut short by shutdown: the batch in flight rolls back).
    async fn on_poll(&mut self, stop: &CancellationToken) -> Next {
        self.next_poll = tokio::time::Instant::now() + self.cfg.poll.interval.0;
        let r = tokio::select! {
            biased;
            _ = stop.cancelled() => return Next::Stop,
            r = self.poller.poll_once(&mut self.pipeline) => r,
        };
        match r {
            Ok(rep) => {
                self.health.poll_succeeded();
                // For the digests' engine health (they read the store).
                let _ = self
                    .store
                    .set_meta(
                        crate::digest::LAST_POLL_META,
                        &crate::store::fmt_time(chrono::Utc::now()),
                    )
                    .await;
                let found = self
                    .pipeline
                    .store()
                    .found_first()
                    .await
                    .unwrap_or_default();
                tracing::info!(
                    pages = rep.pages,
                    refetched = rep.refetched,
                    received = rep.batch.received,
                    changed = rep.batch.changed,
                    alerts = rep.batch.alerts,
                    rule_errors = rep.batch.rule_errors,
                    api_calls = rep.api_calls,
                    found_first_by_poll = found.get("poll").copied().unwrap_or(0),
                    found_first_by_webhook = found.get("webhook").copied().unwrap_or(0),
                    "poll done"
                );
                crate::telemetry::emit::found_first(&found);
                if let Some(i) = &self.ingest {
                    let stats = i.counters().snapshot();
                    crate::telemetry::emit::webhooks(&stats.outcomes());
                    tracing::info!(webhooks = ?stats, "webhook endpoint");
                }
                Next::Continue
            }
            Err(e) if e.is_fatal() => Next::Fatal(e.into()),
            // Logged once by the budget; /healthz and a gauge say so until 00:00 UTC.
            Err(e) if e.is_budget_exhausted() => Next::Continue,
            Err(e) => {
                tracing::error!("poll failed, will retry next interval: {e}");
                Next::Continue
            }
        }
    }

    /// A burst of webhook hints makes one batch (cut short by shutdown).
    async fn on_hints(&mut self, first: Hint, stop: &CancellationToken) -> Next {
        let mut hints = vec![first];
        while hints.len() < MAX_HINTS_PER_BATCH {
            match self.hints.try_recv() {
                Ok(h) => hints.push(h),
                Err(_) => break,
            }
        }
        let (concurrency, catch_up) = self
            .cfg
            .ingest
            .as_ref()
            .map_or((1, false), |i| (i.fetch_concurrency, i.catch_up));
        let r = tokio::select! {
            biased;
            _ = stop.cancelled() => return Next::Stop,
            r = process_hints(&self.client, &mut self.pipeline, hints, concurrency, catch_up) => r,
        };
        match r {
            Ok(_) => Next::Continue,
            Err(e)
                if e.downcast_ref::<ArgosError>()
                    .is_some_and(ArgosError::is_fatal) =>
            {
                Next::Fatal(e)
            }
            Err(e) => {
                tracing::error!(
                    "webhook hints failed; the poller will find these submissions: {e:#}"
                );
                Next::Continue
            }
        }
    }

    /// SIGHUP or changed files: the whole configuration, all or nothing.
    async fn on_reload(&mut self, reason: crate::reload::ReloadReason) -> Next {
        self.live
            .reload(reason, &mut self.pipeline, &self.outbox, &self.health)
            .await;
        Next::Continue
    }

    /// Everything stops on the token; the webhook endpoint is waited for
    /// (bounded), then the outbox flushes within its deadline once the
    /// writers (escalation, digests) have ended.
    async fn shut_down(self, stop: &CancellationToken, writers: &TaskTracker) {
        stop.cancel();
        drop(self.hints);
        if let Some(i) = self.ingest {
            i.stopped().await;
        }
        writers.close();
        drop(self.live);
        let _ = self.outbox_task.await;
    }
}

/// Metrics and health on `telemetry.listen`, when set; the alert API and
/// the console there too, or on `console.listen` when that is set (so the
/// console can face the office network while metrics stay on loopback). A
/// daemon that cannot serve them still delivers alerts: log, go on.
async fn serve_telemetry(
    cfg: &Config,
    health: &crate::telemetry::Health,
    live: &crate::reload::Live,
) -> Vec<AbortOnDrop> {
    let api = || crate::reload::api_service(live.api.clone());
    let mut out = Vec::new();
    let console_at = cfg.console.as_ref().and_then(|c| c.listen);
    if let Some(addr) = console_at {
        match crate::http_guard::bind(addr, "console.listen").await {
            Ok(listener) => {
                if let Ok(bound) = listener.local_addr() {
                    tracing::info!("console and alert API on http://{bound}/");
                }
                out.push(AbortOnDrop(tokio::spawn(crate::http_guard::serve(
                    listener,
                    api(),
                    crate::http_guard::Limits::API,
                    "console",
                    std::future::pending(),
                ))));
            }
            Err(e) => tracing::error!(
                "cannot serve the console on {addr} (console.listen): {e}; continuing without it"
            ),
        }
    }
    let Some(addr) = cfg.telemetry.listen else {
        return out;
    };
    let more = console_at.is_none().then(api);
    match crate::telemetry::serve(addr, health.clone(), more).await {
        Ok((bound, task)) => {
            tracing::info!("metrics on http://{bound}/metrics, health on http://{bound}/healthz");
            out.push(AbortOnDrop(task));
        }
        Err(e) => {
            tracing::error!("cannot serve metrics on {addr}: {e}; continuing without /metrics");
        }
    }
    out
}

/// Hints taken into one batch at most (the channel is drained up to this).
const MAX_HINTS_PER_BATCH: usize = 200;

/// Fetches the hinted submissions and processes them as one batch.
///
/// With `catch_up`, the newest page of the account's list is fetched first
/// and the hinted ids found in it are not fetched again. The page matters for
/// correctness, not only for calls: rules are evaluated in event-time order,
/// and a webhook that Argos lost must not let a later submission be evaluated
/// before an earlier one it should have seen (two emails of one applicant,
/// the third rejection of a user). The page brings in the recent arrivals whose
/// webhooks never came, in the same batch, sorted by event time.
///
/// A fetch that fails is logged and skipped: the poller finds the submission
/// later. A fatal error (wrong key) is returned.
async fn process_hints(
    client: &ArgosClient,
    pipeline: &mut Pipeline,
    hints: Vec<Hint>,
    concurrency: usize,
    catch_up: bool,
) -> anyhow::Result<BatchReport> {
    let n_hints = hints.len();
    // A spent budget makes no call (the poller finds these after 00:00 UTC).
    if client.budget().exhausted(chrono::Utc::now()).is_some() {
        return Ok(BatchReport::default());
    }
    let oldest = hints.iter().map(|h| h.received).min();
    let mut items = Vec::new();
    if catch_up {
        match client.list_page(&ListQuery::default()).await {
            Ok(page) => items = page.items,
            Err(e) if e.is_fatal() => return Err(e.into()),
            Err(e) if e.is_budget_exhausted() => return Ok(BatchReport::default()),
            Err(e) => tracing::warn!("newest page after webhooks failed; fetching by id only: {e}"),
        }
    }
    let mut seen: std::collections::HashSet<String> = items
        .iter()
        .filter_map(|v| crate::argos::submission_id(v).map(str::to_owned))
        .collect();
    let ids: Vec<String> = hints
        .into_iter()
        .map(|h| h.submission_id)
        .filter(|id| seen.insert(id.clone()))
        .collect();
    let by_id = ids.len();
    let mut fetches = futures::stream::iter(ids)
        .map(|id| async move {
            let r = client.get_submission(&id).await;
            (id, r)
        })
        .buffer_unordered(concurrency.max(1));
    while let Some((id, r)) = fetches.next().await {
        match r {
            Ok(Some(v)) => items.push(v),
            Ok(None) => {
                tracing::warn!(submission = %id, "webhook for a submission Argos does not return; ignored")
            }
            Err(e) if e.is_fatal() => return Err(e.into()),
            // The budget warned once; the poller finds it after 00:00 UTC.
            Err(e) if e.is_budget_exhausted() => {}
            Err(e) => tracing::error!(submission = %id, "fetch after webhook failed: {e}"),
        }
    }
    let report = pipeline
        .process_from(
            items,
            &format!("fetch after {n_hints} webhook(s)"),
            Source::Webhook,
        )
        .await?;
    tracing::debug!(
        hints = n_hints,
        fetched_by_id = by_id,
        received = report.received,
        changed = report.changed,
        alerts = report.alerts,
        since_first_hint_ms = oldest.map(|t| t.elapsed().as_millis() as u64).unwrap_or(0),
        "webhook batch done"
    );
    Ok(report)
}

/// Stops a background task when its owner goes away.
struct AbortOnDrop<T = ()>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A day's submissions in slices of at most `max`, in event-time order across
/// the day (the pipeline orders within a slice). Items whose order key cannot
/// be read without parsing go first; the pipeline reports them if they are
/// unreadable.
fn day_slices(
    items: Vec<Box<serde_json::value::RawValue>>,
    max: usize,
) -> Vec<Vec<Box<serde_json::value::RawValue>>> {
    if items.len() <= max {
        return vec![items];
    }
    let mut keyed: Vec<_> = items
        .into_iter()
        .map(|raw| (crate::argos::model::order_key(&raw), raw))
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::with_capacity(keyed.len().div_ceil(max));
    let mut it = keyed.into_iter().map(|(_, raw)| raw).peekable();
    while it.peek().is_some() {
        out.push(it.by_ref().take(max).collect());
    }
    out
}

/// Retention: forgets raw submission JSON older than `keep`.
async fn purge_raw(store: &dyn StateStore, keep: Duration) {
    let cutoff =
        chrono::Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    match store.purge_raw_older_than(cutoff).await {
        Ok(n) if n > 0 => tracing::info!("retention: raw JSON of {n} submission versions purged"),
        Ok(_) => {}
        Err(e) => tracing::error!("retention purge failed: {e}"),
    }
}

/// Options of `backfill`.
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub concurrency: usize,
    pub progress: bool,
    /// Notify as a live run would (`--notify`). Without it the history is
    /// judged quietly: alerts are recorded as `historical`, nobody is told.
    pub notify: bool,
}

/// Versions per transaction in `backfill` (see [`Pipeline::commit_every`]).
const BACKFILL_COMMIT_EVERY: usize = 5_000;
/// A day is parsed and evaluated this many submissions at a time (in event
/// time order across the day), so a busy day never sits in memory parsed.
const BACKFILL_SLICE: usize = 1_000;
/// Fetched-but-unprocessed submissions `backfill` aims to hold at most (as
/// text, about 1.5 KB each); fewer days are fetched ahead when days are big.
const BACKFILL_LOOKAHEAD: usize = 5_000;

/// Evaluates the history between two UTC days (inclusive) through the same
/// store and de-duplication as `run`: a second backfill of the same range finds
/// every version processed and alerts nothing. Days are fetched concurrently
/// but processed in date order, so windows see event-time order.
pub async fn backfill(cfg: Config, opts: BackfillOptions) -> anyhow::Result<BatchReport> {
    anyhow::ensure!(
        opts.from <= opts.to,
        "--from {} is after --to {}",
        opts.from,
        opts.to
    );
    let _lock = crate::store::lock::InstanceLock::for_store(&cfg.store, "backfill")?;
    let Engine {
        client,
        pipeline,
        outbox,
        wake,
        ..
    } = Engine::build(&cfg).await?;
    let mut pipeline = pipeline.commit_every(BACKFILL_COMMIT_EVERY);
    if !opts.notify {
        pipeline = pipeline.quiet();
    }
    // Deliveries run beside evaluation (the pipeline wakes the task when a
    // batch has alerts): waiting for them between days made every fsync of a
    // file receiver part of the backfill's critical path. A quiet backfill
    // delivers nothing, not even what an earlier `run` left in the outbox.
    let outbox_stop = CancellationToken::new();
    let mut delivering = opts.notify.then(|| {
        AbortOnDrop(tokio::spawn(
            outbox
                .clone()
                .run(wake, outbox_stop.clone().cancelled_owned()),
        ))
    });
    let days: Vec<NaiveDate> = opts
        .from
        .iter_days()
        .take_while(|d| *d <= opts.to)
        .collect();
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(days.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} days {msg}",
            )
            .expect("valid template"),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let fetch = |day: NaiveDate| {
        let client = client.clone();
        AbortOnDrop(tokio::spawn(async move {
            let q = ListQuery {
                start_date: Some(day),
                end_date: Some(day),
                ..ListQuery::default()
            };
            let mut items = Vec::new();
            let mut unreadable = Vec::new();
            let mut pages = std::pin::pin!(client.list_all_raw(q));
            while let Some(p) = pages.next().await {
                let p = p.with_context(|| format!("backfill of {day}"))?;
                items.extend(p.items);
                unreadable.extend(p.unreadable);
            }
            anyhow::Ok((items, unreadable))
        }))
    };
    let mut total = BatchReport::default();
    // Up to `concurrency` days in flight, fewer when days are big: the
    // previous day's size estimates the next one's.
    let mut ahead: std::collections::VecDeque<(NaiveDate, AbortOnDrop<_>)> = Default::default();
    let mut next_days = days.into_iter();
    let mut day_size = 0usize;
    loop {
        while ahead.len() < opts.concurrency.max(1)
            && (ahead.is_empty() || ahead.len() * day_size < BACKFILL_LOOKAHEAD)
        {
            let Some(day) = next_days.next() else { break };
            ahead.push_back((day, fetch(day)));
        }
        let Some((day, mut task)) = ahead.pop_front() else {
            break;
        };
        let (items, unreadable) = (&mut task.0)
            .await
            .with_context(|| format!("backfill of {day}: the fetch task failed"))??;
        day_size = items.len();
        let origin = format!("backfill of {day}");
        total.received += unreadable.len();
        total.unreadable += unreadable.len();
        crate::poller::set_aside(
            pipeline.store().as_ref(),
            &origin,
            &unreadable,
            &mut Default::default(),
        )
        .await?;
        for slice in day_slices(items, BACKFILL_SLICE) {
            let r = pipeline
                .process_raw(slice, &origin, Source::Backfill)
                .await?;
            total.received += r.received;
            total.changed += r.changed;
            total.alerts += r.alerts;
            total.rule_errors += r.rule_errors;
            total.unreadable += r.unreadable;
            for (rule, n) in r.would_notify {
                *total.would_notify.entry(rule).or_default() += n;
            }
        }
        bar.set_message(format!(
            "{} submissions, {} alerts",
            total.received, total.alerts
        ));
        bar.inc(1);
    }
    pipeline.flush().await?;
    bar.finish();
    // The task flushes what is due within `outbox.flush_deadline`, then ends.
    outbox_stop.cancel();
    if let Some(d) = &mut delivering {
        let _ = (&mut d.0).await;
    }
    Ok(total)
}

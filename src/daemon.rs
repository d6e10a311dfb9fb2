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
use secrecy::SecretString;
use tokio::sync::{Notify, mpsc, watch};

use crate::argos::client::{ArgosClient, ArgosError, ClientConfig, ListQuery};
use crate::argos::crypto::{AesEcb, Cipher};
use crate::config::Config;
use crate::escalation::{Clock, SystemClock};
use crate::ingest::{Hint, IngestServer};
use crate::notify::Receiver;
use crate::notify::outbox::Outbox;
use crate::notify::routing::Router;
use crate::pipeline::{BatchReport, Pipeline, Source};
use crate::poller::Poller;
use crate::rules::RuleSet;
use crate::store::{SqliteStore, Store};
use crate::templates::Templates;

/// The API key from the config, else from `ARGOS_API_KEY`.
fn api_key(cfg: &Config) -> anyhow::Result<SecretString> {
    if let Some(k) = &cfg.argos.api_key {
        return Ok(k.clone());
    }
    std::env::var("ARGOS_API_KEY")
        .map(SecretString::from)
        .map_err(|_| anyhow::anyhow!("no Argos API key: set argos.api_key in the config (e.g. `${{ARGOS_API_KEY}}`) or the environment variable ARGOS_API_KEY"))
}

pub fn client_config(cfg: &Config) -> anyhow::Result<ClientConfig> {
    let a = &cfg.argos;
    let mut c = ClientConfig::new(a.base_url.clone(), api_key(cfg)?);
    c.timeout = a.timeout.0;
    c.max_retries = a.max_retries;
    c.rate_limit_per_sec = a.rate_limit_per_sec;
    c.encrypted = a.encrypted;
    c.page_size = a.page_size;
    c.max_pages = a.max_pages_per_day;
    c.max_response_bytes = a.max_response_bytes.0;
    c.daily_budget = a.daily_budget;
    c.date_format = a.date_format;
    if let Some(d) = a.retry_base_delay {
        c.retry_base_delay = d.0;
    }
    Ok(c)
}

/// Loads the rule set, turning `check`-style problems into one error.
pub fn load_rules(cfg: &Config) -> anyhow::Result<RuleSet> {
    crate::rules::load_path(&cfg.rules, crate::rules::ScriptLimits::default()).map_err(|diags| {
        let text: Vec<String> = diags.iter().map(ToString::to_string).collect();
        anyhow::anyhow!(
            "the rules in {} have problems:\n{}",
            cfg.rules.display(),
            text.join("\n")
        )
    })
}

/// Compiles the templates and builds every receiver; all problems in one error.
pub fn build_receivers(cfg: &Config) -> anyhow::Result<Vec<Receiver>> {
    let templates =
        Arc::new(Templates::for_config(cfg).map_err(|errs| {
            anyhow::anyhow!("the templates have problems:\n{}", errs.join("\n"))
        })?);
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for r in &cfg.receivers {
        match Receiver::from_config(r, &templates) {
            Ok(r) => out.push(r),
            Err(e) => errs.push(e),
        }
    }
    anyhow::ensure!(
        errs.is_empty(),
        "the receivers have problems:\n{}",
        errs.join("\n")
    );
    Ok(out)
}

/// The `route:` tree, or every alert to every receiver when there is none.
pub fn build_router(cfg: &Config) -> anyhow::Result<Router> {
    let names: Vec<&str> = cfg.receivers.iter().map(|r| r.name()).collect();
    match &cfg.route {
        Some(r) => Router::build(r, &names)
            .map_err(|errs| anyhow::anyhow!("the route has problems:\n{}", errs.join("\n"))),
        None => Ok(Router::every_receiver(&names)),
    }
}

/// The parts `run` and `backfill` share.
pub struct Engine {
    pub store: SqliteStore,
    pub client: ArgosClient,
    pub pipeline: Pipeline<SqliteStore>,
    pub outbox: Arc<Outbox<SqliteStore>>,
    pub wake: Arc<Notify>,
}

impl Engine {
    pub async fn build(cfg: &Config) -> anyhow::Result<Engine> {
        Self::build_with(cfg, Arc::new(load_rules(cfg)?)).await
    }

    /// With a rule set from elsewhere (the demo's embedded pack, a hot reload).
    pub async fn build_with(cfg: &Config, rules: Arc<RuleSet>) -> anyhow::Result<Engine> {
        let store = SqliteStore::open(&cfg.store.path).await?;
        let client = ArgosClient::new(client_config(cfg)?)?;
        let receivers = build_receivers(cfg)?;
        let router = Arc::new(build_router(cfg)?);
        let wake = Arc::new(Notify::new());
        let outbox = Arc::new(Outbox::new(store.clone(), receivers, cfg.outbox.clone()));
        let mut pipeline = Pipeline::new(store.clone(), rules, router, wake.clone()).await?;
        if let Some(ttl) = cfg.poll.applicant_lookup {
            pipeline = pipeline.with_applicant_lookup(crate::pipeline::ApplicantLookup::new(
                client.clone(),
                ttl.0,
            ));
        }
        Ok(Engine {
            store,
            client,
            pipeline,
            outbox,
            wake,
        })
    }
}

/// Runs the daemon until `shutdown` becomes true: poll every interval,
/// act on webhook hints as they come (when `ingest:` is configured), deliver
/// the outbox, then stop, drop (roll back) a batch in flight, and flush the
/// outbox within its deadline.
///
/// One task owns the pipeline (it is single-writer): this loop selects over
/// the poll timer, the hint channel fed by the webhook endpoint, and shutdown.
pub async fn run(cfg: Config, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let rules = Arc::new(load_rules(&cfg)?);
    run_with(cfg, rules, shutdown).await
}

/// [`run`] with a given rule set (the demo's embedded pack).
pub async fn run_with(
    cfg: Config,
    rules: Arc<RuleSet>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    run_with_clock(cfg, rules, Arc::new(SystemClock), shutdown).await
}

/// [`run_with`] with the clock escalation steps are timed by (controlled in tests).
pub async fn run_with_clock(
    cfg: Config,
    rules: Arc<RuleSet>,
    clock: Arc<dyn Clock>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // Before anything else touches the store: a second daemon is refused.
    let _lock = crate::store::lock::InstanceLock::acquire(&cfg.store.path, "run")?;
    let Engine {
        store,
        client,
        mut pipeline,
        outbox,
        wake,
    } = Engine::build_with(&cfg, rules).await?;
    tracing::info!(
        rules = pipeline.rules().rules().len(),
        rule_set_version = %pipeline.rules().version(),
        base_url = %cfg.argos.base_url,
        "kyc-sentinel running"
    );
    let (ingest_stop, ingest_stop_rx) = watch::channel(false);
    let (hint_tx, mut hint_rx) =
        mpsc::channel::<Hint>(cfg.ingest.as_ref().map_or(1, |i| i.queue_capacity));
    let ingest = match &cfg.ingest {
        Some(i) => {
            // Argos encrypts webhook bodies with the same key as API answers;
            // plain bodies are read too, whatever `argos.encrypted` says.
            let cipher: Box<dyn Cipher> = Box::new(AesEcb::from_api_key(&api_key(&cfg)?));
            let server = IngestServer::start(i.clone(), Some(cipher), hint_tx, ingest_stop_rx)
                .await
                .context("cannot start the webhook endpoint")?;
            Some(server)
        }
        None => {
            drop(hint_tx);
            None
        }
    };
    let hints_on = ingest.is_some();
    let fetch_concurrency = cfg.ingest.as_ref().map_or(1, |i| i.fetch_concurrency);
    let catch_up = cfg.ingest.as_ref().is_some_and(|i| i.catch_up);
    // The outbox stops on its own signal, sent after the main loop ends, so it
    // flushes whether we stop on a signal or on a fatal error.
    let (outbox_stop, outbox_stop_rx) = watch::channel(false);
    // Escalation runs beside the outbox and stops with it; digests are
    // stopped before the outbox so a digest written at the last moment is
    // still flushed. Both are restarted by a reload (see `reload::Live`).
    let mut live = crate::reload::Live::start(&cfg, store.clone(), wake.clone(), clock)?;
    let outbox_task = tokio::spawn(outbox.clone().run(wake, outbox_stop_rx));
    let mut poller = Poller::new(client.clone(), cfg.poll.clone(), cfg.argos.daily_budget);
    let interval = cfg.poll.interval.0;
    let health = crate::telemetry::Health::new(interval).with_budget(client.budget().clone());
    let _telemetry = match cfg.telemetry.listen {
        // A daemon that cannot serve metrics still delivers alerts: log, go on.
        Some(addr) => match crate::telemetry::serve(
            addr,
            health.clone(),
            Some(crate::reload::api_service(live.api.clone())),
        )
        .await
        {
            Ok((bound, task)) => {
                tracing::info!(
                    "metrics on http://{bound}/metrics, health on http://{bound}/healthz"
                );
                Some(AbortOnDrop(task))
            }
            Err(e) => {
                tracing::error!("cannot serve metrics on {addr}: {e}; continuing without /metrics");
                None
            }
        },
        None => None,
    };
    // SIGHUP always reloads; `reload.watch` adds the file watcher.
    let mut reloads = crate::reload::watch(
        std::iter::once(cfg.rules.clone())
            .chain(cfg.templates.dir.clone())
            .chain(cfg.source.clone())
            .collect(),
        cfg.reload.watch.then_some(cfg.reload.check_every.0),
        true,
    );
    let mut next_purge = tokio::time::Instant::now();
    let mut next_poll = tokio::time::Instant::now();
    let mut fatal: Option<anyhow::Error> = None;
    loop {
        if let Some(keep) = cfg.store.raw_retention
            && tokio::time::Instant::now() >= next_purge
        {
            next_purge += Duration::from_secs(3600);
            purge_raw(&store, keep.0).await;
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep_until(next_poll) => {
                next_poll = tokio::time::Instant::now() + interval;
                let r = tokio::select! {
                    biased;
                    _ = shutdown.changed() => break,
                    r = poller.poll_once(&mut pipeline) => r,
                };
                match r {
                    Ok(rep) => {
                        health.poll_succeeded();
                        // For the digests' engine health (they read the store).
                        let _ = store.set_meta(crate::digest::LAST_POLL_META, &crate::store::fmt_time(chrono::Utc::now())).await;
                        let found = pipeline.store().found_first().await.unwrap_or_default();
                        tracing::info!(
                            pages = rep.pages, refetched = rep.refetched, received = rep.batch.received,
                            changed = rep.batch.changed, alerts = rep.batch.alerts,
                            rule_errors = rep.batch.rule_errors, api_calls = rep.api_calls,
                            found_first_by_poll = found.get("poll").copied().unwrap_or(0),
                            found_first_by_webhook = found.get("webhook").copied().unwrap_or(0),
                            "poll done"
                        );
                        crate::telemetry::emit::found_first(&found);
                        if let Some(i) = &ingest {
                            let stats = i.counters().snapshot();
                            crate::telemetry::emit::webhooks(&stats);
                            tracing::info!(webhooks = ?stats, "webhook endpoint");
                        }
                    }
                    Err(e) if e.is_fatal() => { fatal = Some(e.into()); break; }
                    // Logged once by the budget; /healthz and a gauge say so until 00:00 UTC.
                    Err(e) if e.is_budget_exhausted() => {}
                    Err(e) => tracing::error!("poll failed, will retry next interval: {e}"),
                }
            }
            Some(reason) = reloads.recv() => live.reload(reason, &mut pipeline, &outbox, &health).await,
            Some(first) = hint_rx.recv(), if hints_on => {
                // Drain what is waiting: a burst of hints makes one batch.
                let mut hints = vec![first];
                while hints.len() < MAX_HINTS_PER_BATCH {
                    match hint_rx.try_recv() {
                        Ok(h) => hints.push(h),
                        Err(_) => break,
                    }
                }
                let r = tokio::select! {
                    biased;
                    _ = shutdown.changed() => break,
                    r = process_hints(&client, &mut pipeline, hints, fetch_concurrency, catch_up) => r,
                };
                if let Err(e) = r {
                    if e.downcast_ref::<ArgosError>().is_some_and(ArgosError::is_fatal) {
                        fatal = Some(e);
                        break;
                    }
                    tracing::error!("webhook hints failed; the poller will find these submissions: {e:#}");
                }
            }
        }
    }
    let _ = ingest_stop.send(true);
    drop(hint_rx);
    if let Some(i) = ingest {
        i.stopped().await;
    }
    live.stop_digests().await;
    let _ = outbox_stop.send(true);
    live.stop_escalation().await;
    let _ = outbox_task.await;
    if let Some(e) = fatal {
        return Err(e).context("stopping: the Argos API cannot be used with this configuration");
    }
    tracing::info!("kyc-sentinel stopped");
    Ok(())
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
    pipeline: &mut Pipeline<SqliteStore>,
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

/// The alert API and the console, when a token or `console:` is configured.
pub fn api_router(cfg: &Config, store: &SqliteStore) -> Option<axum::Router> {
    if cfg.api.token.is_none() && cfg.console.is_none() {
        return None;
    }
    let policy = crate::store::lifecycle::Policy {
        four_eyes: cfg.lifecycle.four_eyes.clone(),
    };
    let api = crate::api::router(crate::api::ApiState {
        store: store.clone(),
        users: Arc::new(store.clone()),
        token: cfg.api.token.clone().map(Arc::new),
        policy: policy.clone(),
        link_secret: cfg.api.link_secret.clone().map(Arc::new),
        link_ttl: cfg
            .api
            .link_ttl
            .map_or(crate::api::DEFAULT_LINK_TTL, |d| d.0),
    });
    let console = crate::console::router(
        crate::console::ConsoleState::new(
            cfg.console.clone().unwrap_or_default(),
            policy,
            cfg.api.public_url.clone(),
            cfg.templates.dashboard_url.clone(),
            Arc::new(store.clone()),
            Arc::new(store.clone()),
        )
        .with_rules(console_rules(cfg)),
    );
    Some(api.merge(console))
}

/// What the console says of each rule. Read from the rule folder (as a
/// reload does): the pipeline's running set is not shared with the API.
fn console_rules(cfg: &Config) -> Vec<crate::console::RuleInfo> {
    match crate::rules::load_path(&cfg.rules, crate::rules::ScriptLimits::default()) {
        Ok(set) => set
            .rules()
            .iter()
            .map(|r| crate::console::RuleInfo {
                id: r.id.clone(),
                description: r.description.clone(),
                version: r.version.clone(),
            })
            .collect(),
        Err(_) => Vec::new(),
    }
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
async fn purge_raw(store: &SqliteStore, keep: Duration) {
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
    let _lock = crate::store::lock::InstanceLock::acquire(&cfg.store.path, "backfill")?;
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
    let (outbox_stop, outbox_stop_rx) = watch::channel(false);
    let mut delivering = opts
        .notify
        .then(|| AbortOnDrop(tokio::spawn(outbox.clone().run(wake, outbox_stop_rx))));
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
            pipeline.store(),
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
    let _ = outbox_stop.send(true);
    if let Some(d) = &mut delivering {
        let _ = (&mut d.0).await;
    }
    Ok(total)
}

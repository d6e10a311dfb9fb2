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
use tokio::sync::{Notify, watch};

use crate::argos::client::{ArgosClient, ClientConfig, ListQuery};
use crate::config::Config;
use crate::notify::Receiver;
use crate::notify::outbox::Outbox;
use crate::pipeline::{BatchReport, Pipeline};
use crate::poller::Poller;
use crate::rules::RuleSet;
use crate::store::SqliteStore;

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
        let receivers: Vec<Receiver> = cfg.receivers.iter().map(Receiver::from_config).collect();
        let names = receivers.iter().map(|r| r.name.clone()).collect();
        let wake = Arc::new(Notify::new());
        let outbox = Arc::new(Outbox::new(store.clone(), receivers, cfg.outbox.clone()));
        let pipeline = Pipeline::new(store.clone(), rules, names, wake.clone()).await?;
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
/// deliver the outbox, then stop polling, drop (roll back) a batch in flight,
/// and flush the outbox within its deadline.
pub async fn run(cfg: Config, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let rules = Arc::new(load_rules(&cfg)?);
    run_with(cfg, rules, shutdown).await
}

/// [`run`] with a given rule set.
pub async fn run_with(
    cfg: Config,
    rules: Arc<RuleSet>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Engine {
        store,
        client,
        mut pipeline,
        outbox,
        wake,
    } = Engine::build_with(&cfg, rules).await?;
    let mut next_purge = tokio::time::Instant::now();
    tracing::info!(
        rules = pipeline.rules().rules().len(),
        rule_set_version = %pipeline.rules().version(),
        base_url = %cfg.argos.base_url,
        "kyc-sentinel running"
    );
    // The outbox stops on its own signal, sent after the poll loop ends, so it
    // flushes whether we stop on a signal or on a fatal error.
    let (outbox_stop, outbox_stop_rx) = watch::channel(false);
    let outbox_task = tokio::spawn(outbox.run(wake, outbox_stop_rx));
    let mut poller = Poller::new(client, cfg.poll.clone(), cfg.argos.daily_budget);
    let interval = cfg.poll.interval.0;
    let health = crate::telemetry::Health::new(interval);
    let _telemetry = match cfg.telemetry.listen {
        // A daemon that cannot serve metrics still delivers alerts: log, go on.
        Some(addr) => match crate::telemetry::serve(addr, health.clone()).await {
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
        cfg.rules.clone(),
        cfg.reload.watch.then_some(cfg.reload.check_every.0),
        true,
    );
    let mut fatal = None;
    'polls: loop {
        let next = tokio::time::Instant::now() + interval;
        if let Some(keep) = cfg.store.raw_retention
            && tokio::time::Instant::now() >= next_purge
        {
            next_purge += Duration::from_secs(3600);
            let cutoff = chrono::Utc::now()
                - chrono::Duration::from_std(keep.0).unwrap_or(chrono::Duration::MAX);
            match store.purge_raw_older_than(cutoff).await {
                Ok(n) if n > 0 => {
                    tracing::info!("retention: raw JSON of {n} submission versions purged")
                }
                Ok(_) => {}
                Err(e) => tracing::error!("retention purge failed: {e}"),
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            r = poller.poll_once(&mut pipeline) => match r {
                Ok(rep) => { health.poll_succeeded(); tracing::info!(
                    pages = rep.pages, refetched = rep.refetched, received = rep.batch.received,
                    changed = rep.batch.changed, alerts = rep.batch.alerts,
                    rule_errors = rep.batch.rule_errors, api_calls = rep.api_calls, "poll done"
                ) }
                Err(e) if e.is_fatal() => { fatal = Some(e); break; }
                Err(e) => tracing::error!("poll failed, will retry next interval: {e}"),
            }
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => break,
                _ = shutdown.changed() => break 'polls,
                Some(reason) = reloads.recv() => reload_rules(&cfg, &mut pipeline, reason),
            }
        }
    }
    let _ = outbox_stop.send(true);
    let _ = outbox_task.await;
    if let Some(e) = fatal {
        return Err(e).context("stopping: polling cannot succeed with this configuration");
    }
    tracing::info!("kyc-sentinel stopped");
    Ok(())
}

/// Swaps in the re-read rules, or keeps the running ones when the new set is
/// broken. Window state is keyed by rule id, so an edited rule keeps its windows.
fn reload_rules(
    cfg: &Config,
    pipeline: &mut Pipeline<SqliteStore>,
    reason: crate::reload::ReloadReason,
) {
    match load_rules(cfg) {
        Ok(rules) if rules.version() == pipeline.rules().version() => {
            tracing::debug!("{reason}: rules unchanged ({})", rules.version());
        }
        Ok(rules) => {
            tracing::info!(
                old = %pipeline.rules().version(), new = %rules.version(), rules = rules.rules().len(),
                "{reason}: rules reloaded"
            );
            pipeline.set_rules(Arc::new(rules));
        }
        Err(e) => tracing::error!(
            running = %pipeline.rules().version(),
            "{reason}: the new rules were refused, the running rules stay in force: {e:#}"
        ),
    }
}

/// Stops a background task when its owner goes away.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Options of `backfill`.
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub concurrency: usize,
    pub progress: bool,
}

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
    let Engine {
        client,
        mut pipeline,
        outbox,
        wake,
        ..
    } = Engine::build(&cfg).await?;
    // Deliveries run beside evaluation (the pipeline wakes the task when a
    // batch has alerts): waiting for them between days made every fsync of a
    // file receiver part of the backfill's critical path.
    let (outbox_stop, outbox_stop_rx) = watch::channel(false);
    let mut delivering = AbortOnDrop(tokio::spawn(outbox.clone().run(wake, outbox_stop_rx)));
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
        async move {
            let q = ListQuery {
                start_date: Some(day),
                end_date: Some(day),
                ..ListQuery::default()
            };
            let mut items = Vec::new();
            let mut pages = std::pin::pin!(client.list_all(q));
            while let Some(p) = pages.next().await {
                items.extend(p.with_context(|| format!("backfill of {day}"))?.items);
            }
            anyhow::Ok((day, items))
        }
    };
    let mut total = BatchReport::default();
    let mut stream = futures::stream::iter(days)
        .map(fetch)
        .buffered(opts.concurrency.max(1));
    while let Some(fetched) = stream.next().await {
        let (day, items) = fetched?;
        let r = pipeline
            .process(items, &format!("backfill of {day}"))
            .await?;
        total.received += r.received;
        total.changed += r.changed;
        total.alerts += r.alerts;
        total.rule_errors += r.rule_errors;
        total.unreadable += r.unreadable;
        bar.set_message(format!(
            "{} submissions, {} alerts",
            total.received, total.alerts
        ));
        bar.inc(1);
    }
    bar.finish();
    // The task flushes what is due within `outbox.flush_deadline`, then ends.
    let _ = outbox_stop.send(true);
    let _ = (&mut delivering.0).await;
    Ok(total)
}

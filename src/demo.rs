//! `kyc-sentinel demo`: the whole engine in one command, without an Argos account.
//!
//! A simulator runs in-process on a loopback port with a backlog and live
//! arrivals (some pending, decided later); the real daemon polls it with the
//! shipped rules (embedded in the binary) and a temporary SQLite store, and
//! delivers into `demo-out/`. At the end a summary says what happened and
//! where the files are.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;

use crate::config::Config;
use crate::simulator::{SimConfig, Simulator};
use crate::store::{StateStore, Summary};

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub duration: Duration,
    pub out: PathBuf,
    pub seed: u64,
    pub backlog: usize,
    pub rate: f64,
    pub progress: bool,
}

/// What the demo did, and where it left its files.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub summary: Summary,
    pub out: PathBuf,
    pub files: Vec<(String, PathBuf)>,
}

/// The demo's configuration: what an operator would write for a small team.
/// AML red flags go to the escalation channel (a Slack-format webhook) and to
/// the compliance inbox at once; everything else to the inbox, grouped.
fn demo_config(base_url: &str, store: &Path, out: &Path, webhook: &str) -> anyhow::Result<Config> {
    let text = format!(
        "argos:\n  base_url: {base_url}\n  api_key: sim-key\n  rate_limit_per_sec: 200\n  page_size: 100\n\
         poll:\n  interval: 2s\n  midnight_overlap: 24h\n\
         store:\n  path: {store}\n\
         outbox:\n  retry_base: 200ms\n\
         telemetry:\n  listen: 127.0.0.1:0\n\
         reload:\n  watch: false\n\
         receivers:\n\
         \x20 - name: alerts-file\n    type: file\n    path: {alerts}\n\
         \x20 - name: compliance-inbox\n    type: email\n    from: kyc-sentinel <sentinel@example.com>\n\
         \x20   to: [compliance@example.com]\n    eml_dir: {mail}\n\
         \x20 - name: aml-escalation\n    type: webhook\n    url: {webhook}\n    template: slack.json\n\
         \x20   secret: demo-shared-secret\n\
         route:\n  receiver: compliance-inbox\n  group_wait: 3s\n  routes:\n\
         \x20   - receiver: alerts-file\n      group_by: ['...']\n      group_wait: 0s\n      continue: true\n\
         \x20   - receiver: aml-escalation\n      match: {{ team: aml }}\n      group_by: ['...']\n      group_wait: 0s\n      continue: true\n\
         \x20   - receiver: compliance-inbox\n      group_wait: 3s\n",
        store = store.display(),
        alerts = out.join("alerts.jsonl").display(),
        mail = out.join("mail").display(),
    );
    crate::compose::parse_config(Path::new("<demo>"), &text, |_| None).map_err(anyhow::Error::msg)
}

/// A stand-in for Slack: writes each webhook body to `dir/NNNN.json`.
async fn webhook_sink(dir: PathBuf) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    use axum::routing::post;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hook",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let dir = dir.clone();
                let counter = counter.clone();
                async move {
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("no-key");
                    let name = format!("{n:04}-{}.json", &key[..key.len().min(12)]);
                    match std::fs::write(dir.join(name), &body) {
                        Ok(()) => axum::http::StatusCode::OK,
                        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, task))
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<DemoReport> {
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    // A fresh run each time: files of a previous demo would mix with this one's.
    let _ = std::fs::remove_file(opts.out.join("alerts.jsonl"));
    for sub in ["mail", "webhooks"] {
        let _ = std::fs::remove_dir_all(opts.out.join(sub));
    }
    let (webhook_url, sink) = webhook_sink(opts.out.join("webhooks")).await?;

    let sim = Simulator::start(SimConfig {
        seed: opts.seed,
        submissions: opts.backlog,
        rate: opts.rate,
        pending_share: 0.3,
        decide_after: Duration::from_secs(6),
        base_time: Some(Utc::now()),
        backlog_span: Some(Duration::from_secs(6 * 3600)),
        ..SimConfig::default()
    })
    .await
    .context("cannot start the simulator on 127.0.0.1")?;
    let tmp = tempfile_dir()?;
    let store_path = tmp.join("demo.db");
    let cfg = demo_config(&sim.base_url(), &store_path, &opts.out, &webhook_url)?;
    let rules = Arc::new(crate::rules::shipped::shipped_rules());

    let daily_budget = cfg.argos.daily_budget;
    let stop = tokio_util::sync::CancellationToken::new();
    let daemon = tokio::spawn(crate::daemon::run_with(cfg, rules, stop.clone()));

    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(opts.duration.as_secs());
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} demo {elapsed:>3} [{bar:25}] {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let started = tokio::time::Instant::now();
    let store_cfg = crate::config::StoreConfig {
        path: store_path.clone(),
        ..Default::default()
    };
    let mut reader: Option<std::sync::Arc<dyn StateStore>> = None;
    while started.elapsed() < opts.duration {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if daemon.is_finished() {
            break;
        }
        if reader.is_none() && store_path.exists() {
            reader = crate::store::open(&store_cfg).await.ok();
        }
        if let Some(r) = &reader
            && let Ok(s) = r.summary().await
        {
            bar.set_message(format!(
                "{} submissions seen, {} alerts, {} notifications sent",
                s.submissions,
                s.alerts(),
                s.delivered()
            ));
        }
        bar.set_position(started.elapsed().as_secs());
    }
    bar.finish_and_clear();
    stop.cancel();
    daemon.await.context("the engine task panicked")??;
    sim.shutdown().await?;
    sink.abort();

    let store = crate::store::open(&store_cfg).await?;
    let summary = store.summary().await?;
    // The digest a compliance lead would get for the last 24 hours.
    let digest_cfg = crate::config::DigestConfig {
        period: Some(crate::config::Dur(Duration::from_secs(24 * 3600))),
        ..crate::config::DigestConfig::daily_default()
    };
    let digest = crate::digest::preview(
        store.as_ref(),
        &crate::templates::Templates::shipped(),
        &digest_cfg,
        Utc::now() + chrono::Duration::seconds(1),
        daily_budget,
    )
    .await?;
    let digest_path = opts.out.join("digest.html");
    std::fs::write(&digest_path, &digest.html)
        .with_context(|| format!("cannot write {}", digest_path.display()))?;
    store.close().await;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(DemoReport {
        summary,
        out: opts.out.clone(),
        files: vec![
            ("alerts (JSON lines)".into(), opts.out.join("alerts.jsonl")),
            ("emails (.eml)".into(), opts.out.join("mail")),
            ("webhooks (Slack JSON)".into(), opts.out.join("webhooks")),
            ("digest preview (HTML)".into(), digest_path),
        ],
    })
}

/// A private folder for the demo's store, removed at the end.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kyc-sentinel-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

impl DemoReport {
    /// The summary table printed at the end of the demo.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let s = &self.summary;
        out.push_str(&format!(
            "kyc-sentinel demo: {} submissions seen, {} alerts, {} notifications sent\n\n",
            s.submissions,
            s.alerts(),
            s.delivered()
        ));
        let width = s
            .alerts_by_rule
            .iter()
            .map(|r| r.0.len())
            .max()
            .unwrap_or(4)
            .max(4);
        out.push_str(&format!(
            "  {:<width$}  {:<8}  {:>6}\n",
            "rule", "severity", "alerts"
        ));
        for (rule, sev, n) in &s.alerts_by_rule {
            out.push_str(&format!("  {rule:<width$}  {sev:<8}  {n:>6}\n"));
        }
        out.push_str("\n  notifications by receiver:\n");
        for (receiver, state, n) in &s.outbox {
            out.push_str(&format!("    {receiver:<20} {state:<10} {n:>6}\n"));
        }
        out.push_str("\n  files:\n");
        for (what, path) in &self.files {
            out.push_str(&format!("    {what:<22} {}\n", path.display()));
        }
        out
    }
}

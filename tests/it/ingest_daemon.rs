//! The daemon with push ingestion against the simulator pushing webhooks:
//! exactly the alerts `eval` finds, each once, whether its webhook arrived or
//! was dropped; the ones whose webhook arrived long before the next poll; and
//! the event -> delivery latency (p50/p99) on a local file receiver.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use kyc_sentinel::daemon;
use kyc_sentinel::simulator::{PushRecord, SimConfig, SimHandle, Simulator, WebhookPush};
use kyc_sentinel::store::SqliteStore;
use kyc_sentinel::store::prelude::*;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "ingest-test-token-0123";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shared test config with a long poll interval and the endpoint on `port`.
fn config(dir: &Path, sim: &SimHandle, port: u16, poll: &str) -> PathBuf {
    let path = write_config(
        dir,
        &sim.base_url(),
        // The endpoint's rate limit is not what these tests measure.
        &format!(
            "ingest:\n  listen: 127.0.0.1:{port}\n  token: {TOKEN}\n  rate_limit_per_sec: 5000\n"
        ),
    );
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("interval: 1s", &format!("interval: {poll}"));
    std::fs::write(&path, text).unwrap();
    path
}

fn push_to(port: u16, drop: f64) -> Option<WebhookPush> {
    Some(WebhookPush {
        url: format!("http://127.0.0.1:{port}/argos/webhook/{TOKEN}"),
        drop,
    })
}

/// Reads the file receiver's lines as they are appended, stamping each with
/// the time it was seen (checked every 2 ms).
fn tail(
    path: PathBuf,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Vec<(DateTime<Utc>, Value)>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut offset = 0usize;
        let mut partial = String::new();
        loop {
            if let Ok(bytes) = std::fs::read(&path)
                && bytes.len() > offset
            {
                let now = Utc::now();
                partial.push_str(&String::from_utf8_lossy(&bytes[offset..]));
                offset = bytes.len();
                while let Some(i) = partial.find('\n') {
                    let line: String = partial.drain(..=i).collect();
                    seen.push((now, serde_json::from_str(&line).unwrap()));
                }
            }
            if *stop.borrow() {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
}

/// The push that announced the version an alert fired on: the latest event
/// for its submission published before the delivery.
fn announcing<'a>(
    log: &'a [PushRecord],
    submission: &str,
    delivered: DateTime<Utc>,
) -> Option<&'a PushRecord> {
    log.iter()
        .filter(|r| r.submission_id == submission && r.at <= delivered)
        .max_by_key(|r| r.version)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_webhooks_are_found_by_the_poller_and_every_alert_arrives_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sim = Simulator::start(SimConfig {
        seed: 31,
        submissions: 150,
        webhook: push_to(port, 0.2),
        ..recent_backlog()
    })
    .await
    .unwrap();
    let cfg = kyc_sentinel::compose::load_config(&config(dir.path(), &sim, port, "10s")).unwrap();
    let tx = CancellationToken::new();
    let rx = tx.clone();
    let (tail_stop, tail_rx) = watch::channel(false);
    let tailer = tail(dir.path().join("alerts.jsonl"), tail_rx);
    let started = tokio::time::Instant::now();
    let daemon = tokio::spawn(daemon::run(cfg, rx));
    // The first poll takes the backlog; the arrivals come after it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drive_arrivals(&sim, 32, 6, Duration::from_millis(2500)).await;
    // The last webhooks are all lost: only the poll at 20s can find these.
    sim.set_webhook_drop(1.0);
    for i in 0..3 {
        sim.insert(red_flag(&format!("lost-{i}")));
    }
    // Polls at 0s, 10s, 20s: the one at 20s finds what was dropped after 10s.
    tokio::time::sleep_until(started + Duration::from_secs(22)).await;
    tx.cancel();
    tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .expect("daemon stops within 10s")
        .unwrap()
        .expect("daemon ran without error");
    tail_stop.send(true).unwrap();
    let lines = tailer.await.unwrap();

    let expected = expected_alerts(&sim.dump());
    let got = delivered(&dir.path().join("alerts.jsonl"));
    let log = sim.webhook_log();
    assert_eq!(
        assert_delivered_exactly(&expected, &got),
        0,
        "no duplicates"
    );

    let (sent_ok, failed, dropped) = sim.webhook_stats();
    assert_eq!(failed, 0, "every webhook sent was accepted");
    assert_eq!(sent_ok + dropped, log.len() as u64);
    assert!(
        (0.1..0.3).contains(&((dropped - 3) as f64 / (log.len() - 3) as f64)),
        "about 20% dropped: {dropped} of {}",
        log.len()
    );
    let backlog: std::collections::HashSet<String> = sim.dump()[..150]
        .iter()
        .map(|v| v["submission_id"].as_str().unwrap().to_owned())
        .collect();
    let (mut fast, mut slow) = (Vec::new(), Vec::new());
    for (at, line) in &lines {
        let sub = line["alert"]["submission_id"].as_str().unwrap();
        if backlog.contains(sub) {
            continue; // found by the first poll, no webhook
        }
        let rec = announcing(&log, sub, *at).expect("a live submission was announced");
        let ms = (*at - rec.at).num_milliseconds();
        if rec.dropped {
            slow.push((sub.to_owned(), ms));
        } else {
            fast.push((sub.to_owned(), ms));
        }
    }
    assert!(fast.len() >= 3, "alerts sped up by a webhook: {fast:?}");
    let lost: Vec<_> = slow
        .iter()
        .filter(|(s, _)| s.starts_with("lost-"))
        .collect();
    assert_eq!(
        lost.len(),
        3,
        "the poller found the three whose webhooks were all lost: {slow:?}"
    );
    // Found by the poll, or sooner by a later webhook's catch-up page (the
    // README's "Reconciliation"): either is correct, so no lower bound here.
    for (sub, ms) in &fast {
        assert!(
            *ms < 1000,
            "{sub}: its webhook arrived, yet delivered {ms} ms after the event (poll interval 10s)"
        );
    }
    eprintln!(
        "webhook-announced alerts: {} (max {} ms); webhook dropped (found by a later catch-up or the poll): {} ({:?} ms)",
        fast.len(),
        fast.iter().map(|x| x.1).max().unwrap_or(0),
        slow.len(),
        slow.iter().map(|x| x.1).collect::<Vec<_>>()
    );

    let store = SqliteStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    let found = store.found_first().await.unwrap();
    let by = |k: &str| found.get(k).copied().unwrap_or(0);
    assert!(by("webhook") > 0 && by("poll") > 150, "{found:?}");
    eprintln!("versions found first: {found:?}");
}

/// An AML red flag (high): the shipped rule `aml-red-flag-high` fires on it.
fn red_flag(id: &str) -> Value {
    let t = kyc_sentinel::argos::model::format_argos_timestamp(Utc::now());
    json!({
        "submission_id": id, "email": format!("{id}@example.com"),
        "created_at": t, "updated_at": t,
        "kyc": {"result": "approved"},
        "aml": {"currentstatus": "Red Flag", "risk_level_summary": "High", "matches": []}
    })
}

/// Event -> delivery latency through the webhook path (poll interval 60s, so
/// the poller plays no part). `INGEST_LATENCY_N` events (default 200), one
/// every `INGEST_LATENCY_GAP_MS` ms (default 20). Prints p50/p99/max.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_to_delivery_latency() {
    let n: usize = std::env::var("INGEST_LATENCY_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let gap: u64 = std::env::var("INGEST_LATENCY_GAP_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sim = Simulator::start(SimConfig {
        submissions: 0,
        webhook: push_to(port, 0.0),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let cfg = kyc_sentinel::compose::load_config(&config(dir.path(), &sim, port, "60s")).unwrap();
    let tx = CancellationToken::new();
    let rx = tx.clone();
    let (tail_stop, tail_rx) = watch::channel(false);
    let tailer = tail(dir.path().join("alerts.jsonl"), tail_rx);
    let daemon = tokio::spawn(daemon::run(cfg, rx));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..n {
        sim.insert(red_flag(&format!("lat-{i}")));
        tokio::time::sleep(Duration::from_millis(gap)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while delivered(&dir.path().join("alerts.jsonl")).len() < n
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    tx.cancel();
    daemon.await.unwrap().unwrap();
    tail_stop.send(true).unwrap();
    let lines = tailer.await.unwrap();

    let pushed: HashMap<String, DateTime<Utc>> = sim
        .webhook_log()
        .into_iter()
        .map(|r| (r.submission_id, r.at))
        .collect();
    let mut ms: Vec<f64> = lines
        .iter()
        .filter(|(_, l)| l["alert"]["rule"] == "aml-red-flag-high")
        .map(|(at, l)| {
            let sub = l["alert"]["submission_id"].as_str().unwrap();
            (*at - pushed[sub]).num_microseconds().unwrap() as f64 / 1000.0
        })
        .collect();
    assert_eq!(
        sim.webhook_stats(),
        (n as u64, 0, 0),
        "every webhook accepted"
    );
    assert_eq!(ms.len(), n, "every red flag delivered once, by webhook");
    ms.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms[ms.len() - 1],
    );
    eprintln!(
        "latency event -> file receiver over {n} events, one every {gap} ms: \
         p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
    );
    // The target is p99 < 100 ms; the test bound is looser so a loaded
    // machine does not fail it, and still far below the 60s poll interval.
    assert!(p99 < 1000.0, "p99 {p99:.1} ms");
}

//! The `run` binary as an operator runs it: stopped by SIGTERM, killed by
//! SIGKILL at random moments. Nothing may be lost; a duplicate is allowed only
//! for a delivery cut short by the kill, and then with the same idempotency key.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kyc_sentinel::simulator::{SimConfig, Simulator};
use rand::{Rng, SeedableRng};

/// Starts `run`; its warnings and "poll done" lines go to `run.log` beside
/// the config (appended by every start): [`polls_done`] reads them, and
/// [`warnings`] shows them when a check fails.
fn spawn_run(config: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_file_name("run.log"))
        .expect("open run.log");
    Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn,kyc_sentinel::daemon=info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start kyc-sentinel run")
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM failed");
}

/// Waits for the child to exit, at most `limit`; returns its status and how long it took.
fn wait_exit(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("kyc-sentinel did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_within_10s_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig {
        seed: 31,
        submissions: 300,
        ..recent_backlog()
    })
    .await
    .unwrap();
    let cfg = write_config(dir.path(), &sim.base_url(), "");
    let mut child = spawn_run(&cfg);
    drive_arrivals(&sim, 32, 3, Duration::from_millis(2500)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    sigterm(&child);
    let (status, took) = wait_exit(&mut child, Duration::from_secs(10));
    let stderr = std::fs::read_to_string(dir.path().join("run.log")).unwrap();
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{stderr}"
    );
    assert!(took < Duration::from_secs(10));
    let expected = expected_alerts(&sim.dump());
    assert!(!expected.is_empty());
    assert_eq!(
        assert_delivered_exactly(&expected, &delivered(&dir.path().join("alerts.jsonl"))),
        0
    );
    assert!(
        !stderr.contains("sim-key"),
        "the API key leaked into the logs:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_twenty_times_loses_nothing() {
    sigkill_twenty_times_loses_nothing_on(Backend::Sqlite).await;
}

/// The same kills with the state in PostgreSQL (one instance: it leads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_twenty_times_on_postgres_loses_nothing() {
    let Some(pg) = Backend::postgres("sigkill") else {
        return;
    };
    sigkill_twenty_times_loses_nothing_on(pg).await;
}

async fn sigkill_twenty_times_loses_nothing_on(backend: Backend) {
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4242);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig {
        seed: 41,
        submissions: 600,
        ..recent_backlog()
    })
    .await
    .unwrap();
    let cfg = write_config_on(dir.path(), &sim.base_url(), &backend, "");
    // Submissions keep arriving for the whole run of kills. `eval` judges
    // every version served, pending ones included, and a version no daemon
    // polls while it is served cannot be judged: so pending versions live
    // DECIDE_AFTER, and daemons keep polling until the last one is decided.
    // A daemon that dies before its first poll completes polls nothing, and
    // a PostgreSQL one (leadership first) often needs more than the 0.3-1.5 s
    // it is given: two in three therefore live from their first completed
    // poll on; the third dies at a random moment of its start (the first,
    // large batch included).
    const DECIDE_AFTER: Duration = Duration::from_secs(10);
    let sim = std::sync::Arc::new(sim);
    let feeder = {
        let sim = sim.clone();
        tokio::spawn(async move { drive_arrivals(&sim, 42, 18, DECIDE_AFTER).await })
    };
    let mut kills = 0;
    while kills < 20 || !feeder.is_finished() {
        let before = polls_done(dir.path());
        let mut child = KillOnDrop(spawn_run(&cfg));
        // From its first poll on, a kill may cut the deliveries it starts.
        let alive = if kills % 3 != 2 {
            wait_for_poll(dir.path(), before).await;
            Duration::from_millis(rng.random_range(0..1500))
        } else {
            Duration::from_millis(rng.random_range(300..1500))
        };
        tokio::time::sleep(alive).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    feeder.await.unwrap();
    let gap = longest_poll_gap(dir.path());
    assert!(
        gap < DECIDE_AFTER,
        "no poll completed for {gap:?} while versions changed: a pending version may never \
         have been seen, so the comparison with eval below would mean nothing\n{}",
        warnings(dir.path())
    );
    // A last clean run picks up whatever the kills interrupted: it polls
    // once after the last decision, delivers, and stops on SIGTERM.
    let before = polls_done(dir.path());
    let mut child = KillOnDrop(spawn_run(&cfg));
    wait_for_poll(dir.path(), before).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    sigterm(&child);
    let (status, _) = wait_exit(&mut child, Duration::from_secs(10));
    assert!(
        status.success(),
        "the last run ended with {status}\n{}",
        warnings(dir.path())
    );

    let expected = expected_alerts(&sim.dump());
    let got = delivered(&dir.path().join("alerts.jsonl"));
    // Shown only when a check below fails (captured otherwise).
    print_unexpected(&dir.path().join("alerts.jsonl"), &expected);
    let dups = assert_delivered_exactly(&expected, &got);
    println!(
        "crash test on {} (CRASH_SEED={seed}): {kills} SIGKILLs, {} alerts expected and delivered, \
         {dups} duplicate deliveries (same idempotency key)",
        backend.name(),
        expected.len()
    );
}

/// The delivered alerts `eval` did not decide, in full (rule, submissions,
/// event time), to tell which version the daemon judged differently.
fn print_unexpected(alerts: &std::path::Path, expected: &[kyc_sentinel::rules::Alert]) {
    let text = std::fs::read_to_string(alerts).unwrap_or_default();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let a = &v["alert"];
        if !expected
            .iter()
            .any(|e| a["fingerprint"] == e.fingerprint.as_str())
        {
            println!(
                "delivered, not in eval: {} by {} about {} at {} (key {})",
                a["rule"], a["submission_id"], a["submission_ids"], a["event_time"], a["group_key"]
            );
        }
    }
    let got: std::collections::HashSet<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["idempotency_key"].as_str().map(str::to_owned))
        .collect();
    for e in expected.iter().filter(|e| !got.contains(&e.fingerprint)) {
        println!(
            "in eval, not delivered: {} by {} about {:?} at {} (key {:?})",
            e.rule, e.submission_id, e.submission_ids, e.event_time, e.group_key
        );
    }
}

/// The daemons' warnings (every start appends to `run.log`), at most 200 lines.
fn warnings(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(dir.join("run.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(200)..].join("\n")
}

/// Polls completed by every daemon so far ("poll done" lines of `run.log`).
fn polls_done(dir: &std::path::Path) -> usize {
    std::fs::read_to_string(dir.join("run.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("poll done"))
        .count()
}

/// Waits until a daemon completed a poll beyond the first `before` (at most
/// a minute: a daemon that cannot poll in that time is a failure of its own).
async fn wait_for_poll(dir: &std::path::Path, before: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while polls_done(dir) <= before {
        assert!(
            Instant::now() < deadline,
            "the daemon completed no poll in 60 s\n{}",
            warnings(dir)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The longest time between two completed polls (log timestamps).
fn longest_poll_gap(dir: &std::path::Path) -> Duration {
    let text = std::fs::read_to_string(dir.join("run.log")).unwrap_or_default();
    let times: Vec<chrono::DateTime<chrono::Utc>> = text
        .lines()
        .filter(|l| l.contains("poll done"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    times
        .windows(2)
        .filter_map(|w| (w[1] - w[0]).to_std().ok())
        .max()
        .unwrap_or_default()
}

//! The `run` binary as an operator runs it: stopped by SIGTERM, killed by
//! SIGKILL at random moments. Nothing may be lost; a duplicate is allowed only
//! for a delivery cut short by the kill, and then with the same idempotency key.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kyc_sentinel::simulator::{SimConfig, Simulator};
use rand::{Rng, SeedableRng};

fn spawn_run(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
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
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
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
    // Submissions keep arriving for the whole run of kills. A version the
    // daemon never sees cannot be judged, so pending versions live 6s: several
    // short-lived daemons poll during that time.
    let sim = std::sync::Arc::new(sim);
    let feeder = {
        let sim = sim.clone();
        tokio::spawn(async move { drive_arrivals(&sim, 42, 18, Duration::from_secs(6)).await })
    };
    let mut kills = 0;
    while kills < 20 {
        let mut child = spawn_run(&cfg);
        let alive = Duration::from_millis(rng.random_range(300..1500));
        tokio::time::sleep(alive).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    feeder.await.unwrap();
    // A last clean run picks up whatever the kills interrupted.
    let mut child = spawn_run(&cfg);
    tokio::time::sleep(Duration::from_secs(4)).await;
    sigterm(&child);
    let (status, _) = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success());

    let expected = expected_alerts(&sim.dump());
    let got = delivered(&dir.path().join("alerts.jsonl"));
    let dups = assert_delivered_exactly(&expected, &got);
    println!(
        "crash test on {} (CRASH_SEED={seed}): {kills} SIGKILLs, {} alerts expected and delivered, \
         {dups} duplicate deliveries (same idempotency key)",
        backend.name(),
        expected.len()
    );
}

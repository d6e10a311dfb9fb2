//! The durable pipeline against the simulator over HTTP, with a real SQLite
//! file, and the same tests on a real PostgreSQL database where it matters.

use crate::common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use kyc_sentinel::compose::Engine;
use kyc_sentinel::daemon::{self, BackfillOptions};
use kyc_sentinel::poller::Poller;
use kyc_sentinel::simulator::{FaultConfig, SimConfig, Simulator};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

async fn run_daemon_while<F: std::future::Future<Output = ()>>(
    cfg_path: &std::path::Path,
    during: F,
    settle: Duration,
) {
    let cfg = kyc_sentinel::compose::load_config(cfg_path).unwrap();
    let tx = CancellationToken::new();
    let rx = tx.clone();
    let daemon = tokio::spawn(daemon::run(cfg, rx));
    during.await;
    // Let the last versions be polled (interval 1s) and delivered.
    tokio::time::sleep(settle).await;
    tx.cancel();
    tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .expect("daemon stops within 10s")
        .unwrap()
        .expect("daemon ran without error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_run_delivers_exactly_the_alerts_eval_finds() {
    live_run_delivers_what_eval_finds_on(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_run_on_postgres_delivers_exactly_the_alerts_eval_finds() {
    let Some(pg) = Backend::postgres("live_run") else {
        return;
    };
    live_run_delivers_what_eval_finds_on(pg).await;
}

async fn live_run_delivers_what_eval_finds_on(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig {
        seed: 11,
        submissions: 300,
        ..recent_backlog()
    })
    .await
    .unwrap();
    let cfg = write_config_on(dir.path(), &sim.base_url(), &backend, "");
    run_daemon_while(
        &cfg,
        drive_arrivals(&sim, 12, 6, Duration::from_millis(2500)),
        Duration::from_secs(3),
    )
    .await;

    let expected = expected_alerts(&sim.dump());
    assert!(
        expected.len() >= 10,
        "the scenario should raise alerts, got {}",
        expected.len()
    );
    let got = delivered(&dir.path().join("alerts.jsonl"));
    let dups = assert_delivered_exactly(&expected, &got);
    assert_eq!(dups, 0, "no crash, so no duplicate delivery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_do_not_change_the_delivered_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig {
        seed: 21,
        submissions: 400,
        faults: FaultConfig {
            // 5/7 of faults are 429 or 5xx, 1/7 slow, 1/7 truncated bodies.
            rate: 0.2,
            slow_delay: Duration::from_millis(50),
            retry_after_secs: 0,
        },
        ..recent_backlog()
    })
    .await
    .unwrap();
    let cfg = write_config(dir.path(), &sim.base_url(), "");
    run_daemon_while(
        &cfg,
        drive_arrivals(&sim, 22, 4, Duration::from_millis(2500)),
        Duration::from_secs(4),
    )
    .await;
    let expected = expected_alerts(&sim.dump());
    assert!(!expected.is_empty());
    let got = delivered(&dir.path().join("alerts.jsonl"));
    assert_eq!(assert_delivered_exactly(&expected, &got), 0);
    assert!(
        sim.requests() > 20,
        "the daemon polled ({} requests)",
        sim.requests()
    );
}

fn too_many_retry(id: &str, userid: &str, at: chrono::DateTime<Utc>) -> Value {
    let t = kyc_sentinel::argos::model::format_argos_timestamp(at);
    json!({
        "submission_id": id, "userid": userid, "email": format!("{id}@example.com"),
        "created_at": t, "updated_at": t,
        "kyc": {"result": "rejected", "comment": ["Multiple invalid KYC attempts"], "commentCode": ["too_many_retry"]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_state_survives_a_restart() {
    window_state_survives_a_restart_on(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_state_survives_a_restart_on_postgres() {
    let Some(pg) = Backend::postgres("window_restart") else {
        return;
    };
    window_state_survives_a_restart_on(pg).await;
}

async fn window_state_survives_a_restart_on(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig {
        submissions: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let cfg = kyc_sentinel::compose::load_config(&write_config_on(
        dir.path(),
        &sim.base_url(),
        &backend,
        "",
    ))
    .unwrap();
    let now = Utc::now();
    sim.insert(too_many_retry(
        "s-1",
        "probe-user",
        now - chrono::Duration::minutes(30),
    ));
    sim.insert(too_many_retry(
        "s-2",
        "probe-user",
        now - chrono::Duration::minutes(20),
    ));
    {
        let mut engine = Engine::build(&cfg).await.unwrap();
        let mut poller = Poller::new(engine.client.clone(), cfg.poll.clone(), 0);
        let rep = poller.poll_once(&mut engine.pipeline).await.unwrap();
        assert_eq!((rep.batch.changed, rep.batch.alerts), (2, 0));
    } // the engine is gone: only the store remembers the two rejections
    sim.insert(too_many_retry(
        "s-3",
        "probe-user",
        now - chrono::Duration::minutes(10),
    ));
    let mut engine = Engine::build(&cfg).await.unwrap();
    let mut poller = Poller::new(engine.client.clone(), cfg.poll.clone(), 0);
    let rep = poller.poll_once(&mut engine.pipeline).await.unwrap();
    assert_eq!((rep.batch.changed, rep.batch.alerts), (1, 1));
    engine.outbox.deliver_due().await.unwrap();
    let text = std::fs::read_to_string(dir.path().join("alerts.jsonl")).unwrap();
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["alert"]["rule"], "repeated-too-many-retry");
    assert_eq!(
        line["alert"]["submission_ids"],
        json!(["s-1", "s-2", "s-3"])
    );
    assert_eq!(line["alert"]["group_key"], "probe-user");
    // And a further poll changes nothing.
    let rep = poller.poll_once(&mut engine.pipeline).await.unwrap();
    assert_eq!((rep.batch.changed, rep.batch.alerts), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_twice_alerts_once() {
    backfill_twice_alerts_once_on(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_twice_on_postgres_alerts_once() {
    let Some(pg) = Backend::postgres("backfill_twice") else {
        return;
    };
    backfill_twice_alerts_once_on(pg).await;
}

async fn backfill_twice_alerts_once_on(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let end = Utc::now() - chrono::Duration::days(1);
    let sim = Simulator::start(SimConfig {
        seed: 5,
        submissions: 1500,
        base_time: Some(end),
        backlog_span: Some(Duration::from_secs(4 * 86_400)),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let cfg_path = write_config_on(dir.path(), &sim.base_url(), &backend, "");
    let opts = BackfillOptions {
        from: (end - chrono::Duration::days(5)).date_naive(),
        to: end.date_naive(),
        concurrency: 3,
        progress: false,
        // These compare deliveries with eval; the quiet default sends none.
        notify: true,
    };
    let first = daemon::backfill(
        kyc_sentinel::compose::load_config(&cfg_path).unwrap(),
        opts.clone(),
    )
    .await
    .unwrap();
    assert_eq!(first.received, 1500);
    let expected = expected_alerts(&sim.dump());
    assert_eq!(first.alerts, expected.len());
    assert!(
        first.alerts > 20,
        "history should raise alerts, got {}",
        first.alerts
    );
    let got = delivered(&dir.path().join("alerts.jsonl"));
    assert_eq!(assert_delivered_exactly(&expected, &got), 0);

    let second = daemon::backfill(kyc_sentinel::compose::load_config(&cfg_path).unwrap(), opts)
        .await
        .unwrap();
    assert_eq!(
        (second.received, second.changed, second.alerts),
        (1500, 0, 0)
    );
    assert_eq!(
        delivered(&dir.path().join("alerts.jsonl")).len(),
        expected.len()
    );
}

/// Days bigger than a backfill slice (1,000) are ordered across the whole day
/// and evaluated a slice at a time, and several days share one transaction:
/// the alerts are still exactly eval's over the same history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_of_big_days_alerts_as_eval_does() {
    let dir = tempfile::tempdir().unwrap();
    let end = Utc::now() - chrono::Duration::days(1);
    let sim = Simulator::start(SimConfig {
        seed: 11,
        submissions: 4500,
        base_time: Some(end),
        backlog_span: Some(Duration::from_secs(2 * 86_400)),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let cfg_path = write_config(dir.path(), &sim.base_url(), "");
    let opts = BackfillOptions {
        from: (end - chrono::Duration::days(3)).date_naive(),
        to: end.date_naive(),
        concurrency: 2,
        progress: false,
        // These compare deliveries with eval; the quiet default sends none.
        notify: true,
    };
    let report = daemon::backfill(kyc_sentinel::compose::load_config(&cfg_path).unwrap(), opts)
        .await
        .unwrap();
    assert_eq!(report.received, 4500);
    let expected = expected_alerts(&sim.dump());
    assert!(expected.len() > 50, "history should raise alerts");
    assert_eq!(report.alerts, expected.len());
    let got = delivered(&dir.path().join("alerts.jsonl"));
    assert_eq!(assert_delivered_exactly(&expected, &got), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applicant_lookup_counts_duplicates_submitted_before_the_engine() {
    let sim = Simulator::start(SimConfig {
        submissions: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let old =
        kyc_sentinel::argos::model::format_argos_timestamp(Utc::now() - chrono::Duration::days(5));
    let now = kyc_sentinel::argos::model::format_argos_timestamp(Utc::now());
    // Five days old: outside the days the poller lists, known to Argos's applicant index.
    sim.insert(
        json!({"submission_id": "old-1", "applicant_id": "app-9", "email": "first@example.com",
                      "created_at": old, "updated_at": old, "kyc": {"result": "approved"}}),
    );
    sim.insert(
        json!({"submission_id": "new-1", "applicant_id": "app-9", "email": "second@example.com",
                      "created_at": now, "updated_at": now, "kyc": {"result": "approved"}}),
    );
    for (lookup, expected) in [("", 0), ("  applicant_lookup: 10m\n", 1)] {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), &sim.base_url(), "");
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "  midnight_overlap: 24h\n",
            &format!("  midnight_overlap: 24h\n{lookup}"),
        );
        std::fs::write(&path, text).unwrap();
        let cfg = kyc_sentinel::compose::load_config(&path).unwrap();
        let mut engine = Engine::build(&cfg).await.unwrap();
        let mut poller = Poller::new(engine.client.clone(), cfg.poll.clone(), 0);
        let rep = poller.poll_once(&mut engine.pipeline).await.unwrap();
        assert_eq!(rep.batch.changed, 1, "only today's submission is listed");
        assert_eq!(rep.batch.alerts, expected, "applicant_lookup {lookup:?}");
    }
}

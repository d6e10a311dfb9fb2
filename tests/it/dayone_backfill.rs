//! Issue 15 item 2: a first `backfill` judges history quietly; the next `run`
//! sends nothing for it.

use crate::common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use kyc_sentinel::daemon::{self, BackfillOptions};
use kyc_sentinel::simulator::{SimConfig, Simulator};
use kyc_sentinel::store::SqliteStore;
use kyc_sentinel::store::lifecycle::{AlertFilter, AlertState};
use kyc_sentinel::store::prelude::*;
use tokio_util::sync::CancellationToken;

/// Every alert to `file`; critical ones also escalate, first step at once.
const ROUTES: &str = "  - name: chan
    type: file
    path: chan.jsonl
route:
  receiver: file
  group_by: ['...']
  group_wait: 0s
  routes:
    - match: { severity: critical }
      escalation: aml-escalation
escalation_policies:
  - name: aml-escalation
    steps:
      - { after: 0s, receivers: [chan] }
digests:
  - name: daily
    schedule: '0 9 * * *'
    receivers: [file]
";

async fn count(store: &SqliteStore, table: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_backfill_records_history_and_the_next_run_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let end = Utc::now() - chrono::Duration::days(1);
    let sim = Simulator::start(SimConfig {
        seed: 5,
        submissions: 600,
        base_time: Some(end),
        backlog_span: Some(Duration::from_secs(2 * 86_400)),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let cfg_path = write_config(dir.path(), &sim.base_url(), ROUTES);
    let opts = BackfillOptions {
        from: (end - chrono::Duration::days(3)).date_naive(),
        to: end.date_naive(),
        concurrency: 2,
        progress: false,
        notify: false,
    };
    let report = daemon::backfill(kyc_sentinel::compose::load_config(&cfg_path).unwrap(), opts)
        .await
        .unwrap();
    let expected = expected_alerts(&sim.dump());
    assert!(expected.len() > 5, "history should raise alerts");
    assert_eq!(report.alerts, expected.len());
    // Every alert would have reached `file` (the root route): counted per rule.
    assert_eq!(
        report.would_notify.values().sum::<usize>(),
        expected.len(),
        "{:?}",
        report.would_notify
    );
    let aml = expected
        .iter()
        .filter(|a| a.rule == "aml-red-flag-high")
        .count();
    assert!(aml > 0, "the history has critical alerts to escalate");
    assert_eq!(
        report.would_notify.get("aml-red-flag-high").copied(),
        Some(aml)
    );

    let store = SqliteStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    // Recorded: decisions, alerts (historical), windows, applicant index.
    let historical = store
        .list_alerts(&AlertFilter {
            state: Some(AlertState::Historical),
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(historical.len(), expected.len());
    let open = store
        .list_alerts(&AlertFilter {
            state: Some(AlertState::Open),
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    assert!(open.is_empty(), "{open:?}");
    let decisions: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE kind = 'decision' \
         AND json_extract(detail, '$.historical') = 1",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(decisions as usize, expected.len());
    assert!(count(&store, "window_members").await > 0);
    // Told nobody: no outbox row, nothing waiting in a group, no escalation,
    // and a digest of the period counts no new alert.
    for table in ["outbox", "notify_pending", "notify_groups", "escalations"] {
        assert_eq!(count(&store, table).await, 0, "{table}");
    }
    let fired = store
        .alerts_fired_between(Utc::now() - chrono::Duration::days(1), Utc::now())
        .await
        .unwrap();
    assert!(fired.is_empty(), "{} alerts counted as new", fired.len());
    assert!(!dir.path().join("alerts.jsonl").exists());

    // The next `run` sees the same history (today's and yesterday's lists)
    // and sends nothing for it.
    let tx = CancellationToken::new();
    let rx = tx.clone();
    let daemon = tokio::spawn(daemon::run(
        kyc_sentinel::compose::load_config(&cfg_path).unwrap(),
        rx,
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    tx.cancel();
    tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(sim.requests() > 0);
    for file in ["alerts.jsonl", "chan.jsonl"] {
        let text = std::fs::read_to_string(dir.path().join(file)).unwrap_or_default();
        assert_eq!(text, "", "{file} got notifications for history");
    }
    assert_eq!(count(&store, "outbox").await, 0);
    assert_eq!(count(&store, "escalations").await, 0);
}

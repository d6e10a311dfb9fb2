//! Routing, grouping and silences through the real pipeline and store:
//! twenty alerts of one group within group_wait make one notification; a
//! silenced alert is audited and not sent, and after expiry the next one is.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kyc_sentinel::clock::ShiftedClock;
use kyc_sentinel::notify::group_key_hash;
use kyc_sentinel::notify::outbox::Outbox;
use kyc_sentinel::notify::silence::NewSilence;
use kyc_sentinel::pipeline::Pipeline;
use kyc_sentinel::rules::{ScriptLimits, load_path};
use kyc_sentinel::store::SqliteStore;
use kyc_sentinel::store::prelude::*;
use serde_json::{Value, json};
use sqlx::Row;
use tokio::sync::Notify;

struct Engine {
    /// The clock the outbox groups by: moved, not slept on.
    clock: Arc<ShiftedClock>,
    store: SqliteStore,
    pipeline: Pipeline<SqliteStore>,
    outbox: Outbox<SqliteStore>,
}

async fn engine(dir: &Path, route: &str) -> Engine {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(
        dir.join("rules/r.yaml"),
        "- id: rejected\n  severity: high\n  labels: { team: fraud }\n  when: { field: kyc.result, eq: rejected }\n",
    )
    .unwrap();
    let text = format!(
        "argos:\n  base_url: http://127.0.0.1:9\n  api_key: k\nrules: rules\nstore:\n  path: state.db\n\
         receivers:\n  - name: file\n    type: file\n    path: alerts.jsonl\n{route}"
    );
    let path = dir.join("sentinel.yaml");
    std::fs::write(&path, &text).unwrap();
    let cfg = kyc_sentinel::compose::parse_config(&path, &text, |_| None).unwrap();
    let store = SqliteStore::open(&cfg.store.path).await.unwrap();
    let rules = Arc::new(load_path(&cfg.rules, ScriptLimits::default()).unwrap());
    let router = Arc::new(kyc_sentinel::compose::build_router(&cfg).unwrap());
    let pipeline = Pipeline::new(store.clone(), rules, router, Arc::new(Notify::new()))
        .await
        .unwrap();
    let receivers = kyc_sentinel::compose::build_receivers(&cfg).unwrap();
    let clock = Arc::new(ShiftedClock::new());
    let outbox =
        Outbox::new(store.clone(), receivers, cfg.outbox.clone()).with_clock(clock.clone());
    Engine {
        clock,
        store,
        pipeline,
        outbox,
    }
}

fn rejected(i: usize) -> Value {
    json!({
        "submission_id": format!("sub-{i:03}"),
        "applicant_id": format!("app-{i:03}"),
        "created_at": format!("2026-11-26T08:{:02}:00Z", i % 60),
        "kyc": { "result": "rejected" },
        "data": { "identityNumber": "900101-1234567" }
    })
}

fn lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("alerts.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn twenty_alerts_within_group_wait_make_one_notification() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(
        dir.path(),
        "route:\n  receiver: file\n  group_by: [rule, team]\n  group_wait: 1s\n",
    )
    .await;
    // Two batches: a group waiting in the store takes later alerts too.
    let r1 = e
        .pipeline
        .process((0..12).map(rejected).collect(), "test")
        .await
        .unwrap();
    e.outbox.deliver_due().await.unwrap();
    let r2 = e
        .pipeline
        .process((12..20).map(rejected).collect(), "test")
        .await
        .unwrap();
    assert_eq!(r1.alerts + r2.alerts, 20);
    e.outbox.deliver_due().await.unwrap();
    assert!(lines(dir.path()).is_empty(), "nothing before group_wait");

    e.clock.advance(Duration::from_millis(1100));
    e.outbox.deliver_due().await.unwrap();
    let got = lines(dir.path());
    assert_eq!(got.len(), 20, "one line per alert in the archive");
    let fps: Vec<&str> = got
        .iter()
        .map(|l| l["alert"]["fingerprint"].as_str().unwrap())
        .collect();
    let key = group_key_hash(&fps);
    assert!(got.iter().all(|l| l["notification"] == key.as_str()));
    let stats = e.store.outbox_stats().await.unwrap();
    assert_eq!((stats.delivered, stats.pending), (1, 0), "ONE notification");

    // The same submissions again (a re-poll, or a crash before the cursor moved)
    // add nothing: the group does not send twice.
    e.pipeline
        .process((0..20).map(rejected).collect(), "again")
        .await
        .unwrap();
    e.clock.advance(Duration::from_millis(1100));
    e.outbox.deliver_due().await.unwrap();
    assert_eq!(lines(dir.path()).len(), 20);
    assert_eq!(e.store.outbox_stats().await.unwrap().delivered, 1);
}

#[tokio::test]
async fn a_group_survives_a_restart_while_it_waits() {
    let dir = tempfile::tempdir().unwrap();
    let route = "route:\n  receiver: file\n  group_wait: 1s\n";
    {
        let mut e = engine(dir.path(), route).await;
        e.pipeline
            .process((0..5).map(rejected).collect(), "test")
            .await
            .unwrap();
        // "Crash": the engine is dropped with the group still waiting.
    }
    let e = engine(dir.path(), route).await;
    e.clock.advance(Duration::from_millis(1100));
    e.outbox.deliver_due().await.unwrap();
    assert_eq!(lines(dir.path()).len(), 5);
    assert_eq!(e.store.outbox_stats().await.unwrap().delivered, 1);
}

#[tokio::test]
async fn repeat_interval_holds_the_next_notification_of_a_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(
        dir.path(),
        "route:\n  receiver: file\n  group_wait: 0s\n  repeat_interval: 1s\n",
    )
    .await;
    e.pipeline.process(vec![rejected(1)], "t").await.unwrap();
    e.outbox.deliver_due().await.unwrap();
    assert_eq!(lines(dir.path()).len(), 1);
    e.pipeline
        .process(vec![rejected(2), rejected(3)], "t")
        .await
        .unwrap();
    e.outbox.deliver_due().await.unwrap();
    assert_eq!(lines(dir.path()).len(), 1, "held until the interval ends");
    e.clock.advance(Duration::from_millis(1100));
    e.outbox.deliver_due().await.unwrap();
    let got = lines(dir.path());
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[1]["notification"], got[2]["notification"],
        "sent together"
    );
}

#[tokio::test]
async fn a_silenced_alert_is_audited_not_sent_and_expiry_lifts_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path(), "").await;
    let now = chrono::Utc::now();
    let id = e
        .store
        .add_silence(&NewSilence {
            rule: Some("rejected".into()),
            matchers: [("team".to_string(), "fraud".to_string())].into(),
            reason: "known campaign, case 1234".into(),
            author: "analyst".into(),
            starts_at: now,
            ends_at: now + chrono::Duration::hours(24),
        })
        .await
        .unwrap();
    let r = e.pipeline.process(vec![rejected(1)], "t").await.unwrap();
    assert_eq!(r.alerts, 1, "still decided");
    e.outbox.deliver_due().await.unwrap();
    assert!(lines(dir.path()).is_empty(), "silenced: not delivered");
    let rows =
        sqlx::query("SELECT kind, rule_id, submission_id, detail FROM audit_log ORDER BY id")
            .fetch_all(e.store.pool())
            .await
            .unwrap();
    let kinds: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(kinds, ["decision", "silenced"]);
    let detail: Value = serde_json::from_str(&rows[1].get::<String, _>(3)).unwrap();
    assert_eq!(detail["silence_id"], id);
    assert_eq!(detail["reason"], "known campaign, case 1234");
    assert_eq!(rows[1].get::<String, _>(2), "sub-001");

    assert!(
        e.store
            .expire_silence(id, chrono::Utc::now())
            .await
            .unwrap()
    );
    e.pipeline.process(vec![rejected(2)], "t").await.unwrap();
    e.outbox.deliver_due().await.unwrap();
    let got = lines(dir.path());
    assert_eq!(got.len(), 1, "after expiry the next one is delivered");
    assert_eq!(got[0]["alert"]["submission_id"], "sub-002");
}

#[test]
fn silence_commands() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
            .args(args)
            .env("USER", "tester")
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let db_s = db.to_str().unwrap();
    let (code, out, err) = run(&[
        "silence",
        "add",
        "--store",
        db_s,
        "--rule",
        "duplicate-applicant",
        "--match",
        "team=fraud",
        "--for",
        "24h",
        "--reason",
        "known campaign",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("silence 1 added, until "), "{out}");
    let (code, out, _) = run(&["silence", "list", "--store", db_s]);
    assert_eq!(code, 0);
    let fields: Vec<&str> = out.trim().split('\t').collect();
    assert_eq!(
        fields[..3],
        ["1", "active", "rule=duplicate-applicant,team=fraud"]
    );
    assert_eq!(fields[4..], ["by tester", "known campaign"]);
    assert_eq!(
        run(&["silence", "expire", "--store", db_s, "1"]).1,
        "silence 1 expired\n"
    );
    assert_eq!(
        run(&["silence", "list", "--store", db_s]).1,
        "no silences in force\n"
    );
    assert!(
        run(&["silence", "list", "--store", db_s, "--all"])
            .1
            .contains("\texpired\t")
    );
    let (code, _, err) = run(&["silence", "expire", "--store", db_s, "7"]);
    assert_eq!((code, err.as_str()), (1, "no silence with id 7\n"));
    let (code, _, err) = run(&[
        "silence", "add", "--store", db_s, "--for", "1h", "--reason", "x",
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: a silence needs --rule or at least one --match (it would silence everything)\n"
    );
}

/// A round of notifications to a `file` receiver is one append and one
/// fsync; if the append fails, every notification of the round stays pending
/// with the error, and none is recorded as delivered.
#[tokio::test]
async fn a_file_round_is_one_append_and_a_failed_append_retries_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(
        dir.path(),
        "route:\n  receiver: file\n  group_by: [submission_id]\n  group_wait: 0s\n",
    )
    .await;
    // The archive's path is a folder for now: the append must fail.
    std::fs::create_dir(dir.path().join("alerts.jsonl")).unwrap();
    let r = e
        .pipeline
        .process((0..15).map(rejected).collect(), "test")
        .await
        .unwrap();
    assert_eq!(r.alerts, 15);
    assert_eq!(e.outbox.deliver_due().await.unwrap(), 15);
    let stats = e.store.outbox_stats().await.unwrap();
    assert_eq!((stats.delivered, stats.pending), (0, 15));
    let errors: Vec<String> =
        sqlx::query_scalar("SELECT last_error FROM outbox WHERE state = 'pending'")
            .fetch_all(e.store.pool())
            .await
            .unwrap();
    let path = dir.path().join("alerts.jsonl");
    assert!(
        errors
            .iter()
            .all(|m| m.starts_with(&format!("{}: ", path.display()))),
        "{errors:?}"
    );

    // Fixed: the retry (made due now) writes every line once.
    std::fs::remove_dir(&path).unwrap();
    sqlx::query("UPDATE outbox SET next_attempt_at = '2000-01-01T00:00:00.000Z'")
        .execute(e.store.pool())
        .await
        .unwrap();
    assert_eq!(e.outbox.deliver_due().await.unwrap(), 15);
    let got = lines(dir.path());
    assert_eq!(got.len(), 15);
    let stats = e.store.outbox_stats().await.unwrap();
    assert_eq!((stats.delivered, stats.pending), (15, 0));
}

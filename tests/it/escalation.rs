//! Escalation policies, end to end: a real simulator, the real daemon, a
//! real SQLite file and file receivers; only the escalation clock is
//! controlled (shifted forward), so an hour of steps takes seconds.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::*;
use kyc_sentinel::argos::model::format_argos_timestamp;
use kyc_sentinel::clock::ShiftedClock;
use kyc_sentinel::config::Config;
use kyc_sentinel::escalation::step_key;
use kyc_sentinel::simulator::{SimConfig, SimHandle, Simulator};
use kyc_sentinel::store::SqliteStore;
use kyc_sentinel::store::lifecycle::Action;
use kyc_sentinel::store::prelude::*;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Fires `aml-red-flag-high` (critical) once.
fn red_flag(id: &str) -> Value {
    let t = format_argos_timestamp(Utc::now());
    json!({"submission_id": id, "created_at": t, "updated_at": t, "kyc": {"result": "approved"},
           "aml": {"currentstatus": "Red Flag", "risk_level_summary": "High"}})
}

const POLICY: &str = "  - name: chan
    type: file
    path: chan.jsonl
  - name: officer
    type: file
    path: officer.jsonl
  - name: head
    type: file
    path: head.jsonl
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
      - { after: 15m, receivers: [officer] }
      - { after: 1h, receivers: [head] }
";

async fn setup(dir: &Path) -> (SimHandle, Config) {
    setup_on(dir, &Backend::Sqlite).await
}

async fn setup_on(dir: &Path, backend: &Backend) -> (SimHandle, Config) {
    let sim = Simulator::start(SimConfig {
        submissions: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let path = write_config_on(dir, &sim.base_url(), backend, POLICY);
    (sim, kyc_sentinel::compose::load_config(&path).unwrap())
}

struct Daemon {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn start(dir: &Path, clock: &Arc<ShiftedClock>) -> Daemon {
    let cfg = kyc_sentinel::compose::load_config(&dir.join("sentinel.yaml")).unwrap();
    let rules = Arc::new(kyc_sentinel::compose::load_rules(&cfg).unwrap());
    let stop = CancellationToken::new();
    let rx = stop.clone();
    let task = tokio::spawn(kyc_sentinel::daemon::run_with_clock(
        cfg,
        rules,
        clock.clone(),
        rx,
    ));
    Daemon { stop, task }
}

/// The lines a file receiver got for one submission's alert.
fn lines(dir: &Path, file: &str, submission: &str) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["alert"]["submission_id"] == submission)
        .collect()
}

/// Waits (up to 15s) until `file` holds `n` lines for `submission`.
async fn wait_lines(dir: &Path, file: &str, submission: &str, n: usize) -> Vec<Value> {
    for _ in 0..150 {
        let got = lines(dir, file, submission);
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{file} never got {n} line(s) for {submission}: {:?}",
        lines(dir, file, submission)
    );
}

fn fingerprint(line: &Value) -> String {
    line["alert"]["fingerprint"].as_str().unwrap().to_owned()
}

/// Audit details of one kind for an alert, oldest first.
async fn audit(store: &dyn StateStore, fp: &str, kind: &str) -> Vec<Value> {
    store
        .audit_for_alert(fp)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.detail)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_steps_unacknowledged_and_ack_after_step_one() {
    three_steps_on(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_steps_on_postgres_unacknowledged_and_ack_after_step_one() {
    let Some(pg) = Backend::postgres("escalation") else {
        return;
    };
    three_steps_on(pg).await;
}

async fn three_steps_on(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sim, cfg) = setup_on(d, &backend).await;
    sim.insert(red_flag("aml-nobody"));
    sim.insert(red_flag("aml-owned"));
    let clock = Arc::new(ShiftedClock::new());
    let daemon = start(d, &clock);

    // Step 1 (after 0s) at once, for both alerts; the route's own receiver too.
    let nobody = wait_lines(d, "chan.jsonl", "aml-nobody", 1).await;
    let owned = wait_lines(d, "chan.jsonl", "aml-owned", 1).await;
    let fp_nobody = fingerprint(&nobody[0]);
    let fp_owned = fingerprint(&owned[0]);
    wait_lines(d, "alerts.jsonl", "aml-nobody", 1).await;
    assert_eq!(
        nobody[0]["escalation"],
        json!({"policy": "aml-escalation", "step": 1, "steps": 3, "after": "0s",
               "due_at": nobody[0]["escalation"]["due_at"], "late": false})
    );
    assert_eq!(nobody[0]["notification"], step_key(&fp_nobody, 0));

    // Someone owns the second alert after step one.
    let store = kyc_sentinel::store::open(&cfg.store).await.unwrap();
    store
        .change_alert(&fp_owned, "mlro.kim", Action::Ack { note: None })
        .await
        .unwrap();

    // 14 minutes: nothing new yet.
    clock.advance(Duration::from_secs(14 * 60));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(lines(d, "officer.jsonl", "aml-nobody").is_empty());

    // 15 minutes: step 2 to the officer, for the unacknowledged alert only.
    clock.advance(Duration::from_secs(60));
    let officer = wait_lines(d, "officer.jsonl", "aml-nobody", 1).await;
    assert_eq!(officer[0]["escalation"]["step"], 2);
    assert_eq!(officer[0]["escalation"]["after"], "15m");
    assert_eq!(officer[0]["escalation"]["late"], false);
    assert_eq!(officer[0]["notification"], step_key(&fp_nobody, 1));
    assert!(lines(d, "head.jsonl", "aml-nobody").is_empty());

    // One hour: step 3 to the head of compliance.
    clock.advance(Duration::from_secs(45 * 60));
    let head = wait_lines(d, "head.jsonl", "aml-nobody", 1).await;
    assert_eq!(head[0]["escalation"]["step"], 3);
    assert_eq!(head[0]["escalation"]["late"], false);

    // Hours later nothing more: each step went once, and never for the owned alert.
    clock.advance(Duration::from_secs(5 * 3600));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    daemon.stop.cancel();
    daemon.task.await.unwrap().unwrap();
    for f in ["chan.jsonl", "officer.jsonl", "head.jsonl"] {
        assert_eq!(lines(d, f, "aml-nobody").len(), 1, "{f}");
    }
    assert_eq!(lines(d, "chan.jsonl", "aml-owned").len(), 1);
    assert!(lines(d, "officer.jsonl", "aml-owned").is_empty());
    assert!(lines(d, "head.jsonl", "aml-owned").is_empty());

    // The audit log tells both stories.
    let steps: Vec<(u64, bool)> = audit(store.as_ref(), &fp_nobody, "escalation_step")
        .await
        .iter()
        .map(|s| (s["step"].as_u64().unwrap(), s["late"].as_bool().unwrap()))
        .collect();
    assert_eq!(steps, [(1, false), (2, false), (3, false)]);
    assert_eq!(
        audit(store.as_ref(), &fp_owned, "escalation_stopped").await,
        [json!({"policy": "aml-escalation", "reason": "acknowledged"})]
    );
    assert_eq!(
        audit(store.as_ref(), &fp_owned, "escalation_step")
            .await
            .len(),
        1
    );

    // The digest's view: the last step sent per alert.
    let last = store
        .last_escalation_steps(&[&fp_nobody, &fp_owned, "no-such-alert"])
        .await
        .unwrap();
    assert_eq!(last.len(), 2);
    assert_eq!(
        (last[&fp_nobody].step, last[&fp_nobody].receivers.clone()),
        (3, vec!["head".to_string()])
    );
    assert_eq!(last[&fp_owned].step, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_steps_sends_the_due_step_once_on_restart_marked_late() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sim, _) = setup(d).await;
    sim.insert(red_flag("aml-crash"));
    let clock = Arc::new(ShiftedClock::new());

    let daemon = start(d, &clock);
    let chan = wait_lines(d, "chan.jsonl", "aml-crash", 1).await;
    let fp = fingerprint(&chan[0]);
    clock.advance(Duration::from_secs(15 * 60));
    wait_lines(d, "officer.jsonl", "aml-crash", 1).await;
    // Killed: no shutdown signal, no flush; the task is dropped where it stands.
    daemon.task.abort();
    let _ = daemon.task.await;
    drop(daemon.stop);

    // Down across step 3's due time (1h), back at 1h20m.
    clock.advance(Duration::from_secs(65 * 60));
    let daemon = start(d, &clock);
    let head = wait_lines(d, "head.jsonl", "aml-crash", 1).await;
    assert_eq!(head[0]["escalation"]["step"], 3);
    assert_eq!(head[0]["escalation"]["late"], true);
    // Give a repeat every chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    daemon.stop.cancel();
    daemon.task.await.unwrap().unwrap();
    for f in ["chan.jsonl", "officer.jsonl", "head.jsonl"] {
        assert_eq!(lines(d, f, "aml-crash").len(), 1, "{f} repeated or skipped");
    }
    let store = SqliteStore::open(&d.join("state.db")).await.unwrap();
    let steps: Vec<(u64, bool)> = audit(&store, &fp, "escalation_step")
        .await
        .iter()
        .map(|s| (s["step"].as_u64().unwrap(), s["late"].as_bool().unwrap()))
        .collect();
    assert_eq!(steps, [(1, false), (2, false), (3, true)]);
}

#[test]
fn step_notifications_say_which_step_and_that_it_is_an_escalation() {
    use kyc_sentinel::notify::Notification;
    use kyc_sentinel::templates::{Templates, sample_params};
    let t = Templates::shipped();
    let p = sample_params();
    let mut n = Notification::sample("officer");
    assert_eq!(
        t.render_with("email_subject.txt", &n, &p).unwrap(),
        "[kyc-sentinel] CRITICAL: aml-red-flag-high"
    );
    assert!(
        !t.render_with("email.txt", &n, &p)
            .unwrap()
            .contains("ESCALATION")
    );
    n.escalation = Some(
        json!({"policy": "aml-escalation", "step": 2, "steps": 3, "after": "15m",
                               "due_at": "2026-11-26T08:15:00.000Z", "late": true}),
    );
    assert_eq!(
        t.render_with("email_subject.txt", &n, &p).unwrap(),
        "[kyc-sentinel] ESCALATION step 2/3 (late): CRITICAL: aml-red-flag-high"
    );
    let text = t.render_with("email.txt", &n, &p).unwrap();
    assert!(
        text.contains(
            "ESCALATION, step 2 of 3 (aml-escalation): still unacknowledged 15m after it fired.\n\
             Sent late: this step came due at 2026-11-26 08:15:00 UTC while the engine was down.\n"
        ),
        "{text}"
    );
    assert!(
        t.render_with("email.html", &n, &p)
            .unwrap()
            .contains("<strong>ESCALATION, step 2 of 3</strong> (aml-escalation)")
    );
    let json_of = |name: &str| -> Value {
        serde_json::from_str(&t.render_with(name, &n, &p).unwrap()).unwrap()
    };
    assert_eq!(json_of("generic.json")["escalation"]["step"], 2);
    let pd = json_of("pagerduty.json");
    assert_eq!(pd["payload"]["custom_details"]["escalation"]["late"], true);
    assert!(
        pd["payload"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("kyc-sentinel: ESCALATION step 2/3 (late): aml-red-flag-high")
    );
    assert!(
        json_of("slack.json")["text"]
            .as_str()
            .unwrap()
            .starts_with("kyc-sentinel: ESCALATION step 2/3 (late): CRITICAL")
    );
    assert!(
        json_of("teams.json")["attachments"][0]["content"]["body"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("kyc-sentinel: ESCALATION step 2/3 (late): 1 alert")
    );
}

#[test]
fn config_errors_name_the_policy_step_and_route() {
    let text = "argos:\n  base_url: http://127.0.0.1:1\n\
receivers:\n  - { name: mail, type: log }\n\
route:\n  receiver: mail\n  routes:\n    - match: { severity: critical }\n      escalation: aml-escalatoin\n\
escalation_policies:\n  - name: aml-escalation\n    steps:\n      - { after: 1h, receivers: [mail] }\n      - { after: 15m, receivers: [pager] }\n";
    let err = kyc_sentinel::compose::parse_config(Path::new("conf/sentinel.yaml"), text, |_| None)
        .unwrap_err();
    assert_eq!(
        err,
        "conf/sentinel.yaml:9:19: route.routes[0].escalation: no escalation policy is named `aml-escalatoin` (escalation_policies: aml-escalation)\n\
         conf/sentinel.yaml:14:18: escalation_policies[0].steps[1].after: 15m comes before the previous step's 1h; steps go in order\n\
         conf/sentinel.yaml:14:23: escalation_policies[0].steps[1].receivers: no receiver is named `pager` (receivers: mail)"
    );
    let err = kyc_sentinel::compose::parse_config(
        Path::new("conf/sentinel.yaml"),
        "argos:\n  base_url: http://x\nescalation_policies:\n  - name: p\n    steps:\n      - { after: soon, receivers: [log] }\n",
        |_| None,
    )
    .unwrap_err();
    assert_eq!(
        err,
        "conf/sentinel.yaml:6:18: invalid duration `soon`: expected a number followed by s, m, h or d"
    );
}

/// The store's guard, without the daemon: a step goes once, and an
/// acknowledgement that commits first stops it (no outbox row).
#[tokio::test]
async fn a_step_is_sent_once_and_never_after_an_acknowledgement() {
    use kyc_sentinel::store::escalation::{StepResult, StepSend};
    use kyc_sentinel::store::prelude::*;
    use kyc_sentinel::store::{AlertRow, BatchCommit, GroupInsert};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    let mut batch = BatchCommit::default();
    for fp in ["fp-a", "fp-b"] {
        batch.alerts.push(AlertRow {
            fingerprint: fp.into(),
            rule_id: "aml-red-flag-high".into(),
            rule_version: "v1".into(),
            severity: "critical".into(),
            submission_id: format!("sub-{fp}"),
            group_key: None,
            event_time: Utc::now(),
            body: json!({"rule": "aml-red-flag-high", "fingerprint": fp, "submission_id": format!("sub-{fp}")})
                .to_string(),
        });
        batch.notify.push(GroupInsert {
            receiver: "file".into(),
            group_key: format!("root|fingerprint={fp}"),
            fingerprint: fp.into(),
            group_wait: Duration::ZERO,
            repeat_interval: Duration::ZERO,
            escalation: Some("p".into()),
        });
    }
    store.commit_batch(batch).await.unwrap();
    let active = store.active_escalations().await.unwrap();
    assert_eq!(
        active
            .iter()
            .map(|e| (e.fingerprint.as_str(), e.next_step))
            .collect::<Vec<_>>(),
        [("fp-a", 0), ("fp-b", 0)]
    );
    let receivers = vec!["officer".to_string()];
    let send = |fp: &'static str| StepSend {
        fingerprint: fp,
        policy: "p",
        index: 0,
        last: false,
        receivers: &receivers,
        key: "k",
        due_at: Utc::now(),
        late: false,
        info: json!({"step": 1}),
        now: Utc::now(),
    };
    let key_a = step_key("fp-a", 0);
    let mut a = send("fp-a");
    a.key = &key_a;
    assert_eq!(
        store.send_escalation_step(&a).await.unwrap(),
        StepResult::Sent
    );
    assert_eq!(
        store.send_escalation_step(&a).await.unwrap(),
        StepResult::Gone
    );
    store
        .change_alert("fp-b", "mlro.kim", Action::Ack { note: None })
        .await
        .unwrap();
    assert_eq!(
        store.send_escalation_step(&send("fp-b")).await.unwrap(),
        StepResult::Stopped("acknowledged".into())
    );
    let outbox: Vec<(String, String)> =
        sqlx::query_as("SELECT fingerprint, receiver FROM outbox ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(outbox, [(key_a, "officer".to_string())]);
    // Only fp-a still escalates, waiting for its second step.
    let active = store.active_escalations().await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(
        (active[0].fingerprint.as_str(), active[0].next_step),
        ("fp-a", 1)
    );
}

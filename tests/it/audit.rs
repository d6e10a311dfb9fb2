//! `audit` explains an AML alert, a window alert and a Rhai alert; snapshots
//! with times and version hashes (which depend on the clock) redacted.

use crate::common;

use chrono::{Duration, Utc};
use common::*;
use kyc_sentinel::argos::model::format_argos_timestamp;
use kyc_sentinel::audit::{render_alert, render_submission};
use kyc_sentinel::compose::Engine;
use kyc_sentinel::poller::Poller;
use kyc_sentinel::simulator::{SimConfig, Simulator};
use serde_json::{Value, json};

fn redact(text: &str) -> String {
    let times = regex::Regex::new(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z").unwrap();
    // The submission's hash covers its (clock-relative) times; the rule set's
    // changes with any edit of the pack. The rule's own version stays.
    let version = regex::Regex::new(r"(submission|rule set) version [0-9a-f]{12}").unwrap();
    let text = times.replace_all(text, "<time>");
    version.replace_all(&text, "$1 version <hash>").into_owned()
}

fn sub(id: &str, minutes_ago: i64, extra: Value) -> Value {
    let t = format_argos_timestamp(Utc::now() - Duration::minutes(minutes_ago));
    let mut v = json!({"submission_id": id, "email": format!("{id}@example.com"), "created_at": t, "updated_at": t});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_explains_aml_window_and_script_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig {
        submissions: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let cfg_path = write_config(dir.path(), &sim.base_url(), "");
    let cfg = kyc_sentinel::compose::load_config(&cfg_path).unwrap();
    sim.insert(sub(
        "aml-1",
        50,
        json!({"kyc": {"result": "approved"}, "aml": {"currentstatus": "Red Flag", "risk_level_summary": "HIGH"}}),
    ));
    for (i, id) in ["retry-1", "retry-2", "retry-3"].iter().enumerate() {
        sim.insert(sub(
            id,
            40 - i as i64,
            json!({"userid": "probe-7", "kyc": {"result": "rejected", "commentCode": ["too_many_retry"]}}),
        ));
    }
    sim.insert(sub(
        "doc-1",
        30,
        json!({"kyc": {"result": "approved"}, "data": {"idcard_expireDate": "2020-01-31"}}),
    ));
    let mut engine = Engine::build(&cfg).await.unwrap();
    let mut poller = Poller::new(engine.client.clone(), cfg.poll.clone(), 0);
    let rep = poller.poll_once(&mut engine.pipeline).await.unwrap();
    assert_eq!(rep.batch.alerts, 3, "{rep:?}");
    engine.outbox.deliver_due().await.unwrap();

    let store = &engine.store;
    let mut fingerprints = Vec::new();
    for id in ["aml-1", "retry-3", "doc-1"] {
        let alerts = store.alerts_of_submission(id).await.unwrap();
        assert_eq!(alerts.len(), 1, "{id}: {alerts:?}");
        fingerprints.push(alerts[0].clone());
    }
    for (name, fp) in ["aml", "window", "rhai"].iter().zip(&fingerprints) {
        let rec = store.alert(fp).await.unwrap().unwrap();
        let audit = store.audit_for_alert(fp).await.unwrap();
        insta::assert_snapshot!(format!("alert_{name}"), redact(&render_alert(&rec, &audit)));
    }
    // A window member's submission view lists the alert it was consumed by,
    // and why the other rules did not fire.
    let rules = kyc_sentinel::compose::load_rules(&cfg).unwrap();
    let text = render_submission(
        "retry-1",
        store.submission("retry-1").await.unwrap(),
        &store.audit_for_submission("retry-1").await.unwrap(),
        &store.memberships_of("retry-1").await.unwrap(),
        &store.alerts_of_submission("retry-1").await.unwrap(),
        Some(&rules),
    );
    assert!(text.contains(&fingerprints[1]), "{text}");
    // Issue 15 item 7: a member says where it counted, not "did not fire".
    assert!(
        text.contains(&format!(
            "    counted in window `probe-7` of rule repeated-too-many-retry (1 of 3), consumed by alert {}\n",
            fingerprints[1]
        )),
        "{text}"
    );
    assert!(!text.contains("(none recorded)"), "{text}");
    assert!(
        !text.contains("    repeated-too-many-retry:\n"),
        "listed under did not fire: {text}"
    );
    assert!(text.contains("    low-liveness:\n      kyc.attempts[*].livenessScore = (missing) lt 50 (every) -> false"), "{text}");

    // The CLI export: one JSON object per audit row of the day.
    let day = Utc::now().format("%Y%m%d").to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args(["audit", "--config"])
        .arg(&cfg_path)
        .args(["--export", "--from", &day, "--to", &day])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.iter().filter(|r| r["kind"] == "decision").count(), 3);
}

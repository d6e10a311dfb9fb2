//! Issue 18, process level: the `run` binary with a live rule and its
//! stricter shadow over the simulator. No shadow alert reaches a receiver (a
//! real file receiver and a real webhook receiver); `shadow report` and
//! `audit` show them; promotion (edit the rule file, SIGHUP) sends nothing
//! the rule fired in shadow, and the promoted rule then alerts as a live rule.

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::*;
use kyc_sentinel::argos::model::format_argos_timestamp;
use kyc_sentinel::simulator::{SimConfig, Simulator};
use kyc_sentinel::store::prelude::*;
use serde_json::{Value, json};

const LIVE: &str = "\
- id: aml-red-flag
  severity: high
  when: { field: aml.currentstatus, eq: Red Flag }
";

const SHADOW: &str = "\
- id: aml-red-flag-high-risk
  severity: critical
  mode: shadow
  replaces: aml-red-flag
  when:
    all:
      - { field: aml.currentstatus, eq: Red Flag }
      - { field: aml.risk_level_summary, eq: high }
";

/// The same rule, promoted: `mode` and `replaces` removed.
const PROMOTED: &str = "\
- id: aml-red-flag-high-risk
  severity: critical
  when:
    all:
      - { field: aml.currentstatus, eq: Red Flag }
      - { field: aml.risk_level_summary, eq: high }
";

fn red_flag(id: &str, risk: &str, minutes_ago: i64) -> Value {
    let t = format_argos_timestamp(Utc::now() - chrono::Duration::minutes(minutes_ago));
    json!({"submission_id": id, "created_at": t, "updated_at": t, "kyc": {"result": "approved"},
           "aml": {"currentstatus": "Red Flag", "risk_level_summary": risk}})
}

/// A webhook receiver that keeps every body it is sent.
async fn hook() -> (Arc<Mutex<Vec<String>>>, String) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push(body);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (got, url)
}

fn cli(cfg: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args(args)
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// (rule, submission_id, fingerprint) of every alert the file receiver got.
fn file_alerts(path: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let a = &v["alert"];
            let s = |k: &str| a[k].as_str().unwrap().to_owned();
            (s("rule"), s("submission_id"), s("fingerprint"))
        })
        .collect()
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_alerts_are_recorded_never_sent_and_promotion_resends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("live.yaml"), LIVE).unwrap();
    std::fs::write(rules.join("shadow.yaml"), SHADOW).unwrap();
    let (hooked, url) = hook().await;
    let sim = Simulator::start(SimConfig {
        submissions: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.insert(red_flag("rf-1", "High", 9));
    sim.insert(red_flag("rf-2", "Low", 8));
    sim.insert(red_flag("rf-3", "high", 7));
    let extra = format!(
        "  - name: hook\n    type: webhook\n    url: {url}\n    template: generic.json\n    timeout: 2s\n\
         digests:\n  - name: daily\n    schedule: '0 9 * * *'\n    receivers: [hook]\n"
    );
    let cfg = write_config(dir.path(), &sim.base_url(), &extra);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The rules of this test, not the shipped pack; metrics on a known port.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text
        .replace(
            &format!("rules: {}", repo().join("rules").display()),
            &format!("rules: {}", rules.display()),
        )
        .replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"));
    std::fs::write(&cfg, text).unwrap();
    let log = std::fs::File::create(dir.path().join("run.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let file = dir.path().join("alerts.jsonl");

    // 1. In shadow: the live rule's three alerts reach both receivers; the
    //    shadow rule's two (rf-1, rf-3) reach neither.
    wait_for(
        "3 live alerts at both receivers",
        Duration::from_secs(20),
        || file_alerts(&file).len() >= 3 && hooked.lock().unwrap().len() >= 3,
    )
    .await;
    let report: Value = serde_json::from_str(&cli(&cfg, &["shadow", "report", "--json"])).unwrap();
    let line = &report["shadow_rules"][0];
    assert_eq!(line["rule"], "aml-red-flag-high-risk", "{report:#}");
    assert_eq!(line["replaces"], "aml-red-flag");
    assert_eq!(line["alerts"], 2, "{report:#}");
    assert_eq!(line["replaced_alerts"], 3);
    assert_eq!(line["submissions"]["both"], 2);
    assert_eq!(line["submissions"]["only_a"], 1);
    assert_eq!(line["submissions"]["examples_only_a"], json!(["rf-2"]));
    assert_eq!(line["submissions"]["only_b"], 0);
    let table = cli(&cfg, &["shadow", "report"]);
    assert!(table.contains("aml-red-flag-high-risk"), "{table}");

    // The shadow alerts' fingerprints, from the store (read while the daemon runs).
    let store = kyc_sentinel::store::SqliteStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    let mut shadow_fps = Vec::new();
    for id in ["rf-1", "rf-3"] {
        for fp in store.alerts_of_submission(id).await.unwrap() {
            let rec = store.alert(&fp).await.unwrap().unwrap();
            if rec.alert["rule"] == "aml-red-flag-high-risk" {
                shadow_fps.push(fp);
            }
        }
    }
    assert_eq!(shadow_fps.len(), 2);
    let audit = cli(&cfg, &["audit", "--alert", &shadow_fps[0]]);
    assert!(
        audit.contains("mode shadow: recorded, never sent, escalated or counted in digests, a candidate to replace aml-red-flag"),
        "{audit}"
    );
    assert!(audit.contains("aml.risk_level_summary"), "the why: {audit}");
    let by_sub = cli(&cfg, &["audit", "--submission", "rf-1"]);
    assert!(
        by_sub.contains("fired aml-red-flag-high-risk (rule version ")
            && by_sub.contains(&format!(
                "-> alert {} (shadow: recorded, not sent)",
                shadow_fps[0]
            )),
        "{by_sub}"
    );

    // Metrics count them apart; the digest lists them apart and counts only the live ones.
    let metrics = kyc_sentinel::util::http_client()
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let shadow_metric = metrics
        .lines()
        .find(|l| {
            l.starts_with("kyc_sentinel_alerts_total{") && l.contains("aml-red-flag-high-risk")
        })
        .unwrap_or_else(|| panic!("no shadow alert metric in:\n{metrics}"));
    assert!(
        shadow_metric.contains(r#"mode="shadow""#),
        "{shadow_metric}"
    );
    assert!(shadow_metric.ends_with(" 2"), "{shadow_metric}");
    assert!(
        metrics.lines().any(|l| l.contains(r#"rule="aml-red-flag""#)
            && l.contains(r#"mode="live""#)
            && l.ends_with(" 3")),
        "{metrics}"
    );
    let at = format!(
        "{}",
        (Utc::now() + chrono::Duration::minutes(1)).format("%Y-%m-%dT%H:%M:%SZ")
    );
    let digest = cli(
        &cfg,
        &["digest", "--name", "daily", "--preview", "--at", &at],
    );
    assert!(
        digest.contains("SHADOW RULES (recorded, never sent; not counted above)\n  aml-red-flag-high-risk: would have fired 2; aml-red-flag fired 3\n"),
        "{digest}"
    );

    // 2. Promotion: the rule file edited, SIGHUP.
    std::fs::write(rules.join("shadow.yaml"), PROMOTED).unwrap();
    signal(&child, "-HUP");
    let log_path = dir.path().join("run.log");
    wait_for("the reload", Duration::from_secs(10), || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("configuration reloaded")
    })
    .await;
    // A new version of rf-1 (the promoted rule already fired on it in shadow)
    // and a new high-risk submission.
    sim.update("rf-1", |v| {
        v["updated_at"] = json!(format_argos_timestamp(
            Utc::now() - chrono::Duration::minutes(1)
        ));
        v["kyc"]["comment"] = json!("re-reviewed");
    });
    sim.insert(red_flag("rf-4", "High", 1));
    wait_for(
        "the promoted rule's alert on rf-4",
        Duration::from_secs(20),
        || {
            file_alerts(&file)
                .iter()
                .any(|(r, s, _)| r == "aml-red-flag-high-risk" && s == "rf-4")
                && hooked
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|b| b.contains("rf-4") && b.contains("aml-red-flag-high-risk"))
        },
    )
    .await;
    // Give a re-send of old alerts every chance to show up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(&child, "-TERM");
    let status = child.wait().unwrap();
    assert!(status.success());

    let got = file_alerts(&file);
    let promoted: Vec<&str> = got
        .iter()
        .filter(|(r, _, _)| r == "aml-red-flag-high-risk")
        .map(|(_, s, _)| s.as_str())
        .collect();
    assert_eq!(promoted, ["rf-4"], "file receiver got: {got:?}");
    let bodies = hooked.lock().unwrap().clone();
    for fp in &shadow_fps {
        assert!(
            got.iter().all(|(_, _, f)| f != fp),
            "a shadow alert reached the file receiver"
        );
        assert!(
            bodies.iter().all(|b| !b.contains(fp.as_str())),
            "a shadow alert reached the webhook"
        );
    }
    // Live: rf-1..rf-4 once each on both receivers (rf-1's new version is not a new alert).
    let mut live: Vec<&str> = got
        .iter()
        .filter(|(r, _, _)| r == "aml-red-flag")
        .map(|(_, s, _)| s.as_str())
        .collect();
    live.sort();
    assert_eq!(live, ["rf-1", "rf-2", "rf-3", "rf-4"]);
    assert_eq!(
        bodies.len(),
        5,
        "4 live alerts and the promoted rule's one: {bodies:?}"
    );
}

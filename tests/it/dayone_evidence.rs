//! Issue 15 item 6: every delivery attempt of every notification that carried
//! an alert (grouped mail, escalation step, webhook, digest) shows in `audit
//! --alert` and `audit --export`, against a real HTTP receiver.

use crate::common;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use chrono::Utc;
use common::*;
use kyc_sentinel::argos::model::format_argos_timestamp;
use kyc_sentinel::simulator::{SimConfig, Simulator};
use kyc_sentinel::store::prelude::*;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A webhook receiver answering the given statuses in turn, then 200.
async fn hook(statuses: &[u16]) -> (Arc<Mutex<Vec<String>>>, String) {
    let queue = Arc::new(Mutex::new(
        statuses.iter().copied().collect::<VecDeque<_>>(),
    ));
    let got = Arc::new(Mutex::new(Vec::new()));
    let (q, g) = (queue.clone(), got.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let (q, g) = (q.clone(), g.clone());
            async move {
                g.lock().unwrap().push(body);
                let code = q.lock().unwrap().pop_front().unwrap_or(200);
                StatusCode::from_u16(code).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (got, url)
}

fn red_flag(id: &str) -> Value {
    let t = format_argos_timestamp(Utc::now() - chrono::Duration::minutes(5));
    json!({"submission_id": id, "created_at": t, "updated_at": t, "kyc": {"result": "approved"},
           "aml": {"currentstatus": "Red Flag", "risk_level_summary": "High"}})
}

fn cli(cfg: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_of_every_notification_is_audited_per_alert() {
    let dir = tempfile::tempdir().unwrap();
    let (got, url) = hook(&[500]).await;
    let sim = Simulator::start(SimConfig {
        submissions: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.insert(red_flag("rf-1"));
    sim.insert(red_flag("rf-2"));
    // Both alerts in one grouped "mail" (grouped by rule); each escalates to
    // the webhook at once; the daily digest goes to the mail too.
    let extra = format!(
        "  - name: mail
    type: file
    path: mail.jsonl
  - name: hook
    type: webhook
    url: {url}
    template: generic.json
    timeout: 2s
route:
  receiver: mail
  group_by: [rule]
  group_wait: 0s
  routes:
    - match: {{ severity: critical }}
      escalation: aml
escalation_policies:
  - name: aml
    steps:
      - {{ after: 0s, receivers: [hook] }}
digests:
  - name: daily
    schedule: '0 9 * * *'
    receivers: [mail]
"
    );
    let cfg_path = write_config(dir.path(), &sim.base_url(), &extra);
    let tx = CancellationToken::new();
    let rx = tx.clone();
    let daemon = tokio::spawn(kyc_sentinel::daemon::run(
        kyc_sentinel::compose::load_config(&cfg_path).unwrap(),
        rx,
    ));
    // Poll, group, escalate, fail once at the webhook, retry (50ms base).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while got.lock().unwrap().len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    tx.cancel();
    daemon.await.unwrap().unwrap();
    assert_eq!(
        got.lock().unwrap().len(),
        3,
        "two steps, one of them retried"
    );
    cli(&cfg_path, &["digest", "--name", "daily", "--send-now"]);

    let store = kyc_sentinel::store::SqliteStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    let mut fps = store.alerts_of_submission("rf-1").await.unwrap();
    assert_eq!(fps.len(), 1);
    fps.extend(store.alerts_of_submission("rf-2").await.unwrap());
    // Both steps go to the hook at once (4 deliveries per receiver): the
    // one 500 meets whichever request arrives first.
    let (fp, text) = fps
        .iter()
        .map(|fp| (fp, cli(&cfg_path, &["audit", "--alert", fp])))
        .find(|(_, text)| text.contains("hook attempt 2:"))
        .expect("one alert's escalation step was retried");
    for want in [
        "mail attempt 1: delivered (grouped notification of 2 alert(s)",
        "hook attempt 1: failed, will retry (escalation step notification of 1 alert(s)",
        "hook attempt 2: delivered (escalation step notification of 1 alert(s)",
        "mail attempt 1: delivered (digest notification of 2 alert(s)",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }

    let day = Utc::now().format("%Y%m%d").to_string();
    let rows: Vec<Value> = cli(
        &cfg_path,
        &["audit", "--export", "--from", &day, "--to", &day],
    )
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    let mine: Vec<&Value> = rows
        .iter()
        .filter(|r| r["kind"] == "delivery" && r["fingerprint"] == fp.as_str())
        .collect();
    assert_eq!(mine.len(), 4, "{mine:#?}");
    for r in &mine {
        let d = &r["detail"];
        assert!(r["at"].as_str().is_some_and(|t| t.starts_with("20")));
        assert!(d["receiver"] == "mail" || d["receiver"] == "hook", "{r}");
        assert!(d["attempt"].as_i64().is_some_and(|n| n >= 1), "{r}");
        assert!(d["outcome"].as_str().is_some(), "{r}");
        assert!(
            d["idempotency_key"].as_str().is_some_and(|k| !k.is_empty()),
            "{r}"
        );
    }
    // The failed attempt says why, without the URL (it may hold a secret).
    let failed = mine
        .iter()
        .find(|r| r["detail"]["outcome"] == "failed, will retry")
        .unwrap();
    assert!(
        !failed["detail"]["error"].as_str().unwrap().contains(&url),
        "{failed}"
    );
}

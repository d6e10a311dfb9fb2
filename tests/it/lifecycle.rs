//! Acknowledge and resolve alerts over the CLI and the daemon's HTTP API.

use crate::common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use kyc_sentinel::argos::model::format_argos_timestamp;
use kyc_sentinel::simulator::{SimConfig, Simulator};
use kyc_sentinel::store::prelude::*;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn red_flag(id: &str) -> Value {
    let t = format_argos_timestamp(Utc::now());
    json!({"submission_id": id, "created_at": t, "updated_at": t, "kyc": {"result": "approved"},
           "aml": {"currentstatus": "Red Flag", "risk_level_summary": "High"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_resolve_over_cli_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig {
        submissions: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.insert(red_flag("aml-a"));
    sim.insert(red_flag("aml-b"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg_path = write_config(
        dir.path(),
        &sim.base_url(),
        "api:\n  token: t0ken-0123456789abcdef\n  link_secret: l1nk-0123456789abcdef\n",
    );
    let text = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"));
    std::fs::write(&cfg_path, text).unwrap();
    let tx = CancellationToken::new();
    let rx = tx.clone();
    let daemon = tokio::spawn(kyc_sentinel::daemon::run(
        kyc_sentinel::compose::load_config(&cfg_path).unwrap(),
        rx,
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let base = format!("http://127.0.0.1:{port}/api/alerts");
    let http = kyc_sentinel::util::http_client().build().unwrap();
    assert_eq!(http.get(&base).send().await.unwrap().status(), 401);
    assert_eq!(
        http.get(&base)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Wait for the first poll to have raised both alerts.
    let mut open: Vec<Value> = Vec::new();
    for _ in 0..100 {
        open = http
            .get(format!("{base}?state=open"))
            .bearer_auth("t0ken-0123456789abcdef")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if open.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open.len(), 2, "{open:?}");
    let fp_a = open.iter().find(|a| a["submission_id"] == "aml-a").unwrap()["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let fp_b = open.iter().find(|a| a["submission_id"] == "aml-b").unwrap()["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();

    // A state that does not exist: both the API and the CLI name every state.
    let r = http
        .get(format!("{base}?state=closed"))
        .bearer_auth("t0ken-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(
        body.contains(
            "state `closed`: use open, acknowledged, pending_approval, resolved or historical"
        ),
        "{body}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args(["alerts", "list", "--state", "closed", "--config"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "--state `closed`: use open, acknowledged, pending_approval, resolved or historical"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // CLI: acknowledge A.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args(["ack", "--config"])
        .arg(&cfg_path)
        .args([fp_a.as_str(), "--by", "mlro.kim", "--note", "looking"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("alert {} ({fp_a}): acknowledged\n", &fp_a[..12])
    );
    // Twice: refused with who did it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args(["ack", "--config"])
        .arg(&cfg_path)
        .args([fp_a.as_str(), "--by", "someone"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with(&format!(
        "error: alert {fp_a} is already acknowledged (by mlro.kim at "
    )));

    // HTTP: resolve A; resolving again conflicts; a bad body says what is expected.
    let r = http
        .post(format!("{base}/{fp_a}/resolve"))
        .bearer_auth("t0ken-0123456789abcdef")
        .json(&json!({"by": "mlro.kim", "outcome": "false_positive"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "resolved");
    let r = http
        .post(format!("{base}/{fp_a}/resolve"))
        .bearer_auth("t0ken-0123456789abcdef")
        .json(&json!({"by": "x", "outcome": "reported"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = http
        .post(format!("{base}/{fp_b}/ack"))
        .bearer_auth("t0ken-0123456789abcdef")
        .body("{\"who\": \"x\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("unknown field `who`"));
    assert_eq!(
        http.post(format!("{base}/ffffffff/ack"))
            .bearer_auth("t0ken-0123456789abcdef")
            .json(&json!({"by": "x"}))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Signed one-click link for B: GET shows a page (acknowledges nothing), POST acknowledges.
    let exp = Utc::now().timestamp() + 600;
    let link = kyc_sentinel::api::ack_link(
        &format!("http://127.0.0.1:{port}"),
        "l1nk-0123456789abcdef",
        &fp_b,
        "analyst.lee",
        exp,
    );
    let page = http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let page = page.text().await.unwrap();
    assert!(
        page.contains("<form method=\"post\">") && page.contains("aml-red-flag-high"),
        "{page}"
    );
    assert_eq!(
        http.post(link.replace("&sig=", "&sig=0"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let expired = kyc_sentinel::api::ack_link(
        &format!("http://127.0.0.1:{port}"),
        "l1nk-0123456789abcdef",
        &fp_b,
        "analyst.lee",
        exp - 7200,
    );
    assert_eq!(http.post(&expired).send().await.unwrap().status(), 403);
    assert_eq!(http.post(&link).send().await.unwrap().status(), 200);

    let all: Vec<Value> = http
        .get(&base)
        .bearer_auth("t0ken-0123456789abcdef")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let states: Vec<(&str, &str)> = all
        .iter()
        .map(|a| {
            (
                a["submission_id"].as_str().unwrap(),
                a["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        states.contains(&("aml-a", "resolved")) && states.contains(&("aml-b", "acknowledged")),
        "{states:?}"
    );

    tx.cancel();
    daemon.await.unwrap().unwrap();
    // Every change is in the audit log.
    let store = kyc_sentinel::store::SqliteStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    let kinds: Vec<Value> = store
        .audit_for_alert(&fp_a)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "state_change")
        .map(|e| e.detail)
        .collect();
    assert_eq!(kinds.len(), 2);
    assert_eq!(
        (
            kinds[0]["from"].as_str(),
            kinds[0]["to"].as_str(),
            kinds[0]["by"].as_str()
        ),
        (Some("open"), Some("acknowledged"), Some("mlro.kim"))
    );
    assert_eq!(kinds[1]["outcome"], "false_positive");
    // Through the shared token the actor is `service`; the body's `by` is a claim in the note.
    assert_eq!(kinds[1]["by"], "service");
    assert_eq!(
        kinds[1]["note"],
        "by mlro.kim (as given to the service token)"
    );
    // And `audit --alert` shows them, with who and when.
    let rec = store.alert(&fp_a).await.unwrap().unwrap();
    let text =
        kyc_sentinel::audit::render_alert(&rec, &store.audit_for_alert(&fp_a).await.unwrap());
    let history: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" state_change: "))
        .collect();
    assert_eq!(history.len(), 2, "{text}");
    assert!(
        history[0].contains(r#""by":"mlro.kim""#) && history[0].contains(r#""to":"acknowledged""#),
        "{text}"
    );
    assert!(
        history[1].contains(r#""outcome":"false_positive""#),
        "{text}"
    );
}

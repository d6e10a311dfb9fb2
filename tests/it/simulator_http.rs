//! The simulator over raw HTTP (no client in between), its live behaviour,
//! its dump, and the `simulate` command.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use kyc_sentinel::argos::model::parse_timestamp;
use kyc_sentinel::simulator::{SimConfig, Simulator};
use serde_json::Value;

async fn get(url: &str, key: &str) -> (u16, Value) {
    let r = kyc_sentinel::util::http_client()
        .build()
        .unwrap()
        .get(url)
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn raw_http_semantics() {
    let sim = Simulator::start(SimConfig {
        submissions: 500,
        seed: 1,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let base = sim.base_url();
    let (status, body) = get(&format!("{base}/v3/submission?count=50"), "sim-key").await;
    assert_eq!(status, 200);
    assert_eq!(body["Items"].as_array().unwrap().len(), 50);
    assert_eq!(
        body["nextpageKey"]["id"],
        body["Items"][49]["submission_id"]
    );
    assert_eq!(
        body["nextpageKey"]["created_at"],
        body["Items"][49]["created_at"]
    );

    // Default backlog: within the current UTC day, so a poller of today sees all.
    let today = chrono::Utc::now().date_naive().format("%Y%m%d").to_string();
    let mut seen = std::collections::HashSet::new();
    let mut url = format!("{base}/v3/submission?count=50&start_date={today}&end_date={today}");
    loop {
        let (_, body) = get(&url, "sim-key").await;
        for v in body["Items"].as_array().unwrap() {
            assert!(seen.insert(v["submission_id"].as_str().unwrap().to_owned()));
        }
        match body.get("nextpageKey") {
            Some(k) => {
                url = format!(
                    "{base}/v3/submission?count=50&start_date={today}&end_date={today}&nextpage_id={}&nextpage_date={}",
                    k["id"].as_str().unwrap(),
                    k["created_at"].as_str().unwrap()
                )
            }
            None => break,
        }
    }
    // Could straddle midnight by a hair; the backlog is before `now`.
    assert!(
        seen.len() == 500 || chrono::Utc::now().date_naive().to_string() != today,
        "{}",
        seen.len()
    );

    assert_eq!(
        get(&format!("{base}/v3/submission"), "nope").await,
        (403, serde_json::json!({"message": "Forbidden"}))
    );
    assert_eq!(get(&format!("{base}/v3/submission"), "").await.0, 403);
    for (q, detail) in [
        (
            "start_date=2025-01-01",
            "start_date must be YYYYMMDD, got `2025-01-01`",
        ),
        (
            "request_type=everything",
            "request_type must be one of kyc, aml, data, others, got `everything`",
        ),
        ("count=abc", "count must be a positive number, got `abc`"),
    ] {
        assert_eq!(
            get(&format!("{base}/v3/submission?{q}"), "sim-key").await,
            (
                400,
                serde_json::json!({"message": "Invalid Query String parameters", "detail": detail})
            ),
            "{q}"
        );
    }
    let (status, body) = get(&format!("{base}/v3/submission/applicant"), "sim-key").await;
    assert_eq!(
        (status, &body["detail"]),
        (400, &serde_json::json!("applicant_id is required"))
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn live_arrivals_pending_then_decided_and_dumped() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("dump.jsonl");
    let sim = Simulator::start(SimConfig {
        submissions: 5,
        rate: 40.0,
        pending_share: 1.0,
        decide_after: Duration::from_millis(150),
        dump_path: Some(dump.clone()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // A change from a test, too.
    let first = sim.submissions()[0]["submission_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(sim.update(&first, |v| v["reviewer"] = "agent-7".into()));
    assert!(!sim.update("missing", |_| {}));
    let versions = sim.dump();
    sim.shutdown().await.unwrap();

    let arrivals = versions.len() - 5;
    assert!(arrivals >= 15, "live versions: {arrivals}");
    // Some submission appears pending, then decided with moved timestamps.
    let mut decided = 0;
    // Only live arrivals (the backlog's first 5 versions may be pending for good).
    for (i, v) in versions.iter().enumerate().skip(5) {
        if v["kyc"]["result"] != "pending" {
            continue;
        }
        let id = &v["submission_id"];
        if let Some(later) = versions[i + 1..].iter().find(|w| &w["submission_id"] == id) {
            let r = later["kyc"]["result"].as_str().unwrap();
            assert!(r == "approved" || r == "rejected", "{r}");
            let before = parse_timestamp(v["updated_at"].as_str().unwrap()).unwrap();
            let after = parse_timestamp(later["updated_at"].as_str().unwrap()).unwrap();
            assert!(
                after - before >= chrono::Duration::milliseconds(150),
                "{} {} {} / {} {} {}",
                v["created_at"],
                v["updated_at"],
                v["pending_at"],
                later["created_at"],
                later["updated_at"],
                later["kyc_result_at"]
            );
            assert_eq!(later["kyc_result_at"], later["updated_at"]);
            assert_eq!(later["pending_at"], v["pending_at"]);
            assert!(v.get("kyc_result_at").is_none());
            decided += 1;
        }
    }
    assert!(decided >= 5, "decided {decided}");
    // The dump file holds the same versions as JSON lines.
    let text = std::fs::read_to_string(&dump).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // (Arrivals continue until shutdown, so the file may hold a few more.)
    assert!(lines.len() >= versions.len());
    assert_eq!(lines[..versions.len()], versions[..]);
    assert_eq!(
        lines.iter().filter(|v| v["reviewer"] == "agent-7").count(),
        1
    );
}

#[tokio::test]
async fn same_seed_and_base_time_same_backlog() {
    let cfg = || SimConfig {
        submissions: 50,
        seed: 9,
        base_time: Some(
            chrono::DateTime::parse_from_rfc3339("2025-02-01T10:00:00Z")
                .unwrap()
                .to_utc(),
        ),
        ..SimConfig::default()
    };
    let a = Simulator::start(cfg()).await.unwrap();
    let b = Simulator::start(cfg()).await.unwrap();
    assert_eq!(a.dump(), b.dump());
    let last = a.submissions().last().unwrap()["created_at"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(parse_timestamp(&last).unwrap() <= cfg().base_time.unwrap());
}

#[test]
fn simulate_command_serves_and_prints_its_address() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args([
            "simulate",
            "--listen",
            "127.0.0.1:0",
            "--submissions",
            "120",
            "--seed",
            "4",
            "--api-key",
            "k",
            "--base-time",
            "2025-06-03T12:00:00Z",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, body) = rt.block_on(get(&format!("{base}/v3/submission?count=100"), "k"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["Items"].as_array().unwrap().len(), 100);
    assert!(body.get("nextpageKey").is_some());
    // Same seed and base time as the library: the same backlog, byte for byte.
    let lib = rt.block_on(async {
        let sim = Simulator::start(SimConfig {
            submissions: 120,
            seed: 4,
            api_key: "k".into(),
            base_time: Some("2025-06-03T12:00:00Z".parse().unwrap()),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        get(&format!("{}/v3/submission?count=100", sim.base_url()), "k")
            .await
            .1
    });
    assert_eq!(body, lib);
}

//! Issue 15 items 8 and 13, as an operator meets them: the real binary, real
//! HTTP receivers, SIGHUP, `/healthz`, `/metrics`, a second daemon.

use crate::common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::*;
use kyc_sentinel::argos::model::format_argos_timestamp;
use kyc_sentinel::simulator::{SimConfig, Simulator};
use serde_json::{Value, json};

/// A webhook receiver that keeps the bodies it got.
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

fn red_flag(id: &str) -> Value {
    let t = format_argos_timestamp(Utc::now());
    json!({"submission_id": id, "created_at": t, "updated_at": t, "kyc": {"result": "approved"},
           "aml": {"currentstatus": "Red Flag", "risk_level_summary": "High"}})
}

/// `run` with its stderr collected line by line as it comes.
struct Daemon {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    fn start(cfg: &std::path::Path) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
            .args(["run", "--config"])
            .arg(cfg)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (l, err) = (log.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        Daemon { child, log }
    }

    async fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no `{needle}` in the log:\n{}",
            self.log.lock().unwrap().join("\n")
        );
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn stop(mut self) -> String {
        self.signal("-TERM");
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let log = self.log.lock().unwrap().join("\n");
        assert!(status.success(), "{log}");
        log
    }
}

async fn wait_count(got: &Mutex<Vec<String>>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while got.lock().unwrap().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got.lock().unwrap().len(), n);
}

fn config_with_hook(dir: &std::path::Path, sim: &str, url: &str) -> std::path::PathBuf {
    write_config(
        dir,
        sim,
        &format!(
            "  - name: hook\n    type: webhook\n    url: {url}\n    template: generic.json\n    timeout: 2s\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_changed_webhook_url_and_a_refused_reload_shows() {
    let dir = tempfile::tempdir().unwrap();
    let (old_hook, old_url) = hook().await;
    let (new_hook, new_url) = hook().await;
    let sim = Simulator::start(SimConfig {
        submissions: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let cfg = config_with_hook(dir.path(), &sim.base_url(), &old_url);
    let daemon = Daemon::start(&cfg);
    let line = daemon.wait_log("/healthz").await;
    let base = regex::Regex::new(r"http://(127\.0\.0\.1:\d+)/healthz")
        .unwrap()
        .captures(&line)
        .unwrap()[1]
        .to_owned();
    let get = |path: &str| {
        let url = format!("http://{base}{path}");
        async move {
            kyc_sentinel::util::http_client()
                .build()
                .unwrap()
                .get(url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };

    sim.insert(red_flag("rf-1"));
    wait_count(&old_hook, 1).await;

    // The webhook moves: edit the file, SIGHUP.
    config_with_hook(dir.path(), &sim.base_url(), &new_url);
    daemon.signal("-HUP");
    let line = daemon.wait_log("SIGHUP: configuration reloaded").await;
    assert!(line.contains("changed receivers"), "{line}");
    assert!(
        !line.contains(&new_url),
        "the log names sections, not values: {line}"
    );
    sim.insert(red_flag("rf-2"));
    wait_count(&new_hook, 1).await;
    assert!(new_hook.lock().unwrap()[0].contains("rf-2"));
    assert!(
        get("/metrics")
            .await
            .contains("kyc_sentinel_config_reload_success 1")
    );

    // A broken file: refused whole, shown in /healthz and the metrics, and
    // the running set (the new URL) stays in force.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("type: webhook", "type: webhook\n    colour: red"),
    )
    .unwrap();
    daemon.signal("-HUP");
    daemon
        .wait_log("SIGHUP: configuration reload refused")
        .await;
    let health = get("/healthz").await;
    assert!(
        health.starts_with("degraded: reload refused at 20"),
        "{health}"
    );
    assert!(health.contains("colour"), "{health}");
    let metrics = get("/metrics").await;
    assert!(
        metrics.contains("kyc_sentinel_config_reload_success 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kyc_sentinel_config_last_reload_timestamp_seconds"),
        "{metrics}"
    );
    sim.insert(red_flag("rf-3"));
    wait_count(&new_hook, 2).await;
    assert_eq!(
        old_hook.lock().unwrap().len(),
        1,
        "the old URL is not used again"
    );

    // Fixed: the next reload clears the degraded state.
    std::fs::write(&cfg, text).unwrap();
    daemon.signal("-HUP");
    daemon
        .wait_log("SIGHUP: configuration reloaded: nothing changed")
        .await;
    assert!(!get("/healthz").await.contains("degraded"));
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_store_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig {
        submissions: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let cfg = write_config(dir.path(), &sim.base_url(), "");
    let first = Daemon::start(&cfg);
    first.wait_log("kyc-sentinel running").await;
    let day = Utc::now().format("%Y%m%d").to_string();
    for args in [
        vec!["run"],
        vec!["backfill", "--from", day.as_str(), "--to", day.as_str()],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
            .args(&args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{args:?} started beside the first: {err}"
        );
        assert!(
            err.contains("another kyc-sentinel is using the store")
                && err.contains(&format!("pid {} on host", first.child.id()))
                && err.contains("`run` since"),
            "{args:?}: {err}"
        );
    }
    first.stop();
    // Stopped cleanly: the next start is not refused.
    let again = Daemon::start(&cfg);
    again.wait_log("kyc-sentinel running").await;
    let log = again.stop();
    assert!(!log.contains("stale lock"), "{log}");
}

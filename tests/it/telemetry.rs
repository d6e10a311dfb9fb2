//! `/metrics` and `/healthz` of a running daemon; the exposition format is
//! checked by Prometheus's own `promtool check metrics`.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use kyc_sentinel::simulator::{SimConfig, Simulator};
use tokio_util::sync::CancellationToken;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_health_reports_polls() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig {
        seed: 3,
        submissions: 300,
        ..recent_backlog()
    })
    .await
    .unwrap();
    let port = free_port();
    let cfg_path = write_config(dir.path(), &sim.base_url(), "");
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
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let base = format!("http://127.0.0.1:{port}");
    let health = kyc_sentinel::util::http_client()
        .build()
        .unwrap()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(
        health
            .text()
            .await
            .unwrap()
            .starts_with("ok: last successful poll")
    );
    let metrics = kyc_sentinel::util::http_client()
        .build()
        .unwrap()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "kyc_sentinel_polls_total{outcome=\"ok\"}",
        "kyc_sentinel_pages_total",
        "kyc_sentinel_submissions_seen_total",
        "kyc_sentinel_rule_evaluations_total{rule=\"aml-red-flag-high\"}",
        "kyc_sentinel_alerts_total{rule=",
        "kyc_sentinel_deliveries_total{receiver=\"file\",outcome=\"delivered\"}",
        "kyc_sentinel_outbox_depth",
        "kyc_sentinel_api_calls_today",
        "kyc_sentinel_last_successful_poll_timestamp_seconds",
    ] {
        assert!(metrics.contains(name), "missing {name} in:\n{metrics}");
    }
    tx.cancel();
    daemon.await.unwrap().unwrap();

    let promtool = which("promtool").expect(
        "promtool not found: scripts/test installs it (Debian package `prometheus`); \
         or run `apt-get install prometheus`",
    );
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn which(cmd: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(cmd))
        .find(|p| p.is_file())
}

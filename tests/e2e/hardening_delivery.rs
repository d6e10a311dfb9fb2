//! Issue 14 item 1 as an operator meets it: `run` with a webhook receiver that
//! accepts connections and never answers, beside a `file` receiver. The file
//! gets its alerts at once; SIGTERM ends the process within the flush deadline
//! (plus 2 s); the notifications cut in flight are delivered after a restart,
//! with the same idempotency keys.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use kyc_sentinel::simulator::{SimConfig, Simulator};
use tokio::io::AsyncReadExt;

const FLUSH_DEADLINE: Duration = Duration::from_secs(2);

fn config(dir: &Path, name: &str, base_url: &str, hook_url: &str) -> std::path::PathBuf {
    let text = format!(
        "argos:\n  base_url: {base_url}\n  api_key: sim-key\n  rate_limit_per_sec: 1000\n  \
         retry_base_delay: 10ms\n  timeout: 5s\n  page_size: 50\n\
         poll:\n  interval: 1s\n  midnight_overlap: 24h\n\
         rules: {rules}\n\
         store:\n  path: state.db\n\
         telemetry:\n  listen: 127.0.0.1:0\n\
         outbox:\n  retry_base: 50ms\n  flush_deadline: 2s\n\
         receivers:\n  - name: file\n    type: file\n    path: alerts.jsonl\n  \
         - name: hook\n    type: webhook\n    url: {hook_url}\n    timeout: 60s\n",
        rules = repo().join("rules").display()
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn_run(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", std::env::var("HD_LOG").unwrap_or("warn".into()))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(config.with_extension("log")).unwrap(),
        ))
        .spawn()
        .expect("start kyc-sentinel run")
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM failed");
}

/// Waits for the child to exit, at most `limit`; its status and how long it took.
fn wait_exit(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("kyc-sentinel did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

type Keys = Arc<Mutex<Vec<String>>>;

/// The `Idempotency-Key` of a raw HTTP request.
fn key_of(request: &str) -> Option<String> {
    request.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("idempotency-key")
            .then(|| v.trim().to_owned())
    })
}

/// Accepts, reads the request, never answers. The keys it was sent.
async fn black_hole() -> (String, Keys) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let keys: Keys = Arc::default();
    let k = keys.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let k = k.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                if let Some(key) = key_of(&String::from_utf8_lossy(&buf[..n])) {
                    k.lock().unwrap().push(key);
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(sock);
            });
        }
    });
    (url, keys)
}

/// A receiver answering 200; the keys it got.
async fn answering() -> (String, Keys) {
    let keys: Keys = Arc::default();
    let k = keys.clone();
    let app = axum::Router::new().fallback(move |h: axum::http::HeaderMap, _body: String| {
        let k = k.clone();
        async move {
            if let Some(v) = h.get("idempotency-key") {
                k.lock().unwrap().push(v.to_str().unwrap().to_owned());
            }
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, keys)
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_hole_webhook_neither_stalls_the_file_receiver_nor_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig {
        seed: 57,
        submissions: 150,
        ..recent_backlog()
    })
    .await
    .unwrap();
    let expected = expected_alerts(&sim.dump());
    assert!(!expected.is_empty());
    let want: BTreeSet<String> = expected.iter().map(|a| a.fingerprint.clone()).collect();
    let (hole_url, cut_keys) = black_hole().await;
    let cfg = config(dir.path(), "hole.yaml", &sim.base_url(), &hole_url);
    let mut child = KillOnDrop(spawn_run(&cfg));

    // The black hole holds its first requests; the file still gets every alert.
    wait_for(
        "a request at the black hole",
        Duration::from_secs(30),
        || !cut_keys.lock().unwrap().is_empty(),
    )
    .await;
    let archive = dir.path().join("alerts.jsonl");
    wait_for("every alert in the file", Duration::from_secs(2), || {
        delivered(&archive).len() == want.len()
    })
    .await;
    assert_eq!(assert_delivered_exactly(&expected, &delivered(&archive)), 0);

    // SIGTERM: the round in flight is cut at the flush deadline.
    sigterm(&child);
    let (status, took) = wait_exit(&mut child, FLUSH_DEADLINE + Duration::from_secs(5));
    let stderr = std::fs::read_to_string(cfg.with_extension("log")).unwrap();
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{stderr}"
    );
    assert!(
        took <= FLUSH_DEADLINE + Duration::from_secs(2),
        "SIGTERM took {took:?}; stderr:\n{stderr}"
    );
    assert!(stderr.contains("cut at the flush deadline"), "{stderr}");
    let cut: BTreeSet<String> = cut_keys.lock().unwrap().iter().cloned().collect();
    assert!(cut.is_subset(&want), "cut {cut:?}");

    // Restart against a receiver that answers: the cut ones arrive, same keys.
    let (live_url, live_keys) = answering().await;
    let cfg = config(dir.path(), "live.yaml", &sim.base_url(), &live_url);
    let mut child = KillOnDrop(spawn_run(&cfg));
    let all_live = || {
        let got: BTreeSet<String> = live_keys.lock().unwrap().iter().cloned().collect();
        want.is_subset(&got)
    };
    let start = Instant::now();
    while !all_live() && start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        all_live(),
        "not every notification reached the live receiver: {} of {}; log:\n{}",
        live_keys.lock().unwrap().len(),
        want.len(),
        std::fs::read_to_string(cfg.with_extension("log")).unwrap()
    );
    sigterm(&child);
    let (status, _) = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success());
    let got: BTreeSet<String> = live_keys.lock().unwrap().iter().cloned().collect();
    assert!(
        cut.is_subset(&got),
        "cut {cut:?} not delivered after restart"
    );
    // The file receiver was not sent anything twice by the restart.
    assert_eq!(assert_delivered_exactly(&expected, &delivered(&archive)), 0);
}

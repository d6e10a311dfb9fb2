//! Issue 14 (items 1, 2, 7, 10) and issue 15 (item 14) for delivery, against
//! real servers on 127.0.0.1: a black-hole receiver (accepts, never answers),
//! a receiver that redirects, one that echoes secrets in a 404, a closed port,
//! and a template whose loops never end.

use crate::notify_common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use kyc_sentinel::notify::outbox::Outbox;
use notify_common::*;
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Accepts connections and reads requests, never answers; the requests' text.
async fn black_hole() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                // Hold the connection open, say nothing.
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(sock);
            });
        }
    });
    (url, got)
}

type Seen = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// An HTTP receiver answering every request with `status`, `headers` and `body`.
async fn answering(
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |h: HeaderMap, b: String| {
        let (s, headers, body) = (s.clone(), headers.clone(), body.clone());
        async move {
            s.lock().unwrap().push((h, b));
            let mut resp = axum::response::Response::new(axum::body::Body::from(body));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap();
            for (k, v) in headers {
                resp.headers_mut().insert(k, v.parse().unwrap());
            }
            resp
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

fn hook(name: &str, url: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    type: webhook\n    url: {url}\n    secret: ${{HOOK_SECRET}}\n    \
         timeout: 30s\n    headers:\n      Authorization: Bearer hdr-token-71c2e9\n{extra}"
    )
}

const FILE: &str = "  - name: file\n    type: file\n    path: archive.jsonl\n";

fn file_lines(h: &Harness) -> usize {
    std::fs::read_to_string(h.dir.join("archive.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Item 1: the black hole holds only its own worker; the flush deadline cuts
/// it on shutdown and the cut row stays due, untouched, for the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_hole_receiver_delays_only_itself_and_shutdown_cuts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (url, requests) = black_hole().await;
    let h = Harness::new(dir.path(), &format!("{}{FILE}", hook("hole", &url, "")), "").await;
    let hole_keys = [
        h.enqueue("hole", 1).await,
        h.enqueue_from("hole", 1, 2).await,
    ];
    let receivers = kyc_sentinel::compose::build_receivers(&h.cfg).unwrap();
    let outbox = Arc::new(Outbox::new(
        h.store.clone(),
        receivers,
        h.cfg.outbox.clone(),
    ));
    let stop = CancellationToken::new();
    let stop_rx = stop.clone();
    let wake = Arc::new(Notify::new());
    let task = tokio::spawn(outbox.clone().run(wake.clone(), stop_rx.cancelled_owned()));
    // Wait until both hole requests are in flight, then give the file work.
    let start = Instant::now();
    while requests.lock().unwrap().len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the hole got {} of its 2 requests within 5 s: one receiver's \
             notifications are sent one after another",
            requests.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let file_key = h.enqueue_from("file", 3, 3).await;
    wake.notify_one();
    let t = Instant::now();
    while file_lines(&h) < 3 {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "the file receiver waited behind the black hole"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Shutdown: flush_deadline is 1 s in the harness; the cut follows it.
    let t = Instant::now();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .expect("the outbox stopped within flush_deadline + 2 s")
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "stopped before the deadline"
    );
    assert_eq!(h.outbox_row(&file_key).await.0, "delivered");
    for k in &hole_keys {
        // Cut: not an attempt, not an error; due again with the same key.
        assert_eq!(h.outbox_row(k).await, ("pending".into(), String::new()));
        assert!(
            requests.lock().unwrap().iter().any(|r| r
                .to_ascii_lowercase()
                .contains(&format!("idempotency-key: {k}"))),
            "the hole saw {k}"
        );
    }
    assert_eq!(
        h.attempts().await,
        [true],
        "only the file delivery was recorded"
    );
}

/// A template directory with `runaway.json`: fine for one alert, four loops
/// deep over the alerts (100 alerts: 10^8 iterations) for more.
fn runaway_templates(dir: &std::path::Path) -> String {
    let t = dir.join("t");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(
        t.join("runaway.json"),
        "{% set n = namespace(i=0) %}{% for a in alerts %}{% for b in alerts %}{% for c in alerts %}\
         {% for d in alerts %}{% set n.i = n.i + 1 %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}\
         {\"key\": {{ key }}, \"n\": {{ n.i }}}",
    )
    .unwrap();
    format!("templates:\n  dir: {}\n", t.display())
}

/// Item 2: a render over its fuel fails that notification at once, with a
/// clear error; the next notification of the same receiver is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_template_fails_its_notification_only() {
    let dir = tempfile::tempdir().unwrap();
    let (base, seen) = answering(200, vec![], "ok".into()).await;
    let receivers = hook(
        "hook",
        &format!("{base}/hook"),
        "    template: runaway.json\n",
    );
    let h = Harness::new(dir.path(), &receivers, &runaway_templates(dir.path())).await;
    let big = h.enqueue("hook", 100).await;
    let small = h.enqueue_from("hook", 100, 1).await;
    let t = Instant::now();
    let stats = h.deliver_until_settled(Duration::from_secs(20)).await;
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!((stats.delivered, stats.dead, stats.pending), (1, 1, 0));
    let (state, error) = h.outbox_row(&big).await;
    assert_eq!(state, "dead");
    assert!(
        error.contains("template `runaway.json`: rendering stopped")
            && error.contains("for 100 alert(s)"),
        "{error}"
    );
    assert_eq!(h.outbox_row(&small).await.0, "delivered");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

/// Item 2: `check --config` renders every template with a big notification
/// and reports the one over budget.
#[test]
fn check_config_reports_a_runaway_template() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "argos:\n  base_url: http://127.0.0.1:9\n  api_key: k\nrules: {}\nstore:\n  path: state.db\n\
         receivers:\n  - name: file\n    type: file\n    path: out.jsonl\n{}",
        repo().join("rules").display(),
        runaway_templates(dir.path())
    );
    std::fs::write(dir.path().join("s.yaml"), text).unwrap();
    let t = Instant::now();
    // A render without a bound never returns: wait at most 20 s, then kill
    // (the test fails instead of hanging the suite).
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args(["check", "--config", "s.yaml"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("check --config still rendering after 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("s.yaml: with 100 alerts in one notification: template `runaway.json`: rendering stopped"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(20));
}

/// Item 7: a 307 is an error naming the status only; the location's host
/// gets nothing (no headers, no body, no signature, no Referer).
#[tokio::test]
async fn a_redirect_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (elsewhere, stolen) = answering(200, vec![], "thanks".into()).await;
    let location = format!("{elsewhere}/steal?token=loc-secret-4471");
    let (base, seen) = answering(307, vec![("location", location)], String::new()).await;
    let url = format!("{base}/hooks/path-secret-93ab");
    let h = Harness::new(dir.path(), &hook("hook", &url, ""), "").await;
    let key = h.enqueue("hook", 1).await;
    let stats = h.deliver_until_settled(Duration::from_secs(5)).await;
    assert_eq!((stats.delivered, stats.dead), (0, 1));
    assert!(
        stolen.lock().unwrap().is_empty(),
        "the redirect was followed"
    );
    let referer = seen.lock().unwrap()[0].0.get("referer").cloned();
    assert_eq!(referer, None, "no Referer is ever sent");
    let (_, error) = h.outbox_row(&key).await;
    assert!(error.contains("HTTP 307 Temporary Redirect"), "{error}");
    for secret in ["loc-secret-4471", "steal", "path-secret-93ab"] {
        assert!(!error.contains(secret), "{secret} in {error}");
    }
}

/// Item 10: a 404 echoing the secret path, the Authorization header and a
/// param is stored as the status and a scrubbed excerpt of at most 200
/// characters, in the outbox row and the dead-letter audit row.
#[tokio::test]
async fn a_receiver_error_is_stored_scrubbed_and_short() {
    let dir = tempfile::tempdir().unwrap();
    let echo = format!(
        "no route for /hooks/path-secret-93ab?sig=q-secret-5521 (authorization: Bearer hdr-token-71c2e9, \
         routing_key rk-secret-0042){}",
        " padding".repeat(100)
    );
    let (base, _) = answering(404, vec![], echo).await;
    let url = format!("{base}/hooks/path-secret-93ab?sig=q-secret-5521");
    let extra = "    params:\n      routing_key: rk-secret-0042\n";
    let h = Harness::new(dir.path(), &hook("hook", &url, extra), "").await;
    let key = h.enqueue("hook", 1).await;
    h.deliver_until_settled(Duration::from_secs(5)).await;
    let (state, error) = h.outbox_row(&key).await;
    assert_eq!(state, "dead");
    let audit: String = sqlx::query_scalar(
        "SELECT detail FROM audit_log WHERE kind = 'dead_letter' AND fingerprint = ?",
    )
    .bind(&key)
    .fetch_one(h.store.pool())
    .await
    .unwrap();
    for text in [&error, &audit] {
        assert!(
            text.contains("HTTP 404 Not Found: no route for [redacted]"),
            "{text}"
        );
        for secret in [
            "path-secret-93ab",
            "q-secret-5521",
            "hdr-token-71c2e9",
            "rk-secret-0042",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    let excerpt = error.split("HTTP 404 Not Found: ").nth(1).unwrap();
    assert_eq!(excerpt.chars().count(), 200, "{excerpt}");
}

/// Issue 15 item 14: a closed port names the cause, not the secret URL.
#[tokio::test]
async fn a_closed_port_names_the_cause_without_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{closed}/hooks/path-secret-93ab");
    let h = Harness::new(dir.path(), &hook("hook", &url, ""), "").await;
    let key = h.enqueue("hook", 1).await;
    h.outbox.deliver_due().await.unwrap();
    let (state, error) = h.outbox_row(&key).await;
    assert_eq!(state, "pending");
    assert!(
        error.contains("cannot connect") && error.to_lowercase().contains("connection refused"),
        "{error}"
    );
    assert!(!error.contains("path-secret-93ab"), "{error}");
}

/// Issue 15 item 14: an SMTP relay that is not there names the cause.
#[tokio::test]
async fn a_closed_smtp_port_names_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mail = format!(
        "  - name: mail\n    type: email\n    from: sentinel@example.com\n    to: [c@example.com]\n    \
         smtp:\n      host: 127.0.0.1\n      port: {port}\n      tls: none\n      username: u\n      \
         password: ${{SMTP_PASSWORD}}\n      timeout: 2s\n"
    );
    let h = Harness::new(dir.path(), &mail, "").await;
    let key = h.enqueue("mail", 1).await;
    h.outbox.deliver_due().await.unwrap();
    let (_, error) = h.outbox_row(&key).await;
    assert!(
        error.to_lowercase().contains("connection refused"),
        "{error}"
    );
    assert!(!error.contains(SMTP_PASSWORD), "{error}");
}

/// Issue 15 item 14: every `notify-test` has its own idempotency key.
#[test]
fn notify_test_uses_a_fresh_key_each_time() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "argos:\n  base_url: http://127.0.0.1:9\n  api_key: k\nrules: {}\nstore:\n  path: state.db\n\
         receivers:\n  - name: file\n    type: file\n    path: out.jsonl\n",
        repo().join("rules").display()
    );
    std::fs::write(dir.path().join("s.yaml"), text).unwrap();
    let mut printed = Vec::new();
    for _ in 0..2 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
            .args(["notify-test", "--config", "s.yaml", "--receiver", "file"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        printed.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    assert_ne!(printed[0], printed[1]);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let keys: Vec<&str> = lines
        .iter()
        .map(|l| l["notification"].as_str().unwrap())
        .collect();
    assert_ne!(keys[0], keys[1]);
    for (l, k) in lines.iter().zip(&keys) {
        assert!(k.starts_with("test-") && k.len() == 37, "{k}");
        assert!(printed.iter().any(|p| p.contains(k)));
        let fp = l["idempotency_key"].as_str().unwrap();
        assert_ne!(fp, "0".repeat(64));
    }
    assert_ne!(lines[0]["idempotency_key"], lines[1]["idempotency_key"]);
}

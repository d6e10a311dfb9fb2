//! Issue 14, items 11 and 13: the daemon's HTTP listeners against hostile
//! peers (raw TCP clients on 127.0.0.1), and control characters in output.
//!
//! Each listener (metrics + alert API, webhook endpoint) is served by the one
//! guard in `http_guard`: token before body, body limits, header and body
//! timeouts, a connection cap.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kyc_sentinel::api::{ApiState, router};
use kyc_sentinel::argos::crypto::{AesEcb, Cipher};
use kyc_sentinel::config::{Dur, IngestConfig};
use kyc_sentinel::http_guard::Limits;
use kyc_sentinel::ingest::guard::ByteSize;
use kyc_sentinel::ingest::{IngestServer, IngestStats};
use kyc_sentinel::store::SqliteStore;
use kyc_sentinel::telemetry::{Health, serve_with};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "tok-0123456789abcdef";

/// Short timeouts so the tests do not wait the defaults' 10 s.
fn quick(max_connections: usize) -> Limits {
    Limits {
        max_connections,
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        ..Limits::API
    }
}

/// Metrics, health and the alert API on one listener, as the daemon serves them.
async fn api_listener(limits: Limits) -> (SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    let api = router(ApiState {
        users: Arc::new(store.clone()),
        policy: Default::default(),
        store: Arc::new(store),
        token: Some(Arc::new(SecretString::from(TOKEN))),
        link_secret: None,
        link_ttl: kyc_sentinel::api::DEFAULT_LINK_TTL,
    });
    let health = Health::new(Duration::from_secs(60));
    let (addr, task) = serve_with("127.0.0.1:0".parse().unwrap(), health, Some(api), limits)
        .await
        .unwrap();
    // The task lives as long as the test's runtime.
    std::mem::forget(task);
    (addr, dir)
}

struct Ingest {
    server: IngestServer,
    _hints: mpsc::Receiver<kyc_sentinel::ingest::Hint>,
    _stop: tokio_util::sync::DropGuard,
}

async fn ingest_listener(limits: Limits) -> Ingest {
    let cfg = IngestConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: SecretString::from(TOKEN),
        allow_ips: vec![],
        max_body: ByteSize(4096),
        rate_limit_per_sec: 100_000,
        replay_window: Dur(Duration::from_secs(600)),
        queue_capacity: 100,
        fetch_concurrency: 1,
        catch_up: false,
    };
    let (tx, rx) = mpsc::channel(100);
    let stop = CancellationToken::new();
    let stop_rx = stop.clone();
    let cipher: Box<dyn Cipher> = Box::new(AesEcb::from_api_key(&SecretString::from("k")));
    let server = IngestServer::start_with(cfg, Some(cipher), tx, stop_rx, limits)
        .await
        .unwrap();
    Ingest {
        server,
        _hints: rx,
        _stop: stop.drop_guard(),
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The status of the answer on `s`, `None` when the server closed (or reset)
/// the connection without one, `Err` when nothing came within `wait`.
async fn status_within(s: &mut TcpStream, wait: Duration) -> Result<Option<u16>, ()> {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 1024];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.windows(2).any(|w| w == b"\r\n") {
                return;
            }
        }
    };
    tokio::time::timeout(wait, read).await.map_err(|_| ())?;
    let text = String::from_utf8_lossy(&buf);
    Ok(text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok()))
}

/// One attacker: announces a 2 MB body after a head with a wrong token, and
/// pushes the body while waiting for the answer.
async fn unauthenticated_big_body(addr: SocketAddr, head: String) -> Result<Option<u16>, ()> {
    static BODY: [u8; 64 * 1024] = [b'x'; 64 * 1024];
    let Ok(s) = TcpStream::connect(addr).await else {
        return Ok(None);
    };
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        if w.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for _ in 0..(2_000_000 / BODY.len()) {
            if w.write_all(&BODY).await.is_err() {
                return;
            }
        }
    });
    let mut buf = [0u8; 64];
    let answer = tokio::time::timeout(Duration::from_secs(5), r.read(&mut buf)).await;
    writer.abort();
    match answer {
        Err(_) => Err(()),
        Ok(Ok(n)) if n >= 12 => Ok(String::from_utf8_lossy(&buf[9..12]).parse().ok()),
        Ok(_) => Ok(None),
    }
}

async fn flood(addr: SocketAddr, head: &str, n: usize) -> Vec<Result<Option<u16>, ()>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| tokio::spawn(unauthenticated_big_body(addr, head.to_owned())))
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alert_api_refuses_unauthenticated_big_bodies_without_reading_them() {
    let (addr, _dir) = api_listener(Limits::API).await;
    let rss_before = rss_kib();
    let started = Instant::now();
    let head = "POST /api/alerts/fp1/ack HTTP/1.1\r\nhost: x\r\nauthorization: Bearer wrong\r\n\
                content-type: application/json\r\ncontent-length: 2000000\r\n\r\n";
    let answers = flood(addr, head, 200).await;
    let took = started.elapsed();
    let grown_mib = rss_kib().saturating_sub(rss_before) / 1024;
    let hung = answers.iter().filter(|a| a.is_err()).count();
    assert_eq!(hung, 0, "every attacker answered or cut, none held");
    for a in answers.iter().flatten().flatten() {
        assert!([401, 413, 503].contains(a), "refused, never accepted: {a}");
    }
    assert!(took < Duration::from_secs(5), "refused quickly: {took:?}");
    assert!(
        grown_mib < 64,
        "the bodies were not buffered: +{grown_mib} MiB"
    );

    // A body announced within the limit but never sent: the wrong token is
    // answered from the head alone (before the fix, the server waited for it).
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /api/alerts/fp1/ack HTTP/1.1\r\nhost: x\r\nauthorization: Bearer wrong\r\n\
          content-length: 10000\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(
        status_within(&mut s, Duration::from_secs(2)).await,
        Ok(Some(401))
    );

    // The legitimate caller is still served.
    let http = kyc_sentinel::util::http_client().build().unwrap();
    let r = http
        .get(format!("http://{addr}/api/alerts"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_api_body_limit_and_by_field() {
    let (addr, _dir) = api_listener(Limits::API).await;
    let http = kyc_sentinel::util::http_client().build().unwrap();
    let url = format!("http://{addr}/api/alerts/ffffffff/ack");
    // Over 16 KiB, without a declared length (chunked): cut where it passes.
    let chunks: Vec<Result<String, std::io::Error>> =
        (0..20).map(|_| Ok("y".repeat(1024))).collect();
    let r = http
        .post(&url)
        .bearer_auth(TOKEN)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Declared over 16 KiB: refused before the routes.
    let r = http
        .post(&url)
        .bearer_auth(TOKEN)
        .body("z".repeat(16 * 1024 + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // `by` must be a name: 400 naming the field; a name goes on (404: no such alert).
    for by in [
        "mlro\r\nX-Evil: yes",
        "\u{1b}[31mred",
        "<script>",
        " padded",
    ] {
        let r = http
            .post(&url)
            .bearer_auth(TOKEN)
            .json(&json!({ "by": by }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{by:?}");
        let e = r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(e.starts_with("by: must be a name"), "{e}");
    }
    let r = http
        .post(format!("http://{addr}/api/alerts/fp1/resolve"))
        .bearer_auth(TOKEN)
        .json(&json!({ "by": "a\nb", "outcome": "false_positive" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&json!({ "by": "Kim Ji-woo", "note": "looking" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_is_cut_at_the_body_timeout() {
    let (addr, _dir) = api_listener(quick(8)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    s.write_all(
        format!(
            "POST /api/alerts/fp1/ack HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\
             content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"by\": "
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let status = status_within(&mut s, Duration::from_secs(4)).await;
    let took = started.elapsed();
    assert!(
        matches!(status, Ok(Some(400 | 408)) | Ok(None)),
        "{status:?}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "cut at the 1 s body timeout: {took:?}"
    );
}

/// A slowloris: the request head one byte at a time, never finished. Returns
/// how long the server let it go on.
async fn slowloris(addr: SocketAddr) -> Duration {
    let s = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let (mut r, mut w) = s.into_split();
    let trickle = tokio::spawn(async move {
        let head = format!(
            "POST /argos/webhook HTTP/1.1\r\nhost: x\r\nx-pad: {}",
            "a".repeat(500)
        );
        for b in head.bytes() {
            if w.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    trickle.abort();
    assert!(closed.is_ok(), "the slowloris was never cut");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_is_cut_at_the_header_timeout_on_every_listener() {
    let (api, _dir) = api_listener(quick(8)).await;
    let ingest = ingest_listener(quick(8)).await;
    for addr in [api, ingest.server.addr()] {
        let took = slowloris(addr).await;
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "{addr}: cut at the 1 s header timeout, not by the byte: {took:?}"
        );
    }
    // An idle connection (nothing sent at all) is cut the same way.
    let mut idle = TcpStream::connect(api).await.unwrap();
    assert_eq!(
        status_within(&mut idle, Duration::from_secs(3)).await,
        Ok(None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_and_service_resumes() {
    let limits = Limits {
        header_timeout: Duration::from_secs(30),
        ..quick(8)
    };
    let (api, _dir) = api_listener(limits).await;
    let ingest = ingest_listener(limits).await;
    for addr in [api, ingest.server.addr()] {
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The ninth is answered at once, without a byte of it read.
        for _ in 0..5 {
            let mut extra = TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            assert_eq!(
                status_within(&mut extra, Duration::from_secs(2)).await,
                Ok(Some(503)),
                "{addr}"
            );
            assert!(started.elapsed() < Duration::from_secs(1));
        }
        // Slots come back as the holders leave.
        drop(held);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let http = kyc_sentinel::util::http_client().build().unwrap();
    let r = http
        .get(format!("http://{api}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!(
            "http://{}/argos/webhook/{TOKEN}",
            ingest.server.addr()
        ))
        .body(r#"{"webhook_trigger": "approved", "submission_id": "sub-1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(ingest.server.counters().snapshot().queued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_endpoint_refuses_unauthenticated_big_bodies_without_reading_them() {
    let ingest = ingest_listener(Limits::INGEST).await;
    let addr = ingest.server.addr();
    let started = Instant::now();
    for head in [
        "POST /argos/webhook/wrong-token-0123456789 HTTP/1.1\r\nhost: x\r\ncontent-length: 2000000\r\n\r\n",
        "POST /argos/webhook HTTP/1.1\r\nhost: x\r\ncontent-length: 2000000\r\n\r\n",
    ] {
        let answers = flood(addr, head, 100).await;
        assert!(answers.iter().all(|a| a.is_ok()), "none held");
        for a in answers.iter().flatten().flatten() {
            assert!([401, 404, 503].contains(a), "{a}");
        }
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let st = ingest.server.counters().snapshot();
    assert_eq!(
        st,
        IngestStats {
            requests: st.unauthenticated,
            unauthenticated: st.unauthenticated,
            ..IngestStats::default()
        },
        "nothing but refusals"
    );
    assert!(st.unauthenticated > 0);
}

// ---- Item 13: control characters in human-readable output ----

/// A submission id built to forge a table row and drive the terminal.
const EVIL_ID: &str = "sid\r\nX-Evil: yes\u{1b}[2J\u{202e}";
const EVIL_SHOWN: &str = "sid\\r\\nX-Evil: yes\\u{1b}[2J\\u{202e}";

fn assert_clean(what: &str, text: &str) {
    assert!(
        !text
            .chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
        "{what} shows raw control characters: {text:?}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("X-Evil")),
        "{what} has a forged line: {text}"
    );
    assert!(
        text.contains(EVIL_SHOWN),
        "{what} shows the id escaped: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_list_and_audit_show_control_characters_escaped() {
    use kyc_sentinel::argos::model::format_argos_timestamp;
    use kyc_sentinel::simulator::{SimConfig, Simulator};

    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig {
        submissions: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let t = format_argos_timestamp(chrono::Utc::now());
    sim.insert(
        json!({"submission_id": EVIL_ID, "created_at": t, "updated_at": t,
        "kyc": {"result": "approved"},
        "aml": {"currentstatus": "Red Flag", "risk_level_summary": "High"}}),
    );
    let cfg_path = crate::common::write_config(dir.path(), &sim.base_url(), "");
    let tx = CancellationToken::new();
    let rx = tx.clone();
    let daemon = tokio::spawn(kyc_sentinel::daemon::run(
        kyc_sentinel::compose::load_config(&cfg_path).unwrap(),
        rx,
    ));
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
            .args(args)
            .arg("--config")
            .arg(&cfg_path)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let mut listed = String::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if dir.path().join("state.db").exists() {
            listed = cli(&["alerts", "list"]);
            if listed.lines().count() > 1 {
                break;
            }
        }
    }
    tx.cancel();
    daemon.await.unwrap().unwrap();
    assert!(listed.lines().count() > 1, "the alert fired: {listed}");
    assert_clean("alerts list", &listed);
    let fp = listed.lines().nth(1).unwrap().rsplit(' ').next().unwrap();
    assert_clean(
        "audit --submission",
        &cli(&["audit", "--submission", EVIL_ID]),
    );
    assert_clean("audit --alert", &cli(&["audit", "--alert", fp]));
}

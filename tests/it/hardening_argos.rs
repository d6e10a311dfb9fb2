//! Issue 14 items 3-8 and issue 15 item 15: the Argos client against hostile
//! or odd answers, over real HTTP on 127.0.0.1 (the simulator with a fault, or
//! a small axum server). Each test fails on the client before the hardening.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use kyc_sentinel::argos::{ArgosClient, ArgosError, ClientConfig, DateFormat, ListQuery};
use kyc_sentinel::compose::Engine;
use kyc_sentinel::config::Config;
use kyc_sentinel::poller::{HoldLimit, PollReport, Poller};
use kyc_sentinel::simulator::{Fault, Paging, SimConfig, SimHandle, Simulator};
use secrecy::SecretString;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const KEY: &str = "sim-key";

async fn sim(submissions: usize) -> SimHandle {
    Simulator::start(SimConfig {
        seed: 7,
        submissions,
        api_key: KEY.into(),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn config(base_url: &str) -> ClientConfig {
    let mut c = ClientConfig::new(base_url, SecretString::from(KEY));
    c.retry_base_delay = Duration::from_millis(5);
    c.retry_max_delay = Duration::from_millis(20);
    c.max_retries = 2;
    c.timeout = Duration::from_secs(5);
    c.rate_limit_per_sec = 1000;
    c
}

/// A config for the engine against `base_url`, with `argos_extra` lines in
/// the `argos:` block.
fn write_engine_config(dir: &Path, base_url: &str, argos_extra: &str, port: u16) -> Config {
    let text = format!(
        "argos:\n  base_url: {base_url}\n  api_key: {KEY}\n  rate_limit_per_sec: 1000\n  \
         retry_base_delay: 10ms\n  max_retries: 1\n  timeout: 5s\n  page_size: 20\n{argos_extra}\
         poll:\n  interval: 1s\n  midnight_overlap: 1s\n\
         rules: {rules}\n\
         store:\n  path: {db}\n\
         telemetry:\n  listen: 127.0.0.1:{port}\n\
         receivers:\n  - name: file\n    type: file\n    path: {alerts}\n",
        rules = crate::common::repo().join("rules").display(),
        db = dir.join("state.db").display(),
        alerts = dir.join("alerts.jsonl").display(),
    );
    let path = dir.join("sentinel.yaml");
    std::fs::write(&path, text).unwrap();
    kyc_sentinel::compose::load_config(&path).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Serves `app` on 127.0.0.1; returns its address.
async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

// Item 3: endless paging.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_paging_is_processed_as_it_arrives_and_capped_naming_the_day() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(0).await;
    sim.set_paging(Paging::Endless);
    let cfg = write_engine_config(dir.path(), &sim.base_url(), "  max_pages_per_day: 30\n", 0);
    let mut engine = Engine::build(&cfg).await.unwrap();
    let mut poller =
        Poller::new(engine.client.clone(), cfg.poll.clone(), 0).with_hold_limit(HoldLimit {
            items: 100,
            bytes: usize::MAX,
        });
    let day = Utc::now().date_naive();
    let mut report = PollReport::default();
    let e = tokio::time::timeout(
        Duration::from_secs(60),
        poller.poll_day(&mut engine.pipeline, day, &mut report),
    )
    .await
    .expect("the listing stops by itself")
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "listing the day {day} (UTC): Argos still sent a nextpageKey after 30 pages \
             (argos.max_pages_per_day); stopped there"
        )),
        "{text}"
    );
    assert_eq!(sim.requests(), 30);
    assert_eq!(report.pages, 30);
    // Batches of at most 100 items went through the pipeline while paging:
    // all 30 pages of 20 were judged, none held back for the end of the day.
    assert_eq!(report.batch.received, 600);
    assert_eq!(report.batch.changed, 600);
}

#[tokio::test]
async fn a_repeated_page_key_stops_the_listing_naming_the_day() {
    let sim = sim(0).await;
    sim.set_paging(Paging::RepeatKey);
    let c = ArgosClient::new(config(&sim.base_url())).unwrap();
    let day = Utc::now().date_naive();
    let q = ListQuery {
        start_date: Some(day),
        end_date: Some(day),
        ..Default::default()
    };
    let results: Vec<_> = futures::StreamExt::collect::<Vec<_>>(c.list_all(q)).await;
    assert_eq!(results.len(), 2);
    let text = results[1].as_ref().unwrap_err().to_string();
    assert!(
        text.starts_with(&format!(
            "pagination loop while listing the day {day} (UTC): page 2 (GET {}/v3/submission?count=50&start_date=",
            sim.base_url()
        )),
        "{text}"
    );
    assert!(text.ends_with("returned a nextpageKey already seen; stopped there"));
}

// Item 4: the daily budget.

#[tokio::test]
async fn daily_budget_counts_every_call_before_it_is_made() {
    let sim = sim(60).await;
    let mut cfg = config(&sim.base_url());
    cfg.daily_budget = 5;
    let c = ArgosClient::new(cfg).unwrap();
    // A list page, a retried 503 (two attempts), a fetch by id, an applicant.
    c.list_page(&ListQuery::default()).await.unwrap();
    sim.script_faults([Fault::Status(503)]);
    c.list_page(&ListQuery::default()).await.unwrap();
    c.get_submission("nope").await.unwrap();
    c.applicant("nobody").await.unwrap();
    assert_eq!(sim.requests(), 5);
    // Spent: nothing more reaches the server, whatever the call.
    let today = Utc::now().date_naive();
    for _ in 0..3 {
        let e = c.list_page(&ListQuery::default()).await.unwrap_err();
        assert!(e.is_budget_exhausted() && !e.is_fatal());
        assert_eq!(
            e.to_string(),
            format!(
                "not calling GET {}/v3/submission?count=50: the Argos API budget for {today} (UTC), \
                 5 calls (argos.daily_budget), is spent; no call to Argos until 00:00 UTC",
                sim.base_url()
            )
        );
    }
    assert!(
        c.get_submission("x")
            .await
            .unwrap_err()
            .is_budget_exhausted()
    );
    assert!(c.applicant("x").await.unwrap_err().is_budget_exhausted());
    assert_eq!(sim.requests(), 5);
    assert_eq!(c.calls_made(), 5);
    assert_eq!(c.budget().exhausted(Utc::now()).map(|x| x.daily), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spent_budget_stops_the_daemon_calling_and_healthz_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(100).await;
    let port = free_port();
    // Page size 20: the first poll alone needs 5 list calls.
    let cfg = write_engine_config(dir.path(), &sim.base_url(), "  daily_budget: 3\n", port);
    let tx = CancellationToken::new();
    let rx = tx.clone();
    let daemon = tokio::spawn(kyc_sentinel::daemon::run(cfg, rx));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(sim.requests(), 3, "no call after the budget is spent");
    let base = format!("http://127.0.0.1:{port}");
    let health = kyc_sentinel::util::http_client()
        .build()
        .unwrap()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let today = Utc::now().date_naive();
    assert_eq!(
        health.text().await.unwrap(),
        format!(
            "not polling: the Argos API budget for {today} (UTC), 3 calls (argos.daily_budget), \
             is spent; no call to Argos until 00:00 UTC\n"
        )
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
    assert!(
        metrics.contains("kyc_sentinel_api_budget_exhausted 1"),
        "{metrics}"
    );
    assert!(metrics.contains("kyc_sentinel_api_calls_refused_total"));
    tx.cancel();
    daemon.await.unwrap().unwrap();
    assert_eq!(sim.requests(), 3);
}

// Item 5: response size.

#[tokio::test]
async fn an_answer_over_max_response_bytes_is_an_error_naming_the_call() {
    let sim = sim(10).await;
    let mut cfg = config(&sim.base_url());
    cfg.max_response_bytes = 1024 * 1024;
    let c = ArgosClient::new(cfg).unwrap();
    sim.script_faults([Fault::Huge(64 * 1024 * 1024)]);
    let e = c.list_page(&ListQuery::default()).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "GET {}/v3/submission?count=50 answered more than 1048576 bytes \
             (argos.max_response_bytes): stopped reading; lower argos.page_size or raise the limit",
            sim.base_url()
        )
    );
    assert!(matches!(e, ArgosError::TooLarge { .. }) && !e.is_fatal());
    assert_eq!(
        c.calls_made(),
        1,
        "not retried: the same page would be as big"
    );
    // Under the cap the same kind of streamed answer is read (and is not JSON).
    sim.script_faults([
        Fault::Huge(512 * 1024),
        Fault::Huge(512 * 1024),
        Fault::Huge(512 * 1024),
    ]);
    let e = c.list_page(&ListQuery::default()).await.unwrap_err();
    assert!(
        matches!(e, ArgosError::NotJson { bytes: 524288, .. }),
        "{e}"
    );
}

/// A server announcing a 64 MiB answer and writing it as fast as the client
/// reads; the bytes it managed to write before the client hung up.
async fn huge_answer_server() -> (String, Arc<Mutex<Option<usize>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let written: Arc<Mutex<Option<usize>>> = Arc::default();
    let w = written.clone();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut head = vec![0u8; 8192];
        let _ = sock.read(&mut head).await;
        let total = 64 * 1024 * 1024;
        let header = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {total}\r\n\r\n"
        );
        sock.write_all(header.as_bytes()).await.unwrap();
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            match tokio::time::timeout(Duration::from_secs(3), sock.write_all(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len(),
                // Hung up, or stopped reading (the socket buffers are full).
                _ => break,
            }
        }
        *w.lock().unwrap() = Some(sent);
    });
    (url, written)
}

/// Item 5, by its effect: the client stops reading at the cap (the server
/// cannot push the whole answer), rather than reading it and then refusing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_answer_is_not_read_past_the_cap() {
    let (url, written) = huge_answer_server().await;
    let mut cfg = config(&url);
    cfg.max_response_bytes = 1024 * 1024;
    cfg.max_retries = 0;
    let c = ArgosClient::new(cfg).unwrap();
    let e = c.list_page(&ListQuery::default()).await.unwrap_err();
    assert!(matches!(e, ArgosError::TooLarge { .. }), "{e}");
    let start = std::time::Instant::now();
    let sent = loop {
        if let Some(n) = *written.lock().unwrap() {
            break n;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the server is still writing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // 1 MiB read, plus what the kernel's socket buffers hold on loopback.
    assert!(
        sent < 24 * 1024 * 1024,
        "the client read {sent} bytes of a 64 MiB answer with a 1 MiB cap"
    );
}

// Item 6: unreadable items.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_items_are_set_aside_and_the_rest_of_the_page_processed() {
    // The recorder, before anything is counted.
    kyc_sentinel::telemetry::metrics_handle();
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(15).await;
    let mut utf8 = br#"{"submission_id": "bad-utf8", "data": {"name": "Kim "#.to_vec();
    utf8.extend_from_slice(b"\xff\xfe\"}}");
    let nested = format!(
        r#"{{"submission_id": "bad-nesting", "x": {}"secret-deep"{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let bad = vec![
        br#"{"submission_id": "bad-number", "email": "kim@example.com", "kyc": {"score": 1e400}}"#
            .to_vec(),
        utf8,
        nested.into_bytes(),
        br#"{"nested": {"submission_id": "inner"}, "v": -1E999}"#.to_vec(),
    ];
    let cfg = write_engine_config(dir.path(), &sim.base_url(), "", 0);
    let mut engine = Engine::build(&cfg).await.unwrap();
    let mut poller = Poller::new(engine.client.clone(), cfg.poll.clone(), 0);
    let day = Utc::now().date_naive();
    // The same bad items on two polls: audited once. Scripted for every
    // attempt of a poll (max_retries: 1, two attempts), as on a real server
    // where a bad item stays in its day: a client that fails the page and
    // retries must meet them again (with one scripted fault, 87103d5's retry
    // got a clean page and never showed the day blocked).
    for _ in 0..2 {
        sim.script_faults([Fault::BadItems(bad.clone()), Fault::BadItems(bad.clone())]);
        let mut report = PollReport::default();
        poller
            .poll_day(&mut engine.pipeline, day, &mut report)
            .await
            .unwrap();
        assert_eq!(report.batch.unreadable, 4);
        assert_eq!(report.batch.received, 19);
    }
    let subs = sim.submissions();
    let ids: Vec<&str> = subs
        .iter()
        .map(|s| s["submission_id"].as_str().unwrap())
        .collect();
    let stored = engine.store.submissions_raw(&ids).await.unwrap();
    assert_eq!(
        stored.len(),
        15,
        "every good item of the page was processed"
    );
    for (id, problem) in [
        ("bad-number", "a number out of range at byte 77 of the item"),
        ("bad-utf8", "invalid UTF-8 at byte 52 of the item"),
        ("bad-nesting", "nested 201 levels deep (the limit is 127)"),
    ] {
        let rows = engine.store.audit_for_submission(id).await.unwrap();
        assert_eq!(rows.len(), 1, "{id}: {rows:?}");
        assert_eq!(rows[0].kind, "unreadable_item");
        assert_eq!(
            rows[0].detail,
            json!({"origin": format!("list of {day}"), "item": rows[0].detail["item"], "problem": problem})
        );
    }
    let all = engine
        .store
        .audit_between(Utc::now() - chrono::Duration::hours(1), Utc::now())
        .await
        .unwrap();
    let text = serde_json::to_string(&all).unwrap();
    for content in ["kim@example.com", "Kim", "secret-deep", "1e400", "inner"] {
        assert!(!text.contains(content), "{content} in the audit log");
    }
    assert_eq!(
        all.iter().filter(|r| r.kind == "unreadable_item").count(),
        4
    );
    let metrics = kyc_sentinel::telemetry::metrics_handle().render();
    assert!(metrics.contains("kyc_sentinel_unreadable_items_total"));
}

// Item 7: redirects.

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<HeaderMap>>>);

#[tokio::test]
async fn a_redirect_is_not_followed_and_names_only_the_status() {
    let seen = Seen::default();
    let elsewhere = serve(
        axum::Router::new()
            .fallback(|State(s): State<Seen>, h: HeaderMap| async move {
                s.0.lock().unwrap().push(h);
                axum::Json(json!({"Items": []}))
            })
            .with_state(seen.clone()),
    )
    .await;
    let sim = sim(10).await;
    let c = ArgosClient::new(config(&sim.base_url())).unwrap();
    for status in [301, 302, 307, 308] {
        sim.script_faults([Fault::Redirect {
            status,
            location: format!("http://{elsewhere}/v3/submission?token=s3cr3t-path"),
        }]);
        let e = c.list_page(&ListQuery::default()).await.unwrap_err();
        let text = e.to_string();
        assert_eq!(
            text,
            format!(
                "GET {}/v3/submission?count=50 answered HTTP {status}, a redirect, which the client \
                 never follows (the API key would go to another address): set argos.base_url to the \
                 address that answers itself; the redirect's target is not shown",
                sim.base_url()
            )
        );
        assert!(!text.contains("s3cr3t") && !text.contains(&elsewhere.to_string()));
        assert!(e.is_fatal());
    }
    assert_eq!(c.calls_made(), 4, "a redirect is not retried");
    assert!(seen.0.lock().unwrap().is_empty(), "the key never left");

    // And no Referer on a plain call.
    let direct = ArgosClient::new(config(&format!("http://{elsewhere}"))).unwrap();
    direct.list_page(&ListQuery::default()).await.unwrap();
    let got = seen.0.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert!(got[0].get("referer").is_none());
}

// Item 8: no body content in errors.

#[tokio::test]
async fn errors_about_bodies_give_status_length_and_position_never_content() {
    const PII: &str = r#"{"Items": [{"submission_id": "s-1", "email": "kim@example.com", "data": {"identityNumber": "900101-1234567"}}]"#;
    let app = axum::Router::new()
        .route(
            "/e500/v3/submission",
            axum::routing::get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, PII) }),
        )
        .route(
            "/e400/v3/submission",
            axum::routing::get(|| async { (StatusCode::BAD_REQUEST, PII) }),
        )
        .route(
            "/cut/v3/submission",
            axum::routing::get(|| async { (StatusCode::OK, PII) }),
        )
        .route(
            "/shape/v3/submission/applicant",
            axum::routing::get(|| async {
                (StatusCode::OK, r#"[{"submission_id": ["900101-1234567"]}]"#)
            }),
        );
    let addr = serve(app).await;
    let client = |path: &str| {
        let mut c = config(&format!("http://{addr}/{path}"));
        c.max_retries = 0;
        ArgosClient::new(c).unwrap()
    };
    let n = PII.len();
    let cases: Vec<(ArgosError, String)> = vec![
        (
            client("e500")
                .list_page(&ListQuery::default())
                .await
                .unwrap_err(),
            format!(
                "GET http://{addr}/e500/v3/submission?count=50 failed with HTTP 500 after 1 attempt(s) ({n} bytes, not shown)"
            ),
        ),
        (
            client("e400")
                .list_page(&ListQuery::default())
                .await
                .unwrap_err(),
            format!(
                "Argos rejected the request as invalid (HTTP 400) for GET http://{addr}/e400/v3/submission?count=50 with parameters [count=50] ({n} bytes, not shown)"
            ),
        ),
        (
            client("cut")
                .list_page(&ListQuery::default())
                .await
                .unwrap_err(),
            format!(
                "GET http://{addr}/cut/v3/submission?count=50 answered a body that is not valid JSON after 1 attempt(s): the body ends inside the object at byte {n} (the body has {n} bytes; its content is not shown)"
            ),
        ),
        (
            client("shape").applicant("a-1").await.unwrap_err(),
            format!(
                "GET http://{addr}/shape/v3/submission/applicant?applicant_id=a-1 answered JSON of an unexpected shape: expected an array of {{submission_id, email}}: a value of an unexpected type"
            ),
        ),
    ];
    for (e, want) in cases {
        let text = e.to_string();
        assert_eq!(text, want);
        for pii in ["kim@example.com", "900101", "identityNumber", "s-1"] {
            assert!(
                !text.contains(pii) && !format!("{e:?}").contains(pii),
                "{pii} in {text}"
            );
        }
    }
}

// Issue 15 item 15: the date format.

#[tokio::test]
async fn a_refused_date_format_is_swapped_once_and_kept() {
    let sim = sim(40).await;
    sim.set_date_format(DateFormat::Iso);
    let c = ArgosClient::new(config(&sim.base_url())).unwrap();
    assert_eq!(c.date_format(), DateFormat::Compact);
    let day = Utc::now().date_naive();
    let q = ListQuery {
        start_date: Some(day),
        end_date: Some(day),
        count: Some(100),
        ..Default::default()
    };
    let page = c.list_page(&q).await.unwrap();
    assert_eq!(page.items.len(), 40);
    assert_eq!(sim.requests(), 2, "one refused compact call, one iso call");
    assert_eq!(c.date_format(), DateFormat::Iso);
    c.list_page(&q).await.unwrap();
    assert_eq!(sim.requests(), 3, "iso kept: no refused call any more");

    // Configured iso against a compact account: the same, the other way.
    sim.set_date_format(DateFormat::Compact);
    let mut cfg = config(&sim.base_url());
    cfg.date_format = DateFormat::Iso;
    let c = ArgosClient::new(cfg).unwrap();
    c.list_page(&q).await.unwrap();
    assert_eq!(c.date_format(), DateFormat::Compact);
    assert_eq!(sim.requests(), 5);

    // A 400 that is not about dates is not tried twice.
    let bad = ListQuery {
        count: Some(0),
        ..q.clone()
    };
    let e = c.list_page(&bad).await.unwrap_err();
    assert!(e.is_fatal());
    assert_eq!(
        sim.requests(),
        7,
        "a date query is tried in both formats, once each"
    );
    let e2 = c
        .list_page(&ListQuery {
            count: Some(0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(e2, ArgosError::BadRequest { .. }));
    assert_eq!(sim.requests(), 8, "no dates: no second format");
    assert_eq!(c.date_format(), DateFormat::Compact);
}

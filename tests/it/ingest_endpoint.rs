//! The webhook endpoint over real HTTP on 127.0.0.1: what it accepts, what it
//! refuses with which status and reason, what it counts, and that thousands
//! of random bodies never crash it.

use std::time::Duration;

use kyc_sentinel::argos::crypto::{AesEcb, Cipher};
use kyc_sentinel::config::{Dur, IngestConfig};
use kyc_sentinel::ingest::guard::{ByteSize, IpRange};
use kyc_sentinel::ingest::{Hint, IngestServer, IngestStats};
use rand::{Rng, SeedableRng};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "tok-0123456789abcdef";

fn config() -> IngestConfig {
    IngestConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: SecretString::from(TOKEN),
        allow_ips: vec![],
        max_body: ByteSize(4096),
        rate_limit_per_sec: 100_000,
        replay_window: Dur(Duration::from_secs(600)),
        queue_capacity: 10_000,
        fetch_concurrency: 4,
        catch_up: true,
    }
}

struct Endpoint {
    server: IngestServer,
    hints: mpsc::Receiver<Hint>,
    http: reqwest::Client,
    _stop: tokio_util::sync::DropGuard,
}

impl Endpoint {
    async fn start(cfg: IngestConfig) -> Endpoint {
        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        let stop = CancellationToken::new();
        let stop_rx = stop.clone();
        let cipher: Box<dyn Cipher> =
            Box::new(AesEcb::from_api_key(&SecretString::from("sim-key")));
        let server = IngestServer::start(cfg, Some(cipher), tx, stop_rx)
            .await
            .unwrap();
        Endpoint {
            server,
            hints: rx,
            http: kyc_sentinel::util::http_client()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            _stop: stop.drop_guard(),
        }
    }

    fn url(&self, token: &str) -> String {
        format!("http://{}/argos/webhook/{token}", self.server.addr())
    }

    async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(TOKEN))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        (status, v)
    }

    fn stats(&self) -> IngestStats {
        self.server.counters().snapshot()
    }
}

fn event(trigger: &str, id: &str) -> String {
    json!({"webhook_trigger": trigger, "submission_id": id, "email": "a@example.com",
        "cf": {}, "kyc_result": {"status": "approved"}})
    .to_string()
}

#[tokio::test]
async fn accepts_plain_and_encrypted_and_queues_a_hint() {
    let mut ep = Endpoint::start(config()).await;
    let (s, v) = ep.post(event("approved", "sub-1")).await;
    assert_eq!((s, v), (200, json!({"status": "queued"})));
    let h = ep.hints.try_recv().unwrap();
    assert_eq!(h.submission_id, "sub-1");
    assert_eq!(h.trigger.as_str(), "approved");

    let c = AesEcb::from_api_key(&SecretString::from("sim-key"));
    let enc = json!({"data": c.encrypt(event("aml", "sub-2").as_bytes())}).to_string();
    assert_eq!(ep.post(enc).await.0, 200);
    assert_eq!(ep.hints.try_recv().unwrap().submission_id, "sub-2");

    // The token may travel in a header instead of the path.
    let r = ep
        .http
        .post(format!("http://{}/argos/webhook", ep.server.addr()))
        .header("X-Sentinel-Token", TOKEN)
        .body(event("created", "sub-3"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(ep.hints.try_recv().unwrap().submission_id, "sub-3");
    let st = ep.stats();
    assert_eq!((st.requests, st.queued, st.encrypted), (3, 3, 1));
}

#[tokio::test]
async fn refusals_have_the_right_status_reason_and_counter() {
    let mut ep = Endpoint::start(config()).await;
    // Malformed bodies: 400 with the reason.
    let cases = [
        ("", "body is empty"),
        (
            "{not json",
            "body is not JSON: key must be a string at line 1 column 2",
        ),
        ("[]", "body is not a JSON object"),
        (
            r#"{"submission_id": "s"}"#,
            "field `webhook_trigger` is missing",
        ),
        (
            r#"{"webhook_trigger": "approved", "submission_id": "a b"}"#,
            "field `submission_id` is not a plausible id (1 to 128 visible ASCII characters)",
        ),
        (
            r#"{"data": "bm90IGVuY3J5cHRlZA=="}"#,
            "encrypted body: encrypted data does not decrypt with this API key (wrong key, or bad padding); check that the key matches the account",
        ),
    ];
    for (body, reason) in cases {
        let (s, v) = ep.post(body).await;
        assert_eq!((s, v), (400, json!({ "error": reason })), "body {body:?}");
    }
    // Oversized: declared length, and a streamed body without one.
    let (s, v) = ep.post("x".repeat(5000)).await;
    assert_eq!(
        (s, v),
        (
            413,
            json!({"error": "body larger than 4096 bytes (ingest.max_body)"})
        )
    );
    let chunks: Vec<Result<String, std::io::Error>> =
        (0..10).map(|_| Ok("y".repeat(1000))).collect();
    let streamed = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    assert_eq!(ep.post(streamed).await.0, 413);
    // Unauthenticated: a wrong path token looks like any unknown path; a
    // missing header token says what is missing.
    let r = ep
        .http
        .post(ep.url("tok-0123456789abcdeX"))
        .body(event("approved", "s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = ep
        .http
        .post(format!("http://{}/argos/webhook", ep.server.addr()))
        .body(event("approved", "s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "missing or wrong token (URL path or X-Sentinel-Token header)"})
    );
    // Replayed: answered 200 (so a retrying sender stops) but not queued again.
    let body = event("rejected", "sub-9");
    assert_eq!(
        ep.post(body.clone()).await,
        (200, json!({"status": "queued"}))
    );
    assert_eq!(
        ep.post(body).await,
        (
            200,
            json!({"status": "ignored", "reason": "replay: the same body was received recently"})
        )
    );
    assert_eq!(ep.hints.try_recv().unwrap().submission_id, "sub-9");
    assert!(ep.hints.try_recv().is_err(), "the replay queued nothing");

    assert_eq!(
        ep.stats(),
        IngestStats {
            requests: 12,
            queued: 1,
            replayed: 1,
            bad_body: 6,
            unauthenticated: 2,
            too_large: 2,
            ..IngestStats::default()
        }
    );
}

#[tokio::test]
async fn allow_list_rate_limit_and_full_queue() {
    let ep = Endpoint::start(IngestConfig {
        allow_ips: vec![IpRange::parse("10.0.0.0/8").unwrap()],
        ..config()
    })
    .await;
    let (s, v) = ep.post(event("approved", "s")).await;
    assert_eq!(
        (s, v),
        (
            403,
            json!({"error": "address not allowed (ingest.allow_ips)"})
        )
    );
    assert_eq!(ep.stats().forbidden_ip, 1);

    let ep = Endpoint::start(IngestConfig {
        rate_limit_per_sec: 5,
        ..config()
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..20 {
        statuses.push(ep.post(event("approved", &format!("r-{i}"))).await.0);
    }
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        (10..=15).contains(&limited),
        "a burst of 20 at 5/s: about 15 refused, got {statuses:?}"
    );
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429));
    assert_eq!(ep.stats().rate_limited, limited as u64);

    // Nobody takes hints: the queue (capacity 2) fills, then 503, and the
    // refused body is not remembered, so its retry is accepted later.
    let mut ep = Endpoint::start(IngestConfig {
        queue_capacity: 2,
        ..config()
    })
    .await;
    assert_eq!(ep.post(event("approved", "q-1")).await.0, 200);
    assert_eq!(ep.post(event("approved", "q-2")).await.0, 200);
    assert_eq!(ep.post(event("approved", "q-3")).await.0, 503);
    ep.hints.recv().await.unwrap();
    assert_eq!(
        ep.post(event("approved", "q-3")).await,
        (200, json!({"status": "queued"}))
    );
    assert_eq!(ep.stats().queue_full, 1);
}

/// Random bodies: bytes, truncated and mutated events, deep nesting, huge
/// strings, wrong types. Every answer is 2xx or 4xx, the counters add up, and
/// the endpoint still accepts a good event afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_thousands_of_random_bodies() {
    let mut ep = Endpoint::start(config()).await;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let c = AesEcb::from_api_key(&SecretString::from("sim-key"));
    let n = 3000;
    let mut by_status = std::collections::BTreeMap::new();
    let bodies: Vec<Vec<u8>> = (0..n).map(|i| random_body(&mut rng, &c, i)).collect();
    let results = futures::future::join_all(bodies.chunks(n / 8).map(|chunk| {
        let http = ep.http.clone();
        let url = ep.url(TOKEN);
        let chunk = chunk.to_vec();
        async move {
            let mut out = Vec::new();
            for b in chunk {
                let r = http.post(&url).body(b).send().await.expect("an answer");
                out.push(r.status().as_u16());
            }
            out
        }
    }))
    .await;
    for s in results.into_iter().flatten() {
        assert!(
            (200..300).contains(&s) || (400..500).contains(&s),
            "status {s}"
        );
        *by_status.entry(s).or_insert(0u64) += 1;
    }
    let st = ep.stats();
    assert_eq!(st.requests, n as u64);
    assert_eq!(
        st.queued + st.replayed + st.bad_body + st.too_large,
        n as u64,
        "every request counted once: {st:?}"
    );
    assert_eq!(by_status.get(&413).copied().unwrap_or(0), st.too_large);
    assert!(
        st.bad_body > 1000 && st.queued > 100 && st.too_large > 10,
        "{st:?}"
    );
    eprintln!("fuzz: {by_status:?} {st:?}");
    while ep.hints.try_recv().is_ok() {}
    assert_eq!(ep.post(event("approved", "after-fuzz")).await.0, 200);
    assert_eq!(ep.hints.recv().await.unwrap().submission_id, "after-fuzz");
}

fn random_body(rng: &mut impl Rng, c: &AesEcb, i: usize) -> Vec<u8> {
    let good = event(
        ["created", "approved", "rejected", "aml", "weird"][rng.random_range(0..5)],
        &format!("f-{i}"),
    );
    match rng.random_range(0..9) {
        0 => (0..rng.random_range(0..300))
            .map(|_| rng.random())
            .collect(),
        1 => good.as_bytes()[..rng.random_range(0..good.len())].to_vec(),
        2 => {
            let mut b = good.into_bytes();
            for _ in 0..rng.random_range(1..5) {
                let j = rng.random_range(0..b.len());
                b[j] = rng.random();
            }
            b
        }
        3 => {
            let depth = rng.random_range(1..3000);
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
        }
        4 => "z".repeat(rng.random_range(3000..9000)).into_bytes(),
        5 => {
            let v = [
                json!(null),
                json!(1),
                json!("s"),
                json!({"webhook_trigger": [1]}),
                json!({"webhook_trigger": "x", "submission_id": {"a": 1}}),
                json!({"webhook_trigger": "x", "submission_id": "ok", "kyc_result": 5}),
                json!({"data": 12}),
                json!({"data": "!!notbase64"}),
            ];
            v[rng.random_range(0..v.len())].to_string().into_bytes()
        }
        6 => {
            let mut plain: Vec<u8> = good.into_bytes();
            if rng.random_bool(0.5) {
                plain.truncate(plain.len() / 2);
            }
            json!({"data": c.encrypt(&plain)}).to_string().into_bytes()
        }
        7 => {
            // Valid JSON with odd unicode and escapes in the id.
            let id: String = (0..rng.random_range(0..40))
                .map(|_| char::from_u32(rng.random_range(0..0x2FFF)).unwrap_or('?'))
                .collect();
            json!({"webhook_trigger": "updated", "submission_id": id})
                .to_string()
                .into_bytes()
        }
        _ => good.into_bytes(),
    }
}

//! The Argos client against the simulator over real HTTP on 127.0.0.1:
//! pagination, every filter, the applicant lookup, encrypted mode, and each
//! fault with its behaviour and exact error text.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use futures::TryStreamExt;
use kyc_sentinel::argos::model::parse_timestamp;
use kyc_sentinel::argos::{
    ArgosClient, ArgosError, ClientConfig, ListQuery, Page, RawPage, RequestType,
};
use kyc_sentinel::simulator::{Fault, SimConfig, SimHandle, Simulator};
use secrecy::SecretString;
use serde_json::Value;

const KEY: &str = "test-key-123";

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 3, 12, 0, 0).unwrap()
}

async fn sim(submissions: usize, encrypted: bool) -> SimHandle {
    Simulator::start(SimConfig {
        seed: 1,
        submissions,
        api_key: KEY.into(),
        encrypted,
        base_time: Some(base_time()),
        backlog_span: Some(Duration::from_secs(3 * 86_400)),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn config(sim: &SimHandle, key: &str) -> ClientConfig {
    let mut c = ClientConfig::new(sim.base_url(), SecretString::from(key.to_owned()));
    c.retry_base_delay = Duration::from_millis(10);
    c.retry_max_delay = Duration::from_millis(40);
    c.max_retries = 3;
    // Generous, so a loaded CI machine does not turn normal answers into timeouts.
    c.timeout = Duration::from_secs(2);
    c.rate_limit_per_sec = 1000;
    c
}

fn client(sim: &SimHandle) -> ArgosClient {
    ArgosClient::new(config(sim, KEY)).unwrap()
}

async fn all_items(c: &ArgosClient, q: ListQuery) -> Vec<Value> {
    let pages: Vec<Page> = c.list_all(q).try_collect().await.unwrap();
    pages.into_iter().flat_map(|p| p.items).collect()
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|v| v["submission_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn full_pagination_yields_every_submission_once() {
    let sim = sim(500, false).await;
    let c = client(&sim);
    let first = c.list_page(&ListQuery::default()).await.unwrap();
    assert_eq!(first.items.len(), 50);
    let last = &first.items[49];
    assert_eq!(
        first
            .next
            .as_ref()
            .map(|k| (k.id.as_str(), k.created_at.as_str())),
        Some((
            last["submission_id"].as_str().unwrap(),
            last["created_at"].as_str().unwrap()
        ))
    );
    let items = all_items(&c, ListQuery::default()).await;
    let got = ids(&items);
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(got.len(), 500);
    assert_eq!(unique.len(), 500);
    let expected: HashSet<String> = ids(&sim.submissions()).into_iter().collect();
    assert_eq!(
        unique.into_iter().cloned().collect::<HashSet<_>>(),
        expected
    );
    // Newest first across pages.
    let times: Vec<_> = items
        .iter()
        .map(|v| parse_timestamp(v["created_at"].as_str().unwrap()).unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]));
    // 1 + 10 pages, every attempt counted.
    assert_eq!(c.calls_made(), 11);
    assert_eq!(sim.requests(), 11);
}

#[tokio::test]
async fn filters_userid_email_dates_and_request_type() {
    let sim = sim(400, false).await;
    let c = client(&sim);
    let subs = sim.submissions();

    // userid: the one with the most submissions (repeat offenders share one).
    let mut by_user: HashMap<&str, usize> = HashMap::new();
    for s in &subs {
        if let Some(u) = s["userid"].as_str() {
            *by_user.entry(u).or_default() += 1;
        }
    }
    let (user, n) = by_user.iter().max_by_key(|(u, n)| (**n, **u)).unwrap();
    assert!(*n >= 2, "the generator repeats userids");
    let q = ListQuery {
        userid: Some(user.to_string()),
        count: Some(1),
        ..Default::default()
    };
    let items = all_items(&c, q).await;
    assert_eq!(items.len(), *n);
    assert!(items.iter().all(|v| v["userid"] == *user));

    // email
    let email = subs[17]["email"].as_str().unwrap();
    let expected = subs.iter().filter(|s| s["email"] == email).count();
    let items = all_items(
        &c,
        ListQuery {
            email: Some(email.into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(items.len(), expected);
    assert!(items.iter().all(|v| v["email"] == email));

    // dates: one inclusive UTC day on created_at
    let day = NaiveDate::from_ymd_opt(2025, 6, 1).unwrap();
    let on_day = |v: &Value| {
        parse_timestamp(v["created_at"].as_str().unwrap())
            .unwrap()
            .date_naive()
            == day
    };
    let expected = subs.iter().filter(|s| on_day(s)).count();
    assert!(expected > 50 && expected < 200, "{expected}");
    let items = all_items(
        &c,
        ListQuery {
            start_date: Some(day),
            end_date: Some(day),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(items.len(), expected);
    assert!(items.iter().all(on_day));
    let items = all_items(
        &c,
        ListQuery {
            start_date: Some(day),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        items.len(),
        subs.iter()
            .filter(|s| parse_timestamp(s["created_at"].as_str().unwrap())
                .unwrap()
                .date_naive()
                >= day)
            .count()
    );

    // request_type projections
    let one = ListQuery {
        count: Some(5),
        request_type: Some(RequestType::Kyc),
        ..Default::default()
    };
    let page = c.list_page(&one).await.unwrap();
    for v in &page.items {
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["submission_id", "kyc"]);
    }
    for (rt, part) in [(RequestType::Aml, "aml"), (RequestType::Data, "data")] {
        let page = c
            .list_page(&ListQuery {
                count: Some(5),
                request_type: Some(rt),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(
            page.items
                .iter()
                .all(|v| v.as_object().unwrap().len() == 2 && v.get(part).is_some())
        );
    }
    let page = c
        .list_page(&ListQuery {
            count: Some(5),
            request_type: Some(RequestType::Others),
            ..Default::default()
        })
        .await
        .unwrap();
    for v in &page.items {
        let o = v.as_object().unwrap();
        assert!(o.get("kyc").is_none() && o.get("aml").is_none() && o.get("data").is_none());
        assert!(o.get("email").is_some() && o.get("created_at").is_some());
    }
}

#[tokio::test]
async fn get_submission_and_applicant_lookup() {
    let sim = sim(300, false).await;
    let c = client(&sim);
    let subs = sim.submissions();
    let id = subs[42]["submission_id"].as_str().unwrap();
    assert_eq!(
        c.get_submission(id).await.unwrap().as_ref(),
        Some(&subs[42])
    );
    assert_eq!(c.get_submission("NO-SUCH-ID").await.unwrap(), None);

    // An applicant_id shared by several emails.
    let mut by_app: HashMap<&str, Vec<&Value>> = HashMap::new();
    for s in &subs {
        by_app
            .entry(s["applicant_id"].as_str().unwrap())
            .or_default()
            .push(s);
    }
    let (app, members) = by_app
        .iter()
        .filter(|(_, m)| m.iter().map(|s| &s["email"]).collect::<HashSet<_>>().len() > 1)
        .min_by_key(|(a, _)| **a)
        .expect("a shared applicant_id");
    let entries = c.applicant(app).await.unwrap();
    let got: HashSet<(String, String)> = entries
        .iter()
        .map(|e| (e.submission_id.clone().unwrap(), e.email.clone().unwrap()))
        .collect();
    let want: HashSet<(String, String)> = members
        .iter()
        .map(|s| {
            (
                s["submission_id"].as_str().unwrap().into(),
                s["email"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert!(c.applicant("nobody").await.unwrap().is_empty());
}

#[tokio::test]
async fn encrypted_mode_end_to_end() {
    let sim = sim(120, true).await;
    let mut cfg = config(&sim, KEY);
    cfg.encrypted = true;
    let c = ArgosClient::new(cfg).unwrap();
    let items = all_items(&c, ListQuery::default()).await;
    assert_eq!(items.len(), 120);
    let email = items[3]["email"].as_str().unwrap().to_owned();
    let filtered = all_items(
        &c,
        ListQuery {
            email: Some(email.clone()),
            ..Default::default()
        },
    )
    .await;
    assert!(!filtered.is_empty() && filtered.iter().all(|v| v["email"] == email.as_str()));
    let app = items[0]["applicant_id"].as_str().unwrap();
    assert!(!c.applicant(app).await.unwrap().is_empty());

    // A client without encrypted mode is told what to change.
    let plain = client(&sim);
    let e = plain.list_page(&ListQuery::default()).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "Argos rejected the request as invalid (HTTP 400) for GET {}/v3/submission?count=50 with parameters [count=50] ({} bytes, not shown)",
            sim.base_url(),
            r#"{"message":"Invalid Query String parameters","detail":"encrypted mode: send the query as the `data` parameter"}"#.len()
        )
    );
    assert!(e.is_fatal());
}

#[tokio::test]
async fn fault_429_honours_retry_after() {
    let sim = sim(60, false).await;
    let c = client(&sim);
    sim.script_faults([Fault::TooManyRequests {
        retry_after: Some(1),
    }]);
    let t = Instant::now();
    let page = c.list_page(&ListQuery::default()).await.unwrap();
    assert_eq!(page.items.len(), 50);
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(c.calls_made(), 2);
}

#[tokio::test]
async fn fault_503_twice_then_success() {
    let sim = sim(60, false).await;
    let c = client(&sim);
    sim.script_faults([Fault::Status(503), Fault::Status(503)]);
    let page = c.list_page(&ListQuery::default()).await.unwrap();
    assert_eq!(page.items.len(), 50);
    assert_eq!(c.calls_made(), 3);
    assert_eq!(sim.requests(), 3);
}

#[tokio::test]
async fn fault_5xx_until_retries_run_out() {
    let sim = sim(10, false).await;
    let c = client(&sim);
    sim.script_faults([502, 503, 504, 500].map(Fault::Status));
    let e = c.list_page(&ListQuery::default()).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "GET {}/v3/submission?count=50 failed with HTTP 500 after 4 attempt(s) ({} bytes, not shown)",
            sim.base_url(),
            r#"{"message":"Internal Server Error"}"#.len()
        )
    );
    assert!(!e.is_fatal());
    assert_eq!(c.calls_made(), 4);
}

/// `backfill` reads pages with the submissions kept as text: the same
/// submissions, in the same order, as the parsed pages, plain and encrypted.
#[tokio::test]
async fn raw_pages_carry_the_same_submissions_plain_and_encrypted() {
    for encrypted in [false, true] {
        let sim = sim(230, encrypted).await;
        let mut cfg = config(&sim, KEY);
        cfg.encrypted = encrypted;
        let c = ArgosClient::new(cfg).unwrap();
        let parsed = all_items(&c, ListQuery::default()).await;
        let pages: Vec<RawPage> = c
            .list_all_raw(ListQuery::default())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(pages.len(), 5, "encrypted: {encrypted}");
        let raw: Vec<Value> = pages
            .iter()
            .flat_map(|p| &p.items)
            .map(|r| serde_json::from_str(r.get()).unwrap())
            .collect();
        assert_eq!(raw.len(), 230);
        assert_eq!(raw, parsed, "encrypted: {encrypted}");
    }
    // A truncated raw page is retried like a parsed one.
    let sim = sim(60, false).await;
    let c = client(&sim);
    sim.script_faults([Fault::Truncated]);
    let page = c.list_page_raw(&ListQuery::default()).await.unwrap();
    assert_eq!(page.items.len(), 50);
    assert_eq!(c.calls_made(), 2);
}

#[tokio::test]
async fn fault_truncated_body_is_retried_then_reported() {
    let sim = sim(60, false).await;
    let c = client(&sim);
    sim.script_faults([Fault::Truncated]);
    let page = c.list_page(&ListQuery::default()).await.unwrap();
    assert_eq!(page.items.len(), 50);
    assert_eq!(c.calls_made(), 2);

    // Without retries the error names the URL and the first bytes.
    let mut cfg = config(&sim, KEY);
    cfg.max_retries = 0;
    let once = ArgosClient::new(cfg).unwrap();
    let q = ListQuery {
        count: Some(2),
        ..Default::default()
    };
    let full = serde_json::to_vec(&serde_json::json!({
        "Items": once.list_page(&q).await.unwrap().items,
        "nextpageKey": once.list_page(&q).await.unwrap().next,
    }))
    .unwrap();
    let half = &full[..full.len() / 2];
    sim.script_faults([Fault::Truncated]);
    let e = once.list_page(&q).await.unwrap_err();
    assert!(matches!(e, ArgosError::NotJson { .. }));
    // Where it broke and how long the body is, never what it said.
    let text = e.to_string();
    let head = format!(
        "GET {}/v3/submission?count=2 answered a body that is not valid JSON after 1 attempt(s): the body ends inside ",
        sim.base_url()
    );
    let tail = format!(
        " at byte {n} (the body has {n} bytes; its content is not shown)",
        n = half.len()
    );
    assert!(text.starts_with(&head) && text.ends_with(&tail), "{text}");
    let first: Value = serde_json::from_slice(&full).unwrap();
    let email = first["Items"][0]["email"].as_str().unwrap();
    assert!(!text.contains(email), "{text}");
    assert!(!e.is_fatal());
}

#[tokio::test]
async fn fault_slow_answer_times_out_and_is_retried() {
    let sim = sim(60, false).await;
    let c = client(&sim);
    sim.script_faults([Fault::Slow(Duration::from_secs(3))]);
    let page = c.list_page(&ListQuery::default()).await.unwrap();
    assert_eq!(page.items.len(), 50);
    assert_eq!(c.calls_made(), 2);
}

#[tokio::test]
async fn wrong_key_is_fatal_and_never_printed() {
    let sim = sim(10, false).await;
    let c = ArgosClient::new(config(&sim, "wrong-secret-key")).unwrap();
    let e = c.list_page(&ListQuery::default()).await.unwrap_err();
    let text = e.to_string();
    assert_eq!(
        text,
        format!(
            "Argos refused the API key (HTTP 403) for GET {}/v3/submission?count=50: check the API key (configuration or ARGOS_API_KEY) and the IP allow-list of the account; the key is not shown",
            sim.base_url()
        )
    );
    assert!(!text.contains("wrong-secret-key") && !format!("{e:?}").contains("wrong-secret-key"));
    assert!(!format!("{c:?}").contains("wrong-secret-key"));
    assert!(e.is_fatal());
    assert_eq!(c.calls_made(), 1, "403 is not retried");
}

#[tokio::test]
async fn bad_request_names_the_parameters() {
    let sim = sim(10, false).await;
    let c = client(&sim);
    let q = ListQuery {
        email: Some("a@b.c".into()),
        count: Some(0),
        ..Default::default()
    };
    let e = c.list_page(&q).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "Argos rejected the request as invalid (HTTP 400) for GET {}/v3/submission?email=a%40b.c&count=0 with parameters [email=a@b.c, count=0] ({} bytes, not shown)",
            sim.base_url(),
            r#"{"message":"Invalid Query String parameters","detail":"count must be a positive number, got `0`"}"#.len()
        )
    );
    assert!(e.is_fatal());
    assert_eq!(c.calls_made(), 1);
}

#[tokio::test]
async fn connection_refused_is_transient_and_counted() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut cfg = ClientConfig::new(format!("http://{addr}"), SecretString::from(KEY));
    cfg.retry_base_delay = Duration::from_millis(5);
    cfg.max_retries = 2;
    let c = ArgosClient::new(cfg).unwrap();
    let e = c.list_page(&ListQuery::default()).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "GET http://{addr}/v3/submission?count=50 failed after 3 attempt(s): cannot connect: "
        )),
        "{text}"
    );
    assert!(!e.is_fatal());
    assert_eq!(c.calls_made(), 3);
}

/// A server that always answers the same `nextpageKey`: the stream must stop
/// with an error instead of looping.
#[tokio::test]
async fn repeated_page_key_stops_the_stream() {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/v3/submission",
        get(|| async {
            axum::Json(serde_json::json!({
                "Items": [{"submission_id": "x"}],
                "nextpageKey": {"id": "x", "created_at": "2025-01-01-00-00-00-000"}
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let c = ArgosClient::new(ClientConfig::new(
        format!("http://{addr}"),
        SecretString::from(KEY),
    ))
    .unwrap();
    let results: Vec<Result<Page, ArgosError>> =
        futures::StreamExt::collect(c.list_all(ListQuery::default())).await;
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    assert_eq!(
        results[1].as_ref().unwrap_err().to_string(),
        format!(
            "pagination loop while listing the submission list: page 2 (GET http://{addr}/v3/submission?count=50&nextpage_id=x&nextpage_date=2025-01-01-00-00-00-000) returned a nextpageKey already seen; stopped there"
        )
    );
}

#[tokio::test]
async fn client_side_rate_limit_spaces_calls() {
    let sim = sim(5, false).await;
    let mut cfg = config(&sim, KEY);
    cfg.rate_limit_per_sec = 20;
    let c = ArgosClient::new(cfg).unwrap();
    let t = Instant::now();
    for _ in 0..30 {
        assert_eq!(c.get_submission("none").await.unwrap(), None);
    }
    // A burst of 20, then one call every 50ms.
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(c.calls_made(), 30);
}

/// With a random 30% of requests faulty (seeded), the client still reads
/// every submission exactly once, paying for it in extra calls.
#[tokio::test]
async fn random_faults_are_absorbed_by_retries() {
    let sim = sim(300, false).await;
    sim.set_faults(kyc_sentinel::simulator::FaultConfig {
        rate: 0.3,
        slow_delay: Duration::from_millis(2500),
        retry_after_secs: 0,
    });
    let mut cfg = config(&sim, KEY);
    cfg.max_retries = 8;
    let c = ArgosClient::new(cfg).unwrap();
    let items = all_items(&c, ListQuery::default()).await;
    let unique: HashSet<String> = ids(&items).into_iter().collect();
    assert_eq!((items.len(), unique.len()), (300, 300));
    assert!(
        c.calls_made() > 6,
        "6 pages, some retried: {}",
        c.calls_made()
    );
    assert_eq!(c.calls_made(), sim.requests());
}

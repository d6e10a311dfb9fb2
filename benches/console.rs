//! Issue 17's console figure: with 100,000 alerts in the store, the inbox and
//! an alert page render in under 200 ms at p95 server time.
//!
//! Seeds a fresh SQLite store (alerts with their decision records, states,
//! assignees, notifications), builds the daemon's API and console router as
//! `run` does, and times requests through it in process (the server's time,
//! without the network): inbox pages under assorted filters and alert pages
//! of random alerts, as a signed-in analyst.
//!
//! `cargo bench --bench console -- [--n 100000] [--requests 300]`
//! prints `console: inbox p50=..ms p95=..ms max=..ms` and the same for `alert`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use kyc_sentinel::config::Config;
use kyc_sentinel::console::identity::sha256_hex;
use kyc_sentinel::store::SqliteStore;
use kyc_sentinel::store::users::UserStore;
use tower::ServiceExt;

const RULES: &[(&str, &str)] = &[
    ("aml-red-flag-high", "critical"),
    ("aml-red-flag-medium", "high"),
    ("duplicate-applicant", "high"),
    ("kyc-rejected-repeat", "medium"),
    ("document-expired", "low"),
];

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fp(i: usize) -> String {
    hex::encode(sha2::Sha256::digest_bytes(i))
}

mod sha2 {
    pub struct Sha256;
    impl Sha256 {
        pub fn digest_bytes(i: usize) -> Vec<u8> {
            use ::sha2::Digest;
            ::sha2::Sha256::digest(i.to_le_bytes()).to_vec()
        }
    }
}

async fn seed(store: &SqliteStore, n: usize) {
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut tx = store.pool().begin().await.unwrap();
    for i in 0..n {
        let (rule, sev) = RULES[i % RULES.len()];
        let at = kyc_sentinel::store::fmt_time(t0 + chrono::Duration::seconds(i as i64 * 30));
        let fp = fp(i);
        let sub = format!("sub-{i:07}");
        let group = (i % 3 == 0).then(|| format!("user{}@example.com", i % 5000));
        let body = serde_json::json!({"rule": rule, "severity": sev, "labels": {"team": if i % 2 == 0 {"aml"} else {"kyc"}},
            "submission_id": sub, "submission_ids": [sub], "group_key": group, "count": 1, "event_time": at, "fingerprint": fp});
        sqlx::query("INSERT INTO alerts (fingerprint, rule_id, rule_version, severity, submission_id, group_key, event_time, fired_at, body) VALUES (?, ?, 'v1', ?, ?, ?, ?, ?, ?)")
            .bind(&fp).bind(rule).bind(sev).bind(&sub).bind(&group).bind(&at).bind(&at).bind(body.to_string())
            .execute(&mut *tx).await.unwrap();
        sqlx::query("INSERT INTO audit_log (at, kind, submission_id, rule_id, rule_version, fingerprint, detail) VALUES (?, 'decision', ?, ?, 'v1', ?, ?)")
            .bind(&at).bind(&sub).bind(rule).bind(&fp)
            .bind(r#"{"outcome":"fired","rule_set_version":"abc","conditions":[],"derived":{"applicant_submissions":1}}"#)
            .execute(&mut *tx).await.unwrap();
        sqlx::query("INSERT INTO outbox (fingerprint, receiver, payload, created_at, next_attempt_at, attempts, state, done_at) VALUES (?, 'mail', '{}', ?, ?, 1, 'delivered', ?)")
            .bind(&fp).bind(&at).bind(&at).bind(&at)
            .execute(&mut *tx).await.unwrap();
        // Most of a long history is closed; some acknowledged, a few open.
        let state = match i % 10 {
            0..=6 => Some("resolved"),
            7 | 8 => Some("acknowledged"),
            _ => None,
        };
        if let Some(st) = state {
            sqlx::query("INSERT INTO alert_states (fingerprint, state, changed_at, changed_by, outcome) VALUES (?, ?, ?, 'ana', ?)")
                .bind(&fp).bind(st).bind(&at).bind((st == "resolved").then_some("false_positive"))
                .execute(&mut *tx).await.unwrap();
            sqlx::query(
                "INSERT INTO alert_assignees (fingerprint, assignee, at) VALUES (?, 'ana', ?)",
            )
            .bind(&fp)
            .bind(&at)
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query("INSERT INTO audit_log (at, kind, fingerprint, detail) VALUES (?, 'state_change', ?, ?)")
                .bind(&at).bind(&fp).bind(format!(r#"{{"by":"ana","from":"open","to":"{st}"}}"#))
                .execute(&mut *tx).await.unwrap();
        }
        sqlx::query("INSERT INTO applicants (applicant_id, submission_id, email, event_time) VALUES (?, ?, ?, ?)")
            .bind(format!("app-{}", i % 20000)).bind(&sub).bind(format!("user{}@example.com", i % 5000)).bind(&at)
            .execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();
}

fn pct(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |p: f64| ms(v[((v.len() as f64 * p).ceil() as usize).saturating_sub(1)]);
    (at(0.50), at(0.95), ms(*v.last().unwrap()))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = arg("--n", 100_000);
    let requests = arg("--requests", 300);
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("sentinel.yaml");
    std::fs::write(
        &cfg_path,
        format!(
            "argos:\n  base_url: http://127.0.0.1:9\n  api_key: k\nrules: {}\nstore:\n  path: state.db\nconsole: {{}}\n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/rules")
        ),
    )
    .unwrap();
    let cfg = Config::load(&cfg_path).unwrap();
    let store = SqliteStore::open(&cfg.store.path).await.unwrap();
    let t = Instant::now();
    seed(&store, n).await;
    eprintln!(
        "console: seeded {n} alerts in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    store
        .create_session(
            &sha256_hex("bench-session"),
            "ana",
            "analyst",
            "c",
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let state: std::sync::Arc<dyn kyc_sentinel::store::StateStore> =
        std::sync::Arc::new(store.clone());
    let app = kyc_sentinel::compose::api_router(&cfg, &state).unwrap();
    let get = |path: String| {
        let app = app.clone();
        async move {
            let req = Request::get(&path)
                .header("cookie", "kss_session=bench-session")
                .body(Body::empty())
                .unwrap();
            let t = Instant::now();
            let r = app.oneshot(req).await.unwrap();
            let body = axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap();
            let took = t.elapsed();
            assert!(
                body.len() > 1000,
                "{path}: {}",
                String::from_utf8_lossy(&body)
            );
            took
        }
    };
    let filters = [
        "/",
        "/?state=open",
        "/?state=acknowledged&severity=critical",
        "/?rule=duplicate-applicant",
        "/?assignee=nobody",
        "/?assignee=me&state=resolved",
        "/?label=team%3Daml",
        "/?q=user42%40example.com",
        "/?q=app-77",
        "/?from=2026-01-10&to=2026-01-20",
        "/?page=40",
        "/?state=pending_approval",
    ];
    let mut inbox = Vec::new();
    let mut per_filter = vec![Vec::new(); filters.len()];
    for i in 0..requests {
        let took = get(filters[i % filters.len()].to_owned()).await;
        per_filter[i % filters.len()].push(took);
        inbox.push(took);
    }
    // Which filter is slow, on stderr (scripts/bench reads stdout only).
    for (f, v) in filters.iter().zip(per_filter) {
        if !v.is_empty() {
            let (p50, _, max) = pct(v);
            eprintln!("console: inbox {f}: p50={p50:.1}ms max={max:.1}ms");
        }
    }
    let mut alert = Vec::new();
    for i in 0..requests {
        alert.push(get(format!("/alerts/{}", fp((i * 7919) % n))).await);
    }
    for (name, v) in [("inbox", inbox), ("alert", alert)] {
        let (p50, p95, max) = pct(v);
        println!(
            "console: {name} n={n} requests={requests} p50={p50:.1}ms p95={p95:.1}ms max={max:.1}ms"
        );
    }
}

//! Differential test: the daemon's pipeline over a real SQLite store, fed in
//! random batches with restarts in between, decides exactly what `eval` (the
//! pure engine over in-memory state) decides over the same versions in
//! event-time order. Alert for alert, in firing order.
//!
//! Seeded random histories: many versions per submission (pending, then
//! decided, sometimes much later), applicants under several emails (in any
//! case), users with many rejections, throttles, ties in event time.
//!
//! `DIFFERENTIAL_SEED=N` runs one history; `DIFFERENTIAL_RUNS=N` sets how many
//! (default 500). A failure prints the seed and the diff.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use kyc_sentinel::argos::model::format_argos_timestamp;
use kyc_sentinel::notify::routing::Router;
use kyc_sentinel::pipeline::Pipeline;
use kyc_sentinel::rules::{MemoryState, RuleSet, ScriptLimits, load_path};
use kyc_sentinel::store::{PgStore, SqliteStore, StateStore};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// Rules that read every piece of remembered state: once per submission,
/// previous result, both applicant counts, windows with and without
/// throttles, a throttle without a window.
const RULES: &str = r#"
- id: rejected-once
  severity: low
  when: { field: kyc.result, eq: rejected }
- id: decided-after-pending
  severity: info
  when:
    all:
      - { field: derived.previous_result, eq: pending }
      - { field: kyc.result, in: [approved, rejected] }
- id: three-emails
  severity: high
  when: { field: derived.applicant_emails, gte: 3 }
- id: many-submissions
  severity: medium
  when: { field: derived.applicant_submissions, gte: 4 }
  throttle: 20m
  throttle_by: applicant_id
- id: retry-window
  severity: high
  when:
    all:
      - { field: kyc.result, eq: rejected }
      - { field: kyc.commentCode, eq: too_many_retry }
  window: { group_by: userid, threshold: 3, within: 30m }
- id: rejections-throttled
  severity: high
  when: { field: kyc.result, eq: rejected }
  window: { group_by: [userid], threshold: 2, within: 15m }
  throttle: 40m
- id: undecided-by-email
  severity: low
  when: { field: kyc.result, ne: approved }
  window: { group_by: email, threshold: 2, within: 10m }
"#;

fn write_rules(dir: &Path) -> Arc<RuleSet> {
    let path = dir.join("rules");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("r.yaml"), RULES).unwrap();
    Arc::new(load_path(&path, ScriptLimits::default()).expect("test rules load"))
}

/// One history: every version of every submission, in event-time order
/// (ties by submission id, then by the order the versions were made).
fn history(seed: u64) -> Vec<Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let base = Utc.with_ymd_and_hms(2024, 5, 1, 8, 0, 0).unwrap();
    let applicants = rng.random_range(1..=4);
    let users = rng.random_range(1..=3);
    let subs = rng.random_range(3..=14);
    let mut versions: Vec<(DateTime<Utc>, String, usize, Value)> = Vec::new();
    let mut seq = 0;
    for i in 0..subs {
        let id = format!("s{i:02}");
        let applicant = (!rng.random_bool(0.1)).then(|| rng.random_range(0..applicants));
        let userid = (!rng.random_bool(0.15)).then(|| format!("u{}", rng.random_range(0..users)));
        let email = |rng: &mut ChaCha8Rng| {
            let n = rng.random_range(0..4);
            // One address written in two cases is one email.
            let local = if rng.random_bool(0.2) {
                format!("Mail{n}")
            } else {
                format!("mail{n}")
            };
            format!("{local}@a{}.example", applicant.unwrap_or(9))
        };
        let mut mail = email(&mut rng);
        // Whole minutes: many ties in event time across submissions.
        let mut t = base + Duration::minutes(rng.random_range(0..=180));
        if rng.random_bool(0.2) {
            t += Duration::seconds(rng.random_range(1..60));
        }
        let created = t;
        let n_versions = rng.random_range(1..=4);
        for v in 0..n_versions {
            if v > 0 {
                // Decided seconds to hours later; now and then at the same instant.
                t += match rng.random_range(0..10) {
                    0 => Duration::zero(),
                    1..=6 => Duration::minutes(rng.random_range(1..=20)),
                    _ => Duration::minutes(rng.random_range(20..=150)),
                };
                if rng.random_bool(0.1) {
                    mail = email(&mut rng);
                }
            }
            let result = if v == 0 && rng.random_bool(0.7) {
                "pending"
            } else {
                ["approved", "rejected", "rejected", "pending"][rng.random_range(0..4)]
            };
            let codes: Vec<&str> = if result == "rejected" && rng.random_bool(0.6) {
                vec!["too_many_retry"]
            } else {
                vec![]
            };
            let mut doc = json!({
                "submission_id": id,
                "email": mail,
                "created_at": format_argos_timestamp(created),
                "kyc": { "result": result, "commentCode": codes },
                "rev": v,
            });
            if v > 0 {
                doc["updated_at"] = json!(format_argos_timestamp(t));
            }
            if let Some(a) = applicant {
                doc["applicant_id"] = json!(format!("app-{a}"));
            }
            if let Some(u) = &userid {
                doc["userid"] = json!(u);
            }
            versions.push((t, id.clone(), seq, doc));
            seq += 1;
        }
    }
    versions.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
    versions.into_iter().map(|v| v.3).collect()
}

/// `eval`'s alerts: the pure engine over in-memory state.
fn eval_alerts(rules: &RuleSet, versions: &[Value]) -> Vec<Value> {
    let out = rules.evaluate_batch(versions, &mut MemoryState::new());
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    out.alerts()
        .map(|a| serde_json::to_value(a).unwrap())
        .collect()
}

async fn new_pipeline(
    store: &Arc<dyn StateStore>,
    rules: &Arc<RuleSet>,
    commit_every: usize,
) -> Pipeline {
    let router = Arc::new(Router::every_receiver(&[]));
    Pipeline::new(
        store.clone(),
        rules.clone(),
        router,
        Arc::new(Notify::new()),
    )
    .await
    .unwrap()
    .commit_every(commit_every)
}

/// Contiguous batches of the event-time order, each holding at most one
/// version of a submission (as one poll does), shuffled inside.
fn batches(rng: &mut ChaCha8Rng, versions: &[Value]) -> Vec<Vec<Value>> {
    let mut out: Vec<Vec<Value>> = Vec::new();
    let mut cur: Vec<Value> = Vec::new();
    let mut target = rng.random_range(1..=8);
    for v in versions {
        let dup = cur.iter().any(|c| c["submission_id"] == v["submission_id"]);
        if dup || cur.len() >= target {
            cur.shuffle(rng);
            out.push(std::mem::take(&mut cur));
            target = rng.random_range(1..=8);
        }
        cur.push(v.clone());
    }
    if !cur.is_empty() {
        cur.shuffle(rng);
        out.push(cur);
    }
    out
}

/// The backend under the daemon's pipeline: a SQLite file per history, or
/// one PostgreSQL database emptied between histories (a database per
/// history would cost more than the history).
enum Backend {
    Sqlite(std::path::PathBuf),
    Postgres(PgStore),
}

/// One row per firing, in firing order (the alerts table keeps one row per
/// fingerprint, so a duplicate firing shows only here).
const FIRINGS: &str = "SELECT a.body FROM audit_log d JOIN alerts a ON a.fingerprint = d.fingerprint \
     WHERE d.kind = 'decision' ORDER BY d.id";

impl Backend {
    /// A fresh, empty store for one history.
    async fn fresh(&self, seed: u64) -> (Arc<dyn StateStore>, Option<SqliteStore>) {
        match self {
            Backend::Sqlite(dir) => {
                let run = dir.join(format!("run-{seed}"));
                let _ = std::fs::remove_dir_all(&run);
                std::fs::create_dir_all(&run).unwrap();
                let s = SqliteStore::open(&run.join("state.db")).await.unwrap();
                (Arc::new(s.clone()), Some(s))
            }
            Backend::Postgres(pg) => {
                empty_postgres(pg).await;
                (Arc::new(pg.clone()), None)
            }
        }
    }

    async fn firings(&self, sqlite: Option<SqliteStore>) -> Vec<Value> {
        let bodies: Vec<String> = match (self, sqlite) {
            (Backend::Sqlite(_), Some(s)) => {
                let rows = sqlx::query_scalar(FIRINGS)
                    .fetch_all(s.pool())
                    .await
                    .unwrap();
                s.pool().close().await;
                rows
            }
            (Backend::Postgres(pg), _) => sqlx::query_scalar(FIRINGS)
                .fetch_all(pg.pool())
                .await
                .unwrap(),
            (Backend::Sqlite(_), None) => unreachable!("a SQLite run keeps its store"),
        };
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).unwrap())
            .collect()
    }
}

/// Empties every table the migrations made (not the migrations' own record,
/// nor the leadership row), so the next history starts from nothing.
async fn empty_postgres(pg: &PgStore) {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema() \
         AND tablename NOT IN ('_sqlx_migrations', 'leadership')",
    )
    .fetch_all(pg.pool())
    .await
    .unwrap();
    // DELETE, not TRUNCATE: on a few rows it is many times faster.
    let sql: String = tables.iter().map(|t| format!("DELETE FROM {t};")).collect();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(pg.pool())
        .await
        .unwrap();
}

/// The daemon's alerts: the real pipeline over a real store, random
/// batches, a restart (state reloaded from the store) before some of them,
/// and sometimes commits deferred over several batches.
async fn daemon_alerts(
    seed: u64,
    backend: &Backend,
    rules: &Arc<RuleSet>,
    versions: &[Value],
) -> Vec<Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x05ee_d0fb_a7c4);
    let (store, sqlite) = backend.fresh(seed).await;
    let every = |rng: &mut ChaCha8Rng| {
        if rng.random_bool(0.7) {
            0
        } else {
            rng.random_range(2..=6)
        }
    };
    let mut pipeline = new_pipeline(&store, rules, every(&mut rng)).await;
    for batch in batches(&mut rng, versions) {
        if rng.random_bool(0.3) {
            pipeline.flush().await.unwrap();
            drop(pipeline);
            pipeline = new_pipeline(&store, rules, every(&mut rng)).await;
        }
        pipeline.process(batch, "differential").await.unwrap();
    }
    pipeline.flush().await.unwrap();
    drop(pipeline);
    drop(store);
    backend.firings(sqlite).await
}

fn brief(a: &Value) -> String {
    format!(
        "{} at {} by {} about {} (key {})",
        a["rule"], a["event_time"], a["submission_id"], a["submission_ids"], a["group_key"]
    )
}

/// Both lists side by side, `-` only in eval, `+` only in the daemon.
fn diff(eval: &[Value], daemon: &[Value]) -> String {
    let mut out = String::new();
    for a in eval {
        let mark = if daemon.contains(a) { ' ' } else { '-' };
        out.push_str(&format!("{mark} {}\n", brief(a)));
    }
    for a in daemon.iter().filter(|a| !eval.contains(a)) {
        out.push_str(&format!("+ {}\n", brief(a)));
    }
    out
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs the seeds (`DIFFERENTIAL_SEED` / `DIFFERENTIAL_RUNS`, else
/// `default_runs`) on one backend.
async fn decides_as_eval(backend: Backend, name: &str, default_runs: u64) {
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path());
    let seeds: Vec<u64> = match env_u64("DIFFERENTIAL_SEED") {
        Some(s) => vec![s],
        None => (0..env_u64("DIFFERENTIAL_RUNS").unwrap_or(default_runs)).collect(),
    };
    let mut fired = 0;
    for seed in seeds {
        let versions = history(seed);
        let expected = eval_alerts(&rules, &versions);
        let got = daemon_alerts(seed, &backend, &rules, &versions).await;
        assert!(
            got == expected,
            "seed {seed} on {name}: the daemon disagrees with eval (rerun: \
             DIFFERENTIAL_SEED={seed} cargo test --test it differential)\n{}",
            diff(&expected, &got)
        );
        if let Backend::Sqlite(d) = &backend {
            std::fs::remove_dir_all(d.join(format!("run-{seed}"))).unwrap();
        }
        fired += expected.len();
    }
    // The histories must exercise the rules, or agreeing proves nothing.
    assert!(fired > 0, "no history raised an alert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_decides_as_eval_over_random_histories() {
    let dir = tempfile::tempdir().unwrap();
    decides_as_eval(Backend::Sqlite(dir.path().to_owned()), "sqlite", 500).await;
}

/// The same histories, splits and restarts over PostgreSQL (one database of
/// the shared throwaway cluster, emptied between histories). 200 by default:
/// a history costs about 0.2 s here, five times SQLite's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_on_postgres_decides_as_eval_over_random_histories() {
    let db = crate::pg_database_or_skip!("differential");
    let pg = PgStore::open(&db.url()).await.unwrap();
    decides_as_eval(Backend::Postgres(pg.clone()), "postgres", 200).await;
    pg.pool().close().await;
}

/// The `eval` command itself (the binary, over a JSON Lines file) prints
/// what the in-process engine above decides, on one history with alerts.
#[test]
fn eval_cli_matches_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path());
    let (versions, expected) = (0..)
        .map(|seed| {
            let v = history(seed);
            let e = eval_alerts(&rules, &v);
            (v, e)
        })
        .find(|(_, e)| e.len() >= 5)
        .unwrap();
    let lines: Vec<String> = versions.iter().map(Value::to_string).collect();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args(["eval", "--rules"])
        .arg(dir.path().join("rules"))
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got, expected, "{}", diff(&expected, &got));
}

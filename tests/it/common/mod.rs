//! Shared helpers of the pipeline tests: a config file pointing at a real
//! simulator, the alerts `eval` would give over the simulator's dump, and the
//! alerts a file receiver actually got.
#![allow(dead_code)]

pub mod pg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::Utc;
use kyc_sentinel::rules::{Alert, MemoryState, ScriptLimits, load_path};
use kyc_sentinel::simulator::SimConfig;
use kyc_sentinel::simulator::generator::{Generator, decide, published_by};
use serde_json::Value;
use std::time::Duration;

pub mod smtp;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Writes `sentinel.yaml` in `dir` for a simulator at `base_url`, with a file
/// receiver at `dir/alerts.jsonl` and the shipped rules. `extra` is appended.
pub fn write_config(dir: &Path, base_url: &str, extra: &str) -> PathBuf {
    write_config_on(dir, base_url, &Backend::Sqlite, extra)
}

/// The state store a test's daemon uses: the same tests run on both.
pub enum Backend {
    /// `state.db` in the test's directory.
    Sqlite,
    /// A fresh database of the throwaway cluster (dropped with the value).
    Postgres(pg::Database<'static>),
}

impl Backend {
    /// A PostgreSQL database, or `None` (with a message) where PostgreSQL is
    /// not available and not required (see `pg::shared`).
    pub fn postgres(prefix: &str) -> Option<Backend> {
        pg::shared().map(|c| Backend::Postgres(c.database(prefix)))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The `store:` section's body.
    fn yaml(&self) -> String {
        match self {
            Backend::Sqlite => "  path: state.db\n".into(),
            Backend::Postgres(db) => format!("  url: {}\n", db.url()),
        }
    }
}

/// [`write_config`] with the store on `backend`.
pub fn write_config_on(dir: &Path, base_url: &str, backend: &Backend, extra: &str) -> PathBuf {
    let text = format!(
        "argos:\n  base_url: {base_url}\n  api_key: sim-key\n  rate_limit_per_sec: 1000\n  \
         retry_base_delay: 10ms\n  max_retries: 8\n  timeout: 5s\n  page_size: 50\n\
         poll:\n  interval: 1s\n  midnight_overlap: 24h\n\
         rules: {rules}\n\
         store:\n{store}\
         outbox:\n  retry_base: 50ms\n  flush_deadline: 5s\n\
         telemetry:\n  listen: 127.0.0.1:0\n\
         receivers:\n  - name: file\n    type: file\n    path: alerts.jsonl\n{extra}",
        rules = repo().join("rules").display(),
        store = backend.yaml(),
    );
    let path = dir.join("sentinel.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// What `eval` finds over every version the simulator ever served.
pub fn expected_alerts(dump: &[Value]) -> Vec<Alert> {
    let rules =
        load_path(&repo().join("rules"), ScriptLimits::default()).expect("shipped rules load");
    let mut state = MemoryState::new();
    let out = rules.evaluate_batch(dump, &mut state);
    assert!(
        out.rejected.is_empty(),
        "simulator produced unreadable versions: {:?}",
        out.rejected
    );
    out.alerts().cloned().collect()
}

/// fingerprint -> how many times the file receiver got it.
pub fn delivered(path: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    for line in text.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line {line}: {e}"));
        let key = v["idempotency_key"].as_str().unwrap().to_owned();
        assert_eq!(Some(key.as_str()), v["alert"]["fingerprint"].as_str());
        *out.entry(key).or_default() += 1;
    }
    out
}

/// Compares delivered to expected: every expected fingerprint delivered, none
/// other; returns how many extra deliveries (same idempotency key) there were.
pub fn assert_delivered_exactly(expected: &[Alert], got: &BTreeMap<String, usize>) -> usize {
    let want: BTreeMap<&str, &Alert> = expected
        .iter()
        .map(|a| (a.fingerprint.as_str(), a))
        .collect();
    let missing: Vec<String> = want
        .iter()
        .filter(|(f, _)| !got.contains_key(**f))
        .map(|(_, a)| format!("{} {:?}", a.rule, a.submission_ids))
        .collect();
    let extra: Vec<&String> = got
        .keys()
        .filter(|f| !want.contains_key(f.as_str()))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "delivered alerts differ from eval's: {} missing {missing:?}, {} extra {extra:?}",
        missing.len(),
        extra.len()
    );
    got.values().map(|n| n - 1).sum()
}

/// Feeds the simulator live arrivals for `secs` seconds (10 a second), a third
/// of them first `pending` and decided `decide_after` later, then waits until
/// all are decided. Every version lives longer than two poll intervals.
pub async fn drive_arrivals(
    sim: &kyc_sentinel::simulator::SimHandle,
    seed: u64,
    secs: u64,
    decide_after: Duration,
) {
    let mut generator = Generator::new(seed, Utc::now());
    let mut to_decide: Vec<(tokio::time::Instant, Value, Value)> = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < end || !to_decide.is_empty() {
        let now = tokio::time::Instant::now();
        if now < end {
            let mut v = generator.submission_at(Utc::now());
            published_by(&mut v, Utc::now());
            let decidable = matches!(v["kyc"]["result"].as_str(), Some("approved" | "rejected"));
            if decidable && generator.chance(0.33) {
                let pending = Generator::pending_version(&v);
                sim.insert(pending.clone());
                to_decide.push((now + decide_after, v, pending));
            } else {
                sim.insert(v);
            }
        }
        let mut i = 0;
        while i < to_decide.len() {
            if to_decide[i].0 <= now {
                let (_, mut v, pending) = to_decide.swap_remove(i);
                decide(&mut v, &pending["pending_at"], Utc::now());
                sim.insert(v);
            } else {
                i += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A backlog over the two hours that ended five minutes ago: every decision
/// in it is already in the past, as on the real service.
pub fn recent_backlog() -> SimConfig {
    SimConfig {
        base_time: Some(Utc::now() - chrono::Duration::minutes(5)),
        backlog_span: Some(Duration::from_secs(7200)),
        ..SimConfig::default()
    }
}

/// A child process killed when the test ends, also when it fails early (an
/// assertion must not leave a daemon running).
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

//! Shared helpers of the pipeline tests: a config file pointing at a real
//! simulator, the alerts `eval` would give over the simulator's dump, and the
//! alerts a file receiver actually got.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kyc_sentinel::rules::{Alert, MemoryState, ScriptLimits, load_path};
use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Writes `sentinel.yaml` in `dir` for a simulator at `base_url`, with a file
/// receiver at `dir/alerts.jsonl` and the shipped rules. `extra` is appended.
pub fn write_config(dir: &Path, base_url: &str, extra: &str) -> PathBuf {
    let text = format!(
        "argos:\n  base_url: {base_url}\n  api_key: sim-key\n  rate_limit_per_sec: 1000\n  \
         retry_base_delay: 10ms\n  max_retries: 8\n  timeout: 5s\n  page_size: 50\n\
         poll:\n  interval: 1s\n  midnight_overlap: 24h\n\
         rules: {rules}\n\
         store:\n  path: state.db\n\
         outbox:\n  retry_base: 50ms\n  flush_deadline: 5s\n\
         receivers:\n  - name: file\n    type: file\n    path: alerts.jsonl\n{extra}",
        rules = repo().join("rules").display()
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

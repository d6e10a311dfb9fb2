//! `eval` over 10,000 simulator submissions: the same output for the input
//! shuffled, and the same output twice.

use std::process::Command;

use chrono::{Duration, TimeZone, Utc};
use kyc_sentinel::simulator::generator::{Generator, decide};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde_json::Value;

/// 10,000 submissions from the simulator's generator; about one in ten also
/// has a pending first version, decided a few hours later, as `simulate
/// --dump` writes them.
fn simulator_versions() -> Vec<Value> {
    let base = Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap();
    let mut g = Generator::new(7, base);
    let mut out = Vec::new();
    for i in 0..10_000 {
        let mut s = g.next_submission();
        if i % 10 == 3 {
            let pending = Generator::pending_version(&s);
            let at = g.clock() + Duration::hours(3 + (i % 50) as i64);
            decide(&mut s, &pending["pending_at"], at);
            out.push(pending);
        }
        out.push(s);
    }
    out
}

fn eval_file(lines: &[Value]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("dump.jsonl");
    let text: String = lines.iter().map(|v| format!("{v}\n")).collect();
    std::fs::write(&f, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["eval", "--rules", "rules", "--input", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn eval_is_deterministic_and_order_independent() {
    let versions = simulator_versions();
    assert!(versions.len() > 10_000);
    let first = eval_file(&versions);
    let alerts: Vec<Value> = first
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The generator plants the patterns the pack looks for: a real test
    // needs many alerts of many rules.
    let rules: std::collections::BTreeSet<&str> =
        alerts.iter().map(|a| a["rule"].as_str().unwrap()).collect();
    assert!(alerts.len() > 100, "only {} alerts", alerts.len());
    assert!(rules.len() >= 8, "rules fired: {rules:?}");

    assert_eq!(eval_file(&versions), first, "second run differs");
    let mut shuffled = versions.clone();
    shuffled.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(99));
    assert_ne!(shuffled, versions);
    assert_eq!(eval_file(&shuffled), first, "shuffled input differs");
}

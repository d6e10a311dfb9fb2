//! `kyc-sentinel backtest` over a real store whose live alerts analysts
//! resolved with every kind of outcome. The expected counts below are counted
//! by hand from the fixture (see the table in `fixture`), not computed by the
//! code under test.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Utc};
use kyc_sentinel::store::lifecycle::Action;
use kyc_sentinel::store::prelude::*;
use kyc_sentinel::store::{AlertRow, BatchCommit, SqliteStore, VersionRow};
use serde_json::Value;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn fp(n: u32) -> String {
    format!("{n:064x}")
}

/// The fixture, on 2026-11-01 (s12 on 2026-10-01, outside the range):
///
/// | sub | score | live alert (rule: outcome)             | raw     |
/// | s1  | 90    | high-score: reported                   |         |
/// | s2  | 80    | high-score: escalated_to_aml_officer   |         |
/// | s3  | 55    | high-score: false_positive             |         |
/// | s4  | 60    | high-score: false_positive             |         |
/// | s5  | 52    | high-score: "customer called back"     |         |
/// | s6  | 70    | high-score: (unresolved)               |         |
/// | s7  | 51    | high-score: reported                   |         |
/// | s8  | 99    | -                                      |         |
/// | s9  | 95    | -                                      | purged  |
/// | s10 | 10    | old-rule: false_positive               |         |
/// | s11 | 10    | old-rule: reported                     |         |
/// | s12 | 99    | high-score: reported (out of range)    |         |
async fn fixture(dir: &Path) -> PathBuf {
    let path = dir.join("state.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let subs: &[(&str, i64, &str)] = &[
        ("s1", 90, "2026-11-01T01:00:00Z"),
        ("s2", 80, "2026-11-01T02:00:00Z"),
        ("s3", 55, "2026-11-01T03:00:00Z"),
        ("s4", 60, "2026-11-01T04:00:00Z"),
        ("s5", 52, "2026-11-01T05:00:00Z"),
        ("s6", 70, "2026-11-01T06:00:00Z"),
        ("s7", 51, "2026-11-01T07:00:00Z"),
        ("s8", 99, "2026-11-01T08:00:00Z"),
        ("s9", 95, "2026-11-01T09:00:00Z"),
        ("s10", 10, "2026-11-01T10:00:00Z"),
        ("s11", 10, "2026-11-01T11:00:00Z"),
        ("s12", 99, "2026-10-01T11:00:00Z"),
    ];
    let live: &[(&str, &str, u32, Option<&str>)] = &[
        ("s1", "high-score", 1, Some("reported")),
        ("s2", "high-score", 2, Some("escalated_to_aml_officer")),
        ("s3", "high-score", 3, Some("false_positive")),
        ("s4", "high-score", 4, Some("false_positive")),
        ("s5", "high-score", 5, Some("customer called back")),
        ("s6", "high-score", 6, None),
        ("s7", "high-score", 7, Some("reported")),
        ("s10", "old-rule", 10, Some("false_positive")),
        ("s11", "old-rule", 11, Some("reported")),
        ("s12", "high-score", 12, Some("reported")),
    ];
    let mut batch = BatchCommit::default();
    for (id, score, at) in subs {
        let raw =
            serde_json::json!({"submission_id": id, "updated_at": at, "data": {"score": score}});
        batch.versions.push(VersionRow {
            submission_id: (*id).into(),
            content_hash: format!("h-{id}"),
            kyc_result: None,
            created_at: Some(t(at)),
            event_time: t(at),
            raw: raw.to_string(),
        });
    }
    let when = |id: &str| t(subs.iter().find(|s| s.0 == id).unwrap().2);
    for (id, rule, n, _) in live {
        batch.alerts.push(AlertRow {
            fingerprint: fp(*n),
            rule_id: (*rule).into(),
            rule_version: "v1".into(),
            severity: "high".into(),
            submission_id: (*id).into(),
            group_key: None,
            event_time: when(id),
            body: format!(r#"{{"rule":"{rule}","submission_id":"{id}"}}"#),
        });
    }
    store.commit_batch(batch).await.unwrap();
    for (_, _, n, outcome) in live {
        if let Some(outcome) = outcome {
            let action = Action::Resolve {
                outcome: (*outcome).into(),
                note: None,
            };
            store.change_alert(&fp(*n), "ana", action).await.unwrap();
        }
    }
    // Retention purged s9's raw JSON.
    sqlx::query("UPDATE submission_versions SET raw = NULL WHERE submission_id = 's9'")
        .execute(store.pool())
        .await
        .unwrap();
    store.pool().close().await;
    path
}

const CANDIDATES: &str = "\
- id: high-score
  description: tighter threshold
  severity: high
  when: { field: data.score, gte: 65 }
- id: high-score-v2
  description: much tighter, as a shadow candidate
  severity: high
  mode: shadow
  replaces: high-score
  when: { field: data.score, gte: 85 }
";

fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let rules = dir.join("candidate");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("scores.yaml"), CANDIDATES).unwrap();
    let cfg = dir.join("sentinel.yaml");
    std::fs::write(
        &cfg,
        format!(
            "argos:\n  base_url: http://127.0.0.1:9\n  api_key: ${{ARGOS_API_KEY}}\nrules: {}\nstore:\n  path: state.db\n",
            rules.display()
        ),
    )
    .unwrap();
    (cfg, rules)
}

fn backtest(cfg: &Path, rules: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .arg("backtest")
        .arg("--config")
        .arg(cfg)
        .arg("--rules")
        .arg(rules)
        .args(["--from", "20261101", "--to", "20261101"])
        .args(extra)
        .env_remove("ARGOS_API_KEY")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file of the store directory with its bytes' hash (the store must be
/// unchanged). A read-only SQLite connection to a WAL store may leave the
/// shared-memory index and an empty WAL behind: those are left out, and a
/// WAL with anything in it is a write.
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    let wal = dir.join("state.db-wal");
    if wal.exists() {
        assert_eq!(
            std::fs::metadata(&wal).unwrap().len(),
            0,
            "backtest wrote to the WAL"
        );
    }
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.to_string_lossy().ends_with("-shm") && !p.to_string_lossy().ends_with("-wal")
        })
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                kyc_sentinel::util::sha256_hex(&bytes),
            )
        })
        .collect();
    out.sort();
    out
}

fn row<'a>(report: &'a Value, candidate: Option<&str>, live: &str) -> &'a Value {
    report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["candidate"].as_str() == candidate && r["live"] == live)
        .unwrap_or_else(|| panic!("no row {candidate:?} vs {live} in {report:#}"))
}

fn outcomes(v: &Value) -> [u64; 5] {
    [
        "false_positive",
        "escalated_to_aml_officer",
        "reported",
        "other",
        "unresolved",
    ]
    .map(|k| v[k].as_u64().unwrap())
}

#[tokio::test]
async fn backtest_counts_every_outcome_exactly_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path()).await;
    let (cfg, rules) = setup(dir.path());
    let before = snapshot(dir.path());

    let (code, stdout, stderr) = backtest(&cfg, &rules, &["--json"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    let r: Value = serde_json::from_str(&stdout).unwrap();
    // s1..s11 are in the range, s9 has no raw JSON left.
    assert_eq!(r["versions"], 11);
    assert_eq!(r["evaluated"], 10);
    assert_eq!(r["skipped_purged"], 1);
    assert_eq!(r["skipped"], serde_json::json!(["s9"]));

    // high-score at >= 65 fires on s1, s2, s6, s8.
    let hs = row(&r, Some("high-score"), "high-score");
    assert_eq!(
        [
            &hs["alerts_live"],
            &hs["alerts_candidate"],
            &hs["both"],
            &hs["only_live"],
            &hs["only_candidate"]
        ],
        [7, 4, 3, 4, 1]
    );
    assert_eq!(hs["examples_both"], serde_json::json!(["s1", "s2", "s6"]));
    assert_eq!(
        hs["examples_only_live"],
        serde_json::json!(["s3", "s4", "s5", "s7"])
    );
    assert_eq!(hs["examples_only_candidate"], serde_json::json!(["s8"]));
    // kept: s1 reported, s2 escalated, s6 unresolved; dropped: s3, s4 FP, s5 other, s7 reported.
    assert_eq!(outcomes(&hs["kept"]), [0, 1, 1, 0, 1]);
    assert_eq!(outcomes(&hs["dropped"]), [2, 0, 1, 1, 0]);
    // live: 3 confirmed (2 reported + 1 escalated) of 5 judged; candidate: 2 of 2.
    assert_eq!(hs["precision_live"], 0.6);
    assert_eq!(hs["precision_candidate"], 1.0);

    // The shadow candidate (>= 85) fires on s1, s8; compared with high-score.
    let v2 = row(&r, Some("high-score-v2"), "high-score");
    assert_eq!(
        [
            &v2["alerts_live"],
            &v2["alerts_candidate"],
            &v2["both"],
            &v2["only_live"],
            &v2["only_candidate"]
        ],
        [7, 2, 1, 6, 1]
    );
    assert_eq!(outcomes(&v2["kept"]), [0, 0, 1, 0, 0]);
    assert_eq!(outcomes(&v2["dropped"]), [2, 1, 1, 1, 1]);

    // old-rule has no candidate: everything it fired is dropped.
    let old = row(&r, None, "old-rule");
    assert_eq!([&old["alerts_live"], &old["alerts_candidate"]], [2, 0]);
    assert_eq!(outcomes(&old["dropped"]), [1, 0, 1, 0, 0]);
    assert_eq!(old["precision_live"], 0.5);
    assert_eq!(old["precision_candidate"], Value::Null);

    assert_eq!(r["rules"].as_array().unwrap().len(), 3);
    assert_eq!(r["false_positives_avoided"], 2 + 2 + 1);
    assert_eq!(r["reported_missed"], 1 + 1 + 1);
    assert_eq!(r["escalated_missed"], 1);

    // The table says the same; --fail-on-missed-reported turns the misses into exit 1.
    let (code, table, _) = backtest(&cfg, &rules, &[]);
    assert_eq!(code, 0);
    assert!(table.contains("skipped: s9"), "{table}");
    assert!(
        table.contains("false positives avoided: 5; reported missed: 3; escalated missed: 1"),
        "{table}"
    );
    let (code, _, stderr) = backtest(&cfg, &rules, &["--fail-on-missed-reported"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("3 submission(s) an analyst reported"),
        "{stderr}"
    );

    assert_eq!(snapshot(dir.path()), before, "backtest changed the store");
}

#[tokio::test]
async fn backtest_keeping_every_reported_alert_passes_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path()).await;
    let (cfg, _) = setup(dir.path());
    let rules = dir.path().join("keep");
    std::fs::create_dir_all(&rules).unwrap();
    // Fires on every score >= 50 and on every score <= 10: all live alerts kept.
    std::fs::write(
        rules.join("r.yaml"),
        "- id: high-score\n  severity: high\n  when: { field: data.score, gte: 50 }\n\
         - id: old-rule\n  severity: low\n  when: { field: data.score, lte: 10 }\n",
    )
    .unwrap();
    let (code, stdout, stderr) = backtest(&cfg, &rules, &["--json", "--fail-on-missed-reported"]);
    assert_eq!(code, 0, "{stderr}");
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["reported_missed"], 0);
    // Only the false positives stay: none avoided.
    assert_eq!(r["false_positives_avoided"], 0);
    assert_eq!(
        row(&r, Some("high-score"), "high-score")["only_candidate"],
        1
    );
}

/// The README's "Changing rules safely" commands, run as written against the
/// fixture: each exits 0, except the `--fail-on-missed-reported` gate, which
/// the fixture's candidates fail (they miss reported alerts): exit 1.
#[tokio::test]
async fn readme_commands_run() {
    let readme = std::fs::read_to_string(crate::common::repo().join("README.md")).unwrap();
    let section = readme
        .split("\n## Changing rules safely\n")
        .nth(1)
        .expect("README has a `Changing rules safely` section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("the section has a sh block");
    let commands: Vec<Vec<&str>> = block
        .lines()
        .filter_map(|l| l.strip_prefix("kyc-sentinel "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(commands.len() >= 4, "{block}");

    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path()).await;
    let (cfg, candidate) = setup(dir.path());
    // The README's names: the live rules (with the shadow candidate) and the candidate folder.
    std::fs::rename(&candidate, dir.path().join("rules-candidate")).unwrap();
    let live = dir.path().join("rules");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::write(
        live.join("scores.yaml"),
        "- id: high-score\n  severity: high\n  when: { field: data.score, gte: 50 }\n\
         - id: high-score-v2\n  severity: high\n  mode: shadow\n  replaces: high-score\n  when: { field: data.score, gte: 85 }\n\
         - id: old-rule\n  severity: low\n  when: { field: data.score, lte: 10 }\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&candidate.display().to_string(), "rules");
    std::fs::write(&cfg, text).unwrap();

    let mut ran = Vec::new();
    for args in &commands {
        let out = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
            .current_dir(dir.path())
            .args(args)
            .env("ARGOS_API_KEY", "readme-test")
            .output()
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let expected = if args.contains(&"--fail-on-missed-reported") {
            1
        } else {
            0
        };
        assert_eq!(
            code,
            expected,
            "kyc-sentinel {}\nstdout: {stdout}\nstderr: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        ran.push((args[0], stdout));
    }
    let report = &ran.iter().find(|(c, _)| *c == "shadow").unwrap().1;
    assert!(report.contains("high-score-v2"), "{report}");
    let table = &ran.iter().find(|(c, _)| *c == "backtest").unwrap().1;
    assert!(table.contains("reported missed: 3"), "{table}");
}

/// The stored versions come out of a read-only store in event-time order,
/// ties by submission id, whatever order they were written in, across the
/// store's read chunks, purged ones included (as `None`). The expected order
/// is the fixture sorted here.
#[tokio::test]
async fn versions_stream_in_event_time_order_across_chunks() {
    use futures::StreamExt;
    use kyc_sentinel::store::shadow::{end_of_time, start_of_time};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path).await.unwrap();
    // 2,500 versions written newest first, on 500 distinct times (five per
    // time, ids that sort differently from their write order).
    let base = t("2026-11-01T00:00:00Z");
    let mut expected: Vec<(DateTime<Utc>, String)> = Vec::new();
    let mut batch = BatchCommit::default();
    for i in (0..2500u32).rev() {
        let id = format!("sub-{:04}", (i * 7919) % 2500);
        let at = base + chrono::Duration::seconds(i64::from(i / 5));
        expected.push((at, id.clone()));
        batch.versions.push(VersionRow {
            submission_id: id.clone(),
            content_hash: format!("h-{id}"),
            kyc_result: None,
            created_at: Some(at),
            event_time: at,
            raw: format!(r#"{{"submission_id":"{id}"}}"#),
        });
    }
    store.commit_batch(batch).await.unwrap();
    sqlx::query("UPDATE submission_versions SET raw = NULL WHERE submission_id = 'sub-0007'")
        .execute(store.pool())
        .await
        .unwrap();
    store.pool().close().await;
    expected.sort();

    let cfg = kyc_sentinel::config::StoreConfig {
        path: path.clone(),
        ..Default::default()
    };
    let ro = kyc_sentinel::store::open_read_only(&cfg).await.unwrap();
    let got: Vec<_> = ro
        .versions(start_of_time(), end_of_time())
        .map(|v| v.unwrap())
        .collect()
        .await;
    let ids: Vec<&str> = got.iter().map(|v| v.submission_id.as_str()).collect();
    let want: Vec<&str> = expected.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, want);
    for v in &got {
        let raw_id = v
            .raw
            .as_deref()
            .map(|r| serde_json::from_str::<Value>(r).unwrap()["submission_id"].clone());
        match v.submission_id.as_str() {
            "sub-0007" => assert_eq!(raw_id, None),
            id => assert_eq!(raw_id, Some(Value::from(id))),
        }
    }
    // A period selects by event time, [from, to).
    let some: Vec<_> = ro
        .versions(base, base + chrono::Duration::seconds(2))
        .map(|v| v.unwrap().submission_id)
        .collect()
        .await;
    assert_eq!(
        some,
        want[..10].iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
}

//! `kyc-sentinel check`, run as a user runs it: exact messages, positions,
//! exit codes.

use std::process::Command;

fn check(dir: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["check", "--rules", dir])
        .output()
        .expect("run kyc-sentinel");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn shipped_pack_is_clean() {
    let (code, stdout, stderr) = check("rules");
    assert_eq!(stderr, "");
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("rules: 13 rules OK (rule set version "),
        "{stdout}"
    );
}

#[test]
fn every_problem_of_every_file_in_one_run() {
    let (code, stdout, stderr) = check("tests/fixtures/rules/broken");
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    let d = "tests/fixtures/rules/broken";
    let expected = [
        format!(
            "{d}/bad_duration.yaml:6:13: `throttle`: invalid duration `24hours`: unknown unit `hours` (use s, m, h or d, e.g. `24h`)"
        ),
        format!("{d}/bad_regex.yaml:5:14: invalid regex `(unclosed`: unclosed group"),
        format!(
            "{d}/bad_severity.yaml:2:13: invalid severity `urgent`; expected one of: info, low, medium, high, critical"
        ),
        format!(
            "{d}/duplicate_id_b.yaml:2:7: duplicate rule id `same-id` (first defined at {d}/duplicate_id_a.yaml:1:3)"
        ),
        format!("{d}/script_inline.yaml:7:34: script error: Script is incomplete"),
        format!("{d}/script_syntax.yaml:6:12: script error: Unexpected '='"),
        format!(
            "{d}/two_operators.yaml:6:5: two operators in one condition (`eq` and `ne`); combine them with `all:`"
        ),
        format!(
            "{d}/unknown_key.yaml:3:3: unknown key `severty` in rule; expected one of: id, description, summary, playbook_url, severity, labels, when, window, throttle, throttle_by, mode, replaces"
        ),
        format!(
            "{d}/unknown_operator.yaml:6:9: unknown operator `equals`; expected one of: eq, ne, in, not_in, gt, gte, lt, lte, contains, matches, exists"
        ),
        format!("{d}/window_threshold.yaml:6:3: window without `threshold`"),
        format!("{d}/yaml_syntax.yaml:3:9: unclosed bracket '{{'"),
        format!("{d}: 11 problems found"),
    ];
    assert_eq!(stderr, expected.join("\n") + "\n");
}

#[test]
fn missing_folder_is_reported() {
    let (code, _, stderr) = check("tests/fixtures/rules/nowhere");
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("tests/fixtures/rules/nowhere:1:1: cannot read rules: "),
        "{stderr}"
    );
}

#[test]
fn scripts_are_resolved_and_run_on_samples() {
    let (code, stdout, stderr) = check("tests/fixtures/rules/check_scripts");
    assert_eq!(code, 2, "{stdout}");
    let d = "tests/fixtures/rules/check_scripts";
    // A folded script: the error is on the file's last line, just past its
    // end (it was placed on a line the file does not have).
    let expected = [
        format!("{d}/folded.yaml:6:37: script error: Script is incomplete"),
        format!(
            "{d}/typo.yaml:4:28: script calls unknown function `count_whith` (did you mean `count_with`?)"
        ),
        format!("{d}: 2 problems found"),
    ];
    assert_eq!(stderr, expected.join("\n") + "\n");
    // Rules that load are run on sample submissions.
    let (code, stdout, stderr) = check("tests/fixtures/rules/check_not_boolean");
    assert_eq!(code, 2, "{stdout}");
    let d = "tests/fixtures/rules/check_not_boolean";
    assert_eq!(
        stderr,
        format!(
            "{d}/not_boolean.yaml:7:17: rule `result-string`: script returned string, not a boolean, on a sample submission (a condition must be true or false)\n\
             {d}: 1 problem found\n"
        )
    );
}

/// Rhai's own error texts quote values (`Error parsing integer number
/// '900101-1234567'`); the engine's report keeps the kind, the rule, the
/// position and the field path only.
#[test]
fn script_errors_never_carry_field_values() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.yaml"),
        "- id: id-number-check\n  severity: low\n  when:\n    script: parse_int(s.data.identityNumber) > 0\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        r#"{"submission_id":"s1","created_at":"2026-01-01-00-00-00-000","data":{"identityNumber":"900101-1234567"},"kyc":{"result":"approved"}}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .current_dir(dir.path())
        .args(["eval", "--rules", "r.yaml", "--input", "in.jsonl"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("900101"), "{stderr}");
    assert!(
        stderr.contains(
            "rule `id-number-check` failed on submission `s1`: in `parse_int`: arithmetic error: Error parsing integer number"
        ) || stderr.contains(
            "rule `id-number-check` failed on submission `s1`: arithmetic error: Error parsing integer number"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("reading `s.data.identityNumber`"),
        "{stderr}"
    );
}

/// Issue 14 item 9 where the value would stay longest: a daemon's rule error
/// reaches the log, the audit log's `rule_error` rows and the digest with the
/// rule, the position and the field path, never the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_errors_keep_values_out_of_log_audit_and_digest() {
    use kyc_sentinel::simulator::{SimConfig, Simulator};
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig {
        submissions: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let now = chrono::Utc::now() - chrono::Duration::minutes(1);
    sim.insert(serde_json::json!({
        "submission_id": "s-id-1",
        "created_at": now.format("%Y-%m-%d-%H-%M-%S-000").to_string(),
        "email": "kim@example.com",
        "data": {"identityNumber": "900101-1234567"},
        "kyc": {"result": "approved"}
    }));
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/r.yaml"),
        "- id: id-number-check\n  severity: low\n  when:\n    script: parse_int(s.data.identityNumber) > 0\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("s.yaml"),
        format!(
            "argos:\n  base_url: {}\n  api_key: sim-key\nrules: rules\nstore:\n  path: state.db\n\
             receivers:\n  - name: leads\n    type: file\n    path: digest.txt\n\
             digests:\n  - name: daily\n    schedule: '0 8 * * *'\n    receivers: [leads]\n",
            sim.base_url()
        ),
    )
    .unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let day = now.format("%Y%m%d").to_string();
    let log = cli(&[
        "backfill", "--config", "s.yaml", "--from", &day, "--to", &day,
    ]);
    assert!(log.contains("1 rule errors"), "{log}");
    let export = cli(&[
        "audit", "--config", "s.yaml", "--export", "--from", &day, "--to", &day,
    ]);
    let errors: Vec<&str> = export
        .lines()
        .filter(|l| l.contains("rule_error"))
        .collect();
    assert_eq!(errors.len(), 1, "{export}");
    assert!(errors[0].contains("s.data.identityNumber"), "{}", errors[0]);
    let at = (now + chrono::Duration::minutes(5)).to_rfc3339();
    let digest = cli(&[
        "digest",
        "--config",
        "s.yaml",
        "--name",
        "daily",
        "--preview",
        "--at",
        &at,
    ]);
    assert!(digest.contains("id-number-check: 1"), "{digest}");
    for (what, text) in [("log", &log), ("audit", &export), ("digest", &digest)] {
        assert!(
            !text.contains("900101"),
            "the identity number in the {what}:\n{text}"
        );
    }
}

/// Shadow rules (issue 18): `replaces:` must name a live rule of the set,
/// and a shadow rule needs its own id; each problem at its position.
#[test]
fn shadow_rule_problems_have_positions() {
    let (code, stdout, stderr) = check("tests/fixtures/rules/shadow_broken");
    assert_eq!(code, 2, "{stdout}");
    let d = "tests/fixtures/rules/shadow_broken";
    let expected = [
        format!(
            "{d}/a_live.yaml:6:13: `replaces` applies only to a `mode: shadow` rule (when promoting, remove both lines)"
        ),
        format!(
            "{d}/b_shadow.yaml:1:7: shadow rule and live rule share the id `kyc-rejected` (the other is at {d}/a_live.yaml:1:3); a shadow rule needs its own id (its own windows and throttles), e.g. `kyc-rejected-v2` with `replaces: kyc-rejected`"
        ),
        format!(
            "{d}/b_shadow.yaml:8:13: `replaces` names `kyc-rejectd`, which is not a rule of this rule set"
        ),
        format!(
            "{d}/b_shadow.yaml:13:13: `replaces` names `kyc-rejected-v2` (at {d}/b_shadow.yaml:5:3), a shadow rule; it must name a live rule"
        ),
        format!("{d}/b_shadow.yaml:17:9: invalid mode `dark`; expected one of: live, shadow"),
        format!("{d}: 5 problems found"),
    ];
    assert_eq!(stderr, expected.join("\n") + "\n");
}

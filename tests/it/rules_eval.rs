//! `kyc-sentinel eval`: input forms, the output contract, exit codes.

use std::io::Write;
use std::process::{Command, Stdio};

fn eval(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("eval")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kyc-sentinel");
    // eval may exit (bad rules) before reading its input: a broken pipe
    // here is expected then, and the exit code tells the rest.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const RED: &str = r#"{"submission_id":"s1","created_at":"2024-05-01-10-00-00-000","aml":{"currentstatus":"Red Flag","risk_level_summary":"HIGH"}}"#;

#[test]
fn output_keys_in_contract_order() {
    let (code, stdout, stderr) = eval(&["--rules", "rules"], RED);
    assert_eq!((code, stderr.as_str()), (0, ""));
    // fingerprint = sha256("rule id \n group key or empty \n submission ids, one a line")
    assert_eq!(
        kyc_sentinel::util::sha256_hex(b"aml-red-flag-high\n\ns1"),
        "e25bae5f22639f82009f526c5f3ae88755a2c4d5c24be86a70912d0b4542b5c0"
    );
    assert_eq!(
        stdout,
        concat!(
            r#"{"rule":"aml-red-flag-high","severity":"critical","labels":{"team":"aml","playbook":"aml-escalation"},"#,
            r#""submission_id":"s1","submission_ids":["s1"],"group_key":null,"count":1,"#,
            r#""event_time":"2024-05-01T10:00:00.000Z","#,
            r#""fingerprint":"e25bae5f22639f82009f526c5f3ae88755a2c4d5c24be86a70912d0b4542b5c0"}"#,
            "\n"
        )
    );
}

#[test]
fn all_input_forms_give_the_same_alerts() {
    let subs: Vec<String> = (1..=3)
        .map(|i| {
            format!(
                r#"{{"submission_id":"r{i}","userid":"u","created_at":"2024-05-01-1{i}-00-00-000","kyc":{{"result":"rejected","commentCode":["too_many_retry"]}}}}"#
            )
        })
        .collect();
    let jsonl = subs.join("\n");
    let array = format!("[\n{}\n]", subs.join(",\n"));
    let pages = format!(
        "{{\"Items\": [{}, {}]}}\n{{\"Items\": [{}]}}",
        subs[2], subs[0], subs[1]
    );
    let (c1, a, _) = eval(&["--rules", "rules"], &jsonl);
    let (c2, b, _) = eval(&["--rules", "rules", "--input", "-"], &array);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pages.json");
    std::fs::write(&f, pages).unwrap();
    let (c3, c, _) = eval(&["--rules", "rules", "--input", f.to_str().unwrap()], "");
    assert_eq!((c1, c2, c3), (0, 0, 0));
    assert!(
        a.contains(r#""submission_ids":["r1","r2","r3"],"group_key":"u","count":3"#),
        "{a}"
    );
    assert_eq!(a, b);
    assert_eq!(a, c);
}

#[test]
fn no_alerts_is_success_with_empty_output() {
    let (code, stdout, stderr) = eval(&["--rules", "rules"], "");
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (0, "", ""));
}

#[test]
fn unreadable_input_names_the_place() {
    let (code, stdout, stderr) = eval(
        &["--rules", "rules"],
        &format!("{RED}\n{{\"submission_id\": }}\n"),
    );
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert_eq!(
        stderr,
        "error: <stdin>:2:19: invalid JSON: expected value\n"
    );

    let (code, _, stderr) = eval(
        &["--rules", "rules"],
        &format!("{RED}\n{{\"created_at\": \"2024-05-01-10-00-00-000\"}}\n"),
    );
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "error: <stdin>:2: item 2: submission has no `submission_id`\n"
    );
}

#[test]
fn bad_rules_exit_2_with_positions() {
    let (code, stdout, stderr) = eval(
        &["--rules", "tests/fixtures/rules/broken/bad_severity.yaml"],
        RED,
    );
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert_eq!(
        stderr,
        "tests/fixtures/rules/broken/bad_severity.yaml:2:13: invalid severity `urgent`; expected one of: info, low, medium, high, critical\n"
    );
}

#[test]
fn script_errors_are_warnings_and_evaluation_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.yaml"),
        "- id: broken-script\n  severity: low\n  when: { script: 's.kyc.result.len() > 1' }\n- id: any-red-flag\n  severity: high\n  when: { field: aml.currentstatus, eq: red flag }\n",
    )
    .unwrap();
    let (code, stdout, stderr) = eval(&["--rules", dir.path().to_str().unwrap()], RED);
    assert_eq!(code, 0);
    assert!(stdout.starts_with(r#"{"rule":"any-red-flag""#), "{stdout}");
    assert!(
        stderr.starts_with("warning: rule `broken-script` failed on submission `s1`: "),
        "{stderr}"
    );
}

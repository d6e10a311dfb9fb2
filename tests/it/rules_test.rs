//! `kyc-sentinel test`: the shipped pack passes; a wrong expectation fails
//! with a readable diff and exit code 1.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run kyc-sentinel");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn shipped_pack_passes_its_tests() {
    let (code, stdout, stderr) = run(&["test"]);
    assert_eq!(stderr, "");
    assert_eq!(code, 0, "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(
        stdout.ends_with(" failed\n") && stdout.contains(" passed, 0 failed"),
        "{stdout}"
    );
    // Every shipped rule is exercised by at least one test that expects it to fire.
    let tests: String = ["aml", "kyc", "retries", "documents"]
        .iter()
        .map(|f| std::fs::read_to_string(format!("rules/{f}.test.yaml")).unwrap())
        .collect();
    let set = kyc_sentinel::rules::load_path(
        std::path::Path::new("rules"),
        kyc_sentinel::rules::ScriptLimits::default(),
    )
    .unwrap();
    for rule in set.rules() {
        assert!(
            tests.contains(&format!("rule: {},", rule.id)),
            "no test expects `{}` to fire",
            rule.id
        );
        assert!(
            !rule.description.is_empty(),
            "`{}` has no description",
            rule.id
        );
    }
}

#[test]
fn wrong_expectation_fails_with_a_diff() {
    let (code, stdout, stderr) = run(&["test", "tests/fixtures/rules/tests/wrong.test.yaml"]);
    assert_eq!(stderr, "");
    assert_eq!(code, 1);
    assert_eq!(
        stdout,
        "\
FAIL tests/fixtures/rules/tests/wrong.test.yaml:3: expects the wrong severity rule and a wrong group
  alerts (- expected, + actual):
    - aml-red-flag-medium [s1]
    - repeated-too-many-retry [r1, r2, r3] group_key=u2
    + aml-red-flag-high [s1] group_key=null
    + repeated-too-many-retry [r1, r2, r3] group_key=u1
  rule `aml-red-flag-high` fired but must not: aml-red-flag-high [s1] group_key=null
ok   tests/fixtures/rules/tests/wrong.test.yaml:15: a correct expectation still passes
2 tests, 1 passed, 1 failed
"
    );
}

#[test]
fn invalid_test_file_is_reported_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.test.yaml");
    std::fs::write(
        &f,
        "tests:\n  - name: x\n    submissions: []\n    expect: []\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&["test", f.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        format!(
            "{}:4:5: unknown key `expect` in a test; expected one of: name, rules, defaults, submissions, submissions_file, alerts, not_fired\n",
            f.display()
        )
    );
}

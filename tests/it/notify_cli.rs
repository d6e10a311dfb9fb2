//! The notifier commands as a user runs them: `check --config`, `render`,
//! `notify-test`.

use std::path::Path;
use std::process::Command;

fn run(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args(args)
        .current_dir(cwd)
        .env("ARGOS_API_KEY", "k")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn config(dir: &Path, extra: &str) -> String {
    let text = format!(
        "argos:\n  base_url: http://127.0.0.1:9\nrules: {}\nstore:\n  path: state.db\n\
         receivers:\n  - name: file\n    type: file\n    path: out.jsonl\n  - name: pd\n    type: webhook\n    \
         url: http://127.0.0.1:9/pd\n    template: pagerduty.json\n    params:\n      routing_key: rk-1\n{extra}",
        repo().join("rules").display()
    );
    let p = dir.join("sentinel.yaml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn check_config_validates_everything_together() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let (code, out, err) = run(&["check", "--config", &cfg], dir.path());
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains(" rules OK (rule set version "), "{out}");
    assert_eq!(
        lines[1],
        format!(
            "{cfg}: configuration OK (2 receivers, every alert to every receiver, 11 templates)"
        )
    );
}

#[test]
fn check_config_reports_broken_templates_and_routes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("t")).unwrap();
    std::fs::write(
        dir.path().join("t/email.txt"),
        "{% for a in alerts %}\n{{ a.rule }\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("t/slack.json"), "{\"x\": {{ alert.nope }}}").unwrap();
    let cfg = config(dir.path(), "templates:\n  dir: t\n");
    let (code, _, err) = run(&["check", "--config", &cfg], dir.path());
    assert_eq!(code, 2);
    let t = dir.path().join("t");
    assert_eq!(
        err,
        format!(
            "{cfg}: {}:2: syntax error: unexpected `}}`, expected end of variable block\n\
             {cfg}: configuration has problems\n",
            t.join("email.txt").display()
        )
    );
    std::fs::write(dir.path().join("t/email.txt"), "ok\n").unwrap();
    let (code, _, err) = run(&["check", "--config", &cfg], dir.path());
    assert_eq!(code, 2);
    assert_eq!(
        err,
        format!(
            "{cfg}: template `slack.json`:1: undefined value: `alert.nope` is undefined\n\
             {cfg}: configuration has problems\n"
        )
    );
    let cfg = config(dir.path(), "route:\n  receiver: nobody\n");
    let (code, _, err) = run(&["check", "--config", &cfg], dir.path());
    assert_eq!(code, 2);
    assert_eq!(
        err,
        format!(
            "{cfg}:17:13: route.receiver: no receiver is named `nobody` (receivers: file, pd)\n\
             {cfg}: configuration refused\n"
        )
    );
}

#[test]
fn render_prints_without_sending() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(&["render", "--template", "email_subject.txt"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "[kyc-sentinel] CRITICAL: aml-red-flag-high\n");
    let cfg = config(dir.path(), "");
    let (code, out, _) = run(
        &[
            "render",
            "--template",
            "pagerduty.json",
            "--config",
            &cfg,
            "--receiver",
            "pd",
        ],
        dir.path(),
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["routing_key"], "rk-1");
    assert!(!out.contains("900101-1234567"), "sample PII masked");
}

#[test]
fn notify_test_sends_through_one_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let alert = repo().join("tests/fixtures/notify/alerts.json");
    let (code, out, err) = run(
        &[
            "notify-test",
            "--config",
            &cfg,
            "--receiver",
            "file",
            "--alert",
            alert.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("sent to `file` (idempotency key "), "{out}");
    let lines = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2);
    // A receiver that is down: exit 1 with its error.
    let (code, _, err) = run(
        &["notify-test", "--config", &cfg, "--receiver", "pd"],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(
        err.starts_with("receiver `pd` failed: webhook `pd` ("),
        "{err}"
    );
    assert!(!err.contains("127.0.0.1:9/pd"), "no URL in errors: {err}");
}

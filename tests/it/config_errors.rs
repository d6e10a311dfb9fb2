//! sentinel.yaml as a user writes it: `${VAR}` values stay one string
//! whatever their characters, every problem is reported in one run at
//! `file:line:col`, `check --config` and `notify-test` work with an `smtp:`
//! block (a real aiosmtpd), and the store commands work without secrets.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::smtp::Smtp;
use kyc_sentinel::config::Config;
use secrecy::ExposeSecret;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the CLI with exactly the given environment variables (no others
/// from the test's environment leak in).
fn run(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"));
    cmd.args(args).current_dir(cwd).env_clear();
    if let Ok(p) = std::env::var("PATH") {
        cmd.env("PATH", p);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const HASHED: &str = "a #9f8e7d6c5b4a3210fedcba";
const NEWLINE: &str = "first line\napi:\n  token: injected";

fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, String> {
    kyc_sentinel::compose::parse_config(Path::new("conf/sentinel.yaml"), text, |k| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
}

#[test]
fn a_variable_is_one_string_whatever_its_characters() {
    let text = "argos:\n  base_url: http://127.0.0.1:9\n  api_key: ${NUM}\n\
                api:\n  token: ${HASHED}\n  link_secret: ${NEWLINE}\n\
                receivers:\n  - name: mail\n    type: email\n    from: a@example.com\n    to: [b@example.com]\n    \
                smtp:\n      host: 127.0.0.1\n      port: ${PORT}\n      tls: none\n      username: ${YES}\n      password: ${NUM}\n";
    let cfg = parse(
        text,
        &[
            ("NUM", "123456"),
            ("HASHED", HASHED),
            ("NEWLINE", NEWLINE),
            ("PORT", "2525"),
            ("YES", "yes"),
        ],
    )
    .unwrap();
    // Before: `a` (the rest read as a comment), and the API accepted `Bearer a`.
    assert_eq!(cfg.api.token.unwrap().expose_secret(), HASHED);
    // Before: the newline added keys (`token: injected` replaced the token).
    assert_eq!(cfg.api.link_secret.unwrap().expose_secret(), NEWLINE);
    assert_eq!(cfg.argos.api_key.unwrap().expose_secret(), "123456");
    let kyc_sentinel::config::ReceiverConfig::Email(e) = &cfg.receivers[0] else {
        panic!("an email receiver")
    };
    let smtp = e.smtp.as_ref().unwrap();
    assert_eq!(smtp.username.as_deref(), Some("yes"));
    assert_eq!(smtp.password.as_ref().unwrap().expose_secret(), "123456");
    assert_eq!(smtp.port(), 2525);
}

#[test]
fn short_secrets_are_refused_by_name_never_by_value() {
    let text = "argos:\n  base_url: http://127.0.0.1:9\n\
                api:\n  token: ${TOKEN}\n  link_secret: ${LINK}\n\
                ingest:\n  token: ${INGEST}\n";
    let err = parse(
        text,
        &[
            ("TOKEN", "a #x"),
            ("LINK", "s3cr3t"),
            ("INGEST", "tiny-tok"),
        ],
    )
    .unwrap_err();
    assert_eq!(
        err,
        "conf/sentinel.yaml:4:10: api.token: must be at least 16 characters (e.g. `openssl rand -hex 32`)\n\
         conf/sentinel.yaml:5:16: api.link_secret: must be at least 16 characters (e.g. `openssl rand -hex 32`)\n\
         conf/sentinel.yaml:7:10: ingest.token: must be at least 16 characters of A-Z a-z 0-9 - _ . ~ (it travels in a URL path)"
    );
    for secret in ["a #x", "s3cr3t", "tiny-tok"] {
        assert!(!err.contains(secret), "{err}");
    }
}

#[test]
fn every_problem_of_a_config_in_one_run_at_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    let text = "argos:\n  base_url: http://127.0.0.1:9\n  api_key: ${ARGOS_API_KEY}\n  colour: blue\n\
                poll:\n  intervall: 5s\n\
                receivers:\n  - name: archive\n    type: file\n    path: out.jsonl\n\
                digests:\n  - name: daily\n    schedule: '0 25 * * *'\n    timezone: Asia/Soul\n    receivers: [archive]\n";
    let cfg = dir.path().join("sentinel.yaml");
    std::fs::write(&cfg, text).unwrap();
    let c = cfg.to_str().unwrap();
    let (code, out, err) = run(&["check", "--config", c], dir.path(), &[]);
    assert_eq!(code, 2, "{out}");
    let expected = [
        format!("{c}:3:12: environment variable `ARGOS_API_KEY` is not set"),
        format!(
            "{c}:4:3: unknown field `colour`, expected one of base_url, api_key, encrypted, timeout, max_retries, rate_limit_per_sec, page_size, daily_budget, retry_base_delay, max_pages_per_day, max_response_bytes, date_format"
        ),
        format!(
            "{c}:6:3: unknown field `intervall`, expected one of interval, midnight_overlap, pending_horizon, applicant_lookup"
        ),
        format!("{c}:13:15: digests.daily.schedule: `0 25 * * *`: hour `25` is out of range 0-23"),
        format!(
            "{c}:14:15: digests.daily.timezone: `Asia/Soul` is not an IANA time zone (e.g. `Asia/Seoul`, `UTC`)"
        ),
        format!("{c}: configuration refused"),
    ];
    assert_eq!(err, expected.join("\n") + "\n");
}

#[test]
fn a_bracketed_path_in_a_flow_list_gets_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.yaml"),
        "- id: retries\n  severity: low\n  when:\n    field: kyc.result\n    eq: rejected\n  \
         throttle: 1h\n  throttle_by: [kyc.attempts[0].retryCode]\n",
    )
    .unwrap();
    let (code, _, err) = run(&["check", "--rules", "r.yaml"], dir.path(), &[]);
    assert_eq!(code, 2);
    assert!(err.starts_with("r.yaml:7:"), "{err}");
    assert!(
        err.contains(
            "(a path with brackets inside a flow list must be quoted, e.g. `['kyc.attempts[0].score']`, or write the list one `- item` per line)"
        ),
        "{err}"
    );
}

fn smtp_config(dir: &Path, port: u16) -> String {
    let text = format!(
        "argos:\n  base_url: http://127.0.0.1:9\n  api_key: ${{ARGOS_API_KEY}}\nrules: {}\nstore:\n  path: state.db\n\
         receivers:\n  - name: mail\n    type: email\n    from: 'kyc-sentinel <sentinel@example.com>'\n    \
         to: [compliance@example.com]\n    smtp:\n      host: 127.0.0.1\n      port: {port}\n      tls: none\n",
        repo().join("rules").display()
    );
    let p = dir.join("sentinel.yaml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn check_and_notify_test_work_with_an_smtp_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(dir.path(), &[]);
    let cfg = smtp_config(dir.path(), smtp.port);
    let env = [("ARGOS_API_KEY", "k-0123456789")];
    // Before: lettre's "there is no reactor running", exit 134.
    let (code, out, err) = run(&["check", "--config", &cfg], dir.path(), &env);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.ends_with(&format!(
            "{cfg}: configuration OK (1 receivers, every alert to every receiver, 11 templates)\n"
        )),
        "{out}"
    );
    let (code, out, err) = run(
        &["notify-test", "--config", &cfg, "--receiver", "nobody"],
        dir.path(),
        &env,
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        err,
        format!("error: {cfg}: no receiver named `nobody` (receivers: mail)\n")
    );
    let (code, out, err) = run(
        &["notify-test", "--config", &cfg, "--receiver", "mail"],
        dir.path(),
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("sent to `mail`"), "{out}");
    assert_eq!(
        smtp.files("accepted").len(),
        1,
        "one message at the SMTP server"
    );
}

#[test]
fn the_shipped_argos_example_checks_with_real_looking_values() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(
        &["check", "--config", "examples/sentinel.argos.yaml"],
        repo(),
        &[
            ("ARGOS_API_KEY", "live-3f9a0c2e5b7d41e8"),
            ("SMTP_PASSWORD", "app password with spaces # and hash"),
            (
                "SLACK_WEBHOOK_URL",
                "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
            ),
            ("HOME", dir.path().to_str().unwrap()),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("examples/sentinel.argos.yaml: configuration OK"),
        "{out}"
    );
}

/// A store with one alert in it, silenced when it fired; returns (store
/// path, its fingerprint).
fn store_with_an_alert(dir: &Path) -> (PathBuf, String) {
    use kyc_sentinel::store::prelude::*;
    use kyc_sentinel::store::{AlertRow, AuditRow, BatchCommit, SqliteStore};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let path = dir.join("state.db");
    let fp = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2".to_string();
    rt.block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let mut commit = BatchCommit::default();
        commit.alerts.push(AlertRow {
            fingerprint: fp.clone(),
            rule_id: "aml-red-flag-high".into(),
            rule_version: "v1".into(),
            severity: "critical".into(),
            submission_id: "sub-1".into(),
            group_key: None,
            event_time: chrono::Utc::now(),
            body: serde_json::json!({"rule": "aml-red-flag-high", "labels": {"team": "aml"}})
                .to_string(),
        });
        // The pipeline's record of a silence that held when it fired.
        commit.audit.push(AuditRow {
            kind: "silenced",
            submission_id: Some("sub-1".into()),
            version_hash: None,
            rule_id: Some("aml-red-flag-high".into()),
            rule_version: Some("v1".into()),
            fingerprint: Some(fp.clone()),
            detail: serde_json::json!({"silence": 1}),
        });
        store.commit_batch(commit).await.unwrap();
    });
    (path, fp)
}

#[test]
fn store_commands_need_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fp) = store_with_an_alert(dir.path());
    let s = store.to_str().unwrap();
    // A production config whose secrets are not in this shell.
    let cfg = dir.path().join("sentinel.yaml");
    std::fs::write(
        &cfg,
        format!(
            "argos:\n  base_url: https://rest-api.argosidentity.com\n  api_key: ${{ARGOS_API_KEY}}\n\
             rules: {}\nstore:\n  path: state.db\napi:\n  token: ${{SENTINEL_API_TOKEN}}\n\
             receivers:\n  - name: hook\n    type: webhook\n    url: ${{SLACK_WEBHOOK_URL}}\n\
             digests:\n  - name: daily\n    schedule: '0 9 * * *'\n    timezone: Asia/Seoul\n    receivers: [hook]\n",
            repo().join("rules").display()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let none: [(&str, &str); 0] = [];
    for args in [
        vec!["alerts", "list", "--store", s],
        vec!["alerts", "list", "--config", c],
        vec!["audit", "--store", s, "--alert", &fp],
        vec!["audit", "--config", c, "--submission", "sub-1"],
        vec!["digest", "--config", c, "--name", "daily", "--preview"],
        vec!["silence", "list", "--config", c],
    ] {
        let (code, out, err) = run(&args, dir.path(), &none);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(!out.is_empty(), "{args:?}");
    }
    // Silenced alerts are marked as such.
    let (_, out, _) = run(&["alerts", "list", "--store", s], dir.path(), &none);
    assert!(
        out.lines().nth(1).unwrap().contains("open (silenced)"),
        "{out}"
    );
    let (_, out, _) = run(
        &["alerts", "list", "--store", s, "--json"],
        dir.path(),
        &none,
    );
    assert!(out.contains("\"silenced\":true"), "{out}");
    let (code, out, err) = run(
        &["ack", &fp, "--by", "kim", "--store", s],
        dir.path(),
        &none,
    );
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            format!("alert {} ({fp}): acknowledged\n", &fp[..12]).as_str()
        ),
        "{err}"
    );
    let (code, out, err) = run(
        &[
            "resolve",
            &fp,
            "--by",
            "kim",
            "--outcome",
            "false_positive",
            "--config",
            c,
        ],
        dir.path(),
        &none,
    );
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            format!("alert {} ({fp}): resolved\n", &fp[..12]).as_str()
        ),
        "{err}"
    );
    // `run` still needs them all.
    let (code, _, err) = run(&["run", "--config", c], dir.path(), &none);
    assert_ne!(code, 0);
    assert!(
        err.contains("environment variable `ARGOS_API_KEY` is not set"),
        "{err}"
    );
}

#[test]
fn silences_that_can_never_match_are_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_an_alert(dir.path());
    let cfg = dir.path().join("sentinel.yaml");
    std::fs::write(
        &cfg,
        format!(
            "argos:\n  base_url: http://127.0.0.1:9\n  api_key: ${{ARGOS_API_KEY}}\nrules: {}\nstore:\n  path: {}\n",
            repo().join("rules").display(),
            store.display()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let none: [(&str, &str); 0] = [];
    let add = |extra: &[&str]| {
        let mut args = vec![
            "silence", "add", "--config", c, "--for", "1h", "--reason", "noise",
        ];
        args.extend_from_slice(extra);
        run(&args, dir.path(), &none)
    };
    let (code, _, err) = add(&["--rule", "no-such-rule"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(
            "error: this silence would never match:\n  --rule: no rule `no-such-rule` (rules: "
        ),
        "{err}"
    );
    assert!(err.contains("aml-red-flag-high"), "{err}");
    let (code, _, err) = add(&["--match", "tema=aml"]);
    assert_eq!(code, 1);
    assert!(err.contains("--match tema: no rule has a label `tema` (keys: rule, severity, submission_id, group_key, fingerprint, labels: "), "{err}");
    assert!(err.contains("team"), "{err}");
    let (code, out, err) = add(&["--match", "tema=aml", "--force"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("silence 1 added"), "{out}");
    assert!(
        err.starts_with("warning: --match tema: no rule has a label `tema`"),
        "{err}"
    );
    let (code, out, err) = add(&["--match", "team=aml", "--rule", "aml-red-flag-high"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("silence 2 added"), "{out}");
}

//! Hot reload while `run` is up: a changed rule takes effect, a broken rule
//! file is refused with its errors and the running rules keep firing.

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use common::*;
use kyc_sentinel::argos::model::format_argos_timestamp;
use kyc_sentinel::simulator::{SimConfig, Simulator};
use serde_json::{Value, json};

fn rule(value: &str) -> String {
    format!(
        "- id: custom-flag\n  description: integrator flag\n  severity: low\n  when:\n    field: data.cf1\n    eq: {value}\n"
    )
}

fn sub(id: &str, cf1: &str) -> Value {
    let t = format_argos_timestamp(Utc::now());
    json!({"submission_id": id, "created_at": t, "updated_at": t, "data": {"cf1": cf1}, "kyc": {"result": "approved"}})
}

async fn wait_for_alert(path: &std::path::Path, submission: &str) -> Value {
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                if v["alert"]["submission_id"] == submission {
                    return v["alert"].clone();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no alert for {submission} within 10s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_rules_apply_and_broken_rules_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("myrules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("custom.yaml"), rule("alpha")).unwrap();
    let sim = Simulator::start(SimConfig {
        submissions: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // An email receiver (.eml files) whose subject template is overridden.
    let tpl = dir.path().join("tpl");
    std::fs::create_dir(&tpl).unwrap();
    std::fs::write(tpl.join("email_subject.txt"), "v1 {{ alert.rule }}").unwrap();
    let cfg = write_config(
        dir.path(),
        &sim.base_url(),
        "reload:\n  check_every: 200ms\ntemplates:\n  dir: tpl\n",
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "receivers:\n",
        "receivers:\n  - name: mail\n    type: email\n    from: s@example.com\n    to: [c@example.com]\n    eml_dir: mail\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = regex::Regex::new(r"(?m)^rules: .*$")
        .unwrap()
        .replace(&text, "rules: myrules");
    std::fs::write(&cfg, text.as_ref()).unwrap();
    let alerts = dir.path().join("alerts.jsonl");

    let mut child = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    sim.insert(sub("s-alpha", "alpha"));
    let first = wait_for_alert(&alerts, "s-alpha").await;
    assert_eq!(first["rule"], "custom-flag");

    // Edit the rule (from now on it looks for `beta`) and the subject template.
    std::fs::write(rules.join("custom.yaml"), rule("beta")).unwrap();
    std::fs::write(tpl.join("email_subject.txt"), "v2 {{ alert.rule }}").unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    sim.insert(sub("s-alpha-2", "alpha"));
    sim.insert(sub("s-beta", "beta"));
    wait_for_alert(&alerts, "s-beta").await;

    // A broken file next to it: refused, and `beta` keeps firing.
    std::fs::write(
        rules.join("broken.yaml"),
        "- id: Bad Id\n  when: {field: x, eq: 1}\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    sim.insert(sub("s-beta-2", "beta"));
    wait_for_alert(&alerts, "s-beta-2").await;

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(status.success(), "{stderr}");
    let fired: Vec<String> = std::fs::read_to_string(&alerts)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["alert"]["submission_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        fired,
        ["s-alpha", "s-beta", "s-beta-2"],
        "s-alpha-2 must not fire after the edit"
    );
    assert!(
        stderr.contains("files changed: configuration reloaded: changed rules "),
        "{stderr}"
    );
    assert!(
        stderr.contains("configuration reload refused, the running configuration stays in force")
            && stderr.contains("broken.yaml:1:"),
        "{stderr}"
    );
}

//! The README's first command, as a user runs it (shortened).

use std::process::Command;

#[test]
fn demo_runs_to_the_end_and_leaves_its_files() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args(["demo", "--duration", "6s", "--out"])
        .arg(out.path())
        // Debug logs: the most a user could ask for must still hold no secret.
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "demo failed: {stderr}");
    assert!(stdout.starts_with("kyc-sentinel demo: "), "{stdout}");
    assert!(stdout.contains("aml-red-flag-high"), "{stdout}");
    let alerts = std::fs::read_to_string(out.path().join("alerts.jsonl")).unwrap();
    assert!(alerts.lines().count() >= 10, "{alerts}");
    for line in alerts.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["alert"]["fingerprint"].is_string());
    }
    let digest = std::fs::read_to_string(out.path().join("digest.html")).unwrap();
    assert!(
        digest.contains("<h2>Critical and high alerts</h2>"),
        "{digest}"
    );
    assert!(
        digest.contains("aml-red-flag-high"),
        "the digest counts the demo's alerts"
    );
    // The simulator's API key and the identity numbers it generates must
    // never reach the logs.
    assert!(!stderr.contains("sim-key"), "API key in logs");
    let id_number = regex::Regex::new(r"\b\d{6}-\d{7}\b").unwrap();
    assert!(
        !id_number.is_match(&stderr),
        "an identity number reached the logs"
    );
    assert!(
        !id_number.is_match(&digest),
        "an identity number in the digest"
    );
    assert!(
        !stderr.contains("identityNumber"),
        "submission bodies reached the logs"
    );
}

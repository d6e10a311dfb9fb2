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
    // Emails: every .eml parses with Python's standard MIME parser, as
    // multipart/alternative with a text and an HTML part.
    let mail = out.path().join("mail");
    let emls: Vec<_> = std::fs::read_dir(&mail)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!emls.is_empty(), "no .eml in {}", mail.display());
    let script = "import email,sys\n\
        for p in sys.argv[1:]:\n\
        \x20   m = email.message_from_binary_file(open(p,'rb'))\n\
        \x20   assert m.get_content_type() == 'multipart/alternative', m.get_content_type()\n\
        \x20   kinds = [part.get_content_type() for part in m.walk()]\n\
        \x20   assert 'text/plain' in kinds and 'text/html' in kinds, kinds\n\
        \x20   assert m['Message-ID'] and m['Subject'], p\n\
        print(len(sys.argv) - 1)\n";
    let py = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(&emls)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    // Webhooks: Slack-format JSON bodies from the built-in receiver.
    let hooks: Vec<_> = std::fs::read_dir(out.path().join("webhooks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!hooks.is_empty(), "no webhook bodies");
    for h in &hooks {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(h).unwrap()).unwrap();
        assert!(v["blocks"].is_array(), "{}: not a Slack body", h.display());
    }
    // Nothing the demo wrote carries an identity number in clear.
    let id_number = regex::Regex::new(r"\b\d{6}-\d{7}\b").unwrap();
    for f in emls.iter().chain(&hooks) {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            !id_number.is_match(&text),
            "{} shows an identity number",
            f.display()
        );
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

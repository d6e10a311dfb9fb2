//! Routing tables: each shipped example config routes the shipped rule pack's
//! alerts as the README says (the table there is this test's output).

use std::path::Path;

use kyc_sentinel::rules::{Alert, ScriptLimits, load_path};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn table(config: &str) -> String {
    let path = repo().join("examples").join(config);
    let text = std::fs::read_to_string(&path).unwrap();
    let cfg =
        kyc_sentinel::compose::parse_config(&path, &text, |k| Some(format!("http://{k}.invalid/")))
            .unwrap();
    let router = kyc_sentinel::compose::build_router(&cfg).unwrap();
    let rules = load_path(&repo().join("rules"), ScriptLimits::default()).unwrap();
    let mut out = String::from(
        "| rule | severity | team | receivers (group wait) |\n| --- | --- | --- | --- |\n",
    );
    for r in rules.rules() {
        let alert = Alert {
            rule: r.id.clone(),
            severity: r.severity,
            labels: r.labels.clone(),
            submission_id: "s".into(),
            submission_ids: vec!["s".into()],
            group_key: None,
            count: 1,
            event_time: chrono::Utc::now(),
            fingerprint: "f".into(),
        };
        let to: Vec<String> = router
            .route(&alert)
            .iter()
            .map(|m| format!("{} ({}s)", m.receiver, m.group_wait.as_secs()))
            .collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.id,
            r.severity.as_str(),
            r.labels.get("team").and_then(|v| v.as_str()).unwrap_or(""),
            to.join(", ")
        ));
    }
    out
}

fn docs() -> String {
    std::fs::read_to_string(repo().join("README.md")).unwrap()
}

#[test]
fn argos_example_routes_as_documented() {
    let t = table("sentinel.argos.yaml");
    insta::assert_snapshot!("argos_example_routes", t);
    assert!(docs().contains(&t), "the README must show this table:\n{t}");
    // The promises the README makes, spelled out.
    assert!(t.contains("| aml-red-flag-high | critical | aml | archive (0s), aml-escalation (0s), compliance-mail (60s) |"));
    assert!(
        t.contains("| duplicate-applicant | high | fraud | archive (0s), compliance-mail (60s) |")
    );
    assert!(t.contains("| pending-too-long | low | kyc | archive (0s), compliance-mail (600s) |"));
}

#[test]
fn simulator_example_routes_as_documented() {
    let t = table("sentinel.simulator.yaml");
    insta::assert_snapshot!("simulator_example_routes", t);
    assert!(docs().contains(&t), "the README must show this table:\n{t}");
}

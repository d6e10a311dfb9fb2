//! The shipped templates, rendered for a fixed notification: snapshots, and
//! the promise that no identity, document or account number leaks unmasked.

use std::path::PathBuf;

use kyc_sentinel::config::TemplatesConfig;
use kyc_sentinel::notify::Notification;
use kyc_sentinel::templates::{SHIPPED, Templates, is_digest_template, sample_params};

fn fixture() -> Notification {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/notify/alerts.json");
    let mut n =
        Notification::from_alert_text("compliance", &std::fs::read_to_string(path).unwrap())
            .unwrap();
    n.group_key = Some("root.1|rule=aml-red-flag-high".into());
    n
}

/// The shipped templates with the shipped rules (descriptions, windows,
/// fields) and every link configured.
fn templates() -> Templates {
    let dashboard = "https://dashboard.argosidentity.com/submissions/{submission_id}";
    let rules = kyc_sentinel::rules::load_path(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules"),
        kyc_sentinel::rules::ScriptLimits::default(),
    )
    .unwrap();
    Templates::load(&TemplatesConfig {
        dir: None,
        timezone: "Asia/Seoul".into(),
        dashboard_url: Some(dashboard.into()),
        ..TemplatesConfig::default()
    })
    .unwrap()
    .with_links(kyc_sentinel::templates::Links {
        public_url: Some("https://sentinel.example.com".into()),
        secret: Some("snapshot-link-secret-0123456789".to_string().into()),
        ttl: None,
        dashboard_url: Some(dashboard.into()),
    })
    .with_rules(Some(std::sync::Arc::new(rules)))
}

/// Link expiry and signature change with the clock: fixed for snapshots.
fn redact_links(out: &str) -> String {
    let re = regex::Regex::new(r"exp=\d+(&(amp;)?)sig=[0-9a-f]{64}").unwrap();
    re.replace_all(out, "exp=EXP${1}sig=SIG").into_owned()
}

#[test]
fn every_shipped_template_renders_the_fixture() {
    let t = templates();
    let n = fixture();
    assert_eq!(t.names().len(), SHIPPED.len());
    // Digest templates read a report, not alerts (tests/digest.rs snapshots them).
    for (name, _) in SHIPPED.iter().filter(|(n, _)| !is_digest_template(n)) {
        let out = t.render_with(name, &n, &sample_params()).unwrap();
        insta::assert_snapshot!(name.replace('.', "_"), redact_links(&out));
    }
}

#[test]
fn one_alert_notifications_render_too() {
    let t = templates();
    let mut n = fixture();
    n.alerts.truncate(1);
    n.key = kyc_sentinel::notify::group_key_hash(&n.fingerprints());
    let subject = t.render("email_subject.txt", &n).unwrap();
    assert_eq!(subject.trim(), "[kyc-sentinel] CRITICAL: aml-red-flag-high");
    let pd: serde_json::Value = serde_json::from_str(
        &t.render_with("pagerduty.json", &n, &sample_params())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(pd["dedup_key"], n.key.as_str());
    assert_eq!(
        pd["dedup_key"], n.alerts[0]["fingerprint"],
        "one alert: key = fingerprint"
    );
    assert_eq!(pd["payload"]["severity"], "critical");
    let am: serde_json::Value =
        serde_json::from_str(&t.render("alertmanager.json", &n).unwrap()).unwrap();
    assert_eq!(am[0]["labels"]["alertname"], "aml-red-flag-high");
    assert_eq!(am[0]["labels"]["team"], "aml");
}

#[test]
fn no_shipped_template_shows_personal_numbers_unmasked() {
    let t = templates();
    let n = fixture();
    let secrets = [
        "950214-2876543",
        "9502142876543",
        "2876543",
        "M70451234",
        "70451234",
        "352-0917-4482-13",
        "3520917448213",
        "0917-4482",
        "kim.minji@",
        "minji.k@",
        "selfie.argosidentity.com",
    ];
    // Digest templates read a report, not alerts (tests/digest.rs snapshots them).
    for (name, _) in SHIPPED.iter().filter(|(n, _)| !is_digest_template(n)) {
        let out = t.render_with(name, &n, &sample_params()).unwrap();
        for s in secrets {
            assert!(!out.contains(s), "{name} shows `{s}`:\n{out}");
        }
    }
    // Identity numbers are not shown even masked; the email is, masked:
    // the data reached the template.
    let text = t.render("email.txt", &n).unwrap();
    assert!(!text.contains("******-***6543"), "{text}");
    assert!(text.contains("k***@example.co.kr"), "{text}");
}

#[test]
fn json_templates_stay_json_whatever_the_values() {
    let t = templates();
    let mut n = fixture();
    n.alerts[0]["rule"] = "quote\" brace} newline\n <b>".into();
    n.alerts[0]["labels"]["team"] = "a\"b".into();
    for (name, _) in SHIPPED.iter().filter(|(n, _)| n.ends_with(".json")) {
        let out = t.render_with(name, &n, &sample_params()).unwrap();
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{out}"));
    }
    // HTML is escaped in the HTML mail.
    let html = t.render("email.html", &n).unwrap();
    assert!(
        html.contains("&lt;b&gt;") && !html.contains(" <b>"),
        "{html}"
    );
}

#[test]
fn a_broken_override_is_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("slack.json"),
        "{\n  \"text\": {{ alert.rule }\n}\n",
    )
    .unwrap();
    let errs = Templates::load(&TemplatesConfig {
        dir: Some(dir.path().to_path_buf()),
        ..TemplatesConfig::default()
    })
    .unwrap_err();
    assert_eq!(
        errs,
        [format!(
            "{}:2: syntax error: unexpected `}}`, expected end of variable block",
            dir.path().join("slack.json").display()
        )]
    );
    // An override that compiles but reads an undefined variable: found by check_all.
    std::fs::write(dir.path().join("slack.json"), "{\"t\": {{ alert.nope }}}").unwrap();
    let t = Templates::load(&TemplatesConfig {
        dir: Some(dir.path().to_path_buf()),
        ..TemplatesConfig::default()
    })
    .unwrap();
    assert_eq!(
        kyc_sentinel::compose::check_templates(&t),
        ["template `slack.json`:1: undefined value: `alert.nope` is undefined"]
    );
}

/// Digests link each listed alert to its console page (`api.public_url`),
/// in both parts; without a public URL they carry no console link.
#[test]
fn digests_link_each_alert_to_the_console() {
    let report = serde_json::to_value(kyc_sentinel::digest::report::build(
        &kyc_sentinel::digest::report::sample_input(),
        &kyc_sentinel::config::DigestFilters::default(),
        kyc_sentinel::digest::report::Limits { top: 10, open: 50 },
    ))
    .unwrap();
    let listed: Vec<String> = ["critical_high", "open_alerts"]
        .iter()
        .flat_map(|k| {
            let rows = if *k == "open_alerts" {
                &report[k]["shown"]
            } else {
                &report[k]
            };
            rows.as_array().unwrap().clone()
        })
        .map(|a| a["fingerprint"].as_str().unwrap().to_owned())
        .collect();
    assert!(!listed.is_empty());
    let ctx = serde_json::json!({ "report": report });
    let t = templates();
    let text = t.render_value("digest.txt", &ctx).unwrap();
    let html = t.render_value("digest.html", &ctx).unwrap();
    for fp in &listed {
        assert!(
            text.contains(&format!("    https://sentinel.example.com/alerts/{fp}\n")),
            "{fp} in {text}"
        );
        assert!(
            html.contains(&format!(
                "<a href=\"https:&#x2f;&#x2f;sentinel.example.com&#x2f;alerts&#x2f;{fp}\">"
            )),
            "{fp} in {html}"
        );
    }
    let bare = Templates::shipped();
    let text = bare.render_value("digest.txt", &ctx).unwrap();
    assert!(!text.contains("/alerts/"), "{text}");
}

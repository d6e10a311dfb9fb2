//! The submission model against the vendor's own samples: every example
//! response of the Argos page parses, its typed view is snapshotted, and
//! fields the table does not list survive a round trip.

use kyc_sentinel::argos::model::{ApplicantEntry, KycResult, RiskLevel, Submission};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/vendor/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn views(body: &Value) -> Vec<Submission<'_>> {
    body["Items"]
        .as_array()
        .expect("Items")
        .iter()
        .map(|v| Submission::from_value(v).expect("typed view"))
        .collect()
}

#[test]
fn specific_submission_full() {
    let body = fixture("specific_submission_full.json");
    let subs = views(&body);
    assert_eq!(subs.len(), 1);
    let s = &subs[0];
    assert_eq!(s.kyc_result(), Some(&KycResult::Rejected));
    assert_eq!(
        s.aml.as_ref().unwrap().risk_level_summary,
        Some(RiskLevel::High)
    );
    let attempts = s.kyc.as_ref().unwrap().attempts.as_ref().unwrap();
    assert_eq!(attempts.len(), 3);
    assert_eq!(
        attempts[2].liveness_score.as_ref().unwrap().value(),
        Some(99.0)
    );
    // The sample's placeholder timestamps keep their text.
    assert_eq!(s.created_at.as_ref().unwrap().utc, None);
    insta::assert_debug_snapshot!(subs);
}

#[test]
fn by_submission_id() {
    let body = fixture("by_submission_id.json");
    insta::assert_debug_snapshot!(views(&body));
}

#[test]
fn by_userid() {
    let body = fixture("by_userid.json");
    let subs = views(&body);
    assert_eq!(subs.len(), 3);
    insta::assert_debug_snapshot!(subs);
}

#[test]
fn by_email() {
    let body = fixture("by_email.json");
    let subs = views(&body);
    assert_eq!(subs.len(), 3);
    insta::assert_debug_snapshot!(subs);
}

#[test]
fn list() {
    let body = fixture("list.json");
    let subs = views(&body);
    assert_eq!(subs.len(), 3);
    assert_eq!(
        subs.iter()
            .map(|s| s.kyc.as_ref().unwrap().comment_code.as_ref().unwrap()[0].as_str())
            .collect::<Vec<_>>(),
        ["too_many_retry", "other", "too_many_retry"]
    );
    insta::assert_debug_snapshot!(subs);
}

#[test]
fn applicant() {
    let body = fixture("applicant.json");
    let entries: Vec<ApplicantEntry> = serde_json::from_value(body).unwrap();
    assert_eq!(entries.len(), 3);
    insta::assert_debug_snapshot!(entries);
}

#[test]
fn encrypted_body() {
    let body = fixture("encrypted_body.json");
    assert_eq!(body["isEncrypted"], Value::Bool(true));
    assert_eq!(body["data"], "encrypted-string");
}

/// A submission with fields the table does not list, at several depths,
/// round-trips to the same JSON text, and the view lists what is unknown.
#[test]
fn unknown_fields_round_trip() {
    let text = r#"{"submission_id":"S-1","email":"a@b.c","created_at":"2025-01-02-03-04-05-678","riskScore":{"model":"v2","value":0.93},"data":{"name":"Kim","address_street2":"101ho","cf1":7,"nickname":"kk"},"kyc":{"result":"Approved","attempts":[{"attemptCnt":"1","ocrResult":"success","deviceInfo":{"os":"iOS 17"},"liveness":{"score":"8.1","probability":0.99,"quality":0.75}}],"reviewNote":"ok"},"aml":{"risk_level_summary":"Not Screened","currentstatus":"Not Screened","provider":"X"},"deleted":true}"#;
    let raw: Value = serde_json::from_str(text).unwrap();
    let view = Submission::from_value(&raw).unwrap();
    assert_eq!(view.kyc_result(), Some(&KycResult::Approved));
    assert_eq!(
        view.event_time().unwrap().to_rfc3339(),
        "2025-01-02T03:04:05.678+00:00"
    );
    assert_eq!(
        Submission::unknown_fields(&raw),
        [
            "riskScore",
            "deleted",
            "data.address_street2",
            "data.nickname"
        ]
    );
    // The raw value is the single source of truth: written back, it is the
    // input byte for byte (key order kept by serde_json's preserve_order).
    assert_eq!(serde_json::to_string(&raw).unwrap(), text);
    assert_eq!(raw["kyc"]["attempts"][0]["deviceInfo"]["os"], "iOS 17");
}

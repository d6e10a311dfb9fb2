//! Every operator against missing fields, nulls, arrays, numeric strings and
//! mixed case, through the public API (rule text in, alert or not out).

use kyc_sentinel::rules::{MemoryState, ScriptLimits, load_sources};
use serde_json::{Value, json};

/// Whether `condition` (YAML, one line) holds for the submission `fields`.
fn holds(condition: &str, fields: Value) -> bool {
    let text = format!("- id: t\n  severity: low\n  when: {condition}\n");
    let set = load_sources(&[("t.yaml".into(), text)], ScriptLimits::default())
        .unwrap_or_else(|d| panic!("{condition}: {}", d[0]));
    let mut s = json!({"submission_id": "s1", "created_at": "2024-05-01-10-00-00-000"});
    for (k, v) in fields.as_object().unwrap() {
        s[k] = v.clone();
    }
    let out = set.evaluate_batch(&[s], &mut MemoryState::new());
    assert!(out.rejected.is_empty());
    out.alerts().count() == 1
}

/// A table: (condition, submission fields, expected).
fn table(rows: &[(&str, Value, bool)]) {
    let mut failures = Vec::new();
    for (cond, fields, want) in rows {
        let got = holds(cond, fields.clone());
        if got != *want {
            failures.push(format!("{cond} on {fields}: expected {want}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn eq_and_ne() {
    table(&[
        (
            "{field: aml.risk_level_summary, eq: high}",
            json!({"aml": {"risk_level_summary": "HIGH"}}),
            true,
        ),
        (
            "{field: aml.risk_level_summary, eq: High}",
            json!({"aml": {"risk_level_summary": "high"}}),
            true,
        ),
        (
            "{field: aml.risk_level_summary, eq: high}",
            json!({"aml": {"risk_level_summary": "Medium"}}),
            false,
        ),
        (
            "{field: aml.risk_level_summary, eq: high}",
            json!({"aml": {"risk_level_summary": null}}),
            false,
        ),
        (
            "{field: aml.risk_level_summary, eq: high}",
            json!({"aml": null}),
            false,
        ),
        (
            "{field: aml.risk_level_summary, eq: high}",
            json!({}),
            false,
        ),
        (
            "{field: kyc.commentCode, eq: TOO_MANY_RETRY}",
            json!({"kyc": {"commentCode": ["timeout", "too_many_retry"]}}),
            true,
        ),
        (
            "{field: kyc.commentCode, eq: too_many_retry}",
            json!({"kyc": {"commentCode": []}}),
            false,
        ),
        ("{field: x, eq: 99}", json!({"x": "99"}), true),
        ("{field: x, eq: 99}", json!({"x": 99.0}), true),
        ("{field: x, eq: \"99.0\"}", json!({"x": 99}), true),
        ("{field: x, eq: \"99\"}", json!({"x": " 99.0 "}), true),
        ("{field: x, eq: 99}", json!({"x": "99a"}), false),
        ("{field: x, eq: 99}", json!({"x": {"y": 99}}), false),
        ("{field: x, eq: true}", json!({"x": true}), true),
        ("{field: x, eq: true}", json!({"x": "True"}), true),
        ("{field: x, eq: false}", json!({"x": true}), false),
        (
            "{field: data.name, eq: ÉLODIE}",
            json!({"data": {"name": "élodie"}}),
            true,
        ),
        (
            "{field: kyc.result, ne: approved}",
            json!({"kyc": {"result": "Rejected"}}),
            true,
        ),
        (
            "{field: kyc.result, ne: approved}",
            json!({"kyc": {"result": "APPROVED"}}),
            false,
        ),
        // ne holds when the field is missing or null.
        ("{field: kyc.result, ne: approved}", json!({}), true),
        (
            "{field: kyc.result, ne: approved}",
            json!({"kyc": {"result": null}}),
            true,
        ),
        (
            "{field: kyc.commentCode, ne: timeout}",
            json!({"kyc": {"commentCode": ["timeout", "other"]}}),
            false,
        ),
        ("{field: x, ne: 5}", json!({"x": "5.0"}), false),
    ]);
}

#[test]
fn in_and_not_in() {
    table(&[
        (
            "{field: kyc.result, in: [rejected, pending]}",
            json!({"kyc": {"result": "Pending"}}),
            true,
        ),
        (
            "{field: kyc.result, in: [rejected, pending]}",
            json!({"kyc": {"result": "approved"}}),
            false,
        ),
        (
            "{field: kyc.result, in: [rejected, pending]}",
            json!({}),
            false,
        ),
        (
            "{field: kyc.commentCode, in: [blacklistCountry, id_info_blacklist]}",
            json!({"kyc": {"commentCode": ["timeout", "ID_INFO_BLACKLIST"]}}),
            true,
        ),
        ("{field: x, in: [1, 2, 3]}", json!({"x": "2"}), true),
        ("{field: x, in: [1, 2, 3]}", json!({"x": null}), false),
        (
            "{field: data.nationality, not_in: [KOR, USA]}",
            json!({"data": {"nationality": "prk"}}),
            true,
        ),
        (
            "{field: data.nationality, not_in: [KOR, USA]}",
            json!({"data": {"nationality": "kor"}}),
            false,
        ),
        (
            "{field: data.nationality, not_in: [KOR, USA]}",
            json!({}),
            true,
        ),
        (
            "{field: kyc.commentCode, not_in: [timeout]}",
            json!({"kyc": {"commentCode": ["other", "TIMEOUT"]}}),
            false,
        ),
        ("{field: x, not_in: [1]}", json!({"x": [2, "1.0"]}), false),
    ]);
}

#[test]
fn comparisons() {
    table(&[
        ("{field: x, gt: 50}", json!({"x": 51}), true),
        ("{field: x, gt: 50}", json!({"x": 50}), false),
        ("{field: x, gte: 50}", json!({"x": 50}), true),
        ("{field: x, gte: 50}", json!({"x": "50"}), true),
        ("{field: x, lt: 50}", json!({"x": "49.5"}), true),
        ("{field: x, lt: 50}", json!({"x": "low"}), false),
        ("{field: x, lt: 50}", json!({"x": true}), false),
        ("{field: x, lt: 50}", json!({"x": null}), false),
        ("{field: x, lt: 50}", json!({}), false),
        ("{field: x, lt: 50}", json!({"x": "NaN"}), false),
        ("{field: x, lte: 50}", json!({"x": 50.0}), true),
        ("{field: x, lte: -1}", json!({"x": 0}), false),
        (
            "{field: 'kyc.attempts[*].livenessScore', lt: 50}",
            json!({"kyc": {"attempts": [{"livenessScore": 99}, {"livenessScore": 10}]}}),
            true,
        ),
        (
            "{field: 'kyc.attempts[0].livenessScore', lt: 50}",
            json!({"kyc": {"attempts": [{"livenessScore": 99}, {"livenessScore": 10}]}}),
            false,
        ),
        (
            "{field: 'kyc.attempts[1].livenessScore', lt: 50}",
            json!({"kyc": {"attempts": [{"livenessScore": 99}, {"livenessScore": 10}]}}),
            true,
        ),
    ]);
}

#[test]
fn contains_matches_exists() {
    table(&[
        (
            "{field: kyc.comment, contains: invalid kyc}",
            json!({"kyc": {"comment": ["Multiple INVALID KYC attempts "]}}),
            true,
        ),
        (
            "{field: kyc.comment, contains: timeout}",
            json!({"kyc": {"comment": ["Multiple invalid KYC attempts"]}}),
            false,
        ),
        ("{field: kyc.comment, contains: x}", json!({}), false),
        ("{field: x, contains: \"9\"}", json!({"x": 99}), false),
        (
            "{field: data.name, contains: ÖZ}",
            json!({"data": {"name": "Mehmet Özdemir"}}),
            true,
        ),
        (
            "{field: email, matches: '@example\\.com$'}",
            json!({"email": "a@example.com"}),
            true,
        ),
        (
            "{field: email, matches: '@example\\.com$'}",
            json!({"email": "a@EXAMPLE.com"}),
            false,
        ),
        (
            "{field: email, matches: '(?i)@example\\.com$'}",
            json!({"email": "a@EXAMPLE.com"}),
            true,
        ),
        (
            "{field: email, matches: 'x'}",
            json!({"email": null}),
            false,
        ),
        ("{field: x, matches: '^9'}", json!({"x": 99}), false),
        (
            "{field: userid, exists: true}",
            json!({"userid": "u1"}),
            true,
        ),
        (
            "{field: userid, exists: true}",
            json!({"userid": null}),
            false,
        ),
        (
            "{field: userid, exists: true}",
            json!({"userid": []}),
            false,
        ),
        ("{field: userid, exists: false}", json!({}), true),
        (
            "{field: userid, exists: false}",
            json!({"userid": ""}),
            false,
        ),
        (
            "{field: 'kyc.attempts[*].retryCode', exists: true}",
            json!({"kyc": {"attempts": [{}, {"retryCode": ["liveness_error"]}]}}),
            true,
        ),
    ]);
}

#[test]
fn every() {
    let attempts = |scores: Value| json!({"kyc": {"attempts": scores}});
    table(&[
        (
            "{field: 'kyc.attempts[*].livenessScore', lt: 50, every: true}",
            attempts(json!([{"livenessScore": 10}, {"livenessScore": "20"}])),
            true,
        ),
        (
            "{field: 'kyc.attempts[*].livenessScore', lt: 50, every: true}",
            attempts(json!([{"livenessScore": 10}, {"livenessScore": 99}])),
            false,
        ),
        // at least one value
        (
            "{field: 'kyc.attempts[*].livenessScore', lt: 50, every: true}",
            attempts(json!([])),
            false,
        ),
        (
            "{field: 'kyc.attempts[*].livenessScore', lt: 50, every: true}",
            json!({}),
            false,
        ),
        // nulls yield nothing; a non-number fails the comparison
        (
            "{field: 'kyc.attempts[*].livenessScore', lt: 50, every: true}",
            attempts(json!([{"livenessScore": 10}, {"livenessScore": null}])),
            true,
        ),
        (
            "{field: 'kyc.attempts[*].livenessScore', lt: 50, every: true}",
            attempts(json!([{"livenessScore": 10}, {"livenessScore": "n/a"}])),
            false,
        ),
        (
            "{field: 'kyc.attempts[*].retryCode', eq: LIVENESS_ERROR, every: true}",
            attempts(json!([{"retryCode": ["liveness_error"]}, {"retryCode": ["liveness_error"]}])),
            true,
        ),
        (
            "{field: 'kyc.attempts[*].retryCode', eq: liveness_error, every: true}",
            attempts(json!([{"retryCode": ["liveness_error", "face_compare_underscore"]}])),
            false,
        ),
        (
            "{field: 'kyc.attempts[*].retryCode', in: [liveness_error, face_compare_underscore], every: true}",
            attempts(json!([{"retryCode": ["liveness_error", "face_compare_underscore"]}])),
            true,
        ),
        (
            "{field: kyc.commentCode, ne: timeout, every: true}",
            json!({"kyc": {"commentCode": ["other"]}}),
            true,
        ),
        (
            "{field: kyc.commentCode, ne: timeout, every: true}",
            json!({}),
            false,
        ),
        (
            "{field: kyc.commentCode, not_in: [timeout], every: true}",
            json!({"kyc": {"commentCode": ["other", "Timeout"]}}),
            false,
        ),
        (
            "{field: kyc.comment, contains: retry, every: true}",
            json!({"kyc": {"comment": ["retry a", "RETRY b"]}}),
            true,
        ),
        (
            "{field: kyc.comment, matches: '^r', every: true}",
            json!({"kyc": {"comment": ["retry a", "RETRY b"]}}),
            false,
        ),
        (
            "{field: x, gte: 1, every: true}",
            json!({"x": [1, 2, [3, "4"]]}),
            true,
        ),
    ]);
}

#[test]
fn combinators_and_scripts() {
    table(&[
        (
            "{all: [{field: a, eq: 1}, {field: b, eq: 2}]}",
            json!({"a": 1, "b": 2}),
            true,
        ),
        (
            "{all: [{field: a, eq: 1}, {field: b, eq: 2}]}",
            json!({"a": 1}),
            false,
        ),
        (
            "{any: [{field: a, eq: 1}, {field: b, eq: 2}]}",
            json!({"b": "2"}),
            true,
        ),
        (
            "{any: [{field: a, eq: 1}, {field: b, eq: 2}]}",
            json!({}),
            false,
        ),
        ("{not: {field: a, exists: true}}", json!({}), true),
        ("{not: {field: a, eq: x}}", json!({"a": "X"}), false),
        (
            "{script: 's.kyc.result == \"rejected\"'}",
            json!({"kyc": {"result": "rejected"}}),
            true,
        ),
        ("{script: 's.kyc.result == \"rejected\"'}", json!({}), false),
        (
            "{script: 's.derived.event_time == \"2024-05-01T10:00:00.000Z\"'}",
            json!({}),
            true,
        ),
        (
            "{script: 's.kyc.attempts.len() >= 2'}",
            json!({"kyc": {"attempts": [{}, {}]}}),
            true,
        ),
        // a non-boolean result never matches
        ("{script: '1'}", json!({}), false),
    ]);
}

//! Submission timestamps and event time.
//!
//! Argos writes `YYYY-MM-DD-HH-MM-SS-ZZZ` (UTC, milliseconds); the simulator
//! and derived fields use RFC 3339. This is a private stand-in until
//! `argos::model::{parse_timestamp, event_time}` lands; swap it then.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::Value;

/// Parses `2024-05-01-13-45-10-123` or RFC 3339 (any offset, made UTC).
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(t, "%Y-%m-%d-%H-%M-%S-%3f")
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%d-%H-%M-%S"))
        .ok()
        .map(|n| n.and_utc())
}

/// `updated_at`, else `created_at`: the time the rules see.
pub fn event_time(submission: &Value) -> Option<DateTime<Utc>> {
    ["updated_at", "created_at"].iter().find_map(|k| {
        submission
            .get(*k)
            .and_then(Value::as_str)
            .and_then(parse_timestamp)
    })
}

/// RFC 3339 UTC with milliseconds, the one way times are written out.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_forms() {
        let a = parse_timestamp("2024-05-01-13-45-10-123").unwrap();
        assert_eq!(format_time(a), "2024-05-01T13:45:10.123Z");
        let b = parse_timestamp("2024-05-01T15:45:10.123+02:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(parse_timestamp("yesterday"), None);
        let s = json!({"created_at": "2024-05-01-00-00-00-000", "updated_at": "2024-05-02-00-00-00-000"});
        assert_eq!(
            format_time(event_time(&s).unwrap()),
            "2024-05-02T00:00:00.000Z"
        );
        let s = json!({"created_at": "2024-05-01-00-00-00-000", "updated_at": null});
        assert_eq!(
            format_time(event_time(&s).unwrap()),
            "2024-05-01T00:00:00.000Z"
        );
    }
}

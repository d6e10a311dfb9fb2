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
    if let Some(dt) = parse_argos_fast(t) {
        return Some(dt);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(t, "%Y-%m-%d-%H-%M-%S-%3f")
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%d-%H-%M-%S"))
        .ok()
        .map(|n| n.and_utc())
}

/// `YYYY-MM-DD-HH-MM-SS-ZZZ` read digit by digit: every submission's event
/// time goes through here, and chrono's format parser dominated evaluation.
fn parse_argos_fast(t: &str) -> Option<DateTime<Utc>> {
    let b = t.as_bytes();
    if b.len() != 23 || [4, 7, 10, 13, 16, 19].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
    let time = date.and_hms_milli_opt(num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?)?;
    Some(time.and_utc())
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
        assert_eq!(parse_timestamp("2024-02-30-00-00-00-000"), None);
        assert_eq!(parse_timestamp("2024-05-01-13-45-1x-123"), None);
        assert_eq!(
            parse_timestamp("2024-05-01-13-45-10"),
            parse_timestamp("2024-05-01-13-45-10-000")
        );
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

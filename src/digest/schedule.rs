//! When digests run: a 5-field crontab read in an IANA time zone.
//!
//! Pure. croner does the calendar work, including daylight saving time: a
//! fixed time inside a gap (02:30 on the spring-forward night in Berlin) runs
//! at the first valid time after the gap, and a fixed time in a repeated hour
//! runs once, on its first pass. Everything leaves here as UTC instants, which
//! are what the store records, so the same scheduled time is never run twice.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

fn cron_parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
}

/// One crontab field: its name, allowed range and names (`JAN`, `MON`).
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    FieldSpec {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    FieldSpec {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    FieldSpec {
        name: "month",
        min: 1,
        max: 12,
        names: &[
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ],
    },
    FieldSpec {
        name: "day of week",
        min: 0,
        max: 7,
        names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    },
];

/// Checks the numbers of one field (`*`, `5`, `1-5`, `*/15`, `1,3`, names)
/// against its range, so `0 25 * * *` says "hour `25` is out of range 0-23"
/// rather than croner's "Number out of bounds". Other syntax is left to croner.
fn check_field(text: &str, spec: &FieldSpec) -> Result<(), String> {
    let range = format!("{}-{}", spec.min, spec.max);
    for item in text.split(',') {
        let (body, step) = match item.split_once('/') {
            Some((b, s)) => (b, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step
            && step.parse::<u32>().map_or(true, |n| n == 0)
        {
            return Err(format!(
                "{} step `{step}` must be a whole number of at least 1",
                spec.name
            ));
        }
        if body == "*" || body == "?" {
            continue;
        }
        for part in body.split('-') {
            let upper = part.to_ascii_uppercase();
            if spec.names.contains(&upper.as_str()) {
                continue;
            }
            let ok = part
                .parse::<u32>()
                .is_ok_and(|n| (spec.min..=spec.max).contains(&n));
            // Let croner judge what is not a plain number (`L`, `5#2`).
            if !ok && part.bytes().all(|b| b.is_ascii_digit()) {
                let names = if spec.names.is_empty() {
                    String::new()
                } else {
                    format!(" or {}-{}", spec.names[0], spec.names[spec.names.len() - 1])
                };
                return Err(format!(
                    "{} `{part}` is out of range {range}{names}",
                    spec.name
                ));
            }
        }
    }
    Ok(())
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
    pattern: String,
}

/// Scheduled times handled in one catch-up at most: a digest every minute
/// after a month down is not worth 43,200 messages (`combined` has no limit).
pub const MAX_CATCH_UP: usize = 1000;

impl Schedule {
    /// `pattern` is the standard 5-field crontab (minute hour day month
    /// weekday); `timezone` an IANA name. The error has every problem, one
    /// `field: message` per line.
    pub fn parse(pattern: &str, timezone: &str) -> Result<Schedule, String> {
        let problems = Self::problems(pattern, timezone);
        if !problems.is_empty() {
            return Err(problems
                .iter()
                .map(|(f, m)| format!("{f}: {m}"))
                .collect::<Vec<_>>()
                .join("\n"));
        }
        let tz: Tz = timezone.parse().expect("checked by problems()");
        let cron = cron_parser()
            .parse(pattern)
            .map_err(|e| format!("schedule: `{pattern}`: {e}"))?;
        Ok(Schedule {
            cron,
            tz,
            pattern: pattern.to_owned(),
        })
    }

    /// Every problem of a schedule and its time zone, as (`schedule` or
    /// `timezone`, message): a bad time zone does not hide a bad schedule.
    pub fn problems(pattern: &str, timezone: &str) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if timezone.parse::<Tz>().is_err() {
            out.push((
                "timezone",
                format!("`{timezone}` is not an IANA time zone (e.g. `Asia/Seoul`, `UTC`)"),
            ));
        }
        let fields: Vec<&str> = pattern.split_whitespace().collect();
        if fields.len() != 5 {
            out.push((
                "schedule",
                format!(
                    "`{pattern}` has {} fields; a crontab has 5 (minute hour day month weekday), e.g. `0 8 * * *`",
                    fields.len()
                ),
            ));
            return out;
        }
        let field_errs: Vec<String> = fields
            .iter()
            .zip(FIELDS.iter())
            .filter_map(|(text, spec)| check_field(text, spec).err())
            .collect();
        if !field_errs.is_empty() {
            out.push((
                "schedule",
                format!("`{pattern}`: {}", field_errs.join("; ")),
            ));
        } else if let Err(e) = cron_parser().parse(pattern) {
            out.push(("schedule", format!("`{pattern}`: {e}")));
        }
        out
    }

    /// What the store remembers the schedule by: a change starts it afresh.
    pub fn key(&self) -> String {
        format!("{} {}", self.pattern, self.tz.name())
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first scheduled time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|x| x.with_timezone(&Utc))
    }

    /// The last scheduled time strictly before `t`.
    pub fn previous_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|x| x.with_timezone(&Utc))
    }

    /// Scheduled times in `(after, until]`, oldest first, at most `limit`
    /// (the newest ones are kept: they matter most to the reader).
    pub fn between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = std::collections::VecDeque::new();
        let mut t = after;
        while let Some(n) = self.next_after(t) {
            if n > until {
                break;
            }
            if out.len() == limit {
                out.pop_front();
            }
            out.push_back(n);
            t = n;
        }
        out.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn seoul_eight_is_twenty_three_utc() {
        let s = Schedule::parse("0 8 * * *", "Asia/Seoul").unwrap();
        assert_eq!(
            s.next_after(utc("2026-11-26T12:00:00Z")),
            Some(utc("2026-11-26T23:00:00Z"))
        );
        assert_eq!(
            s.previous_before(utc("2026-11-26T23:00:00Z")),
            Some(utc("2026-11-25T23:00:00Z"))
        );
    }

    #[test]
    fn refused_patterns_say_why() {
        assert_eq!(
            Schedule::parse("0 0 8 * * *", "UTC").unwrap_err(),
            "schedule: `0 0 8 * * *` has 6 fields; a crontab has 5 (minute hour day month weekday), e.g. `0 8 * * *`"
        );
        assert_eq!(
            Schedule::parse("0 8 * * *", "Mars/Olympus").unwrap_err(),
            "timezone: `Mars/Olympus` is not an IANA time zone (e.g. `Asia/Seoul`, `UTC`)"
        );
        assert_eq!(
            Schedule::parse("0 25 * * *", "UTC").unwrap_err(),
            "schedule: `0 25 * * *`: hour `25` is out of range 0-23"
        );
        assert_eq!(
            Schedule::parse("60 8 32 13 8", "UTC").unwrap_err(),
            "schedule: `60 8 32 13 8`: minute `60` is out of range 0-59; \
             day of month `32` is out of range 1-31; month `13` is out of range 1-12 or JAN-DEC; \
             day of week `8` is out of range 0-7 or SUN-SAT"
        );
        // A bad time zone does not hide a bad schedule.
        assert_eq!(
            Schedule::problems("0 25 * * *", "Asia/Soul"),
            vec![
                (
                    "timezone",
                    "`Asia/Soul` is not an IANA time zone (e.g. `Asia/Seoul`, `UTC`)".to_string()
                ),
                (
                    "schedule",
                    "`0 25 * * *`: hour `25` is out of range 0-23".to_string()
                ),
            ]
        );
        assert_eq!(
            Schedule::parse("*/0 * * * *", "UTC").unwrap_err(),
            "schedule: `*/0 * * * *`: minute step `0` must be a whole number of at least 1"
        );
        for ok in ["*/15 9-17 * JAN-MAR mon-fri", "0 8 1,15 * 0", "0 8 * * 7"] {
            assert!(Schedule::parse(ok, "UTC").is_ok(), "{ok}");
        }
    }

    #[test]
    fn berlin_gap_runs_at_the_next_valid_time_and_repeated_hour_once() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
        let s = Schedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let got = s.between(utc("2026-03-27T12:00:00Z"), utc("2026-03-30T12:00:00Z"), 10);
        assert_eq!(
            got,
            vec![
                utc("2026-03-28T01:30:00Z"), // 02:30 CET
                utc("2026-03-29T01:00:00Z"), // gap: 03:00 CEST, the first valid time after it
                utc("2026-03-30T00:30:00Z"), // 02:30 CEST
            ]
        );
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        let got = s.between(utc("2026-10-24T12:00:00Z"), utc("2026-10-26T12:00:00Z"), 10);
        assert_eq!(
            got,
            vec![
                utc("2026-10-25T00:30:00Z"), // 02:30 CEST, the first pass; not again at 01:30Z
                utc("2026-10-26T01:30:00Z"), // 02:30 CET
            ]
        );
    }

    #[test]
    fn catch_up_keeps_the_newest_when_limited() {
        let s = Schedule::parse("0 * * * *", "UTC").unwrap();
        let got = s.between(utc("2026-01-01T00:00:00Z"), utc("2026-01-01T05:00:00Z"), 2);
        assert_eq!(
            got,
            vec![utc("2026-01-01T04:00:00Z"), utc("2026-01-01T05:00:00Z")]
        );
    }
}

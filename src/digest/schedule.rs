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
    /// weekday); `timezone` an IANA name.
    pub fn parse(pattern: &str, timezone: &str) -> Result<Schedule, String> {
        let tz: Tz = timezone.parse().map_err(|_| {
            format!("timezone: `{timezone}` is not an IANA time zone (e.g. `Asia/Seoul`, `UTC`)")
        })?;
        let fields = pattern.split_whitespace().count();
        if fields != 5 {
            return Err(format!(
                "schedule: `{pattern}` has {fields} fields; a crontab has 5 (minute hour day month weekday), e.g. `0 8 * * *`"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(pattern)
            .map_err(|e| format!("schedule: `{pattern}`: {e}"))?;
        Ok(Schedule {
            cron,
            tz,
            pattern: pattern.to_owned(),
        })
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
        assert!(
            Schedule::parse("0 25 * * *", "UTC")
                .unwrap_err()
                .starts_with("schedule: `0 25 * * *`: ")
        );
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

//! What a digest says: the period's alerts counted and compared, the ones that
//! need a person, and whether the engine itself is well.
//!
//! Pure: the store's rows go in, one serializable report comes out, which the
//! templates turn into HTML and text. Keeping the I/O out makes the report
//! testable from a fixed set of alerts, and the snapshots stable.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::DigestFilters;
use crate::store::shadow::ShadowCount;
use crate::store::{DeadLetter, DigestAlert, RuleErrorRow, fmt_time};

/// The rows a report is made from.
#[derive(Debug, Clone, Default)]
pub struct ReportInput {
    pub name: String,
    pub timezone: String,
    /// `schedule`, `catch_up`, `send_now` or `preview`.
    pub trigger: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub slots: u32,
    /// Alerts fired in the period.
    pub alerts: Vec<DigestAlert>,
    /// Alerts fired in the period of the same length before it.
    pub previous: Vec<DigestAlert>,
    /// Alerts still open at the period's end, oldest first.
    pub open: Vec<DigestAlert>,
    pub rule_errors: Vec<RuleErrorRow>,
    pub dead_letters: Vec<DeadLetter>,
    pub last_successful_poll: Option<DateTime<Utc>>,
    /// UTC day of the period's end, and the Argos calls counted on it.
    pub api_day: String,
    pub api_calls: u64,
    pub daily_budget: u64,
    /// Shadow rules' alerts fired in the period (never counted as alerts).
    pub shadow: Vec<ShadowCount>,
}

/// How many rows each list shows at most.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub top: usize,
    pub open: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub name: String,
    pub timezone: String,
    pub trigger: String,
    pub period: Period,
    pub totals: Totals,
    pub severities: Vec<Count>,
    pub rules: Vec<Count>,
    pub top_applicants: Vec<Top>,
    pub top_users: Vec<Top>,
    pub critical_high: Vec<AlertLine>,
    pub delivery_failures: Failures,
    pub rule_errors: RuleErrors,
    pub health: Health,
    pub open_alerts: OpenAlerts,
    pub filters: DigestFilters,
    /// "Shadow rules": what each would have fired, beside the rule it may replace.
    pub shadow_rules: Vec<ShadowLine>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShadowLine {
    pub rule: String,
    pub would_have_fired: usize,
    pub replaces: Option<String>,
    /// Alerts of the replaced rule in the period (as counted above).
    pub replaced_fired: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Period {
    pub start: String,
    pub end: String,
    /// Scheduled times covered; more than one after a combined catch-up.
    pub slots: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub alerts: usize,
    pub previous: usize,
    /// `+3`, `-2`, `0`: the change against the previous period.
    pub change: String,
    pub silenced: usize,
    pub critical_high: usize,
}

/// Alerts of one severity, or of one rule (with its severity).
#[derive(Debug, Clone, Serialize)]
pub struct Count {
    pub rule: Option<String>,
    pub severity: String,
    pub count: usize,
    pub previous: usize,
    pub change: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Top {
    pub id: String,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertLine {
    pub fingerprint: String,
    pub rule: String,
    pub severity: String,
    pub submission_id: String,
    pub fired_at: String,
    pub state: String,
    pub silenced: bool,
    /// At the period's end, e.g. `2d 4h`.
    pub age: String,
    /// The last escalation step sent, once escalation records it.
    pub last_step: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failures {
    pub count: usize,
    pub items: Vec<Failure>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub receiver: String,
    pub key: String,
    pub error: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleErrors {
    pub count: usize,
    pub by_rule: Vec<RuleErrorCount>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleErrorCount {
    pub rule: String,
    pub count: usize,
    pub last_error: String,
    pub last_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub last_successful_poll: Option<String>,
    /// How long before the period's end the last poll succeeded.
    pub last_poll_age: Option<String>,
    pub api_day: String,
    pub api_calls: u64,
    pub daily_budget: u64,
    /// `12.5` (percent of the daily budget).
    pub api_budget_used_pct: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpenAlerts {
    pub count: usize,
    pub shown: Vec<AlertLine>,
}

/// Lists longer than this show their first rows and a count.
const MAX_ITEMS: usize = 50;
/// Error texts are cut: they are for recognising a problem, the log has the rest.
const MAX_ERROR_CHARS: usize = 200;

/// Severities from most to least urgent; unknown ones sort last.
pub fn severity_rank(s: &str) -> usize {
    ["critical", "high", "medium", "low", "info"]
        .iter()
        .position(|x| x.eq_ignore_ascii_case(s))
        .unwrap_or(5)
}

pub fn matches(f: &DigestFilters, a: &DigestAlert) -> bool {
    (f.rules.is_empty() || f.rules.iter().any(|r| r == &a.rule))
        && (f.severities.is_empty()
            || f.severities
                .iter()
                .any(|s| s.eq_ignore_ascii_case(&a.severity)))
        && f.labels
            .iter()
            .all(|(k, v)| a.labels.get(k).is_some_and(|x| x == v))
}

/// `+3`, `-2`, `0`.
pub fn signed(now: usize, before: usize) -> String {
    let d = now as i64 - before as i64;
    if d > 0 {
        format!("+{d}")
    } else {
        d.to_string()
    }
}

/// `3d 4h`, `5h 12m`, `42m`, `<1m`.
pub fn age(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let m = (to - from).num_minutes().max(0);
    let (d, h, m) = (m / 1440, m / 60 % 24, m % 60);
    match (d, h, m) {
        (0, 0, 0) => "<1m".into(),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

fn cut(s: &str) -> String {
    let s = safe(s);
    if s.chars().count() <= MAX_ERROR_CHARS {
        s
    } else {
        s.chars().take(MAX_ERROR_CHARS).collect::<String>() + "…"
    }
}

/// A value from outside (submission and user ids, errors) as the digest text
/// and HTML show it: control characters escaped, so none can forge a line
/// (see [`crate::util::display_safe`]).
fn safe(s: &str) -> String {
    crate::util::display_safe(s).to_string()
}

/// Most frequent first, then by id; `None` ids are not counted.
fn top<'a>(ids: impl Iterator<Item = Option<&'a str>>, n: usize) -> Vec<Top> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in ids.flatten() {
        *counts.entry(id).or_default() += 1;
    }
    let mut v: Vec<(&str, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    v.truncate(n);
    v.into_iter()
        .map(|(id, count)| Top {
            // A user id may be an email address; it is shown masked.
            id: safe(&if id.contains('@') {
                crate::templates::mask_email(id)
            } else {
                id.to_owned()
            }),
            count,
        })
        .collect()
}

fn line(a: &DigestAlert, at: DateTime<Utc>) -> AlertLine {
    AlertLine {
        fingerprint: a.fingerprint.clone(),
        rule: safe(&a.rule),
        severity: safe(&a.severity),
        submission_id: safe(&a.submission_id),
        fired_at: fmt_time(a.fired_at),
        state: a.state.clone(),
        silenced: a.silenced,
        age: age(a.fired_at, at),
        last_step: None,
    }
}

/// The report of one period.
pub fn build(input: &ReportInput, filters: &DigestFilters, limits: Limits) -> Report {
    let keep = |v: &[DigestAlert]| -> Vec<DigestAlert> {
        v.iter().filter(|a| matches(filters, a)).cloned().collect()
    };
    let alerts = keep(&input.alerts);
    let previous = keep(&input.previous);
    let open = keep(&input.open);
    let end = input.period_end;

    let mut sev_now: BTreeMap<(usize, String), usize> = BTreeMap::new();
    let mut sev_before: BTreeMap<(usize, String), usize> = BTreeMap::new();
    let mut rule_now: BTreeMap<(usize, String, String), usize> = BTreeMap::new();
    let mut rule_before: BTreeMap<(usize, String, String), usize> = BTreeMap::new();
    for (list, sev, rule) in [
        (&alerts, &mut sev_now, &mut rule_now),
        (&previous, &mut sev_before, &mut rule_before),
    ] {
        for a in list.iter() {
            let s = a.severity.to_lowercase();
            *sev.entry((severity_rank(&s), s.clone())).or_default() += 1;
            *rule
                .entry((severity_rank(&s), a.rule.clone(), s))
                .or_default() += 1;
        }
    }
    let mut severities: Vec<Count> = sev_now
        .keys()
        .chain(sev_before.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|k| {
            let (n, b) = (
                sev_now.get(k).copied().unwrap_or(0),
                sev_before.get(k).copied().unwrap_or(0),
            );
            Count {
                rule: None,
                severity: k.1.clone(),
                count: n,
                previous: b,
                change: signed(n, b),
            }
        })
        .collect();
    severities.sort_by_key(|c| severity_rank(&c.severity));
    let mut rules: Vec<Count> = rule_now
        .keys()
        .chain(rule_before.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|k| {
            let (n, b) = (
                rule_now.get(k).copied().unwrap_or(0),
                rule_before.get(k).copied().unwrap_or(0),
            );
            Count {
                rule: Some(k.1.clone()),
                severity: k.2.clone(),
                count: n,
                previous: b,
                change: signed(n, b),
            }
        })
        .collect();
    // Most urgent first, then the busiest.
    rules.sort_by(|a, b| {
        severity_rank(&a.severity)
            .cmp(&severity_rank(&b.severity))
            .then(b.count.cmp(&a.count))
            .then_with(|| a.rule.cmp(&b.rule))
    });

    let urgent: Vec<&DigestAlert> = alerts
        .iter()
        .filter(|a| severity_rank(&a.severity) <= 1)
        .collect();
    let mut critical_high: Vec<AlertLine> = urgent.iter().map(|a| line(a, end)).collect();
    critical_high.sort_by(|a, b| {
        severity_rank(&a.severity)
            .cmp(&severity_rank(&b.severity))
            .then_with(|| a.fired_at.cmp(&b.fired_at))
    });
    critical_high.truncate(MAX_ITEMS);

    let mut by_rule: BTreeMap<&str, RuleErrorCount> = BTreeMap::new();
    for e in &input.rule_errors {
        let c = by_rule.entry(&e.rule).or_insert_with(|| RuleErrorCount {
            rule: e.rule.clone(),
            count: 0,
            last_error: String::new(),
            last_at: String::new(),
        });
        c.count += 1;
        c.last_error = cut(&e.error);
        c.last_at = fmt_time(e.at);
    }
    let mut by_rule: Vec<RuleErrorCount> = by_rule.into_values().collect();
    by_rule.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.rule.cmp(&b.rule)));

    let pct = if input.daily_budget == 0 {
        "0.0".to_owned()
    } else {
        format!(
            "{:.1}",
            input.api_calls as f64 * 100.0 / input.daily_budget as f64
        )
    };

    let shadow_rules = input
        .shadow
        .iter()
        .map(|c| ShadowLine {
            rule: c.rule.clone(),
            would_have_fired: c.count,
            replaces: c.replaces.clone(),
            replaced_fired: c
                .replaces
                .as_ref()
                .map(|r| alerts.iter().filter(|a| &a.rule == r).count()),
        })
        .collect();

    Report {
        shadow_rules,
        name: input.name.clone(),
        timezone: input.timezone.clone(),
        trigger: input.trigger.clone(),
        period: Period {
            start: fmt_time(input.period_start),
            end: fmt_time(end),
            slots: input.slots,
        },
        totals: Totals {
            alerts: alerts.len(),
            previous: previous.len(),
            change: signed(alerts.len(), previous.len()),
            silenced: alerts.iter().filter(|a| a.silenced).count(),
            critical_high: urgent.len(),
        },
        severities,
        rules,
        top_applicants: top(alerts.iter().map(|a| a.applicant_id.as_deref()), limits.top),
        top_users: top(alerts.iter().map(|a| a.userid.as_deref()), limits.top),
        critical_high,
        delivery_failures: Failures {
            count: input.dead_letters.len(),
            items: input
                .dead_letters
                .iter()
                .take(MAX_ITEMS)
                .map(|d| Failure {
                    receiver: safe(&d.receiver),
                    key: safe(&d.key),
                    error: cut(&d.error),
                    at: fmt_time(d.at),
                })
                .collect(),
        },
        rule_errors: RuleErrors {
            count: input.rule_errors.len(),
            by_rule,
        },
        health: Health {
            last_successful_poll: input.last_successful_poll.map(fmt_time),
            last_poll_age: input.last_successful_poll.map(|t| age(t, end)),
            api_day: input.api_day.clone(),
            api_calls: input.api_calls,
            daily_budget: input.daily_budget,
            api_budget_used_pct: pct,
        },
        open_alerts: OpenAlerts {
            count: open.len(),
            shown: open
                .iter()
                .take(limits.open)
                .map(|a| line(a, end))
                .collect(),
        },
        filters: filters.clone(),
    }
}

/// A fixed report (made-up alerts), for `check` and template tests.
pub fn sample_input() -> ReportInput {
    let t = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .expect("fixed time")
            .with_timezone(&Utc)
    };
    let alert =
        |fp: &str, rule: &str, sev: &str, sub: &str, at: &str, app: &str, user: &str| DigestAlert {
            fingerprint: fp.repeat(64 / fp.len()),
            rule: rule.into(),
            severity: sev.into(),
            submission_id: sub.into(),
            fired_at: t(at),
            labels: BTreeMap::from([("team".to_string(), "aml".to_string())]),
            applicant_id: Some(app.into()),
            userid: Some(user.into()),
            state: "open".into(),
            silenced: false,
        };
    let mut silenced = alert(
        "c",
        "repeated-rejections",
        "medium",
        "sub-0003",
        "2026-11-26T03:10:00Z",
        "app-0002",
        "user-17",
    );
    silenced.silenced = true;
    let mut acked = alert(
        "d",
        "aml-red-flag-high",
        "critical",
        "sub-0004",
        "2026-11-26T05:00:00Z",
        "app-0003",
        "jane@example.com",
    );
    acked.state = "acknowledged".into();
    let alerts = vec![
        alert(
            "a",
            "aml-red-flag-high",
            "critical",
            "sub-0001",
            "2026-11-25T23:30:00Z",
            "app-0001",
            "user-17",
        ),
        alert(
            "b",
            "document-forgery",
            "high",
            "sub-0002",
            "2026-11-26T01:45:00Z",
            "app-0001",
            "user-17",
        ),
        silenced,
        acked,
    ];
    let previous = vec![alert(
        "e",
        "repeated-rejections",
        "medium",
        "sub-0000",
        "2026-11-25T10:00:00Z",
        "app-0002",
        "user-3",
    )];
    let mut older = alert(
        "f",
        "aml-red-flag-high",
        "critical",
        "sub-0099",
        "2026-11-23T20:00:00Z",
        "app-0009",
        "user-9",
    );
    older.labels.clear();
    let open = vec![older, alerts[0].clone(), alerts[1].clone()];
    ReportInput {
        name: "daily".into(),
        timezone: "Asia/Seoul".into(),
        trigger: "preview".into(),
        period_start: t("2026-11-25T23:00:00Z"),
        period_end: t("2026-11-26T23:00:00Z"),
        slots: 1,
        alerts,
        previous,
        open,
        rule_errors: vec![RuleErrorRow {
            rule: "velocity-script".into(),
            submission_id: "sub-0005".into(),
            error: "script: division by zero".into(),
            at: t("2026-11-26T06:00:00Z"),
        }],
        dead_letters: vec![DeadLetter {
            receiver: "slack".into(),
            key: "b".repeat(64),
            error: "webhook `slack` (bbbb): HTTP 404 Not Found: no_service".into(),
            at: t("2026-11-26T02:00:00Z"),
        }],
        last_successful_poll: Some(t("2026-11-26T22:59:30Z")),
        api_day: "2026-11-26".into(),
        api_calls: 12_500,
        daily_budget: 500_000,
        shadow: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string in the report, for the check below.
    fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }

    #[test]
    fn values_from_outside_are_shown_escaped() {
        let evil = "sid\r\nX-Evil: yes\u{1b}[2J";
        let mut input = sample_input();
        for a in &mut input.alerts {
            a.submission_id = evil.into();
            a.userid = Some(format!("u\n{evil}"));
        }
        input.dead_letters.push(DeadLetter {
            receiver: "hook".into(),
            key: evil.into(),
            error: format!("HTTP 500: {evil}"),
            at: input.period_end,
        });
        let r = build(
            &input,
            &DigestFilters::default(),
            Limits { top: 10, open: 50 },
        );
        assert_eq!(
            r.critical_high[0].submission_id,
            "sid\\r\\nX-Evil: yes\\u{1b}[2J"
        );
        let mut all = Vec::new();
        strings(&serde_json::to_value(&r).unwrap(), &mut all);
        let raw: Vec<&String> = all
            .iter()
            .filter(|s| s.chars().any(char::is_control))
            .collect();
        assert!(raw.is_empty(), "raw control characters: {raw:?}");
        assert!(
            all.iter().any(|s| s.contains("X-Evil")),
            "the values are still shown"
        );
    }

    #[test]
    fn counts_changes_and_filters() {
        let input = sample_input();
        let r = build(
            &input,
            &DigestFilters::default(),
            Limits { top: 10, open: 50 },
        );
        assert_eq!(
            (r.totals.alerts, r.totals.previous, r.totals.change.as_str()),
            (4, 1, "+3")
        );
        assert_eq!((r.totals.silenced, r.totals.critical_high), (1, 3));
        let sev: Vec<(String, usize, String)> = r
            .severities
            .iter()
            .map(|c| (c.severity.clone(), c.count, c.change.clone()))
            .collect();
        assert_eq!(
            sev,
            vec![
                ("critical".into(), 2, "+2".into()),
                ("high".into(), 1, "+1".into()),
                ("medium".into(), 1, "0".into()),
            ]
        );
        assert_eq!(r.top_users[0].id, "user-17");
        assert_eq!(r.top_users[0].count, 3);
        assert!(r.top_users.iter().any(|u| u.id == "j***@example.com"));
        assert_eq!(r.top_applicants[0].id, "app-0001");
        // Open alerts oldest first, with their age at the period's end.
        assert_eq!(r.open_alerts.shown[0].submission_id, "sub-0099");
        assert_eq!(r.open_alerts.shown[0].age, "3d 3h");
        assert_eq!(r.health.api_budget_used_pct, "2.5");

        let only_high = DigestFilters {
            severities: vec!["HIGH".into()],
            ..DigestFilters::default()
        };
        let r = build(&input, &only_high, Limits { top: 10, open: 50 });
        assert_eq!((r.totals.alerts, r.open_alerts.count), (1, 1));
        let by_label = DigestFilters {
            labels: BTreeMap::from([("team".into(), "aml".into())]),
            ..DigestFilters::default()
        };
        let r = build(&input, &by_label, Limits { top: 1, open: 1 });
        assert_eq!((r.open_alerts.count, r.open_alerts.shown.len()), (2, 1));
        assert_eq!(r.top_users.len(), 1);
    }

    #[test]
    fn ages() {
        let t = |m: i64| DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::minutes(m);
        assert_eq!(age(t(0), t(0)), "<1m");
        assert_eq!(age(t(0), t(42)), "42m");
        assert_eq!(age(t(0), t(312)), "5h 12m");
        assert_eq!(age(t(0), t(3 * 1440 + 250)), "3d 4h");
    }
}

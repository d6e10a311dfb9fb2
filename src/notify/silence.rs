//! Silences: a compliance officer's "I know, stop telling me" for a while.
//!
//! A silence names a rule and/or `KEY=VALUE` matchers (the routing keys:
//! `rule`, `severity`, `submission_id`, `group_key`, `fingerprint`, labels)
//! and an expiry. While it holds, a matching alert is still decided and
//! recorded (audit kind `silenced`), but not routed. Matching is pure; the
//! silences live in the store.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::rules::Alert;

// The records are plain data kept by the store; matching them is pure and lives here.
pub use crate::store::silences::{NewSilence, Silence};

impl Silence {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    /// Whether this silence covers the alert (its activity is checked apart).
    pub fn matches(&self, alert: &Alert) -> bool {
        if self.rule.as_ref().is_some_and(|r| *r != alert.rule) {
            return false;
        }
        self.matchers.iter().all(|(k, v)| {
            let got = match k.as_str() {
                "rule" => Some(alert.rule.clone()),
                "severity" => Some(alert.severity.as_str().to_owned()),
                "submission_id" => Some(alert.submission_id.clone()),
                "fingerprint" => Some(alert.fingerprint.clone()),
                "group_key" => alert.group_key.clone(),
                label => alert.labels.get(label).map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                }),
            };
            got.as_deref() == Some(v.as_str())
        })
    }
}

/// Parses `--match KEY=VALUE`.
pub fn parse_matcher(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("`{text}` is not KEY=VALUE (e.g. `team=aml`)")),
    }
}

/// The keys a matcher may use besides labels (the routing keys).
pub const ALERT_KEYS: &[&str] = &[
    "rule",
    "severity",
    "submission_id",
    "group_key",
    "fingerprint",
];

/// What a silence could match: the rules and the labels they set.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub rules: std::collections::BTreeSet<String>,
    /// Label name -> the values rules give it.
    pub labels: BTreeMap<String, std::collections::BTreeSet<String>>,
}

impl Known {
    pub fn from_rules(rules: &[crate::rules::Rule]) -> Known {
        let mut k = Known::default();
        for r in rules {
            k.rules.insert(r.id.clone());
            for (name, v) in &r.labels {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                k.labels.entry(name.clone()).or_default().insert(v);
            }
        }
        k
    }
}

/// Why a silence can never match any alert of these rules (empty: it can).
/// Pure; each message lists what would be valid.
pub fn never_matches(
    rule: Option<&str>,
    matchers: &BTreeMap<String, String>,
    known: &Known,
) -> Vec<String> {
    let list = |it: &mut dyn Iterator<Item = &String>| {
        it.map(String::as_str).collect::<Vec<_>>().join(", ")
    };
    let mut out = Vec::new();
    let mut check_rule = |flag: &str, r: &str| {
        if !known.rules.contains(r) {
            out.push(format!(
                "{flag}: no rule `{r}` (rules: {})",
                list(&mut known.rules.iter())
            ));
        }
    };
    if let Some(r) = rule {
        check_rule("--rule", r);
    }
    if let Some(r) = matchers.get("rule") {
        check_rule("--match rule", r);
    }
    for (k, v) in matchers {
        match k.as_str() {
            "rule" | "submission_id" | "group_key" | "fingerprint" => {}
            "severity" => {
                if crate::rules::Severity::parse(v).is_none() {
                    out.push(format!(
                        "--match severity: `{v}` is not a severity ({})",
                        crate::rules::Severity::NAMES
                    ));
                }
            }
            label => match known.labels.get(label) {
                None => out.push(format!(
                    "--match {label}: no rule has a label `{label}` (keys: {}{}{})",
                    ALERT_KEYS.join(", "),
                    if known.labels.is_empty() {
                        ""
                    } else {
                        ", labels: "
                    },
                    list(&mut known.labels.keys())
                )),
                Some(values) if !values.contains(v) => out.push(format!(
                    "--match {label}: no rule sets {label}={v} ({label}: {})",
                    list(&mut values.iter())
                )),
                Some(_) => {}
            },
        }
    }
    out
}

/// The first active silence covering the alert.
pub fn silenced_by<'a>(
    silences: &'a [Silence],
    alert: &Alert,
    now: DateTime<Utc>,
) -> Option<&'a Silence> {
    silences
        .iter()
        .find(|s| s.is_active(now) && s.matches(alert))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Severity;

    fn silence(rule: Option<&str>, m: &[(&str, &str)]) -> Silence {
        let now = Utc::now();
        Silence {
            id: 1,
            rule: rule.map(str::to_owned),
            matchers: m.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            reason: "r".into(),
            author: "a".into(),
            created_at: now,
            starts_at: now - chrono::Duration::hours(1),
            ends_at: now + chrono::Duration::hours(1),
        }
    }

    fn alert() -> Alert {
        Alert {
            rule: "duplicate-applicant".into(),
            severity: Severity::High,
            labels: [("team".to_string(), serde_json::Value::from("fraud"))]
                .into_iter()
                .collect(),
            submission_id: "s1".into(),
            submission_ids: vec!["s1".into()],
            group_key: Some("app-1".into()),
            count: 1,
            event_time: Utc::now(),
            fingerprint: "fp".into(),
        }
    }

    #[test]
    fn rule_and_matchers_must_all_hold() {
        let a = alert();
        assert!(silence(Some("duplicate-applicant"), &[]).matches(&a));
        assert!(silence(Some("duplicate-applicant"), &[("team", "fraud")]).matches(&a));
        assert!(silence(None, &[("group_key", "app-1"), ("severity", "high")]).matches(&a));
        assert!(!silence(Some("under-age"), &[]).matches(&a));
        assert!(!silence(None, &[("team", "aml")]).matches(&a));
        assert!(!silence(None, &[("missing", "x")]).matches(&a));
    }

    #[test]
    fn expired_silence_does_not_hold() {
        let a = alert();
        let s = silence(None, &[("team", "fraud")]);
        assert!(silenced_by(std::slice::from_ref(&s), &a, Utc::now()).is_some());
        assert!(silenced_by(&[s], &a, Utc::now() + chrono::Duration::hours(2)).is_none());
    }

    #[test]
    fn silences_that_can_never_match_are_named() {
        let mut known = Known::default();
        known
            .rules
            .extend(["aml-red-flag-high".to_string(), "under-age".to_string()]);
        known
            .labels
            .entry("team".into())
            .or_default()
            .extend(["aml".to_string(), "fraud".to_string()]);
        let m = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect()
        };
        assert!(never_matches(Some("under-age"), &m(&[("team", "aml")]), &known).is_empty());
        assert_eq!(
            never_matches(
                Some("no-such-rule"),
                &m(&[("tema", "aml"), ("team", "amll")]),
                &known
            ),
            vec![
                "--rule: no rule `no-such-rule` (rules: aml-red-flag-high, under-age)",
                "--match team: no rule sets team=amll (team: aml, fraud)",
                "--match tema: no rule has a label `tema` (keys: rule, severity, submission_id, group_key, fingerprint, labels: team)",
            ]
        );
        assert_eq!(
            never_matches(None, &m(&[("severity", "urgent"), ("rule", "x")]), &known),
            vec![
                "--match rule: no rule `x` (rules: aml-red-flag-high, under-age)",
                "--match severity: `urgent` is not a severity (info, low, medium, high, critical)",
            ]
        );
    }

    #[test]
    fn matcher_syntax() {
        assert_eq!(
            parse_matcher("team=aml").unwrap(),
            ("team".into(), "aml".into())
        );
        assert_eq!(
            parse_matcher("team").unwrap_err(),
            "`team` is not KEY=VALUE (e.g. `team=aml`)"
        );
    }
}

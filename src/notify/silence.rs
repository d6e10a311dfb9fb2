//! Silences: a compliance officer's "I know, stop telling me" for a while.
//!
//! A silence names a rule and/or `KEY=VALUE` matchers (the routing keys:
//! `rule`, `severity`, `submission_id`, `group_key`, `fingerprint`, labels)
//! and an expiry. While it holds, a matching alert is still decided and
//! recorded (audit kind `silenced`), but not routed. Matching is pure; the
//! silences live in the store.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::rules::Alert;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Silence {
    pub id: i64,
    pub rule: Option<String>,
    pub matchers: BTreeMap<String, String>,
    pub reason: String,
    pub author: String,
    pub created_at: DateTime<Utc>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// A silence to create (`silence add`).
#[derive(Debug, Clone)]
pub struct NewSilence {
    pub rule: Option<String>,
    pub matchers: BTreeMap<String, String>,
    pub reason: String,
    pub author: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

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

//! What a message says about its alerts: the facts a compliance lead acts on.
//!
//! The router hands over alerts as `eval` prints them (rule id, ids, key);
//! this module adds what a person needs to decide without opening another
//! tool: the rule's description, summary and playbook, what the group key
//! means (`userid u-123: 3 matching submissions within 24h`), each member
//! submission with its time, the fields the rule looked at (masked), the AML
//! risk level and status, a clear count phrase, and links (the alert's page,
//! a signed acknowledge link, the Argos dashboard).

use std::time::Duration;

use minijinja::Environment;
use serde_json::{Map, Value, json};

use crate::outbox_payload::Notification;
use crate::rules::condition::Condition;
use crate::rules::path::FieldPath;
use crate::rules::{Rule, RuleSet};

/// What links in messages need: `api.public_url`, `api.link_secret`,
/// `api.link_ttl` and `templates.dashboard_url`.
#[derive(Clone, Default)]
pub struct Links {
    pub public_url: Option<String>,
    pub secret: Option<secrecy::SecretString>,
    pub ttl: Option<Duration>,
    pub dashboard_url: Option<String>,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("public_url", &self.public_url)
            .field("secret", &self.secret.as_ref().map(|_| "[set]"))
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl Links {
    pub fn from_config(cfg: &crate::config::Config) -> Links {
        Links {
            public_url: cfg
                .api
                .public_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_owned())
                .filter(|u| !u.is_empty()),
            secret: cfg.api.link_secret.clone(),
            ttl: cfg.api.link_ttl.map(|d| d.0),
            dashboard_url: cfg.templates.dashboard_url.clone(),
        }
    }

    /// `{alert, ack, argos, console}` for one alert; each none when not configured.
    fn of(&self, fingerprint: &str, submission_id: &str, receiver: &str) -> Value {
        use secrecy::ExposeSecret;
        let exp = crate::links::link_expiry(
            chrono::Utc::now(),
            self.ttl.unwrap_or(crate::links::DEFAULT_LINK_TTL),
        );
        let secret = self.secret.as_ref().map(|s| s.expose_secret());
        let alert = self
            .public_url
            .as_deref()
            .map(|base| crate::links::alert_link(base, secret, fingerprint, exp));
        let ack = match (&self.public_url, secret) {
            (Some(base), Some(secret)) => Some(crate::links::ack_link(
                base,
                secret,
                fingerprint,
                receiver,
                exp,
            )),
            _ => None,
        };
        let argos = self
            .dashboard_url
            .as_ref()
            .map(|u| u.replace("{submission_id}", submission_id));
        // The console's page of the alert: sign-in protects it, no signature needed.
        let console = self
            .public_url
            .as_deref()
            .map(|base| format!("{base}/alerts/{fingerprint}"));
        json!({ "alert": alert, "ack": ack, "argos": argos, "console": console })
    }
}

/// The variables every alert template sees; see [`super::Templates::render`].
pub(super) fn context(
    n: &Notification,
    links: &Links,
    rules: Option<&RuleSet>,
    env: &Environment<'static>,
) -> Value {
    let mut alerts: Vec<Value> = n
        .alerts
        .iter()
        .map(|a| enrich(a, n, links, rules))
        .collect();
    for a in &mut alerts {
        let summary = rules
            .and_then(|r| r.rule(a["rule"].as_str().unwrap_or_default()))
            .and_then(|rule| rule.summary.as_deref())
            .and_then(|src| render_summary(env, src, a));
        a["summary"] = summary.map_or(Value::Null, Value::from);
    }
    let severity = alerts
        .iter()
        .filter_map(|a| a["severity"].as_str())
        .max_by_key(|s| crate::rules::Severity::parse(s))
        .unwrap_or("info")
        .to_owned();
    let first = alerts.first().cloned().unwrap_or(Value::Null);
    let headline = headline(&alerts);
    json!({
        "key": n.key,
        "receiver": n.receiver,
        "group_key": n.group_key,
        "group": routing_group(n.group_key.as_deref()),
        "count": alerts.len(),
        "count_phrase": count_phrase(&alerts),
        "rules": distinct_rules(&alerts),
        "severity": severity,
        "headline": headline,
        "alert": first,
        "alerts": alerts,
        "escalation": n.escalation,
    })
}

/// One alert with its submission and everything the message shows about it.
fn enrich(a: &Value, n: &Notification, links: &Links, rules: Option<&RuleSet>) -> Value {
    let mut a = a.clone();
    let id = a["submission_id"].as_str().unwrap_or_default().to_owned();
    let fp = a["fingerprint"].as_str().unwrap_or_default().to_owned();
    let sub = n.submissions.get(&id).cloned().unwrap_or(Value::Null);
    let rule = rules.and_then(|r| r.rule(a["rule"].as_str().unwrap_or_default()));
    let extra = json!({
        "short_fingerprint": crate::store::lookup::short(&fp),
        "description": rule.map(|r| r.description.trim()).filter(|d| !d.is_empty()),
        "playbook": a["labels"].get("playbook").cloned().unwrap_or(Value::Null),
        "playbook_url": rule.and_then(|r| r.playbook_url.clone()),
        "group": group(&a, rule),
        "members": members(&a, n),
        "fields": fields(rule, &sub),
        "aml": aml(&sub),
        "links": links.of(&fp, &id, &n.receiver),
        "summary": null,
        "submission": sub,
    });
    if let (Some(m), Value::Object(e)) = (a.as_object_mut(), extra) {
        m.extend(e);
    }
    a
}

/// Renders a rule's `summary:` with `alert`; on a failure the message goes
/// out without it (an alert must not be lost to a typo in a summary), and
/// the log says which rule (never a value).
fn render_summary(env: &Environment<'static>, src: &str, alert: &Value) -> Option<String> {
    match env.render_str(src, minijinja::value::Serde(json!({ "alert": alert }))) {
        Ok(s) => Some(one_line(&s)).filter(|s| !s.is_empty()),
        Err(e) => {
            tracing::warn!(rule = %alert["rule"].as_str().unwrap_or_default(),
                "the rule's summary failed to render, sent without it: {}", e.kind());
            None
        }
    }
}

/// Whitespace runs (newlines included) become one space: a summary is one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first line of a message: one alert's summary (or rule and
/// description), else the count phrase.
fn headline(alerts: &[Value]) -> String {
    match alerts {
        [a] => {
            let rule = a["rule"].as_str().unwrap_or_default();
            let sev = a["severity"].as_str().unwrap_or_default().to_uppercase();
            match a["summary"].as_str() {
                Some(s) => format!("{sev} {rule}: {s}"),
                None => format!("{sev} {rule}"),
            }
        }
        _ => count_phrase(alerts),
    }
}

fn distinct_rules(alerts: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in alerts {
        let r = a["rule"].as_str().unwrap_or_default();
        if !out.iter().any(|x| x == r) {
            out.push(r.to_owned());
        }
    }
    out
}

/// `1 alert of R`, `15 alerts of R`, `3 alerts of 2 rules: R1 (2), R2 (1)`:
/// never a bare "and 14 more" that reads as 14 more rules.
pub fn count_phrase(alerts: &[Value]) -> String {
    let rules = distinct_rules(alerts);
    let n = alerts.len();
    let noun = if n == 1 { "alert" } else { "alerts" };
    match rules.as_slice() {
        [] => "no alerts".into(),
        [one] => format!("{n} {noun} of {one}"),
        many => {
            let per: Vec<String> = many
                .iter()
                .map(|r| {
                    let c = alerts.iter().filter(|a| a["rule"] == r.as_str()).count();
                    format!("{r} ({c})")
                })
                .collect();
            format!("{n} {noun} of {} rules: {}", many.len(), per.join(", "))
        }
    }
}

/// The routing group as attributes (`{"rule": "aml-red-flag-high"}`), not
/// the internal key (`root.1|rule=...`); a per-alert group is no group.
fn routing_group(key: Option<&str>) -> Value {
    let Some((_, attrs)) = key.and_then(|k| k.split_once('|')) else {
        return Value::Null;
    };
    let m: Map<String, Value> = attrs
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k != "fingerprint")
        .map(|(k, v)| (k.to_owned(), Value::from(v)))
        .collect();
    if m.is_empty() {
        Value::Null
    } else {
        Value::Object(m)
    }
}

/// `{by, value, meaning}` of an alert's group key, the value masked.
fn group(a: &Value, rule: Option<&Rule>) -> Value {
    let Some(key) = a["group_key"].as_str() else {
        return Value::Null;
    };
    let count = a["count"].as_u64().unwrap_or(1);
    let (paths, tail): (Vec<String>, String) = match rule {
        Some(r) => match &r.window {
            Some(w) => (
                w.group_by.iter().map(ToString::to_string).collect(),
                format!(
                    "{count} matching submission{} within {} (threshold {})",
                    if count == 1 { "" } else { "s" },
                    human_duration(w.within),
                    w.threshold
                ),
            ),
            None => (
                r.throttle_by.iter().map(ToString::to_string).collect(),
                match r.throttle {
                    Some(t) => format!("at most one alert per {}", human_duration(t)),
                    None => String::new(),
                },
            ),
        },
        None => (Vec::new(), String::new()),
    };
    let values: Vec<&str> = key.split('|').collect();
    let by = if paths.len() == values.len() {
        paths.join(" + ")
    } else {
        "group".to_owned()
    };
    let value = values
        .iter()
        .enumerate()
        .map(|(i, v)| display_value(paths.get(i).map_or("", String::as_str), v))
        .collect::<Vec<_>>()
        .join(" | ");
    let meaning = if tail.is_empty() {
        format!("{by} {value}")
    } else {
        format!("{by} {value}: {tail}")
    };
    json!({ "by": by, "value": value, "meaning": meaning })
}

/// `24h`, `7d`, `90m`, `45s`: the largest unit that divides evenly.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        // `24h` reads as the rule says it; `7d` too.
        s if s % 86_400 == 0 && s >= 2 * 86_400 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Each member submission with its event time (from the stored submission;
/// the firing one from the alert), oldest first as the window holds them.
fn members(a: &Value, n: &Notification) -> Value {
    let ids: Vec<&str> = a["submission_ids"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let firing = a["submission_id"].as_str().unwrap_or_default();
    Value::Array(
        ids.iter()
            .map(|id| {
                let time = n
                    .submissions
                    .get(*id)
                    .and_then(crate::rules::time::event_time)
                    .map(crate::rules::time::format_time)
                    .map(Value::from)
                    .or_else(|| (*id == firing).then(|| a["event_time"].clone()))
                    .unwrap_or(Value::Null);
                json!({ "submission_id": id, "time": time })
            })
            .collect(),
    )
}

/// At most this many fields, and values per field, in a message.
const MAX_FIELDS: usize = 12;
const MAX_VALUES: usize = 5;

/// The submission fields the rule's conditions and scripts read, with the
/// values this submission has there, masked. `derived.*` fields are computed
/// by the engine, not stored, so they are named without a value.
fn fields(rule: Option<&Rule>, sub: &Value) -> Value {
    let (Some(rule), false) = (rule, sub.is_null()) else {
        return Value::Array(Vec::new());
    };
    let mut paths = Vec::new();
    collect_paths(&rule.when, &mut paths);
    if let Some(w) = &rule.window {
        paths.extend(w.group_by.iter().map(ToString::to_string));
    }
    let mut seen = std::collections::HashSet::new();
    paths.retain(|p| seen.insert(p.clone()));
    Value::Array(
        paths
            .iter()
            .filter(|p| !p.starts_with("derived.") && p.as_str() != "derived")
            .take(MAX_FIELDS)
            .filter_map(|p| {
                let fp = FieldPath::parse(p).ok()?;
                let leaf = leaf_key(p);
                let vals = fp.values(sub);
                let shown: Vec<String> = vals
                    .iter()
                    .take(MAX_VALUES)
                    .map(|v| display_value(leaf, &scalar_text(v)))
                    .collect();
                let mut value = if shown.is_empty() {
                    "(absent)".to_owned()
                } else {
                    shown.join(", ")
                };
                if vals.len() > MAX_VALUES {
                    value.push_str(&format!(" (+{} more)", vals.len() - MAX_VALUES));
                }
                Some(json!({ "path": p, "value": value }))
            })
            .collect(),
    )
}

fn collect_paths(c: &Condition, out: &mut Vec<String>) {
    match c {
        Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| collect_paths(c, out)),
        Condition::Not(c) => collect_paths(c, out),
        Condition::Field(t) => out.push(t.path.to_string()),
        Condition::Script(s) => {
            for p in s.paths().unwrap_or_default() {
                // ["kyc", "attempts", "[*]", "retryCode"] -> kyc.attempts[*].retryCode
                let mut text = String::new();
                for part in p {
                    if part.starts_with('[') || text.is_empty() {
                        text.push_str(part);
                    } else {
                        text.push('.');
                        text.push_str(part);
                    }
                }
                out.push(text);
            }
        }
    }
}

fn leaf_key(path: &str) -> &str {
    let last = path.rsplit('.').next().unwrap_or(path);
    last.split('[').next().unwrap_or(last)
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A submission value as a message may show it. Identity numbers are never
/// shown (not even masked); document and account numbers keep their last 4;
/// emails keep their domain; names their initial; images and their URLs
/// nothing. Anything else is cut at 80 characters.
pub fn display_value(key: &str, value: &str) -> String {
    let k = key.to_ascii_lowercase().replace(['_', '-'], "");
    let any = |names: &[&str]| names.iter().any(|n| k.contains(n));
    if any(&[
        "identitynumber",
        "residentnumber",
        "rrn",
        "ssn",
        "nationalid",
    ]) {
        return "(hidden)".into();
    }
    if any(&["selfie", "image", "photo", "url"]) {
        return "(hidden)".into();
    }
    if any(&[
        "documentnumber",
        "passportnumber",
        "accountnumber",
        "cardnumber",
        "licensenumber",
    ]) {
        return super::mask_keep_last(value, 4);
    }
    if any(&["email"]) || value.contains('@') {
        return super::mask_email(value);
    }
    if any(&["name", "birth", "dob", "phone", "address"]) {
        let first: String = value.chars().take(1).collect();
        return format!("{first}***");
    }
    let mut out: String = value.chars().filter(|c| !c.is_control()).take(80).collect();
    if value.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// The AML screening outcome, when the submission has one.
fn aml(sub: &Value) -> Value {
    let a = &sub["aml"];
    let risk = a.get("risk_level_summary").filter(|v| !v.is_null());
    let status = a.get("currentstatus").filter(|v| !v.is_null());
    if risk.is_none() && status.is_none() {
        return Value::Null;
    }
    json!({ "risk_level": risk, "status": status })
}

/// Slack mrkdwn: `&`, `<` and `>` are control characters (`<!channel>`,
/// `<http://x|text>`); every value is escaped so data can only be text.
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Teams (Adaptive Card) markdown: a backslash before each markdown
/// character (with `[` and `]` escaped no link or image can form, so
/// parentheses may stay), line breaks as spaces (so a value cannot start a
/// list or heading line); `<` and `>` become entities.
pub fn teams_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\r' | '\n' => out.push(' '),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '*' | '_' | '~' | '`' | '[' | ']' | '#' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A sample alert of each rule with a `summary:`, for `check`: a summary
/// that reads an undefined variable is found before an alert needs it.
pub fn check_summaries(env: &Environment<'static>, rules: &RuleSet) -> Vec<String> {
    let sample = Notification::sample("check");
    let mut errs = Vec::new();
    for r in rules.rules() {
        let Some(src) = &r.summary else { continue };
        let mut n = sample.clone();
        n.alerts[0]["rule"] = Value::from(r.id.clone());
        let ctx = context(&n, &Links::default(), None, env);
        if let Err(e) = env.render_str(
            src,
            minijinja::value::Serde(json!({ "alert": ctx["alert"].clone() })),
        ) {
            let mut msg = format!("{}: rule `{}`: summary: {}", r.origin, r.id, e.kind());
            if let Some(d) = e.detail() {
                msg.push_str(": ");
                msg.push_str(d);
            }
            errs.push(msg);
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_phrases() {
        let a = |r: &str| json!({"rule": r});
        assert_eq!(count_phrase(&[a("x")]), "1 alert of x");
        assert_eq!(count_phrase(&vec![a("x"); 15]), "15 alerts of x");
        assert_eq!(
            count_phrase(&[a("x"), a("y"), a("x")]),
            "3 alerts of 2 rules: x (2), y (1)"
        );
    }

    #[test]
    fn values_are_masked_by_what_they_are() {
        assert_eq!(
            display_value("identityNumber", "900101-1234567"),
            "(hidden)"
        );
        assert_eq!(display_value("documentNumber", "M12345678"), "*****5678");
        assert_eq!(
            display_value("account_number", "110-123-456789"),
            "***-***-**6789"
        );
        assert_eq!(
            display_value("email", "alice@example.com"),
            "a***@example.com"
        );
        assert_eq!(
            display_value("userid", "bob@example.com"),
            "b***@example.com"
        );
        assert_eq!(display_value("name", "HONG GILDONG"), "H***");
        assert_eq!(display_value("selfieImage", "https://x/0.jpg"), "(hidden)");
        assert_eq!(display_value("result", "rejected"), "rejected");
        assert_eq!(human_duration(Duration::from_secs(86_400)), "24h");
        assert_eq!(human_duration(Duration::from_secs(24 * 3_600 * 7)), "7d");
        assert_eq!(human_duration(Duration::from_secs(5_400)), "90m");
    }

    #[test]
    fn escaping_for_chat() {
        assert_eq!(
            slack_escape("<!channel> & <http://x|text>"),
            "&lt;!channel&gt; &amp; &lt;http://x|text&gt;"
        );
        assert_eq!(
            teams_escape("[click](http://x) **b**\n# h"),
            "\\[click\\](http://x) \\*\\*b\\*\\* \\# h"
        );
        assert_eq!(routing_group(Some("root.1|fingerprint=abc")), Value::Null);
        assert_eq!(
            routing_group(Some("root.1|rule=r,team=aml")),
            json!({"rule": "r", "team": "aml"})
        );
    }
}

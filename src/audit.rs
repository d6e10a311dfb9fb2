//! `kyc-sentinel audit`: answers an auditor's "why did this alert fire, and
//! why did that one not".
//!
//! The store keeps, for every decision, the rule and rule-set versions, the
//! submission version hash, what each condition saw, the derived fields and
//! the window members; this module only reads and renders them. For the rules
//! that did not fire on a submission, it re-explains them on the last stored
//! version with the current rule set (and says so).

use std::fmt::Write;

use serde_json::Value;

use crate::rules::{ConditionTrace, RuleSet};
use crate::store::{AlertRecord, AuditEntry, WindowMembership};

/// Writes one line of output with everything in it escaped (see
/// [`crate::util::display_safe`]): a submission id, a note or a receiver's
/// error cannot break the line or send escapes to the auditor's terminal.
macro_rules! line {
    ($out:expr, $($arg:tt)*) => {
        let _ = writeln!($out, "{}", crate::util::display_safe(&format!($($arg)*)));
    };
}

fn traces(detail: &Value) -> Vec<ConditionTrace> {
    detail
        .get("conditions")
        .cloned()
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default()
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// The explanation of one alert.
pub fn render_alert(rec: &AlertRecord, audit: &[AuditEntry]) -> String {
    let a = &rec.alert;
    let mut out = String::new();
    let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    line!(out, "alert {}", rec.fingerprint);
    line!(
        out,
        "  rule {} ({}), rule version {}",
        s(&a["rule"]),
        s(&a["severity"]),
        short(&rec.rule_version)
    );
    line!(
        out,
        "  fired at {} on submission {} (event time {})",
        rec.fired_at,
        s(&a["submission_id"]),
        s(&a["event_time"])
    );
    line!(
        out,
        "  about {} submission(s): {}",
        a["count"],
        a["submission_ids"]
    );
    if let Some(k) = a["group_key"].as_str() {
        line!(
            out,
            "  group key: {k} (window members, consumed by this alert)"
        );
    }
    for entry in audit.iter().filter(|e| e.kind == "decision") {
        if let Some(v) = entry.detail.get("rule_set_version").and_then(Value::as_str) {
            line!(out, "  rule set version {}", short(v));
        }
        if let Some(h) = &entry.version_hash {
            line!(out, "  submission version {}", short(h));
        }
        if entry.detail.get("mode").and_then(Value::as_str) == Some("shadow") {
            let replaces = match entry.detail.get("replaces").and_then(Value::as_str) {
                Some(r) => format!(", a candidate to replace {r}"),
                None => String::new(),
            };
            line!(
                out,
                "  mode shadow: recorded, never sent, escalated or counted in digests{replaces}"
            );
        }
        line!(out, "  conditions:");
        for t in traces(&entry.detail) {
            line!(out, "    {t}");
        }
        if let Some(d) = entry.detail.get("derived") {
            line!(out, "  derived: {d}");
        }
    }
    let history: Vec<&AuditEntry> = audit
        .iter()
        .filter(|e| e.kind != "decision" && e.kind != "delivery")
        .collect();
    if !history.is_empty() {
        // State changes (who, when, from, to), escalation steps, silences, dead letters.
        line!(out, "  history:");
        for e in history {
            line!(out, "    {} {}: {}", e.at, e.kind, e.detail);
        }
    }
    line!(out, "  notifications:");
    if rec.notifications.is_empty() {
        line!(out, "    (none: no receiver)");
    }
    for (receiver, state, attempts, err) in &rec.notifications {
        let last = err.as_ref().map(|e| format!("; last error: {e}"));
        line!(
            out,
            "    {receiver}: {state} after {attempts} attempt(s){}",
            last.unwrap_or_default()
        );
    }
    let deliveries: Vec<&AuditEntry> = audit.iter().filter(|e| e.kind == "delivery").collect();
    if !deliveries.is_empty() {
        // Who was told what, when: every attempt of every notification that carried it.
        line!(out, "  delivery attempts:");
        for e in deliveries {
            line!(out, "    {}", delivery_line(e));
        }
    }
    out
}

/// The explanation of every decision about one submission, and of the rules
/// that did not fire on its last version.
pub fn render_submission(
    id: &str,
    version: Option<(String, Option<String>, Option<String>)>,
    audit: &[AuditEntry],
    windows: &[WindowMembership],
    alerts: &[String],
    rules: Option<&RuleSet>,
) -> String {
    let mut out = String::new();
    line!(out, "submission {id}");
    let Some((hash, result, raw)) = version else {
        line!(out, "  never processed by this engine");
        return out;
    };
    line!(
        out,
        "  last processed version {} (kyc.result: {})",
        short(&hash),
        result.as_deref().unwrap_or("-")
    );
    line!(out, "  decisions:");
    if audit.is_empty() && windows.is_empty() {
        line!(out, "    (none recorded)");
    }
    // A window member has no decision of its own: it counted towards one.
    let mut fired: Vec<String> = windows.iter().map(|w| w.rule_id.clone()).collect();
    for w in windows {
        line!(out, "    {}", window_line(id, w, rules));
    }
    for e in audit {
        let rule = e.rule_id.as_deref().unwrap_or("-");
        match e.kind.as_str() {
            "decision" => {
                fired.push(rule.to_owned());
                let shadow = if e.detail.get("mode").and_then(Value::as_str) == Some("shadow") {
                    " (shadow: recorded, not sent)"
                } else {
                    ""
                };
                line!(
                    out,
                    "    {} fired {rule} (rule version {}) -> alert {}{shadow}",
                    e.at,
                    short(e.rule_version.as_deref().unwrap_or("-")),
                    e.fingerprint.as_deref().unwrap_or("-")
                );
            }
            "rule_error" => {
                line!(
                    out,
                    "    {} rule {rule} failed: {}",
                    e.at,
                    e.detail["error"]
                );
            }
            other => {
                line!(out, "    {} {other}: {}", e.at, e.detail);
            }
        }
    }
    if !alerts.is_empty() {
        line!(
            out,
            "  alerts it is part of (see `audit --alert FINGERPRINT`):"
        );
        for f in alerts {
            line!(out, "    {f}");
        }
    }
    let (Some(rules), Some(raw)) = (rules, raw) else {
        line!(
            out,
            "  rules that did not fire: the raw version is no longer kept (retention), so they cannot be re-explained"
        );
        return out;
    };
    let Ok(doc) = serde_json::from_str::<Value>(&raw) else {
        return out;
    };
    line!(
        out,
        "  rules that did not fire, re-explained on the last version with the current rule set {}:",
        short(rules.version())
    );
    for rule in rules.rules().iter().filter(|r| !fired.contains(&r.id)) {
        line!(out, "    {}:", rule.id);
        for t in rules.explain(&rule.id, &doc).unwrap_or_default() {
            line!(out, "      {t}");
        }
    }
    out
}

/// "counted in window `KEY` of rule R (2 of 3), consumed by alert FP", or
/// where the window stands when nothing consumed it yet.
fn window_line(id: &str, w: &WindowMembership, rules: Option<&RuleSet>) -> String {
    let head = format!("counted in window `{}` of rule {}", w.group_key, w.rule_id);
    if let Some((fp, ids)) = &w.consumed_by {
        let pos = ids
            .iter()
            .position(|i| i == id)
            .map_or(ids.len(), |p| p + 1);
        return format!("{head} ({pos} of {}), consumed by alert {fp}", ids.len());
    }
    if w.consumed {
        return format!("{head}, consumed by an alert no longer stored");
    }
    let window = rules
        .and_then(|r| r.rule(&w.rule_id))
        .and_then(|r| r.window.as_ref());
    let at = crate::store::parse_time("window_members.event_time", &w.event_time).ok();
    let (Some(window), Some(at)) = (window, at) else {
        let n = w
            .open_members
            .iter()
            .filter(|t| **t <= w.event_time)
            .count();
        return format!("{head} ({n} so far), still open in the window");
    };
    let within = chrono::Duration::from_std(window.within).unwrap_or(chrono::Duration::MAX);
    let from = crate::store::fmt_time(at.checked_sub_signed(within).unwrap_or(at));
    let n = w
        .open_members
        .iter()
        .filter(|t| **t > from && **t <= w.event_time)
        .count();
    let closes = crate::store::fmt_time(at.checked_add_signed(within).unwrap_or(at));
    let place = format!("{n} of {}", window.threshold);
    if w.newest_event
        .as_deref()
        .is_some_and(|t| t > closes.as_str())
    {
        format!("{head} ({place}), its window closed at {closes} without firing")
    } else {
        format!("{head} ({place}), still open in the window (until {closes})")
    }
}

/// "T receiver attempt N: outcome (grouped notification of 3 alerts, key K)".
fn delivery_line(e: &AuditEntry) -> String {
    let d = &e.detail;
    let s = |k: &str| d[k].as_str().unwrap_or("-").to_owned();
    let mut line = format!(
        "{} {} attempt {}: {} ({} notification of {} alert(s), idempotency key {})",
        e.at,
        s("receiver"),
        d["attempt"],
        s("outcome"),
        s("notification"),
        d["alerts_carried"],
        short(&s("idempotency_key"))
    );
    if let Some(err) = d["error"].as_str() {
        let _ = write!(line, "; error: {err}");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_window_member_says_where_its_window_stands() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let rules = crate::rules::load_path(&dir, crate::rules::ScriptLimits::default()).unwrap();
        let open = WindowMembership {
            rule_id: "repeated-too-many-retry".into(),
            group_key: "u-1".into(),
            event_time: "2026-11-26T10:00:00.000Z".into(),
            consumed: false,
            consumed_by: None,
            open_members: vec![
                "2026-11-26T09:00:00.000Z".into(),
                "2026-11-26T10:00:00.000Z".into(),
            ],
            newest_event: Some("2026-11-26T10:00:00.000Z".into()),
        };
        assert_eq!(
            window_line("s-2", &open, Some(&rules)),
            "counted in window `u-1` of rule repeated-too-many-retry (2 of 3), \
             still open in the window (until 2026-11-27T10:00:00.000Z)"
        );
        let closed = WindowMembership {
            newest_event: Some("2026-11-29T00:00:00.000Z".into()),
            ..open
        };
        assert_eq!(
            window_line("s-2", &closed, Some(&rules)),
            "counted in window `u-1` of rule repeated-too-many-retry (2 of 3), \
             its window closed at 2026-11-27T10:00:00.000Z without firing"
        );
    }
}

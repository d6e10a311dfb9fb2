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
use crate::store::{AlertRecord, AuditEntry};

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
        line!(out, "  conditions:");
        for t in traces(&entry.detail) {
            line!(out, "    {t}");
        }
        if let Some(d) = entry.detail.get("derived") {
            line!(out, "  derived: {d}");
        }
    }
    let history: Vec<&AuditEntry> = audit.iter().filter(|e| e.kind != "decision").collect();
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
    for (receiver, at, ok, detail) in &rec.attempts {
        let outcome = if *ok { "ok" } else { "failed" };
        let detail = detail.as_ref().map(|d| format!(": {d}"));
        line!(
            out,
            "    {at} {receiver} {outcome}{}",
            detail.unwrap_or_default()
        );
    }
    out
}

/// The explanation of every decision about one submission, and of the rules
/// that did not fire on its last version.
pub fn render_submission(
    id: &str,
    version: Option<(String, Option<String>, Option<String>)>,
    audit: &[AuditEntry],
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
    if audit.is_empty() {
        line!(out, "    (none recorded)");
    }
    let mut fired = Vec::new();
    for e in audit {
        let rule = e.rule_id.as_deref().unwrap_or("-");
        match e.kind.as_str() {
            "decision" => {
                fired.push(rule.to_owned());
                line!(
                    out,
                    "    {} fired {rule} (rule version {}) -> alert {}",
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

//! An alert's case as people read it: the why (conditions, derived values),
//! the submission's fields masked, and one timeline of everything that
//! happened to it, built from what the store recorded.

use serde::Serialize;
use serde_json::{Value, json};

use crate::store::cases::Case;
use crate::templates::{mask_email, mask_keep_last};

/// How a field is masked until a lead reveals it.
#[derive(Clone, Copy)]
enum Mask {
    None,
    Email,
    /// Only the first character stays.
    Initial,
    /// Every letter and digit hidden.
    All,
    /// The last `n` letters and digits stay.
    Last(usize),
}

/// The submission fields an alert page shows: (key, label, path, mask).
const FIELDS: &[(&str, &str, &[&str], Mask)] = &[
    (
        "applicant_id",
        "Applicant id",
        &["applicant_id"],
        Mask::None,
    ),
    ("userid", "User id", &["userid"], Mask::None),
    ("email", "Email", &["email"], Mask::Email),
    ("name", "Name", &["data", "name"], Mask::Initial),
    (
        "date_of_birth",
        "Date of birth",
        &["data", "date_of_birth"],
        Mask::All,
    ),
    (
        "nationality",
        "Nationality",
        &["data", "nationality"],
        Mask::None,
    ),
    (
        "ip_address",
        "IP address",
        &["data", "ip_address"],
        Mask::Last(3),
    ),
    ("kyc_result", "KYC result", &["kyc", "result"], Mask::None),
    (
        "aml_status",
        "AML status",
        &["aml", "currentstatus"],
        Mask::None,
    ),
    (
        "aml_risk",
        "AML risk",
        &["aml", "risk_level_summary"],
        Mask::None,
    ),
];

/// Whether `key` names a field a lead may reveal.
pub fn revealable(key: &str) -> bool {
    FIELDS
        .iter()
        .any(|(k, _, _, m)| *k == key && !matches!(m, Mask::None))
}

fn masked(v: &str, m: Mask) -> String {
    match m {
        Mask::None => v.to_owned(),
        Mask::Email => mask_email(v),
        Mask::Initial => {
            let first: String = v.chars().take(1).collect();
            format!("{first}***")
        }
        Mask::All => mask_keep_last(v, 0),
        Mask::Last(n) => mask_keep_last(v, n),
    }
}

/// A value that may be an email address, masked (group keys, searches).
pub fn mask_if_email(v: &str) -> String {
    v.split('|')
        .map(|p| {
            if p.contains('@') {
                mask_email(p)
            } else {
                p.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The submission's fields, masked except `revealed`.
pub fn fields(submission: Option<&Value>, revealed: Option<&str>) -> Vec<Value> {
    let Some(sub) = submission else {
        return Vec::new();
    };
    FIELDS
        .iter()
        .filter_map(|(key, label, path, mask)| {
            let v = path.iter().try_fold(sub, |v, k| v.get(k))?;
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => return None,
                other => other.to_string(),
            };
            let maskable = !matches!(mask, Mask::None);
            let shown = revealed == Some(*key) && maskable;
            Some(json!({
                "key": key, "label": label, "masked": masked(&text, *mask),
                "maskable": maskable, "revealed": shown,
                "value": if shown { Value::from(text) } else { Value::Null },
            }))
        })
        .collect()
}

/// One decision record: what each condition saw, the derived values.
pub fn decisions(case: &Case) -> Vec<Value> {
    case.audit
        .iter()
        .filter(|e| e.kind == "decision")
        .map(|e| {
            let conditions: Vec<String> = e
                .detail
                .get("conditions")
                .cloned()
                .and_then(|c| serde_json::from_value::<Vec<crate::rules::ConditionTrace>>(c).ok())
                .unwrap_or_default()
                .iter()
                .map(ToString::to_string)
                .collect();
            let derived: serde_json::Map<String, Value> = e
                .detail
                .get("derived")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), Value::from(v.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "rule_set": e.detail.get("rule_set_version").and_then(Value::as_str).map(short),
                "version_hash": e.version_hash.as_deref().map(short),
                "conditions": conditions,
                "derived": derived,
            })
        })
        .collect()
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

/// A state as people read it.
pub fn state_label(state: &str) -> String {
    state.replace('_', " ")
}

/// One event of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at: String,
    pub what: String,
    pub by: Option<String>,
    pub detail: Option<String>,
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Everything that happened to the alert, oldest first: fired, each
/// delivery, escalation, assignment, notes, state changes, approvals,
/// silences, reveals.
pub fn timeline(case: &Case) -> Vec<Event> {
    let mut events = vec![Event {
        at: case.record.fired_at.clone(),
        what: "fired".into(),
        by: None,
        detail: Some(format!(
            "rule {} on submission {}",
            case.view.rule, case.view.submission_id
        )),
    }];
    for e in &case.audit {
        let d = &e.detail;
        let by = text(d, "by");
        let (what, detail) = match e.kind.as_str() {
            "decision" | "delivery" => continue,
            "state_change" => {
                let from = text(d, "from").unwrap_or_default();
                let to = text(d, "to").unwrap_or_default();
                let what = match (from.as_str(), to.as_str()) {
                    ("pending_approval", "resolved") => "approved: resolved".to_owned(),
                    ("pending_approval", "acknowledged") => {
                        "rejected: back to acknowledged".to_owned()
                    }
                    (_, "pending_approval") => "resolution proposed (pending approval)".to_owned(),
                    _ => format!("{} → {}", state_label(&from), state_label(&to)),
                };
                let detail = [text(d, "outcome"), text(d, "note")]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ");
                (what, Some(detail).filter(|s| !s.is_empty()))
            }
            "assignment" => (
                format!("assigned to {}", text(d, "to").unwrap_or_default()),
                None,
            ),
            "note" => ("note".into(), text(d, "note")),
            "reveal" => (
                format!("revealed field {}", text(d, "field").unwrap_or_default()),
                None,
            ),
            "silenced" => ("silenced (not sent)".into(), text(d, "reason")),
            "escalation_step" => escalation_step(d),
            "escalation_stopped" => (
                format!(
                    "escalation stopped ({})",
                    text(d, "policy").unwrap_or_default()
                ),
                text(d, "reason"),
            ),
            kind => (kind.replace('_', " "), Some(compact(d))),
        };
        events.push(Event {
            at: e.at.clone(),
            what,
            by,
            detail,
        });
    }
    for (receiver, at, ok, detail) in &case.record.attempts {
        events.push(Event {
            at: at.clone(),
            what: format!(
                "notification to {receiver}: {}",
                if *ok { "delivered" } else { "failed" }
            ),
            by: None,
            detail: detail.clone().filter(|_| !ok),
        });
    }
    events.sort_by(|a, b| a.at.cmp(&b.at));
    events
}

/// "escalation step 2 (policy aml): to officer, head" and whether it was late.
fn escalation_step(d: &Value) -> (String, Option<String>) {
    let receivers: Vec<&str> = d["receivers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let what = format!(
        "escalation step {} ({}): to {}",
        d["step"],
        text(d, "policy").unwrap_or_default(),
        receivers.join(", ")
    );
    let late = d["late"].as_bool() == Some(true);
    (
        what,
        late.then(|| format!("late: was due {}", text(d, "due_at").unwrap_or_default())),
    )
}

/// A detail object on one line, bounded.
fn compact(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 300 {
        s.chars().take(300).collect::<String>() + "…"
    } else {
        s
    }
}

//! What the outbox stores and a receiver sends, typed: the payload of an
//! outbox row ([`OutboxPayload`]: alerts of one group, an escalation step, a
//! rendered digest), its idempotency key ([`group_key_hash`]), and the
//! [`Notification`] a receiver renders.
//!
//! A leaf (it imports only `util`): the router, escalation and digests build
//! payloads here, every store backend keeps the same bytes, and the
//! templates and receivers read them, without depending on each other.

use serde_json::{Map, Value};

/// What a receiver sends: alerts of one group, and their submissions.
#[derive(Debug, Clone)]
pub struct Notification {
    /// Idempotency key: the alert's fingerprint for one alert, else
    /// [`group_key_hash`] of the fingerprints. Same after any retry.
    pub key: String,
    pub receiver: String,
    /// The routing group (`route|key=value,...`), if any.
    pub group_key: Option<String>,
    /// Each alert as `eval` prints it.
    pub alerts: Vec<Value>,
    /// submission_id -> the stored submission JSON, for templates. Never
    /// logged: it holds personal data.
    pub submissions: Map<String, Value>,
    /// For a step of an escalation policy: `{policy, step, steps, after,
    /// due_at, late}` (see `escalation::StepInfo`); none for a routed notification.
    pub escalation: Option<Value>,
    /// A digest instead of alerts: rendered when it was scheduled and sent as
    /// is, so a retry sends the same content (see `crate::digest`).
    pub digest: Option<RenderedDigest>,
}

/// A digest rendered for sending: masked text only (no submission JSON).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RenderedDigest {
    pub name: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The report's data, the body webhooks receive.
    pub data: Value,
}

/// The idempotency key of a notification: one alert keeps its fingerprint
/// (so PagerDuty's `dedup_key` and the file receiver match `eval`); several
/// get the SHA-256 of their sorted fingerprints, one per line.
pub fn group_key_hash(fingerprints: &[&str]) -> String {
    if let [one] = fingerprints {
        return (*one).to_owned();
    }
    let mut sorted = fingerprints.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    crate::util::sha256_hex(sorted.join("\n").as_bytes())
}

/// What an outbox row asks a receiver to send.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboxPayload {
    /// Alerts of one routing group (or one escalation step).
    Alerts {
        /// The routing group (`route|key=value,...`), if any.
        group_key: Option<String>,
        /// Each alert as `eval` prints it.
        alerts: Vec<Value>,
        /// For an escalation step: `{policy, step, steps, after, due_at, late}`.
        escalation: Option<Value>,
    },
    /// A digest, rendered when it was scheduled.
    Digest(RenderedDigest),
}

impl Notification {
    /// The outbox payload of a group: `{"group_key": ..., "alerts": [...]}`.
    pub fn payload(group_key: Option<&str>, alerts: &[Value]) -> String {
        OutboxPayload::group(group_key, alerts)
    }

    /// Reads an outbox payload (see [`OutboxPayload::parse`]).
    pub fn from_payload(key: &str, receiver: &str, payload: &str) -> Result<Self, String> {
        let mut n = Notification {
            key: key.to_owned(),
            receiver: receiver.to_owned(),
            group_key: None,
            alerts: Vec::new(),
            submissions: Map::new(),
            escalation: None,
            digest: None,
        };
        match OutboxPayload::parse(key, payload)? {
            OutboxPayload::Digest(d) => n.digest = Some(d),
            OutboxPayload::Alerts {
                group_key,
                alerts,
                escalation,
            } => {
                n.group_key = group_key;
                n.alerts = alerts;
                n.escalation = escalation;
            }
        }
        Ok(n)
    }

    /// From an alert file (`--alert FILE`): one alert object, an array of them,
    /// or JSON lines; an alert may carry its submission under `submission`.
    pub fn from_alert_text(receiver: &str, text: &str) -> Result<Self, String> {
        let values: Vec<Value> = match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(a)) => a,
            Ok(v) => vec![v],
            Err(_) => text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| {
                    serde_json::from_str(l).map_err(|e| format!("line {}: not JSON: {e}", i + 1))
                })
                .collect::<Result<_, _>>()?,
        };
        let mut alerts = Vec::new();
        let mut submissions = Map::new();
        for (i, mut a) in values.into_iter().enumerate() {
            let Some(obj) = a.as_object_mut() else {
                return Err(format!("alert {}: not a JSON object", i + 1));
            };
            for k in ["rule", "severity", "submission_id", "fingerprint"] {
                if !obj.get(k).is_some_and(Value::is_string) {
                    return Err(format!("alert {}: `{k}` is missing or not a string", i + 1));
                }
            }
            if let Some(sub) = obj.remove("submission") {
                let id = obj["submission_id"].as_str().unwrap_or_default().to_owned();
                submissions.insert(id, sub);
            }
            alerts.push(a);
        }
        if alerts.is_empty() {
            return Err("no alert in the file".into());
        }
        let fps: Vec<&str> = alerts
            .iter()
            .filter_map(|a| a["fingerprint"].as_str())
            .collect();
        Ok(Notification {
            key: group_key_hash(&fps),
            receiver: receiver.to_owned(),
            group_key: None,
            alerts,
            submissions,
            escalation: None,
            digest: None,
        })
    }

    /// A made-up alert with made-up personal data, for `notify-test` and `check`.
    pub fn sample(receiver: &str) -> Self {
        Self::from_alert_text(receiver, include_str!("notify/sample_alert.json"))
            .expect("the sample alert parses")
    }

    /// The submissions of every alert, firing and window members, each once
    /// (to load from the store: messages list each member with its time).
    pub fn submission_ids(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for a in &self.alerts {
            let members = a
                .get("submission_ids")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str);
            let firing = a.get("submission_id").and_then(Value::as_str);
            for id in firing.into_iter().chain(members) {
                if !out.iter().any(|x| x == id) {
                    out.push(id.to_owned());
                }
            }
        }
        out
    }

    pub fn fingerprints(&self) -> Vec<&str> {
        self.alerts
            .iter()
            .filter_map(|a| a.get("fingerprint").and_then(Value::as_str))
            .collect()
    }
}

impl OutboxPayload {
    /// The payload of a group: `{"group_key": ..., "alerts": [...]}`.
    pub fn group(group_key: Option<&str>, alerts: &[Value]) -> String {
        serde_json::json!({ "group_key": group_key, "alerts": alerts }).to_string()
    }

    /// The payload of one escalation step: the alert alone, with the step.
    pub fn escalation_step(alert: &Value, info: &Value) -> String {
        serde_json::json!({ "group_key": null, "alerts": [alert], "escalation": info }).to_string()
    }

    /// The payload of a rendered digest.
    pub fn digest(d: &RenderedDigest) -> String {
        serde_json::json!({ "digest": d }).to_string()
    }

    /// Reads a payload: a group, a digest, or one bare alert (rows written
    /// before routing existed). `key` names the row in the error.
    pub fn parse(key: &str, payload: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(payload)
            .map_err(|e| format!("outbox payload of {key} is not JSON: {e}"))?;
        if let Some(d) = v.get("digest") {
            let d: RenderedDigest = serde_json::from_value(d.clone())
                .map_err(|e| format!("outbox payload of {key}: bad digest: {e}"))?;
            return Ok(OutboxPayload::Digest(d));
        }
        let escalation = v.get("escalation").filter(|e| !e.is_null()).cloned();
        Ok(match v.get("alerts") {
            Some(Value::Array(a)) => OutboxPayload::Alerts {
                group_key: v
                    .get("group_key")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                alerts: a.clone(),
                escalation,
            },
            _ => OutboxPayload::Alerts {
                group_key: None,
                alerts: vec![v],
                escalation,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_read_back_as_written() {
        let a = serde_json::json!({"fingerprint": "f1", "rule": "r"});
        let g = OutboxPayload::group(Some("route|k=v"), std::slice::from_ref(&a));
        assert_eq!(
            g,
            r#"{"group_key":"route|k=v","alerts":[{"fingerprint":"f1","rule":"r"}]}"#
        );
        assert_eq!(
            OutboxPayload::parse("k", &g).unwrap(),
            OutboxPayload::Alerts {
                group_key: Some("route|k=v".into()),
                alerts: vec![a.clone()],
                escalation: None
            }
        );
        let info = serde_json::json!({"policy": "p", "step": 1});
        let s = OutboxPayload::escalation_step(&a, &info);
        assert!(matches!(
            OutboxPayload::parse("k", &s).unwrap(),
            OutboxPayload::Alerts { escalation: Some(e), group_key: None, .. } if e == info
        ));
        assert_eq!(group_key_hash(&["f1"]), "f1");
        assert_eq!(
            group_key_hash(&["b", "a"]),
            group_key_hash(&["a", "b", "a"])
        );
    }
}

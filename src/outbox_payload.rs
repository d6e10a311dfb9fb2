//! The outbox payload: what a notification row carries, typed.
//!
//! A leaf module (no dependency on `notify`, `config` or `store`): the router,
//! escalation and digests build payloads here, the store keeps them as text
//! and the outbox reads them back with [`OutboxPayload::parse`]. Any backend
//! stores the same bytes.

use serde_json::Value;

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

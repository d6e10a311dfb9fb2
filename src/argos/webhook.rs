//! An Argos webhook body, read into a typed event (pure: no I/O).
//!
//! Argos POSTs an event to a URL the account sets in its dashboard (see
//! "Push: Argos webhooks" in `docs/argos-api.md`): `webhook_trigger`,
//! `submission_id`, `email`, `userid`, `applicant_id`, `cf`, and for KYC
//! events `kyc_result`, for `aml` an `aml_result`. With encryption on, the body
//! is `{"data": "<encrypted>"}` and decrypts, as API answers do, to that JSON.
//!
//! The engine treats an event only as a hint to fetch the submission now, so
//! what must be right here is the submission id; everything else is kept in
//! `raw` for logs and later use. Every error says what was wrong with the
//! body, without echoing it (it carries emails and user ids).

use serde_json::{Map, Value};

use super::crypto::{Cipher, CryptoError};

/// The longest submission id accepted. Argos ids are short; the bound keeps a
/// hostile body from turning into a huge API query.
pub const MAX_ID_LEN: usize = 128;

/// What happened to a submission, as Argos names it in `webhook_trigger`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Created,
    Retry,
    Approved,
    Rejected,
    /// The submission became pending (sent for review).
    Submit,
    Updated,
    Delete,
    Injection,
    Aml,
    AmlMonitor,
    /// A trigger Argos added after this was written: still a hint to fetch.
    Other(String),
}

impl Trigger {
    pub fn parse(s: &str) -> Trigger {
        match s {
            "created" => Trigger::Created,
            "retry" => Trigger::Retry,
            "approved" => Trigger::Approved,
            "rejected" => Trigger::Rejected,
            "submit" => Trigger::Submit,
            "updated" => Trigger::Updated,
            "delete" => Trigger::Delete,
            "injection" => Trigger::Injection,
            "aml" => Trigger::Aml,
            "aml_monitor" => Trigger::AmlMonitor,
            other => Trigger::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Trigger::Created => "created",
            Trigger::Retry => "retry",
            Trigger::Approved => "approved",
            Trigger::Rejected => "rejected",
            Trigger::Submit => "submit",
            Trigger::Updated => "updated",
            Trigger::Delete => "delete",
            Trigger::Injection => "injection",
            Trigger::Aml => "aml",
            Trigger::AmlMonitor => "aml_monitor",
            Trigger::Other(s) => s,
        }
    }
}

/// One webhook event. `raw` is the plain JSON object (decrypted if it came
/// encrypted), unknown fields included.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    pub trigger: Trigger,
    pub submission_id: String,
    pub encrypted: bool,
    pub raw: Map<String, Value>,
}

impl WebhookEvent {
    /// `kyc_result.status` for KYC events, when present.
    pub fn kyc_status(&self) -> Option<&str> {
        self.raw.get("kyc_result")?.get("status")?.as_str()
    }
}

/// Why a body is not a readable Argos webhook. The text is the reason given
/// in the 400 answer, so it never quotes the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("body is empty")]
    Empty,
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body is not a JSON object")]
    NotObject,
    #[error("body is encrypted (`{{\"data\": ...}}`) but no cipher is configured to read it")]
    NoCipher,
    #[error("encrypted body: {0}")]
    Decrypt(CryptoError),
    #[error("encrypted body: decrypted text is not a JSON object")]
    DecryptedNotObject,
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error(
        "field `submission_id` is not a plausible id (1 to {MAX_ID_LEN} visible ASCII characters)"
    )]
    BadSubmissionId,
}

/// Reads a webhook body. `cipher` reads encrypted bodies; without one an
/// encrypted body is an error (the account's encryption and ours disagree).
pub fn parse(body: &[u8], cipher: Option<&dyn Cipher>) -> Result<WebhookEvent, WebhookError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(WebhookError::Empty);
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::NotJson(e.to_string()))?;
    let Value::Object(outer) = value else {
        return Err(WebhookError::NotObject);
    };
    let (obj, encrypted) = if is_encrypted(&outer) {
        let Some(cipher) = cipher else {
            return Err(WebhookError::NoCipher);
        };
        let text = outer
            .get("data")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let plain = cipher.decrypt(text).map_err(WebhookError::Decrypt)?;
        match serde_json::from_slice(&plain) {
            Ok(Value::Object(m)) => (m, true),
            _ => return Err(WebhookError::DecryptedNotObject),
        }
    } else {
        (outer, false)
    };
    let trigger = match obj.get("webhook_trigger") {
        None | Some(Value::Null) => return Err(WebhookError::Missing("webhook_trigger")),
        Some(Value::String(s)) if !s.is_empty() => Trigger::parse(s),
        Some(_) => {
            return Err(WebhookError::WrongType {
                field: "webhook_trigger",
                expected: "a non-empty string",
            });
        }
    };
    let submission_id = match obj.get("submission_id") {
        None | Some(Value::Null) => return Err(WebhookError::Missing("submission_id")),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(WebhookError::WrongType {
                field: "submission_id",
                expected: "a string",
            });
        }
    };
    if !plausible_id(&submission_id) {
        return Err(WebhookError::BadSubmissionId);
    }
    for field in ["kyc_result", "aml_result", "cf"] {
        if obj
            .get(field)
            .is_some_and(|v| !(v.is_object() || v.is_null()))
        {
            return Err(WebhookError::WrongType {
                field,
                expected: "an object",
            });
        }
    }
    Ok(WebhookEvent {
        trigger,
        submission_id,
        encrypted,
        raw: obj,
    })
}

/// `{"data": "..."}` (optionally with `isEncrypted`) and no trigger: the
/// encrypted form. A plain event never has a string `data` beside nothing else.
fn is_encrypted(obj: &Map<String, Value>) -> bool {
    obj.get("data").is_some_and(Value::is_string) && !obj.contains_key("webhook_trigger")
}

/// Ids travel into an API query: printable ASCII without spaces, bounded.
fn plausible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::argos::crypto::AesEcb;
    use secrecy::SecretString;
    use serde_json::json;

    fn err(body: &str) -> String {
        parse(body.as_bytes(), None).unwrap_err().to_string()
    }

    #[test]
    fn plain_event_is_read() {
        let body = json!({
            "webhook_trigger": "approved", "submission_id": "abc123", "email": "a@b.c",
            "cf": {"cf1": "x"}, "kyc_result": {"status": "approved", "reviewer": "system"},
            "extra": 1
        });
        let e = parse(body.to_string().as_bytes(), None).unwrap();
        assert_eq!(e.trigger, Trigger::Approved);
        assert_eq!(e.submission_id, "abc123");
        assert_eq!(e.kyc_status(), Some("approved"));
        assert!(!e.encrypted);
        assert_eq!(e.raw["extra"], 1);
    }

    #[test]
    fn encrypted_event_is_decrypted() {
        let c = AesEcb::from_api_key(&SecretString::from("k"));
        let plain = json!({"webhook_trigger": "aml_monitor", "submission_id": "s-1",
            "aml_result": {"currentstatus": "Red Flag"}});
        let body = json!({"data": c.encrypt(plain.to_string().as_bytes())});
        let e = parse(body.to_string().as_bytes(), Some(&c)).unwrap();
        assert_eq!(e.trigger, Trigger::AmlMonitor);
        assert_eq!(e.submission_id, "s-1");
        assert!(e.encrypted);
        assert_eq!(
            parse(body.to_string().as_bytes(), None)
                .unwrap_err()
                .to_string(),
            "body is encrypted (`{\"data\": ...}`) but no cipher is configured to read it"
        );
        let other = AesEcb::from_api_key(&SecretString::from("other"));
        let e = parse(body.to_string().as_bytes(), Some(&other)).unwrap_err();
        assert!(
            matches!(
                e,
                WebhookError::Decrypt(_) | WebhookError::DecryptedNotObject
            ),
            "{e:?}"
        );
        let e = parse(br#"{"data": "%%%"}"#, Some(&c)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("encrypted body: encrypted data is not valid base64")
        );
    }

    #[test]
    fn unknown_trigger_is_still_a_hint() {
        let e = parse(
            br#"{"webhook_trigger": "video_call", "submission_id": "s"}"#,
            None,
        )
        .unwrap();
        assert_eq!(e.trigger, Trigger::Other("video_call".into()));
        assert_eq!(e.trigger.as_str(), "video_call");
    }

    #[test]
    fn exact_errors() {
        assert_eq!(err(""), "body is empty");
        assert_eq!(err(" \n"), "body is empty");
        assert_eq!(
            err("{\"a\":"),
            "body is not JSON: EOF while parsing a value at line 1 column 5"
        );
        assert_eq!(err("[1]"), "body is not a JSON object");
        assert_eq!(err("{}"), "field `webhook_trigger` is missing");
        assert_eq!(
            err(r#"{"webhook_trigger": 3, "submission_id": "s"}"#),
            "field `webhook_trigger` must be a non-empty string"
        );
        assert_eq!(
            err(r#"{"webhook_trigger": "", "submission_id": "s"}"#),
            "field `webhook_trigger` must be a non-empty string"
        );
        assert_eq!(
            err(r#"{"webhook_trigger": "created"}"#),
            "field `submission_id` is missing"
        );
        assert_eq!(
            err(r#"{"webhook_trigger": "created", "submission_id": 7}"#),
            "field `submission_id` must be a string"
        );
        let bad = "field `submission_id` is not a plausible id (1 to 128 visible ASCII characters)";
        assert_eq!(
            err(r#"{"webhook_trigger": "created", "submission_id": ""}"#),
            bad
        );
        assert_eq!(
            err(r#"{"webhook_trigger": "created", "submission_id": "a b"}"#),
            bad
        );
        let long = "x".repeat(129);
        assert_eq!(
            err(&format!(
                r#"{{"webhook_trigger": "created", "submission_id": "{long}"}}"#
            )),
            bad
        );
        assert_eq!(
            err(r#"{"webhook_trigger": "aml", "submission_id": "s", "aml_result": "High"}"#),
            "field `aml_result` must be an object"
        );
        // The body is never quoted back.
        assert!(
            !err(r#"{"webhook_trigger": "created", "email": "secret@x.y"}"#).contains("secret")
        );
    }
}

//! Receivers: where a notification goes once the outbox hands it over.
//!
//! A notification is one or more alerts the router grouped for one receiver,
//! with an idempotency key derived from their fingerprints. A receiver either
//! delivers it or says why not, and whether trying again can help.

pub mod email;
pub mod outbox;
pub mod routing;
pub mod scrub;
pub mod silence;
pub mod webhook;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::ReceiverConfig;
use crate::templates::Templates;

#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying (I/O error, 5xx, timeout).
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help (4xx other than 429, bad payload).
    #[error("{0}")]
    Permanent(String),
}

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

use crate::outbox_payload::OutboxPayload;
pub use crate::outbox_payload::{RenderedDigest, group_key_hash};

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
        Self::from_alert_text(receiver, include_str!("sample_alert.json"))
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

/// Appends `text` to a `file` receiver's file in one write (concurrent
/// appenders never interleave), with an fsync when `sync`.
pub async fn append_file(path: &Path, text: String, sync: bool) -> Result<(), DeliveryError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| DeliveryError::Transient(format!("{}: {e}", path.display())))?;
        f.write_all(text.as_bytes())
            .and_then(|_| if sync { f.sync_data() } else { Ok(()) })
            .map_err(|e| DeliveryError::Transient(format!("{}: {e}", path.display())))
    })
    .await
    .map_err(|e| DeliveryError::Transient(format!("file receiver task: {e}")))?
}

#[derive(Debug, Clone)]
pub struct Receiver {
    pub name: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Log,
    File(PathBuf),
    Email(Arc<email::EmailReceiver>),
    Webhook(Arc<webhook::WebhookReceiver>),
}

impl Receiver {
    /// Builds a receiver; fails on what only building can find (an unreadable
    /// CA file, a template the receiver names but nobody ships).
    pub fn from_config(cfg: &ReceiverConfig, templates: &Arc<Templates>) -> Result<Self, String> {
        let kind = match cfg {
            ReceiverConfig::Log { .. } => Kind::Log,
            ReceiverConfig::File { path, .. } => Kind::File(path.clone()),
            ReceiverConfig::Email(e) => {
                Kind::Email(Arc::new(email::EmailReceiver::new(e, templates.clone())?))
            }
            ReceiverConfig::Webhook(w) => Kind::Webhook(Arc::new(webhook::WebhookReceiver::new(
                w,
                templates.clone(),
            )?)),
        };
        Ok(Self {
            name: cfg.name().to_owned(),
            kind,
        })
    }

    /// True when templates need the submissions (the others never read them).
    pub fn wants_submissions(&self) -> bool {
        matches!(self.kind, Kind::Email(_) | Kind::Webhook(_))
    }

    pub async fn deliver(&self, n: &Notification) -> Result<(), DeliveryError> {
        if let Some(d) = &n.digest {
            return self.deliver_digest(n, d).await;
        }
        match &self.kind {
            Kind::Log => {
                // The alerts (rule, ids, times) hold no personal data.
                tracing::warn!(receiver = %self.name, key = %n.key, count = n.alerts.len(),
                    alerts = %serde_json::Value::Array(n.alerts.clone()), "alert");
                Ok(())
            }
            Kind::File(path) => append_file(path, self.file_text(n), true).await,
            Kind::Email(e) => e.deliver(n).await,
            Kind::Webhook(w) => w.deliver(n).await,
        }
    }

    /// The file this receiver appends to, if it is a `file` receiver.
    pub fn file(&self) -> Option<&std::path::Path> {
        match &self.kind {
            Kind::File(p) => Some(p),
            _ => None,
        }
    }

    /// What a `file` receiver appends for a notification: one JSON line per
    /// alert, keyed by the alert's own fingerprint (the archive reads like
    /// `eval`'s output, whatever the grouping), or one line for a digest.
    pub fn file_text(&self, n: &Notification) -> String {
        let mut text = String::new();
        if let Some(d) = &n.digest {
            let line = serde_json::json!({
                "idempotency_key": n.key,
                "receiver": self.name,
                "digest": d.name,
                "subject": d.subject,
                "text": d.text,
            });
            text.push_str(&line.to_string());
            text.push('\n');
            return text;
        }
        for a in &n.alerts {
            let mut line = serde_json::json!({
                "idempotency_key": a.get("fingerprint").cloned().unwrap_or(Value::Null),
                "notification": n.key,
                "receiver": self.name,
                "alert": a,
            });
            if let Some(e) = &n.escalation {
                line["escalation"] = e.clone();
            }
            text.push_str(&line.to_string());
            text.push('\n');
        }
        text
    }

    /// A digest: email gets its HTML and text parts, a webhook its data as
    /// JSON, the log its subject, a file one JSON line with the text.
    async fn deliver_digest(
        &self,
        n: &Notification,
        d: &RenderedDigest,
    ) -> Result<(), DeliveryError> {
        match &self.kind {
            Kind::Log => {
                tracing::warn!(receiver = %self.name, key = %n.key, digest = %d.name, "{}", d.subject);
                Ok(())
            }
            Kind::File(path) => append_file(path, self.file_text(n), true).await,
            Kind::Email(e) => e.deliver(n).await,
            Kind::Webhook(w) => w.deliver(n).await,
        }
    }
}

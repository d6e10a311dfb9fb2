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

use serde_json::Value;

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

pub use crate::outbox_payload::{Notification, RenderedDigest, group_key_hash};

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

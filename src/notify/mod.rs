//! Receivers: where a notification goes once the outbox hands it over.
//!
//! A receiver gets the notification's payload (the alert as JSON) and its
//! idempotency key (the alert's fingerprint) and either delivers it or says
//! why not, and whether trying again can help.

pub mod outbox;

use std::io::Write;
use std::path::PathBuf;

use crate::config::{ReceiverConfig, ReceiverKind};

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying (I/O error, 5xx, timeout).
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help (4xx other than 429, bad payload).
    #[error("{0}")]
    Permanent(String),
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
}

impl Receiver {
    pub fn from_config(cfg: &ReceiverConfig) -> Self {
        let kind = match &cfg.kind {
            ReceiverKind::Log => Kind::Log,
            ReceiverKind::File { path } => Kind::File(path.clone()),
        };
        Self {
            name: cfg.name.clone(),
            kind,
        }
    }

    pub async fn deliver(&self, idempotency_key: &str, payload: &str) -> Result<(), DeliveryError> {
        match &self.kind {
            Kind::Log => {
                // The payload is the alert (rule, ids, times): no personal data.
                tracing::warn!(receiver = %self.name, fingerprint = idempotency_key, alert = payload, "alert");
                Ok(())
            }
            Kind::File(path) => {
                let line = format!(
                    "{{\"idempotency_key\":{},\"receiver\":{},\"alert\":{}}}\n",
                    serde_json::Value::from(idempotency_key),
                    serde_json::Value::from(self.name.as_str()),
                    payload
                );
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .map_err(|e| {
                            DeliveryError::Transient(format!("{}: {e}", path.display()))
                        })?;
                    // One write call per line, so concurrent appenders never interleave.
                    f.write_all(line.as_bytes())
                        .and_then(|_| f.sync_data())
                        .map_err(|e| DeliveryError::Transient(format!("{}: {e}", path.display())))
                })
                .await
                .map_err(|e| DeliveryError::Transient(format!("file receiver task: {e}")))?
            }
        }
    }
}

//! Escalation steps in the store: which alerts are escalating, and each step sent.
//!
//! A step is sent by [`EscalationStore::send_escalation_step`]: in one
//! transaction it moves the escalation's `next_step` (only from the index it
//! expects, so two senders cannot both send), checks that the alert is still
//! open, writes the step's outbox rows and its `escalation_steps` and audit
//! rows. A crash before the commit sends nothing; after it, the outbox
//! delivers. So a step is never repeated and never skipped.

use std::collections::HashMap;

use super::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// An escalation with steps still to send, and its alert's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveEscalation {
    pub fingerprint: String,
    pub policy: String,
    pub started_at: DateTime<Utc>,
    /// 0-based index of the next step to send.
    pub next_step: usize,
    /// `open`, `acknowledged` or `resolved`.
    pub alert_state: String,
}

/// One step to send (see [`EscalationStore::send_escalation_step`]).
#[derive(Debug, Clone)]
pub struct StepSend<'a> {
    pub fingerprint: &'a str,
    pub policy: &'a str,
    /// 0-based.
    pub index: usize,
    /// True when it is the policy's last step (the escalation ends with it).
    pub last: bool,
    pub receivers: &'a [String],
    /// Outbox idempotency key (hash of fingerprint and step index).
    pub key: &'a str,
    pub due_at: DateTime<Utc>,
    pub late: bool,
    /// The `escalation` object of the notification (see `escalation::StepInfo`).
    pub info: serde_json::Value,
    /// The escalation clock's time (the daemon's clock, controlled in tests).
    pub now: DateTime<Utc>,
}

/// What became of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepResult {
    /// Outbox rows written.
    Sent,
    /// The alert was acknowledged or resolved first: the escalation ended.
    Stopped(String),
    /// Someone else sent it (or the escalation ended) since it was read.
    Gone,
}

/// The last escalation step sent for an alert (for digests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastStep {
    pub policy: String,
    /// 1-based, as notifications say it.
    pub step: usize,
    pub sent_at: String,
    pub late: bool,
    pub receivers: Vec<String>,
}

/// Role: escalations and their steps (see the module doc for the guarantee).
#[async_trait::async_trait]
pub trait EscalationStore: Send + Sync {
    /// Escalations with steps left, oldest first.
    async fn active_escalations(&self) -> Result<Vec<ActiveEscalation>>;

    /// Ends an escalation without sending more (`acknowledged`, `resolved`,
    /// `policy_removed`), with an audit row. False when it had already ended.
    async fn end_escalation(
        &self,
        fingerprint: &str,
        policy: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Sends one step (see the module doc): all or nothing.
    async fn send_escalation_step(&self, s: &StepSend<'_>) -> Result<StepResult>;

    /// The last step sent for each of these alerts (any policy; the latest
    /// wins). Alerts that never escalated are absent.
    async fn last_escalation_steps(
        &self,
        fingerprints: &[&str],
    ) -> Result<HashMap<String, LastStep>>;
}

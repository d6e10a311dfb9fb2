//! Escalation steps in the store: which alerts are escalating, and each step sent.
//!
//! A step is sent by [`SqliteStore::send_escalation_step`]: in one
//! transaction it moves the escalation's `next_step` (only from the index it
//! expects, so two senders cannot both send), checks that the alert is still
//! open, writes the step's outbox rows and its `escalation_steps` and audit
//! rows. A crash before the commit sends nothing; after it, the outbox
//! delivers. So a step is never repeated and never skipped.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Result, SqliteStore, StoreError, fmt_time, parse_time};

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

/// One step to send (see [`SqliteStore::send_escalation_step`]).
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

impl SqliteStore {
    /// Escalations with steps left, oldest first.
    pub async fn active_escalations(&self) -> Result<Vec<ActiveEscalation>> {
        let rows = sqlx::query(
            "SELECT e.fingerprint, e.policy, e.started_at, e.next_step, COALESCE(s.state, 'open') \
             FROM escalations e LEFT JOIN alert_states s ON s.fingerprint = e.fingerprint \
             WHERE e.ended_at IS NULL ORDER BY e.started_at, e.fingerprint, e.policy",
        )
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(ActiveEscalation {
                    fingerprint: r.get(0),
                    policy: r.get(1),
                    started_at: parse_time("escalations.started_at", &r.get::<String, _>(2))?,
                    next_step: r.get::<i64, _>(3).max(0) as usize,
                    alert_state: r.get(4),
                })
            })
            .collect()
    }

    /// Ends an escalation without sending more (`acknowledged`, `resolved`,
    /// `policy_removed`), with an audit row. False when it had already ended.
    pub async fn end_escalation(
        &self,
        fingerprint: &str,
        policy: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let ended = end(&mut tx, fingerprint, policy, reason, now).await?;
        tx.commit().await?;
        Ok(ended)
    }

    /// Sends one step (see the module doc): all or nothing.
    pub async fn send_escalation_step(&self, s: &StepSend<'_>) -> Result<StepResult> {
        let now = fmt_time(s.now);
        // The outbox delivers by the wall clock, whatever clock escalates.
        let wall = fmt_time(Utc::now());
        let mut tx = self.write_tx().await?;
        // Write first: it takes SQLite's write lock, so the state read below
        // cannot be overtaken by an acknowledgement before we commit.
        let moved = sqlx::query(
            "UPDATE escalations SET next_step = ?1 + 1, \
             ended_at = CASE WHEN ?2 THEN ?3 END, end_reason = CASE WHEN ?2 THEN 'completed' END \
             WHERE fingerprint = ?4 AND policy = ?5 AND next_step = ?1 AND ended_at IS NULL",
        )
        .bind(s.index as i64)
        .bind(s.last)
        .bind(&now)
        .bind(s.fingerprint)
        .bind(s.policy)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved == 0 {
            // Rolled back now, not when the pooled connection is next used:
            // the UPDATE took the write lock even though it changed nothing.
            tx.rollback().await?;
            return Ok(StepResult::Gone);
        }
        let row = sqlx::query(
            "SELECT a.body, COALESCE(st.state, 'open') FROM alerts a \
             LEFT JOIN alert_states st ON st.fingerprint = a.fingerprint WHERE a.fingerprint = ?",
        )
        .bind(s.fingerprint)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Err(StoreError::Corrupt {
                what: "escalations.fingerprint",
                detail: format!(
                    "escalation `{}` of alert {} has no alert",
                    s.policy, s.fingerprint
                ),
            });
        };
        let state: String = row.get(1);
        if state != "open" {
            tx.rollback().await?;
            let mut tx = self.write_tx().await?;
            end(&mut tx, s.fingerprint, s.policy, &state, s.now).await?;
            tx.commit().await?;
            return Ok(StepResult::Stopped(state));
        }
        let body: String = row.get(0);
        let alert: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                what: "alerts.body",
                detail: format!("alert {}: {e}", s.fingerprint),
            })?;
        let payload = serde_json::json!({
            "group_key": null,
            "alerts": [alert],
            "escalation": s.info,
        })
        .to_string();
        for r in s.receivers {
            // OR IGNORE: two policies sending the same step to one receiver send it once.
            sqlx::query(
                "INSERT OR IGNORE INTO outbox (fingerprint, receiver, payload, created_at, next_attempt_at) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(s.key)
            .bind(r)
            .bind(&payload)
            .bind(&wall)
            .bind(&wall)
            .execute(&mut *tx)
            .await?;
        }
        let receivers = serde_json::to_string(s.receivers).expect("strings serialize");
        sqlx::query(
            "INSERT INTO escalation_steps (fingerprint, policy, step, due_at, sent_at, late, receivers, \
             idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(s.fingerprint)
        .bind(s.policy)
        .bind(s.index as i64)
        .bind(fmt_time(s.due_at))
        .bind(&now)
        .bind(s.late)
        .bind(&receivers)
        .bind(s.key)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO audit_log (at, kind, fingerprint, detail) VALUES (?, 'escalation_step', ?, ?)",
        )
        .bind(&now)
        .bind(s.fingerprint)
        .bind(
            serde_json::json!({
                "policy": s.policy,
                "step": s.index + 1,
                "receivers": s.receivers,
                "due_at": fmt_time(s.due_at),
                "late": s.late,
                "idempotency_key": s.key,
            })
            .to_string(),
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(StepResult::Sent)
    }

    /// The last step sent for each of these alerts (any policy; the latest
    /// wins). Alerts that never escalated are absent.
    pub async fn last_escalation_steps(
        &self,
        fingerprints: &[&str],
    ) -> Result<HashMap<String, LastStep>> {
        let mut out: HashMap<String, LastStep> = HashMap::new();
        for fp in fingerprints {
            let row = sqlx::query(
                "SELECT policy, step, sent_at, late, receivers FROM escalation_steps \
                 WHERE fingerprint = ? ORDER BY sent_at DESC, step DESC LIMIT 1",
            )
            .bind(fp)
            .fetch_optional(self.pool())
            .await?;
            if let Some(r) = row {
                let receivers: String = r.get(4);
                out.insert(
                    (*fp).to_owned(),
                    LastStep {
                        policy: r.get(0),
                        step: r.get::<i64, _>(1).max(0) as usize + 1,
                        sent_at: r.get(2),
                        late: r.get::<i64, _>(3) != 0,
                        receivers: serde_json::from_str(&receivers).map_err(|e| {
                            StoreError::Corrupt {
                                what: "escalation_steps.receivers",
                                detail: format!("alert {fp}: {e}"),
                            }
                        })?,
                    },
                );
            }
        }
        Ok(out)
    }
}

async fn end(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    fingerprint: &str,
    policy: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let now = fmt_time(now);
    let n = sqlx::query(
        "UPDATE escalations SET ended_at = ?, end_reason = ? \
         WHERE fingerprint = ? AND policy = ? AND ended_at IS NULL",
    )
    .bind(&now)
    .bind(reason)
    .bind(fingerprint)
    .bind(policy)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n > 0 {
        sqlx::query(
            "INSERT INTO audit_log (at, kind, fingerprint, detail) VALUES (?, 'escalation_stopped', ?, ?)",
        )
        .bind(&now)
        .bind(fingerprint)
        .bind(serde_json::json!({"policy": policy, "reason": reason}).to_string())
        .execute(&mut **tx)
        .await?;
    }
    Ok(n > 0)
}

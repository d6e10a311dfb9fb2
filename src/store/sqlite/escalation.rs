//! [`EscalationStore`] on SQLite: see `crate::store::escalation` for the guarantees.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::SqliteStore;
use crate::outbox_payload::OutboxPayload;
use crate::store::escalation::{ActiveEscalation, EscalationStore, LastStep, StepResult, StepSend};
use crate::store::{Result, StoreError, fmt_time, parse_time};

#[async_trait::async_trait]
impl EscalationStore for SqliteStore {
    async fn active_escalations(&self) -> Result<Vec<ActiveEscalation>> {
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

    async fn end_escalation(
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

    async fn send_escalation_step(&self, s: &StepSend<'_>) -> Result<StepResult> {
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
        let payload = OutboxPayload::escalation_step(&alert, &s.info);
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

    async fn last_escalation_steps(
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

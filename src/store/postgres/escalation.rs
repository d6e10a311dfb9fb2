//! Escalation steps (types and the all-or-nothing rule in `store::escalation`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::PgStore;
use crate::store::escalation::{ActiveEscalation, LastStep, StepResult, StepSend};
use crate::store::prelude::*;
use crate::store::{Result, StoreError, fmt_time, parse_time};

#[async_trait::async_trait]
impl EscalationStore for PgStore {
    /// Escalations with steps left, oldest first.
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

    /// Ends an escalation without sending more; false when it had already ended.
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

    /// Sends one step: all or nothing. The escalation row moves only from
    /// the index expected (two senders cannot both send); the alert's row is
    /// read `FOR SHARE`, so an acknowledgement (which locks it `FOR UPDATE`)
    /// lands before the read or after the commit, never between.
    async fn send_escalation_step(&self, s: &StepSend<'_>) -> Result<StepResult> {
        let now = fmt_time(s.now);
        let wall = fmt_time(Utc::now());
        let mut tx = self.write_tx().await?;
        let moved = sqlx::query(
            "UPDATE escalations SET next_step = $1 + 1, \
             ended_at = CASE WHEN $2 THEN $3 END, end_reason = CASE WHEN $2 THEN 'completed' END \
             WHERE fingerprint = $4 AND policy = $5 AND next_step = $1 AND ended_at IS NULL",
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
            tx.rollback().await?;
            return Ok(StepResult::Gone);
        }
        let row = sqlx::query(
            "SELECT a.body, COALESCE(st.state, 'open') FROM alerts a \
             LEFT JOIN alert_states st ON st.fingerprint = a.fingerprint WHERE a.fingerprint = $1 \
             FOR SHARE OF a",
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
            // DO NOTHING: two policies sending the same step to one receiver send it once.
            sqlx::query(
                "INSERT INTO outbox (fingerprint, receiver, payload, created_at, next_attempt_at) \
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
            )
            .bind(s.key)
            .bind(r)
            .bind(&payload)
            .bind(&wall)
            .execute(&mut *tx)
            .await?;
        }
        let receivers = serde_json::to_string(s.receivers).expect("strings serialize");
        sqlx::query(
            "INSERT INTO escalation_steps (fingerprint, policy, step, due_at, sent_at, late, receivers, \
             idempotency_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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
        let detail = serde_json::json!({
            "policy": s.policy,
            "step": s.index + 1,
            "receivers": s.receivers,
            "due_at": fmt_time(s.due_at),
            "late": s.late,
            "idempotency_key": s.key,
        });
        sqlx::query(
            "INSERT INTO audit_log (at, kind, fingerprint, detail) VALUES ($1, 'escalation_step', $2, $3)",
        )
        .bind(&now)
        .bind(s.fingerprint)
        .bind(detail.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(StepResult::Sent)
    }

    /// The last step sent for each of these alerts (the latest wins).
    async fn last_escalation_steps(
        &self,
        fingerprints: &[&str],
    ) -> Result<HashMap<String, LastStep>> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (fingerprint) fingerprint, policy, step, sent_at, late, receivers \
             FROM escalation_steps WHERE fingerprint = ANY($1) \
             ORDER BY fingerprint, sent_at DESC, step DESC",
        )
        .bind(fingerprints)
        .fetch_all(self.pool())
        .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in rows {
            let fp: String = r.get(0);
            let receivers: String = r.get(5);
            let receivers = serde_json::from_str(&receivers).map_err(|e| StoreError::Corrupt {
                what: "escalation_steps.receivers",
                detail: format!("alert {fp}: {e}"),
            })?;
            let step = LastStep {
                policy: r.get(1),
                step: r.get::<i64, _>(2).max(0) as usize + 1,
                sent_at: r.get(3),
                late: r.get(4),
                receivers,
            };
            out.insert(fp, step);
        }
        Ok(out)
    }
}

async fn end(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    fingerprint: &str,
    policy: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let now = fmt_time(now);
    let n = sqlx::query(
        "UPDATE escalations SET ended_at = $1, end_reason = $2 \
         WHERE fingerprint = $3 AND policy = $4 AND ended_at IS NULL",
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
            "INSERT INTO audit_log (at, kind, fingerprint, detail) VALUES ($1, 'escalation_stopped', $2, $3)",
        )
        .bind(&now)
        .bind(fingerprint)
        .bind(serde_json::json!({"policy": policy, "reason": reason}).to_string())
        .execute(&mut **tx)
        .await?;
    }
    Ok(n > 0)
}

//! The outbox's role: due notifications, delivery outcomes, notification
//! groups (written to the outbox when their wait is over).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{PgStore, insert_many};
use crate::store::prelude::*;
use crate::store::{
    DeliveryOutcome, GroupInsert, OutboxRow, OutboxStats, Result, StoreError, fmt_time, parse_time,
};

const OUTBOX_COLUMNS: &str = "id, fingerprint, receiver, payload, created_at, attempts";

fn outbox_rows(rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<OutboxRow>> {
    rows.iter()
        .map(|r| {
            Ok(OutboxRow {
                id: r.get(0),
                fingerprint: r.get(1),
                receiver: r.get(2),
                payload: r.get(3),
                created_at: parse_time("outbox.created_at", &r.get::<String, _>(4))?,
                attempts: r.get(5),
            })
        })
        .collect()
}

/// Routed alerts join their groups, in the batch's transaction.
pub(super) async fn join_groups(
    conn: &mut sqlx::PgConnection,
    notify: &[GroupInsert],
    now: &str,
) -> Result<()> {
    for g in notify {
        let added = sqlx::query(
            "INSERT INTO notify_pending (receiver, fingerprint, group_key, added_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&g.receiver)
        .bind(&g.fingerprint)
        .bind(&g.group_key)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if let Some(policy) = &g.escalation {
            // DO NOTHING: re-decided after a crash, or two routes naming one policy.
            sqlx::query(
                "INSERT INTO escalations (fingerprint, policy, started_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&g.fingerprint)
            .bind(policy)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        if added == 0 {
            // Re-decided after a crash: already waiting or already sent.
            continue;
        }
        let flush_at =
            fmt_time(Utc::now() + chrono::Duration::from_std(g.group_wait).unwrap_or_default());
        // A group already waiting keeps its time; one inside its repeat
        // interval waits for the interval's end. (GREATEST ignores NULLs.)
        sqlx::query(
            "INSERT INTO notify_groups (receiver, group_key, flush_at, repeat_until, repeat_ms) \
             VALUES ($1, $2, $3, NULL, $4) \
             ON CONFLICT (receiver, group_key) DO UPDATE SET \
             flush_at = COALESCE(notify_groups.flush_at, \
                                 GREATEST(excluded.flush_at, notify_groups.repeat_until)), \
             repeat_ms = excluded.repeat_ms",
        )
        .bind(&g.receiver)
        .bind(&g.group_key)
        .bind(&flush_at)
        .bind(g.repeat_interval.as_millis() as i64)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl PgStore {
    /// Reads due rows for delivery: a claim. When leading, it is fenced
    /// like a commit, so an instance deposed (or frozen, then woken) after
    /// the takeover reads nothing to send; only rows it read before the
    /// takeover can still go out twice, with the same idempotency key.
    async fn claim(&self, q: super::PgQuery<'_>) -> Result<Vec<sqlx::postgres::PgRow>> {
        let Some(epoch) = self.fence else {
            return Ok(q.fetch_all(&self.pool).await?);
        };
        let mut tx = self.pool.begin().await?;
        super::leader::fence(&mut tx, epoch).await?;
        let rows = q.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows)
    }
}

#[async_trait::async_trait]
impl OutboxStore for PgStore {
    async fn record_delivery(&self, row: &OutboxRow, outcome: &DeliveryOutcome) -> Result<()> {
        self.record_deliveries(&[(row.clone(), outcome.clone())])
            .await
    }
    async fn due_outbox(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<OutboxRow>> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox \
             WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY id LIMIT $2"
        );
        let q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(fmt_time(now))
            .bind(limit);
        outbox_rows(self.claim(q).await?)
    }

    async fn due_outbox_for(
        &self,
        receiver: &str,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox \
             WHERE state = 'pending' AND next_attempt_at <= $1 AND receiver = $2 ORDER BY id LIMIT $3"
        );
        let q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(fmt_time(now))
            .bind(receiver)
            .bind(limit);
        outbox_rows(self.claim(q).await?)
    }

    async fn due_receivers(&self, now: DateTime<Utc>) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT receiver FROM outbox WHERE state = 'pending' AND next_attempt_at <= $1",
        )
        .bind(fmt_time(now))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Pending outbox rows of one notification (every receiver).
    async fn pending_outbox_of(&self, key: &str) -> Result<Vec<OutboxRow>> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state = 'pending' AND fingerprint = $1 ORDER BY id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_all(&self.pool)
            .await?;
        outbox_rows(rows)
    }

    /// Several deliveries' outcomes in one (fenced) transaction; the
    /// `delivery_attempts` trigger writes their audit rows.
    async fn record_deliveries(&self, done: &[(OutboxRow, DeliveryOutcome)]) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        let now = fmt_time(Utc::now());
        let mut tx = self.write_tx().await?;
        // Set-based for the common case: a round of N deliveries is a few
        // statements, not 2N round trips (a crash between the sends and this
        // commit re-sends the round, so the commit should be short).
        let delivered: Vec<i64> = done
            .iter()
            .filter(|(_, o)| matches!(o, DeliveryOutcome::Delivered))
            .map(|(r, _)| r.id)
            .collect();
        if !delivered.is_empty() {
            sqlx::query(
                "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, done_at = $1 \
                 WHERE id = ANY($2)",
            )
            .bind(&now)
            .bind(&delivered)
            .execute(&mut *tx)
            .await?;
        }
        let mut attempts: Vec<(i64, bool, Option<String>)> = Vec::with_capacity(done.len());
        for (row, outcome) in done {
            let detail = match outcome {
                DeliveryOutcome::Delivered => None,
                DeliveryOutcome::Retry {
                    error,
                    next_attempt_at,
                } => {
                    sqlx::query(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2 \
                         WHERE id = $3",
                    )
                    .bind(error)
                    .bind(fmt_time(*next_attempt_at))
                    .bind(row.id)
                    .execute(&mut *tx)
                    .await?;
                    Some(error.clone())
                }
                DeliveryOutcome::Dead { error } => {
                    sqlx::query(
                        "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = $1, \
                         done_at = $2 WHERE id = $3",
                    )
                    .bind(error)
                    .bind(&now)
                    .bind(row.id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO audit_log (at, kind, fingerprint, detail) \
                         VALUES ($1, 'dead_letter', $2, $3)",
                    )
                    .bind(&now)
                    .bind(&row.fingerprint)
                    .bind(serde_json::json!({"receiver": row.receiver, "error": error}).to_string())
                    .execute(&mut *tx)
                    .await?;
                    Some(error.clone())
                }
            };
            attempts.push((row.id, detail.is_none(), detail));
        }
        insert_many(
            &mut tx,
            "INSERT INTO delivery_attempts (outbox_id, at, ok, detail)",
            4,
            "",
            &attempts,
            |q, (id, ok, detail)| q.bind(*id).bind(&now).bind(*ok).bind(detail.clone()),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_stats(&self) -> Result<OutboxStats> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM outbox GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        let mut s = OutboxStats::default();
        for r in rows {
            let n: i64 = r.get(1);
            match r.get::<String, _>(0).as_str() {
                "pending" => s.pending = n,
                "delivered" => s.delivered = n,
                "dead" => s.dead = n,
                _ => {}
            }
        }
        Ok(s)
    }

    /// See [`crate::store::Store::flush_groups`]. The due groups are locked
    /// (`FOR UPDATE`), so a batch joining one of them waits for the flush;
    /// only the alerts the notification carries are marked sent.
    async fn flush_groups(&self, now: DateTime<Utc>) -> Result<usize> {
        let now_s = fmt_time(now);
        let mut tx = self.write_tx().await?;
        let groups = sqlx::query(
            "SELECT receiver, group_key, repeat_ms FROM notify_groups \
             WHERE flush_at IS NOT NULL AND flush_at <= $1 ORDER BY flush_at LIMIT 200 FOR UPDATE",
        )
        .bind(&now_s)
        .fetch_all(&mut *tx)
        .await?;
        let mut written = 0;
        for g in &groups {
            let receiver: String = g.get(0);
            let group_key: String = g.get(1);
            let repeat_ms: i64 = g.get(2);
            let rows = sqlx::query(
                "SELECT p.fingerprint, a.body FROM notify_pending p \
                 JOIN alerts a ON a.fingerprint = p.fingerprint \
                 WHERE p.receiver = $1 AND p.group_key = $2 AND p.outbox_id IS NULL \
                 ORDER BY a.event_time, p.fingerprint",
            )
            .bind(&receiver)
            .bind(&group_key)
            .fetch_all(&mut *tx)
            .await?;
            let repeat_until = fmt_time(now + chrono::Duration::milliseconds(repeat_ms));
            if !rows.is_empty() {
                let fps: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
                let alerts = rows
                    .iter()
                    .map(|r| {
                        serde_json::from_str(&r.get::<String, _>(1)).map_err(|e| {
                            StoreError::Corrupt {
                                what: "alerts.body",
                                detail: e.to_string(),
                            }
                        })
                    })
                    .collect::<Result<Vec<serde_json::Value>>>()?;
                let refs: Vec<&str> = fps.iter().map(String::as_str).collect();
                let key = crate::outbox_payload::group_key_hash(&refs);
                let payload =
                    crate::outbox_payload::OutboxPayload::group(Some(&group_key), &alerts);
                sqlx::query(
                    "INSERT INTO outbox (fingerprint, receiver, payload, created_at, next_attempt_at) \
                     VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
                )
                .bind(&key)
                .bind(&receiver)
                .bind(&payload)
                .bind(&now_s)
                .execute(&mut *tx)
                .await?;
                let id: i64 = sqlx::query_scalar(
                    "SELECT id FROM outbox WHERE fingerprint = $1 AND receiver = $2",
                )
                .bind(&key)
                .bind(&receiver)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE notify_pending SET outbox_id = $1 \
                     WHERE receiver = $2 AND group_key = $3 AND outbox_id IS NULL \
                     AND fingerprint = ANY($4)",
                )
                .bind(id)
                .bind(&receiver)
                .bind(&group_key)
                .bind(&fps)
                .execute(&mut *tx)
                .await?;
                written += 1;
            }
            sqlx::query(
                "UPDATE notify_groups SET flush_at = NULL, repeat_until = $1 \
                 WHERE receiver = $2 AND group_key = $3",
            )
            .bind(&repeat_until)
            .bind(&receiver)
            .bind(&group_key)
            .execute(&mut *tx)
            .await?;
        }
        // Groups with nothing waiting and no repeat interval running are done.
        sqlx::query(
            "DELETE FROM notify_groups WHERE flush_at IS NULL AND (repeat_until IS NULL OR repeat_until <= $1)",
        )
        .bind(&now_s)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(written)
    }
}

//! What digests read, and the one write that makes a digest go out once
//! (types and meaning in `store::digests`).

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};

use super::PgStore;
use crate::store::prelude::*;
use crate::store::{
    DeadLetter, DigestAlert, DigestRecord, OutboxInsert, Result, RuleErrorRow, fmt_time, parse_time,
};

const ALERT_COLUMNS: &str = "a.fingerprint, a.rule_id, a.severity, a.submission_id, a.fired_at, a.body, \
     v.raw::jsonb ->> 'applicant_id', v.raw::jsonb ->> 'userid', \
     COALESCE(s.state, 'open'), \
     EXISTS (SELECT 1 FROM audit_log l WHERE l.kind = 'silenced' AND l.fingerprint = a.fingerprint) \
     FROM alerts a \
     LEFT JOIN alert_states s ON s.fingerprint = a.fingerprint \
     LEFT JOIN submission_versions v ON v.submission_id = a.submission_id";

fn digest_alert(r: &sqlx::postgres::PgRow) -> Result<DigestAlert> {
    let body: String = r.get(5);
    let labels = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|b| b.get("labels").cloned())
        .and_then(|l| serde_json::from_value(l).ok())
        .unwrap_or_default();
    Ok(DigestAlert {
        fingerprint: r.get(0),
        rule: r.get(1),
        severity: r.get(2),
        submission_id: r.get(3),
        fired_at: parse_time("alerts.fired_at", &r.get::<String, _>(4))?,
        labels,
        applicant_id: r.get(6),
        userid: r.get(7),
        state: r.get(8),
        silenced: r.get(9),
    })
}

#[async_trait::async_trait]
impl DigestStore for PgStore {
    /// The last scheduled time done for digest `name` (see `SqliteStore::digest_anchor`).
    async fn digest_anchor(
        &self,
        name: &str,
        schedule: &str,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>> {
        let row = sqlx::query("SELECT last_slot, schedule FROM digest_schedules WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        if let Some(r) = &row
            && r.get::<String, _>(1) == schedule
        {
            return parse_time("digest_schedules.last_slot", &r.get::<String, _>(0));
        }
        if row.is_some() {
            tracing::info!(
                digest = name,
                "digest schedule changed; it starts again from now"
            );
        }
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO digest_schedules (name, last_slot, schedule, updated) VALUES ($1, $2, $3, $2) \
             ON CONFLICT (name) DO UPDATE SET last_slot = excluded.last_slot, \
             schedule = excluded.schedule, updated = excluded.updated",
        )
        .bind(name)
        .bind(fmt_time(now))
        .bind(schedule)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(now)
    }

    /// Records the digest and writes its outbox rows in one (fenced)
    /// transaction; false (nothing written) when already recorded.
    async fn record_digest(
        &self,
        rec: &DigestRecord,
        outbox: &[OutboxInsert],
        advance: bool,
    ) -> Result<bool> {
        let now = fmt_time(Utc::now());
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "INSERT INTO digests (name, scheduled_at, period_start, period_end, slots, \
             trigger, content_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&rec.name)
        .bind(fmt_time(rec.scheduled_at))
        .bind(fmt_time(rec.period_start))
        .bind(fmt_time(rec.period_end))
        .bind(rec.slots as i64)
        .bind(&rec.trigger)
        .bind(&rec.content_hash)
        .bind(&now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Ok(false);
        }
        for o in outbox {
            sqlx::query(
                "INSERT INTO outbox (fingerprint, receiver, payload, created_at, next_attempt_at) \
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
            )
            .bind(&o.fingerprint)
            .bind(&o.receiver)
            .bind(&o.payload)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        if advance {
            sqlx::query(
                "UPDATE digest_schedules SET last_slot = $1, updated = $2 WHERE name = $3 AND last_slot < $1",
            )
            .bind(fmt_time(rec.scheduled_at))
            .bind(&now)
            .bind(&rec.name)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Moves a schedule past times that produced nothing.
    async fn advance_digest(&self, name: &str, slot: DateTime<Utc>) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE digest_schedules SET last_slot = $1, updated = $2 WHERE name = $3 AND last_slot < $1",
        )
        .bind(fmt_time(slot))
        .bind(fmt_time(Utc::now()))
        .bind(name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Digests recorded for `name`, oldest first.
    async fn digests_recorded(&self, name: &str) -> Result<Vec<DigestRecord>> {
        let rows = sqlx::query(
            "SELECT name, scheduled_at, period_start, period_end, slots, trigger, content_hash \
             FROM digests WHERE name = $1 ORDER BY scheduled_at",
        )
        .bind(name)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DigestRecord {
                    name: r.get(0),
                    scheduled_at: parse_time("digests.scheduled_at", &r.get::<String, _>(1))?,
                    period_start: parse_time("digests.period_start", &r.get::<String, _>(2))?,
                    period_end: parse_time("digests.period_end", &r.get::<String, _>(3))?,
                    slots: r.get::<i64, _>(4) as u32,
                    trigger: r.get(5),
                    content_hash: r.get(6),
                })
            })
            .collect()
    }

    /// Alerts fired in `[start, end)`, oldest first; not a quiet backfill's.
    async fn alerts_fired_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<DigestAlert>> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} WHERE a.fired_at >= $1 AND a.fired_at < $2 AND NOT a.historical AND a.mode = 'live' \
             ORDER BY a.fired_at, a.fingerprint"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(fmt_time(start))
            .bind(fmt_time(end))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(digest_alert).collect()
    }

    /// Alerts fired before `end` and still open, oldest first.
    async fn open_alerts_before(&self, end: DateTime<Utc>) -> Result<Vec<DigestAlert>> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} WHERE a.fired_at < $1 AND COALESCE(s.state, 'open') = 'open' AND a.mode = 'live' \
             ORDER BY a.fired_at, a.fingerprint"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(fmt_time(end))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(digest_alert).collect()
    }

    /// Rule errors audited in `[start, end)`.
    async fn rule_errors_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<RuleErrorRow>> {
        let rows = sqlx::query(
            "SELECT at, COALESCE(rule_id, ''), COALESCE(submission_id, ''), \
             COALESCE(detail::jsonb ->> 'error', '') FROM audit_log \
             WHERE kind = 'rule_error' AND at >= $1 AND at < $2 ORDER BY at, id",
        )
        .bind(fmt_time(start))
        .bind(fmt_time(end))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RuleErrorRow {
                    at: parse_time("audit_log.at", &r.get::<String, _>(0))?,
                    rule: r.get(1),
                    submission_id: r.get(2),
                    error: r.get(3),
                })
            })
            .collect()
    }

    /// Notifications given up in `[start, end)`.
    async fn dead_letters_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT receiver, fingerprint, COALESCE(last_error, ''), done_at FROM outbox \
             WHERE state = 'dead' AND done_at >= $1 AND done_at < $2 ORDER BY done_at, id",
        )
        .bind(fmt_time(start))
        .bind(fmt_time(end))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeadLetter {
                    receiver: r.get(0),
                    key: r.get(1),
                    error: r.get(2),
                    at: parse_time("outbox.done_at", &r.get::<String, _>(3))?,
                })
            })
            .collect()
    }
}

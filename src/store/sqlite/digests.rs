//! [`DigestStore`] on SQLite.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};

use super::SqliteStore;
use crate::store::digests::{DeadLetter, DigestAlert, DigestRecord, DigestStore, RuleErrorRow};
use crate::store::{OutboxInsert, Result, fmt_time, parse_time};

const ALERT_COLUMNS: &str = "a.fingerprint, a.rule_id, a.severity, a.submission_id, a.fired_at, a.body, \
     json_extract(v.raw, '$.applicant_id'), json_extract(v.raw, '$.userid'), \
     COALESCE(s.state, 'open'), \
     EXISTS (SELECT 1 FROM audit_log l WHERE l.kind = 'silenced' AND l.fingerprint = a.fingerprint) \
     FROM alerts a \
     LEFT JOIN alert_states s ON s.fingerprint = a.fingerprint \
     LEFT JOIN submission_versions v ON v.submission_id = a.submission_id";

fn digest_alert(r: &sqlx::sqlite::SqliteRow) -> Result<DigestAlert> {
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
        applicant_id: r.try_get::<Option<String>, _>(6).ok().flatten(),
        userid: r.try_get::<Option<String>, _>(7).ok().flatten(),
        state: r.get(8),
        silenced: r.get::<i64, _>(9) != 0,
    })
}

#[async_trait::async_trait]
impl DigestStore for SqliteStore {
    async fn digest_anchor(
        &self,
        name: &str,
        schedule: &str,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>> {
        let row = sqlx::query("SELECT last_slot, schedule FROM digest_schedules WHERE name = ?")
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
        sqlx::query(
            "INSERT INTO digest_schedules (name, last_slot, schedule, updated) VALUES (?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET last_slot = excluded.last_slot, \
             schedule = excluded.schedule, updated = excluded.updated",
        )
        .bind(name)
        .bind(fmt_time(now))
        .bind(schedule)
        .bind(fmt_time(now))
        .execute(self.pool())
        .await?;
        Ok(now)
    }

    async fn record_digest(
        &self,
        rec: &DigestRecord,
        outbox: &[OutboxInsert],
        advance: bool,
    ) -> Result<bool> {
        let now = fmt_time(Utc::now());
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "INSERT OR IGNORE INTO digests (name, scheduled_at, period_start, period_end, slots, \
             trigger, content_hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
                "INSERT OR IGNORE INTO outbox (fingerprint, receiver, payload, created_at, next_attempt_at) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&o.fingerprint)
            .bind(&o.receiver)
            .bind(&o.payload)
            .bind(&now)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        if advance {
            sqlx::query(
                "UPDATE digest_schedules SET last_slot = ?, updated = ? WHERE name = ? AND last_slot < ?",
            )
            .bind(fmt_time(rec.scheduled_at))
            .bind(&now)
            .bind(&rec.name)
            .bind(fmt_time(rec.scheduled_at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn advance_digest(&self, name: &str, slot: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE digest_schedules SET last_slot = ?, updated = ? WHERE name = ? AND last_slot < ?")
            .bind(fmt_time(slot))
            .bind(fmt_time(Utc::now()))
            .bind(name)
            .bind(fmt_time(slot))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn digests_recorded(&self, name: &str) -> Result<Vec<DigestRecord>> {
        let rows = sqlx::query(
            "SELECT name, scheduled_at, period_start, period_end, slots, trigger, content_hash \
             FROM digests WHERE name = ? ORDER BY scheduled_at",
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

    async fn alerts_fired_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<DigestAlert>> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} WHERE a.fired_at >= ? AND a.fired_at < ? AND a.historical = 0 AND a.mode = 'live' \
             ORDER BY a.fired_at, a.fingerprint"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(fmt_time(start))
            .bind(fmt_time(end))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(digest_alert).collect()
    }

    async fn open_alerts_before(&self, end: DateTime<Utc>) -> Result<Vec<DigestAlert>> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} WHERE a.fired_at < ? AND COALESCE(s.state, 'open') = 'open' AND a.mode = 'live' \
             ORDER BY a.fired_at, a.fingerprint"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(fmt_time(end))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(digest_alert).collect()
    }

    async fn rule_errors_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<RuleErrorRow>> {
        let rows = sqlx::query(
            "SELECT at, COALESCE(rule_id, ''), COALESCE(submission_id, ''), \
             COALESCE(json_extract(detail, '$.error'), '') FROM audit_log \
             WHERE kind = 'rule_error' AND at >= ? AND at < ? ORDER BY at, id",
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

    async fn dead_letters_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT receiver, fingerprint, COALESCE(last_error, ''), done_at FROM outbox \
             WHERE state = 'dead' AND done_at >= ? AND done_at < ? ORDER BY done_at, id",
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

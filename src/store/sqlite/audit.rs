//! [`AuditStore`] and [`MaintenanceStore`] on SQLite.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};

use super::SqliteStore;
use crate::store::audit::{AlertRecord, AuditEntry, AuditStore, Summary, WindowMembership};
use crate::store::maintenance::MaintenanceStore;
use crate::store::{PipelineStore, Result, StoreError, fmt_time};

const AUDIT_COLUMNS: &str =
    "id, at, kind, submission_id, version_hash, rule_id, rule_version, fingerprint, detail";

fn audit_entry(r: &sqlx::sqlite::SqliteRow) -> AuditEntry {
    let detail: Option<String> = r.get(8);
    AuditEntry {
        id: r.get(0),
        at: r.get(1),
        kind: r.get(2),
        submission_id: r.get(3),
        version_hash: r.get(4),
        rule_id: r.get(5),
        rule_version: r.get(6),
        fingerprint: r.get(7),
        detail: detail
            .and_then(|d| serde_json::from_str(&d).ok())
            .unwrap_or(serde_json::Value::Null),
    }
}

impl SqliteStore {
    /// Audit rows whose `column` equals `value`, oldest first.
    async fn audit_where(&self, column: &'static str, value: &str) -> Result<Vec<AuditEntry>> {
        // `column` is one of two constants below, never user input.
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {column} = ? ORDER BY id");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(value)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(audit_entry).collect())
    }
}

#[async_trait::async_trait]
impl AuditStore for SqliteStore {
    /// Audit rows about a submission, oldest first.
    async fn audit_for_submission(&self, id: &str) -> Result<Vec<AuditEntry>> {
        self.audit_where("submission_id", id).await
    }

    /// Audit rows about an alert, oldest first.
    async fn audit_for_alert(&self, fingerprint: &str) -> Result<Vec<AuditEntry>> {
        self.audit_where("fingerprint", fingerprint).await
    }

    /// Audit rows written in `[from, to)`, for an auditor's export.
    async fn audit_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<AuditEntry>> {
        let sql =
            format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE at >= ? AND at < ? ORDER BY id");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(fmt_time(from))
            .bind(fmt_time(to))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(audit_entry).collect())
    }

    /// The last processed version of a submission: (content hash, result, raw JSON if kept).
    async fn submission(
        &self,
        id: &str,
    ) -> Result<Option<(String, Option<String>, Option<String>)>> {
        let row = sqlx::query(
            "SELECT content_hash, kyc_result, raw FROM submission_versions WHERE submission_id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
    }

    /// Fingerprints of the alerts a submission took part in.
    async fn alerts_of_submission(&self, id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT fingerprint FROM alerts WHERE submission_id = ? \
             OR EXISTS (SELECT 1 FROM json_each(json_extract(body, '$.submission_ids')) WHERE value = ?) \
             ORDER BY fired_at",
        )
        .bind(id)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    /// Where a submission was counted in windows: each (rule, group key)
    /// with the alert that consumed it, or the window's open members.
    async fn memberships_of(&self, id: &str) -> Result<Vec<WindowMembership>> {
        // No index by submission: a scan, for an auditor's one-off question,
        // rather than an index every batch would have to write.
        let rows = sqlx::query(
            "SELECT rule_id, group_key, event_time, consumed FROM window_members \
             WHERE submission_id = ? ORDER BY rule_id, group_key",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let newest = self.latest_window_event().await?.map(fmt_time);
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let (rule_id, group_key): (String, String) = (r.get(0), r.get(1));
            let consumed_by = if r.get::<i64, _>(3) != 0 {
                sqlx::query(
                    "SELECT fingerprint, json_extract(body, '$.submission_ids') FROM alerts \
                     WHERE rule_id = ? AND group_key = ? AND EXISTS \
                     (SELECT 1 FROM json_each(json_extract(body, '$.submission_ids')) WHERE value = ?)",
                )
                .bind(&rule_id)
                .bind(&group_key)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .map(|a| {
                    let ids: Vec<String> =
                        serde_json::from_str(&a.get::<String, _>(1)).unwrap_or_default();
                    (a.get(0), ids)
                })
            } else {
                None
            };
            let open_members = sqlx::query_scalar(
                "SELECT event_time FROM window_members \
                 WHERE rule_id = ? AND group_key = ? AND consumed = 0 ORDER BY event_time",
            )
            .bind(&rule_id)
            .bind(&group_key)
            .fetch_all(&self.pool)
            .await?;
            out.push(WindowMembership {
                rule_id,
                group_key,
                event_time: r.get(2),
                consumed: r.get::<i64, _>(3) != 0,
                consumed_by,
                open_members,
                newest_event: newest.clone(),
            });
        }
        Ok(out)
    }

    async fn alert(&self, fingerprint: &str) -> Result<Option<AlertRecord>> {
        let Some(row) =
            sqlx::query("SELECT fired_at, rule_version, body FROM alerts WHERE fingerprint = ?")
                .bind(fingerprint)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let body: String = row.get(2);
        let notifications = sqlx::query(
            "SELECT receiver, state, attempts, last_error FROM outbox \
             WHERE fingerprint = ?1 OR id IN (SELECT outbox_id FROM outbox_alerts WHERE fingerprint = ?1) \
             ORDER BY receiver, id",
        )
        .bind(fingerprint)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
        let attempts = sqlx::query(
            "SELECT o.receiver, d.at, d.ok, d.detail FROM delivery_attempts d JOIN outbox o ON o.id = d.outbox_id \
             WHERE o.fingerprint = ?1 OR o.id IN (SELECT outbox_id FROM outbox_alerts WHERE fingerprint = ?1) \
             ORDER BY d.id",
        )
        .bind(fingerprint)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get::<i64, _>(2) != 0, r.get(3)))
        .collect();
        Ok(Some(AlertRecord {
            fingerprint: fingerprint.to_owned(),
            fired_at: row.get(0),
            rule_version: row.get(1),
            alert: serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                what: "alerts.body",
                detail: e.to_string(),
            })?,
            notifications,
            attempts,
        }))
    }

    /// Counts for progress displays and summaries.
    async fn summary(&self) -> Result<Summary> {
        let submissions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM submission_versions")
            .fetch_one(&self.pool)
            .await?;
        let alerts_by_rule = self
            .grouped_counts(
                "SELECT rule_id, severity, COUNT(*) FROM alerts GROUP BY rule_id, severity ORDER BY 3 DESC, 1",
            )
            .await?;
        let outbox = self
            .grouped_counts(
                "SELECT receiver, state, COUNT(*) FROM outbox GROUP BY receiver, state ORDER BY 1, 2",
            )
            .await?;
        Ok(Summary {
            submissions,
            alerts_by_rule,
            outbox,
        })
    }
}

#[async_trait::async_trait]
impl MaintenanceStore for SqliteStore {
    /// Retention: forgets the raw JSON of versions unchanged for `days`;
    /// decisions, alerts and the audit log stay. Returns the rows purged.
    async fn purge_raw_older_than(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE submission_versions SET raw = NULL WHERE raw IS NOT NULL AND last_changed < ?",
        )
        .bind(fmt_time(cutoff))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn close(&self) {
        self.pool().close().await;
    }
}

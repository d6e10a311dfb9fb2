//! [`Store`] on a SQLite file (WAL), with the migrations embedded in the binary.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, SqlitePool};

use super::*;

/// SQLite keeps a bound on host parameters per statement; `IN (...)` lists are
/// chunked below it.
const IN_CHUNK: usize = 500;

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the store at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode is durable against process crashes (the
            // guarantee we need); only an OS crash may lose the last commit.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 2);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push('?');
    }
    s
}

impl Store for SqliteStore {
    async fn seen_versions(&self, ids: &[&str]) -> Result<HashMap<String, SeenVersion>> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT submission_id, content_hash, kyc_result FROM submission_versions \
                 WHERE submission_id IN ({})",
                placeholders(chunk.len())
            );
            // Only `?` placeholders are interpolated; every value is bound.
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.pool).await? {
                out.insert(
                    row.get::<String, _>(0),
                    SeenVersion {
                        content_hash: row.get(1),
                        kyc_result: row.get(2),
                    },
                );
            }
        }
        Ok(out)
    }

    async fn undecided_since(
        &self,
        horizon: DateTime<Utc>,
    ) -> Result<Vec<(String, Option<DateTime<Utc>>)>> {
        let rows = sqlx::query(
            "SELECT submission_id, created_at FROM submission_versions \
             WHERE (kyc_result IS NULL OR kyc_result IN ('pending', 'incomplete')) \
             AND created_at >= ? ORDER BY created_at",
        )
        .bind(fmt_time(horizon))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let created: Option<String> = r.get(1);
                let created = created
                    .map(|t| parse_time("submission_versions.created_at", &t))
                    .transpose()?;
                Ok((r.get(0), created))
            })
            .collect()
    }

    async fn prefetch(
        &self,
        submission_ids: &[&str],
        applicant_ids: &[&str],
    ) -> Result<BatchPrefetch> {
        let mut out = BatchPrefetch::default();
        for chunk in submission_ids.chunks(IN_CHUNK) {
            let ph = placeholders(chunk.len());
            let sql = format!(
                "SELECT submission_id, kyc_result FROM submission_results WHERE submission_id IN ({ph})"
            );
            // Only `?` placeholders are interpolated; every value is bound.
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.pool).await? {
                out.results.insert(row.get(0), row.get(1));
            }
            let sql = format!(
                "SELECT rule_id, submission_id FROM rule_fired WHERE submission_id IN ({ph})"
            );
            // Only `?` placeholders are interpolated; every value is bound.
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.pool).await? {
                out.fired.push((row.get(0), row.get(1)));
            }
        }
        for chunk in applicant_ids.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT applicant_id, submission_id, email, event_time FROM applicants \
                 WHERE applicant_id IN ({})",
                placeholders(chunk.len())
            );
            // Only `?` placeholders are interpolated; every value is bound.
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.pool).await? {
                let t: String = row.get(3);
                out.applicants.entry(row.get(0)).or_default().push((
                    row.get(1),
                    row.get(2),
                    parse_time("applicants.event_time", &t)?,
                ));
            }
        }
        Ok(out)
    }

    async fn open_windows(
        &self,
        since: DateTime<Utc>,
    ) -> Result<(
        Vec<StoredWindowMember>,
        Vec<(String, String, DateTime<Utc>)>,
    )> {
        let since = fmt_time(since);
        let rows = sqlx::query(
            "SELECT rule_id, group_key, submission_id, event_time, consumed FROM window_members \
             WHERE event_time > ?",
        )
        .bind(&since)
        .fetch_all(&self.pool)
        .await?;
        let mut members = Vec::with_capacity(rows.len());
        for r in rows {
            let t: String = r.get(3);
            members.push(StoredWindowMember {
                rule_id: r.get(0),
                key: r.get(1),
                submission_id: r.get(2),
                event_time: parse_time("window_members.event_time", &t)?,
                consumed: r.get::<i64, _>(4) != 0,
            });
        }
        let rows =
            sqlx::query("SELECT rule_id, throttle_key, until FROM throttles WHERE until > ?")
                .bind(&since)
                .fetch_all(&self.pool)
                .await?;
        let mut throttles = Vec::with_capacity(rows.len());
        for r in rows {
            let t: String = r.get(2);
            throttles.push((r.get(0), r.get(1), parse_time("throttles.until", &t)?));
        }
        Ok((members, throttles))
    }

    async fn latest_window_event(&self) -> Result<Option<DateTime<Utc>>> {
        let t: Option<String> = sqlx::query_scalar("SELECT MAX(event_time) FROM window_members")
            .fetch_one(&self.pool)
            .await?;
        t.map(|t| parse_time("window_members.event_time", &t))
            .transpose()
    }

    async fn commit_batch(&self, batch: BatchCommit) -> Result<()> {
        let now = fmt_time(Utc::now());
        let mut tx = self.pool.begin().await?;
        for v in &batch.versions {
            sqlx::query(
                "INSERT INTO submission_versions \
                 (submission_id, content_hash, kyc_result, created_at, event_time, first_seen, last_changed, raw) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (submission_id) DO UPDATE SET content_hash = excluded.content_hash, \
                 kyc_result = excluded.kyc_result, created_at = excluded.created_at, \
                 event_time = excluded.event_time, last_changed = excluded.last_changed, raw = excluded.raw",
            )
            .bind(&v.submission_id)
            .bind(&v.content_hash)
            .bind(v.kyc_result.as_deref().map(str::to_ascii_lowercase))
            .bind(v.created_at.map(fmt_time))
            .bind(fmt_time(v.event_time))
            .bind(&now)
            .bind(&now)
            .bind(&v.raw)
            .execute(&mut *tx)
            .await?;
        }
        for change in &batch.state {
            match change {
                StateChange::Result {
                    submission_id,
                    kyc_result,
                } => {
                    sqlx::query(
                        "INSERT INTO submission_results (submission_id, kyc_result) VALUES (?, ?) \
                         ON CONFLICT (submission_id) DO UPDATE SET kyc_result = excluded.kyc_result",
                    )
                    .bind(submission_id)
                    .bind(kyc_result)
                    .execute(&mut *tx)
                    .await?;
                }
                StateChange::Applicant {
                    applicant_id,
                    submission_id,
                    email,
                    event_time,
                } => {
                    sqlx::query(
                        "INSERT OR IGNORE INTO applicants (applicant_id, submission_id, email, event_time) \
                         VALUES (?, ?, ?, ?)",
                    )
                    .bind(applicant_id)
                    .bind(submission_id)
                    .bind(email)
                    .bind(fmt_time(*event_time))
                    .execute(&mut *tx)
                    .await?;
                }
                StateChange::Fired {
                    rule_id,
                    submission_id,
                } => {
                    sqlx::query(
                        "INSERT OR IGNORE INTO rule_fired (rule_id, submission_id) VALUES (?, ?)",
                    )
                    .bind(rule_id)
                    .bind(submission_id)
                    .execute(&mut *tx)
                    .await?;
                }
                StateChange::WindowAdd {
                    rule_id,
                    key,
                    submission_id,
                    event_time,
                } => {
                    sqlx::query(
                        "INSERT OR IGNORE INTO window_members (rule_id, group_key, submission_id, event_time) \
                         VALUES (?, ?, ?, ?)",
                    )
                    .bind(rule_id)
                    .bind(key)
                    .bind(submission_id)
                    .bind(fmt_time(*event_time))
                    .execute(&mut *tx)
                    .await?;
                }
                StateChange::WindowConsume {
                    rule_id,
                    key,
                    submission_ids,
                } => {
                    for id in submission_ids {
                        sqlx::query(
                            "UPDATE window_members SET consumed = 1 \
                             WHERE rule_id = ? AND group_key = ? AND submission_id = ?",
                        )
                        .bind(rule_id)
                        .bind(key)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                StateChange::Throttle {
                    rule_id,
                    key,
                    until,
                } => {
                    sqlx::query(
                        "INSERT INTO throttles (rule_id, throttle_key, until) VALUES (?, ?, ?) \
                         ON CONFLICT (rule_id, throttle_key) DO UPDATE SET until = excluded.until",
                    )
                    .bind(rule_id)
                    .bind(key)
                    .bind(fmt_time(*until))
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        for a in &batch.alerts {
            sqlx::query(
                "INSERT OR IGNORE INTO alerts (fingerprint, rule_id, rule_version, severity, submission_id, \
                 group_key, event_time, fired_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&a.fingerprint)
            .bind(&a.rule_id)
            .bind(&a.rule_version)
            .bind(&a.severity)
            .bind(&a.submission_id)
            .bind(&a.group_key)
            .bind(fmt_time(a.event_time))
            .bind(&now)
            .bind(&a.body)
            .execute(&mut *tx)
            .await?;
        }
        for o in &batch.outbox {
            // OR IGNORE: the same alert re-decided after a crash keeps its row.
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
        for a in &batch.audit {
            sqlx::query(
                "INSERT INTO audit_log (at, kind, submission_id, version_hash, rule_id, rule_version, \
                 fingerprint, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&now)
            .bind(a.kind)
            .bind(&a.submission_id)
            .bind(&a.version_hash)
            .bind(&a.rule_id)
            .bind(&a.rule_version)
            .bind(&a.fingerprint)
            .bind(a.detail.to_string())
            .execute(&mut *tx)
            .await?;
        }
        for (k, v) in &batch.meta {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES (?, ?) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(k)
            .bind(v)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn due_outbox(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<OutboxRow>> {
        let rows = sqlx::query(
            "SELECT id, fingerprint, receiver, payload, created_at, attempts FROM outbox \
             WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY id LIMIT ?",
        )
        .bind(fmt_time(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let t: String = r.get(4);
            out.push(OutboxRow {
                id: r.get(0),
                fingerprint: r.get(1),
                receiver: r.get(2),
                payload: r.get(3),
                created_at: parse_time("outbox.created_at", &t)?,
                attempts: r.get(5),
            });
        }
        Ok(out)
    }

    async fn record_delivery(&self, row: &OutboxRow, outcome: &DeliveryOutcome) -> Result<()> {
        let now = fmt_time(Utc::now());
        let mut tx = self.pool.begin().await?;
        let (ok, detail) = match outcome {
            DeliveryOutcome::Delivered => {
                sqlx::query(
                    "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, done_at = ? WHERE id = ?",
                )
                .bind(&now)
                .bind(row.id)
                .execute(&mut *tx)
                .await?;
                (true, None)
            }
            DeliveryOutcome::Retry {
                error,
                next_attempt_at,
            } => {
                sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?",
                )
                .bind(error)
                .bind(fmt_time(*next_attempt_at))
                .bind(row.id)
                .execute(&mut *tx)
                .await?;
                (false, Some(error.clone()))
            }
            DeliveryOutcome::Dead { error } => {
                sqlx::query(
                    "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?, done_at = ? \
                     WHERE id = ?",
                )
                .bind(error)
                .bind(&now)
                .bind(row.id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO audit_log (at, kind, fingerprint, detail) VALUES (?, 'dead_letter', ?, ?)",
                )
                .bind(&now)
                .bind(&row.fingerprint)
                .bind(serde_json::json!({"receiver": row.receiver, "error": error}).to_string())
                .execute(&mut *tx)
                .await?;
                (false, Some(error.clone()))
            }
        };
        sqlx::query(
            "INSERT INTO delivery_attempts (outbox_id, at, ok, detail) VALUES (?, ?, ?, ?)",
        )
        .bind(row.id)
        .bind(&now)
        .bind(ok as i64)
        .bind(detail)
        .execute(&mut *tx)
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

    async fn add_api_calls(&self, day: &str, n: u64) -> Result<u64> {
        let row = sqlx::query(
            "INSERT INTO api_budget (day, calls) VALUES (?, ?) \
             ON CONFLICT (day) DO UPDATE SET calls = calls + excluded.calls RETURNING calls",
        )
        .bind(day)
        .bind(n as i64)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get::<i64, _>(0) as u64)
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }
}

//! The SQLite backend: every role trait on a SQLite file (WAL), with the
//! migrations embedded in the binary. SQL text lives here and in the files
//! beside this one, nowhere else.

mod audit;
mod cases;
mod digests;
mod escalation;
mod lifecycle;
mod lookup;
mod shadow;
mod users;
pub use shadow::ReadOnlyStore;

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, SqlitePool};

use super::*;
use crate::outbox_payload::{OutboxPayload, group_key_hash};

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
            .map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                message: e.to_string(),
            })?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode is durable against process crashes (the
            // guarantee we need); only an OS crash may lose the last commit.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            // 8 MiB of page cache per connection instead of SQLite's 2 MiB:
            // the key indexes a batch touches stay in memory (pread and
            // pagerStress were 15% of a backfill's profile at 2 MiB). 16 MiB
            // was no faster and cost 16 MB of peak RSS (README, Benchmarks).
            .pragma("cache_size", "-8192")
            // Checkpoint every 64 MiB of WAL, not every 4 MiB: submission ids
            // are random, so every batch dirties pages all over the key
            // indexes; a rarer checkpoint writes each such page back once
            // instead of once per batch (2.1 GB written for a 260 MB store).
            .pragma("wal_autocheckpoint", "16384")
            // 16 prepared statements per connection, not sqlx's 100: chunked
            // `IN (...)` lists and multi-row INSERTs come in many sizes, each
            // its own statement (large ones, up to 900 parameters), and a
            // full cache of them was ~9 MB of a 1M backfill's peak RSS.
            .statement_cache_capacity(16)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        crate::store::migrations::migrator(crate::store::migrations::SQLITE)
            .run(&pool)
            .await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A transaction that writes. `BEGIN IMMEDIATE` takes the write lock up
    /// front, waiting for it (busy timeout) if another connection holds it. A
    /// plain `BEGIN` reads first and asks for the lock at its first write;
    /// if another connection committed in between, SQLite answers "database
    /// is locked" at once, without waiting (seen with the outbox beside a
    /// backfill's large commits).
    pub async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Rows of `(text, text, count)` from a two-column GROUP BY.
    async fn grouped_counts(&self, sql: &'static str) -> Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// Rows per multi-row INSERT. Every statement is a round trip to the
/// connection's worker thread; one per row was the largest cost of a batch
/// (README, Benchmarks). 100 rows of at most 10 columns stay far below SQLite's
/// host-parameter limit.
const ROWS_PER_INSERT: usize = 100;

/// Runs `head VALUES (?..),(?..) tail` over `rows` in chunks, `bind` binding
/// one row's `cols` values in order.
async fn insert_many<T>(
    conn: &mut sqlx::SqliteConnection,
    head: &str,
    cols: usize,
    tail: &str,
    rows: &[T],
    bind: impl for<'q> Fn(SqliteQuery<'q>, &T) -> SqliteQuery<'q>,
) -> Result<()> {
    use sqlx::{Arguments, Execute};
    let row = format!("({})", placeholders(cols));
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let values = vec![row.as_str(); chunk.len()].join(",");
        // Only `?` placeholders are interpolated; every value is bound.
        let sql = format!("{head} VALUES {values} {tail}");
        let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
        for r in chunk {
            q = bind(q, r);
        }
        let args = q
            .take_arguments()
            .map_err(|e| StoreError::from(sqlx::Error::Encode(e)))?
            .unwrap_or_default();
        // SQLite does not complain about a bind too many or too few in a
        // multi-row INSERT: the rows come out shifted. A bind closure that
        // disagrees with `cols` is caught here, before anything is written.
        if args.len() != cols * chunk.len() {
            return Err(StoreError::Binding {
                statement: head.to_owned(),
                bound: args.len(),
                placeholders: cols * chunk.len(),
            });
        }
        sqlx::query_with(AssertSqlSafe(sql.as_str()), args)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn insert_window_adds(
    conn: &mut sqlx::SqliteConnection,
    adds: &[&StateChange],
) -> Result<()> {
    insert_many(
        conn,
        "INSERT OR IGNORE INTO window_members (rule_id, group_key, submission_id, event_time)",
        4,
        "",
        adds,
        |q, c| match c {
            StateChange::WindowAdd {
                rule_id,
                key,
                submission_id,
                event_time,
            } => q
                .bind(rule_id)
                .bind(key)
                .bind(submission_id)
                .bind(fmt_time(*event_time)),
            _ => unreachable!("only window adds here"),
        },
    )
    .await
}

/// Outbox rows as `due_outbox*` select them.
fn outbox_rows(rows: Vec<sqlx::sqlite::SqliteRow>) -> Result<Vec<OutboxRow>> {
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

#[async_trait::async_trait]
impl PipelineStore for SqliteStore {
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

    async fn window_memberships(
        &self,
        members: &[(&str, &str, &str)],
    ) -> Result<Vec<StoredWindowMember>> {
        let mut out = Vec::new();
        // Three values per triple; a chunk stays under IN_CHUNK values.
        for chunk in members.chunks(IN_CHUNK / 3) {
            let rows = vec!["(?, ?, ?)"; chunk.len()].join(",");
            let sql = format!(
                "SELECT rule_id, group_key, submission_id, event_time, consumed FROM window_members \
                 WHERE (rule_id, group_key, submission_id) IN (VALUES {rows})"
            );
            // Only `?` placeholders are interpolated; every value is bound.
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (rule, key, id) in chunk {
                q = q.bind(*rule).bind(*key).bind(*id);
            }
            for r in q.fetch_all(&self.pool).await? {
                let t: String = r.get(3);
                out.push(StoredWindowMember {
                    rule_id: r.get(0),
                    key: r.get(1),
                    submission_id: r.get(2),
                    event_time: parse_time("window_members.event_time", &t)?,
                    consumed: r.get::<i64, _>(4) != 0,
                });
            }
        }
        Ok(out)
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
        let mut tx = self.write_tx().await?;
        insert_many(
            &mut tx,
            "INSERT INTO submission_versions \
             (submission_id, content_hash, kyc_result, created_at, event_time, first_seen, last_changed, raw, found_by)",
            9,
            "ON CONFLICT (submission_id) DO UPDATE SET content_hash = excluded.content_hash, \
             kyc_result = excluded.kyc_result, created_at = excluded.created_at, \
             event_time = excluded.event_time, last_changed = excluded.last_changed, raw = excluded.raw, \
             found_by = excluded.found_by",
            &batch.versions,
            |q, v| {
                q.bind(&v.submission_id)
                    .bind(&v.content_hash)
                    .bind(v.kyc_result.as_deref().map(str::to_ascii_lowercase))
                    .bind(v.created_at.map(fmt_time))
                    .bind(fmt_time(v.event_time))
                    .bind(&now)
                    .bind(&now)
                    .bind(&v.raw)
                    .bind(batch.source.as_str())
            },
        )
        .await?;
        if !batch.versions.is_empty() {
            sqlx::query(
                "INSERT INTO version_sources (source, versions) VALUES (?, ?) \
                 ON CONFLICT (source) DO UPDATE SET versions = versions + excluded.versions",
            )
            .bind(batch.source.as_str())
            .bind(batch.versions.len() as i64)
            .execute(&mut *tx)
            .await?;
        }
        // Each table's rows keep their journal order (a later upsert of the
        // same key wins, as before); tables do not depend on one another,
        // except window adds and consumes, which stay in journal order.
        let mut results = Vec::new();
        let mut applicants = Vec::new();
        let mut fired = Vec::new();
        let mut throttles = Vec::new();
        let mut window_ops: Vec<&StateChange> = Vec::new();
        for change in &batch.state {
            match change {
                StateChange::Result { .. } => results.push(change),
                StateChange::Applicant { .. } => applicants.push(change),
                StateChange::Fired { .. } => fired.push(change),
                StateChange::Throttle { .. } => throttles.push(change),
                StateChange::WindowAdd { .. } | StateChange::WindowConsume { .. } => {
                    window_ops.push(change)
                }
            }
        }
        insert_many(
            &mut tx,
            "INSERT INTO submission_results (submission_id, kyc_result)",
            2,
            "ON CONFLICT (submission_id) DO UPDATE SET kyc_result = excluded.kyc_result",
            &results,
            |q, c| match c {
                StateChange::Result {
                    submission_id,
                    kyc_result,
                } => q.bind(submission_id).bind(kyc_result),
                _ => unreachable!("only results here"),
            },
        )
        .await?;
        insert_many(
            &mut tx,
            "INSERT OR IGNORE INTO applicants (applicant_id, submission_id, email, event_time)",
            4,
            "",
            &applicants,
            |q, c| match c {
                StateChange::Applicant {
                    applicant_id,
                    submission_id,
                    email,
                    event_time,
                } => q
                    .bind(applicant_id)
                    .bind(submission_id)
                    .bind(email)
                    .bind(fmt_time(*event_time)),
                _ => unreachable!("only applicants here"),
            },
        )
        .await?;
        insert_many(
            &mut tx,
            "INSERT OR IGNORE INTO rule_fired (rule_id, submission_id)",
            2,
            "",
            &fired,
            |q, c| match c {
                StateChange::Fired {
                    rule_id,
                    submission_id,
                } => q.bind(rule_id).bind(submission_id),
                _ => unreachable!("only fired here"),
            },
        )
        .await?;
        insert_many(
            &mut tx,
            "INSERT INTO throttles (rule_id, throttle_key, until)",
            3,
            "ON CONFLICT (rule_id, throttle_key) DO UPDATE SET until = excluded.until",
            &throttles,
            |q, c| match c {
                StateChange::Throttle {
                    rule_id,
                    key,
                    until,
                } => q.bind(rule_id).bind(key).bind(fmt_time(*until)),
                _ => unreachable!("only throttles here"),
            },
        )
        .await?;
        // Runs of window adds go in one statement; a consume waits for the
        // adds before it.
        let mut adds: Vec<&StateChange> = Vec::new();
        for change in window_ops {
            match change {
                StateChange::WindowAdd { .. } => adds.push(change),
                StateChange::WindowConsume {
                    rule_id,
                    key,
                    submission_ids,
                } => {
                    insert_window_adds(&mut tx, &adds).await?;
                    adds.clear();
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
                _ => unreachable!("only window changes here"),
            }
        }
        insert_window_adds(&mut tx, &adds).await?;
        insert_many(
            &mut tx,
            "INSERT OR IGNORE INTO alerts (fingerprint, rule_id, rule_version, severity, submission_id, \
             group_key, event_time, fired_at, body, historical)",
            10,
            "",
            &batch.alerts,
            |q, a| {
                q.bind(&a.fingerprint)
                    .bind(&a.rule_id)
                    .bind(&a.rule_version)
                    .bind(&a.severity)
                    .bind(&a.submission_id)
                    .bind(&a.group_key)
                    .bind(fmt_time(a.event_time))
                    .bind(&now)
                    .bind(&a.body)
                    .bind(batch.historical as i64)
            },
        )
        .await?;
        // Shadow rules' alerts: recorded beside the live ones, never routed.
        insert_many(
            &mut tx,
            "INSERT OR IGNORE INTO alerts (fingerprint, rule_id, rule_version, severity, submission_id, \
             group_key, event_time, fired_at, body, historical, mode, replaces)",
            12,
            "",
            &batch.shadow_alerts,
            |q, s| {
                let a = &s.alert;
                q.bind(&a.fingerprint)
                    .bind(&a.rule_id)
                    .bind(&a.rule_version)
                    .bind(&a.severity)
                    .bind(&a.submission_id)
                    .bind(&a.group_key)
                    .bind(fmt_time(a.event_time))
                    .bind(&now)
                    .bind(&a.body)
                    .bind(batch.historical as i64)
                    .bind("shadow")
                    .bind(&s.replaces)
            },
        )
        .await?;
        if batch.historical {
            // Judged quietly: nobody was told, so nobody has to act on them.
            insert_many(
                &mut tx,
                "INSERT OR IGNORE INTO alert_states (fingerprint, state, changed_at, changed_by)",
                4,
                "",
                &batch.alerts,
                |q, a| {
                    q.bind(&a.fingerprint)
                        .bind("historical")
                        .bind(&now)
                        .bind("backfill")
                },
            )
            .await?;
        }
        // OR IGNORE: the same alert re-decided after a crash keeps its row.
        insert_many(
            &mut tx,
            "INSERT OR IGNORE INTO outbox (fingerprint, receiver, payload, created_at, next_attempt_at)",
            5,
            "",
            &batch.outbox,
            |q, o| {
                q.bind(&o.fingerprint)
                    .bind(&o.receiver)
                    .bind(&o.payload)
                    .bind(&now)
                    .bind(&now)
            },
        )
        .await?;
        for g in &batch.notify {
            let added = sqlx::query(
                "INSERT OR IGNORE INTO notify_pending (receiver, fingerprint, group_key, added_at) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(&g.receiver)
            .bind(&g.fingerprint)
            .bind(&g.group_key)
            .bind(&now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if let Some(policy) = &g.escalation {
                // OR IGNORE: re-decided after a crash, or two routes naming one policy.
                sqlx::query(
                    "INSERT OR IGNORE INTO escalations (fingerprint, policy, started_at) VALUES (?, ?, ?)",
                )
                .bind(&g.fingerprint)
                .bind(policy)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
            }
            if added == 0 {
                // Re-decided after a crash: already waiting or already sent.
                continue;
            }
            let flush_at =
                fmt_time(Utc::now() + chrono::Duration::from_std(g.group_wait).unwrap_or_default());
            // A group already waiting keeps its time; one inside its repeat
            // interval waits for the interval's end.
            sqlx::query(
                "INSERT INTO notify_groups (receiver, group_key, flush_at, repeat_until, repeat_ms) \
                 VALUES (?, ?, ?, NULL, ?) \
                 ON CONFLICT (receiver, group_key) DO UPDATE SET \
                 flush_at = COALESCE(notify_groups.flush_at, \
                                     MAX(excluded.flush_at, COALESCE(notify_groups.repeat_until, ''))), \
                 repeat_ms = excluded.repeat_ms",
            )
            .bind(&g.receiver)
            .bind(&g.group_key)
            .bind(&flush_at)
            .bind(g.repeat_interval.as_millis() as i64)
            .execute(&mut *tx)
            .await?;
        }
        insert_many(
            &mut tx,
            "INSERT INTO audit_log (at, kind, submission_id, version_hash, rule_id, rule_version, \
             fingerprint, detail)",
            8,
            "",
            &batch.audit,
            |q, a| {
                q.bind(&now)
                    .bind(a.kind)
                    .bind(&a.submission_id)
                    .bind(&a.version_hash)
                    .bind(&a.rule_id)
                    .bind(&a.rule_version)
                    .bind(&a.fingerprint)
                    .bind(a.detail.to_string())
            },
        )
        .await?;
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

    async fn submissions_raw(&self, ids: &[&str]) -> Result<HashMap<String, serde_json::Value>> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT submission_id, raw FROM submission_versions \
                 WHERE raw IS NOT NULL AND submission_id IN ({})",
                placeholders(chunk.len())
            );
            // Only `?` placeholders are interpolated; every value is bound.
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.pool).await? {
                let raw: String = row.get(1);
                let v = serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt {
                    what: "submission_versions.raw",
                    detail: e.to_string(),
                })?;
                out.insert(row.get(0), v);
            }
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl OutboxStore for SqliteStore {
    async fn due_outbox(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<OutboxRow>> {
        let rows = sqlx::query(
            "SELECT id, fingerprint, receiver, payload, created_at, attempts FROM outbox \
             WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY id LIMIT ?",
        )
        .bind(fmt_time(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        outbox_rows(rows)
    }

    async fn due_outbox_for(
        &self,
        receiver: &str,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>> {
        let rows = sqlx::query(
            "SELECT id, fingerprint, receiver, payload, created_at, attempts FROM outbox \
             WHERE state = 'pending' AND next_attempt_at <= ? AND receiver = ? ORDER BY id LIMIT ?",
        )
        .bind(fmt_time(now))
        .bind(receiver)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        outbox_rows(rows)
    }

    async fn due_receivers(&self, now: DateTime<Utc>) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT receiver FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?",
        )
        .bind(fmt_time(now))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn record_delivery(&self, row: &OutboxRow, outcome: &DeliveryOutcome) -> Result<()> {
        self.record_deliveries(&[(row.clone(), outcome.clone())])
            .await
    }

    async fn record_deliveries(&self, done: &[(OutboxRow, DeliveryOutcome)]) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        let now = fmt_time(Utc::now());
        // One transaction for a round of deliveries: one per row competed
        // with the pipeline's batch commits for SQLite's single writer lock.
        let mut tx = self.write_tx().await?;
        for (row, outcome) in done {
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
        }
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

    async fn flush_groups(&self, now: DateTime<Utc>) -> Result<usize> {
        let now_s = fmt_time(now);
        let mut tx = self.write_tx().await?;
        let groups = sqlx::query(
            "SELECT receiver, group_key, repeat_ms FROM notify_groups \
             WHERE flush_at IS NOT NULL AND flush_at <= ? ORDER BY flush_at LIMIT 200",
        )
        .bind(&now_s)
        .fetch_all(&mut *tx)
        .await?;
        let mut written = 0;
        for g in &groups {
            let receiver: String = g.get(0);
            let group_key: String = g.get(1);
            let repeat_ms: i64 = g.get(2);
            // INDEXED BY: without statistics SQLite picks the primary key's
            // `receiver` prefix and scans every alert ever routed to the receiver.
            let rows = sqlx::query(
                "SELECT p.fingerprint, a.body FROM notify_pending p INDEXED BY notify_pending_waiting \
                 JOIN alerts a ON a.fingerprint = p.fingerprint \
                 WHERE p.receiver = ? AND p.group_key = ? AND p.outbox_id IS NULL \
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
                        let body: String = r.get(1);
                        serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                            what: "alerts.body",
                            detail: e.to_string(),
                        })
                    })
                    .collect::<Result<Vec<serde_json::Value>>>()?;
                let refs: Vec<&str> = fps.iter().map(String::as_str).collect();
                let key = group_key_hash(&refs);
                let payload = OutboxPayload::group(Some(&group_key), &alerts);
                sqlx::query(
                    "INSERT OR IGNORE INTO outbox (fingerprint, receiver, payload, created_at, next_attempt_at) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(&key)
                .bind(&receiver)
                .bind(&payload)
                .bind(&now_s)
                .bind(&now_s)
                .execute(&mut *tx)
                .await?;
                let id: i64 = sqlx::query_scalar(
                    "SELECT id FROM outbox WHERE fingerprint = ? AND receiver = ?",
                )
                .bind(&key)
                .bind(&receiver)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE notify_pending INDEXED BY notify_pending_waiting SET outbox_id = ? \
                     WHERE receiver = ? AND group_key = ? AND outbox_id IS NULL",
                )
                .bind(id)
                .bind(&receiver)
                .bind(&group_key)
                .execute(&mut *tx)
                .await?;
                written += 1;
            }
            sqlx::query(
                "UPDATE notify_groups SET flush_at = NULL, repeat_until = ? \
                 WHERE receiver = ? AND group_key = ?",
            )
            .bind(&repeat_until)
            .bind(&receiver)
            .bind(&group_key)
            .execute(&mut *tx)
            .await?;
        }
        // Groups with nothing waiting and no repeat interval running are done.
        sqlx::query(
            "DELETE FROM notify_groups WHERE flush_at IS NULL AND (repeat_until IS NULL OR repeat_until <= ?)",
        )
        .bind(&now_s)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(written)
    }

    async fn pending_outbox_of(&self, key: &str) -> Result<Vec<OutboxRow>> {
        let rows = sqlx::query(
            "SELECT id, fingerprint, receiver, payload, created_at, attempts FROM outbox \
             WHERE state = 'pending' AND fingerprint = ? ORDER BY id",
        )
        .bind(key)
        .fetch_all(self.pool())
        .await?;
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
}

#[async_trait::async_trait]
impl MetaStore for SqliteStore {
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

    async fn found_first(&self) -> Result<HashMap<String, u64>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT source, versions FROM version_sources")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(s, n)| (s, n.max(0) as u64))
            .collect())
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn api_calls_on(&self, day: &str) -> Result<u64> {
        let n: Option<i64> = sqlx::query_scalar("SELECT calls FROM api_budget WHERE day = ?")
            .bind(day)
            .fetch_optional(self.pool())
            .await?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }
}

#[async_trait::async_trait]
impl SilenceStore for SqliteStore {
    async fn add_silence(&self, s: &crate::store::silences::NewSilence) -> Result<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO silences (rule_id, matchers, reason, author, created_at, starts_at, ends_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&s.rule)
        .bind(serde_json::to_string(&s.matchers).expect("a map serializes"))
        .bind(&s.reason)
        .bind(&s.author)
        .bind(fmt_time(Utc::now()))
        .bind(fmt_time(s.starts_at))
        .bind(fmt_time(s.ends_at))
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn silences(
        &self,
        now: DateTime<Utc>,
        include_expired: bool,
    ) -> Result<Vec<crate::store::silences::Silence>> {
        let rows = sqlx::query(
            "SELECT id, rule_id, matchers, reason, author, created_at, starts_at, ends_at \
             FROM silences WHERE ? OR ends_at > ? ORDER BY id DESC",
        )
        .bind(include_expired)
        .bind(fmt_time(now))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let m: String = r.get(2);
                let t = |i: usize, what| parse_time(what, &r.get::<String, _>(i));
                Ok(crate::store::silences::Silence {
                    id: r.get(0),
                    rule: r.get(1),
                    matchers: serde_json::from_str(&m).map_err(|e| StoreError::Corrupt {
                        what: "silences.matchers",
                        detail: e.to_string(),
                    })?,
                    reason: r.get(3),
                    author: r.get(4),
                    created_at: t(5, "silences.created_at")?,
                    starts_at: t(6, "silences.starts_at")?,
                    ends_at: t(7, "silences.ends_at")?,
                })
            })
            .collect()
    }

    async fn expire_silence(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        let n = sqlx::query("UPDATE silences SET ends_at = MIN(ends_at, ?) WHERE id = ?")
            .bind(fmt_time(now))
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bind closure that binds one value too many is refused before SQLite
    /// sees it (SQLite itself would shift the rows without an error).
    #[tokio::test]
    async fn insert_many_refuses_a_wrong_number_of_bound_values() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        let mut conn = store.pool().acquire().await.unwrap();
        let count = || async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM meta")
                .fetch_one(store.pool())
                .await
                .unwrap()
        };
        let before = count().await;
        let rows = [("bench-a", "1"), ("bench-b", "2")];
        let e = insert_many(
            &mut conn,
            "INSERT INTO meta (key, value)",
            2,
            "",
            &rows,
            |q, r| q.bind(r.0).bind(r.1).bind("extra"),
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "state store: internal error: INSERT INTO meta (key, value): 6 values bound for 4 placeholders"
        );
        assert_eq!(count().await, before, "nothing written");
        insert_many(
            &mut conn,
            "INSERT INTO meta (key, value)",
            2,
            "",
            &rows,
            |q, r| q.bind(r.0).bind(r.1),
        )
        .await
        .unwrap();
        assert_eq!(count().await, before + 2);
    }
}

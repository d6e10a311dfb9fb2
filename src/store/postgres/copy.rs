//! `kyc-sentinel store migrate`: copies a SQLite store into an empty
//! PostgreSQL one, every table, in one Postgres transaction, and verifies
//! the row counts before committing.
//!
//! The SQLite side is read in one read transaction (a consistent snapshot,
//! even while an engine writes: WAL). Rows are copied as they are (times are
//! the same text in both stores); SQLite's 0/1 flags become booleans. The
//! triggers that derive rows (`outbox_alerts`, delivery audit rows) are off
//! during the copy: those rows are copied, not derived again.

use futures::TryStreamExt;
use sqlx::{AssertSqlSafe, Row};

use super::{PgStore, insert_many};
use crate::store::{Result, SqliteStore, StoreError};

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Bool,
}
use Kind::{Bool, Int, Text};

/// Every table of the SQLite migrations 0001-0010, parents before children,
/// with its columns and their kinds.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "submission_versions",
        &[
            ("submission_id", Text),
            ("content_hash", Text),
            ("kyc_result", Text),
            ("created_at", Text),
            ("event_time", Text),
            ("first_seen", Text),
            ("last_changed", Text),
            ("raw", Text),
            ("found_by", Text),
        ],
    ),
    ("rule_fired", &[("submission_id", Text), ("rule_id", Text)]),
    (
        "submission_results",
        &[("submission_id", Text), ("kyc_result", Text)],
    ),
    (
        "window_members",
        &[
            ("rule_id", Text),
            ("group_key", Text),
            ("submission_id", Text),
            ("event_time", Text),
            ("consumed", Bool),
        ],
    ),
    (
        "throttles",
        &[("rule_id", Text), ("throttle_key", Text), ("until", Text)],
    ),
    (
        "applicants",
        &[
            ("applicant_id", Text),
            ("submission_id", Text),
            ("email", Text),
            ("event_time", Text),
        ],
    ),
    (
        "alerts",
        &[
            ("fingerprint", Text),
            ("rule_id", Text),
            ("rule_version", Text),
            ("severity", Text),
            ("submission_id", Text),
            ("group_key", Text),
            ("event_time", Text),
            ("fired_at", Text),
            ("body", Text),
            ("historical", Bool),
            ("mode", Text),
            ("replaces", Text),
        ],
    ),
    (
        "outbox",
        &[
            ("id", Int),
            ("fingerprint", Text),
            ("receiver", Text),
            ("payload", Text),
            ("created_at", Text),
            ("next_attempt_at", Text),
            ("attempts", Int),
            ("state", Text),
            ("last_error", Text),
            ("done_at", Text),
        ],
    ),
    (
        "delivery_attempts",
        &[
            ("id", Int),
            ("outbox_id", Int),
            ("at", Text),
            ("ok", Bool),
            ("detail", Text),
        ],
    ),
    (
        "audit_log",
        &[
            ("id", Int),
            ("at", Text),
            ("kind", Text),
            ("submission_id", Text),
            ("version_hash", Text),
            ("rule_id", Text),
            ("rule_version", Text),
            ("fingerprint", Text),
            ("detail", Text),
        ],
    ),
    ("api_budget", &[("day", Text), ("calls", Int)]),
    ("meta", &[("key", Text), ("value", Text)]),
    (
        "silences",
        &[
            ("id", Int),
            ("rule_id", Text),
            ("matchers", Text),
            ("reason", Text),
            ("author", Text),
            ("created_at", Text),
            ("starts_at", Text),
            ("ends_at", Text),
        ],
    ),
    (
        "notify_groups",
        &[
            ("receiver", Text),
            ("group_key", Text),
            ("flush_at", Text),
            ("repeat_until", Text),
            ("repeat_ms", Int),
        ],
    ),
    (
        "notify_pending",
        &[
            ("receiver", Text),
            ("fingerprint", Text),
            ("group_key", Text),
            ("added_at", Text),
            ("outbox_id", Int),
        ],
    ),
    ("version_sources", &[("source", Text), ("versions", Int)]),
    (
        "alert_states",
        &[
            ("fingerprint", Text),
            ("state", Text),
            ("changed_at", Text),
            ("changed_by", Text),
            ("note", Text),
            ("outcome", Text),
        ],
    ),
    (
        "alert_state_changes",
        &[
            ("id", Int),
            ("fingerprint", Text),
            ("at", Text),
            ("by", Text),
            ("from_state", Text),
            ("to_state", Text),
            ("note", Text),
            ("outcome", Text),
        ],
    ),
    (
        "digests",
        &[
            ("id", Int),
            ("name", Text),
            ("scheduled_at", Text),
            ("period_start", Text),
            ("period_end", Text),
            ("slots", Int),
            ("trigger", Text),
            ("content_hash", Text),
            ("created_at", Text),
        ],
    ),
    (
        "digest_schedules",
        &[
            ("name", Text),
            ("last_slot", Text),
            ("schedule", Text),
            ("updated", Text),
        ],
    ),
    (
        "escalations",
        &[
            ("fingerprint", Text),
            ("policy", Text),
            ("started_at", Text),
            ("next_step", Int),
            ("ended_at", Text),
            ("end_reason", Text),
        ],
    ),
    (
        "escalation_steps",
        &[
            ("fingerprint", Text),
            ("policy", Text),
            ("step", Int),
            ("due_at", Text),
            ("sent_at", Text),
            ("late", Bool),
            ("receivers", Text),
            ("idempotency_key", Text),
        ],
    ),
    (
        "outbox_alerts",
        &[("outbox_id", Int), ("fingerprint", Text)],
    ),
    // 0010: the console (sessions too: people stay signed in across the move).
    (
        "users",
        &[
            ("name", Text),
            ("role", Text),
            ("password_hash", Text),
            ("disabled", Bool),
            ("created_at", Text),
        ],
    ),
    (
        "user_tokens",
        &[("token_hash", Text), ("name", Text), ("created_at", Text)],
    ),
    (
        "sessions",
        &[
            ("id_hash", Text),
            ("name", Text),
            ("role", Text),
            ("csrf", Text),
            ("created_at", Text),
            ("last_seen", Text),
        ],
    ),
    ("login_failures", &[("key", Text), ("at", Text)]),
    (
        "alert_assignees",
        &[("fingerprint", Text), ("assignee", Text), ("at", Text)],
    ),
    (
        "alert_notes",
        &[
            ("id", Int),
            ("fingerprint", Text),
            ("at", Text),
            ("by", Text),
            ("note", Text),
        ],
    ),
];

/// Tables whose `id` is an identity column: the sequence continues after the copied ids.
const IDENTITY_TABLES: &[&str] = &[
    "outbox",
    "delivery_attempts",
    "audit_log",
    "silences",
    "alert_state_changes",
    "digests",
    "alert_notes",
];

/// Tables derived by triggers from the copied ones (the console's inbox,
/// migrations 0011 / 0005): not copied but filled again as rows arrive, then
/// checked against SQLite's with the query beside each.
const DERIVED: &[(&str, &str)] = &[
    ("alert_inbox", "SELECT COUNT(*) FROM alert_inbox"),
    (
        "alert_state_counts",
        "SELECT COALESCE(CAST(SUM(n) AS BIGINT), 0) FROM alert_state_counts",
    ),
];

/// Triggers that derive rows the copy brings along.
const TRIGGERS: &[(&str, &str)] = &[
    ("outbox", "outbox_link_alerts"),
    ("delivery_attempts", "delivery_attempt_audit"),
];

#[derive(Debug, Clone)]
enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
}

/// One table copied: rows in SQLite, rows in PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub table: &'static str,
    pub sqlite: i64,
    pub postgres: i64,
}

fn refused(detail: String) -> StoreError {
    StoreError::Corrupt {
        what: "store migrate",
        detail,
    }
}

/// Copies every table of `from` into `to` (which must hold no state yet)
/// and verifies the counts; nothing is committed unless all are equal.
pub async fn copy_sqlite(from: &SqliteStore, to: &PgStore) -> Result<Vec<Copied>> {
    let mut src = from.pool().begin().await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&mut *src)
    .await?;
    // A table this copy does not know (one a newer SQLite migration added)
    // is refused when it holds rows: nothing is left out.
    for t in tables
        .iter()
        .filter(|t| !TABLES.iter().any(|(n, _)| n == *t) && !DERIVED.iter().any(|(n, _)| n == *t))
    {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM \"{t}\"")))
            .fetch_one(&mut *src)
            .await?;
        if n > 0 {
            return Err(refused(format!(
                "the SQLite store has {n} rows in a table `{t}` this version does not know how \
                 to copy; nothing was copied"
            )));
        }
    }
    // A column this copy does not list would be left out without a word.
    for (table, cols) in TABLES {
        let have: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT name FROM pragma_table_info('{table}')"
        )))
        .fetch_all(&mut *src)
        .await?;
        if let Some(c) = have.iter().find(|c| !cols.iter().any(|(n, _)| n == c)) {
            return Err(refused(format!(
                "the SQLite table `{table}` has a column `{c}` this version does not know how \
                 to copy; nothing was copied"
            )));
        }
    }
    let mut dst = to.pool().begin().await?;
    for (table, _) in TABLES {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(&mut *dst)
            .await?;
        if n > 0 {
            return Err(refused(format!(
                "the PostgreSQL store already holds state ({n} rows in `{table}`); \
                 migrate into an empty database"
            )));
        }
    }
    for (table, trigger) in TRIGGERS {
        sqlx::query(AssertSqlSafe(format!(
            "ALTER TABLE {table} DISABLE TRIGGER {trigger}"
        )))
        .execute(&mut *dst)
        .await?;
    }
    let mut out = Vec::with_capacity(TABLES.len());
    for (table, cols) in TABLES {
        let exists = tables.iter().any(|t| t == table);
        let sqlite = if exists {
            copy_table(&mut src, &mut dst, table, cols).await?
        } else {
            0
        };
        let postgres: i64 =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&mut *dst)
                .await?;
        out.push(Copied {
            table,
            sqlite,
            postgres,
        });
    }
    for (table, trigger) in TRIGGERS {
        sqlx::query(AssertSqlSafe(format!(
            "ALTER TABLE {table} ENABLE TRIGGER {trigger}"
        )))
        .execute(&mut *dst)
        .await?;
    }
    for (table, count) in DERIVED {
        let sqlite = if tables.iter().any(|t| t == table) {
            sqlx::query_scalar(AssertSqlSafe(*count))
                .fetch_one(&mut *src)
                .await?
        } else {
            0
        };
        let postgres: i64 = sqlx::query_scalar(AssertSqlSafe(*count))
            .fetch_one(&mut *dst)
            .await?;
        out.push(Copied {
            table,
            sqlite,
            postgres,
        });
    }
    for table in IDENTITY_TABLES {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 1), \
             MAX(id) IS NOT NULL) FROM {table}"
        )))
        .fetch_one(&mut *dst)
        .await?;
    }
    if let Some(c) = out.iter().find(|c| c.sqlite != c.postgres) {
        return Err(refused(format!(
            "table `{}`: {} rows in SQLite but {} in PostgreSQL after the copy; nothing was committed",
            c.table, c.sqlite, c.postgres
        )));
    }
    dst.commit().await?;
    Ok(out)
}

/// Streams one table across in multi-row INSERTs; returns the rows read.
async fn copy_table(
    src: &mut sqlx::SqliteConnection,
    dst: &mut sqlx::PgConnection,
    table: &str,
    cols: &[(&str, Kind)],
) -> Result<i64> {
    let names: Vec<&str> = cols.iter().map(|c| c.0).collect();
    let list = names.join(", ");
    let select = format!("SELECT {list} FROM {table}");
    let head = format!("INSERT INTO {table} ({list})");
    let mut rows = sqlx::query(AssertSqlSafe(select)).fetch(&mut *src);
    let mut batch: Vec<Vec<Value>> = Vec::with_capacity(super::ROWS_PER_INSERT);
    let mut n = 0;
    while let Some(r) = rows.try_next().await? {
        let row = cols
            .iter()
            .enumerate()
            .map(|(i, (_, kind))| match kind {
                Kind::Text => Value::Text(r.get(i)),
                Kind::Int => Value::Int(r.get(i)),
                Kind::Bool => Value::Bool(r.get::<Option<i64>, _>(i).map(|v| v != 0)),
            })
            .collect();
        batch.push(row);
        n += 1;
        if batch.len() == super::ROWS_PER_INSERT {
            write_rows(dst, &head, cols.len(), &batch).await?;
            batch.clear();
        }
    }
    write_rows(dst, &head, cols.len(), &batch).await?;
    Ok(n)
}

async fn write_rows(
    dst: &mut sqlx::PgConnection,
    head: &str,
    cols: usize,
    rows: &[Vec<Value>],
) -> Result<()> {
    insert_many(dst, head, cols, "", rows, |mut q, row| {
        for v in row {
            q = match v {
                Value::Text(t) => q.bind(t.clone()),
                Value::Int(i) => q.bind(*i),
                Value::Bool(b) => q.bind(*b),
            };
        }
        q
    })
    .await
}

//! The SQLite side of [`ShadowStore`]: the daemon's store and a read-only
//! connection (`shadow report`, `backtest`).

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Row, SqlitePool};

use super::SqliteStore;
use crate::store::shadow::{FiredAlert, ShadowCount, ShadowStore, StoredVersion, end_of_time};
use crate::store::{Result, StoreError, fmt_time, parse_time};

/// A store opened read-only: no migration, no write lock, no write.
#[derive(Clone)]
pub struct ReadOnlyStore {
    pool: SqlitePool,
}

impl ReadOnlyStore {
    pub async fn open(path: &Path) -> Result<Self> {
        let open_err = |e: sqlx::Error| StoreError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let opts = SqliteConnectOptions::from_str("sqlite:")
            .map_err(open_err)?
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", "-16384");
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await
            .map_err(open_err)?;
        Ok(Self { pool })
    }
}

const ALERT_SELECT: &str = "SELECT a.fingerprint, a.rule_id, a.submission_id, a.event_time, a.mode, \
     a.replaces, s.outcome FROM alerts a LEFT JOIN alert_states s ON s.fingerprint = a.fingerprint";

fn fired_alert(r: &sqlx::sqlite::SqliteRow) -> Result<FiredAlert> {
    Ok(FiredAlert {
        fingerprint: r.get(0),
        rule: r.get(1),
        submission_id: r.get(2),
        event_time: parse_time("alerts.event_time", &r.get::<String, _>(3))?,
        mode: r.get(4),
        replaces: r.get(5),
        outcome: r.get(6),
    })
}

async fn shadow_counts(
    pool: &SqlitePool,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<ShadowCount>> {
    let rows = sqlx::query(
        "SELECT rule_id, MAX(replaces), COUNT(*) FROM alerts \
         WHERE mode = 'shadow' AND fired_at >= ? AND fired_at < ? GROUP BY rule_id ORDER BY rule_id",
    )
    .bind(fmt_time(start))
    .bind(fmt_time(end))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| ShadowCount {
            rule: r.get(0),
            replaces: r.get(1),
            count: r.get::<i64, _>(2) as usize,
        })
        .collect())
}

async fn alerts_where(
    pool: &SqlitePool,
    filter: &str,
    a: String,
    b: String,
) -> Result<Vec<FiredAlert>> {
    let sql = format!("{ALERT_SELECT} WHERE {filter} ORDER BY a.event_time, a.fingerprint");
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(a)
        .bind(b)
        .fetch_all(pool)
        .await?;
    rows.iter().map(fired_alert).collect()
}

/// Versions read per lookup of the second pass.
const LOOKUP: usize = 1000;

fn versions(
    pool: &SqlitePool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> BoxStream<'_, Result<StoredVersion>> {
    // `ORDER BY` over whole rows makes SQLite sort the raw JSON too (for 100k
    // versions, hundreds of megabytes through temporary files before the first
    // row comes out). So the ids are sorted alone, then the rows are read by
    // id a chunk at a time: one read transaction, one snapshot of a store a
    // daemon may be writing.
    let (from, to) = (fmt_time(from), fmt_time(to));
    futures::stream::once(async move {
        let mut tx = pool.begin().await?;
        let ids = ordered_rowids(&mut tx, from, to).await?;
        Ok::<_, StoreError>((tx, ids))
    })
    .map_ok(|(tx, ids)| {
        futures::stream::try_unfold((tx, ids, 0), |(mut tx, ids, at)| async move {
            if at >= ids.len() {
                tx.rollback().await?;
                return Ok::<_, StoreError>(None);
            }
            let end = (at + LOOKUP).min(ids.len());
            let rows = rows_by_id(&mut tx, &ids[at..end]).await?;
            Ok(Some((
                futures::stream::iter(rows.into_iter().map(Ok)),
                (tx, ids, end),
            )))
        })
    })
    .try_flatten()
    .try_flatten()
    .boxed()
}

type ReadTx = sqlx::Transaction<'static, sqlx::Sqlite>;

/// The row ids of the versions in `[from, to)`, in event-time order (ties by
/// submission id), as one JSON array: one row, not one per version.
async fn ordered_rowids(tx: &mut ReadTx, from: String, to: String) -> Result<Vec<i64>> {
    let list: String = sqlx::query_scalar(
        "SELECT json_group_array(rowid ORDER BY event_time, submission_id) \
         FROM submission_versions WHERE event_time >= ? AND event_time < ?",
    )
    .bind(from)
    .bind(to)
    .fetch_one(&mut **tx)
    .await?;
    serde_json::from_str(&list).map_err(|e| StoreError::Corrupt {
        what: "submission_versions.rowid",
        detail: e.to_string(),
    })
}

/// The versions with row ids `ids`, in that order.
async fn rows_by_id(tx: &mut ReadTx, ids: &[i64]) -> Result<Vec<StoredVersion>> {
    let list = serde_json::Value::from(ids).to_string();
    let rows = sqlx::query(
        "SELECT rowid, submission_id, raw FROM submission_versions \
         WHERE rowid IN (SELECT value FROM json_each(?))",
    )
    .bind(list)
    .fetch_all(&mut **tx)
    .await?;
    let mut by_id: HashMap<i64, StoredVersion> = rows
        .iter()
        .map(|r| {
            let v = StoredVersion {
                submission_id: r.get(1),
                raw: r.get(2),
            };
            (r.get(0), v)
        })
        .collect();
    ids.iter()
        .map(|id| {
            by_id.remove(id).ok_or_else(|| StoreError::Corrupt {
                what: "submission_versions.rowid",
                detail: format!("row {id} vanished inside one read transaction"),
            })
        })
        .collect()
}

/// The pool the operations run on (both stores are SQLite).
pub trait OnPool: Send + Sync {
    fn on_pool(&self) -> &SqlitePool;
}

impl OnPool for SqliteStore {
    fn on_pool(&self) -> &SqlitePool {
        self.pool()
    }
}

impl OnPool for ReadOnlyStore {
    fn on_pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait::async_trait]
impl<T: OnPool> ShadowStore for T {
    async fn shadow_counts(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<ShadowCount>> {
        shadow_counts(self.on_pool(), start, end).await
    }

    async fn alerts_fired_since(&self, since: DateTime<Utc>) -> Result<Vec<FiredAlert>> {
        let far = fmt_time(end_of_time());
        alerts_where(
            self.on_pool(),
            "a.fired_at >= ? AND a.fired_at < ?",
            fmt_time(since),
            far,
        )
        .await
    }

    async fn live_alerts_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<FiredAlert>> {
        alerts_where(
            self.on_pool(),
            "a.mode = 'live' AND a.event_time >= ? AND a.event_time < ?",
            fmt_time(from),
            fmt_time(to),
        )
        .await
    }

    fn versions(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxStream<'_, Result<StoredVersion>> {
        versions(self.on_pool(), from, to)
    }
}

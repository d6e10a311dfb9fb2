//! The state store on PostgreSQL: the same tables and operations as
//! [`SqliteStore`](super::SqliteStore), for several instances on one database
//! (see [`leader`] for which of them may write).
//!
//! Every SQL text of the Postgres store lives under this folder, one file per
//! role: each implements its role trait for [`PgStore`] (pipeline.rs also
//! `MetaStore`, audit.rs also `MaintenanceStore`; hints.rs the standbys'
//! `HintStore`; cases.rs and users.rs the console's roles), so `Arc<PgStore>` is an `Arc<dyn StateStore>`. It passes the
//! conformance suite (`tests/it/store_conformance.rs`).
//!
//! Times are kept as the same RFC 3339 text as in SQLite ([`fmt_time`]), so
//! text order is time order and `store migrate` copies rows unchanged.

mod audit;
mod cases;
pub mod copy;
mod digests;
mod escalation;
mod hints;
pub mod leader;
mod lifecycle;
mod lookup;
mod outbox;
mod pipeline;
mod shadow;
mod silences;
mod users;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool, Row};

use super::{Result, StoreError};

/// Rows per multi-row INSERT (at most 10 columns: far below 65535 parameters).
pub(crate) const ROWS_PER_INSERT: usize = 500;

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// With high availability: the epoch this instance leads with. Every
    /// write transaction checks it first ([`leader::fence`]).
    fence: Option<i64>,
}

pub use crate::config::redact_url;

/// Whether `url` is a PostgreSQL URL sqlx can connect with (no I/O). The
/// error never repeats the URL (it may hold a password).
pub fn check_url(url: &str) -> std::result::Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("not a PostgreSQL URL: it must start with postgres://".into());
    }
    PgConnectOptions::from_str(url)
        .map(|_| ())
        .map_err(|e| match e {
            // Parse errors of the url crate do not contain the input.
            sqlx::Error::Configuration(c) => format!("not a valid URL: {c}"),
            other => format!("not a valid URL: {other}"),
        })
}

impl PgStore {
    /// Connects to the database at `url` and applies the Postgres migrations.
    /// The password comes from the URL or `PGPASSWORD`; `sslmode` and
    /// `sslrootcert` in the query string as libpq names them.
    pub async fn open(url: &str) -> Result<Self> {
        let open_err = |source: sqlx::Error| StoreError::Open {
            path: redact_url(url),
            message: source.to_string(),
        };
        check_url(url).map_err(|e| open_err(sqlx::Error::Configuration(e.into())))?;
        let opts = PgConnectOptions::from_str(url)
            .map_err(open_err)?
            .application_name("kyc-sentinel");
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(open_err)?;
        crate::store::migrations::migrator(crate::store::migrations::POSTGRES)
            .run(&pool)
            .await?;
        Ok(Self { pool, fence: None })
    }

    /// Connects read-only (`shadow report`, `backtest`): no migration, and
    /// every transaction is READ ONLY, so nothing can be written by mistake.
    pub async fn open_read_only(url: &str) -> Result<Self> {
        let open_err = |source: sqlx::Error| StoreError::Open {
            path: redact_url(url),
            message: source.to_string(),
        };
        check_url(url).map_err(|e| open_err(sqlx::Error::Configuration(e.into())))?;
        let opts = PgConnectOptions::from_str(url)
            .map_err(open_err)?
            .application_name("kyc-sentinel read-only")
            .options([("default_transaction_read_only", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(open_err)?;
        Ok(Self { pool, fence: None })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// This store, with every write transaction fenced by `epoch` (the
    /// leader's, see [`leader::Leadership::epoch`]).
    pub fn fenced(&self, epoch: i64) -> Self {
        Self {
            pool: self.pool.clone(),
            fence: Some(epoch),
        }
    }

    /// A transaction that writes: fenced when this instance leads, so a
    /// deposed leader's transaction fails before it writes anything. Every
    /// write of the engine's own work goes through it; only what a person
    /// does from any instance (silences) writes outside it.
    pub async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.pool.begin().await?;
        if let Some(epoch) = self.fence {
            leader::fence(&mut tx, epoch).await?;
        }
        Ok(tx)
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

/// `$first,$first+1,..` for `n` values.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Runs `head VALUES ($..),($..) tail` over `rows` in chunks, `bind` binding
/// one row's `cols` values in order; a bind closure that disagrees with
/// `cols` is refused before anything is sent.
pub(crate) async fn insert_many<T>(
    conn: &mut sqlx::PgConnection,
    head: &str,
    cols: usize,
    tail: &str,
    rows: &[T],
    bind: impl for<'q> Fn(PgQuery<'q>, &T) -> PgQuery<'q>,
) -> Result<()> {
    use sqlx::{Arguments, Execute};
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let values = (0..chunk.len())
            .map(|i| format!("({})", placeholders(i * cols + 1, cols)))
            .collect::<Vec<_>>()
            .join(",");
        // Only `$n` placeholders are interpolated; every value is bound.
        let sql = format!("{head} VALUES {values} {tail}");
        let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
        for r in chunk {
            q = bind(q, r);
        }
        let args = q
            .take_arguments()
            .map_err(|e| StoreError::from(sqlx::Error::Encode(e)))?
            .unwrap_or_default();
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

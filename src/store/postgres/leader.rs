//! Leadership among several instances on one PostgreSQL database.
//!
//! - The leader holds a session advisory lock ([`LOCK_KEY`]) on a connection
//!   of its own. The lock goes with the connection: a killed process, a
//!   terminated backend or a cut network (once the server notices) frees it.
//! - On taking over, the new leader increments the `leadership` row's epoch
//!   and records its backend pid. Every write transaction of a leader calls
//!   [`fence`] first, which reads the epoch under a key-share lock: a deposed
//!   leader's commit fails, and a takeover waits for (or ends) the commits in
//!   flight, so no write of an old epoch lands after the new epoch begins.
//! - A frozen leader (SIGSTOP) keeps its connection, and its lock, open: the
//!   kernel answers keepalives for it. So the leader renews a lease
//!   (`renewed_at`, database clock); a contender finding the lease expired
//!   terminates the holder's backend ([`pg_terminate_backend`]) and takes
//!   over. The leader counts itself leader only for half a lease after its
//!   last renewal began, so it stops acting before anyone may take over.
//!
//! [`pg_terminate_backend`]: https://www.postgresql.org/docs/current/functions-admin.html

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};

use std::sync::Arc;

use super::{PgStore, redact_url};
use crate::store::leadership::{LeaderElection, Lease, SharedStore};
use crate::store::{Result, StoreError};

/// The advisory lock's key: "kycsent" in ASCII, one lock per database.
pub const LOCK_KEY: i64 = 0x006b_7963_7365_6e74;

/// Checks, inside `tx`, that the database's epoch is still `epoch`, and
/// holds a key-share lock of the leadership row until `tx` ends (a takeover's
/// increment waits for it). Call it first in every write transaction of a
/// leader; on a mismatch nothing must be written.
pub async fn fence(tx: &mut PgConnection, epoch: i64) -> Result<()> {
    // KEY SHARE: a takeover (which locks the row FOR UPDATE first) waits
    // for it, but the leader's own lease renewal (a plain UPDATE) does not:
    // a long batch commit must not make the leader miss its renewal.
    let current: i64 =
        sqlx::query_scalar("SELECT epoch FROM leadership WHERE id = 1 FOR KEY SHARE")
            .fetch_one(&mut *tx)
            .await?;
    if current != epoch {
        return Err(StoreError::Fenced {
            held: epoch,
            current,
        });
    }
    Ok(())
}

pub use crate::store::leadership::LeaseConfig;

/// This instance leads: the lock's connection, the epoch it took over with.
pub struct Leadership {
    conn: Option<PgConnection>,
    epoch: i64,
    backend_pid: i32,
    cfg: LeaseConfig,
    /// Leader until then (half a lease after the last renewal began).
    valid_until: Instant,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("epoch", &self.epoch)
            .field("backend_pid", &self.backend_pid)
            .field("leader", &self.is_leader())
            .finish()
    }
}

async fn connect(url: &str) -> Result<PgConnection> {
    let opts = PgConnectOptions::from_str(url).map_err(|source| StoreError::Open {
        path: redact_url(url),
        message: source.to_string(),
    })?;
    connect_with(&opts).await
}

/// Connects with the options of the store's pool (its URL is not kept).
async fn connect_with(opts: &PgConnectOptions) -> Result<PgConnection> {
    let opts = opts.clone().application_name("kyc-sentinel leader");
    PgConnection::connect_with(&opts)
        .await
        .map_err(|source| StoreError::Open {
            path: format!(
                "postgres://{}@{}:{}/{}",
                opts.get_username(),
                opts.get_host(),
                opts.get_port(),
                opts.get_database().unwrap_or_default()
            ),
            message: source.to_string(),
        })
}

fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown host".into());
    format!("{host} {}", std::process::id())
}

impl Leadership {
    /// Takes leadership if it is free, or if its holder's lease expired (then
    /// the holder's backend is terminated first). `None`: someone leads.
    /// The database must be migrated first ([`super::PgStore::open`]).
    pub async fn try_acquire(url: &str, cfg: &LeaseConfig) -> Result<Option<Leadership>> {
        Self::try_acquire_on(connect(url).await?, cfg).await
    }

    /// [`Self::try_acquire`] on a connection opened for the lock.
    async fn try_acquire_on(
        mut conn: PgConnection,
        cfg: &LeaseConfig,
    ) -> Result<Option<Leadership>> {
        let started = Instant::now();
        if !try_lock(&mut conn).await? {
            let stale: Option<Option<i32>> = sqlx::query_scalar(
                "SELECT holder_pid FROM leadership WHERE id = 1 \
                 AND renewed_at < clock_timestamp() - make_interval(secs => $1)",
            )
            .bind(cfg.lease.as_secs_f64())
            .fetch_optional(&mut conn)
            .await?;
            let Some(Some(pid)) = stale else {
                return Ok(None);
            };
            tracing::warn!(
                backend_pid = pid,
                "the leader's lease expired: ending its database session"
            );
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(&mut conn)
                .await?;
            // The lock is freed once that backend has exited.
            let deadline = Instant::now() + cfg.renew_timeout.max(Duration::from_secs(1));
            loop {
                if try_lock(&mut conn).await? {
                    break;
                }
                if Instant::now() > deadline {
                    return Ok(None);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let (epoch, backend_pid) = take_over(&mut conn).await?;
        tracing::info!(epoch, "took leadership");
        Ok(Some(Leadership {
            conn: Some(conn),
            epoch,
            backend_pid,
            cfg: cfg.clone(),
            valid_until: started + cfg.lease / 2,
        }))
    }

    /// Waits (trying every `every`) until this instance leads.
    pub async fn acquire(url: &str, cfg: &LeaseConfig, every: Duration) -> Result<Leadership> {
        loop {
            if let Some(l) = Self::try_acquire(url, cfg).await? {
                return Ok(l);
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Moves the lease forward; false (and no longer leader) when the lock's
    /// connection is gone, slow or deposed.
    pub async fn renew(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let started = Instant::now();
        let renewed = tokio::time::timeout(
            self.cfg.renew_timeout,
            sqlx::query(
                "UPDATE leadership SET renewed_at = clock_timestamp() \
                 WHERE id = 1 AND epoch = $1 AND holder_pid = pg_backend_pid()",
            )
            .bind(self.epoch)
            .execute(conn),
        )
        .await;
        match renewed {
            Ok(Ok(r)) if r.rows_affected() == 1 => {
                self.valid_until = started + self.cfg.lease / 2;
                true
            }
            outcome => {
                let why = match outcome {
                    Err(_) => "renewal timed out".to_owned(),
                    Ok(Err(e)) => format!("renewal failed: {e}"),
                    Ok(Ok(_)) => "another instance took over".to_owned(),
                };
                tracing::warn!(epoch = self.epoch, "lost leadership: {why}");
                self.conn = None;
                false
            }
        }
    }

    /// Leader now: the connection is held and the last renewal is recent.
    pub fn is_leader(&self) -> bool {
        self.conn.is_some() && Instant::now() < self.valid_until
    }

    /// The epoch this instance took over with (what its writes are fenced by).
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// The backend holding the lock (operators, tests).
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    /// Steps down: closes the lock's connection (the lock goes with it).
    pub async fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }
}

/// Locks the row FOR UPDATE (waiting for the fenced transactions in flight,
/// which hold it FOR KEY SHARE), then moves to the next epoch.
async fn next_epoch(
    conn: &mut PgConnection,
) -> std::result::Result<sqlx::postgres::PgRow, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT 1 FROM leadership WHERE id = 1 FOR UPDATE")
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query(
        "UPDATE leadership SET epoch = epoch + 1, holder = $1, holder_pid = pg_backend_pid(), \
         since = clock_timestamp(), renewed_at = clock_timestamp() WHERE id = 1 \
         RETURNING epoch, holder_pid",
    )
    .bind(holder_name())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
}

async fn try_lock(conn: &mut PgConnection) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut *conn)
        .await?)
}

/// With the lock held: the next epoch. Transactions of the old leader still
/// holding the row (fenced before the takeover) may finish for a moment;
/// past that they are ended, as they belong to a deposed leader.
async fn take_over(conn: &mut PgConnection) -> Result<(i64, i32)> {
    sqlx::query("SET lock_timeout = '2s'")
        .execute(&mut *conn)
        .await?;
    loop {
        let taken = next_epoch(conn).await;
        match taken {
            Ok(r) => {
                sqlx::query("SET lock_timeout = 0")
                    .execute(&mut *conn)
                    .await?;
                return Ok((r.get(0), r.get(1)));
            }
            // 55P03: lock_not_available (lock_timeout).
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                let ended: i64 = sqlx::query_scalar(
                    "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_locks \
                     WHERE relation = 'leadership'::regclass AND pid <> pg_backend_pid()",
                )
                .fetch_one(&mut *conn)
                .await?;
                tracing::warn!(
                    sessions = ended,
                    "ended the deposed leader's transactions holding the leadership row"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[async_trait::async_trait]
impl Lease for Leadership {
    fn epoch(&self) -> i64 {
        Leadership::epoch(self)
    }

    async fn renew(&mut self) -> bool {
        Leadership::renew(self).await
    }

    async fn release(self: Box<Self>) {
        Leadership::release(*self).await
    }
}

#[async_trait::async_trait]
impl LeaderElection for PgStore {
    async fn try_lead(&self, cfg: &LeaseConfig) -> Result<Option<Box<dyn Lease>>> {
        let conn = connect_with(&self.pool().connect_options()).await?;
        Ok(Leadership::try_acquire_on(conn, cfg)
            .await?
            .map(|l| Box::new(l) as Box<dyn Lease>))
    }

    fn fenced_by(&self, epoch: i64) -> Arc<dyn SharedStore> {
        Arc::new(self.fenced(epoch))
    }
}

//! High availability: several `run` instances on one PostgreSQL database
//! (`store.url`), exactly one of them leading.
//!
//! Each instance loops between two roles:
//!
//! - **Standby**: serves `/healthz` (`role: standby`), `/metrics`
//!   (`kyc_sentinel_leader 0`) and the alert API, and accepts Argos webhooks,
//!   whose hints it writes to `ingest_hints` for the leader. Every second it
//!   tries to take leadership (`store::leadership`; on PostgreSQL
//!   `store::postgres::leader`).
//! - **Leader**: runs the whole engine (`daemon::run_with_hints`: polls,
//!   evaluates, delivers, escalates, sends digests) on a store fenced by its
//!   epoch, drains `ingest_hints` into the engine, and renews its lease. When
//!   a renewal fails (connection lost, deposed, frozen past its lease) it
//!   stops the engine and becomes a standby again.
//!
//! The standby's servers stop before the leader's engine binds the same
//! addresses, so one configuration serves both roles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::argos::crypto::{AesEcb, Cipher};
use crate::clock::Clock;
use crate::config::Config;
use crate::ingest::{Hint, IngestServer};
use crate::rules::RuleSet;
use crate::store::hints::StoredHint;
use crate::store::leadership::{Lease, LeaseConfig, SharedStore};

/// A leader not renewed for this long may be deposed. With [`CONTEND_EVERY`]
/// it bounds the takeover after a freeze (SIGSTOP) to about 8 s.
pub const LEASE: Duration = Duration::from_secs(7);
/// How often a standby tries to take leadership (after a crash of the
/// leader, its lock is free at once: this is the takeover time).
pub const CONTEND_EVERY: Duration = Duration::from_secs(1);
/// How often the leader drains the hints standbys received.
const DRAIN_EVERY: Duration = Duration::from_millis(250);

/// Why the standby's last try to lead failed (the database unreachable...),
/// for its `/healthz`: a standby that could not take over is not healthy.
static CONTEND_ERROR: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn set_contend_error(e: Option<String>) {
    *CONTEND_ERROR.lock().expect("contend error lock") = e;
}

/// A standby's `/healthz`: 200 while it can reach the database, else 503.
async fn standby_health() -> (axum::http::StatusCode, String) {
    let role = crate::telemetry::ha_role_line();
    match CONTEND_ERROR.lock().expect("contend error lock").clone() {
        None => (
            axum::http::StatusCode::OK,
            format!("{role}ok: standing by (another instance leads)\n"),
        ),
        Some(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("{role}cannot take over: {e}\n"),
        ),
    }
}

fn lease() -> LeaseConfig {
    LeaseConfig {
        lease: LEASE,
        renew_timeout: Duration::from_secs(2),
    }
}

/// Runs this instance until `shutdown`: standby, leader when it can be, and
/// standby again when leadership is lost.
pub async fn run(
    cfg: Config,
    rules: Arc<RuleSet>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = crate::store::open_shared(&cfg.store)
        .await?
        .context("high availability needs store.url (a PostgreSQL database)")?;
    loop {
        crate::telemetry::set_ha_role(None);
        let standby = Standby::start(&cfg, store.clone()).await?;
        tracing::info!("standby: another instance leads; trying every {CONTEND_EVERY:?}");
        let taken = tokio::select! {
            _ = shutdown.cancelled() => None,
            l = contend(store.as_ref()) => Some(l),
        };
        standby.stop().await;
        let Some(leadership) = taken else {
            return Ok(());
        };
        match lead(
            &cfg,
            rules.clone(),
            clock.clone(),
            &store,
            leadership,
            &shutdown,
        )
        .await?
        {
            Ended::Shutdown => return Ok(()),
            Ended::Lost => continue,
        }
    }
}

/// Tries every [`CONTEND_EVERY`] until this instance leads. A database that
/// cannot be reached is logged and tried again: a standby outlives it.
async fn contend(store: &dyn SharedStore) -> Box<dyn Lease> {
    let cfg = lease();
    loop {
        match store.try_lead(&cfg).await {
            Ok(Some(l)) => {
                set_contend_error(None);
                return l;
            }
            Ok(None) => set_contend_error(None),
            Err(e) => {
                tracing::warn!("standby: cannot contend for leadership: {e}");
                set_contend_error(Some(e.to_string()));
            }
        }
        tokio::time::sleep(CONTEND_EVERY).await;
    }
}

/// Runs `work` (a `backfill`) as the leader: refused while another instance
/// leads, fenced by its own epoch, and stopped if the lease cannot be kept,
/// so a `run` standby taking over never writes beside it.
pub async fn exclusively<T>(
    mut cfg: Config,
    command: &str,
    work: impl AsyncFnOnce(Config) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let url = cfg.store.url.clone().context("store.url")?;
    let store = crate::store::open_shared(&cfg.store)
        .await?
        .context("store.url")?;
    let Some(mut leadership) = store.try_lead(&lease()).await? else {
        anyhow::bail!(
            "another kyc-sentinel leads on the store {} ; `{command}` needs it alone: stop the \
             `run` instances first",
            crate::config::redact_url(&url)
        );
    };
    let epoch = leadership.epoch();
    tracing::info!(epoch, "`{command}` leads with epoch {epoch}");
    cfg.store.leader_epoch = Some(epoch);
    let work = work(cfg);
    tokio::pin!(work);
    let mut renew = tokio::time::interval(LEASE / 5);
    renew.tick().await;
    let out = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = renew.tick() => {
                if !leadership.renew().await {
                    break Err(anyhow::anyhow!(
                        "`{command}` lost leadership (epoch {epoch}): stopped; run it again to go on"
                    ));
                }
            }
        }
    };
    leadership.release().await;
    out
}

enum Ended {
    Shutdown,
    Lost,
}

/// Runs the engine while leading; returns when shut down or deposed.
async fn lead(
    cfg: &Config,
    rules: Arc<RuleSet>,
    clock: Arc<dyn Clock>,
    store: &Arc<dyn SharedStore>,
    mut leadership: Box<dyn Lease>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Ended> {
    let epoch = leadership.epoch();
    crate::telemetry::set_ha_role(Some(epoch));
    tracing::warn!(
        epoch,
        "leader with epoch {epoch}: polling, evaluating and delivering"
    );
    let mut led = cfg.clone();
    led.store.leader_epoch = Some(epoch);
    // The engine stops on this: process shutdown, or leadership lost.
    let stop = shutdown.child_token();
    let cap = cfg.ingest.as_ref().map_or(1000, |i| i.queue_capacity);
    let (hint_tx, hint_rx) = mpsc::channel::<Hint>(cap);
    let drain = tokio::spawn(drain_hints(store.fenced_by(epoch), hint_tx.clone()));
    let mut engine = tokio::spawn(crate::daemon::run_with_hints(
        led,
        rules,
        clock,
        stop.clone(),
        Some((hint_tx, hint_rx)),
    ));
    let mut renew = tokio::time::interval(LEASE / 5);
    renew.tick().await; // the first tick is now: the lease was just taken
    let ended = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ended::Shutdown,
            _ = renew.tick() => {
                if !leadership.renew().await {
                    break Ended::Lost;
                }
            }
            r = &mut engine => {
                // The engine ends on its own only on a fatal error (a wrong
                // API key...): step down, and stop as a single instance would.
                drain.abort();
                leadership.release().await;
                return Err(match r {
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => anyhow::anyhow!("the engine stopped while leading"),
                    Err(e) => anyhow::Error::from(e).context("the engine failed"),
                });
            }
        }
    };
    stop.cancel();
    drain.abort();
    let stopped = engine.await;
    match ended {
        Ended::Shutdown => {
            leadership.release().await;
            stopped??;
        }
        Ended::Lost => {
            // Its writes after the takeover were refused (fenced); what it
            // sent before is re-sent by the new leader with the same keys.
            tracing::warn!(
                epoch,
                "no longer leader (epoch {epoch}): engine stopped, standing by"
            );
            if let Ok(Err(e)) = stopped {
                tracing::warn!("the engine stopped with: {e:#}");
            }
        }
    }
    Ok(ended)
}

/// Feeds the engine the hints standbys wrote, until aborted.
async fn drain_hints(store: Arc<dyn SharedStore>, hints: mpsc::Sender<Hint>) {
    loop {
        match store.take_hints(200).await {
            Ok(taken) => {
                for h in taken {
                    let hint = Hint {
                        trigger: crate::argos::webhook::Trigger::parse(&h.trigger),
                        submission_id: h.submission_id,
                        received: Instant::now(),
                    };
                    if hints.send(hint).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!("cannot read the standbys' webhook hints: {e}"),
        }
        tokio::time::sleep(DRAIN_EVERY).await;
    }
}

/// What a standby serves: telemetry with the alert API (or the API and the
/// console on `console.listen`, as the leader does), and the webhook endpoint
/// whose hints go to the database.
struct Standby {
    telemetry: Option<tokio::task::JoinHandle<()>>,
    console: Option<tokio::task::JoinHandle<()>>,
    ingest: Option<(CancellationToken, IngestServer, tokio::task::JoinHandle<()>)>,
}

impl Standby {
    async fn start(cfg: &Config, store: Arc<dyn SharedStore>) -> anyhow::Result<Standby> {
        let console_at = cfg.console.as_ref().and_then(|c| c.listen);
        let telemetry = match cfg.telemetry.listen {
            Some(addr) => serve_standby(addr, cfg, store.clone(), console_at.is_none()).await,
            None => None,
        };
        let console = match console_at {
            Some(addr) => serve_standby_console(addr, cfg, store.clone()).await,
            None => None,
        };
        let ingest = match &cfg.ingest {
            Some(i) => {
                let key = crate::compose::api_key(cfg)?;
                let (tx, rx) = mpsc::channel::<Hint>(i.queue_capacity);
                let stop = CancellationToken::new();
                let server = with_retries(|| {
                    // The same key as API answers, as the leader's endpoint.
                    let cipher: Box<dyn Cipher> = Box::new(AesEcb::from_api_key(&key));
                    IngestServer::start(i.clone(), Some(cipher), tx.clone(), stop.clone())
                })
                .await
                .context("standby: cannot start the webhook endpoint")?;
                drop(tx);
                let keep = tokio::spawn(keep_hints(store, rx));
                Some((stop, server, keep))
            }
            None => None,
        };
        Ok(Standby {
            telemetry,
            console,
            ingest,
        })
    }

    /// Stops serving, so the leader's engine can bind the same addresses.
    async fn stop(self) {
        for t in [self.telemetry, self.console].into_iter().flatten() {
            t.abort();
            let _ = t.await;
        }
        if let Some((stop, server, keep)) = self.ingest {
            stop.cancel();
            server.stopped().await;
            // The endpoint's sender is gone: the writer ends after the last hint.
            let _ = keep.await;
        }
    }
}

/// Binds again a few times: the engine that just stopped may still be
/// closing the same address.
async fn with_retries<T, F, Fut>(mut start: F) -> std::io::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<T>>,
{
    let mut tries = 0;
    loop {
        match start().await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 20 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r => return r,
        }
    }
}

/// `/healthz`, `/metrics` and (`with_api`, when there is no `console.listen`)
/// the alert API of a standby. A standby that cannot serve them still stands
/// by (logged), as the engine does.
async fn serve_standby(
    addr: std::net::SocketAddr,
    cfg: &Config,
    store: Arc<dyn SharedStore>,
    with_api: bool,
) -> Option<tokio::task::JoinHandle<()>> {
    use axum::routing::get;
    let dyn_store: Arc<dyn crate::store::StateStore> = store;
    let mut app = axum::Router::new()
        .route(
            "/metrics",
            get(|| async { crate::telemetry::metrics_handle().render() }),
        )
        .route("/healthz", get(standby_health));
    if let Some(api) = crate::compose::api_router(cfg, &dyn_store).filter(|_| with_api) {
        app = app.merge(api);
    }
    let listener = match with_retries(|| crate::http_guard::bind(addr, "telemetry.listen")).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("standby: cannot serve metrics on {addr}: {e}; continuing without");
            return None;
        }
    };
    if let Ok(bound) = listener.local_addr() {
        tracing::info!(
            "standby: metrics on http://{bound}/metrics, health on http://{bound}/healthz"
        );
    }
    Some(tokio::spawn(crate::http_guard::serve(
        listener,
        app,
        crate::http_guard::Limits::API,
        "telemetry",
        std::future::pending(),
    )))
}

/// The alert API and the console of a standby on `console.listen`, as the
/// leader serves them there (a load balancer may send anyone to any instance).
async fn serve_standby_console(
    addr: std::net::SocketAddr,
    cfg: &Config,
    store: Arc<dyn SharedStore>,
) -> Option<tokio::task::JoinHandle<()>> {
    let dyn_store: Arc<dyn crate::store::StateStore> = store;
    let app = crate::compose::api_router(cfg, &dyn_store)?;
    let listener = match with_retries(|| crate::http_guard::bind(addr, "console.listen")).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("standby: cannot serve the console on {addr}: {e}; continuing without");
            return None;
        }
    };
    if let Ok(bound) = listener.local_addr() {
        tracing::info!("standby: console and alert API on http://{bound}/");
    }
    Some(tokio::spawn(crate::http_guard::serve(
        listener,
        app,
        crate::http_guard::Limits::API,
        "console",
        std::future::pending(),
    )))
}

/// Writes the standby's webhook hints to the database for the leader.
async fn keep_hints(store: Arc<dyn SharedStore>, mut rx: mpsc::Receiver<Hint>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(h) = rx.try_recv() {
            batch.push(h);
        }
        let rows: Vec<StoredHint> = batch
            .into_iter()
            .map(|h| StoredHint {
                submission_id: h.submission_id,
                trigger: h.trigger.as_str().to_owned(),
                received_at: chrono::Utc::now(),
            })
            .collect();
        if let Err(e) = store.add_hints(&rows).await {
            // The leader's poll finds these submissions anyway.
            tracing::warn!(
                hints = rows.len(),
                "standby: cannot keep webhook hints: {e}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_standby_that_cannot_reach_the_database_is_unhealthy() {
        crate::telemetry::set_ha_role(None);
        set_contend_error(Some(
            "state store postgres://s@db/s: connection refused".into(),
        ));
        let (status, body) = standby_health().await;
        assert_eq!(status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            "role: standby\ncannot take over: state store postgres://s@db/s: connection refused\n"
        );
        set_contend_error(None);
        let (status, body) = standby_health().await;
        assert_eq!(status, axum::http::StatusCode::OK);
        assert!(body.starts_with("role: standby\nok: standing by"), "{body}");
    }
}

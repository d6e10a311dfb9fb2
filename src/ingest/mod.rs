//! Push ingestion: the HTTP endpoint that receives Argos webhooks.
//!
//! A webhook is only a hint (Argos's own FAQ says webhooks can be lost): the
//! handler checks the caller, reads the body into an event, and queues the
//! submission id for the task that owns the pipeline, which fetches the
//! submission by id and processes it like a polled one. So the handler never
//! touches the store, answers as soon as the hint is queued, and a webhook and
//! a poll of the same version still make one decision (the pipeline
//! de-duplicates by content hash).
//!
//! Checks, in order, each with its status and counter:
//! allow-list (403) -> token (404 in the path, 401 in a header) -> rate limit
//! (429) -> size (413) -> body (400) -> replay (200, ignored) -> queue (503 if
//! full) -> 200. A replayed body is answered 200 and not acted on: a sender
//! that retries a delivery it thinks failed must see success, and acting on
//! it again would only cost an API call.
//!
//! - [`guard`]: the pure checks (token, IP ranges, sizes, replay memory).

pub mod guard;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::argos::crypto::Cipher;
use crate::argos::webhook::{self, Trigger};
use crate::config::IngestConfig;
use guard::ReplayMemory;

/// The header that may carry the token instead of the URL path.
pub const TOKEN_HEADER: &str = "x-sentinel-token";

/// Bodies remembered for replay detection, at most.
const REPLAY_CAPACITY: usize = 100_000;

/// A submission to fetch now, queued by the endpoint for the pipeline's task.
#[derive(Debug, Clone)]
pub struct Hint {
    pub submission_id: String,
    pub trigger: Trigger,
    /// When the webhook arrived (for latency measurements).
    pub received: Instant,
}

/// What the endpoint did, counted. Read with [`IngestCounters::snapshot`]; a
/// metrics exporter reads the same atomics.
#[derive(Debug, Default)]
pub struct IngestCounters {
    pub requests: AtomicU64,
    pub queued: AtomicU64,
    pub replayed: AtomicU64,
    pub bad_body: AtomicU64,
    pub unauthenticated: AtomicU64,
    pub forbidden_ip: AtomicU64,
    pub too_large: AtomicU64,
    pub rate_limited: AtomicU64,
    pub queue_full: AtomicU64,
    pub encrypted: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestStats {
    pub requests: u64,
    pub queued: u64,
    pub replayed: u64,
    pub bad_body: u64,
    pub unauthenticated: u64,
    pub forbidden_ip: u64,
    pub too_large: u64,
    pub rate_limited: u64,
    pub queue_full: u64,
    pub encrypted: u64,
}

impl IngestStats {
    /// The counters by outcome, as the metrics name them.
    pub fn outcomes(&self) -> [(&'static str, u64); 8] {
        [
            ("queued", self.queued),
            ("replayed", self.replayed),
            ("bad_body", self.bad_body),
            ("unauthenticated", self.unauthenticated),
            ("forbidden_ip", self.forbidden_ip),
            ("too_large", self.too_large),
            ("rate_limited", self.rate_limited),
            ("queue_full", self.queue_full),
        ]
    }
}

impl IngestCounters {
    pub fn snapshot(&self) -> IngestStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        IngestStats {
            requests: l(&self.requests),
            queued: l(&self.queued),
            replayed: l(&self.replayed),
            bad_body: l(&self.bad_body),
            unauthenticated: l(&self.unauthenticated),
            forbidden_ip: l(&self.forbidden_ip),
            too_large: l(&self.too_large),
            rate_limited: l(&self.rate_limited),
            queue_full: l(&self.queue_full),
            encrypted: l(&self.encrypted),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

struct Shared {
    cfg: IngestConfig,
    cipher: Option<Box<dyn Cipher>>,
    hints: mpsc::Sender<Hint>,
    limiter: DefaultDirectRateLimiter,
    replay: Mutex<ReplayMemory>,
    counters: Arc<IngestCounters>,
}

/// A running endpoint.
pub struct IngestServer {
    addr: SocketAddr,
    counters: Arc<IngestCounters>,
    task: JoinHandle<()>,
}

impl IngestServer {
    /// Binds `cfg.listen` (port 0 picks one) and serves until `shutdown`.
    /// `cipher` reads encrypted bodies (Argos's scheme keyed by the API key).
    pub async fn start(
        cfg: IngestConfig,
        cipher: Option<Box<dyn Cipher>>,
        hints: mpsc::Sender<Hint>,
        shutdown: CancellationToken,
    ) -> std::io::Result<IngestServer> {
        let limits = crate::http_guard::Limits::INGEST;
        Self::start_with(cfg, cipher, hints, shutdown, limits).await
    }

    /// As [`IngestServer::start`], within other connection limits (tests
    /// shorten the timeouts). The body size stays `cfg.max_body`.
    pub async fn start_with(
        cfg: IngestConfig,
        cipher: Option<Box<dyn Cipher>>,
        hints: mpsc::Sender<Hint>,
        shutdown: CancellationToken,
        limits: crate::http_guard::Limits,
    ) -> std::io::Result<IngestServer> {
        let listener = crate::http_guard::bind(cfg.listen, "ingest.listen").await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(IngestCounters::default());
        let rate = NonZeroU32::new(cfg.rate_limit_per_sec).unwrap_or(NonZeroU32::MIN);
        let shared = Arc::new(Shared {
            limiter: RateLimiter::direct(Quota::per_second(rate)),
            replay: Mutex::new(ReplayMemory::new(cfg.replay_window.0, REPLAY_CAPACITY)),
            cfg,
            cipher,
            hints,
            counters: counters.clone(),
        });
        let stop = shutdown.cancelled_owned();
        let guarded = crate::http_guard::Limits {
            // The endpoint checks `ingest.max_body` itself, after the token.
            max_body: None,
            ..limits
        };
        let task = tokio::spawn(crate::http_guard::serve(
            listener,
            router(shared),
            guarded,
            "ingest",
            stop,
        ));
        tracing::info!(%addr, "receiving Argos webhooks on POST /argos/webhook/{{token}}");
        Ok(IngestServer {
            addr,
            counters,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn counters(&self) -> Arc<IngestCounters> {
        self.counters.clone()
    }

    /// Waits for the server to finish after shutdown (bounded: idle
    /// keep-alive connections must not hold the daemon).
    pub async fn stopped(self) {
        let abort = self.task.abort_handle();
        if tokio::time::timeout(std::time::Duration::from_secs(2), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/argos/webhook/{token}", post(with_path_token))
        .route("/argos/webhook", post(with_header_token))
        .with_state(shared)
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    answer(status, json!({ "error": reason }))
}

async fn with_path_token(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bump(&shared.counters.requests);
    if let Some(r) = check_peer(&shared, peer) {
        return r;
    }
    if !guard::token_matches(&shared.cfg.token, token.as_bytes()) {
        // As for any unknown path, so the token cannot be probed for.
        bump(&shared.counters.unauthenticated);
        return refuse(StatusCode::NOT_FOUND, "not found");
    }
    accept(&shared, &headers, body).await
}

async fn with_header_token(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bump(&shared.counters.requests);
    if let Some(r) = check_peer(&shared, peer) {
        return r;
    }
    let ok = headers
        .get(TOKEN_HEADER)
        .is_some_and(|t| guard::token_matches(&shared.cfg.token, t.as_bytes()));
    if !ok {
        bump(&shared.counters.unauthenticated);
        return refuse(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token (URL path or X-Sentinel-Token header)",
        );
    }
    accept(&shared, &headers, body).await
}

fn check_peer(shared: &Shared, peer: SocketAddr) -> Option<Response> {
    if guard::ip_allowed(&shared.cfg.allow_ips, peer.ip()) {
        return None;
    }
    bump(&shared.counters.forbidden_ip);
    tracing::warn!(peer = %peer.ip(), "webhook refused: address not in ingest.allow_ips");
    Some(refuse(
        StatusCode::FORBIDDEN,
        "address not allowed (ingest.allow_ips)",
    ))
}

/// The checks after authentication, in the order of the module doc.
async fn accept(shared: &Shared, headers: &HeaderMap, body: Body) -> Response {
    let c = &shared.counters;
    if shared.limiter.check().is_err() {
        bump(&c.rate_limited);
        let mut r = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded (ingest.rate_limit_per_sec)",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    let max = shared.cfg.max_body.0;
    let too_large = || {
        bump(&c.too_large);
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body larger than {max} bytes (ingest.max_body)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    let bytes = match read_limited(body, max).await {
        Ok(b) => b,
        Err(ReadError::TooLarge) => return too_large(),
        Err(ReadError::Io(e)) => {
            bump(&c.bad_body);
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the body: {e}"),
            );
        }
    };
    let event = match webhook::parse(&bytes, shared.cipher.as_deref()) {
        Ok(e) => e,
        Err(e) => {
            bump(&c.bad_body);
            tracing::warn!("webhook refused (400): {e}");
            return refuse(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    if event.encrypted {
        bump(&c.encrypted);
    }
    let replayed = shared
        .replay
        .lock()
        .map(|mut m| m.check_and_remember(&bytes, Instant::now()))
        // A poisoned lock (a panic elsewhere) must not stop ingestion.
        .unwrap_or(false);
    if replayed {
        bump(&c.replayed);
        tracing::debug!(submission = %crate::util::display_safe(&event.submission_id), "webhook replayed; ignored");
        return answer(
            StatusCode::OK,
            json!({"status": "ignored", "reason": "replay: the same body was received recently"}),
        );
    }
    let hint = Hint {
        submission_id: event.submission_id,
        trigger: event.trigger,
        received: Instant::now(),
    };
    match shared.hints.try_send(hint) {
        Ok(()) => {
            bump(&c.queued);
            answer(StatusCode::OK, json!({"status": "queued"}))
        }
        Err(mpsc::error::TrySendError::Full(h)) => {
            bump(&c.queue_full);
            // Not remembered as seen: the sender's retry must be acted on.
            if let Ok(mut m) = shared.replay.lock() {
                m.forget(&bytes);
            }
            tracing::warn!(submission = %crate::util::display_safe(&h.submission_id), "webhook queue full (ingest.queue_capacity); the poller will find it");
            let mut r = refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy: too many webhooks waiting; retry later",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Err(mpsc::error::TrySendError::Closed(_)) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down; retry later",
        ),
    }
}

enum ReadError {
    TooLarge,
    Io(axum::Error),
}

/// Reads the body, stopping as soon as it exceeds `max` (a missing or false
/// Content-Length must not let a large body in).
async fn read_limited(body: Body, max: usize) -> Result<Bytes, ReadError> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(ReadError::Io)?;
        if buf.len() + chunk.len() > max {
            return Err(ReadError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

//! The one guard in front of every HTTP listener the daemon opens (metrics
//! and the alert API, the webhook endpoint, later the console).
//!
//! `axum::serve` has no header timeout and no connection cap, so a peer could
//! hold any number of connections open for ever, or send headers one byte at a
//! time. [`serve`] runs the accept loop itself with hyper's HTTP/1 server:
//!
//! - at most [`Limits::max_connections`] connections at once; one more is
//!   answered `503` and closed at once, without reading a byte of it;
//! - the request head (and, on a kept-alive connection, the wait for the next
//!   one) must arrive within [`Limits::header_timeout`], counted from its
//!   start, not reset by each byte, so a slowloris is cut;
//! - the body must arrive within [`Limits::body_timeout`] of the head;
//! - with [`Limits::max_body`], a declared length over it is refused `413`
//!   before any route runs, and a body without one is cut where it passes it;
//! - a connection lives at most [`Limits::max_connection_age`], so a peer that
//!   never reads its answers cannot keep its slot.
//!
//! Authentication stays with each listener (it differs: bearer token, token in
//! the path); each checks it from the headers before it reads a body.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Largest request head (request line and headers) read; beyond it, 431.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long connections may take to finish their request after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What one listener allows a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; beyond: 503 and closed.
    pub max_connections: usize,
    /// Time to receive a request head, from its first wait.
    pub header_timeout: Duration,
    /// Time to receive a body, from the end of its head.
    pub body_timeout: Duration,
    /// Largest body; `None` leaves the size to the routes (the webhook
    /// endpoint checks its own `ingest.max_body` after the token).
    pub max_body: Option<usize>,
    /// Longest life of a connection, kept-alive requests included.
    pub max_connection_age: Duration,
}

impl Limits {
    /// Metrics, health and the alert API (16 KiB bodies: an acknowledgement
    /// is a name and a note).
    pub const API: Limits = Limits {
        max_connections: 64,
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
        max_body: Some(16 * 1024),
        max_connection_age: Duration::from_secs(60),
    };

    /// The webhook endpoint: more connections (Argos may send bursts); its
    /// body limit is `ingest.max_body`, checked by the endpoint itself.
    pub const INGEST: Limits = Limits {
        max_connections: 256,
        max_body: None,
        ..Limits::API
    };
}

/// Binds `addr` (port 0 picks one), naming the setting in the error.
pub async fn bind(addr: SocketAddr, setting: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("{setting} {addr}: {e}")))
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes,
/// then lets open requests finish (at most two seconds). `name` labels the
/// metrics and log lines. Dropping the future closes every connection.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    name: &'static str,
    shutdown: impl Future<Output = ()> + Send,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let stop = CancellationToken::new();
    let mut conns = JoinSet::new();
    let last_warning = AtomicI64::new(0);
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors, most likely: wait, do not spin.
                        tracing::warn!(listener = name, "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let conn = connection(stream, peer, app.clone(), limits, name, stop.clone());
                        conns.spawn(async move {
                            conn.await;
                            drop(slot);
                        });
                    }
                    Err(_) => refuse_over_cap(stream, name, limits, &last_warning),
                }
            }
        }
    }
    drop(listener);
    stop.cancel();
    while conns.join_next().await.is_some() {}
}

/// One connection: hyper's HTTP/1 server with the head timeout, cut at its
/// age limit or shutdown (given a grace to finish the request in flight).
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    name: &'static str,
    stop: CancellationToken,
) {
    let service = hyper::service::service_fn(move |req| request(req, peer, app.clone(), limits));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
    let finished = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = stop.cancelled() => None,
        () = tokio::time::sleep(limits.max_connection_age) => None,
    };
    let result = match finished {
        Some(r) => r,
        None => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(SHUTDOWN_GRACE, conn).await {
                Ok(r) => r,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            metrics::counter!("kyc_sentinel_http_refused_total", "listener" => name, "reason" => "header_timeout")
                .increment(1);
        }
        tracing::debug!(listener = name, "connection ended: {e}");
    }
}

/// One request: the size and time bounds of its body, then the routes.
async fn request(
    req: Request<Incoming>,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
) -> Result<Response, Infallible> {
    let mut req = req.map(Body::new);
    req.extensions_mut().insert(ConnectInfo(peer));
    if let Some(max) = limits.max_body
        && declared_length(&req).is_some_and(|n| n > max as u64)
    {
        return Ok(too_large(max));
    }
    let req = req.map(|b| bounded_body(b, limits.body_timeout, limits.max_body));
    Ok(app.oneshot(req).await.unwrap_or_else(|e| match e {}))
}

fn declared_length(req: &Request<Body>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn too_large(max: usize) -> Response {
    let mut r = (
        StatusCode::PAYLOAD_TOO_LARGE,
        axum::Json(serde_json::json!({ "error": format!("body larger than {max} bytes") })),
    )
        .into_response();
    // The unread body stays on the socket: this connection is done.
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

/// The body, failing once `timeout` has passed or `max` bytes are exceeded
/// (as `http_body_util::LengthLimitError`, which axum answers 413).
fn bounded_body(body: Body, timeout: Duration, max: Option<usize>) -> Body {
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = body.into_data_stream();
    let timed = futures::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(item)) => Some((item, Some(stream))),
            Ok(None) => None,
            Err(_) => Some((Err(axum::Error::new(BodyTimeout(timeout))), None)),
        }
    });
    let body = Body::from_stream(timed);
    match max {
        Some(max) => Body::new(http_body_util::Limited::new(body, max)),
        None => body,
    }
}

/// The body did not arrive in time.
#[derive(Debug)]
struct BodyTimeout(Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {}s",
            self.0.as_secs()
        )
    }
}

impl std::error::Error for BodyTimeout {}

/// The whole answer to a connection over the cap.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 52\r\n\r\n\
{\"error\": \"too many connections; retry in a moment\"}";

/// Over the connection cap: a fixed 503 written without waiting (a fresh
/// socket's send buffer takes it), then closed; nothing of the request is read.
fn refuse_over_cap(stream: TcpStream, name: &'static str, limits: Limits, last: &AtomicI64) {
    let _ = stream.try_write(BUSY);
    drop(stream);
    metrics::counter!("kyc_sentinel_http_refused_total", "listener" => name, "reason" => "connections")
        .increment(1);
    // One warning a minute at most: a flood must not flood the log too.
    let now = chrono::Utc::now().timestamp();
    if now - last.load(Ordering::Relaxed) >= 60 {
        last.store(now, Ordering::Relaxed);
        tracing::warn!(
            listener = name,
            max = limits.max_connections,
            "connections refused: the listener's connection cap is reached"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_answer_declares_its_length() {
        let text = std::str::from_utf8(BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let declared = format!("content-length: {}", body.len());
        assert!(head.contains(&declared), "{head}");
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
    }
}

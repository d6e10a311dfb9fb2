//! The alert API on the daemon's address: acknowledge, resolve, list.
//!
//! `POST /api/alerts/{fingerprint}/ack` and `/resolve`, `GET /api/alerts`,
//! all with `Authorization: Bearer TOKEN` (compared in constant time). No
//! token configured, no API. Notifications may also carry a signed one-click
//! link (`/api/alerts/{fingerprint}/ack-link?by=..&exp=..&sig=..`, HMAC-SHA256
//! over fingerprint, name and expiry): GET shows a confirmation page, its
//! button POSTs, so a mail scanner that prefetches links acknowledges nothing.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::store::SqliteStore;
use crate::store::lifecycle::{Action, AlertFilter, AlertState, ChangeError, LifecycleError};

#[derive(Clone)]
pub struct ApiState {
    pub store: SqliteStore,
    pub token: Arc<secrecy::SecretString>,
    pub link_secret: Option<Arc<secrecy::SecretString>>,
}

/// Equal-time comparison: how long it takes says nothing about how much matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn signature(secret: &str, fingerprint: &str, by: &str, exp: i64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{fingerprint}\n{by}\n{exp}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The one-click acknowledge link for a notification template.
pub fn ack_link(base_url: &str, secret: &str, fingerprint: &str, by: &str, exp: i64) -> String {
    let sig = signature(secret, fingerprint, by, exp);
    let by_q: String = url_escape(by);
    format!("{base_url}/api/alerts/{fingerprint}/ack-link?by={by_q}&exp={exp}&sig={sig}")
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn authorized(state: &ApiState, headers: &HeaderMap) -> bool {
    use secrecy::ExposeSecret;
    let Some(h) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(given) = h.strip_prefix("Bearer ") else {
        return false;
    };
    constant_time_eq(given.as_bytes(), state.token.expose_secret().as_bytes())
}

/// In front of the bearer routes: the token is checked from the headers
/// before the handler (and its body extractor) runs, so an unauthenticated
/// peer gets 401 without a byte of its body read.
async fn require_token(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    if !authorized(&s, req.headers()) {
        let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        // Its unread body stays on the socket: close the connection.
        r.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return r;
    }
    next.run(req).await
}

/// A `by` that is a name (no control or markup characters), else 400 naming the field.
fn check_by(by: &str) -> Result<(), Box<Response>> {
    crate::util::check_name(by)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("by: {e}"))))
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": msg.into() })),
    )
        .into_response()
}

fn change_response(fingerprint: &str, r: Result<AlertState, ChangeError>) -> Response {
    match r {
        Ok(state) => axum::Json(serde_json::json!({"fingerprint": fingerprint, "state": state}))
            .into_response(),
        Err(ChangeError::Refused(e @ LifecycleError::NoSuchAlert(_))) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(ChangeError::Refused(e)) => error(StatusCode::CONFLICT, e.to_string()),
        Err(ChangeError::Store(e)) => {
            tracing::error!("alert API: {e}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "state store error (see the daemon's log)",
            )
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    by: String,
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    by: String,
    outcome: String,
    note: Option<String>,
}

async fn ack(
    State(s): State<ApiState>,
    Path(fp): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let b: AckBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("body: {e} (expected {{\"by\": NAME, \"note\": TEXT?}})"),
            );
        }
    };
    if let Err(r) = check_by(&b.by) {
        return *r;
    }
    change_response(
        &fp,
        s.store
            .change_alert(&fp, &b.by, Action::Ack { note: b.note })
            .await,
    )
}

async fn resolve(
    State(s): State<ApiState>,
    Path(fp): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let b: ResolveBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "body: {e} (expected {{\"by\": NAME, \"outcome\": OUTCOME, \"note\": TEXT?}})"
                ),
            );
        }
    };
    if let Err(r) = check_by(&b.by) {
        return *r;
    }
    change_response(
        &fp,
        s.store
            .change_alert(
                &fp,
                &b.by,
                Action::Resolve {
                    outcome: b.outcome,
                    note: b.note,
                },
            )
            .await,
    )
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    rule: Option<String>,
}

async fn list(State(s): State<ApiState>, Query(q): Query<ListQuery>) -> Response {
    let state = match q.state.as_deref().map(|v| AlertState::parse(v).ok_or(v)) {
        Some(Err(v)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("state `{v}`: use open, acknowledged or resolved"),
            );
        }
        Some(Ok(st)) => Some(st),
        None => None,
    };
    match s
        .store
        .list_alerts(&AlertFilter {
            state,
            rule: q.rule,
            since: None,
        })
        .await
    {
        Ok(items) => axum::Json(items).into_response(),
        Err(e) => {
            tracing::error!("alert API: {e}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "state store error (see the daemon's log)",
            )
        }
    }
}

#[derive(Deserialize)]
struct LinkQuery {
    by: String,
    exp: i64,
    sig: String,
}

fn check_link(s: &ApiState, fp: &str, q: &LinkQuery) -> Result<(), Box<Response>> {
    use secrecy::ExposeSecret;
    check_by(&q.by)?;
    let Some(secret) = &s.link_secret else {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "acknowledge links are not enabled",
        )));
    };
    let want = signature(secret.expose_secret(), fp, &q.by, q.exp);
    if !constant_time_eq(want.as_bytes(), q.sig.as_bytes()) {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "the link's signature does not match",
        )));
    }
    if chrono::Utc::now().timestamp() > q.exp {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "the link has expired; acknowledge through the API or CLI",
        )));
    }
    Ok(())
}

async fn link_page(
    State(s): State<ApiState>,
    Path(fp): Path<String>,
    Query(q): Query<LinkQuery>,
) -> Response {
    if let Err(r) = check_link(&s, &fp, &q) {
        return *r;
    }
    let by = minijinja_escape(&q.by);
    Html(format!(
        "<!doctype html><title>Acknowledge alert</title><p>Acknowledge alert <code>{fp}</code> as <b>{by}</b>?</p>\
         <form method=post><button type=submit>Acknowledge</button></form>",
        fp = minijinja_escape(&fp)
    ))
    .into_response()
}

async fn link_ack(
    State(s): State<ApiState>,
    Path(fp): Path<String>,
    Query(q): Query<LinkQuery>,
) -> Response {
    if let Err(r) = check_link(&s, &fp, &q) {
        return *r;
    }
    change_response(
        &fp,
        s.store
            .change_alert(
                &fp,
                &q.by,
                Action::Ack {
                    note: Some("one-click link".into()),
                },
            )
            .await,
    )
}

fn minijinja_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The API's routes, to merge into the daemon's HTTP server (whose guard,
/// [`crate::http_guard`], bounds bodies to 16 KiB and their time).
pub fn router(state: ApiState) -> Router {
    let bearer = Router::new()
        .route("/api/alerts", get(list))
        .route("/api/alerts/{fingerprint}/ack", post(ack))
        .route("/api/alerts/{fingerprint}/resolve", post(resolve))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    // Signed links carry their own proof (the signature), not the token.
    let links = Router::new().route(
        "/api/alerts/{fingerprint}/ack-link",
        get(link_page).post(link_ack),
    );
    bearer.merge(links).with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_and_links() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        let link = ack_link("https://s.example", "k", "fp1", "Kim Ji-woo", 100);
        assert!(
            link.starts_with(
                "https://s.example/api/alerts/fp1/ack-link?by=Kim%20Ji-woo&exp=100&sig="
            )
        );
        assert_ne!(
            signature("k", "fp1", "a", 100),
            signature("k", "fp1", "a", 101)
        );
        assert_ne!(
            signature("k", "fp1", "a", 100),
            signature("k", "fp2", "a", 100)
        );
    }
}

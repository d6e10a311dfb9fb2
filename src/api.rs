//! The alert API on the daemon's address: acknowledge, resolve, list, show.
//!
//! `POST /api/alerts/{fingerprint}/ack`, `/resolve`, `/approve` and `/reject`
//! (four-eyes, a named lead's own token), `GET /api/alerts` and
//! `GET /api/alerts/{fingerprint}`, all with `Authorization: Bearer TOKEN`
//! (compared in constant time). A fingerprint may be any unique prefix of 8
//! or more hex characters. No token configured, no API.
//!
//! Messages carry signed links (HMAC-SHA256 with `api.link_secret`, purpose,
//! fingerprint, name and expiry): `/api/alerts/{fp}?exp=..&sig=..` shows the
//! alert's page, `/api/alerts/{fp}/ack-link?by=..&exp=..&sig=..` shows the
//! alert with a button that POSTs, so a mail scanner that prefetches links
//! acknowledges nothing. A link expires at most `api.link_ttl` after signing:
//! a later expiry is refused even with a valid signature.

mod pages;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

pub use pages::CSP;

pub use crate::links::{DEFAULT_LINK_TTL, ack_link, alert_link, link_expiry};
use crate::links::{Purpose, signature};
use crate::util::constant_time_eq;

use crate::console::identity::{Identity, Role, role_to_resolve, sha256_hex};
use crate::store::lifecycle::{
    Action, AlertFilter, AlertState, ChangeError, LifecycleError, Policy,
};
use crate::store::lookup::LookupError;
use crate::store::prelude::*;
use crate::store::users::UserStore;

/// Clock difference tolerated between the signer and the checker (one
/// process today; a standby later).
const CLOCK_SKEW_SECS: i64 = 60;

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn StateStore>,
    /// Per-user API tokens (`users token NAME`).
    pub users: Arc<dyn UserStore>,
    /// The shared token, acting as [`Identity::service`]; None: user tokens only.
    pub token: Option<Arc<secrecy::SecretString>>,
    /// Four-eyes, applied to resolutions through the API too.
    pub policy: Policy,
    pub link_secret: Option<Arc<secrecy::SecretString>>,
    /// The longest a link may live (`api.link_ttl`, default [`DEFAULT_LINK_TTL`]).
    pub link_ttl: Duration,
}

/// Who the bearer token names: the shared `api.token` is `service`, a user
/// token its (enabled) user. None: no or an unknown token.
pub async fn authenticate(state: &ApiState, headers: &HeaderMap) -> Option<Identity> {
    use secrecy::ExposeSecret;
    let h = headers.get("authorization").and_then(|v| v.to_str().ok())?;
    let given = h.strip_prefix("Bearer ")?;
    if let Some(t) = &state.token
        && constant_time_eq(given.as_bytes(), t.expose_secret().as_bytes())
    {
        return Some(Identity::service());
    }
    // Looked up by hash: equal-time comparison is the index's, on a hash.
    match state.users.user_by_token(&sha256_hex(given)).await {
        Ok(Some((name, role))) => Some(Identity {
            name,
            role: Role::parse(&role).unwrap_or(Role::Viewer),
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::error!("alert API: token lookup: {e}");
            None
        }
    }
}

/// In front of the bearer routes: the token is checked from the headers
/// before the handler (and its body extractor) runs, so an unauthenticated
/// peer gets 401 without a byte of its body read. The handler finds the
/// [`Identity`] in the request's extensions.
async fn require_token(State(s): State<ApiState>, mut req: Request, next: Next) -> Response {
    let Some(who) = authenticate(&s, req.headers()).await else {
        let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        // Its unread body stays on the socket: close the connection.
        r.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return r;
    };
    req.extensions_mut().insert(who);
    next.run(req).await
}

/// The person recorded for an API change: a user token's own name; for the
/// shared token `service`, with the body's `by` kept in the note as a claim.
fn actor_and_note(
    who: &Identity,
    by: Option<&str>,
    note: Option<String>,
) -> (String, Option<String>) {
    match (who.name == crate::console::identity::SERVICE, by) {
        (true, Some(by)) if !by.is_empty() => {
            let claim = format!("by {by} (as given to the service token)");
            (
                who.name.clone(),
                Some(note.map_or(claim.clone(), |n| format!("{n}; {claim}"))),
            )
        }
        _ => (who.name.clone(), note),
    }
}

/// 403 unless `who` holds `need`.
fn require_role(who: &Identity, need: Role, what: &str) -> Result<(), Box<Response>> {
    if who.may(need) {
        return Ok(());
    }
    Err(Box::new(error(
        StatusCode::FORBIDDEN,
        format!(
            "{what} needs the {} role; {} is {}",
            need.as_str(),
            who.name,
            who.role.as_str()
        ),
    )))
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

fn store_error(e: impl std::fmt::Display) -> Response {
    tracing::error!("alert API: {e}");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "state store error (see the daemon's log)",
    )
}

/// The full fingerprint a prefix names, or the API's answer why not: 400
/// for a malformed prefix, 404 for none, 409 with the candidates when
/// ambiguous.
async fn resolve_fp(s: &ApiState, prefix: &str) -> Result<String, Box<Response>> {
    match s.store.resolve_fingerprint(prefix).await {
        Ok(Ok(fp)) => Ok(fp),
        Ok(Err(e)) => Err(Box::new(match &e {
            LookupError::BadPrefix(_) => error(StatusCode::BAD_REQUEST, e.to_string()),
            LookupError::NoSuchAlert(_) => error(StatusCode::NOT_FOUND, e.to_string()),
            LookupError::Ambiguous { candidates, .. } => (
                StatusCode::CONFLICT,
                axum::Json(serde_json::json!({ "error": e.to_string(), "candidates": candidates })),
            )
                .into_response(),
        })),
        Err(e) => Err(Box::new(store_error(e))),
    }
}

fn change_response(fingerprint: &str, r: Result<AlertState, ChangeError>) -> Response {
    match r {
        Ok(state) => axum::Json(serde_json::json!({"fingerprint": fingerprint, "state": state}))
            .into_response(),
        Err(ChangeError::Refused(e @ LifecycleError::NoSuchAlert(_))) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(ChangeError::Refused(e)) => error(StatusCode::CONFLICT, e.to_string()),
        Err(ChangeError::Store(e)) => store_error(e),
    }
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    by: Option<String>,
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    by: Option<String>,
    outcome: String,
    note: Option<String>,
}

async fn ack(
    State(s): State<ApiState>,
    axum::Extension(who): axum::Extension<Identity>,
    Path(fp): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let b: AckBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("body: {e} (expected {{\"by\": NAME?, \"note\": TEXT?}})"),
            );
        }
    };
    if let Some(Err(r)) = b.by.as_deref().map(check_by) {
        return *r;
    }
    if let Err(r) = require_role(&who, Role::Analyst, "acknowledging") {
        return *r;
    }
    let fp = match resolve_fp(&s, &fp).await {
        Ok(fp) => fp,
        Err(r) => return *r,
    };
    let (by, note) = actor_and_note(&who, b.by.as_deref(), b.note);
    change_response(
        &fp,
        s.store
            .change_alert_under(&fp, &by, Action::Ack { note }, &s.policy)
            .await,
    )
}

async fn resolve(
    State(s): State<ApiState>,
    axum::Extension(who): axum::Extension<Identity>,
    Path(fp): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let b: ResolveBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "body: {e} (expected {{\"by\": NAME?, \"outcome\": OUTCOME, \"note\": TEXT?}})"
                ),
            );
        }
    };
    if let Some(Err(r)) = b.by.as_deref().map(check_by) {
        return *r;
    }
    let fp = match resolve_fp(&s, &fp).await {
        Ok(fp) => fp,
        Err(r) => return *r,
    };
    let severity = match s.store.alert_view(&fp).await {
        Ok(Some(a)) => a.severity,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no alert with fingerprint {fp}"),
            );
        }
        Err(e) => return store_error(e),
    };
    if let Err(r) = require_role(
        &who,
        role_to_resolve(&severity),
        &format!("resolving a {severity} alert"),
    ) {
        return *r;
    }
    if let Err(r) = named_under_four_eyes(&s, &who, &severity, "resolving") {
        return *r;
    }
    let (by, note) = actor_and_note(&who, b.by.as_deref(), b.note);
    change_response(
        &fp,
        s.store
            .change_alert_under(
                &fp,
                &by,
                Action::Resolve {
                    outcome: b.outcome,
                    note,
                },
                &s.policy,
            )
            .await,
    )
}

/// Four-eyes is two named people: the shared token (`service`, no one in
/// particular) may neither propose a resolution that needs approval nor
/// approve or reject one, or one token holder could do both.
fn named_under_four_eyes(
    s: &ApiState,
    who: &Identity,
    severity: &str,
    what: &str,
) -> Result<(), Box<Response>> {
    if who.name != crate::console::identity::SERVICE || !s.policy.needs_approval(severity) {
        return Ok(());
    }
    Err(Box::new(error(
        StatusCode::FORBIDDEN,
        format!(
            "{what} a {severity} alert is four-eyes (lifecycle.four_eyes): it needs two named \
             people, and the shared api.token names no one; use your own token \
             (kyc-sentinel users token NAME) or the console"
        ),
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    note: Option<String>,
}

/// `POST /api/alerts/{fp}/approve` and `/reject`: a second lead's decision on
/// a pending resolution, under their own token (never the shared one).
async fn approve_or_reject(
    s: ApiState,
    who: Identity,
    fp: String,
    body: axum::body::Bytes,
    approve: bool,
) -> Response {
    let b: DecideBody = if body.is_empty() {
        DecideBody { note: None }
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("body: {e} (expected {{\"note\": TEXT?}} or nothing)"),
                );
            }
        }
    };
    let what = if approve { "approving" } else { "rejecting" };
    if let Err(r) = require_role(&who, Role::Lead, &format!("{what} a resolution")) {
        return *r;
    }
    let fp = match resolve_fp(&s, &fp).await {
        Ok(fp) => fp,
        Err(r) => return *r,
    };
    if who.name == crate::console::identity::SERVICE {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "{what} a four-eyes resolution needs a named lead; the shared api.token names \
                 no one: use your own token (kyc-sentinel users token NAME) or the console"
            ),
        );
    }
    let action = if approve {
        Action::Approve { note: b.note }
    } else {
        Action::Reject { note: b.note }
    };
    change_response(
        &fp,
        s.store
            .change_alert_under(&fp, &who.name, action, &s.policy)
            .await,
    )
}

async fn approve(
    State(s): State<ApiState>,
    axum::Extension(who): axum::Extension<Identity>,
    Path(fp): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    approve_or_reject(s, who, fp, body, true).await
}

async fn reject(
    State(s): State<ApiState>,
    axum::Extension(who): axum::Extension<Identity>,
    Path(fp): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    approve_or_reject(s, who, fp, body, false).await
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
                format!("state `{v}`: use {}", AlertState::choices()),
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
        Err(e) => store_error(e),
    }
}

#[derive(Deserialize)]
struct LinkQuery {
    by: String,
    exp: i64,
    sig: String,
}

#[derive(Deserialize)]
struct ViewQuery {
    exp: Option<i64>,
    sig: Option<String>,
}

/// Checks a signed link: enabled, signature, not expired, and not valid
/// for longer than `link_ttl` (an expiry far ahead is refused even when
/// signed: the secret may have signed it under an older, longer TTL).
fn check_link(
    s: &ApiState,
    purpose: Purpose,
    fp: &str,
    by: &str,
    exp: i64,
    sig: &str,
) -> Result<(), Box<Response>> {
    use secrecy::ExposeSecret;
    let refuse = |status, msg: &str| Err(Box::new(pages::error_page(status, msg)));
    let Some(secret) = &s.link_secret else {
        return refuse(
            StatusCode::NOT_FOUND,
            "Links are not enabled on this server.",
        );
    };
    let want = signature(secret.expose_secret(), purpose, fp, by, exp);
    if !constant_time_eq(want.as_bytes(), sig.as_bytes()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "This link is not valid (its signature does not match).",
        );
    }
    let now = chrono::Utc::now().timestamp();
    if now > exp {
        return refuse(
            StatusCode::FORBIDDEN,
            "This link has expired. Acknowledge the alert through the API or the CLI \
             (kyc-sentinel ack FINGERPRINT --by NAME).",
        );
    }
    let ttl = i64::try_from(s.link_ttl.as_secs()).unwrap_or(i64::MAX / 2);
    if exp > now.saturating_add(ttl).saturating_add(CLOCK_SKEW_SECS) {
        return refuse(
            StatusCode::FORBIDDEN,
            "This link claims to stay valid longer than the server allows (api.link_ttl).",
        );
    }
    Ok(())
}

/// The alert a link names, or the page saying it is gone.
async fn view_of(s: &ApiState, fp: &str) -> Result<crate::store::lookup::AlertView, Box<Response>> {
    match s.store.alert_view(fp).await {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(Box::new(pages::error_page(
            StatusCode::NOT_FOUND,
            "No such alert in this engine's store.",
        ))),
        Err(e) => {
            tracing::error!("alert API: {e}");
            Err(Box::new(pages::error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "State store error (see the daemon's log).",
            )))
        }
    }
}

/// `GET /api/alerts/{fp}`: JSON with the bearer token (any unique prefix),
/// the HTML page with a signed view link (the full fingerprint).
async fn show(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Path(fp): Path<String>,
    Query(q): Query<ViewQuery>,
) -> Response {
    if let (Some(exp), Some(sig)) = (q.exp, q.sig.as_deref()) {
        if let Err(r) = check_link(&s, Purpose::View, &fp, "", exp, sig) {
            return *r;
        }
        return match view_of(&s, &fp).await {
            Ok(a) => pages::alert_page(&a),
            Err(r) => *r,
        };
    }
    if authenticate(&s, &headers).await.is_none() {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (or open the signed link from a notification)",
        );
    }
    let fp = match resolve_fp(&s, &fp).await {
        Ok(fp) => fp,
        Err(r) => return *r,
    };
    match s.store.alert_view(&fp).await {
        Ok(Some(a)) => axum::Json(a).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no alert with fingerprint {fp}"),
        ),
        Err(e) => store_error(e),
    }
}

async fn link_page(
    State(s): State<ApiState>,
    Path(fp): Path<String>,
    Query(q): Query<LinkQuery>,
) -> Response {
    if let Err(r) = check_link(&s, Purpose::Ack, &fp, &q.by, q.exp, &q.sig) {
        return *r;
    }
    match view_of(&s, &fp).await {
        Ok(a) => pages::ack_form(&a, &q.by),
        Err(r) => *r,
    }
}

/// The `name` field of the acknowledge form (`application/x-www-form-urlencoded`);
/// empty when absent or unreadable (then the link's `by` is used).
fn form_name(body: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(body) else {
        return String::new();
    };
    text.split('&')
        .find_map(|kv| kv.strip_prefix("name="))
        .and_then(|v| percent_decode(&v.replace('+', " ")))
        .unwrap_or_default()
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = (bytes.next()? as char).to_digit(16)?;
            let lo = (bytes.next()? as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// A typed name is recorded as is when it is a name ([`crate::util::check_name`],
/// the one rule for `by` everywhere): nothing that could fake a line in a
/// terminal or a log.
fn valid_name(name: &str) -> bool {
    crate::util::check_name(name).is_ok()
}

async fn link_ack(
    State(s): State<ApiState>,
    Path(fp): Path<String>,
    Query(q): Query<LinkQuery>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = check_link(&s, Purpose::Ack, &fp, &q.by, q.exp, &q.sig) {
        return *r;
    }
    let typed = form_name(&body);
    let typed = typed.trim();
    let by = if typed.is_empty() {
        q.by.as_str()
    } else {
        typed
    };
    if !valid_name(by) {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "A name may hold letters, digits, spaces and . - _ @ ' + (at most 100 characters).",
        );
    }
    let result = s
        .store
        .change_alert_under(
            &fp,
            by,
            Action::Ack {
                note: Some("one-click link".into()),
            },
            &s.policy,
        )
        .await;
    // Read after the change: the page shows the state it led to.
    let view = match view_of(&s, &fp).await {
        Ok(a) => a,
        Err(r) => return *r,
    };
    match result {
        Ok(state) => pages::ack_done(&view, Ok((by, state.as_str()))),
        Err(ChangeError::Refused(e)) => pages::ack_done(&view, Err(e.to_string())),
        Err(ChangeError::Store(e)) => {
            tracing::error!("alert API: {e}");
            pages::error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "State store error (see the daemon's log).",
            )
        }
    }
}

/// The API's routes, to merge into the daemon's HTTP server (whose guard,
/// [`crate::http_guard`], bounds bodies to 16 KiB and their time).
pub fn router(state: ApiState) -> Router {
    let bearer = Router::new()
        .route("/api/alerts", get(list))
        .route("/api/alerts/{fingerprint}/ack", post(ack))
        .route("/api/alerts/{fingerprint}/resolve", post(resolve))
        .route("/api/alerts/{fingerprint}/approve", post(approve))
        .route("/api/alerts/{fingerprint}/reject", post(reject))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    // Signed links carry their own proof (the signature), not the token;
    // `show` answers a signed view link or checks the token itself.
    let links = Router::new()
        .route("/api/alerts/{fingerprint}", get(show))
        .route(
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
        let link = ack_link("https://s.example/", "k", "fp1", "Kim Ji-woo", 100);
        assert!(
            link.starts_with(
                "https://s.example/api/alerts/fp1/ack-link?by=Kim%20Ji-woo&exp=100&sig="
            ),
            "{link}"
        );
        let sig = |p, fp, by, exp| signature("k", p, fp, by, exp);
        assert_ne!(
            sig(Purpose::Ack, "fp1", "a", 100),
            sig(Purpose::Ack, "fp1", "a", 101)
        );
        assert_ne!(
            sig(Purpose::Ack, "fp1", "a", 100),
            sig(Purpose::Ack, "fp2", "a", 100)
        );
        // A view link's signature never acknowledges.
        assert_ne!(
            sig(Purpose::Ack, "fp1", "", 100),
            sig(Purpose::View, "fp1", "", 100)
        );
        assert_eq!(
            alert_link("https://s.example", None, "fp1", 100),
            "https://s.example/api/alerts/fp1"
        );
    }

    #[test]
    fn expiry_is_ttl_after_signing_rounded_down() {
        let now = chrono::DateTime::from_timestamp(1_000_030, 0).unwrap();
        assert_eq!(link_expiry(now, Duration::from_secs(3600)), 1_003_620);
        assert!(valid_name("Kim Ji-woo"));
        assert!(valid_name("김지우"));
        assert!(!valid_name("x\r\nX-Evil: yes"));
        assert!(!valid_name(""));
        assert_eq!(form_name(b"name=Kim+Ji-woo%21"), "Kim Ji-woo!");
        assert_eq!(form_name(b"x=1"), "");
    }
}

//! Signing in: local users (form, argon2id, session cookie) or a trusted
//! proxy's user header; sessions with idle and absolute timeouts; a CSRF
//! token on every POST; failed sign-ins rate-limited per user and address.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};

use super::forms::Form;
use super::identity::{Identity, Role, new_secret, sha256_hex, verify_password};
use super::{ConsoleState, view};
use crate::config::ConsoleAuth;

/// The session cookie's name.
pub const COOKIE: &str = "kss_session";

/// Failed sign-ins allowed per user and per address within [`FAIL_WINDOW_MINS`].
pub const MAX_FAILURES: i64 = 5;
pub const FAIL_WINDOW_MINS: i64 = 15;

/// A signed-in person and the CSRF token their forms carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub who: Identity,
    pub csrf: String,
    /// SHA-256 of the cookie value (what logout ends).
    pub id_hash: String,
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

fn parse(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The live session a cookie names, ending it when a timeout has passed.
async fn session_of(s: &ConsoleState, headers: &HeaderMap) -> Option<Session> {
    let id_hash = sha256_hex(&cookie_value(headers)?);
    let row = match s.users.session(&id_hash).await {
        Ok(r) => r?,
        Err(e) => {
            tracing::error!("console: session lookup: {e}");
            return None;
        }
    };
    let now = Utc::now();
    let idle = chrono::Duration::from_std(s.cfg.idle_timeout.0).unwrap_or(chrono::Duration::MAX);
    let absolute =
        chrono::Duration::from_std(s.cfg.absolute_timeout.0).unwrap_or(chrono::Duration::MAX);
    let (Some(created), Some(seen)) = (parse(&row.created_at), parse(&row.last_seen)) else {
        return None;
    };
    if now - seen > idle || now - created > absolute {
        let _ = s.users.end_session(&id_hash).await;
        return None;
    }
    // At most one write a minute (a quarter of the idle timeout when shorter):
    // the idle clock needs no finer grain.
    if now - seen > (idle / 4).min(chrono::Duration::seconds(60)) {
        let _ = s.users.touch_session(&id_hash, now).await;
    }
    Some(Session {
        who: Identity {
            name: row.name,
            role: Role::parse(&row.role).unwrap_or(Role::Viewer),
        },
        csrf: row.csrf,
        id_hash,
    })
}

/// A new session for `who`: the cookie to set and the session.
async fn start_session(s: &ConsoleState, who: Identity) -> Result<(String, Session), Response> {
    let id = new_secret();
    let csrf = new_secret();
    let id_hash = sha256_hex(&id);
    s.users
        .create_session(&id_hash, &who.name, who.role.as_str(), &csrf, Utc::now())
        .await
        .map_err(|e| {
            tracing::error!("console: creating a session for {}: {e}", who.name);
            view::message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "State store error (see the daemon's log).",
            )
        })?;
    let secure = if s.secure_cookie { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}");
    Ok((cookie, Session { who, csrf, id_hash }))
}

fn peer(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// The person a trusted proxy names, with the role their groups map to.
fn proxy_identity(s: &ConsoleState, req: &Request) -> Option<Identity> {
    let from = peer(req)?.ip();
    if !s.cfg.trusted_proxies.contains(&from) {
        return None;
    }
    let name = req
        .headers()
        .get(s.cfg.user_header.as_str())?
        .to_str()
        .ok()?
        .trim()
        .to_owned();
    crate::util::check_name(&name).ok()?;
    let groups = s
        .cfg
        .groups_header
        .as_deref()
        .and_then(|h| req.headers().get(h))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let role = groups
        .split(',')
        .filter_map(|g| s.cfg.group_roles.get(g.trim()))
        .filter_map(|r| Role::parse(r))
        .max()
        .or_else(|| s.cfg.default_role.as_deref().and_then(Role::parse))?;
    Some(Identity { name, role })
}

/// In front of every console page: finds the session (or, behind a trusted
/// proxy, makes one), else sends a browser to the sign-in page.
pub async fn require_session(
    State(s): State<ConsoleState>,
    mut req: Request,
    next: Next,
) -> Response {
    let mut set_cookie = None;
    let mut session = session_of(&s, req.headers()).await;
    if s.cfg.auth == ConsoleAuth::Proxy {
        let proxied = proxy_identity(&s, &req);
        match (&session, proxied) {
            (Some(sess), Some(p)) if sess.who == p => {}
            (_, Some(p)) => match start_session(&s, p).await {
                Ok((cookie, sess)) => {
                    set_cookie = Some(cookie);
                    session = Some(sess);
                }
                Err(r) => return r,
            },
            // The proxy must vouch for every request.
            (_, None) => session = None,
        }
    }
    let Some(session) = session else {
        if req.method() == axum::http::Method::GET {
            // Back to the page asked for (a message's link) after signing in.
            let next = req.uri().path_and_query().map_or("/", |p| p.as_str());
            return Redirect::to(&format!("/login?next={}", super::forms::encode(next)))
                .into_response();
        }
        return view::message(
            StatusCode::UNAUTHORIZED,
            "Your session has ended: sign in again.",
        );
    };
    req.extensions_mut().insert(session);
    let mut r = next.run(req).await;
    if let Some(c) = set_cookie
        && let Ok(v) = c.parse()
    {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// A POSTed form whose CSRF token matched the session's: every console
/// action takes one, so no action runs without the check.
pub struct Posted {
    pub session: Session,
    pub form: Form,
}

impl<S: Send + Sync> FromRequest<S> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let session = req
            .extensions()
            .get::<Session>()
            .cloned()
            .ok_or_else(|| view::message(StatusCode::UNAUTHORIZED, "Sign in first."))?;
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let form = Form::parse(&body);
        let given = form.get("csrf").unwrap_or("");
        if !crate::util::constant_time_eq(given.as_bytes(), session.csrf.as_bytes()) {
            return Err(view::message(
                StatusCode::FORBIDDEN,
                "This form is stale or did not come from this console (CSRF token mismatch): reload the page and try again.",
            ));
        }
        Ok(Posted { session, form })
    }
}

pub async fn login_page(
    State(s): State<ConsoleState>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    view::login(&s, StatusCode::OK, None, q.get("next").map(String::as_str))
}

/// Where to go after signing in: a path on this server only (never `//host`).
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

/// Checks the form's user and password; on success a new session.
pub async fn login(State(s): State<ConsoleState>, req: Request) -> Response {
    let addr = peer(&req).map(|p| p.ip().to_string()).unwrap_or_default();
    let body = match axum::body::Bytes::from_request(req, &()).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let form = Form::parse(&body);
    let name = form.get("username").unwrap_or("").trim().to_owned();
    let password = form.get("password").unwrap_or("");
    let keys = [format!("user:{name}"), format!("addr:{addr}")];
    let since = Utc::now() - chrono::Duration::minutes(FAIL_WINDOW_MINS);
    for k in &keys {
        match s.users.login_failures(k, since).await {
            Ok(n) if n >= MAX_FAILURES => {
                tracing::warn!(
                    "console: sign-in refused for {}: too many failures",
                    if k.starts_with("user:") {
                        "a user"
                    } else {
                        "an address"
                    }
                );
                return view::login(
                    &s,
                    StatusCode::TOO_MANY_REQUESTS,
                    Some(&format!(
                        "Too many failed sign-ins. Try again in {FAIL_WINDOW_MINS} minutes."
                    )),
                    form.get("next"),
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!("console: sign-in: {e}");
                return view::message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "State store error (see the daemon's log).",
                );
            }
        }
    }
    let creds = s.users.credentials(&name).await.ok().flatten();
    let ok = match &creds {
        Some(c) if !c.disabled => c
            .password_hash
            .as_deref()
            .is_some_and(|h| verify_password(password, h)),
        // Spend the same time on an unknown name: timing names no users.
        _ => {
            verify_password(password, DUMMY_HASH);
            false
        }
    };
    let Some(c) = creds.filter(|_| ok) else {
        let _ = s.users.record_login_failure(&keys, Utc::now()).await;
        return view::login(
            &s,
            StatusCode::UNAUTHORIZED,
            Some("Wrong username or password."),
            form.get("next"),
        );
    };
    let who = Identity {
        name,
        role: Role::parse(&c.role).unwrap_or(Role::Viewer),
    };
    match start_session(&s, who).await {
        Ok((cookie, _)) => {
            let mut r = Redirect::to(local_path(form.get("next"))).into_response();
            if let Ok(v) = cookie.parse() {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(r) => r,
    }
}

/// An argon2id hash of nothing anyone types, verified for unknown names.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2NTv1dWnT1yR1KC3Lb2Ey2ml3Zc+X2yVxm8qZ5wn7kE";

pub async fn logout(State(s): State<ConsoleState>, posted: Posted) -> Response {
    if let Err(e) = s.users.end_session(&posted.session.id_hash).await {
        tracing::error!(
            "console: ending the session of {}: {e}",
            posted.session.who.name
        );
    }
    let mut r = Redirect::to("/login").into_response();
    let gone = format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
    if let Ok(v) = gone.parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_is_a_real_one() {
        // Else an unknown name would answer faster than a known one.
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!verify_password("x", DUMMY_HASH));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; kss_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie_value(&h).as_deref(), Some("abc"));
        assert_eq!(local_path(Some("/alerts/ab?x=1")), "/alerts/ab?x=1");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(None), "/");
    }
}

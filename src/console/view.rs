//! Rendering: the embedded minijinja templates (HTML auto-escaped: every
//! value is escaped) and the hardening headers every console response carries.

use std::sync::OnceLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde_json::{Value, json};

use super::ConsoleState;
use super::auth::Session;

/// Scripts and styles from this server only; nothing inline, no frames.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("message.html", include_str!("templates/message.html")),
    ("inbox.html", include_str!("templates/inbox.html")),
    ("alert.html", include_str!("templates/alert.html")),
    ("case.html", include_str!("templates/case.html")),
    ("silences.html", include_str!("templates/silences.html")),
    ("rules.html", include_str!("templates/rules.html")),
    ("health.html", include_str!("templates/health.html")),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, src) in TEMPLATES {
            env.add_template(name, src)
                .unwrap_or_else(|e| panic!("console template {name}: {e}"));
        }
        env
    })
}

/// The hardening headers (also on redirects and files).
pub fn harden(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// Renders `name` with `ctx`; a template error is a 500 naming the template.
pub fn render(status: StatusCode, name: &str, ctx: Value) -> Response {
    match env()
        .get_template(name)
        .and_then(|t| t.render(minijinja::value::Serde(&ctx)))
    {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!("console: rendering {name}: {e:#}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "console page error (see the daemon's log)",
            )
                .into_response()
        }
    }
}

/// What every signed-in page knows: who, their CSRF token, what they may do.
pub fn me(s: &Session) -> Value {
    use super::identity::Role;
    json!({
        "name": s.who.name,
        "role": s.who.role.as_str(),
        "csrf": s.csrf,
        "may_act": s.who.may(Role::Analyst),
        "may_lead": s.who.may(Role::Lead),
    })
}

/// A page of `name` for a signed-in person, with `ctx` merged in.
pub fn page(s: &Session, name: &str, title: &str, mut ctx: Value) -> Response {
    ctx["me"] = me(s);
    ctx["title"] = title.into();
    render(StatusCode::OK, name, ctx)
}

/// A short message page (errors, refusals).
pub fn message(status: StatusCode, text: &str) -> Response {
    render(
        status,
        "message.html",
        json!({"title": status.canonical_reason().unwrap_or("kyc-sentinel"), "text": text}),
    )
}

/// The same, with the navigation of a signed-in person.
pub fn message_for(s: &Session, status: StatusCode, text: &str) -> Response {
    render(
        status,
        "message.html",
        json!({"title": status.canonical_reason().unwrap_or("kyc-sentinel"), "text": text, "me": me(s)}),
    )
}

pub fn login(
    s: &ConsoleState,
    status: StatusCode,
    error: Option<&str>,
    next: Option<&str>,
) -> Response {
    render(
        status,
        "login.html",
        json!({"title": "Sign in", "error": error, "next": next,
               "proxy": s.cfg.auth == crate::config::ConsoleAuth::Proxy}),
    )
}

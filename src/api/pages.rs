//! The alert API's HTML pages: an alert, the acknowledge page, its
//! confirmation, and errors met by someone who clicked a link.
//!
//! Every page carries the same hardening headers: it may not be framed
//! (clickjacking the acknowledge button), loads nothing from anywhere (no
//! scripts at all), posts only to itself, and sends no `Referer` (the
//! link's signature is in the URL).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::store::lifecycle::AlertState;
use crate::store::lookup::{AlertView, short};

/// `default-src 'none'`: no script, image, font or frame; inline style only.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

/// An HTML response with the hardening headers.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <style>body{{font-family:sans-serif;font-size:15px;max-width:720px;margin:24px auto;padding:0 12px}}\
         table{{border-collapse:collapse}}th,td{{text-align:left;padding:4px 8px;border-bottom:1px solid #ddd;vertical-align:top}}\
         .sev{{font-weight:bold}}.muted{{color:#666}}button{{font-size:15px;padding:6px 14px}}</style>\
         </head><body><h1>{t}</h1>\n{body}\n</body></html>\n",
        t = esc(title)
    );
    let mut r = (status, Html(html)).into_response();
    let h = r.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// An error page for a person who followed a link.
pub fn error_page(status: StatusCode, msg: &str) -> Response {
    page(status, "kyc-sentinel", &format!("<p>{}</p>", esc(msg)))
}

/// HTML text escaping (attribute-safe).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push_str(&c.escape_default().to_string()),
            c => out.push(c),
        }
    }
    out
}

/// The facts of an alert: rule, severity, group, times, submissions, state.
pub fn alert_table(a: &AlertView) -> String {
    let members = a
        .alert
        .get("submission_ids")
        .and_then(|v| v.as_array())
        .map(|ids| {
            ids.iter()
                .filter_map(|v| v.as_str())
                .map(esc)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| esc(&a.submission_id));
    let mut rows = vec![
        ("Rule", esc(&a.rule)),
        (
            "Severity",
            format!(
                "<span class=\"sev\">{}</span>",
                esc(&a.severity.to_uppercase())
            ),
        ),
    ];
    if let Some(g) = &a.group_key {
        rows.push(("Group", esc(&masked_group(g))));
    }
    rows.extend([
        ("Submissions", members),
        ("Event time", esc(&a.event_time)),
        ("Fired at", esc(&a.fired_at)),
        ("State", state_text(a)),
        (
            "Fingerprint",
            format!(
                "<code>{}</code> <span class=\"muted\">({})</span>",
                esc(short(&a.fingerprint)),
                esc(&a.fingerprint)
            ),
        ),
    ]);
    let rows: String = rows
        .into_iter()
        .map(|(k, v)| format!("<tr><th>{k}</th><td>{v}</td></tr>"))
        .collect();
    format!("<table>{rows}</table>")
}

/// A group key may be an email address (`group_by: email`): masked on pages
/// that anyone holding the link can open.
fn masked_group(g: &str) -> String {
    g.split('|')
        .map(|part| {
            if part.contains('@') {
                crate::templates::mask_email(part)
            } else {
                part.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

fn state_text(a: &AlertView) -> String {
    match (a.state, &a.changed_by, &a.changed_at) {
        (AlertState::Open, _, _) => "open".into(),
        (s, Some(by), Some(at)) => format!("{} by {} at {}", s.as_str(), esc(by), esc(at)),
        (s, _, _) => s.as_str().into(),
    }
}

/// The acknowledge page: the alert, and a button that POSTs (a mail scanner
/// that prefetches the link acknowledges nothing).
pub fn ack_form(a: &AlertView, signed_by: &str) -> Response {
    let form = if a.state == AlertState::Open {
        format!(
            "<form method=\"post\"><p><label>Your name (optional): \
             <input name=\"name\" maxlength=\"64\" autocomplete=\"name\"></label></p>\
             <p class=\"muted\">Without a name the acknowledgement is recorded as by <b>{}</b> (the link's receiver).</p>\
             <p><button type=\"submit\">Acknowledge</button></p></form>",
            esc(signed_by)
        )
    } else {
        "<p>Nothing to do: this alert is no longer open.</p>".into()
    };
    page(
        StatusCode::OK,
        "Acknowledge alert",
        &format!("{}\n{form}", alert_table(a)),
    )
}

/// After the POST: what happened, in words.
pub fn ack_done(a: &AlertView, outcome: Result<(&str, &str), String>) -> Response {
    match outcome {
        Ok((by, state)) => page(
            StatusCode::OK,
            "Alert acknowledged",
            &format!(
                "<p>Alert <code>{}</code> ({}, {}) is now <b>{}</b>, by <b>{}</b>.</p>\n{}",
                esc(short(&a.fingerprint)),
                esc(&a.rule),
                esc(&a.severity),
                esc(state),
                esc(by),
                alert_table(a)
            ),
        ),
        Err(msg) => page(
            StatusCode::CONFLICT,
            "Not acknowledged",
            &format!("<p>{}</p>\n{}", esc(&msg), alert_table(a)),
        ),
    }
}

/// The alert's page (the link messages carry).
pub fn alert_page(a: &AlertView) -> Response {
    page(
        StatusCode::OK,
        &format!("Alert {} ({})", short(&a.fingerprint), a.rule),
        &alert_table(a),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>\r\n"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;\\r\\n"
        );
        assert_eq!(masked_group("alice@example.com"), "a***@example.com");
        assert_eq!(masked_group("u-1"), "u-1");
    }
}

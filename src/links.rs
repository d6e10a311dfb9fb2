//! Signed links to an alert (view, one-click acknowledge): built by the
//! message templates, checked by the alert API. A leaf, so neither of those
//! depends on the other.
//!
//! HMAC-SHA256 with `api.link_secret` over purpose, fingerprint, name and
//! expiry.

use std::time::Duration;

/// How long a signed link stays valid without `api.link_ttl`: long enough
/// for a Friday-evening alert to be acknowledged on Monday morning.
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(72 * 3600);

/// What a link allows; part of what is signed, so a view link can never
/// acknowledge.
#[derive(Clone, Copy)]
pub enum Purpose {
    Ack,
    View,
}

/// The hex signature of a link; the API recomputes it to check one.
pub fn signature(secret: &str, purpose: Purpose, fingerprint: &str, by: &str, exp: i64) -> String {
    let p = match purpose {
        Purpose::Ack => "ack",
        Purpose::View => "view",
    };
    let text = format!("kyc-sentinel {p}\n{fingerprint}\n{by}\n{exp}");
    crate::util::hmac_sha256_hex(secret.as_bytes(), &[text.as_bytes()])
}

/// The expiry of a link signed at `now`: `ttl` later, rounded down to the
/// minute (a retried delivery within the minute renders the same body).
pub fn link_expiry(now: chrono::DateTime<chrono::Utc>, ttl: Duration) -> i64 {
    let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
    let exp = now.timestamp().saturating_add(ttl);
    exp - exp.rem_euclid(60)
}

/// The one-click acknowledge link of an alert, recorded as by `by` unless
/// the person types a name.
pub fn ack_link(base_url: &str, secret: &str, fingerprint: &str, by: &str, exp: i64) -> String {
    let sig = signature(secret, Purpose::Ack, fingerprint, by, exp);
    let base = base_url.trim_end_matches('/');
    format!(
        "{base}/api/alerts/{fingerprint}/ack-link?by={}&exp={exp}&sig={sig}",
        url_escape(by)
    )
}

/// The link to an alert's page: signed when there is a link secret (then
/// anyone holding it may read the page until it expires), else the plain
/// API URL, which needs the bearer token.
pub fn alert_link(base_url: &str, secret: Option<&str>, fingerprint: &str, exp: i64) -> String {
    let base = base_url.trim_end_matches('/');
    match secret {
        Some(secret) => {
            let sig = signature(secret, Purpose::View, fingerprint, "", exp);
            format!("{base}/api/alerts/{fingerprint}?exp={exp}&sig={sig}")
        }
        None => format!("{base}/api/alerts/{fingerprint}"),
    }
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

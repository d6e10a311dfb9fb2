//! Finding an alert by what people type: a fingerprint prefix.
//!
//! Messages show 12 characters of a 64-character fingerprint; the CLI and the
//! alert API accept any unique prefix of at least [`MIN_PREFIX`] hex
//! characters, and an ambiguous one is answered with the candidates.

use super::Result;
use crate::store::lifecycle::AlertState;

/// The shortest prefix accepted: 8 hex characters are 4 billion values,
/// enough that a typo rarely lands on another alert.
pub const MIN_PREFIX: usize = 8;

/// How many candidates an ambiguous prefix lists.
pub const MAX_CANDIDATES: usize = 10;

/// The length messages show.
pub const SHORT_LEN: usize = 12;

/// The form of a fingerprint people see in messages.
pub fn short(fingerprint: &str) -> &str {
    &fingerprint[..fingerprint.len().min(SHORT_LEN)]
}

/// One alert a prefix matched.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Candidate {
    pub fingerprint: String,
    pub rule: String,
    pub fired_at: String,
}

/// Why a prefix names no single alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    BadPrefix(String),
    NoSuchAlert(String),
    Ambiguous {
        prefix: String,
        candidates: Vec<Candidate>,
    },
}

impl std::error::Error for LookupError {}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::BadPrefix(p) => write!(
                f,
                "`{}` is not a fingerprint: give at least {MIN_PREFIX} hex characters (messages show {SHORT_LEN})",
                p.escape_debug()
            ),
            LookupError::NoSuchAlert(p) => write!(f, "no alert with fingerprint {p}"),
            LookupError::Ambiguous { prefix, candidates } => {
                let n = if candidates.len() > MAX_CANDIDATES {
                    format!("more than {MAX_CANDIDATES}")
                } else {
                    candidates.len().to_string()
                };
                let list: Vec<String> = candidates
                    .iter()
                    .take(MAX_CANDIDATES)
                    .map(|c| {
                        format!(
                            "{} ({}, fired {})",
                            short(&c.fingerprint),
                            c.rule,
                            c.fired_at
                        )
                    })
                    .collect();
                write!(
                    f,
                    "fingerprint prefix {prefix} matches {n} alerts: {}; give more characters",
                    list.join(", ")
                )
            }
        }
    }
}

/// What the alert page shows: the alert as stored plus its state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertView {
    pub fingerprint: String,
    pub rule: String,
    pub severity: String,
    pub submission_id: String,
    pub group_key: Option<String>,
    pub event_time: String,
    pub fired_at: String,
    pub state: AlertState,
    pub changed_by: Option<String>,
    pub changed_at: Option<String>,
    /// The alert as `eval` printed it (member submission ids, labels).
    pub alert: serde_json::Value,
}

/// At least [`MIN_PREFIX`] hex characters (so never a LIKE wildcard), at most 64.
pub fn valid_prefix(prefix: &str) -> bool {
    prefix.len() >= MIN_PREFIX
        && prefix.len() <= 64
        && prefix.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Role: finding alerts by what people type.
#[async_trait::async_trait]
pub trait LookupStore: Send + Sync {
    /// The full fingerprint of the one alert `prefix` starts (case ignored).
    async fn resolve_fingerprint(
        &self,
        prefix: &str,
    ) -> Result<std::result::Result<String, LookupError>>;

    /// One alert with its state, for the alert page and the acknowledge page.
    async fn alert_view(&self, fingerprint: &str) -> Result<Option<AlertView>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(valid_prefix("66ae7904"));
        assert!(valid_prefix("66AE790441DA"));
        assert!(!valid_prefix("66ae790"));
        assert!(!valid_prefix("66ae790g"));
        assert!(!valid_prefix("66ae7904%"));
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
    }
}

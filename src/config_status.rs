//! What the running configuration is, kept in the store's meta for those
//! outside the daemon loop: the last load or reload and its outcome (the
//! console's Health page), and the four-eyes policy in force (so the CLI's
//! `resolve --store DB` applies the policy the daemon runs with).
//!
//! A refusal is kept as locations and redacted messages only: a rule or
//! config error may quote a value (`invalid severity `12345``), and the Health
//! page is shown to every signed-in person. The full text is in the log.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::store::meta::MetaStore;

/// The meta key of the last [`ReloadRecord`] (JSON).
pub const RELOAD_META: &str = "config_reload";
/// The meta key of `lifecycle.four_eyes` in force (a JSON array of severities).
pub const FOUR_EYES_META: &str = "lifecycle_four_eyes";

/// Problems kept from one refusal (the log has them all).
pub const MAX_PROBLEMS: usize = 5;
/// Characters kept of one problem line.
const MAX_LINE: usize = 200;

/// The last time the configuration was read, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadRecord {
    /// RFC 3339, UTC.
    pub at: String,
    /// `start`, `SIGHUP` or `config, rule or template files changed`.
    pub reason: String,
    /// Applied (true) or refused whole (false: the previous set runs on).
    pub ok: bool,
    /// A refusal's problems: `file:line:col: message`, quoted values redacted.
    pub problems: Vec<String>,
    /// Problems beyond [`MAX_PROBLEMS`].
    pub more: usize,
}

impl ReloadRecord {
    pub fn applied(reason: &str, at: chrono::DateTime<chrono::Utc>) -> ReloadRecord {
        ReloadRecord {
            at: crate::store::fmt_time(at),
            reason: reason.to_owned(),
            ok: true,
            problems: Vec::new(),
            more: 0,
        }
    }

    /// A refusal: the lines of `err` that name a location (else its first
    /// line), each with quoted values redacted.
    pub fn refused(
        reason: &str,
        at: chrono::DateTime<chrono::Utc>,
        err: &anyhow::Error,
    ) -> ReloadRecord {
        let text = format!("{err:#}");
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let mut problems: Vec<String> = lines
            .iter()
            .filter_map(|l| location_split(l))
            .map(|(loc, msg)| format!("{loc}: {}", redact(msg)))
            .collect();
        if problems.is_empty() {
            problems.extend(lines.first().map(|l| redact(l)));
        }
        let more = problems.len().saturating_sub(MAX_PROBLEMS);
        problems.truncate(MAX_PROBLEMS);
        ReloadRecord {
            at: crate::store::fmt_time(at),
            reason: reason.to_owned(),
            ok: false,
            problems,
            more,
        }
    }
}

/// Writes `record` (and, when given, the four-eyes policy now in force). A
/// store error is logged, never fatal: the daemon runs on.
pub async fn record(
    store: &Arc<dyn MetaStore>,
    record: &ReloadRecord,
    four_eyes: Option<&[String]>,
) {
    let json = serde_json::to_string(record).expect("a record serializes");
    if let Err(e) = store.set_meta(RELOAD_META, &json).await {
        tracing::error!(
            "state store: recording the configuration's {} outcome: {e}",
            record.reason
        );
    }
    if let Some(sev) = four_eyes {
        let json = serde_json::to_string(sev).expect("strings serialize");
        if let Err(e) = store.set_meta(FOUR_EYES_META, &json).await {
            tracing::error!("state store: recording lifecycle.four_eyes: {e}");
        }
    }
}

/// The last record, if a daemon wrote one (an unreadable one is none).
pub async fn last(store: &Arc<dyn MetaStore>) -> crate::store::Result<Option<ReloadRecord>> {
    Ok(store
        .get_meta(RELOAD_META)
        .await?
        .and_then(|j| serde_json::from_str(&j).ok()))
}

/// The four-eyes severities the daemon last ran with (None: no daemon recorded any).
pub async fn four_eyes(store: &Arc<dyn MetaStore>) -> crate::store::Result<Option<Vec<String>>> {
    Ok(store
        .get_meta(FOUR_EYES_META)
        .await?
        .and_then(|j| serde_json::from_str(&j).ok()))
}

/// `("rules/x.yaml:3:13", "message")` when `line` holds `PATH:LINE:` or
/// `PATH:LINE:COL:` (PATH a file name: no space, a `.` or `/`); what comes
/// before PATH (a context such as `reload:`) is dropped.
fn location_split(line: &str) -> Option<(&str, &str)> {
    let bytes = line.as_bytes();
    let digits = |mut k: usize| {
        let s = k;
        while k < bytes.len() && bytes[k].is_ascii_digit() {
            k += 1;
        }
        (k > s).then_some(k)
    };
    let mut i = 0;
    while let Some(off) = line[i..].find(':') {
        let colon = i + off;
        let start = line[..colon]
            .rfind(char::is_whitespace)
            .map_or(0, |w| w + 1);
        let path = &line[start..colon];
        if !path.is_empty()
            && path.contains(['.', '/'])
            && let Some(mut j) = digits(colon + 1)
        {
            if bytes.get(j) == Some(&b':')
                && let Some(end) = digits(j + 1)
            {
                j = end;
            }
            if bytes.get(j) == Some(&b':') {
                return Some((&line[start..j], line[j + 1..].trim_start()));
            }
        }
        i = colon + 1;
    }
    None
}

/// `msg` with every quoted span (`…`, "…", '…') replaced by `…`, at most
/// [`MAX_LINE`] characters: what a value could leak is gone, the shape stays.
pub fn redact(msg: &str) -> String {
    let mut out = String::new();
    let mut chars = msg.chars().peekable();
    let mut prev: Option<char> = None;
    while let Some(c) = chars.next() {
        let opens = match c {
            '`' | '"' => true,
            // An apostrophe inside a word (rule's) opens nothing.
            '\'' => !prev.is_some_and(char::is_alphanumeric),
            _ => false,
        };
        if opens {
            let rest: String = chars.clone().collect();
            if let Some(end) = rest.find(c) {
                out.push(c);
                out.push('…');
                out.push(c);
                for _ in 0..rest[..end].chars().count() + 1 {
                    chars.next();
                }
                prev = Some(c);
                continue;
            }
        }
        out.push(c);
        prev = Some(c);
    }
    if out.chars().count() > MAX_LINE {
        out = out.chars().take(MAX_LINE).collect::<String>() + "…";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_locations_and_redact_values() {
        let e = anyhow::anyhow!(
            "the rules in /srv/rules have problems:\n/srv/rules/b.yaml:3:13: invalid severity `hunter2`; expected one of: low\n\
             /srv/rules/b.yaml:7:10: unclosed bracket '['\nrules/c.yaml:2: field \"x y\" isn't known"
        );
        let r = ReloadRecord::refused("SIGHUP", chrono::Utc::now(), &e);
        assert_eq!(
            r.problems,
            [
                "/srv/rules/b.yaml:3:13: invalid severity `…`; expected one of: low",
                "/srv/rules/b.yaml:7:10: unclosed bracket '…'",
                "rules/c.yaml:2: field \"…\" isn't known",
            ]
        );
        assert!(!r.ok && r.more == 0);
        // Without a location: the first line, redacted.
        let e = anyhow::anyhow!("cannot read `s3cret.yaml`: gone\nmore");
        let r = ReloadRecord::refused("start", chrono::Utc::now(), &e);
        assert_eq!(r.problems, ["cannot read `…`: gone"]);
        assert_eq!(location_split("no location: here"), None);
        assert_eq!(location_split("at 12:30: x"), None);
        assert_eq!(
            location_split("config: sentinel.yaml:5:3: unknown field"),
            Some(("sentinel.yaml:5:3", "unknown field"))
        );
    }
}

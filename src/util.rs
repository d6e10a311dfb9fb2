//! Small helpers shared by several modules (durations, hashing, safe text).

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// Parses a duration as rule and config files write it: `30s`, `15m`, `24h`, `7d`
/// (also `500ms`). A bare number is refused: the unit must be explicit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
        format!("invalid duration `{text}`: missing unit (use s, m, h or d, e.g. `24h`)")
    })?;
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "invalid duration `{text}`: expected a number followed by s, m, h or d"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration `{text}`: number too large"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => {
            return Err(format!(
                "invalid duration `{text}`: unknown unit `{unit}` (use s, m, h or d, e.g. `24h`)"
            ));
        }
    };
    Ok(Duration::from_secs(secs))
}

/// Lower-case hex SHA-256 of some bytes; used for content hashes and fingerprints.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Equal-time comparison: how long it takes says nothing about how much
/// matched (the length may show; hash both first where it must not).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lower-case hex HMAC-SHA256 of the concatenated `parts` under `key`: the
/// one signer (alert links, webhook signatures).
pub fn hmac_sha256_hex(key: &[u8], parts: &[&[u8]]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Text from outside (submission ids, names, notes, receivers' errors) as it
/// may be shown on a terminal or in a digest: control characters (CR, LF,
/// ESC and the rest of C0/C1, DEL) and the invisible characters that reorder
/// or hide text (bidi overrides, zero-width, line separators) are written
/// escaped (`\r`, `\n`, `\t`, `\u{1b}`), so a value cannot forge a table
/// line, a log line or a terminal command. Padding (`{:<24}`) is honoured.
pub fn display_safe(text: &str) -> Safe<'_> {
    Safe(text)
}

/// See [`display_safe`].
#[derive(Debug, Clone, Copy)]
pub struct Safe<'a>(pub &'a str);

impl Safe<'_> {
    pub fn escaped(&self) -> Cow<'_, str> {
        if !self.0.chars().any(needs_escape) {
            return Cow::Borrowed(self.0);
        }
        let mut out = String::with_capacity(self.0.len() + 8);
        for c in self.0.chars() {
            match c {
                '\r' => out.push_str("\\r"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => out.push(c),
            }
        }
        Cow::Owned(out)
    }
}

impl fmt::Display for Safe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.escaped())
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061c}'                    // Arabic letter mark
            | '\u{200b}'..='\u{200f}'     // zero-width, LRM, RLM
            | '\u{2028}'..='\u{202e}'     // line/paragraph separators, bidi embeddings
            | '\u{2060}'..='\u{2069}'     // word joiner, bidi isolates
            | '\u{feff}')
}

/// Longest name accepted for `by` (who acknowledged or resolved).
pub const MAX_NAME_CHARS: usize = 100;

/// Whether `name` is a person's or a system's name: 1 to 100 letters, digits,
/// spaces and `. - _ ' @ +` (a name, an email address, `oncall-bot`), not
/// blank at either end. Anything else could forge output where it is shown.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_char =
        |c: char| c.is_alphanumeric() || matches!(c, ' ' | '.' | '-' | '_' | '\'' | '@' | '+');
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS || name.trim() != name || !name.chars().all(ok_char) {
        return Err(format!(
            "must be a name: 1 to {MAX_NAME_CHARS} letters, digits, spaces and . - _ ' @ +, \
             without spaces at either end"
        ));
    }
    Ok(())
}

/// A `reqwest` client builder with the process's TLS provider installed.
///
/// reqwest is built without a crypto provider (the default, aws-lc, is a C
/// build that doubled a fresh compile); ring is installed here, once, before
/// any client is built. Every HTTP client in the project starts here.
pub fn http_client() -> reqwest::ClientBuilder {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // Err means another provider is already installed: that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    #[allow(clippy::disallowed_methods)] // the one place a client starts
    reqwest::Client::builder()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_safe_escapes_control_and_invisible_characters() {
        assert!(matches!(
            display_safe("sub-1 김민수").escaped(),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            display_safe("sid\r\nX-Evil: yes").to_string(),
            "sid\\r\\nX-Evil: yes"
        );
        assert_eq!(
            display_safe("\u{1b}[2J\u{1b}]0;t\u{7}\tx\u{7f}\u{9b}").to_string(),
            "\\u{1b}[2J\\u{1b}]0;t\\u{7}\\tx\\u{7f}\\u{9b}"
        );
        assert_eq!(
            display_safe("a\u{202e}b\u{2028}c\u{200b}").to_string(),
            "a\\u{202e}b\\u{2028}c\\u{200b}"
        );
        assert_eq!(format!("[{:<6}]", display_safe("a\nb")), "[a\\nb  ]");
    }

    #[test]
    fn names() {
        for ok in [
            "Kim Ji-woo",
            "kim.jiwoo@argos.example",
            "o'brien",
            "김민수",
            "bot_1+x",
        ] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(MAX_NAME_CHARS + 1);
        for bad in [
            "",
            " x",
            "x ",
            "a\r\nb",
            "a\u{1b}[31m",
            "<b>",
            "a;b",
            "a\u{202e}",
            &long,
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(
            parse_duration("10").unwrap_err(),
            "invalid duration `10`: missing unit (use s, m, h or d, e.g. `24h`)"
        );
        assert_eq!(
            parse_duration("3w").unwrap_err(),
            "invalid duration `3w`: unknown unit `w` (use s, m, h or d, e.g. `24h`)"
        );
        assert!(parse_duration("h").is_err());
    }
}

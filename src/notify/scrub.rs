//! What a receiver's error may say once it is stored (outbox row, dead-letter
//! audit row, log line, digest): the status and a short excerpt with the
//! receiver's secrets taken out.
//!
//! A receiver that answers an error may echo the request: its URL (Slack's and
//! Teams' carry their token in the path), its headers (`Authorization`), or a
//! body parameter (PagerDuty's routing key). Each configured secret, and each
//! long enough piece of one (a path segment, a query value, the token after
//! `Bearer `), is replaced by `[redacted]` before the text goes anywhere.

/// The longest excerpt kept of a receiver's answer, in characters.
pub const MAX_EXCERPT: usize = 200;

/// Pieces of a secret shorter than this are not redacted on their own
/// (`/`, `v1`, `api` would redact every answer); the whole value still is.
const MIN_PIECE: usize = 6;

const REDACTED: &str = "[redacted]";

/// The secrets of one receiver, longest first.
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    needles: Vec<String>,
}

impl Scrubber {
    /// `secrets` are whole values (URL, header values, shared secret,
    /// params); each is also split into the pieces an echo may show alone.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles = Vec::new();
        for s in secrets {
            let s = s.trim();
            if s.len() >= 3 {
                needles.push(s.to_owned());
            }
            needles.extend(pieces(s));
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        Self { needles }
    }

    /// `text` without the secrets, control characters as spaces, at most
    /// [`MAX_EXCERPT`] characters (an ellipsis says it was cut).
    pub fn excerpt(&self, text: &str) -> String {
        let clean = self.redact(text);
        let flat: String = clean
            .split(|c: char| c.is_control() || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if flat.chars().count() <= MAX_EXCERPT {
            return flat;
        }
        let mut cut: String = flat.chars().take(MAX_EXCERPT - 1).collect();
        cut.push('…');
        cut
    }

    /// `text` with every secret (and piece of one) replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), REDACTED);
            }
            // Percent-encoded echoes of a URL (`%2F`) are caught by its pieces.
        }
        out
    }
}

/// The parts of a secret an echo may show on their own: URL path segments,
/// query values, user info and host-less tail; words of a header value.
fn pieces(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |p: &str| {
        if p.len() >= MIN_PIECE {
            out.push(p.to_owned());
        }
    };
    if let Ok(url) = reqwest::Url::parse(s)
        && url.has_host()
    {
        let tail = &s[s.find(url.path()).unwrap_or(s.len())..];
        push(tail);
        push(url.path());
        for seg in url.path().split('/') {
            push(seg);
        }
        for (k, v) in url.query_pairs() {
            push(&k);
            push(&v);
        }
        push(url.username());
        if let Some(p) = url.password() {
            push(p);
        }
    } else {
        for w in s.split_whitespace() {
            push(w);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_pieces_headers_and_length() {
        let s = Scrubber::new([
            "https://hooks.example.com/services/T0001/B0002/XyZsecretToken?sig=abcdef123",
            "Bearer tok-7f3e9a1b",
            "compliance",
        ]);
        let echo = "404 for POST /services/T0001/B0002/XyZsecretToken?sig=abcdef123 \
                    auth=Bearer tok-7f3e9a1b team=compliance \"path\":\"\\/services\\/T0001\\/XyZsecretToken\"";
        let out = s.excerpt(echo);
        for secret in ["XyZsecretToken", "tok-7f3e9a1b", "compliance", "abcdef123"] {
            assert!(!out.contains(secret), "{secret} left in {out}");
        }
        assert!(out.starts_with("404 for POST [redacted]"), "{out}");
        let long = s.excerpt(&"x".repeat(1000));
        assert_eq!(long.chars().count(), MAX_EXCERPT);
        assert_eq!(
            s.excerpt("a\r\nX-Evil: yes\u{1b}[31m"),
            "a X-Evil: yes [31m"
        );
    }
}

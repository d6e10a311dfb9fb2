//! Reading a list answer item by item.
//!
//! Why not one `serde_json::from_slice` over the page: a single unreadable
//! item (a number out of range, invalid UTF-8, nesting deeper than serde's
//! limit) would fail the whole page, on every poll, and the good items beside
//! it would never be judged. So the envelope (`{"Items": [...], "nextpageKey":
//! ...}`) is scanned here for byte spans without validating the items; each
//! item is then checked and parsed on its own, and a bad one is set aside as an
//! [`Unreadable`] with its position, the kind of problem and, when it can be
//! read, its `submission_id` — never its content.

use serde_json::Value;
use serde_json::value::RawValue;

/// serde_json refuses a value nested this deep; the scan uses the same limit
/// so both readings of an item agree.
pub const MAX_DEPTH: usize = 128;

/// A submission id longer than this is not taken from a bad item (it is then
/// not an id, and must not carry content into the audit log).
const MAX_ID_LEN: usize = 128;

/// An item of a page that could not be read. Carries no content of the item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// Position of the item in the page's `Items` (0-based).
    pub index: usize,
    /// The item's `submission_id`, when it could be read as a plain id.
    pub submission_id: Option<String>,
    /// What was wrong and where (a byte offset in the item), never what it said.
    pub problem: String,
}

/// Where the envelope's parts are in the body.
#[derive(Debug, Default)]
pub struct Envelope<'a> {
    /// `Some` when the answer has an `Items` array.
    pub items: Option<Vec<ItemSpan<'a>>>,
    /// `Items` is present but is not an array.
    pub items_not_array: bool,
    pub next: Option<&'a [u8]>,
    pub is_encrypted: Option<&'a [u8]>,
    pub data: Option<&'a [u8]>,
}

/// One item's bytes, with what the scan learnt about it on the way.
#[derive(Debug)]
pub struct ItemSpan<'a> {
    pub bytes: &'a [u8],
    /// Deepest nesting inside the item (the item's own braces count as 1).
    pub depth: usize,
    /// Offset (in the item) of a number that is out of the range of f64.
    pub bad_number: Option<usize>,
    /// The raw text of the item's top-level `submission_id` string, if any.
    pub submission_id: Option<&'a [u8]>,
}

/// The body is not even structurally JSON (truncated, a stray byte).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    /// Byte offset in the body where the scan stopped.
    pub pos: usize,
    pub what: &'static str,
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.pos)
    }
}

/// Scans a list answer's envelope. Items are delimited, not validated.
pub fn scan(body: &[u8]) -> Result<Envelope<'_>, ScanError> {
    let mut s = Scanner { b: body, i: 0 };
    let mut env = Envelope::default();
    s.ws();
    s.expect(b'{', "expected an object")?;
    s.ws();
    if s.peek() == Some(b'}') {
        s.i += 1;
    } else {
        loop {
            s.ws();
            let key = s.string()?;
            s.ws();
            s.expect(b':', "expected `:`")?;
            s.ws();
            match key {
                b"Items" if s.peek() == Some(b'[') => env.items = Some(s.items()?),
                b"Items" => {
                    env.items_not_array = true;
                    s.skip_value()?;
                }
                b"nextpageKey" => env.next = Some(s.skip_value()?.bytes),
                b"isEncrypted" => env.is_encrypted = Some(s.skip_value()?.bytes),
                b"data" => env.data = Some(s.skip_value()?.bytes),
                _ => {
                    s.skip_value()?;
                }
            }
            s.ws();
            match s.next() {
                Some(b',') => continue,
                Some(b'}') => break,
                Some(_) => return Err(s.err_before("expected `,` or `}`")),
                None => return Err(s.err("the body ends inside the object")),
            }
        }
    }
    s.ws();
    if s.i != body.len() {
        return Err(s.err("unexpected bytes after the object"));
    }
    Ok(env)
}

/// Checks an item the way serde_json would read it, without building it.
pub fn check_item(index: usize, span: &ItemSpan<'_>) -> Result<(), Unreadable> {
    let bad = |problem: String| Unreadable {
        index,
        submission_id: readable_id(span.submission_id),
        problem,
    };
    if let Err(e) = std::str::from_utf8(span.bytes) {
        return Err(bad(format!(
            "invalid UTF-8 at byte {} of the item",
            e.valid_up_to()
        )));
    }
    if span.depth >= MAX_DEPTH {
        return Err(bad(format!(
            "nested {} levels deep (the limit is {})",
            span.depth,
            MAX_DEPTH - 1
        )));
    }
    if let Some(pos) = span.bad_number {
        return Err(bad(format!(
            "a number out of range at byte {pos} of the item"
        )));
    }
    Ok(())
}

/// An item as a parsed value, or set aside.
pub fn parse_item(index: usize, span: &ItemSpan<'_>) -> Result<Value, Unreadable> {
    check_item(index, span)?;
    serde_json::from_slice(span.bytes).map_err(|e| Unreadable {
        index,
        submission_id: readable_id(span.submission_id),
        problem: format!("{} in the item", json_problem(&e)),
    })
}

/// An item kept as the text Argos sent, or set aside.
pub fn raw_item(index: usize, span: &ItemSpan<'_>) -> Result<Box<RawValue>, Unreadable> {
    check_item(index, span)?;
    serde_json::from_slice::<Box<RawValue>>(span.bytes).map_err(|e| Unreadable {
        index,
        submission_id: readable_id(span.submission_id),
        problem: format!("{} in the item", json_problem(&e)),
    })
}

/// What a serde_json error says about the body, without quoting it: serde's
/// syntax messages are fixed texts, but a type error quotes the value it met
/// (`invalid type: string "..."`), so only its category is kept.
pub fn json_problem(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax | Category::Eof => {
            let text = e.to_string();
            match text.rfind(" at line ") {
                Some(cut) => text[..cut].to_owned(),
                None => text,
            }
        }
        Category::Data => "a value of an unexpected type".to_owned(),
        Category::Io => "a read error".to_owned(),
    };
    // A value converted after parsing has no position (line 0).
    if e.line() == 0 {
        return what;
    }
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// The id of a bad item, if it is a short plain string (no escapes, no
/// control characters): enough to find the submission, never free text.
fn readable_id(raw: Option<&[u8]>) -> Option<String> {
    let raw = raw?;
    if raw.is_empty() || raw.len() > MAX_ID_LEN {
        return None;
    }
    let s = std::str::from_utf8(raw).ok()?;
    s.chars()
        .all(|c| c.is_alphanumeric() || "-_.:".contains(c))
        .then(|| s.to_owned())
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    fn err(&self, what: &'static str) -> ScanError {
        ScanError { pos: self.i, what }
    }

    fn err_before(&self, what: &'static str) -> ScanError {
        ScanError {
            pos: self.i.saturating_sub(1),
            what,
        }
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Result<(), ScanError> {
        match self.next() {
            Some(x) if x == c => Ok(()),
            Some(_) => Err(self.err_before(what)),
            None => Err(self.err("the body ends too early")),
        }
    }

    /// A string's raw contents (escapes left as they are); at its opening quote.
    fn string(&mut self) -> Result<&'a [u8], ScanError> {
        self.expect(b'"', "expected a string")?;
        let start = self.i;
        loop {
            match self.next() {
                Some(b'"') => return Ok(&self.b[start..self.i - 1]),
                Some(b'\\') => {
                    if self.next().is_none() {
                        break;
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
        Err(self.err("the body ends inside a string"))
    }

    /// `[item, ...]`, each item's span; at the `[`.
    fn items(&mut self) -> Result<Vec<ItemSpan<'a>>, ScanError> {
        self.i += 1;
        let mut out = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(out);
        }
        loop {
            self.ws();
            out.push(self.skip_value()?);
            self.ws();
            match self.next() {
                Some(b',') => continue,
                Some(b']') => return Ok(out),
                Some(_) => return Err(self.err_before("expected `,` or `]` in `Items`")),
                None => return Err(self.err("the body ends inside `Items`")),
            }
        }
    }

    /// Skips one value without recursion (an item may nest arbitrarily deep),
    /// noting its depth, an out-of-range number and a top-level
    /// `submission_id`. Brackets are counted, not matched: the item's own
    /// parse finds a mismatch.
    fn skip_value(&mut self) -> Result<ItemSpan<'a>, ScanError> {
        let start = self.i;
        let mut depth = 0usize;
        let mut max_depth = 0usize;
        let mut bad_number = None;
        let mut submission_id = None;
        // At depth 1 in an object: the next string is a key.
        let mut key_next = false;
        let mut sid_key = false;
        let mut after_sid_colon = false;
        loop {
            self.ws();
            let Some(c) = self.peek() else {
                return Err(self.err("the body ends inside a value"));
            };
            match c {
                b'{' | b'[' => {
                    self.i += 1;
                    depth += 1;
                    max_depth = max_depth.max(depth);
                    key_next = depth == 1 && c == b'{';
                    after_sid_colon = false;
                }
                b'}' | b']' => {
                    if depth == 0 {
                        return Err(self.err("expected a value"));
                    }
                    self.i += 1;
                    depth -= 1;
                }
                b'"' => {
                    let s = self.string()?;
                    if depth == 1 && key_next {
                        sid_key = s == b"submission_id";
                        key_next = false;
                    } else if after_sid_colon && submission_id.is_none() {
                        submission_id = Some(s);
                    }
                    after_sid_colon = false;
                }
                b':' if depth > 0 => {
                    self.i += 1;
                    after_sid_colon = depth == 1 && sid_key;
                    sid_key = false;
                }
                b',' if depth > 0 => {
                    self.i += 1;
                    key_next = depth == 1 && self.b[start] == b'{';
                    after_sid_colon = false;
                }
                _ => {
                    let tok_start = self.i;
                    while let Some(c) = self.peek() {
                        if matches!(
                            c,
                            b',' | b']' | b'}' | b':' | b' ' | b'\t' | b'\r' | b'\n' | b'"'
                        ) {
                            break;
                        }
                        self.i += 1;
                    }
                    if self.i == tok_start {
                        return Err(self.err("unexpected byte"));
                    }
                    if bad_number.is_none() && number_overflows(&self.b[tok_start..self.i]) {
                        bad_number = Some(tok_start - start);
                    }
                    after_sid_colon = false;
                }
            }
            if depth == 0 {
                return Ok(ItemSpan {
                    bytes: &self.b[start..self.i],
                    depth: max_depth,
                    bad_number,
                    submission_id,
                });
            }
        }
    }
}

/// True for a number token that serde_json would refuse as out of range
/// (`1e400`). Only long or exponent tokens can be; the rest skip the parse.
fn number_overflows(tok: &[u8]) -> bool {
    let numeric = tok
        .first()
        .is_some_and(|c| c.is_ascii_digit() || *c == b'-');
    if !numeric || (tok.len() < 300 && !tok.iter().any(|c| matches!(c, b'e' | b'E'))) {
        return false;
    }
    std::str::from_utf8(tok)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .is_some_and(|f| !f.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(body: &[u8]) -> Vec<Result<Value, Unreadable>> {
        let env = scan(body).unwrap();
        env.items
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, s)| parse_item(i, s))
            .collect()
    }

    #[test]
    fn good_and_bad_items_are_told_apart() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let mut body = br#"{"Items": [{"submission_id": "ok-1", "n": 1.5e3},
            {"submission_id": "big", "x": 1e400},
            {"submission_id": "utf", "name": "#
            .to_vec();
        body.extend_from_slice(b"\"a\xff\xfeb\"},");
        body.extend_from_slice(format!(r#"{{"submission_id": "deep", "d": {deep}}},"#).as_bytes());
        body.extend_from_slice(
            br#"{"nested": {"submission_id": "not-top"}, "v": 1e999},
            {"submission_id": "ok-2", "s": "a \"quoted\" ] } string"}],
            "nextpageKey": {"id": "ok-2", "created_at": "2025-01-01-00-00-00-000"}}"#,
        );
        let got = items(&body);
        assert_eq!(got.len(), 6);
        assert_eq!(got[0].as_ref().unwrap()["submission_id"], "ok-1");
        assert_eq!(got[5].as_ref().unwrap()["s"], "a \"quoted\" ] } string");
        let bad: Vec<(Option<String>, String)> = got
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|u| (u.submission_id.clone(), u.problem.clone()))
            .collect();
        assert_eq!(
            bad,
            [
                (
                    Some("big".into()),
                    "a number out of range at byte 30 of the item".into()
                ),
                (
                    Some("utf".into()),
                    "invalid UTF-8 at byte 35 of the item".into()
                ),
                (
                    Some("deep".into()),
                    "nested 201 levels deep (the limit is 127)".into()
                ),
                (None, "a number out of range at byte 46 of the item".into()),
            ]
        );
    }

    #[test]
    fn truncated_and_malformed_bodies_are_scan_errors() {
        let full = br#"{"Items": [{"a": "b"}], "nextpageKey": null}"#;
        for cut in 1..full.len() - 1 {
            assert!(scan(&full[..cut]).is_err(), "cut at {cut}");
        }
        assert!(scan(full).is_ok());
        assert_eq!(
            scan(b"{\"Items\": [1 2]}").unwrap_err().to_string(),
            "expected `,` or `]` in `Items` at byte 13"
        );
        assert_eq!(
            scan(b"{} x").unwrap_err().to_string(),
            "unexpected bytes after the object at byte 3"
        );
        let env = scan(br#"{"Items": "x", "data": "abc", "isEncrypted": true}"#).unwrap();
        assert!(env.items_not_array && env.items.is_none());
        assert_eq!(env.data, Some(&b"\"abc\""[..]));
        assert_eq!(env.is_encrypted, Some(&b"true"[..]));
    }

    #[test]
    fn json_problem_never_quotes_the_value() {
        let e = serde_json::from_str::<Vec<u32>>(r#"["900101-1234567"]"#).unwrap_err();
        let p = json_problem(&e);
        assert!(!p.contains("900101"), "{p}");
        assert_eq!(p, "a value of an unexpected type at line 1 column 17");
        let e = serde_json::from_str::<Value>(r#"{"a": "#).unwrap_err();
        assert_eq!(
            json_problem(&e),
            "EOF while parsing a value at line 1 column 6"
        );
    }

    #[test]
    fn ids_with_odd_characters_are_not_taken() {
        assert_eq!(
            readable_id(Some(b"abc-123_x.y")),
            Some("abc-123_x.y".into())
        );
        assert_eq!(readable_id(Some(b"a b")), None);
        assert_eq!(readable_id(Some(b"a\\nb")), None);
        assert_eq!(readable_id(Some(&[b'a'; 200])), None);
    }
}

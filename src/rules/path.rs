//! Field paths (`kyc.attempts[*].livenessScore`): parsed once, walked many times.
//!
//! A path yields a list of values, Elasticsearch style: arrays met along the
//! way (and at the end) are flattened, missing keys and `null` yield nothing.
//! Walking calls a visitor for each value instead of building a list, so the
//! hot path allocates nothing and can stop at the first decisive value.

use std::fmt;
use std::ops::ControlFlow;

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    /// `[N]`: one element of an array.
    Index(usize),
    /// `[*]`: every element of an array.
    All,
}

/// A compiled path. `Display` gives back the text it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: String,
    segments: Vec<Segment>,
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FieldPath {
    /// Parses `a.b[*].c[0]`. Keys are any characters but `.`, `[` and `]`.
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        let mut segments = Vec::new();
        if text.trim().is_empty() {
            return Err("empty field path".into());
        }
        for part in text.split('.') {
            let (key, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if key.is_empty() && (segments.is_empty() || rest.is_empty()) {
                return Err(format!("invalid field path `{text}`: empty key"));
            }
            if key.contains(']') || key.chars().any(char::is_whitespace) {
                return Err(format!("invalid field path `{text}`: bad key `{key}`"));
            }
            if !key.is_empty() {
                segments.push(Segment::Key(key.to_string()));
            }
            while !rest.is_empty() {
                let close = rest
                    .find(']')
                    .ok_or_else(|| format!("invalid field path `{text}`: missing `]`"))?;
                let inside = &rest[1..close];
                if inside == "*" {
                    segments.push(Segment::All);
                } else {
                    let n = inside.parse::<usize>().map_err(|_| {
                        format!(
                            "invalid field path `{text}`: `[{inside}]` is not `[*]` or an index"
                        )
                    })?;
                    segments.push(Segment::Index(n));
                }
                rest = &rest[close + 1..];
                if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(format!(
                        "invalid field path `{text}`: unexpected `{rest}` after `]`"
                    ));
                }
            }
        }
        Ok(FieldPath {
            text: text.to_string(),
            segments,
        })
    }

    /// The parsed segments (what [`super::project`] keeps of a submission).
    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The first key, used to send `derived.*` paths to the derived fields.
    pub fn first_key(&self) -> Option<&str> {
        match self.segments.first() {
            Some(Segment::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// Visits every value the path yields from `root`; the visitor may stop
    /// the walk by returning `Break`.
    pub fn walk<'v, B>(
        &self,
        root: &'v Value,
        visit: &mut impl FnMut(&'v Value) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        walk(root, &self.segments, visit)
    }

    /// Same as [`walk`](Self::walk) but skips the first segment (when it has
    /// already been resolved, as for `derived`).
    pub fn walk_from_second<'v, B>(
        &self,
        root: &'v Value,
        visit: &mut impl FnMut(&'v Value) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        walk(root, &self.segments[1..], visit)
    }

    /// Collects the values (for explanations and group keys, not the hot path).
    pub fn values<'v>(&self, root: &'v Value) -> Vec<&'v Value> {
        let mut out = Vec::new();
        let _ = self.walk(root, &mut |v| {
            out.push(v);
            ControlFlow::<()>::Continue(())
        });
        out
    }
}

fn walk<'v, B>(
    value: &'v Value,
    segments: &[Segment],
    visit: &mut impl FnMut(&'v Value) -> ControlFlow<B>,
) -> ControlFlow<B> {
    let Some((first, rest)) = segments.split_first() else {
        return emit(value, visit);
    };
    match (first, value) {
        (_, Value::Null) => ControlFlow::Continue(()),
        (Segment::Key(k), Value::Object(map)) => match lookup(map, k) {
            Some(v) => walk(v, rest, visit),
            None => ControlFlow::Continue(()),
        },
        // An array met on the way to a key: the key applies to every element.
        (Segment::Key(_), Value::Array(items)) => {
            for item in items {
                walk(item, segments, visit)?;
            }
            ControlFlow::Continue(())
        }
        (Segment::All, Value::Array(items)) => {
            for item in items {
                walk(item, rest, visit)?;
            }
            ControlFlow::Continue(())
        }
        (Segment::Index(n), Value::Array(items)) => match items.get(*n) {
            Some(v) => walk(v, rest, visit),
            None => ControlFlow::Continue(()),
        },
        _ => ControlFlow::Continue(()),
    }
}

/// Objects up to this many keys are scanned rather than hashed.
const SCAN_MAX: usize = 32;

/// `map.get(key)`, without hashing for small objects.
///
/// A submission's objects hold a dozen keys or so. Hashing the key (SipHash,
/// with `preserve_order`) and then following the index table to the entry and
/// the entry to its key is a chain of dependent loads, each a likely cache miss
/// when submissions stream past. Scanning the entries compares lengths first,
/// which sit in the entries themselves, so only keys of the right length are
/// read, and the loads do not wait on one another. Keys are unique, so the
/// first equal key is the one `get` finds.
#[inline]
fn lookup<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    if map.len() > SCAN_MAX {
        return map.get(key);
    }
    let key = key.as_bytes();
    map.iter()
        .find(|(k, _)| k.len() == key.len() && k.as_bytes() == key)
        .map(|(_, v)| v)
}

/// The end of a path: arrays flatten (nested ones too), null yields nothing.
fn emit<'v, B>(
    value: &'v Value,
    visit: &mut impl FnMut(&'v Value) -> ControlFlow<B>,
) -> ControlFlow<B> {
    match value {
        Value::Null => ControlFlow::Continue(()),
        Value::Array(items) => {
            for item in items {
                emit(item, visit)?;
            }
            ControlFlow::Continue(())
        }
        other => visit(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vals(path: &str, v: &Value) -> Vec<Value> {
        FieldPath::parse(path)
            .unwrap()
            .values(v)
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn walks_and_flattens() {
        let s = json!({
            "kyc": {
                "commentCode": ["too_many_retry", "timeout"],
                "attempts": [
                    {"retryCode": ["liveness_error"], "livenessScore": 40},
                    {"retryCode": ["face_compare_underscore", "liveness_error"]},
                    {"livenessScore": null}
                ]
            },
            "aml": null
        });
        assert_eq!(
            vals("kyc.commentCode", &s),
            vec![json!("too_many_retry"), json!("timeout")]
        );
        assert_eq!(
            vals("kyc.attempts[*].retryCode", &s),
            vec![
                json!("liveness_error"),
                json!("face_compare_underscore"),
                json!("liveness_error")
            ]
        );
        // `[*]` is optional where an array is met on the way.
        assert_eq!(vals("kyc.attempts.livenessScore", &s), vec![json!(40)]);
        assert_eq!(
            vals("kyc.attempts[1].retryCode[0]", &s),
            vec![json!("face_compare_underscore")]
        );
        assert_eq!(vals("kyc.attempts[7].retryCode", &s), Vec::<Value>::new());
        assert_eq!(vals("aml.risk_level_summary", &s), Vec::<Value>::new());
        assert_eq!(vals("missing.deep.path", &s), Vec::<Value>::new());
        assert_eq!(vals("kyc.commentCode.x", &s), Vec::<Value>::new());
    }

    #[test]
    fn looks_keys_up_in_small_and_large_objects() {
        // Below and above SCAN_MAX, keys of equal length, and a missing key.
        for n in [3, SCAN_MAX, SCAN_MAX + 1, 100] {
            let mut m = serde_json::Map::new();
            for i in 0..n {
                m.insert(format!("k{i:03}"), json!(i));
            }
            m.insert("key".into(), json!("here"));
            let v = Value::Object(m);
            assert_eq!(vals("key", &v), vec![json!("here")], "{n} keys");
            assert_eq!(vals(&format!("k{:03}", n - 1), &v), vec![json!(n - 1)]);
            assert_eq!(vals("k999", &v), Vec::<Value>::new());
            assert_eq!(vals("ke", &v), Vec::<Value>::new());
        }
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            FieldPath::parse("a[x]").unwrap_err(),
            "invalid field path `a[x]`: `[x]` is not `[*]` or an index"
        );
        assert_eq!(
            FieldPath::parse("a..b").unwrap_err(),
            "invalid field path `a..b`: empty key"
        );
        assert_eq!(
            FieldPath::parse("a[1").unwrap_err(),
            "invalid field path `a[1`: missing `]`"
        );
        assert!(FieldPath::parse("").is_err());
        assert_eq!(FieldPath::parse("a[*].b").unwrap().to_string(), "a[*].b");
    }
}

//! Parsing a submission down to the fields a rule set reads.
//!
//! A backtest parses every stored version's raw JSON, and most of each
//! document is never looked at (documents, OCR output, attempt details). A
//! [`Projection`] is built from the rule set itself (condition paths, window
//! and throttle keys, the paths its scripts read, and the fields the engine
//! reads for every submission), and [`Projection::parse`] builds a `Value`
//! holding those fields only, skipping the rest of the text unparsed. The
//! engine then evaluates that `Value` as it would the whole document: every
//! path it walks leads to the same values, so the outcome is the same by
//! construction. Whatever cannot be told precisely is kept whole (a script
//! that uses `s` other than by field chains gives no projection at all).

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::path::{FieldPath, Segment};
use super::rule::Rule;

/// The fields the engine itself reads from every submission (identity, event
/// time, the applicant index, `derived.previous_result`), beside the rules'.
const ENGINE_READS: &[&str] = &[
    "submission_id",
    "updated_at",
    "created_at",
    "applicant_id",
    "email",
    "kyc.result",
];

/// What to keep of one value.
#[derive(Debug, Clone, Default)]
struct Node {
    /// Keep the value as it is.
    whole: bool,
    /// An object: keep these keys, each projected by its node.
    keys: Vec<(String, Node)>,
    /// An array: each element projected by this node (`None`: keep the array).
    elems: Option<Box<Node>>,
    /// An array is kept whole even when `elems` is set (a script binds it so).
    array_whole: bool,
}

impl Node {
    fn key(&mut self, k: &str) -> &mut Node {
        let i = match self.keys.iter().position(|(name, _)| name == k) {
            Some(i) => i,
            None => {
                self.keys.push((k.to_string(), Node::default()));
                self.keys.len() - 1
            }
        };
        &mut self.keys[i].1
    }

    fn elems(&mut self) -> &mut Node {
        self.elems.get_or_insert_with(Box::default)
    }

    fn child(&self, k: &str) -> Option<&Node> {
        self.keys
            .iter()
            .find(|(name, _)| name.len() == k.len() && name == k)
            .map(|(_, n)| n)
    }

    /// Adds a field path as conditions walk it: an array met on the way to a
    /// key applies the key to every element (`in_array`: this node is such an
    /// element; an array nested in it is kept whole rather than followed).
    fn add_walk(&mut self, segments: &[Segment], in_array: bool) {
        let Some((first, rest)) = segments.split_first() else {
            self.whole = true;
            return;
        };
        match first {
            Segment::Key(k) => {
                self.key(k).add_walk(rest, false);
                if !in_array {
                    self.elems().add_walk(segments, true);
                }
            }
            Segment::All | Segment::Index(_) => self.elems().add_walk(rest, true),
        }
    }

    /// Adds a path a script reads, as the script engine binds it: `[*]`
    /// projects the maps of a list, any other array on the way is bound whole.
    fn add_script(&mut self, parts: &[String]) {
        let Some((first, rest)) = parts.split_first() else {
            return;
        };
        let child = self.key(first);
        match rest.first().map(String::as_str) {
            None => child.whole = true,
            Some("[*]") => child.elems().add_script(&rest[1..]),
            Some(_) => {
                child.array_whole = true;
                child.add_script(rest);
            }
        }
    }
}

/// The part of a submission a rule set reads. Build it with [`Projection::of`].
#[derive(Debug, Clone)]
pub struct Projection {
    root: Node,
}

impl Projection {
    /// The projection of `rules`, whose scripts read `script_paths` (`None`:
    /// a script reads the whole submission, so nothing can be left out).
    pub(crate) fn of(rules: &[Rule], script_paths: Option<&[Vec<String>]>) -> Option<Projection> {
        let mut root = Node::default();
        for parts in script_paths? {
            root.add_script(parts);
        }
        let mut walk = |p: &FieldPath| root.add_walk(p.segments(), false);
        for text in ENGINE_READS {
            walk(&FieldPath::parse(text).expect("a valid engine path"));
        }
        for rule in rules {
            rule.when.field_paths(&mut walk);
            if let Some(w) = &rule.window {
                w.group_by.iter().for_each(&mut walk);
            }
            rule.throttle_by.iter().for_each(&mut walk);
        }
        Some(Projection { root })
    }

    /// Parses `text` keeping only the projected fields. Syntax errors are
    /// serde_json's; the rest of the text is scanned, not built.
    pub fn parse(&self, text: &str) -> serde_json::Result<Value> {
        let mut de = serde_json::Deserializer::from_str(text);
        let value = Project(&self.root).deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
}

/// Deserializes one value as `node` says.
struct Project<'n>(&'n Node);

impl<'de> DeserializeSeed<'de> for Project<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.whole {
            serde::Deserialize::deserialize(d)
        } else {
            d.deserialize_any(self)
        }
    }
}

/// An object key, borrowed from the text unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Scalars become what `serde_json::Value` makes of them.
impl<'de> Visitor<'de> for Project<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        match self.0.elems.as_deref().filter(|_| !self.0.array_whole) {
            Some(elems) => {
                while let Some(v) = seq.next_element_seed(Project(elems))? {
                    items.push(v);
                }
            }
            None => {
                while let Some(v) = seq.next_element::<Value>()? {
                    items.push(v);
                }
            }
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match self.0.child(&k) {
                Some(node) => {
                    let v = map.next_value_seed(Project(node))?;
                    out.insert(k.into_owned(), v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn projection(walks: &[&str], scripts: &[&[&str]]) -> Projection {
        let mut root = Node::default();
        for s in scripts {
            root.add_script(&s.iter().map(|p| p.to_string()).collect::<Vec<_>>());
        }
        for w in walks {
            root.add_walk(FieldPath::parse(w).unwrap().segments(), false);
        }
        Projection { root }
    }

    #[test]
    fn keeps_read_fields_and_drops_the_rest() {
        let p = projection(&["kyc.result", "aml.risk"], &[&["data", "exp"]]);
        let text = r#"{"kyc": {"result": "rejected", "ocr": {"a": [1, 2]}}, "aml": "none",
            "data": {"exp": "2026", "photo": "xxx"}, "images": [{"b": 1}], "kyc": {"result": "approved"}}"#;
        // A scalar where an object was expected is kept as it is; a repeated
        // key keeps the last value, as serde_json does.
        assert_eq!(
            p.parse(text).unwrap(),
            json!({"kyc": {"result": "approved"}, "aml": "none", "data": {"exp": "2026"}})
        );
    }

    #[test]
    fn arrays_follow_walks_and_script_bindings() {
        // A walk applies a key to every element of an array met on the way.
        let p = projection(&["kyc.attempts.score"], &[]);
        let text = r#"{"kyc": {"attempts": [{"score": 1, "x": 2}, 3, [{"y": 4}]]}}"#;
        assert_eq!(
            p.parse(text).unwrap(),
            json!({"kyc": {"attempts": [{"score": 1}, 3, [{"y": 4}]]}})
        );
        // A script's `count_with` path projects the maps of the list; a plain
        // chain through a list binds the list whole.
        let p = projection(&[], &[&["a", "[*]", "code"], &["b", "c"]]);
        let text = r#"{"a": [{"code": "x", "z": 1}], "b": [{"c": 1, "d": 2}]}"#;
        assert_eq!(
            p.parse(text).unwrap(),
            json!({"a": [{"code": "x"}], "b": [{"c": 1, "d": 2}]})
        );
    }

    /// The shipped pack decides alike on whole and projected simulator
    /// submissions (rejections, retries, shared applicants, expiring documents).
    #[test]
    fn shipped_rules_decide_alike_on_projected_submissions() {
        use crate::rules::MemoryState;
        use crate::rules::shipped::shipped_rules;
        use crate::simulator::generator::Generator;
        use chrono::TimeZone;

        let rules = shipped_rules();
        let p = rules
            .projection()
            .expect("the shipped scripts read field chains");
        let mut g = Generator::new(
            3,
            chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        );
        let whole: Vec<Value> = (0..3000).map(|_| g.next_submission()).collect();
        let projected: Vec<Value> = whole
            .iter()
            .map(|v| p.parse(&v.to_string()).unwrap())
            .collect();
        let text = whole[0].to_string();
        assert!(p.parse(&text).unwrap().to_string().len() < text.len() / 2);
        let decide = |batch: &[Value]| {
            let out = rules.evaluate_batch(batch, &mut MemoryState::new());
            let alerts: Vec<String> = out
                .alerts()
                .map(|a| serde_json::to_string(a).unwrap())
                .collect();
            let errors: Vec<String> = out.errors().map(|e| e.to_string()).collect();
            let derived: Vec<Value> = out.submissions.iter().map(|s| s.derived.clone()).collect();
            (alerts, errors, derived)
        };
        let (a, b) = (decide(&whole), decide(&projected));
        assert!(a.0.len() > 100, "the sample fires rules: {}", a.0.len());
        assert_eq!(a, b);
    }

    #[test]
    fn a_script_using_s_whole_gives_no_projection() {
        let rules = crate::rules::load_sources(
            &[(
                "r.yaml".to_string(),
                "- id: r\n  description: d\n  severity: low\n  when:\n    script: \"let t = s; t.kyc == ()\"\n".to_string(),
            )],
            crate::rules::ScriptLimits::default(),
        )
        .unwrap();
        assert!(rules.projection().is_none());
    }

    #[test]
    fn syntax_errors_are_serde_jsons() {
        let p = projection(&["a"], &[]);
        let full = serde_json::from_str::<Value>(r#"{"b": [1, }"#).unwrap_err();
        let projected = p.parse(r#"{"b": [1, }"#).unwrap_err();
        assert_eq!(projected.to_string(), full.to_string());
        assert!(p.parse(r#"{"a": 1} x"#).is_err());
    }
}

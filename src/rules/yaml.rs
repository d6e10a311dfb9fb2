//! A YAML document as a tree of nodes that remember where they were written.
//!
//! Rule validation must report every problem with its line and column, and
//! must keep going after the first one. Deserializing straight into typed
//! structs stops at the first error and loses positions inside enums, so the
//! loader first reads a file into this position-carrying tree (the only step
//! that can fail on YAML syntax) and then validates the tree by hand.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A YAML node and the place it starts (1-based line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: NodeValue,
    pub line: u32,
    pub column: u32,
    /// Byte offset of the node in the source, used to find where a block
    /// scalar's text really begins.
    pub offset: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl NodeValue {
    /// What a user would call this kind of value, for "expected X, found Y".
    pub fn kind(&self) -> &'static str {
        match self {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) | NodeValue::Float(_) => "a number",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Converts to JSON (mapping keys become strings), for literal values in
    /// conditions and inline test submissions.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::from(*i),
            NodeValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            NodeValue::Str(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.scalar_text(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// A scalar as the text a user wrote (keys, ids, durations).
    pub fn scalar_text(&self) -> String {
        match &self.value {
            NodeValue::Null => "null".into(),
            NodeValue::Bool(b) => b.to_string(),
            NodeValue::Int(i) => i.to_string(),
            NodeValue::Float(f) => f.to_string(),
            NodeValue::Str(s) => s.clone(),
            NodeValue::Seq(_) => "[...]".into(),
            NodeValue::Map(_) => "{...}".into(),
        }
    }
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// Parses one YAML document into a [`Node`] tree.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    if text.trim().is_empty() {
        return Ok(Node {
            value: NodeValue::Null,
            line: 1,
            column: 1,
            offset: Some(0),
        });
    }
    serde_saphyr::from_str::<Node>(text).map_err(|err| {
        let (line, column) = err
            .location()
            .map(|l| (l.line() as u32, l.column() as u32))
            .unwrap_or((1, 1));
        // The Display form carries a rendered snippet; the first line is the
        // message itself, which is all a `path:line:column:` report needs.
        let full = err.to_string();
        let message = full
            .lines()
            .next()
            .unwrap_or("invalid YAML")
            .trim()
            .to_string();
        SyntaxError {
            line: line.max(1),
            column: column.max(1),
            message,
        }
    })
}

/// The file's (line, column) of a 1-based (line, column) inside a scalar's
/// value, the scalar starting at byte `offset` of `text`.
///
/// The value and its source differ by indentation (block scalars), folded
/// line breaks (`>`, quoted scalars over several lines) and escapes, so the
/// two are walked side by side, matching non-blank characters. A position
/// past the end of the value (Rhai's "incomplete script") lands just after
/// its last character.
pub fn scalar_position(
    text: &str,
    offset: usize,
    value: &str,
    line: u32,
    column: u32,
) -> (u32, u32) {
    let target = char_index(value, line, column);
    let src: Vec<(usize, char)> = text.get(offset..).unwrap_or("").char_indices().collect();
    let quote = src
        .first()
        .map(|&(_, c)| c)
        .filter(|c| matches!(c, '"' | '\''));
    let mut p = usize::from(quote.is_some());
    let skip_blank = |p: &mut usize| {
        while src.get(*p).is_some_and(|(_, c)| c.is_whitespace()) {
            *p += 1;
        }
    };
    for c in value.chars().take(target) {
        if c.is_whitespace() {
            // Spaces written as spaces move both sides; line breaks and
            // indentation differ between the value and its source.
            if matches!(c, ' ' | '\t') && src.get(p).is_some_and(|&(_, f)| f == c) {
                p += 1;
            }
            continue;
        }
        skip_blank(&mut p);
        let escaped = matches!(
            (quote, src.get(p).map(|x| x.1), src.get(p + 1).map(|x| x.1)),
            (Some('"'), Some('\\'), Some(_)) | (Some('\''), Some('\''), Some('\''))
        );
        p += if escaped { 2 } else { 1 };
    }
    if value
        .chars()
        .nth(target)
        .is_some_and(|c| !c.is_whitespace())
    {
        skip_blank(&mut p);
    }
    let byte = offset
        + src
            .get(p)
            .map_or(text.len() - offset.min(text.len()), |&(b, _)| b);
    line_col(text, byte.min(text.len()))
}

/// The 0-based character index of a 1-based (line, column) in `value`,
/// clamped to its length.
fn char_index(value: &str, line: u32, column: u32) -> usize {
    let mut index = 0;
    for (n, l) in value.split('\n').enumerate() {
        let len = l.chars().count();
        if n + 1 == line.max(1) as usize {
            return (index + (column.max(1) as usize - 1).min(len)).min(value.chars().count());
        }
        index += len + 1;
    }
    value.chars().count()
}

/// The 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, byte: usize) -> (u32, u32) {
    let before = &text[..byte];
    let line = before.matches('\n').count() as u32 + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() as u32 + 1)
}

/// A hint for a syntax error on `line` when that line has a flow list
/// holding an unquoted path with brackets (`[kyc.attempts[0].x]`), which YAML
/// reads as nested lists.
pub fn flow_bracket_hint(text: &str, line: u32) -> Option<&'static str> {
    static PATH_IN_FLOW: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"\[[^\]"'#]*[A-Za-z0-9_*)]\["#).expect("valid regex")
    });
    let l = text.lines().nth(line.checked_sub(1)? as usize)?;
    PATH_IN_FLOW.is_match(l).then_some(
        "a path with brackets inside a flow list must be quoted, e.g. `['kyc.attempts[0].score']`, \
         or write the list one `- item` per line",
    )
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<NodeValue>::deserialize(deserializer)?;
        let loc = spanned.referenced;
        Ok(Node {
            value: spanned.value,
            line: loc.line() as u32,
            column: loc.column() as u32,
            offset: loc.span().byte_offset().map(|o| o as usize),
        })
    }
}

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeValue, D::Error> {
        NodeValue::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeValue, E> {
        Ok(NodeValue::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeValue, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => NodeValue::Int(i),
            Err(_) => NodeValue::Float(v as f64),
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NodeValue, E> {
        Ok(NodeValue::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(NodeValue::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(NodeValue::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_keys_and_values() {
        let text = "- id: a\n  when:\n    field: x\n    eq: |\n      1 + 2\n";
        let root = parse(text).unwrap();
        eprintln!("{root:#?}");
        let NodeValue::Seq(items) = &root.value else {
            panic!()
        };
        let NodeValue::Map(entries) = &items[0].value else {
            panic!()
        };
        assert_eq!((entries[0].0.line, entries[0].0.column), (1, 3));
        assert_eq!((entries[0].1.line, entries[0].1.column), (1, 7));
        assert_eq!((entries[1].0.line, entries[1].0.column), (2, 3));
    }

    #[test]
    fn positions_inside_scalars_map_to_the_file() {
        // Literal block: lines and indentation.
        let text = "- when:\n    script: |\n      let n = 1;\n      n >= = 2\n";
        let root = parse(text).unwrap();
        let NodeValue::Seq(items) = &root.value else {
            panic!()
        };
        let NodeValue::Map(e) = &items[0].value else {
            panic!()
        };
        let NodeValue::Map(w) = &e[0].1.value else {
            panic!()
        };
        let node = &w[0].1;
        let value = node.as_str().unwrap();
        let at = |l, c| scalar_position(text, node.offset.unwrap(), value, l, c);
        assert_eq!(at(1, 5), (3, 11));
        assert_eq!(at(2, 6), (4, 12));
        // Past the end (an incomplete script): after the last character.
        assert_eq!(at(3, 1), (4, 15));
        // Folded and quoted scalars join lines; positions still land right.
        let text = "a: >\n  s.kyc.result\n  == oops\nb: \"x \\\" y\n  zz\"\n";
        let root = parse(text).unwrap();
        let NodeValue::Map(e) = &root.value else {
            panic!()
        };
        let (a, b) = (&e[0].1, &e[1].1);
        assert_eq!(a.as_str().unwrap(), "s.kyc.result == oops\n");
        assert_eq!(
            scalar_position(text, a.offset.unwrap(), a.as_str().unwrap(), 1, 17),
            (3, 6)
        );
        assert_eq!(b.as_str().unwrap(), "x \" y zz");
        assert_eq!(
            scalar_position(text, b.offset.unwrap(), b.as_str().unwrap(), 1, 7),
            (5, 3)
        );
    }

    #[test]
    fn hint_for_bracketed_paths_in_flow_lists() {
        let text = "a:\n  group_by: [kyc.attempts[0].x]\n  b: [\"x[0]\", y]\n";
        assert!(flow_bracket_hint(text, 2).is_some());
        assert!(flow_bracket_hint(text, 3).is_none());
        assert!(flow_bracket_hint(text, 9).is_none());
    }

    #[test]
    fn syntax_error_position() {
        let err = parse("- id: a\n  when: [1, 2\n").unwrap_err();
        eprintln!("{err:?}");
        assert!(err.line >= 2);
    }
}

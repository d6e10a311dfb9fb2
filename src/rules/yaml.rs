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
    fn syntax_error_position() {
        let err = parse("- id: a\n  when: [1, 2\n").unwrap_err();
        eprintln!("{err:?}");
        assert!(err.line >= 2);
    }
}

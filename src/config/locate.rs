//! Positions for configuration problems found after parsing.
//!
//! Validation speaks in dotted paths (`receivers.mail.smtp.tls`,
//! `escalation_policies[0].steps[1].after`); a user wants `file:line:col`.
//! This reads the file into the position-carrying YAML tree and walks the
//! path as far as it exists: a list item is found by index or by its `name`.

use crate::rules::yaml::{self, Node, NodeValue};

/// The YAML tree of a config file, for locating paths in it.
pub struct Locator {
    root: Option<Node>,
}

impl Locator {
    pub fn new(text: &str) -> Locator {
        Locator {
            root: yaml::parse(text).ok(),
        }
    }

    /// Line and column of the deepest node of `path` that exists (1:1 when
    /// not even the first key does).
    pub fn find(&self, path: &str) -> (u32, u32) {
        let Some(root) = &self.root else {
            return (1, 1);
        };
        let mut node = root;
        let mut at = (1, 1);
        for seg in segments(path) {
            match step(node, &seg) {
                Some((pos, next)) => {
                    at = pos;
                    node = next;
                }
                None => break,
            }
        }
        at
    }

    /// `message` prefixed with the position of the path it starts with
    /// (`argos.base_url: ...`).
    pub fn position_of_message(&self, message: &str) -> (u32, u32) {
        let path = message.split(": ").next().unwrap_or("");
        let path = path.split_whitespace().next().unwrap_or("");
        self.find(path)
    }

    /// The byte range of the mapping entry (key and value) that starts on
    /// `line`, as whole lines: the line itself and the deeper lines below.
    pub fn entry_lines(text: &str, line: u32) -> Option<(usize, usize)> {
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let idx = line.checked_sub(1)? as usize;
        let first = lines.get(idx)?;
        let indent = |l: &str| l.len() - l.trim_start_matches([' ', '-']).len();
        let base = indent(first);
        let start: usize = lines[..idx].iter().map(|l| l.len()).sum();
        let mut end = start + first.len();
        for l in &lines[idx + 1..] {
            if l.trim().is_empty() || l.trim_start().starts_with('#') || indent(l) > base {
                end += l.len();
            } else {
                break;
            }
        }
        Some((start, end))
    }
}

/// `a.b[0].c` -> `a`, `b`, `0`, `c`.
fn segments(path: &str) -> Vec<String> {
    path.replace('[', ".")
        .replace(']', "")
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One step down: a mapping key, a list index, or a list item by `name`.
/// Returns the position to report (the value's) and the node.
fn step<'n>(node: &'n Node, seg: &str) -> Option<((u32, u32), &'n Node)> {
    match &node.value {
        NodeValue::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.scalar_text() == seg)
            .map(|(k, v)| (pos_of(k, v), v)),
        NodeValue::Seq(items) => {
            let item = match seg.parse::<usize>() {
                Ok(i) => items.get(i),
                Err(_) => items.iter().find(|it| name_of(it).as_deref() == Some(seg)),
            }?;
            Some(((item.line, item.column), item))
        }
        _ => None,
    }
}

/// A scalar value is reported where it is written; a mapping or list at
/// its key (its value may start lines below).
fn pos_of(k: &Node, v: &Node) -> (u32, u32) {
    match v.value {
        NodeValue::Map(_) | NodeValue::Seq(_) | NodeValue::Null => (k.line, k.column),
        _ => (v.line, v.column),
    }
}

fn name_of(item: &Node) -> Option<String> {
    let NodeValue::Map(entries) = &item.value else {
        return None;
    };
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some("name"))
        .map(|(_, v)| v.scalar_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_items_by_name_and_index() {
        let text = "argos:\n  base_url: ftp://x\nreceivers:\n  - name: mail\n    smtp:\n      tls: none\nescalation_policies:\n  - name: p\n    steps:\n      - { after: 1h }\n      - { after: 5m }\n";
        let l = Locator::new(text);
        assert_eq!(l.find("argos.base_url"), (2, 13));
        assert_eq!(l.find("receivers.mail.smtp.tls"), (6, 12));
        assert_eq!(l.find("escalation_policies[0].steps[1].after"), (11, 18));
        assert_eq!(l.find("receivers.nobody.to"), (3, 1));
        assert_eq!(
            l.position_of_message("digests.daily.receivers: no receiver"),
            (1, 1)
        );
    }

    #[test]
    fn entry_lines_take_the_children() {
        let text = "a:\n  b: 1\n  c:\n    d: 2\n\n  e: 3\n";
        let (s, e) = Locator::entry_lines(text, 3).unwrap();
        assert_eq!(&text[s..e], "  c:\n    d: 2\n\n");
    }
}

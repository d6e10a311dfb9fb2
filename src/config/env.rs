//! `${NAME}` in sentinel.yaml, replaced by environment variables before the
//! YAML is parsed.
//!
//! Pasting a value into YAML text lets the value change the document: a
//! secret `a #9f..` loses everything after ` #` (a comment), a newline adds
//! keys, `123456` or `yes` change type. So every scalar holding a reference
//! is rewritten as ONE double-quoted scalar with the value escaped; inside a
//! block scalar (`|`, `>`) the value is pasted as is, but only when it has no
//! line break. No line is added or removed, so line numbers stay those of the
//! file, and [`ColumnMap`] takes columns back to the file's. Errors name the
//! variable and where it is used, never its value.

/// A problem with a reference, at a 1-based line and column of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// The file's text with references replaced, and how to map positions back.
#[derive(Debug, Default)]
pub struct Interpolated {
    pub text: String,
    pub columns: ColumnMap,
    /// Names of variables that were not set (replaced by an empty string).
    pub missing: Vec<String>,
}

/// Per line, the replacements made: (new start, new end, file start, file
/// end) in 1-based character columns, in order.
#[derive(Debug, Default)]
pub struct ColumnMap {
    edits: std::collections::HashMap<u32, Vec<(u32, u32, u32, u32)>>,
}

impl ColumnMap {
    /// The file's column for a column of the interpolated text.
    pub fn to_file(&self, line: u32, column: u32) -> u32 {
        let Some(edits) = self.edits.get(&line) else {
            return column;
        };
        let mut shift: i64 = 0;
        for &(new_start, new_end, file_start, file_end) in edits {
            if column < new_start {
                break;
            }
            if column < new_end {
                return file_start;
            }
            shift = i64::from(file_end) - i64::from(new_end);
        }
        (i64::from(column) + shift).max(1) as u32
    }
}

/// Replaces every `${NAME}` outside comments. A missing variable is an error
/// (and an empty string in the text, so the rest can still be checked).
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> (Interpolated, Vec<EnvError>) {
    let mut s = Scanner {
        lookup: &lookup,
        out: Interpolated::default(),
        errors: Vec::new(),
        line_no: 0,
        block_parent: None,
        open_quote: None,
    };
    for line in text.split_inclusive('\n') {
        s.line_no += 1;
        let (body, eol) = match line.strip_suffix('\n') {
            Some(b) => match b.strip_suffix('\r') {
                Some(b2) => (b2, "\r\n"),
                None => (b, "\n"),
            },
            None => (line, ""),
        };
        s.line(body);
        s.out.text.push_str(eol);
    }
    (s.out, s.errors)
}

struct Scanner<'a, F: Fn(&str) -> Option<String>> {
    lookup: &'a F,
    out: Interpolated,
    errors: Vec<EnvError>,
    line_no: u32,
    /// Inside a block scalar: the column its content must be deeper than.
    block_parent: Option<usize>,
    /// A quoted scalar that goes on to the next line.
    open_quote: Option<char>,
}

/// Where a reference was found, which decides how its value is written.
#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    /// Inside `"..."`: escaped, no quotes added.
    Double,
    /// Inside a multi-line `'...'`: `'` doubled; a line break is refused.
    Single,
    /// Block scalar content: as is; a line break is refused.
    Block,
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

impl<F: Fn(&str) -> Option<String>> Scanner<'_, F> {
    fn line(&mut self, line: &str) {
        let chars: Vec<char> = line.chars().collect();
        if let Some(parent) = self.block_parent {
            if line.trim().is_empty() || indent_of(line) > parent {
                self.copy_with(&chars, 0, chars.len(), Ctx::Block);
                return;
            }
            self.block_parent = None;
        }
        let mut i = 0;
        if let Some(q) = self.open_quote {
            i = self.quoted_rest(&chars, 0, q);
        }
        // Column of the last key or `-` seen on this line: a block scalar's
        // content is indented deeper than it.
        let mut parent = indent_of(line);
        let mut flow = 0usize;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            let sep_after = next.is_none_or(char::is_whitespace);
            match c {
                _ if c.is_whitespace() => {
                    self.push(c);
                    i += 1;
                }
                '#' if i == 0 || chars[i - 1].is_whitespace() => {
                    self.push_slice(&chars[i..]);
                    return;
                }
                '"' | '\'' => i = self.quoted(&chars, i, c),
                '[' | '{' => {
                    flow += 1;
                    self.push(c);
                    i += 1;
                }
                ']' | '}' => {
                    flow = flow.saturating_sub(1);
                    self.push(c);
                    i += 1;
                }
                ',' if flow > 0 => {
                    self.push(c);
                    i += 1;
                }
                '-' | '?' if sep_after => {
                    parent = i;
                    self.push(c);
                    i += 1;
                }
                ':' if sep_after || (flow > 0 && matches!(next, Some(',' | ']' | '}'))) => {
                    self.push(c);
                    i += 1;
                }
                '|' | '>' => {
                    // A block scalar's header (and any comment) ends the line.
                    self.push_slice(&chars[i..]);
                    self.block_parent = Some(parent);
                    return;
                }
                '&' | '*' | '!' => {
                    let end = (i..chars.len())
                        .find(|&j| chars[j].is_whitespace())
                        .unwrap_or(chars.len());
                    self.push_slice(&chars[i..end]);
                    i = end;
                }
                _ => {
                    let end = plain_end(&chars, i, flow > 0);
                    if chars.get(end) == Some(&':') {
                        parent = i;
                    }
                    self.plain(&chars, i, end);
                    i = end;
                }
            }
        }
    }

    fn push(&mut self, c: char) {
        self.out.text.push(c);
    }

    fn push_slice(&mut self, cs: &[char]) {
        self.out.text.extend(cs);
    }

    /// A plain scalar `chars[start..end]`: rewritten as one double-quoted
    /// scalar when it holds a reference, copied otherwise.
    fn plain(&mut self, chars: &[char], start: usize, end: usize) {
        let raw: String = chars[start..end].iter().collect();
        if !raw.contains("${") {
            self.out.text.push_str(&raw);
            return;
        }
        let value = self.substitute(&raw, start, |v| v.to_string(), None);
        self.replaced(start, end, &yaml_quote(&value));
    }

    /// A quoted scalar starting at `start`; returns where scanning goes on.
    fn quoted(&mut self, chars: &[char], start: usize, q: char) -> usize {
        let Some(close) = closing_quote(chars, start + 1, q) else {
            self.push(q);
            self.open_quote = Some(q);
            return self.quoted_rest(chars, start + 1, q);
        };
        let inner: String = chars[start + 1..close].iter().collect();
        if !inner.contains("${") {
            self.push_slice(&chars[start..=close]);
            return close + 1;
        }
        if q == '"' {
            self.push('"');
            self.copy_with(chars, start + 1, close, Ctx::Double);
            self.push('"');
        } else {
            // `'...'` becomes `"..."`: single quotes cannot carry a line break.
            let decoded = inner.replace("''", "'");
            let value = self.substitute(&decoded, start + 1, |v| v.to_string(), None);
            self.replaced(start, close + 1, &yaml_quote(&value));
        }
        close + 1
    }

    /// The rest of a quoted scalar that started on an earlier line.
    fn quoted_rest(&mut self, chars: &[char], from: usize, q: char) -> usize {
        let ctx = if q == '"' { Ctx::Double } else { Ctx::Single };
        match closing_quote(chars, from, q) {
            Some(close) => {
                self.copy_with(chars, from, close, ctx);
                self.push(q);
                self.open_quote = None;
                close + 1
            }
            None => {
                self.copy_with(chars, from, chars.len(), ctx);
                chars.len()
            }
        }
    }

    /// Copies `chars[from..to]`, replacing each reference by its value
    /// written for `ctx`.
    fn copy_with(&mut self, chars: &[char], from: usize, to: usize, ctx: Ctx) {
        let mut i = from;
        while i < to {
            if chars[i] == '$' && chars.get(i + 1) == Some(&'{') {
                let end = (i + 2..to).find(|&j| chars[j] == '}').map_or(to, |j| j + 1);
                let raw: String = chars[i..end].iter().collect();
                let refuse_newline = match ctx {
                    Ctx::Double => None,
                    Ctx::Single => Some("a quoted scalar that spans lines"),
                    Ctx::Block => Some("a block scalar (`|`, `>`)"),
                };
                let value = self.substitute(
                    &raw,
                    i,
                    |v| match ctx {
                        Ctx::Double => escape_double(v),
                        Ctx::Single => v.replace('\'', "''"),
                        Ctx::Block => v.to_string(),
                    },
                    refuse_newline,
                );
                self.replaced(i, end, &value);
                i = end;
            } else {
                self.push(chars[i]);
                i += 1;
            }
        }
    }

    /// Records that `chars[start..end]` of this line was written as `new`.
    fn replaced(&mut self, start: usize, end: usize, new: &str) {
        let line_start = self.out.text.rfind('\n').map_or(0, |p| p + 1);
        let new_start = self.out.text[line_start..].chars().count() as u32 + 1;
        self.out.text.push_str(new);
        let new_end = new_start + new.chars().count() as u32;
        self.out
            .columns
            .edits
            .entry(self.line_no)
            .or_default()
            .push((new_start, new_end, start as u32 + 1, end as u32 + 1));
    }

    /// `raw` with each `${NAME}` replaced by `write(value)`; `col0` is the
    /// 0-based column of `raw` in the line, for error positions.
    fn substitute(
        &mut self,
        raw: &str,
        col0: usize,
        write: impl Fn(&str) -> String,
        refuse_newline: Option<&str>,
    ) -> String {
        let mut out = String::new();
        let mut rest = raw;
        let mut col = col0;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            col += rest[..start].chars().count();
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                self.error(col, "`${` without a closing `}`".into());
                out.push_str(&rest[start..]);
                return out;
            };
            let name = &after[..end];
            if !valid_name(name) {
                self.error(
                    col,
                    format!("`${{{name}}}`: a variable name is A-Z a-z 0-9 _ (not starting with a digit)"),
                );
            } else {
                match (self.lookup)(name) {
                    Some(v) if refuse_newline.is_some() && v.contains(['\n', '\r']) => self.error(
                        col,
                        format!(
                            "environment variable `{name}` has a line break and cannot be used inside {}; write it as the whole value (`key: ${{{name}}}`)",
                            refuse_newline.unwrap_or_default()
                        ),
                    ),
                    Some(v) => out.push_str(&write(&v)),
                    None => {
                        self.error(col, format!("environment variable `{name}` is not set"));
                        self.out.missing.push(name.to_string());
                    }
                }
            }
            col += name.chars().count() + 3;
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn error(&mut self, col0: usize, message: String) {
        self.errors.push(EnvError {
            line: self.line_no,
            column: col0 as u32 + 1,
            message,
        });
    }
}

fn valid_name(name: &str) -> bool {
    let mut cs = name.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Where a plain scalar starting at `start` ends: before ` #`, before a
/// `: ` indicator, and in flow context before `,` `]` `}`; a reference's
/// braces are part of the scalar. Trailing spaces are left out.
fn plain_end(chars: &[char], start: usize, flow: bool) -> usize {
    let mut i = start;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '$' && next == Some('{') {
            i = (i + 2..chars.len())
                .find(|&j| chars[j] == '}')
                .map_or(chars.len(), |j| j + 1);
            continue;
        }
        let sep = next.is_none_or(char::is_whitespace);
        if (c == '#' && i > start && chars[i - 1].is_whitespace())
            || (c == ':' && (sep || (flow && matches!(next, Some(',' | ']' | '}')))))
            || (flow && matches!(c, ',' | ']' | '}'))
        {
            break;
        }
        i += 1;
    }
    while i > start && chars[i - 1].is_whitespace() {
        i -= 1;
    }
    i
}

/// The index of the quote closing one opened before `from`, on this line.
fn closing_quote(chars: &[char], from: usize, q: char) -> Option<usize> {
    let mut i = from;
    while i < chars.len() {
        match chars[i] {
            '\\' if q == '"' => i += 2,
            '\'' if q == '\'' && chars.get(i + 1) == Some(&'\'') => i += 2,
            c if c == q => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// A YAML double-quoted scalar holding exactly `v`.
fn yaml_quote(v: &str) -> String {
    format!("\"{}\"", escape_double(v))
}

/// Escapes for the inside of a YAML double-quoted scalar: backslash, quote,
/// and every character YAML could read as a break or that is not printable.
fn escape_double(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HASH" => Some("a #9f8e7d6c5b4a3210".into()),
            "NL" => Some("x\ninjected: true".into()),
            "NUM" => Some("123456".into()),
            "YES" => Some("yes".into()),
            "Q" => Some("it's \"q\" \\".into()),
            "PORT" => Some("2525".into()),
            _ => None,
        }
    }

    fn run(text: &str) -> (String, Vec<EnvError>) {
        let (i, e) = interpolate(text, env);
        (i.text, e)
    }

    #[test]
    fn whole_values_become_one_quoted_scalar() {
        let (t, e) = run("a: ${HASH}  # comment ${NOPE}\nb: ${NL}\nc: [${NUM}, ${YES}]\n");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            t,
            "a: \"a #9f8e7d6c5b4a3210\"  # comment ${NOPE}\nb: \"x\\ninjected: true\"\nc: [\"123456\", \"yes\"]\n"
        );
    }

    #[test]
    fn references_inside_scalars() {
        let (t, e) =
            run("u: https://h/${NUM}/x  # c\nd: \"p ${Q}\"\ns: 'p ${Q}'\nk:\n  - x: ${PORT}\n");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            t,
            "u: \"https://h/123456/x\"  # c\nd: \"p it's \\\"q\\\" \\\\\"\ns: \"p it's \\\"q\\\" \\\\\"\nk:\n  - x: \"2525\"\n"
        );
    }

    #[test]
    fn block_scalars_take_the_value_as_is_without_line_breaks() {
        let (t, e) = run("a: |\n  key ${NUM}\n  ${NL}\nb: ${YES}\n");
        assert_eq!(t, "a: |\n  key 123456\n  \nb: \"yes\"\n");
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].line, e[0].column), (3, 3));
        assert!(
            e[0].message
                .starts_with("environment variable `NL` has a line break")
        );
        assert!(!e[0].message.contains("injected"));
    }

    #[test]
    fn errors_name_the_variable_and_its_place() {
        let (_, e) = run("a:\n  b: x ${NOPE} ${NUM}\n  c: ${1X}\n  d: ${OPEN\n");
        let got: Vec<String> = e
            .iter()
            .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
            .collect();
        assert_eq!(
            got,
            [
                "2:8: environment variable `NOPE` is not set",
                "3:6: `${1X}`: a variable name is A-Z a-z 0-9 _ (not starting with a digit)",
                "4:6: `${` without a closing `}`",
            ]
        );
    }

    #[test]
    fn columns_map_back_to_the_file() {
        let (i, _) = interpolate("x: [${NUM}, bad]\n", env);
        assert_eq!(i.text, "x: [\"123456\", bad]\n");
        // `bad` is at column 15 of the new text and 13 of the file.
        assert_eq!(i.columns.to_file(1, 15), 13);
        assert_eq!(i.columns.to_file(1, 7), 5);
        assert_eq!(i.columns.to_file(1, 2), 2);
        assert_eq!(i.columns.to_file(2, 9), 9);
    }
}

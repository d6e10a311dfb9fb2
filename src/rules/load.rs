//! Rule files -> compiled rules, with every problem reported at once.
//!
//! Validation is pure: it reads the position-carrying YAML tree of each file
//! and collects a [`Diagnostic`] (`path:line:column: message`) for every
//! problem instead of stopping at the first, like a compiler. Reading files
//! is kept to [`load_path`]; [`load_sources`] does the rest and is what tests
//! and the daemon's reload call.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex::Regex;
use serde_json::{Map, Value};

use super::condition::{Condition, FieldTest, Literal, Needle, Op};
use super::engine::RuleSet;
use super::path::FieldPath;
use super::rule::{Mode, Origin, Rule, Severity, Window};
use super::script::{ScriptEngine, ScriptLimits, ScriptSite};
use super::yaml::{self, Node, NodeValue};
use crate::util::{parse_duration, sha256_hex};

/// One problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

const RULE_KEYS: &[&str] = &[
    "id",
    "description",
    "summary",
    "playbook_url",
    "severity",
    "labels",
    "when",
    "window",
    "throttle",
    "throttle_by",
    "mode",
    "replaces",
];
const WINDOW_KEYS: &[&str] = &["group_by", "threshold", "within"];
const OPERATORS: &[&str] = &[
    "eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "contains", "matches", "exists",
];

/// The rule files of a folder (or the one file given), sorted by name.
/// Test files (`*.test.yaml`) sit beside rules and are not rule files.
pub fn rule_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let p = entry?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        let test = name.ends_with(".test.yaml") || name.ends_with(".test.yml");
        if p.is_file() && yaml && !test {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads and compiles the rules of a folder or file.
pub fn load_path(path: &Path, limits: ScriptLimits) -> Result<RuleSet, Vec<Diagnostic>> {
    let files = rule_files(path).map_err(|e| {
        vec![Diagnostic {
            file: path.display().to_string(),
            line: 1,
            column: 1,
            message: format!("cannot read rules: {e}"),
        }]
    })?;
    let mut sources = Vec::new();
    let mut diags = Vec::new();
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(text) => sources.push((f.display().to_string(), text)),
            Err(e) => diags.push(Diagnostic {
                file: f.display().to_string(),
                line: 1,
                column: 1,
                message: format!("cannot read file: {e}"),
            }),
        }
    }
    match load_sources(&sources, limits) {
        Ok(set) if diags.is_empty() => Ok(set),
        Ok(_) => Err(diags),
        Err(more) => {
            diags.extend(more);
            diags.sort();
            Err(diags)
        }
    }
}

/// Compiles rules from `(file name, text)` pairs.
pub fn load_sources(
    sources: &[(String, String)],
    limits: ScriptLimits,
) -> Result<RuleSet, Vec<Diagnostic>> {
    let engine = Arc::new(ScriptEngine::new(limits));
    let mut loader = Loader {
        engine: &engine,
        diags: Vec::new(),
        file: String::new(),
        text: Arc::from(""),
    };
    let mut rules: Vec<Rule> = Vec::new();
    let mut ids: HashMap<String, (Origin, Mode)> = HashMap::new();
    // `replaces:` is checked once every file is read (it may name a rule of another file).
    let mut replaces: Vec<(Origin, String)> = Vec::new();
    for (file, text) in sources {
        loader.file = file.clone();
        loader.text = Arc::from(text.as_str());
        let root = match yaml::parse(text) {
            Ok(root) => root,
            Err(e) => {
                let mut message = strip_position(&e.message);
                if let Some(hint) = yaml::flow_bracket_hint(text, e.line) {
                    message = format!("{message} ({hint})");
                }
                loader.diags.push(Diagnostic {
                    file: file.clone(),
                    line: e.line,
                    column: e.column,
                    message,
                });
                continue;
            }
        };
        let items = match &root.value {
            NodeValue::Seq(items) => items.as_slice(),
            NodeValue::Null => &[],
            other => {
                loader.error(
                    &root,
                    format!("a rule file is a list of rules, found {}", other.kind()),
                );
                continue;
            }
        };
        for item in items {
            if let Some((rule, id_node, replaces_node)) = loader.rule(item) {
                if let Some((first, mode)) = ids.get(&rule.id) {
                    let message = if rule.mode != *mode {
                        format!(
                            "shadow rule and live rule share the id `{}` (the other is at {first}); \
                             a shadow rule needs its own id (its own windows and throttles), \
                             e.g. `{}-v2` with `replaces: {}`",
                            rule.id, rule.id, rule.id
                        )
                    } else {
                        format!("duplicate rule id `{}` (first defined at {first})", rule.id)
                    };
                    loader.error(id_node, message);
                    continue;
                }
                if let (Some(node), Some(target)) = (replaces_node, &rule.replaces) {
                    let at = Origin {
                        file: loader.file.clone(),
                        line: node.line,
                        column: node.column,
                    };
                    replaces.push((at, target.clone()));
                }
                ids.insert(rule.id.clone(), (rule.origin.clone(), rule.mode));
                rules.push(rule);
            }
        }
    }
    for (at, target) in replaces {
        let message = match ids.get(&target) {
            None => format!("`replaces` names `{target}`, which is not a rule of this rule set"),
            Some((first, Mode::Shadow)) => format!(
                "`replaces` names `{target}` (at {first}), a shadow rule; it must name a live rule"
            ),
            Some((_, Mode::Live)) => continue,
        };
        loader.diags.push(Diagnostic {
            file: at.file,
            line: at.line,
            column: at.column,
            message,
        });
    }
    if loader.diags.is_empty() {
        Ok(RuleSet::new(rules, engine))
    } else {
        let mut diags = loader.diags;
        diags.sort();
        Err(diags)
    }
}

/// serde-saphyr messages start with their own "error: line L column C:".
fn strip_position(message: &str) -> String {
    let m = message.strip_prefix("error: ").unwrap_or(message);
    if let Some(rest) = m.strip_prefix("line ")
        && let Some(i) = rest.find(": ")
    {
        return rest[i + 2..].to_string();
    }
    m.to_string()
}

struct Loader<'a> {
    engine: &'a ScriptEngine,
    diags: Vec<Diagnostic>,
    file: String,
    /// The file being read, kept by its scripts to place their errors.
    text: Arc<str>,
}

/// The entries of a mapping node, or `None` after reporting it is not one.
type Entries<'n> = &'n [(Node, Node)];

impl<'a> Loader<'a> {
    fn error(&mut self, node: &Node, message: String) {
        self.error_at(node.line, node.column, message);
    }

    fn error_at(&mut self, line: u32, column: u32, message: String) {
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line,
            column,
            message,
        });
    }

    fn map<'n>(&mut self, node: &'n Node, what: &str) -> Option<Entries<'n>> {
        match &node.value {
            NodeValue::Map(entries) => Some(entries),
            other => {
                self.error(
                    node,
                    format!("{what} must be a mapping, found {}", other.kind()),
                );
                None
            }
        }
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            NodeValue::Str(s) => Some(s.clone()),
            other => {
                self.error(
                    node,
                    format!("{what} must be a string, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// A rule, its `id` node and its `replaces` node (checked once all files are read).
    #[allow(clippy::type_complexity)]
    fn rule<'n>(&mut self, item: &'n Node) -> Option<(Rule, &'n Node, Option<&'n Node>)> {
        let entries = self.map(item, "a rule")?;
        let before = self.diags.len();
        let mut fields: HashMap<&str, (&Node, &Node)> = HashMap::new();
        for (k, v) in entries {
            match k.as_str() {
                Some(key) if RULE_KEYS.contains(&key) => {
                    fields.insert(key, (k, v));
                }
                _ => self.error(
                    k,
                    format!(
                        "unknown key `{}` in rule; expected one of: {}",
                        k.scalar_text(),
                        RULE_KEYS.join(", ")
                    ),
                ),
            }
        }
        let id_node = fields.get("id").map(|(_, v)| *v);
        let id = match id_node {
            None => {
                self.error(item, "rule has no `id`".into());
                None
            }
            Some(v) => self.string(v, "`id`").and_then(|id| {
                if valid_id(&id) {
                    Some(id)
                } else {
                    self.error(
                        v,
                        format!("invalid rule id `{id}`: use lower-case letters, digits, `-` and `_`, starting with a letter or digit"),
                    );
                    None
                }
            }),
        };
        let description = match fields.get("description") {
            Some((_, v)) => self.string(v, "`description`").unwrap_or_default(),
            None => String::new(),
        };
        let summary = fields.get("summary").and_then(|(_, v)| self.summary(v));
        let playbook_url = fields
            .get("playbook_url")
            .and_then(|(_, v)| self.playbook_url(v));
        let severity = match fields.get("severity") {
            None => {
                self.error(item, "rule has no `severity`".into());
                None
            }
            Some((_, v)) => match &v.value {
                NodeValue::Str(s) => Severity::parse(s).or_else(|| {
                    self.error(
                        v,
                        format!(
                            "invalid severity `{s}`; expected one of: {}",
                            Severity::NAMES
                        ),
                    );
                    None
                }),
                _ => {
                    self.error(
                        v,
                        format!(
                            "invalid severity `{}`; expected one of: {}",
                            v.scalar_text(),
                            Severity::NAMES
                        ),
                    );
                    None
                }
            },
        };
        let mut labels = Map::new();
        if let Some((_, v)) = fields.get("labels")
            && let Some(entries) = self.map(v, "`labels`")
        {
            for (k, lv) in entries {
                match &lv.value {
                    NodeValue::Map(_) | NodeValue::Seq(_) | NodeValue::Null => self.error(
                        lv,
                        format!(
                            "label `{}` must be a string, found {}",
                            k.scalar_text(),
                            lv.value.kind()
                        ),
                    ),
                    _ => {
                        labels.insert(k.scalar_text(), Value::String(lv.scalar_text()));
                    }
                }
            }
        }
        let mut has_script = false;
        let when = match fields.get("when") {
            None => {
                self.error(item, "rule has no `when` condition".into());
                None
            }
            Some((_, v)) => self.condition(v, &mut has_script),
        };
        let window = match fields.get("window") {
            Some((k, v)) => self.window(k, v),
            None => None,
        };
        let throttle = match fields.get("throttle") {
            Some((_, v)) => self.duration(v, "`throttle`"),
            None => None,
        };
        let throttle_by = match fields.get("throttle_by") {
            Some((k, v)) => {
                if !fields.contains_key("throttle") {
                    self.error(k, "`throttle_by` without `throttle`".into());
                }
                self.paths(v, "`throttle_by`")
            }
            None => Vec::new(),
        };
        let mode = match fields.get("mode") {
            Some((_, v)) => self.mode(v),
            None => Some(Mode::Live),
        };
        let replaces_node = fields.get("replaces").map(|(_, v)| *v);
        let replaces = replaces_node.and_then(|v| self.replaces(v, mode));
        if self.diags.len() > before {
            return None;
        }
        let (id, severity, when, mode) = (id?, severity?, when?, mode?);
        let canonical = canonical_rule(&fields, &id, &description, severity, &labels);
        Some((
            Rule {
                version: sha256_hex(canonical.to_string().as_bytes()),
                id,
                description,
                summary,
                playbook_url,
                severity,
                labels,
                when,
                window,
                throttle,
                throttle_by,
                origin: Origin {
                    file: self.file.clone(),
                    line: item.line,
                    column: item.column,
                },
                mode,
                replaces,
                has_script,
            },
            id_node?,
            replaces_node,
        ))
    }

    /// `mode:`: `live` (the default) or `shadow`.
    fn mode(&mut self, node: &Node) -> Option<Mode> {
        match node.as_str() {
            Some("live") => Some(Mode::Live),
            Some("shadow") => Some(Mode::Shadow),
            _ => {
                self.error(
                    node,
                    format!(
                        "invalid mode `{}`; expected one of: live, shadow",
                        node.scalar_text()
                    ),
                );
                None
            }
        }
    }

    /// `replaces:`: a rule id, only on a shadow rule (whether that rule
    /// exists is checked once all files are read).
    fn replaces(&mut self, node: &Node, mode: Option<Mode>) -> Option<String> {
        let id = self.string(node, "`replaces`")?;
        if mode == Some(Mode::Live) {
            self.error(
                node,
                "`replaces` applies only to a `mode: shadow` rule (when promoting, remove both lines)"
                    .into(),
            );
            return None;
        }
        if !valid_id(&id) {
            self.error(node, format!("`replaces`: invalid rule id `{id}`"));
            return None;
        }
        Some(id)
    }

    /// `summary:`: one line of minijinja, compiled here so `check` finds a
    /// syntax error (variables are checked when `check --config` renders).
    fn summary(&mut self, node: &Node) -> Option<String> {
        let text = self.string(node, "`summary`")?;
        if text.contains('\n') {
            self.error(node, "`summary` must be one line".into());
            return None;
        }
        let env = minijinja::Environment::new();
        if let Err(e) = env.template_from_str(&text) {
            self.error(
                node,
                format!("`summary` is not a valid template: {}", e.kind()),
            );
            return None;
        }
        Some(text)
    }

    /// `playbook_url:`: an http(s) URL (it becomes a link in messages).
    fn playbook_url(&mut self, node: &Node) -> Option<String> {
        let text = self.string(node, "`playbook_url`")?;
        let ok = (text.starts_with("https://") || text.starts_with("http://"))
            && !text.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            self.error(
                node,
                "`playbook_url` must be an http:// or https:// URL without spaces".into(),
            );
            return None;
        }
        Some(text)
    }

    fn duration(&mut self, node: &Node, what: &str) -> Option<std::time::Duration> {
        let NodeValue::Str(text) = &node.value else {
            self.error(
                node,
                format!(
                    "{what}: invalid duration `{}`: missing unit (use s, m, h or d, e.g. `24h`)",
                    node.scalar_text()
                ),
            );
            return None;
        };
        match parse_duration(text) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.error(node, format!("{what}: duration must be more than zero"));
                None
            }
            Err(e) => {
                self.error(node, format!("{what}: {e}"));
                None
            }
        }
    }

    fn paths(&mut self, node: &Node, what: &str) -> Vec<FieldPath> {
        let nodes: Vec<&Node> = match &node.value {
            NodeValue::Seq(items) if !items.is_empty() => items.iter().collect(),
            NodeValue::Str(_) => vec![node],
            other => {
                self.error(
                    node,
                    format!(
                        "{what} must be a path or a list of paths, found {}",
                        other.kind()
                    ),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for n in nodes {
            if let Some(text) = self.string(n, what) {
                match FieldPath::parse(&text) {
                    Ok(p) => out.push(p),
                    Err(e) => self.error(n, e),
                }
            }
        }
        out
    }

    fn window(&mut self, key: &Node, node: &Node) -> Option<Window> {
        let entries = self.map(node, "`window`")?;
        let mut group_by = None;
        let mut threshold = None;
        let mut within = None;
        for (k, v) in entries {
            match k.as_str() {
                Some("group_by") => group_by = Some(self.paths(v, "`group_by`")),
                Some("threshold") => match &v.value {
                    NodeValue::Int(n) if *n >= 1 && *n <= u32::MAX as i64 => {
                        threshold = Some(*n as u32)
                    }
                    _ => {
                        self.error(
                            v,
                            format!(
                                "`threshold` must be a whole number of at least 1, found `{}`",
                                v.scalar_text()
                            ),
                        );
                        threshold = Some(0);
                    }
                },
                Some("within") => within = Some(self.duration(v, "`within`")),
                _ => self.error(
                    k,
                    format!(
                        "unknown key `{}` in window; expected one of: {}",
                        k.scalar_text(),
                        WINDOW_KEYS.join(", ")
                    ),
                ),
            }
        }
        for (name, missing) in [
            ("group_by", group_by.is_none()),
            ("threshold", threshold.is_none()),
            ("within", within.is_none()),
        ] {
            if missing {
                self.error(key, format!("window without `{name}`"));
            }
        }
        Some(Window {
            group_by: group_by?,
            threshold: threshold.filter(|t| *t > 0)?,
            within: within??,
        })
    }

    fn condition(&mut self, node: &Node, has_script: &mut bool) -> Option<Condition> {
        let entries = self.map(node, "a condition")?;
        if entries.iter().any(|(k, _)| k.as_str() == Some("field")) {
            return self.field_condition(node, entries);
        }
        let mut found: Option<(&Node, &Node)> = None;
        for (k, v) in entries {
            let key = k.scalar_text();
            match key.as_str() {
                "all" | "any" | "not" | "script" => {
                    if let Some((first, _)) = found {
                        self.error(
                            k,
                            format!(
                                "a condition has exactly one of all, any, not, field, script; found `{}` and `{key}`",
                                first.scalar_text()
                            ),
                        );
                    } else {
                        found = Some((k, v));
                    }
                }
                op if OPERATORS.contains(&op) || op == "every" => self.error(
                    k,
                    format!("`{op}` needs a `field:` in the same condition"),
                ),
                _ => self.error(
                    k,
                    format!(
                        "unknown key `{key}` in condition; expected one of: all, any, not, field, script"
                    ),
                ),
            }
        }
        let Some((k, v)) = found else {
            if entries.is_empty() {
                self.error(
                    node,
                    "empty condition; expected one of: all, any, not, field, script".into(),
                );
            }
            return None;
        };
        match k.as_str() {
            Some(kind @ ("all" | "any")) => {
                let NodeValue::Seq(items) = &v.value else {
                    self.error(
                        v,
                        format!(
                            "`{kind}` takes a list of conditions, found {}",
                            v.value.kind()
                        ),
                    );
                    return None;
                };
                if items.is_empty() {
                    self.error(v, format!("`{kind}` needs at least one condition"));
                    return None;
                }
                let mut out = Vec::new();
                let mut ok = true;
                for item in items {
                    match self.condition(item, has_script) {
                        Some(c) => out.push(c),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                Some(if kind == "all" {
                    Condition::All(out)
                } else {
                    Condition::Any(out)
                })
            }
            Some("not") => Some(Condition::Not(Box::new(self.condition(v, has_script)?))),
            _ => {
                *has_script = true;
                self.script(v)
            }
        }
    }

    fn script(&mut self, node: &Node) -> Option<Condition> {
        let source = self.string(node, "`script`")?;
        let site = ScriptSite {
            file: self.file.clone(),
            text: self.text.clone(),
            offset: node.offset.unwrap_or(0),
        };
        let script = match self.engine.compile_at(&source, Some(site.clone())) {
            Ok(s) => s,
            Err(e) => {
                let (line, column) = site.position(&source, e.line, e.column);
                self.error_at(line, column, format!("script error: {}", e.message));
                return None;
            }
        };
        let unknown = self.engine.unknown_calls(&script);
        for u in &unknown {
            let (line, column) = site.position(&source, u.line, u.column);
            let hint = u
                .suggestion
                .as_ref()
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            self.error_at(
                line,
                column,
                format!("script calls unknown function `{}`{hint}", u.name),
            );
        }
        unknown.is_empty().then_some(Condition::Script(script))
    }

    fn field_condition(&mut self, node: &Node, entries: Entries<'_>) -> Option<Condition> {
        let mut path = None;
        let mut every = false;
        let mut op: Option<(&Node, &Node)> = None;
        let mut ok = true;
        for (k, v) in entries {
            let key = k.scalar_text();
            match key.as_str() {
                "field" => match self.string(v, "`field`").map(|t| FieldPath::parse(&t)) {
                    Some(Ok(p)) => path = Some(p),
                    Some(Err(e)) => {
                        self.error(v, e);
                        ok = false
                    }
                    None => ok = false,
                },
                "every" => match v.value {
                    NodeValue::Bool(b) => every = b,
                    _ => {
                        self.error(
                            v,
                            format!("`every` must be true or false, found {}", v.value.kind()),
                        );
                        ok = false
                    }
                },
                o if OPERATORS.contains(&o) => {
                    if let Some((first, _)) = op {
                        self.error(
                            k,
                            format!(
                                "two operators in one condition (`{}` and `{o}`); combine them with `all:`",
                                first.scalar_text()
                            ),
                        );
                        ok = false;
                    } else {
                        op = Some((k, v));
                    }
                }
                "all" | "any" | "not" | "script" => {
                    self.error(
                        k,
                        format!("`{key}` cannot be combined with `field:` in one condition"),
                    );
                    ok = false
                }
                _ => {
                    self.error(
                        k,
                        format!(
                            "unknown operator `{key}`; expected one of: {}",
                            OPERATORS.join(", ")
                        ),
                    );
                    ok = false
                }
            }
        }
        let Some((op_key, operand)) = op else {
            if ok {
                self.error(node, "condition has a `field` but no operator".into());
            }
            return None;
        };
        let op = self.operator(op_key, operand)?;
        if every && matches!(op, Op::Exists(_)) {
            self.error(op_key, "`every` does not apply to `exists`".into());
            return None;
        }
        if !ok {
            return None;
        }
        Some(Condition::Field(FieldTest {
            path: path?,
            op,
            every,
        }))
    }

    fn literal(&mut self, op: &str, node: &Node) -> Option<Literal> {
        let lit = match &node.value {
            NodeValue::Str(_) | NodeValue::Int(_) | NodeValue::Float(_) | NodeValue::Bool(_) => {
                Literal::from_json(&node.to_json())
            }
            _ => None,
        };
        if lit.is_none() {
            let hint = if matches!(node.value, NodeValue::Null) {
                "; use `exists: false` for a missing field"
            } else {
                ""
            };
            self.error(
                node,
                format!(
                    "`{op}` takes a string, number or boolean, found {}{hint}",
                    node.value.kind()
                ),
            );
        }
        lit
    }

    fn operator(&mut self, key: &Node, v: &Node) -> Option<Op> {
        let name = key.scalar_text();
        let number = |this: &mut Self| -> Option<f64> {
            match &v.value {
                NodeValue::Int(i) => Some(*i as f64),
                NodeValue::Float(f) => Some(*f),
                _ => {
                    this.error(
                        v,
                        format!("`{name}` takes a number, found {}", v.value.kind()),
                    );
                    None
                }
            }
        };
        Some(match name.as_str() {
            "eq" => Op::Eq(self.literal("eq", v)?),
            "ne" => Op::Ne(self.literal("ne", v)?),
            "in" | "not_in" => {
                let NodeValue::Seq(items) = &v.value else {
                    self.error(
                        v,
                        format!("`{name}` takes a list, found {}", v.value.kind()),
                    );
                    return None;
                };
                if items.is_empty() {
                    self.error(v, format!("`{name}` needs at least one value"));
                    return None;
                }
                let lits: Vec<Option<Literal>> =
                    items.iter().map(|i| self.literal(&name, i)).collect();
                let lits: Option<Vec<Literal>> = lits.into_iter().collect();
                if name == "in" {
                    Op::In(lits?)
                } else {
                    Op::NotIn(lits?)
                }
            }
            "gt" => Op::Gt(number(self)?),
            "gte" => Op::Gte(number(self)?),
            "lt" => Op::Lt(number(self)?),
            "lte" => Op::Lte(number(self)?),
            "contains" => Op::Contains(Needle::new(&self.string(v, "`contains`")?)),
            "matches" => {
                let pattern = self.string(v, "`matches`")?;
                match Regex::new(&pattern) {
                    Ok(re) => Op::Matches(re),
                    Err(e) => {
                        self.error(
                            v,
                            format!("invalid regex `{pattern}`: {}", regex_reason(&e)),
                        );
                        return None;
                    }
                }
            }
            _ => match v.value {
                NodeValue::Bool(b) => Op::Exists(b),
                _ => {
                    self.error(
                        v,
                        format!("`exists` takes true or false, found {}", v.value.kind()),
                    );
                    return None;
                }
            },
        })
    }
}

/// The regex crate's message is a multi-line drawing; its last line says why.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid pattern")
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// The rule as canonical JSON: keys sorted, durations in seconds, so that a
/// change of layout or comments keeps the version hash, a change of meaning
/// does not.
fn canonical_rule(
    fields: &HashMap<&str, (&Node, &Node)>,
    id: &str,
    description: &str,
    severity: Severity,
    labels: &Map<String, Value>,
) -> Value {
    let mut out = serde_json::json!({
        "id": id,
        "description": description,
        "severity": severity.as_str(),
        "labels": sorted(&Value::Object(labels.clone())),
    });
    for key in ["when", "window", "throttle_by"] {
        if let Some((_, v)) = fields.get(key) {
            out[key] = sorted(&normalize_durations(v.to_json()));
        }
    }
    if let Some((_, v)) = fields.get("throttle") {
        out["throttle"] = duration_secs(&v.scalar_text());
    }
    // Only when written: existing rules keep their versions, and promotion
    // (removing `mode: shadow`) gives the rule a new version.
    for key in ["mode", "replaces"] {
        if let Some((_, v)) = fields.get(key)
            && v.as_str() != Some("live")
        {
            out[key] = v.to_json();
        }
    }
    sorted(&out)
}

fn duration_secs(text: &str) -> Value {
    parse_duration(text)
        .map(|d| Value::from(d.as_millis() as u64))
        .unwrap_or_else(|_| Value::String(text.into()))
}

fn normalize_durations(mut v: Value) -> Value {
    if let Some(w) = v.get_mut("within") {
        if let Some(t) = w.as_str() {
            *w = duration_secs(t);
        }
    }
    v
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

//! Rule unit tests: the `*.test.yaml` format and its runner.
//!
//! A rule author states what a rule must do on a handful of submissions and
//! `kyc-sentinel test` checks it, like `promtool test rules`:
//!
//! ```yaml
//! # rules/aml.test.yaml
//! defaults:                       # optional, merged (deeply) under every submission
//!   aml: { currentstatus: Red Flag }
//! tests:
//!   - name: high risk red flag is critical
//!     rules: [aml-red-flag-high, aml-red-flag-medium]   # optional: only these run
//!     submissions:                # inline, partial JSON is fine
//!       - submission_id: s1
//!         aml: { risk_level_summary: HIGH }
//!     submissions_file: data/aml.jsonl   # optional, relative to this file,
//!                                        # evaluated before the inline ones
//!     alerts:                     # exactly these alerts, in firing order
//!       - rule: aml-red-flag-high
//!         submission_ids: [s1]
//!         group_key: null         # optional: checked only when given
//!     not_fired: [aml-red-flag-medium]   # rules that must not fire
//! ```
//!
//! A submission without `submission_id` gets `s<N>` (its 1-based position in
//! the test), one without `created_at` gets 2024-01-01T00:00Z plus N minutes,
//! so listing order is event-time order. Without `alerts`, the alerts are not
//! checked (only `not_fired`); `alerts: []` means nothing may fire. Each test
//! starts from empty state.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::engine::{Alert, RuleSet};
use super::input::parse_submissions;
use super::load::Diagnostic;
use super::memory::MemoryState;
use super::yaml::{self, Node, NodeValue};

/// One alert a test expects.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedAlert {
    pub rule: String,
    pub submission_ids: Vec<String>,
    /// `None`: not checked; `Some(None)`: must be null.
    pub group_key: Option<Option<String>>,
}

#[derive(Debug, Clone)]
pub struct RuleTest {
    pub file: String,
    pub line: u32,
    pub name: String,
    pub rules: Option<Vec<String>>,
    pub submissions: Vec<Value>,
    pub alerts: Option<Vec<ExpectedAlert>>,
    pub not_fired: Vec<String>,
}

/// The result of one test: `None` passed, `Some(report)` failed.
#[derive(Debug)]
pub struct TestResult {
    pub test: RuleTest,
    pub failure: Option<String>,
}

/// The test files among `paths` (folders give their `*.test.yaml`).
pub fn test_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(".test.yaml") || n.ends_with(".test.yml"))
                })
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Reads one test file; problems come back as diagnostics.
pub fn load_test_file(path: &Path) -> Result<Vec<RuleTest>, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let diag = |line, column, message: String| Diagnostic {
        file: file.clone(),
        line,
        column,
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![diag(1, 1, format!("cannot read test file: {e}"))])?;
    let root = yaml::parse(&text).map_err(|e| vec![diag(e.line, e.column, e.message)])?;
    let mut p = Parser {
        file: file.clone(),
        dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        diags: Vec::new(),
    };
    let tests = p.file(&root);
    if p.diags.is_empty() {
        Ok(tests)
    } else {
        Err(p.diags)
    }
}

struct Parser {
    file: String,
    dir: PathBuf,
    diags: Vec<Diagnostic>,
}

impl Parser {
    fn err(&mut self, n: &Node, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line: n.line,
            column: n.column,
            message: message.into(),
        });
    }

    fn entries<'n>(&mut self, n: &'n Node, what: &str, keys: &[&str]) -> Vec<(&'n str, &'n Node)> {
        let NodeValue::Map(entries) = &n.value else {
            self.err(
                n,
                format!("{what} must be a mapping, found {}", n.value.kind()),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            match k.as_str() {
                Some(key) if keys.contains(&key) => out.push((key, v)),
                _ => self.err(
                    k,
                    format!(
                        "unknown key `{}` in {what}; expected one of: {}",
                        k.scalar_text(),
                        keys.join(", ")
                    ),
                ),
            }
        }
        out
    }

    fn strings(&mut self, n: &Node, what: &str) -> Vec<String> {
        match &n.value {
            NodeValue::Seq(items) => items.iter().map(|i| i.scalar_text()).collect(),
            NodeValue::Str(s) => vec![s.clone()],
            _ => {
                self.err(n, format!("{what} must be a list of strings"));
                Vec::new()
            }
        }
    }

    fn file(&mut self, root: &Node) -> Vec<RuleTest> {
        let mut defaults = json!({});
        let mut tests = Vec::new();
        for (key, v) in self.entries(root, "a test file", &["defaults", "tests"]) {
            match key {
                "defaults" => defaults = v.to_json(),
                _ => {
                    let NodeValue::Seq(items) = &v.value else {
                        self.err(v, "`tests` must be a list of tests");
                        continue;
                    };
                    for item in items {
                        if let Some(t) = self.test(item, &defaults) {
                            tests.push(t);
                        }
                    }
                }
            }
        }
        tests
    }

    fn test(&mut self, n: &Node, defaults: &Value) -> Option<RuleTest> {
        let before = self.diags.len();
        let keys = [
            "name",
            "rules",
            "defaults",
            "submissions",
            "submissions_file",
            "alerts",
            "not_fired",
        ];
        let mut t = RuleTest {
            file: self.file.clone(),
            line: n.line,
            name: String::new(),
            rules: None,
            submissions: Vec::new(),
            alerts: None,
            not_fired: Vec::new(),
        };
        let mut defaults = defaults.clone();
        let mut from_file = Vec::new();
        let mut inline = Vec::new();
        for (key, v) in self.entries(n, "a test", &keys) {
            match key {
                "name" => t.name = v.scalar_text(),
                "rules" => t.rules = Some(self.strings(v, "`rules`")),
                "defaults" => merge(&mut defaults, &v.to_json()),
                "not_fired" => t.not_fired = self.strings(v, "`not_fired`"),
                "submissions" => match v.to_json() {
                    Value::Array(items) => inline = items,
                    _ => self.err(v, "`submissions` must be a list of submissions"),
                },
                "submissions_file" => {
                    let path = self.dir.join(v.scalar_text());
                    match std::fs::read_to_string(&path) {
                        Err(e) => self.err(v, format!("cannot read `{}`: {e}", path.display())),
                        Ok(text) => match parse_submissions(&path.display().to_string(), &text) {
                            Ok(items) => {
                                from_file = items.into_iter().map(|i| i.submission).collect()
                            }
                            Err(e) => self.err(v, e),
                        },
                    }
                }
                _ => {
                    let NodeValue::Seq(items) = &v.value else {
                        self.err(v, "`alerts` must be a list of alerts");
                        continue;
                    };
                    let mut alerts = Vec::new();
                    for a in items {
                        alerts.push(self.expected(a));
                    }
                    t.alerts = Some(alerts.into_iter().flatten().collect());
                }
            }
        }
        if t.name.is_empty() {
            self.err(n, "test has no `name`");
        }
        for (i, s) in from_file.into_iter().chain(inline).enumerate() {
            if !s.is_object() {
                self.err(n, format!("submission {} is not a mapping", i + 1));
                continue;
            }
            t.submissions.push(fill(s, &defaults, i + 1));
        }
        (self.diags.len() == before).then_some(t)
    }

    fn expected(&mut self, n: &Node) -> Option<ExpectedAlert> {
        let mut rule = None;
        let mut ids = Vec::new();
        let mut group_key = None;
        for (key, v) in self.entries(
            n,
            "an expected alert",
            &["rule", "submission_ids", "group_key"],
        ) {
            match key {
                "rule" => rule = Some(v.scalar_text()),
                "submission_ids" => ids = self.strings(v, "`submission_ids`"),
                _ => {
                    group_key = Some(match &v.value {
                        NodeValue::Null => None,
                        _ => Some(v.scalar_text()),
                    })
                }
            }
        }
        if rule.is_none() {
            self.err(n, "expected alert has no `rule`");
        }
        if ids.is_empty() {
            self.err(n, "expected alert has no `submission_ids`");
        }
        Some(ExpectedAlert {
            rule: rule?,
            submission_ids: ids,
            group_key,
        })
    }
}

/// Deep merge: `over` wins, mappings merge key by key.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Defaults under the submission, then the generated id and time.
fn fill(s: Value, defaults: &Value, n: usize) -> Value {
    let mut out = defaults.clone();
    if !out.is_object() {
        out = json!({});
    }
    merge(&mut out, &s);
    if out.get("submission_id").is_none() {
        out["submission_id"] = Value::String(format!("s{n}"));
    }
    if out.get("created_at").is_none() {
        let t = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .expect("a valid constant")
            + chrono::Duration::minutes(n as i64);
        out["created_at"] = Value::String(t.to_utc().to_rfc3339());
    }
    out
}

fn show_expected(e: &ExpectedAlert) -> String {
    let mut s = format!("{} [{}]", e.rule, e.submission_ids.join(", "));
    match &e.group_key {
        Some(Some(k)) => write!(s, " group_key={k}").unwrap(),
        Some(None) => s.push_str(" group_key=null"),
        None => {}
    }
    s
}

fn show_actual(a: &Alert) -> String {
    format!(
        "{} [{}] group_key={}",
        a.rule,
        a.submission_ids.join(", "),
        a.group_key.as_deref().unwrap_or("null")
    )
}

fn same(e: &ExpectedAlert, a: &Alert) -> bool {
    e.rule == a.rule
        && e.submission_ids == a.submission_ids
        && e.group_key.as_ref().is_none_or(|k| *k == a.group_key)
}

/// Lines of a diff between expected and actual alerts (LCS; lists are short).
fn diff(expected: &[ExpectedAlert], actual: &[Alert]) -> Vec<String> {
    let (n, m) = (expected.len(), actual.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if same(&expected[i], &actual[j]) {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && same(&expected[i], &actual[j]) {
            out.push(format!("    {}", show_actual(&actual[j])));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("  - {}", show_expected(&expected[i])));
            i += 1;
        } else {
            out.push(format!("  + {}", show_actual(&actual[j])));
            j += 1;
        }
    }
    out
}

/// Runs one test against a rule set.
pub fn run_test(set: &RuleSet, test: RuleTest) -> TestResult {
    let mut problems = Vec::new();
    let mut mentioned: Vec<&String> = test.not_fired.iter().collect();
    if let Some(r) = &test.rules {
        mentioned.extend(r);
    }
    if let Some(a) = &test.alerts {
        mentioned.extend(a.iter().map(|a| &a.rule));
    }
    for id in mentioned {
        if set.rule(id).is_none() {
            problems.push(format!("  unknown rule `{id}`"));
        }
    }
    let set = match &test.rules {
        Some(ids) => set.filter(|r| ids.contains(&r.id)),
        None => set.clone(),
    };
    let outcome = set.evaluate_batch(&test.submissions, &mut MemoryState::new());
    for r in &outcome.rejected {
        problems.push(format!("  submission {}: {}", r.index + 1, r.reason));
    }
    for e in outcome.errors() {
        problems.push(format!("  {e}"));
    }
    let actual: Vec<Alert> = outcome.alerts().cloned().collect();
    if let Some(expected) = &test.alerts {
        let lines = diff(expected, &actual);
        if lines.iter().any(|l| !l.starts_with("    ")) {
            problems.push("  alerts (- expected, + actual):".into());
            problems.extend(lines.into_iter().map(|l| format!("  {l}")));
        }
    }
    for id in &test.not_fired {
        for a in actual.iter().filter(|a| &a.rule == id) {
            problems.push(format!(
                "  rule `{id}` fired but must not: {}",
                show_actual(a)
            ));
        }
    }
    TestResult {
        failure: (!problems.is_empty()).then(|| problems.join("\n")),
        test,
    }
}

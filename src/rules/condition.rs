//! Compiled conditions: the tree a rule's `when:` becomes, and its operators.
//!
//! Everything a condition needs is prepared at load time (lower-cased
//! literals, parsed numbers, compiled regexes), so testing a submission
//! walks the tree without allocating. Case-insensitive comparison folds
//! characters on the fly instead of lower-casing the submission's strings.

use std::fmt;
use std::ops::ControlFlow;

use regex::Regex;
use serde_json::Value;

use super::path::FieldPath;
use super::script::{Script, ScriptCtx};

/// A literal a value is compared with (`eq`, `ne`, `in`, `not_in`).
#[derive(Debug, Clone)]
pub enum Literal {
    Str {
        text: String,
        lower: String,
        /// Whether `lower` is ASCII, so that folding can be bytewise.
        ascii: bool,
        /// Set when the text reads as a number: `"99"` equals `99`.
        num: Option<f64>,
    },
    Num(f64),
    Bool(bool),
}

impl Literal {
    pub fn from_json(v: &Value) -> Option<Literal> {
        Some(match v {
            Value::String(s) => {
                let lower = s.to_lowercase();
                Literal::Str {
                    text: s.clone(),
                    ascii: lower.is_ascii(),
                    lower,
                    num: parse_num(s),
                }
            }
            Value::Number(n) => Literal::Num(n.as_f64()?),
            Value::Bool(b) => Literal::Bool(*b),
            _ => return None,
        })
    }

    pub fn to_json(&self) -> Value {
        match self {
            Literal::Str { text, .. } => Value::String(text.clone()),
            Literal::Num(n) => num_json(*n),
            Literal::Bool(b) => Value::Bool(*b),
        }
    }

    /// Whether a submission value equals this literal.
    pub fn matches(&self, v: &Value) -> bool {
        match (v, self) {
            (
                Value::String(s),
                Literal::Str {
                    lower, ascii, num, ..
                },
            ) => {
                // Only a numeric literal can equal `s` as a number; a text
                // literal need not parse `s` at all.
                if let Some(a) = num
                    && let Some(b) = parse_num(s)
                {
                    return *a == b;
                }
                eq_fold(s, lower, *ascii)
            }
            (Value::String(s), Literal::Num(n)) => parse_num(s) == Some(*n),
            (Value::String(s), Literal::Bool(b)) => {
                eq_fold(s, if *b { "true" } else { "false" }, true)
            }
            (Value::Number(x), Literal::Num(n)) => x.as_f64() == Some(*n),
            (Value::Number(x), Literal::Str { num: Some(n), .. }) => x.as_f64() == Some(*n),
            (Value::Bool(x), Literal::Bool(b)) => x == b,
            (Value::Bool(x), Literal::Str { lower, .. }) => {
                lower == if *x { "true" } else { "false" }
            }
            _ => false,
        }
    }
}

fn num_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// A string that reads as a finite number (`"99"`, `" 99.0 "`, `"-1e3"`).
pub fn parse_num(s: &str) -> Option<f64> {
    let t = s.trim();
    // `f64::from_str` also takes `inf` and `NaN`, which are no numbers here.
    if t.is_empty()
        || !t
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
    {
        return None;
    }
    t.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// A submission value read as a number, for `gt`/`gte`/`lt`/`lte`.
fn as_num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_num(s),
        _ => None,
    }
}

/// Case-insensitive equality of `s` with an already lower-cased `lower`
/// (`lower_ascii`: whether `lower` is ASCII, known at load time).
#[inline]
fn eq_fold(s: &str, lower: &str, lower_ascii: bool) -> bool {
    if lower_ascii {
        // Equal bytes up to ASCII case mean `s` is ASCII and equal; otherwise an
        // ASCII `s` differs, and only a non-ASCII one needs folding by char
        // (`K`, the Kelvin sign, lower-cases to `k`).
        if s.len() == lower.len() && s.eq_ignore_ascii_case(lower) {
            return true;
        }
        if s.is_ascii() {
            return false;
        }
    }
    s.chars().flat_map(char::to_lowercase).eq(lower.chars())
}

/// A `contains:` needle, ready to search case-insensitively.
#[derive(Debug, Clone)]
pub struct Needle {
    text: String,
    lower: String,
    /// For haystacks or needles outside ASCII, where folding is not bytewise.
    unicode: Regex,
}

impl Needle {
    pub fn new(text: &str) -> Needle {
        let unicode = Regex::new(&format!("(?i){}", regex::escape(text)))
            .expect("an escaped literal is a valid regex");
        Needle {
            text: text.to_string(),
            lower: text.to_lowercase(),
            unicode,
        }
    }

    fn found_in(&self, hay: &str) -> bool {
        if hay.is_ascii() && self.lower.is_ascii() {
            let n = self.lower.as_bytes();
            n.is_empty()
                || hay
                    .as_bytes()
                    .windows(n.len())
                    .any(|w| w.eq_ignore_ascii_case(n))
        } else {
            self.unicode.is_match(hay)
        }
    }
}

/// One operator with its operand.
#[derive(Debug, Clone)]
pub enum Op {
    Eq(Literal),
    Ne(Literal),
    In(Vec<Literal>),
    NotIn(Vec<Literal>),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    Contains(Needle),
    Matches(Regex),
    Exists(bool),
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Eq(_) => "eq",
            Op::Ne(_) => "ne",
            Op::In(_) => "in",
            Op::NotIn(_) => "not_in",
            Op::Gt(_) => "gt",
            Op::Gte(_) => "gte",
            Op::Lt(_) => "lt",
            Op::Lte(_) => "lte",
            Op::Contains(_) => "contains",
            Op::Matches(_) => "matches",
            Op::Exists(_) => "exists",
        }
    }

    pub fn operand_json(&self) -> Value {
        match self {
            Op::Eq(l) | Op::Ne(l) => l.to_json(),
            Op::In(ls) | Op::NotIn(ls) => Value::Array(ls.iter().map(Literal::to_json).collect()),
            Op::Gt(n) | Op::Gte(n) | Op::Lt(n) | Op::Lte(n) => num_json(*n),
            Op::Contains(n) => Value::String(n.text.clone()),
            Op::Matches(r) => Value::String(r.as_str().to_string()),
            Op::Exists(b) => Value::Bool(*b),
        }
    }

    /// The positive test on one value; `ne`/`not_in` test equality here and
    /// are negated over the whole list by [`FieldTest::test`].
    fn value_test(&self, v: &Value) -> bool {
        match self {
            Op::Eq(l) | Op::Ne(l) => l.matches(v),
            Op::In(ls) | Op::NotIn(ls) => ls.iter().any(|l| l.matches(v)),
            Op::Gt(n) => as_num(v).is_some_and(|x| x > *n),
            Op::Gte(n) => as_num(v).is_some_and(|x| x >= *n),
            Op::Lt(n) => as_num(v).is_some_and(|x| x < *n),
            Op::Lte(n) => as_num(v).is_some_and(|x| x <= *n),
            Op::Contains(needle) => v.as_str().is_some_and(|s| needle.found_in(s)),
            Op::Matches(re) => v.as_str().is_some_and(|s| re.is_match(s)),
            Op::Exists(_) => true,
        }
    }

    fn negated(&self) -> bool {
        matches!(self, Op::Ne(_) | Op::NotIn(_))
    }
}

/// `field: PATH` with one operator, optionally `every: true`.
#[derive(Debug, Clone)]
pub struct FieldTest {
    pub path: FieldPath,
    pub op: Op,
    pub every: bool,
}

impl FieldTest {
    /// Walks the path from `root` (skipping the first segment when
    /// `from_second`); true when `visit` stopped the walk.
    #[inline]
    fn walk<'v>(
        &self,
        root: &'v Value,
        from_second: bool,
        mut visit: impl FnMut(&'v Value) -> ControlFlow<()>,
    ) -> bool {
        let flow = if from_second {
            self.path.walk_from_second(root, &mut visit)
        } else {
            self.path.walk(root, &mut visit)
        };
        flow.is_break()
    }

    /// Tests the values the path yields from `root`.
    pub fn test(&self, root: &Value, from_second: bool) -> bool {
        match &self.op {
            Op::Exists(want) => {
                let found = self.walk(root, from_second, |_| ControlFlow::Break(()));
                found == *want
            }
            op if !self.every => {
                let hit = self.walk(root, from_second, |v| {
                    if op.value_test(v) {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
                hit != op.negated()
            }
            op => {
                // every: at least one value, and each one passes.
                let mut seen = false;
                let failed = self.walk(root, from_second, |v| {
                    seen = true;
                    if op.value_test(v) != op.negated() {
                        ControlFlow::Continue(())
                    } else {
                        ControlFlow::Break(())
                    }
                });
                seen && !failed
            }
        }
    }
}

/// A compiled `when:` condition.
#[derive(Debug, Clone)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    Field(FieldTest),
    Script(Script),
}

/// What a condition is tested against: the submission and its derived fields.
pub struct Subject<'a> {
    pub submission: &'a Value,
    pub derived: &'a Value,
}

impl Condition {
    /// The scripts in this condition, in order.
    pub fn scripts<'a>(&'a self, out: &mut Vec<&'a Script>) {
        match self {
            Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| c.scripts(out)),
            Condition::Not(c) => c.scripts(out),
            Condition::Field(_) => {}
            Condition::Script(s) => out.push(s),
        }
    }

    /// The field paths of this condition's field tests.
    pub fn field_paths(&self, out: &mut impl FnMut(&FieldPath)) {
        match self {
            Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| c.field_paths(out)),
            Condition::Not(c) => c.field_paths(out),
            Condition::Field(t) => out(&t.path),
            Condition::Script(_) => {}
        }
    }

    pub fn eval(&self, subject: &Subject<'_>, scripts: &mut ScriptCtx<'_>) -> bool {
        match self {
            Condition::All(cs) => cs.iter().all(|c| c.eval(subject, scripts)),
            Condition::Any(cs) => cs.iter().any(|c| c.eval(subject, scripts)),
            Condition::Not(c) => !c.eval(subject, scripts),
            Condition::Field(t) => {
                if t.path.first_key() == Some("derived") {
                    t.test(subject.derived, true)
                } else {
                    t.test(subject.submission, false)
                }
            }
            Condition::Script(s) => scripts.run(s),
        }
    }

    /// Evaluates every leaf (no short-circuit) and records what each saw.
    pub fn trace(
        &self,
        subject: &Subject<'_>,
        scripts: &mut ScriptCtx<'_>,
        out: &mut Vec<ConditionTrace>,
    ) -> bool {
        match self {
            // Collect first: an explanation reports every leaf, so no short-circuit.
            Condition::All(cs) => {
                let results: Vec<bool> =
                    cs.iter().map(|c| c.trace(subject, scripts, out)).collect();
                results.into_iter().all(|b| b)
            }
            Condition::Any(cs) => {
                let results: Vec<bool> =
                    cs.iter().map(|c| c.trace(subject, scripts, out)).collect();
                results.into_iter().any(|b| b)
            }
            Condition::Not(c) => !c.trace(subject, scripts, out),
            Condition::Field(t) => {
                let derived = t.path.first_key() == Some("derived");
                let seen: Vec<Value> = if derived {
                    let mut v = Vec::new();
                    let _ = t.path.walk_from_second(subject.derived, &mut |x| {
                        v.push(x.clone());
                        ControlFlow::<()>::Continue(())
                    });
                    v
                } else {
                    t.path
                        .values(subject.submission)
                        .into_iter()
                        .cloned()
                        .collect()
                };
                let result = if derived {
                    t.test(subject.derived, true)
                } else {
                    t.test(subject.submission, false)
                };
                out.push(ConditionTrace {
                    path: t.path.to_string(),
                    operator: t.op.name().to_string(),
                    expected: t.op.operand_json(),
                    every: t.every,
                    seen,
                    result,
                    error: None,
                });
                result
            }
            Condition::Script(s) => {
                let before = scripts.errors.len();
                let result = scripts.run(s);
                let error = scripts.errors.get(before).map(|e| e.1.clone());
                out.push(ConditionTrace {
                    path: "script".into(),
                    operator: "script".into(),
                    expected: Value::String(s.source().to_string()),
                    every: false,
                    seen: Vec::new(),
                    result,
                    error,
                });
                result
            }
        }
    }
}

/// How one leaf condition decided, for the audit log.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConditionTrace {
    /// The field path, or `script`.
    pub path: String,
    /// The operator (`eq`, `lt`, ...), or `script`.
    pub operator: String,
    /// The operand as written in the rule (for a script, its source).
    pub expected: Value,
    pub every: bool,
    /// The values the path yielded (flattened), in document order.
    pub seen: Vec<Value>,
    pub result: bool,
    /// A script's error, when it failed.
    pub error: Option<String>,
}

impl fmt::Display for ConditionTrace {
    /// `aml.risk_level_summary = "HIGH" eq "high" -> true`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == "script" {
            write!(f, "script {} -> {}", self.expected, self.result)?;
            if let Some(e) = &self.error {
                write!(f, " (error: {e})")?;
            }
            return Ok(());
        }
        write!(f, "{} = ", self.path)?;
        match self.seen.as_slice() {
            [] => f.write_str("(missing)")?,
            [one] => write!(f, "{one}")?,
            many => write!(f, "{}", Value::Array(many.to_vec()))?,
        }
        write!(f, " {} {}", self.operator, self.expected)?;
        if self.every {
            f.write_str(" (every)")?;
        }
        write!(f, " -> {}", self.result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lit(v: Value) -> Literal {
        Literal::from_json(&v).unwrap()
    }

    #[test]
    fn string_equality_folds_case_and_reads_numbers() {
        let rejected = lit(json!("rejected"));
        assert!(rejected.matches(&json!("REJECTED")));
        assert!(!rejected.matches(&json!("approved")));
        assert!(!rejected.matches(&json!("rejecte")));
        assert!(!rejected.matches(&json!("réjected")));
        // Non-ASCII text folds by character: the Kelvin sign lower-cases to `k`.
        assert!(lit(json!("kyc")).matches(&json!("\u{212a}YC")));
        assert!(lit(json!("Ünïcode")).matches(&json!("üNÏCODE")));
        assert!(!lit(json!("Ünïcode")).matches(&json!("unicode")));
        // Numbers and numeric strings compare as numbers, either way round.
        assert!(lit(json!("99")).matches(&json!(" 99.0 ")));
        assert!(lit(json!("99")).matches(&json!(99)));
        assert!(lit(json!(99)).matches(&json!("99")));
        assert!(!lit(json!("99")).matches(&json!("099x")));
        assert!(!lit(json!("abc")).matches(&json!(99)));
        // Booleans and their text.
        assert!(lit(json!(true)).matches(&json!("TRUE")));
        assert!(lit(json!("false")).matches(&json!(false)));
        assert!(!lit(json!(true)).matches(&json!("yes")));
    }
}

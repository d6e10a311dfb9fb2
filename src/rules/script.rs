//! Rhai scripts in rules: one sandboxed engine, ASTs compiled once.
//!
//! A script is written by a rule author, not by us, so it runs on a budget:
//! a cap on operations, call depth, string/array/map sizes and a wall-clock
//! deadline; `eval` and modules are switched off; `print`/`debug` go to the
//! log, never to standard output (which carries `eval`'s alerts). A script
//! that fails never matches: the error goes back to the engine, which
//! reports it per rule and keeps the other rules running.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{AST, Dynamic, Engine, EvalAltResult, Scope};
use serde_json::Value;

/// Limits every script runs under.
#[derive(Debug, Clone, Copy)]
pub struct ScriptLimits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    pub deadline: Duration,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        ScriptLimits {
            max_operations: 100_000,
            max_call_levels: 32,
            max_string_size: 64 * 1024,
            max_array_size: 10_000,
            max_map_size: 10_000,
            deadline: Duration::from_millis(50),
        }
    }
}

thread_local! {
    // The deadline of the script running on this thread; `on_progress` is a
    // shared callback, so the per-run instant travels through here.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Checking the clock on every operation would dominate short scripts.
const CLOCK_EVERY_OPS: u64 = 256;

/// The sandboxed Rhai engine shared by all scripts of a rule set.
pub struct ScriptEngine {
    engine: Engine,
    limits: ScriptLimits,
    /// Names a script may call: registered, standard and built-in.
    known_fns: std::collections::HashSet<String>,
}

impl std::fmt::Debug for ScriptEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptEngine")
            .field("limits", &self.limits)
            .finish()
    }
}

/// A compile error with its position inside the script (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct CompileError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl ScriptEngine {
    pub fn new(limits: ScriptLimits) -> ScriptEngine {
        let mut engine = Engine::new();
        engine.set_max_operations(limits.max_operations);
        engine.set_max_call_levels(limits.max_call_levels);
        engine.set_max_string_size(limits.max_string_size);
        engine.set_max_array_size(limits.max_array_size);
        engine.set_max_map_size(limits.max_map_size);
        engine.set_max_expr_depths(64, 32);
        engine.disable_symbol("eval");
        engine.disable_symbol("import");
        engine.disable_symbol("export");
        engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
        engine.on_print(|text| tracing::info!(target: "kyc_sentinel::rules::script", "{text}"));
        engine.on_debug(|text, source, pos| {
            tracing::debug!(target: "kyc_sentinel::rules::script", source, %pos, "{text}")
        });
        engine.on_progress(|ops| {
            if ops % CLOCK_EVERY_OPS == 0 {
                let late = DEADLINE
                    .with(|d| d.get())
                    .is_some_and(|d| Instant::now() > d);
                if late {
                    return Some(Dynamic::from("deadline"));
                }
            }
            None
        });
        // A path a script reads through a missing map (`s.aml.matches` when
        // `aml` is absent) reads as `()` instead of failing.
        engine.register_indexer_get(|_: &mut (), _: &str| Dynamic::UNIT);
        // Rhai has no dates; rules about document expiry and stuck reviews
        // need the distance between two timestamps.
        engine.register_fn("days_between", |a: &str, b: &str| between(a, b, 86_400.0));
        engine.register_fn("hours_between", |a: &str, b: &str| between(a, b, 3_600.0));
        // How many elements of a list (of maps) have `field` equal to, or
        // containing, a string: "attempts with retry code X" without a loop
        // that copies every attempt. A method on the list, so the list is
        // read in place.
        engine.register_fn(
            "count_with",
            |list: &mut rhai::Array, field: &str, value: &str| {
                list.iter()
                    .filter(|item| has_value(item, field, value))
                    .count() as i64
            },
        );
        engine.register_fn("count_with", |_: &mut (), _: &str, _: &str| 0_i64);
        for name in ["days_between", "hours_between"] {
            // Either side missing (`()`) gives `()`, so a script can test for it.
            engine.register_fn(name, |_: (), _: &str| Dynamic::UNIT);
            engine.register_fn(name, |_: &str, _: ()| Dynamic::UNIT);
            engine.register_fn(name, |_: (), _: ()| Dynamic::UNIT);
        }
        let known_fns = known_functions(&engine);
        ScriptEngine {
            engine,
            limits,
            known_fns,
        }
    }

    /// Calls of functions that exist nowhere (`count_whith`): such a script
    /// fails on every submission, so the loader refuses it. Calls of the
    /// script's own `fn`s and of variables (function pointers) are fine.
    pub fn unknown_calls(&self, script: &Script) -> Vec<UnknownCall> {
        let ast = &script.0.ast;
        let own: std::collections::HashSet<String> =
            ast.iter_functions().map(|f| f.name.to_string()).collect();
        let mut out = Vec::new();
        ast.walk(&mut |path: &[rhai::ASTNode]| {
            let Some(rhai::ASTNode::Expr(e)) = path.last() else {
                return true;
            };
            let (call, pos) = match e {
                rhai::Expr::FnCall(c, pos) | rhai::Expr::MethodCall(c, pos) => (c, pos),
                _ => return true,
            };
            let name = call.name.as_str();
            let ident = name
                .chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_');
            if ident
                && !self.known_fns.contains(name)
                && !own.contains(name)
                && !declares_variable(&script.0.source, name)
            {
                out.push(UnknownCall {
                    name: name.to_string(),
                    line: pos.line().unwrap_or(1) as u32,
                    column: pos.position().unwrap_or(1) as u32,
                    suggestion: closest(name, self.known_fns.iter().chain(&own)),
                });
            }
            true
        });
        out
    }

    pub fn limits(&self) -> ScriptLimits {
        self.limits
    }

    /// Compiles a script once; the result is run for every submission.
    pub fn compile(&self, source: &str) -> Result<Script, CompileError> {
        self.compile_at(source, None)
    }

    /// [`compile`](Self::compile), remembering where the script is written.
    pub fn compile_at(
        &self,
        source: &str,
        site: Option<ScriptSite>,
    ) -> Result<Script, CompileError> {
        match self.engine.compile(source) {
            Ok(ast) => Ok(Script(Arc::new(ScriptInner {
                site,
                source: source.to_string(),
                paths: read_paths(source),
                ast,
            }))),
            Err(err) => Err(CompileError {
                line: err.position().line().unwrap_or(1) as u32,
                column: err.position().position().unwrap_or(1) as u32,
                message: err.err_type().to_string(),
            }),
        }
    }

    /// Binds a submission (with `derived` inside) as the `s` map scripts
    /// see. `paths` limits it to the fields the scripts read (`None`: all):
    /// converting a whole submission costs more than running a typical script.
    pub fn bind(
        &self,
        submission: &Value,
        derived: &Value,
        paths: Option<&[Vec<String>]>,
    ) -> Dynamic {
        let mut map = rhai::Map::new();
        if let Value::Object(fields) = submission {
            match paths {
                None => {
                    for (k, v) in fields {
                        map.insert(k.as_str().into(), to_dynamic(v));
                    }
                }
                Some(paths) => {
                    for p in paths.iter().filter(|p| p[0] != "derived") {
                        bind_path(&mut map, fields, p);
                    }
                }
            }
        }
        map.insert("derived".into(), to_dynamic(derived));
        Dynamic::from_map(map).into_shared()
    }

    /// Runs a script on a bound submission (from [`bind`](Self::bind)).
    pub fn run_bound(&self, script: &Script, s: &Dynamic) -> Result<bool, String> {
        self.run(script, s)
    }

    fn run(&self, script: &Script, s: &Dynamic) -> Result<bool, String> {
        self.run_checked(script, s).map_err(|e| e.to_string())
    }

    /// [`run_bound`](Self::run_bound) telling a non-boolean result apart
    /// from a failure (for `check`).
    pub fn run_checked(&self, script: &Script, s: &Dynamic) -> Result<bool, RunError> {
        let mut scope = Scope::new();
        scope.push_constant_dynamic("s", s.clone());
        DEADLINE.with(|d| d.set(Some(Instant::now() + self.limits.deadline)));
        let result = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut scope, &script.0.ast);
        DEADLINE.with(|d| d.set(None));
        match result {
            Ok(v) => v
                .as_bool()
                .map_err(|type_name| RunError::NotBoolean(type_name.to_string())),
            Err(err) => Err(RunError::Failed(self.describe(*err, &script.0.source))),
        }
    }

    /// What went wrong, where, and which field the script read there, but
    /// never a value: Rhai's own texts quote them (`Error parsing integer
    /// number '900101-1234567'`, a thrown value, a missing index), and these
    /// messages go to the log, the audit log and the digest.
    fn describe(&self, err: EvalAltResult, source: &str) -> String {
        let pos = err.position();
        let mut text = self.describe_kind(err);
        if !pos.is_none() {
            text.push_str(&format!(" ({pos})"));
            if let Some(field) = field_near(source, pos) {
                text.push_str(&format!(" reading `{field}`"));
            }
        }
        text
    }

    fn describe_kind(&self, err: EvalAltResult) -> String {
        match err {
            EvalAltResult::ErrorTerminated(_, pos) => format!(
                "script ran past its deadline of {:?} ({pos})",
                self.limits.deadline
            ),
            EvalAltResult::ErrorTooManyOperations(pos) => format!(
                "script exceeded its budget of {} operations ({pos})",
                self.limits.max_operations
            ),
            EvalAltResult::ErrorStackOverflow(pos) => format!(
                "script exceeded the maximum call depth of {} ({pos})",
                self.limits.max_call_levels
            ),
            EvalAltResult::ErrorInFunctionCall(name, _, inner, _) => {
                format!("in `{name}`: {}", self.describe_kind(*inner))
            }
            EvalAltResult::ErrorArithmetic(msg, _) => {
                format!("arithmetic error: {}", without_values(&msg))
            }
            // Function signatures, type and variable names come from the
            // script and the engine, not from the submission.
            e @ (EvalAltResult::ErrorFunctionNotFound(..)
            | EvalAltResult::ErrorMismatchDataType(..)
            | EvalAltResult::ErrorMismatchOutputType(..)
            | EvalAltResult::ErrorIndexingType(..)
            | EvalAltResult::ErrorVariableNotFound(..)
            | EvalAltResult::ErrorPropertyNotFound(..)
            | EvalAltResult::ErrorAssignmentToConstant(..)
            | EvalAltResult::ErrorNonPureMethodCallOnConstant(..)
            | EvalAltResult::ErrorDataTooLarge(..)
            | EvalAltResult::ErrorFor(..)
            | EvalAltResult::ErrorUnboundThis(..)
            | EvalAltResult::ErrorTooManyVariables(..)) => {
                let mut e = e;
                e.clear_position();
                e.to_string()
            }
            EvalAltResult::ErrorArrayBounds(..) => "array index out of bounds".into(),
            EvalAltResult::ErrorStringBounds(..) => "string index out of bounds".into(),
            EvalAltResult::ErrorBitFieldBounds(..) => "bit-field index out of bounds".into(),
            EvalAltResult::ErrorIndexNotFound(..) => "index not found".into(),
            EvalAltResult::ErrorRuntime(..) => "the script threw an error".into(),
            EvalAltResult::Exit(..) => "the script called exit".into(),
            EvalAltResult::ErrorDotExpr(..) => "malformed dot expression".into(),
            EvalAltResult::ErrorParsing(kind, _) => format!("syntax error: {kind}"),
            _ => "script failed".into(),
        }
    }
}

/// Why a script gave no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum RunError {
    /// It ran, and returned this type instead of a boolean.
    NotBoolean(String),
    /// It failed (the message has no submission values).
    Failed(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::NotBoolean(t) => write!(f, "script returned {t}, not a boolean"),
            RunError::Failed(m) => f.write_str(m),
        }
    }
}

/// A call of a function that does not exist, at a position of the script.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownCall {
    pub name: String,
    pub line: u32,
    pub column: u32,
    pub suggestion: Option<String>,
}

/// Keywords the engine handles itself (not in its function list).
const BUILT_IN_CALLS: &[&str] = &[
    "Fn",
    "call",
    "curry",
    "is_shared",
    "is_def_fn",
    "is_def_var",
    "type_of",
    "print",
    "debug",
    "eval",
    "this",
    "global",
];

fn known_functions(engine: &Engine) -> std::collections::HashSet<String> {
    let mut names: std::collections::HashSet<String> = engine
        .gen_fn_signatures(true)
        .iter()
        .filter_map(|sig| sig.split('(').next())
        .map(|name| name.trim().to_string())
        .collect();
    names.extend(BUILT_IN_CALLS.iter().map(|s| s.to_string()));
    names
}

/// Whether the script names a variable `name` (a function pointer it may
/// call): `let name`, `const name` or a closure parameter `|name|`.
fn declares_variable(source: &str, name: &str) -> bool {
    let escaped = regex::escape(name);
    regex::Regex::new(&format!(
        r"\b(?:let|const)\s+{escaped}\b|\|[^|]*\b{escaped}\b[^|]*\|"
    ))
    .is_ok_and(|re| re.is_match(source))
}

/// The known name closest to a misspelt one, when it is close.
fn closest<'a>(name: &str, known: impl Iterator<Item = &'a String>) -> Option<String> {
    known
        .filter(|k| k.chars().next().is_some_and(|c| c.is_alphabetic()))
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// A message with any quoted or numeric part cut off: `Error parsing
/// integer number '900101-1234567'` -> `Error parsing integer number`.
fn without_values(msg: &str) -> String {
    let cut = msg
        .find(|c: char| matches!(c, '\'' | '"' | ':' | '`') || c.is_ascii_digit())
        .unwrap_or(msg.len());
    let kept = msg[..cut].trim().trim_end_matches(['(', ',']).trim();
    if kept.is_empty() {
        "(details withheld)".into()
    } else {
        kept.to_string()
    }
}

/// The submission path (`s.data.identityNumber`) the script reads at or
/// just after an error position, so the report says which field was bad.
fn field_near(source: &str, pos: rhai::Position) -> Option<String> {
    static CHAIN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\bs(?:\s*\??\.\s*[A-Za-z_][A-Za-z0-9_]*)+").expect("valid regex")
    });
    let line = source.lines().nth(pos.line()?.checked_sub(1)?)?;
    let col = pos.position().unwrap_or(1).saturating_sub(1);
    let byte = line.char_indices().nth(col).map_or(line.len(), |(b, _)| b);
    let chains: Vec<regex::Match> = CHAIN.find_iter(line).collect();
    let pick = chains
        .iter()
        .find(|m| m.end() > byte)
        .or_else(|| chains.last())?;
    Some(
        pick.as_str()
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '?')
            .collect(),
    )
}

/// Whether a map's `field` is the string `value` (ignoring case) or a list
/// holding it.
fn has_value(item: &Dynamic, field: &str, value: &str) -> bool {
    let Some(map) = item.read_lock::<rhai::Map>() else {
        return false;
    };
    let Some(v) = map.get(field) else {
        return false;
    };
    let is = |d: &Dynamic| {
        d.read_lock::<rhai::ImmutableString>()
            .is_some_and(|s| s.eq_ignore_ascii_case(value))
    };
    if let Some(list) = v.read_lock::<rhai::Array>() {
        return list.iter().any(is);
    }
    is(v)
}

/// `b - a` in units of `unit` seconds; `()` when either is no timestamp.
fn between(a: &str, b: &str, unit: f64) -> Dynamic {
    match (read_time(a), read_time(b)) {
        (Some(a), Some(b)) => {
            Dynamic::from_float((b - a).num_milliseconds() as f64 / 1000.0 / unit)
        }
        _ => Dynamic::UNIT,
    }
}

/// A timestamp (Argos or RFC 3339) or a date (`YYYY-MM-DD`, midnight UTC).
fn read_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let t = text.trim();
    let b = t.as_bytes();
    // `YYYY-MM-DD` by hand: chrono's format parser is slow for a hot path.
    if b.len() == 10 && b[4] == b'-' && b[7] == b'-' {
        let n = |r: std::ops::Range<usize>| t.get(r).and_then(|x| x.parse::<u32>().ok());
        return chrono::NaiveDate::from_ymd_opt(n(0..4)? as i32, n(5..7)?, n(8..10)?)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|n| n.and_utc());
    }
    super::time::parse_timestamp(t)
}

/// JSON to Rhai without going through serde (the binding's hot path).
fn to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        // Straight to Rhai's string type: one allocation, not a String copy first.
        Value::String(s) => Dynamic::from(rhai::ImmutableString::from(s.as_str())),
        // (Not shared: Rhai's size limits refuse shared values inside data.)
        Value::Array(items) => Dynamic::from_array(items.iter().map(to_dynamic).collect()),
        Value::Object(fields) => {
            // Inserting one by one beats collecting: `collect` sorts a Vec of
            // (key, value) pairs first, moving the values around.
            let mut map = rhai::Map::new();
            for (k, v) in fields {
                map.insert(k.as_str().into(), to_dynamic(v));
            }
            Dynamic::from_map(map)
        }
    }
}

/// The field paths a script reads as `s.a.b` (or `s?.a?.b`), cut before a
/// method call or an index, or `None` when it uses `s` any other way
/// (passing it on, shadowing it), in which case the whole submission is
/// bound. `s.` inside a string literal only makes this bind more than
/// needed, never less.
fn read_paths(source: &str) -> Option<Vec<Vec<String>>> {
    static CHAIN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"\bs((?:\s*\??\.\s*[A-Za-z_][A-Za-z0-9_]*)+)(\s*\(\s*(?:"([A-Za-z_][A-Za-z0-9_]*)"\s*,)?)?"#,
        )
        .expect("valid regex")
    });
    static ANY_USE: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\bs\b").expect("valid regex"));
    let mut paths = Vec::new();
    let mut chains = 0;
    for c in CHAIN.captures_iter(source) {
        chains += 1;
        let mut parts: Vec<String> = c[1]
            .split('.')
            .map(|p| p.trim().trim_end_matches('?').trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        // `s.kyc.attempts.len()`: the last name is a method, not a field.
        if c.get(2).is_some() {
            let method = parts.pop();
            // `LIST.count_with("field", ..)` reads only that field of each item.
            if let (Some("count_with"), Some(field)) = (method.as_deref(), c.get(3)) {
                parts.push("[*]".into());
                parts.push(field.as_str().to_string());
            }
        }
        if parts.is_empty() {
            return None;
        }
        paths.push(parts);
    }
    if ANY_USE.find_iter(source).count() != chains {
        return None;
    }
    Some(paths)
}

/// The union of the paths some scripts read, with paths under another one
/// dropped (`None`: everything).
pub fn union_paths<'a>(scripts: impl IntoIterator<Item = &'a Script>) -> Option<Vec<Vec<String>>> {
    let mut all = Vec::new();
    for s in scripts {
        all.extend(s.0.paths.as_ref()?.iter().cloned());
    }
    all.sort();
    all.dedup();
    let kept: Vec<Vec<String>> = all
        .iter()
        .filter(|p| !all.iter().any(|q| q.len() < p.len() && p.starts_with(q)))
        .cloned()
        .collect();
    Some(kept)
}

/// Puts the value at `path` of `fields` into `map` under the same path.
/// `[*]` in a path keeps every item of a list but, for items that are maps,
/// only the rest of the path.
fn bind_path(map: &mut rhai::Map, fields: &serde_json::Map<String, Value>, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some(v) = fields.get(first) else {
        return;
    };
    match (v, rest.first().map(String::as_str)) {
        (Value::Array(items), Some("[*]")) => {
            let slot = map.entry(first.as_str().into()).or_insert_with(|| {
                Dynamic::from_array(
                    items
                        .iter()
                        .map(|i| match i {
                            Value::Object(_) => Dynamic::from_map(rhai::Map::new()),
                            other => to_dynamic(other),
                        })
                        .collect(),
                )
            });
            if let Some(mut bound) = slot.write_lock::<rhai::Array>() {
                for (b, item) in bound.iter_mut().zip(items) {
                    if let (Value::Object(inner), Some(mut m)) = (item, b.write_lock::<rhai::Map>())
                    {
                        bind_path(&mut m, inner, &rest[1..]);
                    }
                }
            }
        }
        (Value::Object(inner), Some(_)) => {
            let slot = map
                .entry(first.as_str().into())
                .or_insert_with(|| Dynamic::from_map(rhai::Map::new()));
            if let Some(mut sub) = slot.write_lock::<rhai::Map>() {
                bind_path(&mut sub, inner, rest);
            }
        }
        _ => {
            map.insert(first.as_str().into(), to_dynamic(v));
        }
    }
}

/// Where a script is written: its rule file and the scalar's start, so a
/// position inside the script can be reported as a position of the file.
#[derive(Debug, Clone)]
pub struct ScriptSite {
    pub file: String,
    /// The whole rule file (shared by the scripts of that file).
    pub text: Arc<str>,
    /// Byte offset of the scalar (its quote or first content character).
    pub offset: usize,
}

impl ScriptSite {
    /// The file's line and column of a (1-based) position in the script.
    pub fn position(&self, source: &str, line: u32, column: u32) -> (u32, u32) {
        super::yaml::scalar_position(&self.text, self.offset, source, line, column)
    }
}

struct ScriptInner {
    site: Option<ScriptSite>,
    source: String,
    /// Paths of `s` the script reads; `None`: any.
    paths: Option<Vec<Vec<String>>>,
    ast: AST,
}

/// A compiled script, cheap to clone.
#[derive(Clone)]
pub struct Script(Arc<ScriptInner>);

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Script").field(&self.0.source).finish()
    }
}

impl Script {
    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// The submission fields the script reads (`["kyc", "attempts", "[*]",
    /// "retryCode"]`), or none when that cannot be told from its text.
    pub fn paths(&self) -> Option<&[Vec<String>]> {
        self.0.paths.as_deref()
    }

    /// Where the script is written, when it came from a rule file.
    pub fn site(&self) -> Option<&ScriptSite> {
        self.0.site.as_ref()
    }

    /// `file:line:column` of a position inside the script (`None` when the
    /// script came from no file).
    pub fn file_position(&self, line: u32, column: u32) -> Option<(String, u32, u32)> {
        let site = self.site()?;
        let (l, c) = site.position(&self.0.source, line, column);
        Some((site.file.clone(), l, c))
    }
}

/// Per-submission script context: binds the submission on first use (many
/// submissions meet no script at all) and collects script errors.
pub struct ScriptCtx<'a> {
    engine: &'a ScriptEngine,
    paths: Option<&'a [Vec<String>]>,
    submission: &'a Value,
    derived: &'a Value,
    bound: Option<Dynamic>,
    /// (script source, error message), drained by the engine after each rule.
    pub errors: Vec<(String, String)>,
}

impl<'a> ScriptCtx<'a> {
    pub fn new(
        engine: &'a ScriptEngine,
        paths: Option<&'a [Vec<String>]>,
        submission: &'a Value,
        derived: &'a Value,
    ) -> Self {
        ScriptCtx {
            engine,
            paths,
            submission,
            derived,
            bound: None,
            errors: Vec::new(),
        }
    }

    pub fn run(&mut self, script: &Script) -> bool {
        let bound = self
            .bound
            .get_or_insert_with(|| self.engine.bind(self.submission, self.derived, self.paths));
        match self.engine.run(script, bound) {
            Ok(b) => b,
            Err(message) => {
                self.errors.push((script.source().to_string(), message));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(src: &str, s: Value) -> Result<bool, String> {
        let engine = ScriptEngine::new(ScriptLimits::default());
        let script = engine.compile(src).map_err(|e| e.message)?;
        let derived = json!({"applicant_emails": 3});
        let bound = engine.bind(&s, &derived, None);
        engine.run(&script, &bound)
    }

    #[test]
    fn reads_submission_and_derived() {
        let s = json!({"kyc": {"result": "rejected", "attempts": [{"livenessScore": 40}]}});
        assert_eq!(run(r#"s.kyc.result == "rejected""#, s.clone()), Ok(true));
        assert_eq!(run("s.derived.applicant_emails > 2", s.clone()), Ok(true));
        assert_eq!(
            run("s.kyc.attempts[0].livenessScore < 50", s.clone()),
            Ok(true)
        );
        // Missing keys read as (), even through a missing map.
        assert_eq!(run("s.aml == ()", s.clone()), Ok(true));
        assert_eq!(run("s.aml.risk_level_summary == ()", s.clone()), Ok(true));
        assert_eq!(
            run(
                r#"days_between("2024-05-01-00-00-00-000", "2024-05-31") == 30.0"#,
                s.clone()
            ),
            Ok(true)
        );
        assert_eq!(
            run(
                r#"hours_between("2024-05-01T00:00:00Z", "2024-05-01T12:00:00Z") == 12.0"#,
                s.clone()
            ),
            Ok(true)
        );
        assert_eq!(
            run(r#"days_between(s.nothing, "2024-05-31") == ()"#, s.clone()),
            Ok(true)
        );
        assert_eq!(
            run(r#"days_between("soon", "2024-05-31") == ()"#, s.clone()),
            Ok(true)
        );
    }

    #[test]
    fn paths_a_script_reads() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            read_paths(
                "s.kyc.result == 1 && s?.data.x && s . aml == () && s.kyc.attempts.len() > 1"
            ),
            Some(vec![
                p(&["kyc", "result"]),
                p(&["data", "x"]),
                p(&["aml"]),
                p(&["kyc", "attempts"])
            ])
        );
        assert_eq!(
            read_paths("s.kyc?.attempts[0].score"),
            Some(vec![p(&["kyc", "attempts"])])
        );
        assert_eq!(
            read_paths(
                r#"s.kyc.attempts.count_with("retryCode", "x") > 1 && s.a.count_with(f, "x")"#
            ),
            Some(vec![p(&["kyc", "attempts", "[*]", "retryCode"]), p(&["a"])])
        );
        assert_eq!(read_paths("let x = s; x.kyc"), None);
        assert_eq!(read_paths("s[\"kyc\"] == ()"), None);
        assert_eq!(read_paths("s.len() > 1"), None);
        assert_eq!(read_paths("true"), Some(vec![]));
    }

    #[test]
    fn binding_only_read_paths_gives_the_same_answers() {
        let engine = ScriptEngine::new(ScriptLimits::default());
        let sub = json!({"kyc": {"result": "pending", "attempts": [{"retryCode": ["a"]}], "comment": ["x"]},
                         "data": {"idcard_expireDate": "2024-01-01", "name": "n"}, "aml": null, "userid": "u"});
        let scripts = [
            "s.kyc.result == \"pending\" && s.kyc.attempts[0].retryCode.contains(\"a\")",
            "s.data.idcard_expireDate == \"2024-01-01\" && s.data.name == \"n\"",
            "s.kyc.comment.len() == 1 && s.userid == \"u\" && s.aml == () && s.nothing == ()",
            "s.kyc.attempts.len() == 2",
        ];
        let narrow = [
            r#"s.kyc.attempts.count_with("retryCode", "a") == 1"#,
            r#"s.kyc.attempts.count_with("other", "a") == 0"#,
        ];
        let narrow: Vec<Script> = narrow.iter().map(|s| engine.compile(s).unwrap()).collect();
        let narrow_paths = union_paths(&narrow).unwrap();
        assert_eq!(narrow_paths.len(), 2, "{narrow_paths:?}");
        let bound = engine.bind(&sub, &json!({}), Some(&narrow_paths));
        for c in &narrow {
            assert_eq!(engine.run(c, &bound), Ok(true), "{}", c.source());
        }
        let compiled: Vec<Script> = scripts.iter().map(|s| engine.compile(s).unwrap()).collect();
        let paths = union_paths(&compiled).unwrap();
        let bound = engine.bind(&sub, &json!({}), Some(&paths));
        let full = engine.bind(&sub, &json!({}), None);
        let answers: Vec<_> = compiled.iter().map(|c| engine.run(c, &bound)).collect();
        let expected: Vec<_> = compiled.iter().map(|c| engine.run(c, &full)).collect();
        assert_eq!(answers, vec![Ok(true), Ok(true), Ok(true), Ok(false)]);
        assert_eq!(answers, expected);
    }

    #[test]
    fn failures_are_errors() {
        let s = json!({});
        assert_eq!(
            run("42", s.clone()),
            Err("script returned i64, not a boolean".into())
        );
        let e = run("loop { }", s.clone()).unwrap_err();
        assert!(
            e.starts_with("script exceeded its budget of 100000 operations"),
            "{e}"
        );
        let e = run("fn f(x) { f(x + 1) } f(0)", s.clone()).unwrap_err();
        assert!(
            e.starts_with("script exceeded the maximum call depth of 32"),
            "{e}"
        );
        let engine = ScriptEngine::new(ScriptLimits::default());
        let err = engine.compile("eval(\"1\")").unwrap_err();
        assert!(err.message.contains("eval"), "{err:?}");
        let err = engine.compile("import \"x\" as y; true").unwrap_err();
        assert!(err.message.contains("import"), "{err:?}");
    }

    #[test]
    fn deadline_stops_a_slow_script() {
        let engine = ScriptEngine::new(ScriptLimits {
            max_operations: 0, // unlimited: only the clock can stop it
            deadline: Duration::from_millis(20),
            ..ScriptLimits::default()
        });
        let script = engine.compile("loop { }").unwrap();
        let bound = engine.bind(&json!({}), &json!({}), None);
        let start = Instant::now();
        let e = engine.run(&script, &bound).unwrap_err();
        assert!(e.starts_with("script ran past its deadline of 20ms"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}

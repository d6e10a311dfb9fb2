//! The compiled rule set and its evaluation.
//!
//! Evaluation is pure: the past comes in, and changes go out, through
//! [`RuleState`]; time is the submission's event time, never the clock, so
//! `eval` over a file and the daemon over the API decide alike. A rule that
//! fails (a script error) is reported in the outcome and does not match; it
//! never stops the other rules.

use std::ops::ControlFlow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::condition::{ConditionTrace, Subject};
use super::path::FieldPath;
use super::rule::{Rule, Severity};
use super::script::{ScriptCtx, ScriptEngine, union_paths};
use super::state::{RuleState, WindowMember};
use super::time::{event_time, format_time};
use crate::util::sha256_hex;

/// One alert, as `eval` prints it: the keys and their order are a contract
/// (docs/rules.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub rule: String,
    pub severity: Severity,
    pub labels: Map<String, Value>,
    pub submission_id: String,
    pub submission_ids: Vec<String>,
    pub group_key: Option<String>,
    pub count: usize,
    #[serde(serialize_with = "ser_time")]
    pub event_time: DateTime<Utc>,
    pub fingerprint: String,
}

fn ser_time<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(*t))
}

impl Serialize for Severity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A rule that failed on a submission (script error, budget exceeded,
/// non-boolean result). The rule did not match.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleError {
    pub rule: String,
    pub submission_id: String,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rule `{}` failed on submission `{}`: {}",
            self.rule, self.submission_id, self.message
        )
    }
}

/// What evaluating one submission decided.
#[derive(Debug, Clone)]
pub struct SubmissionOutcome {
    /// Position of the submission in the batch given to `evaluate_batch`.
    pub index: usize,
    pub submission_id: String,
    pub event_time: DateTime<Utc>,
    /// The `derived` object rules saw (store it to explain later).
    pub derived: Value,
    pub alerts: Vec<Alert>,
    pub errors: Vec<RuleError>,
}

/// A submission the engine cannot evaluate (no id, no time).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub index: usize,
    pub submission_id: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct BatchOutcome {
    /// In evaluation (event-time) order.
    pub submissions: Vec<SubmissionOutcome>,
    pub rejected: Vec<Rejected>,
}

impl BatchOutcome {
    /// All alerts, in firing order.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.submissions.iter().flat_map(|s| s.alerts.iter())
    }
    pub fn errors(&self) -> impl Iterator<Item = &RuleError> {
        self.submissions.iter().flat_map(|s| s.errors.iter())
    }
}

/// A compiled, validated set of rules. Build it with
/// [`load_path`](super::load::load_path) or [`load_sources`](super::load::load_sources).
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    engine: Arc<ScriptEngine>,
    version: String,
    /// Submission fields the scripts read (`None`: all).
    script_paths: Option<Vec<Vec<String>>>,
}

impl RuleSet {
    pub(crate) fn new(rules: Vec<Rule>, engine: Arc<ScriptEngine>) -> RuleSet {
        let version = set_version(&rules);
        let mut scripts = Vec::new();
        for r in &rules {
            r.when.scripts(&mut scripts);
        }
        let script_paths = union_paths(scripts);
        RuleSet {
            rules,
            engine,
            version,
            script_paths,
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// Whether rule `id` is a shadow rule (its alerts are recorded, never acted on).
    pub fn is_shadow(&self, id: &str) -> bool {
        self.rule(id).is_some_and(|r| r.mode.is_shadow())
    }

    /// sha256 over the sorted `id version` lines of all rules.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The part of a submission these rules (and the engine) read, to parse
    /// stored versions faster; `None` when a script reads the whole submission.
    pub fn projection(&self) -> Option<super::project::Projection> {
        super::project::Projection::of(&self.rules, self.script_paths.as_deref())
    }

    /// The rules for which `keep` holds, sharing the script engine.
    pub fn filter(&self, keep: impl Fn(&Rule) -> bool) -> RuleSet {
        RuleSet::new(
            self.rules.iter().filter(|r| keep(r)).cloned().collect(),
            self.engine.clone(),
        )
    }

    /// Evaluates a batch in event-time order (ties by submission id),
    /// whatever order it arrived in.
    pub fn evaluate_batch(&self, batch: &[Value], state: &mut dyn RuleState) -> BatchOutcome {
        let refs: Vec<&Value> = batch.iter().collect();
        self.evaluate_batch_refs(&refs, state)
    }

    /// [`evaluate_batch`](Self::evaluate_batch) over borrowed submissions.
    pub fn evaluate_batch_refs(&self, batch: &[&Value], state: &mut dyn RuleState) -> BatchOutcome {
        let mut out = BatchOutcome::default();
        let mut order = Vec::with_capacity(batch.len());
        for (index, s) in batch.iter().enumerate() {
            match identify(s) {
                Ok((id, t)) => order.push((t, id, index)),
                Err(reason) => out.rejected.push(Rejected {
                    index,
                    submission_id: s
                        .get("submission_id")
                        .and_then(Value::as_str)
                        .map(Into::into),
                    reason,
                }),
            }
        }
        // Stable: two versions of one submission with one time keep input order.
        order.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        for (t, id, index) in order {
            let mut o = self.evaluate_at(batch[index], id, t, state);
            o.index = index;
            out.submissions.push(o);
        }
        out
    }

    /// Evaluates one submission now (the caller keeps event-time order).
    pub fn evaluate(
        &self,
        submission: &Value,
        state: &mut dyn RuleState,
    ) -> Result<SubmissionOutcome, String> {
        let (id, t) = identify(submission)?;
        Ok(self.evaluate_at(submission, id, t, state))
    }

    fn evaluate_at(
        &self,
        submission: &Value,
        submission_id: &str,
        t: DateTime<Utc>,
        state: &mut dyn RuleState,
    ) -> SubmissionOutcome {
        let derived = derive(submission, submission_id, t, state);
        let subject = Subject {
            submission,
            derived: &derived,
        };
        let paths = self.script_paths.as_deref();
        let mut scripts = ScriptCtx::new(&self.engine, paths, submission, &derived);
        let mut alerts = Vec::new();
        let mut errors = Vec::new();
        for rule in &self.rules {
            let matched = rule.when.eval(&subject, &mut scripts);
            for (_, message) in scripts.errors.drain(..) {
                tracing::warn!(rule = %rule.id, submission_id, "{message}");
                errors.push(RuleError {
                    rule: rule.id.clone(),
                    submission_id: submission_id.to_string(),
                    message,
                });
            }
            if matched && let Some(a) = fire(rule, submission, submission_id, t, state) {
                alerts.push(a);
            }
        }
        let result = submission
            .get("kyc")
            .and_then(|k| k.get("result"))
            .and_then(Value::as_str);
        state.set_result(submission_id, result);
        SubmissionOutcome {
            index: 0,
            submission_id: submission_id.to_string(),
            event_time: t,
            derived,
            alerts,
            errors,
        }
    }

    /// The window `(rule id, group key)` pairs `submission` would join, matched
    /// or not: a daemon that forgot old window members loads these memberships
    /// before evaluating, so a submission seen again still counts once.
    pub fn window_keys<'a>(&'a self, submission: &Value) -> Vec<(&'a str, String)> {
        self.rules
            .iter()
            .filter_map(|r| {
                let w = r.window.as_ref()?;
                Some((r.id.as_str(), key_of(&w.group_by, submission)?))
            })
            .collect()
    }

    /// How each leaf condition of a rule decides on `submission`; the
    /// submission's own `derived` object (if any) serves `derived.*` paths.
    /// `None` for an unknown rule id.
    pub fn explain(&self, rule_id: &str, submission: &Value) -> Option<Vec<ConditionTrace>> {
        let derived = submission.get("derived").unwrap_or(&Value::Null);
        self.explain_with(rule_id, submission, derived)
    }

    /// [`explain`](Self::explain) with the derived fields given apart (as
    /// [`SubmissionOutcome::derived`] keeps them), without copying the submission.
    pub fn explain_with(
        &self,
        rule_id: &str,
        submission: &Value,
        derived: &Value,
    ) -> Option<Vec<ConditionTrace>> {
        let rule = self.rule(rule_id)?;
        let subject = Subject {
            submission,
            derived,
        };
        let mut scripts = ScriptCtx::new(&self.engine, None, submission, derived);
        let mut out = Vec::new();
        rule.when.trace(&subject, &mut scripts, &mut out);
        Some(out)
    }
}

fn identify(s: &Value) -> Result<(&str, DateTime<Utc>), String> {
    let id = match s.get("submission_id") {
        Some(Value::String(id)) if !id.is_empty() => id.as_str(),
        _ => return Err("submission has no `submission_id`".into()),
    };
    let t = event_time(s)
        .ok_or_else(|| format!("submission `{id}` has no readable `updated_at` or `created_at`"))?;
    Ok((id, t))
}

fn derive(
    submission: &Value,
    submission_id: &str,
    t: DateTime<Utc>,
    state: &mut dyn RuleState,
) -> Value {
    let mut d = Map::new();
    d.insert("event_time".into(), Value::String(format_time(t)));
    if let Some(applicant) = submission
        .get("applicant_id")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        // Emails compare case-insensitively: `A@x.com` and `a@x.com` are one.
        let email = submission
            .get("email")
            .and_then(Value::as_str)
            .map(|e| e.trim().to_lowercase())
            .filter(|e| !e.is_empty());
        let c = state.applicant_counts(applicant, submission_id, email.as_deref(), t);
        d.insert("applicant_submissions".into(), Value::from(c.submissions));
        d.insert("applicant_emails".into(), Value::from(c.emails));
    }
    if let Some(prev) = state.previous_result(submission_id) {
        d.insert("previous_result".into(), Value::String(prev));
    }
    Value::Object(d)
}

/// The text of a key built from paths: the first value of each path,
/// lower-cased strings, joined by `|`; `None` when a path yields nothing.
fn key_of(paths: &[FieldPath], submission: &Value) -> Option<String> {
    let mut key = String::new();
    for (i, p) in paths.iter().enumerate() {
        let mut first = None;
        let _ = p.walk(submission, &mut |v| {
            first = Some(v);
            ControlFlow::Break(())
        });
        let text = match first? {
            Value::String(s) => s.trim().to_lowercase(),
            other => other.to_string(),
        };
        if text.is_empty() {
            return None;
        }
        if i > 0 {
            key.push('|');
        }
        key.push_str(&text);
    }
    Some(key)
}

fn fire(
    rule: &Rule,
    submission: &Value,
    submission_id: &str,
    t: DateTime<Utc>,
    state: &mut dyn RuleState,
) -> Option<Alert> {
    let (members, group_key) = match &rule.window {
        None => {
            if state.has_fired(&rule.id, submission_id) {
                return None;
            }
            (vec![submission_id.to_string()], None)
        }
        Some(w) => {
            let key = key_of(&w.group_by, submission)?;
            state.window_add(
                &rule.id,
                &key,
                WindowMember {
                    submission_id: submission_id.to_string(),
                    event_time: t,
                },
            );
            let within = chrono::Duration::from_std(w.within).unwrap_or(chrono::Duration::MAX);
            let after = t
                .checked_sub_signed(within)
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            let members = state.window_members(&rule.id, &key, after, t);
            if members.len() < w.threshold as usize {
                return None;
            }
            (
                members.into_iter().map(|m| m.submission_id).collect(),
                Some(key),
            )
        }
    };
    let throttle_key = match (&rule.throttle, rule.throttle_by.is_empty()) {
        (None, _) => None,
        (Some(_), false) => key_of(&rule.throttle_by, submission),
        (Some(_), true) => Some(
            group_key
                .clone()
                .unwrap_or_else(|| submission_id.to_string()),
        ),
    };
    if let Some(k) = &throttle_key
        && state
            .throttled_until(&rule.id, k)
            .is_some_and(|until| t < until)
    {
        return None;
    }
    if let (Some(d), Some(k)) = (rule.throttle, &throttle_key) {
        let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        state.set_throttle(
            &rule.id,
            k,
            t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC),
        );
    }
    match &group_key {
        Some(k) => state.window_consume(&rule.id, k, &members),
        None => state.mark_fired(&rule.id, submission_id),
    }
    let group_key = group_key.or(throttle_key);
    let fingerprint = sha256_hex(
        format!(
            "{}\n{}\n{}",
            rule.id,
            group_key.as_deref().unwrap_or(""),
            members.join("\n")
        )
        .as_bytes(),
    );
    Some(Alert {
        rule: rule.id.clone(),
        severity: rule.severity,
        labels: rule.labels.clone(),
        submission_id: submission_id.to_string(),
        count: members.len(),
        submission_ids: members,
        group_key,
        event_time: t,
        fingerprint,
    })
}

fn set_version(rules: &[Rule]) -> String {
    let mut lines: Vec<String> = rules
        .iter()
        .map(|r| format!("{} {}\n", r.id, r.version))
        .collect();
    lines.sort();
    sha256_hex(lines.concat().as_bytes())
}

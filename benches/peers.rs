//! Peers of issue 8: the same predicates over the same submissions, timed per
//! evaluation, in this engine's compiled conditions, in its Rhai scripts, and
//! in the `zen-expression` crate. Python's `rule-engine` runs the same
//! predicates from `scripts/peers.py` over the file this writes.
//!
//! The submissions come from the simulator's seeded generator, so every run
//! and every peer sees the same data. Each peer must agree on how many
//! submissions each predicate matches, or the comparison means nothing: the
//! bench fails when they disagree.
//!
//! `cargo bench --features bench --bench peers -- [--n 20000] [--rounds 5] [--out subs.jsonl]`
//! prints `peer: <name> ns/eval=<x> convert_ns/sub=<y> matches=[..]` lines.

use std::hint::black_box;
use std::io::Write;
use std::time::Instant;

use chrono::{DateTime, Utc};
use kyc_sentinel::rules::condition::Subject;
use kyc_sentinel::rules::script::{ScriptCtx, ScriptEngine};
use kyc_sentinel::rules::{ScriptLimits, load_sources};
use kyc_sentinel::simulator::Generator;
use serde_json::Value;
use zen_expression::variable::Variable;
use zen_expression::vm::VM;

/// (name, engine YAML `when:`, Rhai, zen). Python's versions are in scripts/peers.py,
/// in the same order. Strings compare case-insensitively in this engine, so the
/// peers lower-case where the data's case varies (`risk_level_summary`).
const PREDICATES: &[(&str, &str, &str, &str)] = &[
    (
        "blacklisted-country",
        "all:\n  - field: kyc.result\n    eq: rejected\n  - field: kyc.commentCode\n    in: [blacklistCountry, id_info_blacklist]",
        r#"s.kyc.result == "rejected" && s.kyc.commentCode != () && s.kyc.commentCode.some(|c| c == "blacklistCountry" || c == "id_info_blacklist")"#,
        r#"kyc.result == "rejected" and some(kyc.commentCode ?? [], # in ["blacklistCountry", "id_info_blacklist"])"#,
    ),
    (
        "bank-verification-failed",
        "field: bank_verification.result\neq: fail",
        r#"s.bank_verification.result == "fail""#,
        r#"bank_verification.result == "fail""#,
    ),
    (
        "aml-red-flag-high",
        "all:\n  - field: aml.currentstatus\n    eq: Red Flag\n  - field: aml.risk_level_summary\n    eq: high",
        r#"s.aml.currentstatus == "Red Flag" && s.aml.risk_level_summary != () && s.aml.risk_level_summary.to_lower() == "high""#,
        r#"aml.currentstatus == "Red Flag" and lower(aml.risk_level_summary ?? "") == "high""#,
    ),
    (
        "low-liveness",
        "field: kyc.attempts[*].livenessScore\nlt: 50\nevery: true",
        r#"s.kyc.attempts != () && s.kyc.attempts.len() > 0 && s.kyc.attempts.all(|a| a.livenessScore != () && a.livenessScore < 50)"#,
        r#"len(kyc.attempts ?? []) > 0 and all(kyc.attempts, #.livenessScore != null and #.livenessScore < 50)"#,
    ),
];

fn arg(name: &str) -> Option<String> {
    let mut it = std::env::args();
    while let Some(a) = it.next() {
        if a == name {
            return it.next();
        }
    }
    None
}

fn submissions(n: usize) -> Vec<Value> {
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().expect("a time");
    let mut g = Generator::new(7, start);
    (0..n)
        .map(|i| g.submission_at(start + chrono::Duration::seconds(i as i64 * 30)))
        .collect()
}

/// Best-of-`rounds` wall time of `f`, in seconds.
fn best(rounds: usize, mut f: impl FnMut()) -> f64 {
    (0..rounds.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn report(name: &str, eval_s: f64, convert_s: f64, n: usize, matches: &[usize]) {
    let evals = (n * PREDICATES.len()) as f64;
    println!(
        "peer: {name} ns/eval={:.1} convert_ns/sub={:.1} matches={matches:?}",
        eval_s * 1e9 / evals,
        convert_s * 1e9 / n as f64
    );
}

fn main() {
    let n: usize = arg("--n").map_or(20_000, |s| s.parse().expect("--n is a number"));
    let rounds: usize = arg("--rounds").map_or(5, |s| s.parse().expect("--rounds is a number"));
    let subs = submissions(n);
    if let Some(path) = arg("--out") {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("--out file"));
        for s in &subs {
            writeln!(f, "{s}").expect("write --out");
        }
    }
    let derived = Value::Object(Default::default());

    // 1. This engine's compiled conditions, loaded as rules are.
    let yaml: String = PREDICATES
        .iter()
        .map(|(id, when, _, _)| {
            let when = when.replace('\n', "\n    ");
            format!("- id: {id}\n  description: bench\n  severity: low\n  when:\n    {when}\n")
        })
        .collect();
    let set = load_sources(&[("peers.yaml".into(), yaml)], ScriptLimits::default())
        .unwrap_or_else(|d| panic!("bench rules do not load: {d:?}"));
    let scripts = ScriptEngine::new(ScriptLimits::default());
    let mut compiled_matches = vec![0; PREDICATES.len()];
    let t = best(rounds, || {
        compiled_matches.iter_mut().for_each(|m| *m = 0);
        for s in &subs {
            let subject = Subject {
                submission: s,
                derived: &derived,
            };
            let mut ctx = ScriptCtx::new(&scripts, None, s, &derived);
            for (i, rule) in set.rules().iter().enumerate() {
                compiled_matches[i] += usize::from(rule.when.eval(&subject, &mut ctx));
            }
        }
    });
    report("compiled-conditions", t, 0.0, n, &compiled_matches);

    // 2. Rhai: the submission is bound once per submission (to a Rhai map),
    //    then each script runs. Binding is timed apart.
    let compiled: Vec<_> = PREDICATES
        .iter()
        .map(|(id, _, rhai, _)| {
            scripts
                .compile(rhai)
                .unwrap_or_else(|e| panic!("rhai {id}: {e:?}"))
        })
        .collect();
    let bind = best(rounds, || {
        for s in &subs {
            drop(black_box(scripts.bind(s, &derived, None)));
        }
    });
    let mut rhai_matches = vec![0; PREDICATES.len()];
    let total = best(rounds, || {
        rhai_matches.iter_mut().for_each(|m| *m = 0);
        for s in &subs {
            let mut ctx = ScriptCtx::new(&scripts, None, s, &derived);
            for (i, script) in compiled.iter().enumerate() {
                rhai_matches[i] += usize::from(ctx.run(script));
            }
            assert!(ctx.errors.is_empty(), "rhai errors: {:?}", ctx.errors);
        }
    });
    report("rhai", (total - bind).max(0.0), bind, n, &rhai_matches);

    // 3. zen-expression: the submission becomes a zen `Variable` once, then
    //    each compiled expression runs on one reused VM.
    let exprs: Vec<_> = PREDICATES
        .iter()
        .map(|(id, _, _, zen)| {
            zen_expression::compile_expression(zen).unwrap_or_else(|e| panic!("zen {id}: {e:?}"))
        })
        .collect();
    let convert = best(rounds, || {
        for s in &subs {
            drop(black_box(Variable::from(s.clone())));
        }
    });
    let vars: Vec<Variable> = subs.iter().map(|s| Variable::from(s.clone())).collect();
    let mut vm = VM::new();
    let mut zen_matches = vec![0; PREDICATES.len()];
    let t = best(rounds, || {
        zen_matches.iter_mut().for_each(|m| *m = 0);
        for v in &vars {
            for (i, e) in exprs.iter().enumerate() {
                let r = e.evaluate_with(v.clone(), &mut vm).expect("zen evaluates");
                zen_matches[i] += usize::from(matches!(r, Variable::Bool(true)));
            }
        }
    });
    report("zen-expression", t, convert, n, &zen_matches);

    assert_eq!(
        compiled_matches, rhai_matches,
        "rhai disagrees with the compiled conditions"
    );
    assert_eq!(
        compiled_matches, zen_matches,
        "zen disagrees with the compiled conditions"
    );
    println!(
        "peers agree: {n} submissions x {} predicates",
        PREDICATES.len()
    );
}

//! Rule evaluation throughput on simulator submissions (parsing excluded).
//!
//! Three rule sets from the shipped pack: all of it, its declarative rules
//! alone, its Rhai rules alone. Throughput is in rule evaluations (one rule
//! tested against one submission, including derived fields, state and
//! firing); criterion prints it as `elem/s`.
//!
//!     cargo bench --features bench --bench rules

use std::hint::black_box;
use std::path::Path;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kyc_sentinel::rules::{MemoryState, RuleSet, ScriptLimits, load_path};
use kyc_sentinel::simulator::generator::Generator;
use serde_json::Value;

const SUBMISSIONS: usize = 2_000;

fn submissions() -> Vec<Value> {
    let mut g = Generator::new(7, Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap());
    (0..SUBMISSIONS).map(|_| g.next_submission()).collect()
}

fn bench_set(c: &mut Criterion, name: &str, set: &RuleSet, batch: &[Value]) {
    let mut group = c.benchmark_group("rules");
    group.sample_size(20);
    group.throughput(Throughput::Elements(
        (batch.len() * set.rules().len()) as u64,
    ));
    group.bench_function(name, |b| {
        b.iter(|| {
            let mut state = MemoryState::new();
            let out = set.evaluate_batch(black_box(batch), &mut state);
            black_box(out.submissions.len())
        })
    });
    group.finish();
}

fn rules(c: &mut Criterion) {
    let pack = load_path(Path::new("rules"), ScriptLimits::default()).expect("shipped pack");
    let batch = submissions();
    let declarative = pack.filter(|r| !r.has_script);
    let rhai = pack.filter(|r| r.has_script);
    eprintln!(
        "{} submissions; pack {} rules ({} declarative, {} Rhai)",
        batch.len(),
        pack.rules().len(),
        declarative.rules().len(),
        rhai.rules().len()
    );
    bench_set(c, "pack", &pack, &batch);
    bench_set(c, "declarative", &declarative, &batch);
    bench_set(c, "rhai", &rhai, &batch);
}

/// Where a Rhai rule's time goes: binding a submission as `s` (once per
/// submission, shared by all its scripts) and running a script.
fn parts(c: &mut Criterion) {
    use kyc_sentinel::rules::script::ScriptEngine;
    let batch = submissions();
    let engine = ScriptEngine::new(ScriptLimits::default());
    let derived = serde_json::json!({"event_time": "2024-05-01T00:00:00.000Z"});
    // What the pack's scripts read.
    let pack = load_path(Path::new("rules"), ScriptLimits::default()).expect("shipped pack");
    let mut all_scripts = Vec::new();
    for r in pack.rules() {
        r.when.scripts(&mut all_scripts);
    }
    let paths = kyc_sentinel::rules::script::union_paths(all_scripts).expect("narrow paths");
    let mut group = c.benchmark_group("rhai-parts");
    group.sample_size(10);
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("bind-whole-submission", |b| {
        b.iter(|| {
            for s in &batch {
                let _ = black_box(engine.bind(s, &derived, None));
            }
        })
    });
    group.bench_function("bind-read-paths", |b| {
        b.iter(|| {
            for s in &batch {
                let _ = black_box(engine.bind(s, &derived, Some(&paths)));
            }
        })
    });
    let bound: Vec<_> = batch
        .iter()
        .map(|s| engine.bind(s, &derived, Some(&paths)))
        .collect();
    let face = pack.rule("repeated-face-mismatch").expect("in the pack");
    let mut scripts = Vec::new();
    face.when.scripts(&mut scripts);
    let script = scripts[0].clone();
    group.bench_function("run-face-mismatch-script", |b| {
        b.iter(|| {
            for s in &bound {
                black_box(engine.run_bound(&script, s).ok());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, rules, parts);
criterion_main!(benches);

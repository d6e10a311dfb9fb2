//! docs/rules.md, the rule contract, is executed: every `yaml rule` block
//! loads, and every example (`yaml rule`, `jsonl input`, `jsonl alerts` in a
//! row) gives, through the `eval` binary, exactly the alerts it lists, in
//! order. An expected alert checks only the keys it lists.

use std::process::Command;

use kyc_sentinel::rules::{ScriptLimits, load_sources};
use serde_json::Value;

use crate::common::repo;

/// One fenced block: its info string, body and the line it starts on.
struct Block {
    info: String,
    body: String,
    line: usize,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_owned(),
                    body: String::new(),
                    line: i + 1,
                })
            }
            (Some(_), Some("")) => out.push(open.take().unwrap()),
            (Some(b), _) => {
                b.body.push_str(line);
                b.body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(
        open.is_none(),
        "docs/rules.md: a fenced block is not closed"
    );
    out
}

struct Example<'a> {
    rule: &'a Block,
    input: &'a Block,
    alerts: &'a Block,
}

fn examples(blocks: &[Block]) -> Vec<Example<'_>> {
    blocks
        .windows(3)
        .filter(|w| w[0].info == "yaml rule" && w[1].info == "jsonl input")
        .map(|w| {
            assert_eq!(
                w[2].info, "jsonl alerts",
                "docs/rules.md:{}: an input block must be followed by a `jsonl alerts` block",
                w[1].line
            );
            Example {
                rule: &w[0],
                input: &w[1],
                alerts: &w[2],
            }
        })
        .collect()
}

fn doc_blocks() -> Vec<Block> {
    blocks(&std::fs::read_to_string(repo().join("docs/rules.md")).expect("docs/rules.md exists"))
}

fn eval(dir: &std::path::Path, ex: &Example) -> Vec<Value> {
    std::fs::write(dir.join("rules.yaml"), &ex.rule.body).unwrap();
    std::fs::write(dir.join("input.jsonl"), &ex.input.body).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args(["eval", "--rules"])
        .arg(dir.join("rules.yaml"))
        .arg("--input")
        .arg(dir.join("input.jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docs/rules.md:{}: eval failed: {}",
        ex.rule.line,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Whether `got` has every key of `want` with the same value.
fn matches(want: &Value, got: &Value) -> bool {
    want.as_object()
        .expect("an expected alert is an object")
        .iter()
        .all(|(k, v)| got.get(k) == Some(v))
}

#[test]
fn every_rule_block_in_the_contract_loads() {
    let rules: Vec<Block> = doc_blocks()
        .into_iter()
        .filter(|b| b.info == "yaml rule")
        .collect();
    assert!(rules.len() >= 8, "the contract shows its rules");
    for b in &rules {
        let name = format!("docs/rules.md:{}", b.line);
        if let Err(diags) = load_sources(&[(name.clone(), b.body.clone())], ScriptLimits::default())
        {
            panic!("{name}: rule block does not load: {diags:?}");
        }
    }
}

#[test]
fn the_contract_examples_hold() {
    let all = doc_blocks();
    let examples = examples(&all);
    assert!(examples.len() >= 7, "found {} examples", examples.len());
    let dir = tempfile::tempdir().unwrap();
    for ex in &examples {
        let want: Vec<Value> = ex
            .alerts
            .body
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("an expected alert is JSON"))
            .collect();
        let got = eval(dir.path(), ex);
        let ok = want.len() == got.len() && want.iter().zip(&got).all(|(w, g)| matches(w, g));
        assert!(
            ok,
            "docs/rules.md:{}: the example's alerts differ\nexpected:\n{}\neval printed:\n{}",
            ex.alerts.line,
            ex.alerts.body,
            got.iter().map(|g| format!("{g}\n")).collect::<String>()
        );
    }
}

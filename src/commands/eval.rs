//! `kyc-sentinel eval`: rules over submissions from a file or stdin, alerts
//! out as JSON lines, with state built from the input alone.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::EvalArgs;
use crate::rules::input::parse_submissions;
use crate::rules::{MemoryState, ScriptLimits, load_path};

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let set = match load_path(&args.rules, ScriptLimits::default()) {
        Ok(set) => set,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let (name, text) = match args.input.as_deref() {
        None => ("<stdin>".to_string(), read_stdin()?),
        Some(p) if p.as_os_str() == "-" => ("<stdin>".to_string(), read_stdin()?),
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => (p.display().to_string(), t),
            Err(e) => {
                eprintln!("error: {}: cannot read input: {e}", p.display());
                return Ok(ExitCode::from(2));
            }
        },
    };
    let items = match parse_submissions(&name, &text) {
        Ok(items) => items,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let batch: Vec<_> = items.iter().map(|i| i.submission.clone()).collect();
    let outcome = set.evaluate_batch(&batch, &mut MemoryState::new());
    if let Some(r) = outcome.rejected.first() {
        let item = &items[r.index];
        eprintln!(
            "error: {name}:{}: item {}: {}",
            item.line, item.item, r.reason
        );
        return Ok(ExitCode::from(2));
    }
    for e in outcome.errors() {
        eprintln!("warning: {e}");
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for alert in outcome.alerts() {
        serde_json::to_writer(&mut out, alert)?;
        out.write_all(b"\n")?;
    }
    out.flush().context("writing alerts to standard output")?;
    Ok(ExitCode::SUCCESS)
}

fn read_stdin() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading submissions from standard input")?;
    Ok(text)
}

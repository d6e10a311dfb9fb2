//! `kyc-sentinel test`: run rule unit tests (`*.test.yaml`), print a diff for
//! each failure; exit 1 when a test fails, 2 when rules or tests are invalid.

use std::process::ExitCode;

use crate::cli::TestArgs;
use crate::rules::testfile::{load_test_file, run_test, test_files};
use crate::rules::{ScriptLimits, load_path};

pub fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let set = match load_path(&args.rules, ScriptLimits::default()) {
        Ok(set) => set,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let paths = if args.paths.is_empty() {
        vec![args.rules.clone()]
    } else {
        args.paths.clone()
    };
    let files = match test_files(&paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot list test files: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut tests = Vec::new();
    let mut invalid = false;
    for f in &files {
        match load_test_file(f) {
            Ok(t) => tests.extend(t),
            Err(diags) => {
                invalid = true;
                for d in diags {
                    eprintln!("{d}");
                }
            }
        }
    }
    if invalid {
        return Ok(ExitCode::from(2));
    }
    if tests.is_empty() {
        eprintln!(
            "error: no tests found in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(ExitCode::from(2));
    }
    let total = tests.len();
    let mut failed = 0;
    for t in tests {
        let r = run_test(&set, t);
        match &r.failure {
            None => println!("ok   {}:{}: {}", r.test.file, r.test.line, r.test.name),
            Some(report) => {
                failed += 1;
                println!(
                    "FAIL {}:{}: {}\n{report}",
                    r.test.file, r.test.line, r.test.name
                );
            }
        }
    }
    println!("{total} tests, {} passed, {failed} failed", total - failed);
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

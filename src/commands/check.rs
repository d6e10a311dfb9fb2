//! `kyc-sentinel check`: validate rule files and report every problem.

use std::process::ExitCode;

use crate::cli::CheckArgs;
use crate::rules::{ScriptLimits, load_path};

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    match load_path(&args.rules, ScriptLimits::default()) {
        Ok(set) => {
            println!(
                "{}: {} rules OK (rule set version {})",
                args.rules.display(),
                set.rules().len(),
                &set.version()[..12]
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!(
                "{}: {} problem{} found",
                args.rules.display(),
                diags.len(),
                if diags.len() == 1 { "" } else { "s" }
            );
            Ok(ExitCode::from(2))
        }
    }
}

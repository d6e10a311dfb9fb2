//! `kyc-sentinel eval`.

use std::process::ExitCode;

use crate::cli::EvalArgs;

pub fn run(_args: EvalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`eval` is not implemented yet")
}

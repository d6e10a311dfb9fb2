//! `kyc-sentinel simulate`.

use std::process::ExitCode;

use crate::cli::SimulateArgs;

pub fn run(_args: SimulateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`simulate` is not implemented yet")
}

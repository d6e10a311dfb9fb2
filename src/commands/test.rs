//! `kyc-sentinel test`.

use std::process::ExitCode;

use crate::cli::TestArgs;

pub fn run(_args: TestArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`test` is not implemented yet")
}

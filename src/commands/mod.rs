//! One module per CLI command: each turns parsed arguments into calls on the
//! library and decides the exit code.

use std::process::ExitCode;

use crate::cli::{Cli, Command};

mod backfill;
mod check;
mod eval;
mod run;
mod simulate;
mod test;

/// Runs the parsed command line. Errors that should stop the command are
/// returned; problems reported to the user (bad rules, failed tests) are
/// printed by the command itself and turned into an exit code.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Simulate(args) => simulate::run(args),
        Command::Check(args) => check::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Test(args) => test::run(args),
        Command::Run(args) => run::run(args),
        Command::Backfill(args) => backfill::run(args),
    }
}

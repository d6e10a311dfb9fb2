//! One module per CLI command: each turns parsed arguments into calls on the
//! library and decides the exit code.

use std::process::ExitCode;

use crate::cli::{Cli, Command};

mod audit;
mod backfill;
mod backtest;
mod check;
mod demo;
mod digest;
mod eval;
mod lifecycle;
mod notify;
mod run;
mod shadow;
mod silence;
mod simulate;
mod store;
mod test;
mod users;

/// Runs the parsed command line. Errors that should stop the command are
/// returned; problems reported to the user (bad rules, failed tests) are
/// printed by the command itself and turned into an exit code.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(args) => demo::run_demo(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Check(args) => check::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Test(args) => test::run(args),
        Command::Run(args) => run::run(args),
        Command::Backfill(args) => backfill::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Ack(args) => lifecycle::ack(args),
        Command::Resolve(args) => lifecycle::resolve(args),
        Command::Alerts(args) => lifecycle::alerts(args),
        Command::Silence(args) => silence::run(args),
        Command::NotifyTest(args) => notify::notify_test(args),
        Command::Render(args) => notify::render(args),
        Command::Digest(args) => digest::run(args),
        Command::Shadow(args) => shadow::run(args),
        Command::Backtest(args) => backtest::run(args),
        Command::Users(args) => users::run(args),
        Command::Store(cmd) => store::run(cmd),
    }
}

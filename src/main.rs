//! Thin entry point: parse the command line, run the command, map the outcome
//! to an exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = kyc_sentinel::cli::Cli::parse();
    match kyc_sentinel::commands::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line: the file,
            // request or submission the error came from is in that chain.
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

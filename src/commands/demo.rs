//! `kyc-sentinel demo`.

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::cli::DemoArgs;
use crate::demo::{DemoOptions, run};

pub fn run_demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    // Quiet logs: the progress line and the summary are the demo's output.
    crate::telemetry::init_logs_at(crate::cli::LogFormat::Text, "error");
    let opts = DemoOptions {
        duration: args.duration,
        out: args.out,
        seed: args.seed,
        backlog: args.backlog,
        rate: args.rate,
        progress: std::io::stderr().is_terminal(),
    };
    let rt = tokio::runtime::Runtime::new()?;
    let report = rt.block_on(run(opts))?;
    print!("{}", report.render());
    Ok(ExitCode::SUCCESS)
}

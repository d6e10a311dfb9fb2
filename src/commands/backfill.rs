//! `kyc-sentinel backfill`: evaluate a range of past days.

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::cli::BackfillArgs;
use crate::config::Config;
use crate::daemon::{BackfillOptions, backfill};

pub fn run(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    crate::telemetry::init_logs(args.log_format);
    let cfg = Config::load(&args.config).map_err(anyhow::Error::msg)?;
    let opts = BackfillOptions {
        from: args.from,
        to: args.to,
        concurrency: args.concurrency,
        progress: std::io::stderr().is_terminal(),
    };
    let rt = tokio::runtime::Runtime::new()?;
    let report = rt.block_on(backfill(cfg, opts))?;
    println!(
        "backfill {}..{}: {} submissions received, {} new or changed versions, {} alerts, {} rule errors, {} unreadable",
        args.from,
        args.to,
        report.received,
        report.changed,
        report.alerts,
        report.rule_errors,
        report.unreadable
    );
    Ok(ExitCode::SUCCESS)
}

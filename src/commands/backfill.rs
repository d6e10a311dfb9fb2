//! `kyc-sentinel backfill`: evaluate a range of past days.

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::cli::BackfillArgs;
use crate::daemon::{BackfillOptions, backfill};

pub fn run(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    crate::telemetry::init_logs(args.log_format);
    let cfg = crate::compose::load_config(&args.config).map_err(anyhow::Error::msg)?;
    let opts = BackfillOptions {
        from: args.from,
        to: args.to,
        concurrency: args.concurrency,
        progress: std::io::stderr().is_terminal(),
        notify: args.notify,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let report = rt.block_on(async move {
        match cfg.store.url {
            // PostgreSQL: no instance may act beside it (see `ha`).
            Some(_) => {
                crate::ha::exclusively(cfg, "backfill", async |c| backfill(c, opts).await).await
            }
            None => backfill(cfg, opts).await,
        }
    })?;
    print!("{}", summary(&args, &report));
    Ok(ExitCode::SUCCESS)
}

/// What the backfill did; when quiet, what it would have sent, per rule.
fn summary(args: &BackfillArgs, r: &crate::pipeline::BatchReport) -> String {
    let mut out = format!(
        "backfill {}..{}: {} submissions received, {} new or changed versions, {} alerts, {} rule errors, {} unreadable\n",
        args.from, args.to, r.received, r.changed, r.alerts, r.rule_errors, r.unreadable
    );
    if args.notify {
        return out;
    }
    let sent: usize = r.would_notify.values().sum();
    out += &format!(
        "quiet: the {} alerts are recorded as historical; nothing was sent (--notify sends them)\n\
         would have been sent: {sent} alert(s)",
        r.alerts
    );
    out += if sent == 0 { "\n" } else { ", by rule:\n" };
    for (rule, n) in &r.would_notify {
        out += &format!("  {rule}: {n}\n");
    }
    out
}

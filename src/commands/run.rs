//! `kyc-sentinel run`: the daemon, stopped by SIGINT or SIGTERM.

use std::process::ExitCode;

use tokio::sync::watch;

use crate::cli::RunArgs;
use crate::config::Config;

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    crate::telemetry::init_logs(args.log_format);
    let cfg = Config::load(&args.config).map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!(
                "signal received: stopping (finishing or rolling back the batch in flight)"
            );
            let _ = tx.send(true);
        });
        // With PostgreSQL, several instances may share the store: one leads.
        if cfg.store.url.is_some() {
            let rules = std::sync::Arc::new(crate::daemon::load_rules(&cfg)?);
            let clock = std::sync::Arc::new(crate::escalation::SystemClock);
            return crate::ha::run(cfg, rules, clock, rx).await;
        }
        crate::daemon::run(cfg, rx).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT or SIGTERM, whichever comes first.
pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

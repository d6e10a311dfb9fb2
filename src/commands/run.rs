//! `kyc-sentinel run`: the daemon, stopped by SIGINT or SIGTERM.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    crate::telemetry::init_logs(args.log_format);
    let cfg = crate::compose::load_config(&args.config).map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let tx = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!(
                "signal received: stopping (finishing or rolling back the batch in flight)"
            );
            tx.cancel();
        });
        // With PostgreSQL, several instances may share the store: one leads.
        if cfg.store.url.is_some() {
            let rules = std::sync::Arc::new(crate::compose::load_rules(&cfg)?);
            let clock = std::sync::Arc::new(crate::clock::SystemClock);
            return crate::ha::run(cfg, rules, clock, shutdown).await;
        }
        crate::daemon::run(cfg, shutdown).await
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

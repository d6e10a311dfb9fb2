//! `kyc-sentinel digest`: preview a configured digest, or send it now.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::DigestArgs;
use crate::config::{Config, LoadMode};
use crate::digest::Digester;
use crate::notify::outbox::Outbox;
use crate::store::DeliveryOutcome;

pub fn run(args: DigestArgs) -> anyhow::Result<ExitCode> {
    // A preview reads the store and renders: the secrets of receivers and
    // of Argos are not needed. Sending needs everything.
    let mode = if args.preview {
        LoadMode::StoreOnly
    } else {
        LoadMode::Strict
    };
    let cfg = crate::compose::load_config_with(&args.config, mode).map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(cfg, args))
}

async fn run_async(cfg: Config, args: DigestArgs) -> anyhow::Result<ExitCode> {
    let store = crate::store::open(&cfg.store).await?;
    let Some(d) = Digester::from_config(&cfg, store.clone())? else {
        anyhow::bail!(
            "{}: no `digests:` in the config (see docs: digests)",
            args.config.display()
        );
    };
    let at = args.at.unwrap_or_else(chrono::Utc::now);
    if args.preview {
        let r = d.preview(&args.name, at).await?;
        if let Some(out) = &args.out {
            std::fs::write(out, &r.html)
                .with_context(|| format!("{}: cannot write", out.display()))?;
            eprintln!("HTML written to {}", out.display());
        }
        println!("Subject: {}\n\n{}", r.subject, r.text);
        return Ok(ExitCode::SUCCESS);
    }
    let sent = d.send_now(&args.name, at).await?;
    if !sent.recorded {
        eprintln!(
            "digest `{}` for {} was already sent ({})",
            sent.name, sent.period_end, sent.key
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Deliver this digest's rows only: a running daemon owns the rest of the queue.
    let outbox: Outbox = Outbox::new(
        store.clone(),
        crate::compose::build_receivers(&cfg)?,
        cfg.outbox.clone(),
    );
    let mut failed = false;
    for row in store.pending_outbox_of(&sent.key).await? {
        match outbox.deliver_row(&row).await? {
            DeliveryOutcome::Delivered => println!("sent to `{}` ({})", row.receiver, sent.key),
            DeliveryOutcome::Retry { error, .. } => {
                eprintln!("`{}` failed, the daemon will retry: {error}", row.receiver);
                failed = true;
            }
            DeliveryOutcome::Dead { error } => {
                eprintln!("`{}` failed for good: {error}", row.receiver);
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

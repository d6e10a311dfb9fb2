//! `kyc-sentinel audit`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::AuditArgs;
use crate::config::Config;
use crate::store::SqliteStore;

pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(&args.config).map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        anyhow::ensure!(
            cfg.store.path.exists(),
            "no state store at {} (has `run` or `backfill` been started with this config?)",
            cfg.store.path.display()
        );
        let store = SqliteStore::open(&cfg.store.path).await?;
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        if let Some(fp) = &args.alert {
            let rec = store
                .alert(fp)
                .await?
                .with_context(|| format!("no alert with fingerprint {fp} in {}", cfg.store.path.display()))?;
            let audit = store.audit_for_alert(fp).await?;
            write!(out, "{}", crate::audit::render_alert(&rec, &audit))?;
        } else if let Some(id) = &args.submission {
            let rules = crate::daemon::load_rules(&cfg).ok();
            let text = crate::audit::render_submission(
                id,
                store.submission(id).await?,
                &store.audit_for_submission(id).await?,
                &store.window_memberships(id).await?,
                &store.alerts_of_submission(id).await?,
                rules.as_ref(),
            );
            write!(out, "{text}")?;
        } else if args.export {
            let (from, to) = (
                args.from.context("--export needs --from YYYYMMDD")?,
                args.to.context("--export needs --to YYYYMMDD")?,
            );
            let from_t = from.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
            let to_t = (to + chrono::Duration::days(1)).and_hms_opt(0, 0, 0).expect("midnight").and_utc();
            for e in store.audit_between(from_t, to_t).await? {
                serde_json::to_writer(&mut out, &e)?;
                out.write_all(b"\n")?;
            }
        } else {
            anyhow::bail!("say what to audit: --submission ID, --alert FINGERPRINT or --export --from D --to D");
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

//! `kyc-sentinel audit`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::AuditArgs;

pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    // The rules explain `--submission`; only a config names them.
    let cfg = match &args.at.config {
        Some(c) => Some(super::silence::store_only_config(c)?),
        None => None,
    };
    let store_name = super::silence::store_config(&args.at)?.describe();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let store = super::silence::open_existing(&args.at).await?;
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        if let Some(prefix) = &args.alert {
            // Any unique prefix of 8+ hex characters, as messages show 12.
            let fp = &store.resolve_fingerprint(prefix).await?.map_err(anyhow::Error::new)?;
            let rec = store
                .alert(fp)
                .await?
                .with_context(|| format!("no alert with fingerprint {fp} in {}", store_name))?;
            let audit = store.audit_for_alert(fp).await?;
            write!(out, "{}", crate::audit::render_alert(&rec, &audit))?;
        } else if let Some(id) = &args.submission {
            let rules = cfg.as_ref().and_then(|c| crate::compose::load_rules(c).ok());
            let text = crate::audit::render_submission(
                id,
                store.submission(id).await?,
                &store.audit_for_submission(id).await?,
                &store.memberships_of(id).await?,
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

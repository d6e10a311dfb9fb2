//! `kyc-sentinel shadow report`.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::{ShadowArgs, ShadowCommand};
use crate::shadow_report::{ShadowLine, build};
use crate::store::shadow::ShadowStore;

pub fn run(args: ShadowArgs) -> anyhow::Result<ExitCode> {
    let ShadowCommand::Report {
        config,
        since,
        json,
    } = args.command;
    let cfg = super::silence::store_only_config(&config)?;
    let rules = crate::compose::load_rules(&cfg)?;
    let path = cfg.store.path.clone();
    anyhow::ensure!(
        path.exists(),
        "no state store at {} (has `run` been started with {}?)",
        path.display(),
        config.display()
    );
    let since_t = chrono::Utc::now() - chrono::Duration::from_std(since)?;
    let rt = tokio::runtime::Runtime::new()?;
    let alerts = rt.block_on(async {
        let store: Arc<dyn ShadowStore> = crate::store::open_read_only(&cfg.store).await?;
        store.alerts_fired_since(since_t).await
    })?;
    let lines = build(&rules, &alerts);
    if json {
        let doc = serde_json::json!({
            "since": crate::store::fmt_time(since_t),
            "shadow_rules": lines,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", table(&lines, since_t));
    }
    Ok(ExitCode::SUCCESS)
}

fn table(lines: &[ShadowLine], since: chrono::DateTime<chrono::Utc>) -> String {
    let mut out = format!(
        "shadow rules since {} (alerts recorded, never sent)\n",
        crate::store::fmt_time(since)
    );
    if lines.is_empty() {
        out.push_str("no shadow rules in the config and no shadow alerts recorded\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<28} {:>7}  {:<28} {:>7}  {:>5} {:>11} {:>13}",
        "SHADOW RULE", "ALERTS", "REPLACES", "ALERTS", "BOTH", "ONLY SHADOW", "ONLY REPLACED"
    );
    for l in lines {
        let note = if l.in_config {
            ""
        } else {
            " (not a shadow rule of the config now)"
        };
        let _ = writeln!(
            out,
            "{:<28} {:>7}  {:<28} {:>7}  {:>5} {:>11} {:>13}{note}",
            l.rule,
            l.alerts,
            l.replaces.as_deref().unwrap_or("-"),
            l.replaced_alerts,
            l.submissions.both,
            l.submissions.only_b,
            l.submissions.only_a,
        );
        for (what, ids) in [
            ("only shadow", &l.submissions.examples_only_b),
            ("only replaced", &l.submissions.examples_only_a),
        ] {
            if !ids.is_empty() {
                let _ = writeln!(out, "    e.g. {what}: {}", ids.join(", "));
            }
        }
    }
    out
}

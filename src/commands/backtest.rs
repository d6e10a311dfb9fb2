//! `kyc-sentinel backtest`.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};

use crate::backtest::{BacktestReport, RuleComparison};
use crate::cli::BacktestArgs;
use crate::store::shadow::{ShadowStore, end_of_time, start_of_time};

/// Shown in the table; `--json` lists every skipped version.
const SKIPPED_SHOWN: usize = 10;

pub fn run(args: BacktestArgs) -> anyhow::Result<ExitCode> {
    let cfg = super::silence::store_only_config(&args.config)?;
    let candidates = crate::rules::load_path(&args.rules, crate::rules::ScriptLimits::default())
        .map_err(|diags| {
            let text: Vec<String> = diags.iter().map(ToString::to_string).collect();
            anyhow::anyhow!(
                "the candidate rules in {} have problems:\n{}",
                args.rules.display(),
                text.join("\n")
            )
        })?;
    let path = cfg.store.path.clone();
    anyhow::ensure!(
        path.exists(),
        "no state store at {} (has `run` or `backfill` been started with {}?)",
        path.display(),
        args.config.display()
    );
    let day = |d: Option<NaiveDate>, next: bool, default: DateTime<Utc>| match d {
        Some(d) => (d + chrono::Duration::days(next as i64))
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc(),
        None => default,
    };
    let from = day(args.from, false, start_of_time());
    let to = day(args.to, true, end_of_time());
    let rt = tokio::runtime::Runtime::new()?;
    let report = rt.block_on(async {
        let store: Arc<dyn ShadowStore> = crate::store::open_read_only(&cfg.store).await?;
        crate::backtest::run(store, &candidates, from, to).await
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report, &args.rules.display().to_string()));
    }
    if args.fail_on_missed_reported && report.reported_missed > 0 {
        eprintln!(
            "backtest: the candidates would not have fired on {} submission(s) an analyst reported",
            report.reported_missed
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn pct(p: Option<f64>) -> String {
    p.map(|p| format!("{:.0}%", p * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn table(r: &BacktestReport, rules: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "backtest of {rules}: {} stored versions, {} evaluated, {} skipped (raw JSON purged by retention), {} unreadable; {} versions/s",
        r.versions,
        r.evaluated,
        r.skipped_purged,
        r.unreadable.len(),
        r.versions_per_second
    );
    if !r.skipped.is_empty() {
        let more = r.skipped.len().saturating_sub(SKIPPED_SHOWN);
        let shown: Vec<&str> = r
            .skipped
            .iter()
            .take(SKIPPED_SHOWN)
            .map(String::as_str)
            .collect();
        let tail = if more > 0 {
            format!(" and {more} more (--json lists all)")
        } else {
            String::new()
        };
        let _ = writeln!(out, "skipped: {}{tail}", shown.join(", "));
    }
    for u in &r.unreadable {
        let _ = writeln!(out, "unreadable: {u}");
    }
    let _ = writeln!(
        out,
        "\n{:<26} {:<26} {:>5} {:>5} {:>5} {:>9} {:>9}  {:>8} {:>8} {:>9}  {:>9}",
        "CANDIDATE",
        "LIVE RULE",
        "LIVE",
        "CAND",
        "BOTH",
        "ONLY-LIVE",
        "ONLY-CAND",
        "FP-AVOID",
        "REP-MISS",
        "ESC-MISS",
        "PRECISION"
    );
    for c in &r.rules {
        let _ = writeln!(
            out,
            "{:<26} {:<26} {:>5} {:>5} {:>5} {:>9} {:>9}  {:>8} {:>8} {:>9}  {:>9}",
            c.candidate.as_deref().unwrap_or("(none: dropped)"),
            c.live,
            c.alerts_live,
            c.alerts_candidate,
            c.both,
            c.only_live,
            c.only_candidate,
            c.dropped.false_positive,
            c.dropped.reported,
            c.dropped.escalated_to_aml_officer,
            format!("{}>{}", pct(c.precision_live), pct(c.precision_candidate)),
        );
        examples(&mut out, c);
    }
    let _ = writeln!(
        out,
        "\nfalse positives avoided: {}; reported missed: {}; escalated missed: {}",
        r.false_positives_avoided, r.reported_missed, r.escalated_missed
    );
    out.push_str(
        "(counted per submission; precision = (reported + escalated) / (those + false positives) \
         of the analysts' resolutions, live rule > candidate; sent nothing, wrote nothing)\n",
    );
    out
}

fn examples(out: &mut String, c: &RuleComparison) {
    for (what, ids) in [
        ("both", &c.examples_both),
        ("only live", &c.examples_only_live),
        ("only candidate", &c.examples_only_candidate),
    ] {
        if !ids.is_empty() {
            let _ = writeln!(out, "    e.g. {what}: {}", ids.join(", "));
        }
    }
}

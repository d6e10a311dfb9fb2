//! `kyc-sentinel check`: validate rule files and report every problem; with
//! `--config`, the whole configuration (file, rules, route, receivers,
//! templates) at once, so a broken template is found before the daemon starts.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::CheckArgs;
use crate::config::Config;
use crate::rules::{ScriptLimits, load_path};
use crate::templates::Templates;

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    if let Some(cfg) = &args.config {
        return check_config(cfg);
    }
    Ok(if check_rules(&args.rules) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Prints the rules' verdict; true when they load.
fn check_rules(rules: &Path) -> bool {
    match load_path(rules, ScriptLimits::default()) {
        Ok(set) => {
            println!(
                "{}: {} rules OK (rule set version {})",
                rules.display(),
                set.rules().len(),
                &set.version()[..12]
            );
            true
        }
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!(
                "{}: {} problem{} found",
                rules.display(),
                diags.len(),
                if diags.len() == 1 { "" } else { "s" }
            );
            false
        }
    }
}

fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{}: configuration refused", path.display());
            return Ok(ExitCode::from(2));
        }
    };
    let mut ok = check_rules(&cfg.rules);
    let mut problems: Vec<String> = Vec::new();
    let templates = match Templates::load(&cfg.templates) {
        Ok(t) => {
            problems.extend(t.check_all());
            problems.extend(t.check_render_budget());
            Some(t)
        }
        Err(errs) => {
            problems.extend(errs);
            None
        }
    };
    // Building the receivers finds missing templates, unreadable CA files and
    // templates that need params the receiver lacks.
    if templates.is_some()
        && let Err(e) = crate::daemon::build_receivers(&cfg)
    {
        problems.extend(e.to_string().lines().skip(1).map(str::to_owned));
    }
    if let Some(t) = &templates {
        problems.extend(
            cfg.digests
                .iter()
                .filter_map(|d| crate::digest::check_templates(d, t).err()),
        );
    }
    for p in &problems {
        eprintln!("{}: {p}", path.display());
    }
    ok &= problems.is_empty();
    if ok {
        let n_templates = templates.as_ref().map_or(0, |t| t.names().len());
        println!(
            "{}: configuration OK ({} receivers, {}, {} templates)",
            path.display(),
            cfg.receivers.len(),
            if cfg.route.is_some() {
                "routes"
            } else {
                "every alert to every receiver"
            },
            n_templates
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{}: configuration has problems", path.display());
        Ok(ExitCode::from(2))
    }
}

//! `kyc-sentinel check`: validate rule files and report every problem; with
//! `--config`, the whole configuration (file, rules, route, receivers,
//! templates) at once, so a broken template is found before the daemon starts.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::CheckArgs;
use crate::rules::script::{RunError, ScriptEngine};
use crate::rules::{MemoryState, RuleSet, ScriptLimits, load_path};
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

/// Prints the rules' verdict; true when they load and every script gives a
/// boolean on the sample submissions.
fn check_rules(rules: &Path) -> bool {
    let diags = match load_path(rules, ScriptLimits::default()) {
        Ok(set) => {
            let sample = sample_run(&set);
            for w in &sample.warnings {
                eprintln!("{w}");
            }
            if sample.problems.is_empty() {
                println!(
                    "{}: {} rules OK (rule set version {})",
                    rules.display(),
                    set.rules().len(),
                    &set.version()[..12]
                );
                return true;
            }
            sample.problems
        }
        Err(diags) => diags.iter().map(ToString::to_string).collect(),
    };
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

/// What running every script on sample submissions found.
#[derive(Default)]
struct SampleRun {
    /// A script that returned something other than a boolean: it can never fire.
    problems: Vec<String>,
    /// A script that failed on a sample (it may depend on data the samples
    /// lack); reported, not refused.
    warnings: Vec<String>,
}

/// Submissions like Argos's (the simulator's generator, fixed seed) plus
/// the built-in sample alert's, with an AML red flag.
fn samples() -> Vec<serde_json::Value> {
    const SEED: u64 = 7;
    const COUNT: usize = 40;
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-15T09:00:00Z")
        .expect("valid time")
        .with_timezone(&chrono::Utc);
    let mut g = crate::simulator::generator::Generator::new(SEED, base);
    let mut out: Vec<serde_json::Value> = (0..COUNT).map(|_| g.next_submission()).collect();
    let sample: serde_json::Value =
        serde_json::from_str(include_str!("../notify/sample_alert.json")).expect("valid sample");
    out.extend(sample.get("submission").cloned());
    out
}

/// Runs each script of each rule on the samples, reporting each script once
/// at `path:line:column` of its rule file.
fn sample_run(set: &RuleSet) -> SampleRun {
    let engine = ScriptEngine::new(ScriptLimits::default());
    let mut state = MemoryState::new();
    let mut bound = Vec::new();
    for s in samples() {
        if let Ok(outcome) = set.evaluate(&s, &mut state) {
            bound.push(engine.bind(&s, &outcome.derived, None));
        }
    }
    let mut out = SampleRun::default();
    for rule in set.rules() {
        let mut scripts = Vec::new();
        rule.when.scripts(&mut scripts);
        for script in scripts {
            let failure = bound
                .iter()
                .find_map(|b| engine.run_checked(script, b).err());
            let at = script
                .file_position(1, 1)
                .map(|(f, l, c)| format!("{f}:{l}:{c}"))
                .unwrap_or_else(|| rule.origin.to_string());
            match failure {
                Some(RunError::NotBoolean(t)) => out.problems.push(format!(
                    "{at}: rule `{}`: script returned {t}, not a boolean, on a sample submission (a condition must be true or false)",
                    rule.id
                )),
                Some(RunError::Failed(m)) => out.warnings.push(format!(
                    "{at}: warning: rule `{}`: script failed on a sample submission: {m}",
                    rule.id
                )),
                None => {}
            }
        }
    }
    out
}

fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = match crate::compose::load_config(path) {
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
            problems.extend(crate::compose::check_templates(&t));
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
    // Inside a runtime: the SMTP pool spawns its maintenance task when built
    // (and again when dropped).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if templates.is_some()
        && let Err(e) = rt.block_on(async { crate::compose::build_receivers(&cfg).map(drop) })
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

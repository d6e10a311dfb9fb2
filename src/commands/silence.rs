//! `kyc-sentinel silence add|list|expire`: silences in the state store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::Utc;

use crate::cli::{SilenceArgs, SilenceCommand, StoreLocation};
use crate::config::{Config, LoadMode, StoreConfig};
use crate::notify::silence::{Known, NewSilence, never_matches, parse_matcher};
use crate::store::{StateStore, fmt_time};
use std::sync::Arc;

/// The store file named by `--store`, or the config's `store:` (read
/// without needing its secrets).
pub(super) fn store_config(at: &StoreLocation) -> anyhow::Result<StoreConfig> {
    match (&at.config, &at.store) {
        (_, Some(p)) => Ok(StoreConfig {
            path: p.clone(),
            ..StoreConfig::default()
        }),
        (Some(c), None) => Ok(store_only_config(c)?.store),
        (None, None) => anyhow::bail!("give --config FILE or --store FILE"),
    }
}

/// The store (created if missing): the one opener of the commands.
pub(super) async fn open_at(at: &StoreLocation) -> anyhow::Result<Arc<dyn StateStore>> {
    Ok(crate::store::open(&store_config(at)?).await?)
}

pub(super) fn store_only_config(path: &Path) -> anyhow::Result<Config> {
    crate::compose::load_config_with(path, LoadMode::StoreOnly).map_err(anyhow::Error::msg)
}

/// The store, which must exist already (these commands never create one).
pub(super) async fn open_existing(at: &StoreLocation) -> anyhow::Result<Arc<dyn StateStore>> {
    let cfg = store_config(at)?;
    let path = &cfg.path;
    // A PostgreSQL database is not created by opening it: nothing to check.
    anyhow::ensure!(
        cfg.url.is_some() || path.exists(),
        "no state store at {} (has `run` or `backfill` been started with this config?)",
        path.display()
    );
    open_at(at).await
}

/// Refuses a silence no rule could match, listing what would; `--force`
/// turns the refusal into a warning.
fn check_can_match(
    at: &StoreLocation,
    rules: Option<&Path>,
    rule: Option<&str>,
    matchers: &BTreeMap<String, String>,
    force: bool,
) -> anyhow::Result<()> {
    // As `check`: without a config or --rules, the `rules` folder here.
    let folder = match (rules, &at.config) {
        (Some(r), _) => Some(r.to_path_buf()),
        (None, Some(c)) => Some(store_only_config(c)?.rules),
        (None, None) => Some(PathBuf::from("rules")).filter(|p| p.is_dir()),
    };
    let problems = match &folder {
        Some(f) => {
            let set =
                crate::rules::load_path(f, crate::rules::ScriptLimits::default()).map_err(|d| {
                    anyhow::anyhow!(
                        "{}: the rules have problems (see `kyc-sentinel check --rules {}`)",
                        f.display(),
                        f.display()
                    )
                    .context(d.first().map(ToString::to_string).unwrap_or_default())
                })?;
            never_matches(rule, matchers, &Known::from_rules(set.rules()))
        }
        None => vec![
            "cannot check that the silence can match (no `rules` folder here): give --config or --rules DIR"
                .to_string(),
        ],
    };
    if problems.is_empty() {
        return Ok(());
    }
    if force {
        for p in &problems {
            eprintln!("warning: {p} (kept: --force)");
        }
        return Ok(());
    }
    anyhow::bail!(
        "this silence would never match:\n  {}\n(--force keeps it anyway)",
        problems.join("\n  ")
    )
}

pub fn run(args: SilenceArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match args.command {
            SilenceCommand::Add {
                at,
                rule,
                matchers,
                duration,
                reason,
                author,
                rules,
                force,
            } => {
                let mut m = BTreeMap::new();
                for text in &matchers {
                    let (k, v) = parse_matcher(text).map_err(|e| anyhow::anyhow!("--match {e}"))?;
                    m.insert(k, v);
                }
                anyhow::ensure!(
                    rule.is_some() || !m.is_empty(),
                    "a silence needs --rule or at least one --match (it would silence everything)"
                );
                anyhow::ensure!(!reason.trim().is_empty(), "--reason must say why");
                let d = crate::util::parse_duration(&duration)
                    .map_err(|e| anyhow::anyhow!("--for: {e}"))?;
                check_can_match(&at, rules.as_deref(), rule.as_deref(), &m, force)?;
                let author = author
                    .or_else(|| std::env::var("USER").ok())
                    .unwrap_or_else(|| "unknown".into());
                let now = Utc::now();
                let store = open_at(&at).await?;
                let id = store
                    .add_silence(&NewSilence {
                        rule,
                        matchers: m,
                        reason,
                        author,
                        starts_at: now,
                        ends_at: now + chrono::Duration::from_std(d)?,
                    })
                    .await?;
                println!(
                    "silence {id} added, until {}",
                    fmt_time(now + chrono::Duration::from_std(d)?)
                );
                Ok(ExitCode::SUCCESS)
            }
            SilenceCommand::List { at, all } => {
                let store = open_at(&at).await?;
                let now = Utc::now();
                let list = store.silences(now, all).await?;
                if list.is_empty() {
                    println!("no silences{}", if all { "" } else { " in force" });
                }
                for s in list {
                    let what: Vec<String> = s
                        .rule
                        .iter()
                        .map(|r| format!("rule={r}"))
                        .chain(s.matchers.iter().map(|(k, v)| format!("{k}={v}")))
                        .collect();
                    println!(
                        "{}\t{}\t{}\tuntil {}\tby {}\t{}",
                        s.id,
                        if s.is_active(now) {
                            "active"
                        } else {
                            "expired"
                        },
                        what.join(","),
                        fmt_time(s.ends_at),
                        s.author,
                        s.reason
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            SilenceCommand::Expire { at, id } => {
                let store = open_at(&at).await?;
                if store.expire_silence(id, Utc::now()).await? {
                    println!("silence {id} expired");
                    Ok(ExitCode::SUCCESS)
                } else {
                    eprintln!("no silence with id {id}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    })
}

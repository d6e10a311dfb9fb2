//! `kyc-sentinel silence add|list|expire`: silences in the state store.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;

use crate::cli::{SilenceArgs, SilenceCommand, StoreLocation};
use crate::config::Config;
use crate::notify::silence::{NewSilence, parse_matcher};
use crate::store::{SqliteStore, Store, fmt_time};

fn store_path(at: &StoreLocation) -> anyhow::Result<PathBuf> {
    match (&at.config, &at.store) {
        (_, Some(p)) => Ok(p.clone()),
        (Some(c), None) => Ok(Config::load(c).map_err(anyhow::Error::msg)?.store.path),
        (None, None) => anyhow::bail!("give --config FILE or --store FILE"),
    }
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
                let author = author
                    .or_else(|| std::env::var("USER").ok())
                    .unwrap_or_else(|| "unknown".into());
                let now = Utc::now();
                let store = SqliteStore::open(&store_path(&at)?).await?;
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
                let store = SqliteStore::open(&store_path(&at)?).await?;
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
                let store = SqliteStore::open(&store_path(&at)?).await?;
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

//! `kyc-sentinel ack`, `resolve`, `alerts list`.

use std::process::ExitCode;

use crate::cli::{AckArgs, AlertsArgs, AlertsCommand, ResolveArgs, StoreLocation};
use crate::store::lifecycle::{Action, AlertFilter, AlertState, ChangeError};
use crate::store::lookup::short;
use crate::store::prelude::*;
use std::sync::Arc;

async fn open(at: &StoreLocation) -> anyhow::Result<Arc<dyn StateStore>> {
    super::silence::open_existing(at).await
}

fn change(at: &StoreLocation, fp: &str, by: &str, action: Action) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let store = open(at).await?;
        // Messages show 12 characters: any unique prefix of 8 or more works.
        let fp = match store.resolve_fingerprint(fp).await? {
            Ok(full) => full,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(1));
            }
        };
        match store.change_alert(&fp, by, action).await {
            Ok(state) => {
                println!("alert {} ({fp}): {}", short(&fp), state.as_str());
                Ok(ExitCode::SUCCESS)
            }
            Err(ChangeError::Refused(e)) => {
                eprintln!("error: {e}");
                Ok(ExitCode::from(1))
            }
            Err(ChangeError::Store(e)) => Err(e.into()),
        }
    })
}

pub fn ack(a: AckArgs) -> anyhow::Result<ExitCode> {
    change(&a.at, &a.fingerprint, &a.by, Action::Ack { note: a.note })
}

pub fn resolve(a: ResolveArgs) -> anyhow::Result<ExitCode> {
    change(
        &a.at,
        &a.fingerprint,
        &a.by,
        Action::Resolve {
            outcome: a.outcome,
            note: a.note,
        },
    )
}

pub fn alerts(a: AlertsArgs) -> anyhow::Result<ExitCode> {
    let AlertsCommand::List {
        at,
        state,
        rule,
        since,
        json,
    } = a.command;
    let state = match state.as_deref() {
        None => None,
        Some(s) => Some(
            AlertState::parse(s)
                .ok_or_else(|| anyhow::anyhow!("--state `{s}`: use {}", AlertState::choices()))?,
        ),
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let store = open(&at).await?;
        let items = store
            .list_alerts(&AlertFilter {
                state,
                rule,
                since: since.map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc()),
            })
            .await?;
        if json {
            for i in &items {
                println!("{}", serde_json::to_string(i)?);
            }
        } else {
            println!(
                "{:<20}  {:<23}  {:<30}  {:<9}  {:<24}  fingerprint (12 of 64; any unique 8+ prefix works)",
                "fired at", "state", "rule", "severity", "submission"
            );
            // Values from Argos (the submission id above all) are shown
            // escaped: a CR/LF or an ANSI escape cannot forge a row.
            use crate::util::display_safe as safe;
            for i in &items {
                let state = if i.silenced {
                    format!("{} (silenced)", i.state.as_str())
                } else {
                    i.state.as_str().to_string()
                };
                println!(
                    "{:<20}  {:<23}  {:<30}  {:<9}  {:<24}  {}",
                    safe(&i.fired_at[..i.fired_at.len().min(19)]),
                    state,
                    safe(&i.rule),
                    safe(&i.severity),
                    safe(&i.submission_id),
                    short(&i.fingerprint)
                );
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

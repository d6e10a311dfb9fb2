//! `kyc-sentinel ack`, `resolve`, `alerts list`.
//!
//! Changes go through the one state machine ([`crate::lifecycle::decide`])
//! under the four-eyes policy in force: the config's `lifecycle.four_eyes`
//! with `--config`, else the one the daemon last recorded in the store. The
//! CLI cannot prove who runs it, so under four-eyes its resolution is only a
//! proposal by `--by`, who must be an enabled console user allowed to resolve
//! that severity; a different lead approves it in the console or the API.
//! The CLI never approves.

use std::process::ExitCode;

use crate::cli::{AckArgs, AlertsArgs, AlertsCommand, ResolveArgs, StoreLocation};
use crate::console::identity::{Role, role_to_resolve};
use crate::store::lifecycle::{Action, AlertFilter, AlertState, ChangeError, Policy};
use crate::store::lookup::short;
use crate::store::prelude::*;
use std::sync::Arc;

async fn open(at: &StoreLocation) -> anyhow::Result<Arc<dyn StateStore>> {
    super::silence::open_existing(at).await
}

/// `lifecycle.four_eyes` of `--config`, else the daemon's as recorded in the store.
async fn policy(at: &StoreLocation, store: &Arc<dyn StateStore>) -> anyhow::Result<Policy> {
    let four_eyes = match &at.config {
        Some(c) => super::silence::store_only_config(c)?.lifecycle.four_eyes,
        None => {
            let meta: Arc<dyn crate::store::meta::MetaStore> = store.clone();
            crate::config_status::four_eyes(&meta)
                .await?
                .unwrap_or_default()
        }
    };
    Ok(Policy { four_eyes })
}

/// Under four-eyes, who may propose a resolution from the CLI: an enabled
/// console user with the role to resolve `severity` (a lead for critical).
/// The refusal says why and what to do.
async fn check_proposer(
    store: &Arc<dyn StateStore>,
    fp: &str,
    by: &str,
    severity: &str,
) -> anyhow::Result<Result<(), String>> {
    let why = format!(
        "alert {} is {severity} and four-eyes applies (lifecycle.four_eyes): its resolution is a \
         proposal a different lead approves",
        short(fp)
    );
    let Some((_, users)) = store.console_roles() else {
        return Ok(Err(format!(
            "{why}, and this store backend has no console users to propose or approve it"
        )));
    };
    let need = role_to_resolve(severity);
    let name = crate::util::display_safe(by);
    Ok(match users.credentials(by).await? {
        None => Err(format!(
            "{why}; --by `{name}` is not a console user (kyc-sentinel users list)"
        )),
        Some(c) if c.disabled => Err(format!("{why}; --by `{name}` is disabled")),
        Some(c) if Role::parse(&c.role).is_none_or(|r| r < need) => Err(format!(
            "{why}; resolving a {severity} alert needs the {} role and --by `{name}` is {}",
            need.as_str(),
            c.role
        )),
        Some(_) => Ok(()),
    })
}

/// A refused change: said on stderr, exit code 1.
fn refuse(e: &dyn std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("error: {e}");
    Ok(ExitCode::from(1))
}

fn change(at: &StoreLocation, fp: &str, by: &str, action: Action) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let store = open(at).await?;
        // Messages show 12 characters: any unique prefix of 8 or more works.
        let fp = match store.resolve_fingerprint(fp).await? {
            Ok(full) => full,
            Err(e) => return refuse(&e),
        };
        let policy = policy(at, &store).await?;
        if matches!(action, Action::Resolve { .. })
            && let Some(view) = store.alert_view(&fp).await?
            && policy.needs_approval(&view.severity)
            && let Err(why) = check_proposer(&store, &fp, by, &view.severity).await?
        {
            return refuse(&why);
        }
        match store.change_alert_under(&fp, by, action, &policy).await {
            Ok(state) => {
                println!("alert {} ({fp}): {}", short(&fp), state.as_str());
                if state == AlertState::PendingApproval {
                    println!(
                        "four-eyes: a different lead approves or rejects it in the console \
                         (/alerts/{fp}) or with POST /api/alerts/{fp}/approve and their own token"
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(ChangeError::Refused(e)) => refuse(&e),
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

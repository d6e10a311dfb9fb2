//! What people do: each action a plain form POST (CSRF-checked by
//! [`Posted`]), its role checked here on the server, whatever the page
//! showed. State changes go through the store's one state machine.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{NaiveDate, Utc};

use super::auth::{Posted, Session};
use super::identity::{Role, role_to_resolve};
use super::pages::{alert_page, inbox_query, load_case, outcomes};
use super::{ConsoleState, case, view};
use crate::notify::silence::NewSilence;
use crate::store::lifecycle::{Action, AlertState, ChangeError, LifecycleError};

/// The longest a silence made from the console may last.
pub const MAX_SILENCE_DAYS: i64 = 180;

/// 403 unless the person holds `need` (the server decides, not the page).
fn refused(me: &Session, need: Role, what: &str) -> Option<Response> {
    if me.who.may(need) {
        return None;
    }
    tracing::warn!(
        "console: {} ({}) refused: {what} needs {}",
        me.who.name,
        me.who.role.as_str(),
        need.as_str()
    );
    Some(view::message_for(
        me,
        StatusCode::FORBIDDEN,
        &format!(
            "{what} needs the {} role; you are {}.",
            need.as_str(),
            me.who.role.as_str()
        ),
    ))
}

fn bad_request(me: &Session, msg: &str) -> Response {
    view::message_for(me, StatusCode::BAD_REQUEST, msg)
}

fn changed(me: &Session, fp: &str, r: Result<AlertState, ChangeError>, done: &str) -> Response {
    match r {
        Ok(AlertState::PendingApproval) => done_redirect(fp, "proposed"),
        Ok(_) => done_redirect(fp, done),
        Err(e) => change_error(me, e),
    }
}

fn change_error(me: &Session, e: ChangeError) -> Response {
    match e {
        ChangeError::Refused(e @ LifecycleError::NoSuchAlert(_)) => {
            view::message_for(me, StatusCode::NOT_FOUND, &e.to_string())
        }
        ChangeError::Refused(e) => view::message_for(me, StatusCode::CONFLICT, &e.to_string()),
        ChangeError::Store(e) => {
            tracing::error!("console: {e}");
            view::message_for(
                me,
                StatusCode::INTERNAL_SERVER_ERROR,
                "State store error (see the daemon's log).",
            )
        }
    }
}

fn done_redirect(fp: &str, done: &str) -> Response {
    Redirect::to(&format!("/alerts/{fp}?done={done}")).into_response()
}

/// `POST /alerts/{fp}/{action}`: one action on one alert.
pub async fn act(
    State(s): State<ConsoleState>,
    Path((fp, action)): Path<(String, String)>,
    Posted { session: me, form }: Posted,
) -> Response {
    let c = match load_case(&s, &me, &fp).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let fp = c.view.fingerprint.clone();
    let by = me.who.name.clone();
    let severity = c.view.severity.clone();
    let policy = &s.policy;
    let change = |a: Action| s.cases.change(&fp, &by, a, policy);
    match action.as_str() {
        "assign" => {
            if let Some(r) = refused(&me, Role::Analyst, "Assigning") {
                return r;
            }
            match s.cases.assign(&fp, &by, &by).await {
                Ok(()) => done_redirect(&fp, "assign"),
                Err(e) => change_error(&me, e),
            }
        }
        "ack" => {
            if let Some(r) = refused(&me, Role::Analyst, "Acknowledging") {
                return r;
            }
            changed(&me, &fp, change(Action::Ack { note: None }).await, "ack")
        }
        "note" => {
            if let Some(r) = refused(&me, Role::Analyst, "Adding a note") {
                return r;
            }
            let Some(note) = form.text("note") else {
                return bad_request(&me, "A note needs text.");
            };
            match s.cases.add_note(&fp, &by, &note).await {
                Ok(()) => done_redirect(&fp, "note"),
                Err(e) => change_error(&me, e),
            }
        }
        "resolve" => {
            let need = role_to_resolve(&severity);
            if let Some(r) = refused(&me, need, &format!("Resolving a {severity} alert")) {
                return r;
            }
            let outcome = form.text("outcome").unwrap_or_default();
            if !outcomes().contains(&outcome.as_str()) {
                return bad_request(
                    &me,
                    &format!("Outcome: choose one of {}.", outcomes().join(", ")),
                );
            }
            let Some(note) = form.text("note") else {
                return bad_request(
                    &me,
                    "Resolving needs a note: say what you concluded and why.",
                );
            };
            let a = Action::Resolve {
                outcome,
                note: Some(note),
            };
            changed(&me, &fp, change(a).await, "resolve")
        }
        "approve" | "reject" => {
            if let Some(r) = refused(&me, Role::Lead, "Approving or rejecting a resolution") {
                return r;
            }
            let note = form.text("note");
            let a = if action == "approve" {
                Action::Approve { note }
            } else {
                Action::Reject { note }
            };
            changed(&me, &fp, change(a).await, &action)
        }
        "reopen" => {
            if let Some(r) = refused(&me, Role::Lead, "Reopening") {
                return r;
            }
            changed(
                &me,
                &fp,
                change(Action::Reopen {
                    note: form.text("note"),
                })
                .await,
                "reopen",
            )
        }
        "reveal" => {
            if let Some(r) = refused(&me, Role::Lead, "Revealing a field") {
                return r;
            }
            let field = form.text("field").unwrap_or_default();
            if !case::revealable(&field) {
                return bad_request(&me, "field: not a maskable field of this page.");
            }
            if let Err(e) = s.cases.record_reveal(&fp, &by, &field).await {
                return change_error(&me, e.into());
            }
            // Shown in this response only: a reload shows it masked again.
            match load_case(&s, &me, &fp).await {
                Ok(c) => alert_page(&s, &me, &c, Some(&field), None),
                Err(r) => r,
            }
        }
        "silence" => silence(&s, &me, &c, &form).await,
        _ => view::message_for(&me, StatusCode::NOT_FOUND, "No such action."),
    }
}

/// "Silence similar": the alert's rule and group key, a reason and an expiry.
async fn silence(
    s: &ConsoleState,
    me: &Session,
    c: &crate::store::cases::Case,
    form: &super::forms::Form,
) -> Response {
    if let Some(r) = refused(me, Role::Lead, "Silencing") {
        return r;
    }
    let Some(reason) = form.text("reason") else {
        return bad_request(me, "A silence needs a reason.");
    };
    let Some(expiry) = form
        .text("expiry")
        .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
    else {
        return bad_request(me, "A silence needs an expiry date (YYYY-MM-DD).");
    };
    let now = Utc::now();
    let Some(ends_at) = expiry.and_hms_opt(23, 59, 59).map(|t| t.and_utc()) else {
        return bad_request(me, "expiry: not a date.");
    };
    // Calendar days, as the form's date picker offers them (today to
    // today + 180): the silence ends at the end of that day, UTC.
    let today = now.date_naive();
    if expiry < today || expiry > today + chrono::Duration::days(MAX_SILENCE_DAYS) {
        return bad_request(
            me,
            &format!("expiry: between today and {MAX_SILENCE_DAYS} days from now."),
        );
    }
    let mut matchers = BTreeMap::new();
    if let Some(g) = &c.view.group_key {
        matchers.insert("group_key".to_owned(), g.clone());
    }
    let new = NewSilence {
        rule: Some(c.view.rule.clone()),
        matchers,
        reason,
        author: me.who.name.clone(),
        starts_at: now,
        ends_at,
    };
    match s.cases.add_silence(&new).await {
        Ok(_) => done_redirect(&c.view.fingerprint, "silence"),
        Err(e) => change_error(me, e.into()),
    }
}

/// "Next unassigned": the oldest open, unassigned alert under the inbox's
/// filters, assigned to me.
pub async fn next(State(s): State<ConsoleState>, Posted { session: me, form }: Posted) -> Response {
    if let Some(r) = refused(&me, Role::Analyst, "Taking an alert") {
        return r;
    }
    let (q, _) = inbox_query(&|k| form.get(k).map(str::to_owned), &me.who.name);
    let fp = match s.cases.next_unassigned(&q).await {
        Ok(Some(fp)) => fp,
        Ok(None) => return Redirect::to("/?done=none").into_response(),
        Err(e) => return change_error(&me, e.into()),
    };
    match s.cases.assign(&fp, &me.who.name, &me.who.name).await {
        Ok(()) => done_redirect(&fp, "assign"),
        Err(e) => change_error(&me, e),
    }
}

/// Acknowledge or resolve every selected alert; each checked on its own.
pub async fn bulk(State(s): State<ConsoleState>, Posted { session: me, form }: Posted) -> Response {
    if let Some(r) = refused(&me, Role::Analyst, "Bulk actions") {
        return r;
    }
    let action = form.get("action").unwrap_or("");
    let fps = form.all("fp");
    if fps.is_empty() {
        return bad_request(&me, "Select at least one alert.");
    }
    let mut done = 0;
    // Four-eyes resolutions wait for a second lead: not "resolved".
    let mut proposed = 0;
    let mut refused = Vec::new();
    for fp in &fps {
        let c = match load_case(&s, &me, fp).await {
            Ok(c) => c,
            Err(_) => {
                refused.push(format!("{}: not found", short(fp)));
                continue;
            }
        };
        let a = match action {
            "ack" => Action::Ack { note: None },
            "resolve" => {
                if !me.who.may(role_to_resolve(&c.view.severity)) {
                    refused.push(format!("{}: {} needs a lead", short(fp), c.view.severity));
                    continue;
                }
                let outcome = form.text("outcome").unwrap_or_default();
                let Some(note) = form.text("note") else {
                    return bad_request(&me, "Resolving needs a note.");
                };
                if !outcomes().contains(&outcome.as_str()) {
                    return bad_request(&me, "Outcome: choose one of the list.");
                }
                Action::Resolve {
                    outcome,
                    note: Some(note),
                }
            }
            _ => return bad_request(&me, "action: ack or resolve."),
        };
        match s
            .cases
            .change(&c.view.fingerprint, &me.who.name, a, &s.policy)
            .await
        {
            Ok(AlertState::PendingApproval) => proposed += 1,
            Ok(_) => done += 1,
            Err(e) => refused.push(format!("{}: {e}", short(fp))),
        }
    }
    let verb = if action == "ack" {
        "Acknowledged"
    } else {
        "Resolved"
    };
    let mut text = format!("{verb} {done} of {} alert(s).", fps.len());
    if proposed > 0 {
        text += &format!(" Proposed {proposed} for a second lead's approval (four-eyes).");
    }
    if !refused.is_empty() {
        text += &format!(" Not changed: {}.", refused.join("; "));
    }
    view::message_for(&me, StatusCode::OK, &text)
}

fn short(fp: &str) -> &str {
    crate::store::lookup::short(fp)
}

pub async fn expire_silence(
    State(s): State<ConsoleState>,
    Path(id): Path<i64>,
    Posted { session: me, .. }: Posted,
) -> Response {
    if let Some(r) = refused(&me, Role::Lead, "Expiring a silence") {
        return r;
    }
    match s.cases.expire_silence(id, Utc::now()).await {
        Ok(true) => Redirect::to("/silences").into_response(),
        Ok(false) => view::message_for(&me, StatusCode::NOT_FOUND, "No such silence."),
        Err(e) => change_error(&me, e.into()),
    }
}

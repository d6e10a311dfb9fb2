//! What people read: the inbox, an alert, its case file, silences, rules
//! and health. Every handler here only reads.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use serde_json::{Value, json};

use super::auth::Session;
use super::case::{self, mask_if_email};
use super::forms::encode;
use super::{ConsoleState, view};
use crate::store::cases::{Assignee, Case, InboxQuery};
use crate::store::lifecycle::KNOWN_OUTCOMES;
use crate::store::lookup::{LookupError, short};

/// Alerts per inbox page.
pub const PAGE_SIZE: i64 = 50;

/// The states a filter may name, with how people read them.
const STATES: &[&str] = &[
    "open",
    "acknowledged",
    "pending_approval",
    "resolved",
    "historical",
    "silenced",
];

/// Outcomes a resolution may give.
pub fn outcomes() -> Vec<&'static str> {
    KNOWN_OUTCOMES.iter().copied().chain(["other"]).collect()
}

fn store_error(e: impl std::fmt::Display) -> Response {
    tracing::error!("console: {e}");
    view::message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "State store error (see the daemon's log).",
    )
}

/// The filter fields (from a query string or a form) as a store query,
/// and as the page echoes them.
pub(super) fn inbox_query(get: &dyn Fn(&str) -> Option<String>, me: &str) -> (InboxQuery, Value) {
    let val = |k: &str| {
        get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let state = val("state").filter(|s| STATES.contains(&s.as_str()));
    let assignee = val("assignee").unwrap_or_else(|| "anyone".into());
    let date = |k: &str| val(k).and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok());
    let from = date("from");
    let to = date("to");
    let label = val("label").and_then(|l| {
        l.split_once('=')
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
    });
    let page = val("page")
        .and_then(|p| p.parse::<i64>().ok())
        .unwrap_or(1)
        .max(1);
    let q = InboxQuery {
        state: state.clone(),
        severity: val("severity"),
        rule: val("rule"),
        label,
        assignee: match assignee.as_str() {
            "me" => Assignee::Person(me.to_owned()),
            "nobody" => Assignee::Nobody,
            _ => Assignee::Anyone,
        },
        since: from
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc()),
        until: to
            .and_then(|d| d.succ_opt())
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc()),
        search: val("q"),
        offset: (page - 1) * PAGE_SIZE,
        limit: PAGE_SIZE,
    };
    let echo = json!({
        "state": state, "severity": val("severity"), "rule": val("rule"), "label": val("label"),
        "assignee": assignee, "from": from.map(|d| d.to_string()), "to": to.map(|d| d.to_string()),
        "q": val("q"), "q_masked": val("q").map(|q| mask_if_email(&q)), "page": page,
    });
    (q, echo)
}

/// The query string of the echoed filters, with `page` (or without it).
fn query_string(echo: &Value, page: Option<i64>) -> String {
    let mut parts: Vec<String> = [
        "state", "severity", "rule", "label", "assignee", "from", "to", "q",
    ]
    .iter()
    .filter_map(|k| echo[k].as_str().map(|v| format!("{k}={}", encode(v))))
    .collect();
    if let Some(p) = page {
        parts.push(format!("page={p}"));
    }
    format!("/?{}", parts.join("&"))
}

/// How long ago, in the largest unit.
fn age(fired_at: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(fired_at) else {
        return String::new();
    };
    let secs = (Utc::now() - t.with_timezone(&Utc)).num_seconds().max(0);
    match secs {
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86400),
    }
}

/// A fixed text for `?done=...` after an action (nothing reflected).
fn flash(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "assign" => "Assigned to you.",
        "ack" => "Acknowledged.",
        "note" => "Note added.",
        "resolve" => "Resolved.",
        "proposed" => "Resolution proposed: a second lead must approve it.",
        "approve" => "Approved: the alert is resolved.",
        "reject" => "Rejected: the alert is back to acknowledged.",
        "reopen" => "Reopened.",
        "silence" => "Silence created.",
        "none" => "No open, unassigned alert matches these filters.",
        _ => return None,
    })
}

pub async fn inbox(
    State(s): State<ConsoleState>,
    Extension(me): Extension<Session>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let (q, echo) = inbox_query(&|k| params.get(k).cloned(), &me.who.name);
    let (items, total) = match s.cases.inbox(&q).await {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    let counts = match s
        .cases
        .state_counts(&InboxQuery {
            state: None,
            ..q.clone()
        })
        .await
    {
        Ok(c) => c,
        Err(e) => return store_error(e),
    };
    let capped = total > crate::store::cases::COUNT_CAP;
    let total = total.min(crate::store::cases::COUNT_CAP);
    let page = echo["page"].as_i64().unwrap_or(1);
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let mut state_echo = echo.clone();
    let counts: Vec<Value> = counts
        .into_iter()
        .map(|(st, n)| {
            state_echo["state"] = Value::from(st.clone());
            json!({"state": st, "label": case::state_label(&st), "n": n, "url": query_string(&state_echo, None)})
        })
        .collect();
    let items: Vec<Value> = items
        .into_iter()
        .map(|a| {
            json!({
                "fingerprint": a.fingerprint, "short": short(&a.fingerprint), "rule": a.rule,
                "severity": a.severity, "group": a.group_key.as_deref().map(mask_if_email),
                "submission_id": a.submission_id, "fired_at": a.fired_at, "age": age(&a.fired_at),
                "state": case::state_label(&a.state), "assignee": a.assignee, "silenced": a.silenced,
            })
        })
        .collect();
    let hidden: serde_json::Map<String, Value> = [
        "state", "severity", "rule", "label", "assignee", "from", "to", "q",
    ]
    .iter()
    .filter_map(|k| echo[k].as_str().map(|v| (k.to_string(), Value::from(v))))
    // An email typed in the search box is not written back into the page.
    .filter(|(_, v)| !v.as_str().unwrap_or("").contains('@'))
    .collect();
    let states: Vec<Value> = STATES
        .iter()
        .map(|s| json!({"value": s, "label": case::state_label(s)}))
        .collect();
    view::page(
        &me,
        "inbox.html",
        "Inbox",
        json!({
            "f": echo, "items": items, "total": total, "capped": capped, "page": page, "pages": pages,
            "counts": counts, "states": states, "hidden": hidden, "outcomes": outcomes(),
            "rules": s.rules.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            "prev_url": (page > 1).then(|| query_string(&echo, Some(page - 1))),
            "next_url": (page < pages).then(|| query_string(&echo, Some(page + 1))),
            "flash": flash(params.get("done").map(String::as_str)),
        }),
    )
}

/// The case of a fingerprint (or unique prefix), or the page saying why not.
pub(super) async fn load_case(s: &ConsoleState, me: &Session, fp: &str) -> Result<Case, Response> {
    let full = match s.cases.find(fp).await {
        Ok(Ok(full)) => full,
        Ok(Err(e @ (LookupError::BadPrefix(_) | LookupError::Ambiguous { .. }))) => {
            return Err(view::message_for(
                me,
                StatusCode::BAD_REQUEST,
                &e.to_string(),
            ));
        }
        Ok(Err(LookupError::NoSuchAlert(_))) => {
            return Err(view::message_for(
                me,
                StatusCode::NOT_FOUND,
                "No such alert in this engine's store.",
            ));
        }
        Err(e) => return Err(store_error(e)),
    };
    match s.cases.case(&full).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(view::message_for(
            me,
            StatusCode::NOT_FOUND,
            "No such alert in this engine's store.",
        )),
        Err(e) => Err(store_error(e)),
    }
}

pub async fn alert(
    State(s): State<ConsoleState>,
    Extension(me): Extension<Session>,
    Path(fp): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    match load_case(&s, &me, &fp).await {
        Ok(c) => alert_page(
            &s,
            &me,
            &c,
            None,
            flash(params.get("done").map(String::as_str)),
        ),
        Err(r) => r,
    }
}

/// The alert page, with `revealed` shown unmasked (after an audited reveal).
pub(super) fn alert_page(
    s: &ConsoleState,
    me: &Session,
    c: &Case,
    revealed: Option<&str>,
    flash: Option<&str>,
) -> Response {
    use super::identity::Role;
    let a = &c.view;
    let state = a.state.as_str();
    let pending = state == "pending_approval";
    let today = Utc::now().date_naive();
    let proposal =
        pending.then(|| json!({"outcome": c.outcome, "note": c.note, "by": a.changed_by}));
    let members: Vec<Value> = c
        .members
        .iter()
        .map(|(id, t)| json!({"submission_id": id, "event_time": t}))
        .collect();
    view::page(
        me,
        "alert.html",
        &format!("Alert {} · {}", short(&a.fingerprint), a.rule),
        json!({
            "a": a, "state": case::state_label(state), "state_value": state,
            "rule": s.rule(&a.rule), "rule_version": c.record.rule_version,
            "group": a.group_key.as_deref().map(mask_if_email),
            "assignee": c.assignee,
            "argos": s.dashboard_url.as_ref().map(|u| u.replace("{submission_id}", &a.submission_id)),
            "proposal": proposal,
            "may_approve": pending && me.who.may(Role::Lead) && a.changed_by.as_deref() != Some(me.who.name.as_str()),
            "four_eyes": s.policy.four_eyes.iter().any(|f| f.eq_ignore_ascii_case(&a.severity)),
            "decisions": case::decisions(c), "members": members,
            "fields": case::fields(c.submission.as_ref(), revealed),
            "timeline": case::timeline(c), "outcomes": outcomes(),
            "today": today.to_string(),
            "max_expiry": (today + chrono::Duration::days(super::actions::MAX_SILENCE_DAYS)).to_string(),
            "flash": flash,
        }),
    )
}

/// The case file as JSON: the alert, the decision records, the timeline.
pub async fn case_json(
    State(s): State<ConsoleState>,
    Extension(me): Extension<Session>,
    Path(fp): Path<String>,
) -> Response {
    let c = match load_case(&s, &me, &fp).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let body = json!({
        "fingerprint": c.view.fingerprint, "rule": c.view.rule, "rule_version": c.record.rule_version,
        "severity": c.view.severity, "submission_id": c.view.submission_id,
        "group_key": c.view.group_key.as_deref().map(mask_if_email),
        "fired_at": c.view.fired_at, "state": c.view.state, "outcome": c.outcome, "assignee": c.assignee,
        "decisions": case::decisions(&c), "timeline": case::timeline(&c),
        "exported_at": crate::store::fmt_time(Utc::now()), "exported_by": me.who.name,
    });
    let mut r = axum::Json(body).into_response();
    let name = format!(
        "attachment; filename=\"case-{}.json\"",
        short(&c.view.fingerprint)
    );
    if let Ok(v) = name.parse() {
        r.headers_mut()
            .insert(axum::http::header::CONTENT_DISPOSITION, v);
    }
    r
}

/// The case file as a printable page for auditors.
pub async fn case_html(
    State(s): State<ConsoleState>,
    Extension(me): Extension<Session>,
    Path(fp): Path<String>,
) -> Response {
    let c = match load_case(&s, &me, &fp).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    view::render(
        StatusCode::OK,
        "case.html",
        json!({
            "a": {"fingerprint": c.view.fingerprint, "short": short(&c.view.fingerprint), "rule": c.view.rule,
                  "rule_version": c.record.rule_version, "severity": c.view.severity,
                  "submission_id": c.view.submission_id, "fired_at": c.view.fired_at,
                  "state": case::state_label(c.view.state.as_str()), "outcome": c.outcome},
            "timeline": case::timeline(&c),
            "exported_at": crate::store::fmt_time(Utc::now()), "exported_by": me.who.name,
        }),
    )
}

pub async fn silences(
    State(s): State<ConsoleState>,
    Extension(me): Extension<Session>,
) -> Response {
    let now = Utc::now();
    let list = match s.cases.silences(now, true).await {
        Ok(l) => l,
        Err(e) => return store_error(e),
    };
    let rows: Vec<Value> = list
        .iter()
        .map(|x| {
            json!({"id": x.id, "rule": x.rule, "matchers": x.matchers, "reason": x.reason,
                   "author": x.author, "ends_at": crate::store::fmt_time(x.ends_at), "active": x.is_active(now)})
        })
        .collect();
    view::page(&me, "silences.html", "Silences", json!({"silences": rows}))
}

pub async fn rules(State(s): State<ConsoleState>, Extension(me): Extension<Session>) -> Response {
    let stats = match s.cases.rule_stats(Utc::now()).await {
        Ok(st) => st,
        Err(e) => return store_error(e),
    };
    let rows: Vec<Value> = s
        .rules
        .iter()
        .map(|r| {
            let st = stats.iter().find(|x| x.rule == r.id);
            let (d1, d7, resolved, fp) = st.map_or((0, 0, 0, 0), |x| {
                (x.last_24h, x.last_7d, x.resolved, x.false_positive)
            });
            let share = if resolved == 0 {
                "-".to_owned()
            } else {
                format!("{}% ({fp} of {resolved})", fp * 100 / resolved)
            };
            json!({"id": r.id, "description": r.description, "version": short(&r.version),
                   "last_24h": d1, "last_7d": d7, "fp_share": share})
        })
        .collect();
    view::page(&me, "rules.html", "Rules", json!({"rules": rows}))
}

pub async fn health(State(s): State<ConsoleState>, Extension(me): Extension<Session>) -> Response {
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let h = match s.cases.health(&today).await {
        Ok(h) => h,
        Err(e) => return store_error(e),
    };
    let reload = match &s.meta {
        Some(m) => match crate::config_status::last(m).await {
            Ok(r) => r,
            Err(e) => return store_error(e),
        },
        None => None,
    };
    let budget = budget_facts(h.api_calls_today, s.daily_budget);
    view::page(
        &me,
        "health.html",
        "Health",
        json!({"h": h, "loaded_at": s.loaded_at, "budget": budget, "reload": reload}),
    )
}

/// The day's Argos calls against `argos.daily_budget` (0: no limit).
fn budget_facts(calls: u64, daily: u64) -> Value {
    json!({
        "calls": calls,
        "daily": daily,
        "left": daily.saturating_sub(calls),
        "spent": daily > 0 && calls >= daily,
        "percent": calls.saturating_mul(100).checked_div(daily).unwrap_or(0),
    })
}

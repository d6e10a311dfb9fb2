//! Alert lifecycle in the store: acknowledge, resolve, list.
//!
//! States: `open` (no row), `acknowledged`, `resolved`, and `historical` for
//! alerts a quiet backfill recorded (nobody was told; they can still be
//! acknowledged or resolved during a review). With four-eyes
//! (`lifecycle.four_eyes`), resolving an alert of those severities leads to
//! `pending_approval` until a different person approves (-> resolved) or
//! rejects (-> acknowledged); a lead may reopen a resolved alert (-> open).
//!
//! The transition rules are pure ([`transition`]); the store applies a
//! transition and records it (state row, change row, audit row) in one
//! transaction, so the audit log always says who moved an alert, when, from
//! what to what.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Result, SqliteStore, StoreError, fmt_time};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Open,
    Acknowledged,
    Resolved,
    /// Recorded by a quiet backfill: never notified, escalated or counted as new.
    Historical,
    /// Resolved by one person, waiting for a second one's approval (four-eyes).
    PendingApproval,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
            AlertState::Historical => "historical",
            AlertState::PendingApproval => "pending_approval",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(AlertState::Open),
            "acknowledged" => Some(AlertState::Acknowledged),
            "resolved" => Some(AlertState::Resolved),
            "historical" => Some(AlertState::Historical),
            "pending_approval" => Some(AlertState::PendingApproval),
            _ => None,
        }
    }
}

/// The resolution outcomes compliance teams report on; anything else is kept as free text.
pub const KNOWN_OUTCOMES: &[&str] = &["false_positive", "escalated_to_aml_officer", "reported"];

/// What a person asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Ack {
        note: Option<String>,
    },
    Resolve {
        outcome: String,
        note: Option<String>,
    },
    /// A second person agrees with a pending resolution.
    Approve {
        note: Option<String>,
    },
    /// A second person sends a pending resolution back (-> acknowledged).
    Reject {
        note: Option<String>,
    },
    /// A resolved alert is open again.
    Reopen {
        note: Option<String>,
    },
}

/// Which resolutions need a second person: the severities of `lifecycle.four_eyes`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub four_eyes: Vec<String>,
}

impl Policy {
    fn needs_approval(&self, severity: &str) -> bool {
        self.four_eyes
            .iter()
            .any(|s| s.eq_ignore_ascii_case(severity))
    }
}

/// Why a transition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("no alert with fingerprint {0}")]
    NoSuchAlert(String),
    #[error("alert {fingerprint} is already {state} (by {by} at {at})")]
    Already {
        fingerprint: String,
        state: &'static str,
        by: String,
        at: String,
    },
    #[error("an outcome is required to resolve (one of {}, or free text)", KNOWN_OUTCOMES.join(", "))]
    EmptyOutcome,
    #[error("say who you are (--by NAME)")]
    NoActor,
    #[error(
        "alert {fingerprint} was resolved by {by}: a different person must approve or reject it (four-eyes)"
    )]
    SamePerson { fingerprint: String, by: String },
}

/// The pure rule: which state an action leads to from `current`
/// (`approval`: this resolution needs a second person).
pub fn transition(
    current: AlertState,
    action: &Action,
    approval: bool,
) -> std::result::Result<AlertState, &'static str> {
    use AlertState::*;
    match (current, action) {
        (Open | Historical, Action::Ack { .. }) => Ok(Acknowledged),
        (Open | Historical | Acknowledged, Action::Resolve { .. }) if approval => {
            Ok(PendingApproval)
        }
        (Open | Historical | Acknowledged, Action::Resolve { .. }) => Ok(Resolved),
        (PendingApproval, Action::Approve { .. }) => Ok(Resolved),
        (PendingApproval, Action::Reject { .. }) => Ok(Acknowledged),
        (Resolved, Action::Reopen { .. }) => Ok(Open),
        (s, _) => Err(s.as_str()),
    }
}

/// One alert in a list.
#[derive(Debug, Clone, Serialize)]
pub struct AlertListItem {
    pub fingerprint: String,
    pub rule: String,
    pub severity: String,
    pub submission_id: String,
    pub fired_at: String,
    pub state: AlertState,
    pub changed_by: Option<String>,
    pub outcome: Option<String>,
    /// A silence held when it fired: recorded, not sent.
    pub silenced: bool,
}

#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub state: Option<AlertState>,
    pub rule: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Refused(#[from] LifecycleError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ChangeError {
    fn from(e: sqlx::Error) -> Self {
        ChangeError::Store(e.into())
    }
}

impl SqliteStore {
    /// Applies `action` by `by` to the alert without four-eyes; returns the new state.
    pub async fn change_alert(
        &self,
        fingerprint: &str,
        by: &str,
        action: Action,
    ) -> std::result::Result<AlertState, ChangeError> {
        self.change_alert_under(fingerprint, by, action, &Policy::default())
            .await
    }

    /// Applies `action` by `by` to the alert under `policy`; returns the new state.
    pub async fn change_alert_under(
        &self,
        fingerprint: &str,
        by: &str,
        action: Action,
        policy: &Policy,
    ) -> std::result::Result<AlertState, ChangeError> {
        if by.trim().is_empty() {
            return Err(LifecycleError::NoActor.into());
        }
        if let Action::Resolve { outcome, .. } = &action
            && outcome.trim().is_empty()
        {
            return Err(LifecycleError::EmptyOutcome.into());
        }
        let now = fmt_time(Utc::now());
        let mut tx = self.write_tx().await?;
        let severity: Option<String> =
            sqlx::query_scalar("SELECT severity FROM alerts WHERE fingerprint = ?")
                .bind(fingerprint)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(severity) = severity else {
            return Err(LifecycleError::NoSuchAlert(fingerprint.to_owned()).into());
        };
        let row = sqlx::query(
            "SELECT state, changed_by, changed_at, note, outcome FROM alert_states WHERE fingerprint = ?",
        )
        .bind(fingerprint)
        .fetch_optional(&mut *tx)
        .await?;
        let (current, prev_by, prev_at, prev_outcome) = match &row {
            Some(r) => (
                AlertState::parse(&r.get::<String, _>(0)).unwrap_or(AlertState::Open),
                r.get::<String, _>(1),
                r.get::<String, _>(2),
                r.get::<Option<String>, _>(4),
            ),
            None => (AlertState::Open, String::new(), String::new(), None),
        };
        if current == AlertState::PendingApproval
            && matches!(action, Action::Approve { .. } | Action::Reject { .. })
            && prev_by == by
        {
            return Err(LifecycleError::SamePerson {
                fingerprint: fingerprint.to_owned(),
                by: prev_by,
            }
            .into());
        }
        let next =
            transition(current, &action, policy.needs_approval(&severity)).map_err(|state| {
                LifecycleError::Already {
                    fingerprint: fingerprint.to_owned(),
                    state,
                    by: prev_by,
                    at: prev_at,
                }
            })?;
        let (note, outcome) = match &action {
            Action::Ack { note } | Action::Reject { note } | Action::Reopen { note } => {
                (note.clone(), None)
            }
            Action::Resolve { outcome, note } => (note.clone(), Some(outcome.clone())),
            // The approved outcome is the one proposed.
            Action::Approve { note } => (note.clone(), prev_outcome),
        };
        sqlx::query(
            "INSERT INTO alert_states (fingerprint, state, changed_at, changed_by, note, outcome) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET state = excluded.state, \
             changed_at = excluded.changed_at, changed_by = excluded.changed_by, note = excluded.note, \
             outcome = excluded.outcome",
        )
        .bind(fingerprint)
        .bind(next.as_str())
        .bind(&now)
        .bind(by)
        .bind(&note)
        .bind(&outcome)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO alert_state_changes (fingerprint, at, by, from_state, to_state, note, outcome) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(fingerprint)
        .bind(&now)
        .bind(by)
        .bind(current.as_str())
        .bind(next.as_str())
        .bind(&note)
        .bind(&outcome)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO audit_log (at, kind, fingerprint, detail) VALUES (?, 'state_change', ?, ?)")
            .bind(&now)
            .bind(fingerprint)
            .bind(
                serde_json::json!({"by": by, "from": current.as_str(), "to": next.as_str(), "note": note, "outcome": outcome})
                    .to_string(),
            )
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(next)
    }

    /// Alerts, newest first, filtered.
    pub async fn list_alerts(&self, f: &AlertFilter) -> Result<Vec<AlertListItem>> {
        let rows = sqlx::query(
            "SELECT a.fingerprint, a.rule_id, a.severity, a.submission_id, a.fired_at, \
             COALESCE(s.state, 'open'), s.changed_by, s.outcome, \
             EXISTS (SELECT 1 FROM audit_log l WHERE l.kind = 'silenced' AND l.fingerprint = a.fingerprint) \
             FROM alerts a LEFT JOIN alert_states s ON s.fingerprint = a.fingerprint \
             WHERE (?1 IS NULL OR COALESCE(s.state, 'open') = ?1) AND (?2 IS NULL OR a.rule_id = ?2) \
             AND (?3 IS NULL OR a.fired_at >= ?3) ORDER BY a.fired_at DESC, a.fingerprint",
        )
        .bind(f.state.map(AlertState::as_str))
        .bind(&f.rule)
        .bind(f.since.map(fmt_time))
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AlertListItem {
                fingerprint: r.get(0),
                rule: r.get(1),
                severity: r.get(2),
                submission_id: r.get(3),
                fired_at: r.get(4),
                state: AlertState::parse(&r.get::<String, _>(5)).unwrap_or(AlertState::Open),
                changed_by: r.get(6),
                outcome: r.get(7),
                silenced: r.get::<i64, _>(8) != 0,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        let ack = Action::Ack { note: None };
        let res = Action::Resolve {
            outcome: "false_positive".into(),
            note: None,
        };
        let transition = |s, a: &Action| super::transition(s, a, false);
        assert_eq!(
            transition(AlertState::Open, &ack),
            Ok(AlertState::Acknowledged)
        );
        assert_eq!(transition(AlertState::Open, &res), Ok(AlertState::Resolved));
        assert_eq!(
            transition(AlertState::Acknowledged, &res),
            Ok(AlertState::Resolved)
        );
        assert_eq!(
            transition(AlertState::Acknowledged, &ack),
            Err("acknowledged")
        );
        assert_eq!(transition(AlertState::Resolved, &ack), Err("resolved"));
        assert_eq!(transition(AlertState::Resolved, &res), Err("resolved"));
        // A reviewer may close history too.
        assert_eq!(
            transition(AlertState::Historical, &ack),
            Ok(AlertState::Acknowledged)
        );
        assert_eq!(
            transition(AlertState::Historical, &res),
            Ok(AlertState::Resolved)
        );
    }

    #[test]
    fn four_eyes_and_reopen() {
        let res = Action::Resolve {
            outcome: "reported".into(),
            note: None,
        };
        let approve = Action::Approve { note: None };
        let reject = Action::Reject { note: None };
        let reopen = Action::Reopen { note: None };
        assert_eq!(
            transition(AlertState::Acknowledged, &res, true),
            Ok(AlertState::PendingApproval)
        );
        assert_eq!(
            transition(AlertState::PendingApproval, &approve, true),
            Ok(AlertState::Resolved)
        );
        assert_eq!(
            transition(AlertState::PendingApproval, &reject, true),
            Ok(AlertState::Acknowledged)
        );
        assert_eq!(
            transition(AlertState::PendingApproval, &res, true),
            Err("pending_approval")
        );
        assert_eq!(transition(AlertState::Open, &approve, true), Err("open"));
        assert_eq!(
            transition(AlertState::Resolved, &reopen, false),
            Ok(AlertState::Open)
        );
        assert_eq!(transition(AlertState::Open, &reopen, false), Err("open"));
    }
}

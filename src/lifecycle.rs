//! The alert state machine: pure, outside the store.
//!
//! States: `open` (no row), `acknowledged`, `resolved`, and `historical` for
//! alerts a quiet backfill recorded (nobody was told; they can still be
//! acknowledged or resolved during a review). With four-eyes
//! (`lifecycle.four_eyes`), resolving an alert of those severities leads to
//! `pending_approval` until a different person approves (-> resolved) or
//! rejects (-> acknowledged); a lead may reopen a resolved alert (-> open).
//!
//! [`check_request`] and [`decide`] say what a person's action does; a store
//! backend only reads the current state and writes the [`Decision`] (state
//! row, change row, audit row) in one transaction, so every backend moves
//! alerts by the same rules.

use serde::Serialize;

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
    /// Every state, in the order people meet them (errors list them from here).
    pub const ALL: [AlertState; 5] = [
        AlertState::Open,
        AlertState::Acknowledged,
        AlertState::PendingApproval,
        AlertState::Resolved,
        AlertState::Historical,
    ];

    /// `open, acknowledged, resolved or historical`: for "use ..." errors.
    pub fn choices() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|s| s.as_str()).collect();
        let (last, rest) = names.split_last().expect("states exist");
        format!("{} or {last}", rest.join(", "))
    }

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
    pub fn needs_approval(&self, severity: &str) -> bool {
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

/// A request refused before the store is asked: nobody named, or no outcome.
pub fn check_request(by: &str, action: &Action) -> Result<(), LifecycleError> {
    if by.trim().is_empty() {
        return Err(LifecycleError::NoActor);
    }
    if let Action::Resolve { outcome, .. } = action
        && outcome.trim().is_empty()
    {
        return Err(LifecycleError::EmptyOutcome);
    }
    Ok(())
}

/// An alert's state as the store holds it (`by`/`at` empty while open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub state: AlertState,
    pub by: String,
    pub at: String,
    /// The alert's severity (four-eyes applies per severity).
    pub severity: String,
    /// The outcome a pending resolution proposed.
    pub outcome: Option<String>,
}

impl Current {
    /// An alert nobody has moved yet.
    pub fn open() -> Current {
        Current {
            state: AlertState::Open,
            by: String::new(),
            at: String::new(),
            severity: String::new(),
            outcome: None,
        }
    }
}

/// What a store writes for an accepted action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub from: AlertState,
    pub to: AlertState,
    pub note: Option<String>,
    pub outcome: Option<String>,
}

impl Decision {
    /// The `state_change` audit row's detail.
    pub fn audit_detail(&self, by: &str) -> serde_json::Value {
        serde_json::json!({"by": by, "from": self.from.as_str(), "to": self.to.as_str(),
            "note": self.note, "outcome": self.outcome})
    }
}

/// Decides `action` on the alert `fingerprint`, whose state is `current`
/// (`None`: the store has no such alert).
pub fn decide(
    fingerprint: &str,
    current: Option<Current>,
    by: &str,
    action: &Action,
    policy: &Policy,
) -> Result<Decision, LifecycleError> {
    let Some(current) = current else {
        return Err(LifecycleError::NoSuchAlert(fingerprint.to_owned()));
    };
    if current.state == AlertState::PendingApproval
        && matches!(action, Action::Approve { .. } | Action::Reject { .. })
        && current.by == by
    {
        return Err(LifecycleError::SamePerson {
            fingerprint: fingerprint.to_owned(),
            by: current.by,
        });
    }
    let approval = policy.needs_approval(&current.severity);
    let to =
        transition(current.state, action, approval).map_err(|state| LifecycleError::Already {
            fingerprint: fingerprint.to_owned(),
            state,
            by: current.by.clone(),
            at: current.at.clone(),
        })?;
    let (note, outcome) = match action {
        Action::Ack { note } | Action::Reject { note } | Action::Reopen { note } => {
            (note.clone(), None)
        }
        Action::Resolve { outcome, note } => (note.clone(), Some(outcome.clone())),
        // The approved outcome is the one proposed.
        Action::Approve { note } => (note.clone(), current.outcome.clone()),
    };
    Ok(Decision {
        from: current.state,
        to,
        note,
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        let transition = |s, a: &Action| super::transition(s, a, false);
        let ack = Action::Ack { note: None };
        let res = Action::Resolve {
            outcome: "false_positive".into(),
            note: None,
        };
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
    fn decisions() {
        let ack = Action::Ack {
            note: Some("n".into()),
        };
        assert_eq!(
            decide("fp", None, "ana", &ack, &Policy::default()),
            Err(LifecycleError::NoSuchAlert("fp".into()))
        );
        let d = decide("fp", Some(Current::open()), "ana", &ack, &Policy::default()).unwrap();
        assert_eq!((d.from, d.to), (AlertState::Open, AlertState::Acknowledged));
        assert_eq!(d.note.as_deref(), Some("n"));
        let acked = Current {
            state: AlertState::Acknowledged,
            by: "ana".into(),
            at: "t".into(),
            severity: "high".into(),
            outcome: None,
        };
        assert_eq!(
            decide("fp", Some(acked), "kim", &ack, &Policy::default())
                .unwrap_err()
                .to_string(),
            "alert fp is already acknowledged (by ana at t)"
        );
        assert_eq!(check_request(" ", &ack), Err(LifecycleError::NoActor));
        let empty = Action::Resolve {
            outcome: " ".into(),
            note: None,
        };
        assert_eq!(
            check_request("ana", &empty),
            Err(LifecycleError::EmptyOutcome)
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

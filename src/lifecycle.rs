//! The alert state machine: pure, outside the store.
//!
//! States: `open` (no row), `acknowledged`, `resolved`, and `historical` for
//! alerts a quiet backfill recorded (nobody was told; they can still be
//! acknowledged or resolved during a review).
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
}

impl AlertState {
    /// Every state, in the order people meet them (errors list them from here).
    pub const ALL: [AlertState; 4] = [
        AlertState::Open,
        AlertState::Acknowledged,
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
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(AlertState::Open),
            "acknowledged" => Some(AlertState::Acknowledged),
            "resolved" => Some(AlertState::Resolved),
            "historical" => Some(AlertState::Historical),
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
}

/// The pure rule: which state an action leads to from `current`.
pub fn transition(
    current: AlertState,
    action: &Action,
) -> std::result::Result<AlertState, &'static str> {
    match (current, action) {
        (AlertState::Open | AlertState::Historical, Action::Ack { .. }) => {
            Ok(AlertState::Acknowledged)
        }
        (AlertState::Acknowledged, Action::Ack { .. }) => Err("acknowledged"),
        (AlertState::Resolved, _) => Err("resolved"),
        (_, Action::Resolve { .. }) => Ok(AlertState::Resolved),
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
}

impl Current {
    /// An alert nobody has moved yet.
    pub fn open() -> Current {
        Current {
            state: AlertState::Open,
            by: String::new(),
            at: String::new(),
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
    action: &Action,
) -> Result<Decision, LifecycleError> {
    let Some(current) = current else {
        return Err(LifecycleError::NoSuchAlert(fingerprint.to_owned()));
    };
    let to = transition(current.state, action).map_err(|state| LifecycleError::Already {
        fingerprint: fingerprint.to_owned(),
        state,
        by: current.by,
        at: current.at,
    })?;
    let (note, outcome) = match action {
        Action::Ack { note } => (note.clone(), None),
        Action::Resolve { outcome, note } => (note.clone(), Some(outcome.clone())),
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
            decide("fp", None, &ack),
            Err(LifecycleError::NoSuchAlert("fp".into()))
        );
        let d = decide("fp", Some(Current::open()), &ack).unwrap();
        assert_eq!((d.from, d.to), (AlertState::Open, AlertState::Acknowledged));
        assert_eq!(d.note.as_deref(), Some("n"));
        let acked = Current {
            state: AlertState::Acknowledged,
            by: "ana".into(),
            at: "t".into(),
        };
        assert_eq!(
            decide("fp", Some(acked), &ack).unwrap_err().to_string(),
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
}

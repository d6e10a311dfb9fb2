//! Escalation policies: re-notify, to other people, while nobody owns an alert.
//!
//! A route names a policy (`escalation: aml-escalation`); an alert routed
//! there starts the policy in the transaction that stores the alert. Each step
//! (`after`, `receivers`) is sent once, `after` the alert fired, unless the
//! alert was acknowledged or resolved first. The [`Escalator`] task wakes at
//! the next due step; steps go through the outbox (same delivery guarantees)
//! with the idempotency key [`step_key`]. A step that came due while the
//! engine was down is sent at start and marked `late`.
//!
//! What is pure lives apart: [`validate`] (config) and [`next_step`] (what is
//! due when). Time comes from a [`Clock`], so tests walk an alert through
//! hours of steps in seconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{EscalationPolicyConfig, RouteConfig};
use crate::store::escalation::{StepResult, StepSend};
use crate::store::prelude::*;

/// A step sent more than this after its due time is marked `late`: the
/// engine was down (or stalled) when it came due. Normal wake-up jitter and
/// the rescan interval stay well under it.
pub const LATE_AFTER: Duration = Duration::from_secs(60);

/// How often the store is re-read for alerts that started escalating (the
/// pipeline writes them; this task is not told).
pub const RESCAN: Duration = Duration::from_secs(1);

/// Checks the policies and the routes' `escalation:` names. Pure; every
/// problem, each naming its place in the config.
pub fn validate(
    policies: &[EscalationPolicyConfig],
    route: Option<&RouteConfig>,
    receivers: &[&str],
) -> Vec<String> {
    let mut errs = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, p) in policies.iter().enumerate() {
        let at = format!("escalation_policies[{i}]");
        if p.name.trim().is_empty() {
            errs.push(format!("{at}.name: must not be empty"));
        } else if !names.insert(p.name.as_str()) {
            errs.push(format!("{at}.name: the name `{}` is used twice", p.name));
        }
        if p.steps.is_empty() {
            errs.push(format!("{at}.steps: at least one step is needed"));
        }
        let mut prev: Option<Duration> = None;
        for (j, s) in p.steps.iter().enumerate() {
            let at = format!("{at}.steps[{j}]");
            if let Some(prev) = prev
                && s.after.0 < prev
            {
                errs.push(format!(
                    "{at}.after: {} comes before the previous step's {}; steps go in order",
                    fmt_after(s.after.0),
                    fmt_after(prev)
                ));
            }
            prev = Some(s.after.0);
            if s.receivers.is_empty() {
                errs.push(format!("{at}.receivers: at least one receiver is needed"));
            }
            for r in &s.receivers {
                if !receivers.contains(&r.as_str()) {
                    errs.push(format!(
                        "{at}.receivers: no receiver is named `{r}` (receivers: {})",
                        receivers.join(", ")
                    ));
                }
            }
        }
    }
    if let Some(route) = route {
        let mut known: Vec<&str> = policies.iter().map(|p| p.name.as_str()).collect();
        known.dedup();
        check_route(route, "route", &known, &mut errs);
    }
    errs
}

fn check_route(r: &RouteConfig, at: &str, known: &[&str], errs: &mut Vec<String>) {
    if let Some(e) = &r.escalation
        && !known.contains(&e.as_str())
    {
        errs.push(format!(
            "{at}.escalation: no escalation policy is named `{e}` (escalation_policies: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ));
    }
    for (i, c) in r.routes.iter().enumerate() {
        check_route(c, &format!("{at}.routes[{i}]"), known, errs);
    }
}

/// `0s`, `90s`, `15m`, `1h`, `1h30m`, `2d`: as a person writes it.
pub fn fmt_after(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return match d.subsec_millis() {
            0 => "0s".into(),
            ms => format!("{ms}ms"),
        };
    }
    let mut out = String::new();
    for (v, unit) in [
        (s / 86_400, "d"),
        (s / 3600 % 24, "h"),
        (s / 60 % 60, "m"),
        (s % 60, "s"),
    ] {
        if v > 0 {
            out.push_str(&format!("{v}{unit}"));
        }
    }
    out
}

/// What an escalation waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Step `index` is due (since `due_at`); `late` when well past it.
    Due {
        index: usize,
        due_at: DateTime<Utc>,
        late: bool,
    },
    /// Step `index` comes due at this time.
    At(DateTime<Utc>),
    /// Every step was sent.
    Done,
}

/// The next step of a policy for an escalation started at `started_at` that
/// has sent `sent` steps. Pure.
pub fn next_step(
    policy: &EscalationPolicyConfig,
    started_at: DateTime<Utc>,
    sent: usize,
    now: DateTime<Utc>,
) -> Next {
    let Some(step) = policy.steps.get(sent) else {
        return Next::Done;
    };
    let due_at = started_at + chrono::Duration::from_std(step.after.0).unwrap_or_default();
    if due_at > now {
        return Next::At(due_at);
    }
    let late = (now - due_at).to_std().unwrap_or_default() > LATE_AFTER;
    Next::Due {
        index: sent,
        due_at,
        late,
    }
}

/// The outbox idempotency key of a step: SHA-256 of fingerprint and step
/// index. Stable across restarts, different from the alert's own key, so a
/// receiver tells the escalation from the first notification.
pub fn step_key(fingerprint: &str, index: usize) -> String {
    crate::util::sha256_hex(format!("{fingerprint}\nescalation-step\n{index}").as_bytes())
}

/// The `escalation` object of a step's notification (templates read it).
#[derive(Debug, Clone, Serialize)]
pub struct StepInfo<'a> {
    pub policy: &'a str,
    /// 1-based: "step 2 of 3".
    pub step: usize,
    pub steps: usize,
    /// The step's `after`, as written (`15m`).
    pub after: String,
    pub due_at: String,
    pub late: bool,
}

/// The escalation task: sends due steps, sleeps until the next one.
pub struct Escalator {
    store: Arc<dyn StateStore>,
    policies: HashMap<String, EscalationPolicyConfig>,
    clock: Arc<dyn Clock>,
    /// Woken after a step's outbox rows are written.
    outbox_wake: Arc<Notify>,
}

impl Escalator {
    pub fn new(
        store: Arc<dyn StateStore>,
        policies: &[EscalationPolicyConfig],
        clock: Arc<dyn Clock>,
        outbox_wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            policies: policies
                .iter()
                .map(|p| (p.name.clone(), p.clone()))
                .collect(),
            clock,
            outbox_wake,
        }
    }

    /// Sends every step due now; returns the earliest time a later step comes
    /// due (none when no escalation waits).
    pub async fn tick(&self) -> crate::store::Result<Option<DateTime<Utc>>> {
        let mut earliest: Option<DateTime<Utc>> = None;
        for e in self.store.active_escalations().await? {
            let now = self.clock.now();
            if e.alert_state != "open" {
                if self
                    .store
                    .end_escalation(&e.fingerprint, &e.policy, &e.alert_state, now)
                    .await?
                {
                    tracing::info!(fingerprint = %e.fingerprint, policy = %e.policy,
                        "escalation stopped: alert {}", e.alert_state);
                }
                continue;
            }
            let Some(policy) = self.policies.get(&e.policy) else {
                tracing::warn!(fingerprint = %e.fingerprint, policy = %e.policy,
                    "escalation policy no longer configured; its remaining steps are dropped");
                self.store
                    .end_escalation(&e.fingerprint, &e.policy, "policy_removed", now)
                    .await?;
                continue;
            };
            let mut sent = e.next_step;
            // Several steps may be due at once after a long stop: each is sent, in order.
            loop {
                let now = self.clock.now();
                match next_step(policy, e.started_at, sent, now) {
                    Next::Done => {
                        // The policy lost steps since: nothing left to send.
                        self.store
                            .end_escalation(&e.fingerprint, &e.policy, "completed", now)
                            .await?;
                        break;
                    }
                    Next::At(t) => {
                        earliest = Some(earliest.map_or(t, |x| x.min(t)));
                        break;
                    }
                    Next::Due {
                        index,
                        due_at,
                        late,
                    } => {
                        let step = &policy.steps[index];
                        let info = StepInfo {
                            policy: &policy.name,
                            step: index + 1,
                            steps: policy.steps.len(),
                            after: fmt_after(step.after.0),
                            due_at: crate::store::fmt_time(due_at),
                            late,
                        };
                        let key = step_key(&e.fingerprint, index);
                        let r = self
                            .store
                            .send_escalation_step(&StepSend {
                                fingerprint: &e.fingerprint,
                                policy: &policy.name,
                                index,
                                last: index + 1 == policy.steps.len(),
                                receivers: &step.receivers,
                                key: &key,
                                due_at,
                                late,
                                info: serde_json::to_value(&info).expect("serializes"),
                                now,
                            })
                            .await?;
                        match r {
                            StepResult::Sent => {
                                if late {
                                    tracing::warn!(fingerprint = %e.fingerprint, policy = %policy.name,
                                        step = index + 1, due_at = %info.due_at,
                                        "escalation step sent late (it came due while the engine was down)");
                                } else {
                                    tracing::info!(fingerprint = %e.fingerprint, policy = %policy.name,
                                        step = index + 1, receivers = ?step.receivers, "escalation step sent");
                                }
                                self.outbox_wake.notify_one();
                                sent += 1;
                            }
                            StepResult::Stopped(state) => {
                                tracing::info!(fingerprint = %e.fingerprint, policy = %policy.name,
                                    "escalation stopped: alert {state}");
                                break;
                            }
                            StepResult::Gone => break,
                        }
                    }
                }
            }
        }
        Ok(earliest)
    }

    /// Runs until `shutdown` is cancelled: `select!` over the next due step,
    /// the rescan interval and shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let next = match self.tick().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!("escalation: {e}; retrying");
                    None
                }
            };
            let clock = self.clock.clone();
            let due = async move {
                match next {
                    Some(t) => clock.sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = due => {}
                _ = tokio::time::sleep(RESCAN) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Dur, EscalationStepConfig};

    fn policy(afters: &[u64]) -> EscalationPolicyConfig {
        EscalationPolicyConfig {
            name: "p".into(),
            steps: afters
                .iter()
                .map(|s| EscalationStepConfig {
                    after: Dur(Duration::from_secs(*s)),
                    receivers: vec!["mail".into()],
                })
                .collect(),
        }
    }

    #[test]
    fn next_step_walks_the_policy() {
        let p = policy(&[0, 900, 3600]);
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        assert_eq!(
            next_step(&p, t0, 0, t0),
            Next::Due {
                index: 0,
                due_at: t0,
                late: false
            }
        );
        assert_eq!(next_step(&p, t0, 1, at(10)), Next::At(at(900)));
        assert_eq!(
            next_step(&p, t0, 1, at(930)),
            Next::Due {
                index: 1,
                due_at: at(900),
                late: false
            }
        );
        // Down from 0:14 to 1:30: step 2 is late.
        assert_eq!(
            next_step(&p, t0, 1, at(5400)),
            Next::Due {
                index: 1,
                due_at: at(900),
                late: true
            }
        );
        assert_eq!(next_step(&p, t0, 3, at(99_999)), Next::Done);
    }

    #[test]
    fn keys_differ_per_step_and_from_the_fingerprint() {
        assert_ne!(step_key("fp", 0), step_key("fp", 1));
        assert_ne!(step_key("fp", 0), "fp");
        assert_eq!(step_key("fp", 2), step_key("fp", 2));
        assert_eq!(step_key("fp", 0).len(), 64);
    }

    #[test]
    fn after_reads_as_written() {
        assert_eq!(fmt_after(Duration::ZERO), "0s");
        assert_eq!(fmt_after(Duration::from_secs(900)), "15m");
        assert_eq!(fmt_after(Duration::from_secs(3600)), "1h");
        assert_eq!(fmt_after(Duration::from_secs(5400)), "1h30m");
        assert_eq!(fmt_after(Duration::from_secs(90)), "1m30s");
        assert_eq!(fmt_after(Duration::from_secs(2 * 86_400 + 3600)), "2d1h");
    }

    #[test]
    fn validation_names_the_place() {
        let yaml = "
- name: aml
  steps:
    - { after: 15m, receivers: [mail] }
    - { after: 5m, receivers: [nobody] }
- name: aml
  steps: []
";
        let policies: Vec<EscalationPolicyConfig> = serde_saphyr::from_str(yaml).unwrap();
        let route: RouteConfig = serde_saphyr::from_str(
            "receiver: mail\nescalation: aml\nroutes:\n  - match: { severity: critical }\n    escalation: amll\n",
        )
        .unwrap();
        assert_eq!(
            validate(&policies, Some(&route), &["mail", "pager"]),
            [
                "escalation_policies[0].steps[1].after: 5m comes before the previous step's 15m; steps go in order",
                "escalation_policies[0].steps[1].receivers: no receiver is named `nobody` (receivers: mail, pager)",
                "escalation_policies[1].name: the name `aml` is used twice",
                "escalation_policies[1].steps: at least one step is needed",
                "route.routes[0].escalation: no escalation policy is named `amll` (escalation_policies: aml)",
            ]
        );
    }
}

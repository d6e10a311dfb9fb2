//! `shadow report`: per shadow rule, what it fired, what the rule it
//! replaces fired, and the overlap (same submissions / only in one), over
//! the alerts the store recorded since a time. Pure over the store's rows.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::backtest::{Overlap, overlap};
use crate::rules::RuleSet;
use crate::store::shadow::FiredAlert;

#[derive(Debug, Clone, Serialize)]
pub struct ShadowLine {
    pub rule: String,
    pub replaces: Option<String>,
    /// Shadow alerts recorded (one submission may have several).
    pub alerts: usize,
    /// Alerts of the replaced rule.
    pub replaced_alerts: usize,
    /// By submission: `a` is the replaced rule, `b` the shadow rule.
    pub submissions: Overlap,
    /// False when the rule is no longer a shadow rule of the config (its
    /// alerts are from before a promotion or a removal).
    pub in_config: bool,
}

/// Lines for the config's shadow rules, then any other rule with shadow
/// alerts in `alerts`.
pub fn build(rules: &RuleSet, alerts: &[FiredAlert]) -> Vec<ShadowLine> {
    let mut shadow: BTreeMap<String, Option<String>> = BTreeMap::new();
    for r in rules.rules().iter().filter(|r| r.mode.is_shadow()) {
        shadow.insert(r.id.clone(), r.replaces.clone());
    }
    let configured: BTreeSet<String> = shadow.keys().cloned().collect();
    for a in alerts.iter().filter(|a| a.mode == "shadow") {
        shadow
            .entry(a.rule.clone())
            .or_insert_with(|| a.replaces.clone());
    }
    shadow
        .into_iter()
        .map(|(rule, replaces)| {
            let of = |id: &str, mode: &str| -> Vec<&FiredAlert> {
                alerts
                    .iter()
                    .filter(|a| a.rule == id && a.mode == mode)
                    .collect()
            };
            let mine = of(&rule, "shadow");
            let theirs = replaces
                .as_deref()
                .map(|r| of(r, "live"))
                .unwrap_or_default();
            let ids = |v: &[&FiredAlert]| -> BTreeSet<String> {
                v.iter().map(|a| a.submission_id.clone()).collect()
            };
            ShadowLine {
                in_config: configured.contains(&rule),
                alerts: mine.len(),
                replaced_alerts: theirs.len(),
                submissions: overlap(&ids(&theirs), &ids(&mine)),
                rule,
                replaces,
            }
        })
        .collect()
}

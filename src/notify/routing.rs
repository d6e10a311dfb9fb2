//! The routing tree: which receivers an alert goes to, and in which group.
//!
//! Alertmanager's model, because on-call teams already know it: the root
//! matches every alert; an alert descends into the first child whose matchers
//! hold (and into later siblings too when that child says `continue`); where
//! no child matches, the node itself routes it. Children inherit their
//! parent's receiver and grouping settings. Pure: no I/O, no clock.
//!
//! Matcher and `group_by` keys: `rule`, `severity`, `submission_id`,
//! `group_key`, `fingerprint`, or a label name (a label shadows nothing: the
//! built-in keys win).

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;

use crate::config::RouteConfig;
use crate::rules::Alert;

/// `group_by: [...]`: every alert is a group of its own.
pub const EACH_ALERT: &str = "...";

/// Where one alert goes: a receiver, the group it joins there, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub receiver: String,
    /// The matching node, as a path (`root`, `root.0`, `root.0.2`): two routes
    /// to one receiver keep separate groups.
    pub route: String,
    /// `route|key=value,...`: alerts with the same one are sent together.
    pub group_key: String,
    pub group_wait: Duration,
    pub repeat_interval: Duration,
    /// The escalation policy of the matching node (inherited), if any.
    pub escalation: Option<String>,
}

#[derive(Debug)]
struct Node {
    path: String,
    receiver: String,
    eq: Vec<(String, String)>,
    re: Vec<(String, Regex)>,
    continue_matching: bool,
    group_by: Vec<String>,
    group_wait: Duration,
    repeat_interval: Duration,
    escalation: Option<String>,
    children: Vec<Node>,
}

/// A compiled routing tree.
#[derive(Debug)]
pub struct Router {
    root: Node,
}

/// Settings a child inherits.
struct Inherited<'a> {
    receiver: Option<&'a str>,
    group_by: &'a [String],
    group_wait: Duration,
    repeat_interval: Duration,
    escalation: Option<&'a str>,
}

/// Defaults of the root when the config does not say.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::ZERO;

impl Router {
    /// Compiles a `route:` tree; every problem is reported (`route.routes[1].match_re.rule: ...`).
    pub fn build(cfg: &RouteConfig, receivers: &[&str]) -> Result<Router, Vec<String>> {
        let mut errs = Vec::new();
        if !cfg.matchers.is_empty() || !cfg.match_re.is_empty() {
            errs.push(
                "route: the root route matches every alert; it cannot have `match` or `match_re`"
                    .to_string(),
            );
        }
        if cfg.receiver.is_none() {
            errs.push("route.receiver: the root route needs a receiver (the default)".to_string());
        }
        let default_group_by = vec!["rule".to_string()];
        let parent = Inherited {
            receiver: None,
            group_by: &default_group_by,
            group_wait: DEFAULT_GROUP_WAIT,
            repeat_interval: DEFAULT_REPEAT_INTERVAL,
            escalation: None,
        };
        let root = compile(cfg, "route", "root".into(), &parent, receivers, &mut errs);
        if errs.is_empty() {
            Ok(Router { root })
        } else {
            Err(errs)
        }
    }

    /// The routing used when the config has no `route:`: every alert to every
    /// receiver, each alert its own notification, at once (as before routing existed).
    pub fn every_receiver(receivers: &[&str]) -> Router {
        let leaf = |i: usize, name: &str| Node {
            path: format!("root.{i}"),
            receiver: name.to_owned(),
            eq: Vec::new(),
            re: Vec::new(),
            continue_matching: true,
            group_by: vec![EACH_ALERT.into()],
            group_wait: Duration::ZERO,
            repeat_interval: Duration::ZERO,
            escalation: None,
            children: Vec::new(),
        };
        Router {
            root: Node {
                path: "root".into(),
                receiver: String::new(),
                eq: Vec::new(),
                re: Vec::new(),
                continue_matching: false,
                group_by: vec![EACH_ALERT.into()],
                group_wait: Duration::ZERO,
                repeat_interval: Duration::ZERO,
                escalation: None,
                children: receivers
                    .iter()
                    .enumerate()
                    .map(|(i, r)| leaf(i, r))
                    .collect(),
            },
        }
    }

    /// The receivers (each at most once, first match wins) of an alert.
    pub fn route(&self, alert: &Alert) -> Vec<RouteMatch> {
        let attrs = attributes(alert);
        let mut out: Vec<RouteMatch> = Vec::new();
        route_node(&self.root, &attrs, &mut out);
        let mut seen = std::collections::HashSet::new();
        out.retain(|m| !m.receiver.is_empty() && seen.insert(m.receiver.clone()));
        out
    }
}

fn compile(
    cfg: &RouteConfig,
    at: &str,
    path: String,
    parent: &Inherited<'_>,
    receivers: &[&str],
    errs: &mut Vec<String>,
) -> Node {
    if let Some(r) = &cfg.receiver
        && !receivers.contains(&r.as_str())
    {
        errs.push(format!(
            "{at}.receiver: no receiver is named `{r}` (receivers: {})",
            receivers.join(", ")
        ));
    }
    let mut re = Vec::new();
    for (k, pattern) in &cfg.match_re {
        // Checked as written (so the error points into it), then anchored
        // as in Alertmanager: `aml-.*` must match the whole value.
        match Regex::new(pattern).and_then(|_| Regex::new(&format!("^(?:{pattern})$"))) {
            Ok(r) => re.push((k.clone(), r)),
            Err(e) => {
                let text = e.to_string();
                let why = text.rsplit("error: ").next().unwrap_or(&text).trim();
                errs.push(format!("{at}.match_re.{k}: bad regex `{pattern}`: {why}"));
            }
        }
    }
    if let Some(g) = &cfg.group_by
        && g.iter().any(|k| k == EACH_ALERT)
        && g.len() > 1
    {
        errs.push(format!(
            "{at}.group_by: `...` (every alert alone) cannot be combined with other keys"
        ));
    }
    let receiver = cfg.receiver.as_deref().or(parent.receiver);
    let group_by = cfg.group_by.as_deref().unwrap_or(parent.group_by);
    let group_wait = cfg.group_wait.map_or(parent.group_wait, |d| d.0);
    let repeat_interval = cfg.repeat_interval.map_or(parent.repeat_interval, |d| d.0);
    let escalation = cfg.escalation.as_deref().or(parent.escalation);
    let here = Inherited {
        receiver,
        group_by,
        group_wait,
        repeat_interval,
        escalation,
    };
    let children = cfg
        .routes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            compile(
                c,
                &format!("{at}.routes[{i}]"),
                format!("{path}.{i}"),
                &here,
                receivers,
                errs,
            )
        })
        .collect();
    Node {
        path,
        receiver: receiver.unwrap_or_default().to_owned(),
        eq: cfg
            .matchers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        re,
        continue_matching: cfg.continue_matching,
        group_by: group_by.to_vec(),
        group_wait,
        repeat_interval,
        escalation: escalation.map(str::to_owned),
        children,
    }
}

/// The values routing can look at: built-in keys over labels.
fn attributes(alert: &Alert) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = alert
        .labels
        .iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect();
    m.insert("rule".into(), alert.rule.clone());
    m.insert("severity".into(), alert.severity.as_str().into());
    m.insert("submission_id".into(), alert.submission_id.clone());
    m.insert("fingerprint".into(), alert.fingerprint.clone());
    if let Some(g) = &alert.group_key {
        m.insert("group_key".into(), g.clone());
    }
    m
}

fn matches(node: &Node, attrs: &BTreeMap<String, String>) -> bool {
    node.eq
        .iter()
        .all(|(k, v)| attrs.get(k).is_some_and(|a| a == v))
        && node
            .re
            .iter()
            .all(|(k, r)| r.is_match(attrs.get(k).map_or("", String::as_str)))
}

/// Returns whether this node (or a descendant) took the alert.
fn route_node(node: &Node, attrs: &BTreeMap<String, String>, out: &mut Vec<RouteMatch>) {
    let mut matched_child = false;
    for child in &node.children {
        if !matches(child, attrs) {
            continue;
        }
        matched_child = true;
        route_node(child, attrs, out);
        if !child.continue_matching {
            break;
        }
    }
    if !matched_child {
        out.push(RouteMatch {
            receiver: node.receiver.clone(),
            route: node.path.clone(),
            group_key: group_key(node, attrs),
            group_wait: node.group_wait,
            repeat_interval: node.repeat_interval,
            escalation: node.escalation.clone(),
        });
    }
}

fn group_key(node: &Node, attrs: &BTreeMap<String, String>) -> String {
    let key = if node.group_by.iter().any(|k| k == EACH_ALERT) {
        format!("fingerprint={}", attrs["fingerprint"])
    } else {
        node.group_by
            .iter()
            .map(|k| format!("{k}={}", attrs.get(k).map_or("", String::as_str)))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!("{}|{key}", node.path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Severity;

    fn alert(rule: &str, severity: Severity, labels: &[(&str, &str)]) -> Alert {
        Alert {
            rule: rule.into(),
            severity,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
                .collect(),
            submission_id: "sub1".into(),
            submission_ids: vec!["sub1".into()],
            group_key: None,
            count: 1,
            event_time: chrono::Utc::now(),
            fingerprint: format!("fp-{rule}"),
        }
    }

    fn router(yaml: &str) -> Result<Router, Vec<String>> {
        let cfg: RouteConfig = serde_saphyr::from_str(yaml).unwrap();
        Router::build(&cfg, &["mail", "pager", "slack", "archive"])
    }

    fn receivers(r: &Router, a: &Alert) -> Vec<String> {
        r.route(a).into_iter().map(|m| m.receiver).collect()
    }

    const TREE: &str = "
receiver: mail
group_by: [rule]
group_wait: 1m
routes:
  - match: { severity: critical }
    receiver: pager
    group_wait: 0s
    continue: true
  - match_re: { rule: 'aml-.*' }
    receiver: slack
  - match: { team: fraud }
    receiver: slack
    group_by: [rule, team]
    routes:
      - match: { severity: high }
        receiver: archive
";

    #[test]
    fn first_match_wins_unless_continue() {
        let r = router(TREE).unwrap();
        let crit = alert("aml-red-flag-high", Severity::Critical, &[("team", "aml")]);
        assert_eq!(receivers(&r, &crit), ["pager", "slack"]);
        let m = r.route(&crit);
        assert_eq!(m[0].group_wait, Duration::ZERO);
        assert_eq!(m[1].group_wait, Duration::from_secs(60), "inherited");
        assert_eq!(m[1].group_key, "root.1|rule=aml-red-flag-high");
    }

    #[test]
    fn default_route_and_nested_routes() {
        let r = router(TREE).unwrap();
        assert_eq!(
            receivers(
                &r,
                &alert("under-age", Severity::Medium, &[("team", "kyc")])
            ),
            ["mail"]
        );
        let dup = alert("duplicate-applicant", Severity::High, &[("team", "fraud")]);
        let m = r.route(&dup);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].receiver, "archive");
        assert_eq!(
            m[0].group_key,
            "root.2.0|rule=duplicate-applicant,team=fraud"
        );
        // The fraud node routes what none of its children take.
        assert_eq!(
            receivers(
                &r,
                &alert("low-liveness", Severity::Medium, &[("team", "fraud")])
            ),
            ["slack"]
        );
    }

    #[test]
    fn regex_is_anchored() {
        let r = router(TREE).unwrap();
        // `aml-.*` must match the whole rule id, not a part of it.
        assert_eq!(
            receivers(&r, &alert("not-aml-rule", Severity::Low, &[])),
            ["mail"]
        );
    }

    #[test]
    fn each_alert_alone() {
        let r = router("receiver: mail\ngroup_by: ['...']\n").unwrap();
        let m = r.route(&alert("under-age", Severity::Medium, &[]));
        assert_eq!(m[0].group_key, "root|fingerprint=fp-under-age");
        assert_eq!(m[0].group_wait, DEFAULT_GROUP_WAIT);
    }

    #[test]
    fn every_receiver_without_route() {
        let r = Router::every_receiver(&["log", "file"]);
        let m = r.route(&alert("under-age", Severity::Medium, &[]));
        assert_eq!(
            m.iter().map(|m| m.receiver.as_str()).collect::<Vec<_>>(),
            ["log", "file"]
        );
        assert!(m.iter().all(|m| m.group_wait.is_zero()));
        assert_eq!(m[0].group_key, "root.0|fingerprint=fp-under-age");
    }

    #[test]
    fn build_errors_name_the_node() {
        let errs = router(
            "match: { a: b }\nroutes:\n  - receiver: nobody\n    match_re: { rule: '(' }\n    group_by: ['...', rule]\n",
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "route: the root route matches every alert; it cannot have `match` or `match_re`",
                "route.receiver: the root route needs a receiver (the default)",
                "route.routes[0].receiver: no receiver is named `nobody` (receivers: mail, pager, slack, archive)",
                "route.routes[0].match_re.rule: bad regex `(`: unclosed group",
                "route.routes[0].group_by: `...` (every alert alone) cannot be combined with other keys",
            ]
        );
    }
}

//! Notification templates (minijinja): compiled once at start-up.
//!
//! The shipped templates are embedded in the binary, so it works from any
//! folder; a configured `templates.dir` overrides them by file name and may add
//! more. Undefined variables are errors (a typo must not send an empty
//! subject), `.html` output is HTML-escaped, and `.json` output is JSON-escaped
//! (a value can never break a webhook body). The masking filters exist because
//! the shipped templates must never show identity, document or account
//! numbers in a chat channel.

mod message;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use minijinja::value::Value as JValue;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};
use serde_json::Value;

use crate::config::TemplatesConfig;
use crate::outbox_payload::Notification;
use crate::rules::RuleSet;

pub use message::{Links, count_phrase, display_value, human_duration, slack_escape, teams_escape};

/// The shipped templates, by name.
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "email_subject.txt",
        include_str!("../templates/email_subject.txt"),
    ),
    ("email.txt", include_str!("../templates/email.txt")),
    ("email.html", include_str!("../templates/email.html")),
    ("generic.json", include_str!("../templates/generic.json")),
    ("slack.json", include_str!("../templates/slack.json")),
    ("teams.json", include_str!("../templates/teams.json")),
    (
        "pagerduty.json",
        include_str!("../templates/pagerduty.json"),
    ),
    (
        "alertmanager.json",
        include_str!("../templates/alertmanager.json"),
    ),
    (
        "digest_subject.txt",
        include_str!("../templates/digest_subject.txt"),
    ),
    ("digest.txt", include_str!("../templates/digest.txt")),
    ("digest.html", include_str!("../templates/digest.html")),
];

pub use crate::config::{DEFAULT_RENDER_FUEL, DEFAULT_RENDER_FUEL_PER_ALERT};

/// Alerts in the notification `check --config` renders every template with.
pub const CHECK_ALERTS: usize = 100;

/// The compiled templates and what their filters need.
pub struct Templates {
    env: Environment<'static>,
    names: Vec<String>,
    /// For the links messages carry (alert page, acknowledge, Argos).
    links: Links,
    /// The rules, for what messages say about them (description, summary,
    /// playbook URL, window, fields); none: messages show the alert only.
    rules: Option<Arc<RuleSet>>,
    budget: RenderBudget,
    /// `env` with the fuel of a size class (alerts rounded up to a power of
    /// two): minijinja's fuel is set per environment, and a clone shares the
    /// compiled templates.
    fueled: std::sync::Mutex<BTreeMap<usize, Arc<Environment<'static>>>>,
}

/// What one render may cost: `base + per_alert * alerts` fuel. Fuel bounds
/// both time and memory, so a template with runaway loops fails that one
/// notification instead of stalling every receiver.
#[derive(Debug, Clone, Copy)]
struct RenderBudget {
    base: u64,
    per_alert: u64,
}

impl RenderBudget {
    fn fuel(&self, size_class: usize) -> u64 {
        self.base
            .saturating_add(self.per_alert.saturating_mul(size_class as u64))
    }
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("names", &self.names)
            .finish()
    }
}

impl Templates {
    /// Compiles the shipped templates, then the configured folder's. Every
    /// problem is reported (`dir/slack.json:3: syntax error: ...`).
    pub fn load(cfg: &TemplatesConfig) -> Result<Templates, Vec<String>> {
        let mut errs = Vec::new();
        let tz: chrono_tz::Tz = match cfg.timezone.parse() {
            Ok(tz) => tz,
            Err(_) => {
                errs.push(format!(
                    "templates.timezone: `{}` is not an IANA time zone",
                    cfg.timezone
                ));
                chrono_tz::UTC
            }
        };
        let mut env = environment(tz, cfg.dashboard_url.clone());
        let mut sources: BTreeMap<String, (String, String)> = SHIPPED
            .iter()
            .map(|(n, s)| {
                (
                    (*n).to_owned(),
                    ((*s).to_owned(), format!("templates/{n} (shipped)")),
                )
            })
            .collect();
        if let Some(dir) = &cfg.dir {
            match read_dir(dir) {
                Ok(files) => {
                    for (name, text, origin) in files {
                        sources.insert(name, (text, origin));
                    }
                }
                Err(e) => errs.push(e),
            }
        }
        let mut names = Vec::new();
        for (name, (text, origin)) in sources {
            match env.add_template_owned(name.clone(), text) {
                Ok(()) => names.push(name),
                Err(e) => errs.push(describe(&origin, &e)),
            }
        }
        if errs.is_empty() {
            Ok(Templates {
                env,
                names,
                links: Links {
                    dashboard_url: cfg.dashboard_url.clone(),
                    ..Links::default()
                },
                rules: None,
                budget: RenderBudget {
                    base: cfg.render_fuel,
                    per_alert: cfg.render_fuel_per_alert,
                },
                fueled: Default::default(),
            })
        } else {
            Err(errs)
        }
    }

    /// With these links (`dashboard_url` included). Digests link each
    /// alert to its console page through `fingerprint|console_link`.
    pub fn with_links(mut self, links: Links) -> Templates {
        let base = links
            .public_url
            .as_deref()
            .map(|u| u.trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty());
        self.env
            .add_filter("console_link", move |v: &JValue| -> Result<JValue, Error> {
                Ok(match (opt_str(v)?, &base) {
                    (Some(fp), Some(base)) => JValue::from(format!("{base}/alerts/{fp}")),
                    _ => JValue::from(()),
                })
            });
        self.fueled.get_mut().expect("fuel cache").clear();
        self.links = links;
        self
    }

    /// With the rules messages describe.
    pub fn with_rules(mut self, rules: Option<Arc<RuleSet>>) -> Templates {
        self.rules = rules;
        self
    }

    /// The shipped templates only, UTC, no dashboard link (tests, `render` without config).
    pub fn shipped() -> Templates {
        Self::load(&TemplatesConfig::default()).expect("the shipped templates compile")
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// Renders `name` with a notification's context. A `.json` template's
    /// output must parse as JSON.
    pub fn render(&self, name: &str, n: &Notification) -> Result<String, String> {
        self.render_with(name, n, &BTreeMap::new())
    }

    /// As [`Templates::render`], with a receiver's `params` (e.g. PagerDuty's `routing_key`).
    pub fn render_with(
        &self,
        name: &str,
        n: &Notification,
        params: &BTreeMap<String, String>,
    ) -> Result<String, String> {
        let mut ctx = self.context(n);
        ctx["params"] = serde_json::to_value(params).expect("strings serialize");
        self.render_value(name, &ctx)
    }

    pub fn render_value(&self, name: &str, ctx: &Value) -> Result<String, String> {
        let env = self.env_for(work_units(ctx));
        let t = env
            .get_template(name)
            .map_err(|e| format!("template `{name}`: {e}"))?;
        let out = t
            .render(minijinja::value::Serde(ctx))
            .map_err(|e| self.describe_render(name, ctx, &e))?;
        if name.ends_with(".json")
            && let Err(e) = serde_json::from_str::<Value>(&out)
        {
            return Err(format!(
                "template `{name}` rendered invalid JSON (line {}, column {}): {e}",
                e.line(),
                e.column()
            ));
        }
        Ok(out)
    }

    /// Renders every template with the sample notification (`digest*`
    /// templates with the sample digest report): catches the undefined
    /// variables and broken JSON that compiling cannot.
    /// `digest_report` is the sample report (the composition root builds it:
    /// the digest module renders with these templates, not the other way).
    pub fn check_all(&self, digest_report: &Value) -> Vec<String> {
        let sample = Notification::sample("check");
        let params = sample_params();
        let report = serde_json::json!({ "report": digest_report });
        self.names
            .iter()
            .filter_map(|n| {
                if is_digest_template(n) {
                    self.render_value(n, &report).err()
                } else {
                    self.render_with(n, &sample, &params).err()
                }
            })
            .chain(
                self.rules
                    .as_deref()
                    .map(|r| message::check_summaries(&self.env, r))
                    .unwrap_or_default(),
            )
            .collect()
    }

    /// The variables every template sees.
    ///
    /// - `key`: the idempotency key; `receiver`; `group` (the routing group's
    ///   attributes, e.g. `{"rule": ...}`, or none); `group_key` (internal)
    /// - `count`, `count_phrase` (`15 alerts of R`, `3 alerts of 2 rules: ...`),
    ///   `rules` (distinct ids), `severity` (the highest), `headline`
    /// - `alerts`: each alert as `eval` prints it, plus `submission` (stored
    ///   JSON or none), `short_fingerprint`, `description`, `summary`,
    ///   `playbook`, `playbook_url`, `group` (`{by, value, meaning}` or none),
    ///   `members` (`[{submission_id, time}]`), `fields` (`[{path, value}]`,
    ///   masked), `aml` (`{risk_level, status}` or none), `links` (`{alert,
    ///   ack, argos}`, each none unless configured)
    /// - `alert`: the first alert (most notifications hold one)
    /// - `escalation`: none, or for a step of an escalation policy `{policy, step
    ///   (1-based), steps, after, due_at, late}`
    pub fn context(&self, n: &Notification) -> Value {
        message::context(n, &self.links, self.rules.as_deref(), &self.env)
    }
}

impl Templates {
    /// The environment whose fuel fits a context of `units` alerts.
    fn env_for(&self, units: usize) -> Arc<Environment<'static>> {
        let class = units
            .max(1)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX);
        let mut cache = self.fueled.lock().expect("template cache lock");
        cache
            .entry(class)
            .or_insert_with(|| {
                let mut env = self.env.clone();
                env.set_fuel(Some(self.budget.fuel(class)));
                Arc::new(env)
            })
            .clone()
    }

    /// A render error; running out of fuel names the budget, not the data.
    fn describe_render(&self, name: &str, ctx: &Value, e: &Error) -> String {
        if e.kind() != ErrorKind::OutOfFuel {
            return describe(&format!("template `{name}`"), e);
        }
        let units = work_units(ctx);
        let class = units
            .max(1)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX);
        format!(
            "template `{name}`: rendering stopped: it needs more than its budget of {} fuel \
             for {units} alert(s) (templates.render_fuel + render_fuel_per_alert x {class}); \
             a loop too deep or an output too large?",
            self.budget.fuel(class)
        )
    }

    /// `check --config`: renders every alert template with a notification of
    /// [`CHECK_ALERTS`] sample alerts, so a template whose cost grows faster
    /// than its budget (nested loops over the alerts) is found before it fails
    /// in service.
    pub fn check_render_budget(&self) -> Vec<String> {
        let alerts = CHECK_ALERTS;
        let mut n = Notification::sample("check");
        let first = n.alerts[0].clone();
        n.alerts = (0..alerts.max(1))
            .map(|i| {
                let mut a = first.clone();
                a["fingerprint"] = Value::from(format!("{i:064x}"));
                a
            })
            .collect();
        let params = sample_params();
        let one = Notification::sample("check");
        self.names
            .iter()
            .filter(|name| !is_digest_template(name))
            // A template that fails with one alert is reported by `check_all`.
            .filter(|name| self.render_with(name, &one, &params).is_ok())
            .filter_map(|name| {
                self.render_with(name, &n, &params)
                    .err()
                    .map(|e| format!("with {alerts} alerts in one notification: {e}"))
            })
            .collect()
    }
}

/// The size a render's budget scales with: the alerts of a notification, or
/// the rows of a digest report.
fn work_units(ctx: &Value) -> usize {
    if let Some(a) = ctx.get("alerts").and_then(Value::as_array) {
        return a.len();
    }
    ctx.get("report").and_then(Value::as_object).map_or(0, |r| {
        r.values().filter_map(Value::as_array).map(Vec::len).sum()
    })
}

/// Digest templates read a report, not alerts (by convention, their names start with `digest`).
pub fn is_digest_template(name: &str) -> bool {
    name.starts_with("digest")
}

/// The `params` `check` and `render` use when no receiver supplies them.
pub fn sample_params() -> BTreeMap<String, String> {
    BTreeMap::from([("routing_key".to_string(), "SAMPLE_ROUTING_KEY".to_string())])
}

fn describe(origin: &str, e: &Error) -> String {
    let mut msg = match e.line() {
        Some(l) => format!("{origin}:{l}: {}", e.kind()),
        None => format!("{origin}: {}", e.kind()),
    };
    if let Some(d) = e.detail() {
        msg.push_str(": ");
        msg.push_str(d);
    }
    msg
}

fn read_dir(dir: &Path) -> Result<Vec<(String, String, String)>, String> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| format!("templates.dir {}: cannot read: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| format!("templates.dir {}: {e}", dir.display()))?;
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        out.push((name.to_owned(), text, path.display().to_string()));
    }
    Ok(out)
}

fn environment(tz: chrono_tz::Tz, dashboard_url: Option<String>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("default delimiters"),
    );
    // Default callback: .html/.xml -> HTML escaping, .json -> JSON escaping.
    env.add_filter("mask_id", mask_filter);
    env.add_filter("mask_account", mask_filter);
    env.add_filter("mask_email", |v: &JValue| -> Result<JValue, Error> {
        Ok(opt_str(v)?.map_or(JValue::from(()), |s| JValue::from(mask_email(&s))))
    });
    env.add_filter(
        "date",
        move |v: &JValue, format: Option<String>, zone: Option<String>| -> Result<String, Error> {
            let s = opt_str(v)?.ok_or_else(|| {
                Error::new(ErrorKind::InvalidOperation, "date: no time given (none)")
            })?;
            let t: DateTime<Utc> = DateTime::parse_from_rfc3339(&s)
                .map_err(|e| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        format!("date: `{s}` is not an RFC 3339 time: {e}"),
                    )
                })?
                .with_timezone(&Utc);
            let zone: chrono_tz::Tz = match zone {
                Some(z) => z.parse().map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        format!("date: `{z}` is not an IANA time zone"),
                    )
                })?,
                None => tz,
            };
            let fmt = format.as_deref().unwrap_or("%Y-%m-%d %H:%M:%S %Z");
            Ok(t.with_timezone(&zone).format(fmt).to_string())
        },
    );
    // Chat markup: every value a Slack or Teams template shows goes through these.
    env.add_filter("slack", |v: &JValue| -> Result<String, Error> {
        Ok(opt_str(v)?.map_or_else(String::new, |s| slack_escape(&s)))
    });
    env.add_filter("teams", |v: &JValue| -> Result<String, Error> {
        Ok(opt_str(v)?.map_or_else(String::new, |s| teams_escape(&s)))
    });
    // Set by `Templates::with_links` when `api.public_url` is known.
    env.add_filter("console_link", |_: &JValue| -> Result<JValue, Error> {
        Ok(JValue::from(()))
    });
    env.add_filter("argos_link", move |v: &JValue| -> Result<JValue, Error> {
        let Some(id) = opt_str(v)? else {
            return Ok(JValue::from(()));
        };
        Ok(match &dashboard_url {
            Some(u) => JValue::from(u.replace("{submission_id}", &id)),
            None => JValue::from(()),
        })
    });
    env
}

/// A string value, none for none/undefined (masking a missing field is no error).
fn opt_str(v: &JValue) -> Result<Option<String>, Error> {
    if v.is_undefined() || v.is_none() {
        return Ok(None);
    }
    Ok(Some(match v.as_str() {
        Some(s) => s.to_owned(),
        None => v.to_string(),
    }))
}

fn mask_filter(v: &JValue, keep: Option<usize>) -> Result<JValue, Error> {
    Ok(opt_str(v)?.map_or(JValue::from(()), |s| {
        JValue::from(mask_keep_last(&s, keep.unwrap_or(4)))
    }))
}

/// Replaces every letter and digit except the last `keep` of them with `*`;
/// separators stay, so `900101-1234567` reads `******-***4567`. Values of
/// `keep` or fewer characters are masked whole: there is nothing to keep.
pub fn mask_keep_last(s: &str, keep: usize) -> String {
    let total = s.chars().filter(|c| c.is_alphanumeric()).count();
    if total <= keep {
        return s
            .chars()
            .map(|c| if c.is_alphanumeric() { '*' } else { c })
            .collect();
    }
    let mut seen = 0;
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() {
                seen += 1;
                if seen <= total - keep { '*' } else { c }
            } else {
                c
            }
        })
        .collect()
}

/// `alice@example.com` -> `a***@example.com`; the domain stays (it routes the case).
pub fn mask_email(s: &str) -> String {
    match s.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => mask_keep_last(s, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking() {
        assert_eq!(mask_keep_last("900101-1234567", 4), "******-***4567");
        assert_eq!(mask_keep_last("M12345678", 4), "*****5678");
        assert_eq!(mask_keep_last("123", 4), "***");
        assert_eq!(mask_email("alice@example.com"), "a***@example.com");
    }

    #[test]
    fn undefined_is_an_error_and_json_is_escaped() {
        let cfg = TemplatesConfig::default();
        let mut t = Templates::load(&cfg).unwrap();
        t.env
            .add_template_owned("bad.txt", "{{ alert.no_such_field }}")
            .unwrap();
        t.env
            .add_template_owned("q.json", "{\"rule\": {{ alert.rule }}}")
            .unwrap();
        let mut n = Notification::sample("t");
        let err = t.render("bad.txt", &n).unwrap_err();
        assert_eq!(
            err,
            "template `bad.txt`:1: undefined value: `alert.no_such_field` is undefined"
        );
        n.alerts[0]["rule"] = Value::from("a\"b</script>");
        assert_eq!(
            t.render("q.json", &n).unwrap(),
            "{\"rule\": \"a\\\"b</script>\"}"
        );
    }
}

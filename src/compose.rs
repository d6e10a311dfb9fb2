//! The composition root: the one place configuration (plain data) becomes
//! runtime objects: the rule set, templates, receivers, routing tree, the
//! Argos client, the engine (store, pipeline, outbox) and the alert API.
//! `run`, `backfill`, `check`, `demo`, the other commands and hot reload all
//! build through here, so what one accepts the others accept.
//!
//! It also completes validation: `config` checks itself (pure, no knowledge
//! of the modules built from it); the checks that need those modules (the
//! route tree, escalation policies, digest schedules) are added here and
//! reported at their line in the file like any other problem.

use std::path::Path;
use std::sync::Arc;

use secrecy::SecretString;
use serde_json::Value;
use tokio::sync::Notify;

use crate::argos::client::{ArgosClient, ClientConfig};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, LoadMode};
use crate::notify::Receiver;
use crate::notify::outbox::Outbox;
use crate::notify::routing::Router;
use crate::pipeline::Pipeline;
use crate::rules::RuleSet;
use crate::store::StateStore;
use crate::templates::{Links, Templates};

/// Reads and fully checks the configuration file (see [`checks`]).
pub fn load_config(path: &Path) -> Result<Config, String> {
    load_config_with(path, LoadMode::Strict)
}

/// [`load_config`] for commands that need only some of the file.
pub fn load_config_with(path: &Path, mode: LoadMode) -> Result<Config, String> {
    Config::load_checked(path, mode, &checks)
}

/// [`load_config`] from text (`env` resolves `${VAR}`).
pub fn parse_config(
    path: &Path,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, String> {
    Config::parse_checked(path, text, env, LoadMode::Strict, &checks)
}

/// The problems of a config that only the modules built from it can see:
/// the route tree, escalation policies and digest schedules. Pure.
pub fn checks(cfg: &Config) -> Vec<String> {
    let known: Vec<&str> = cfg.receivers.iter().map(|r| r.name()).collect();
    let mut errs = Vec::new();
    if let Some(route) = &cfg.route
        && let Err(e) = Router::build(route, &known)
    {
        errs.extend(e);
    }
    errs.extend(crate::escalation::validate(
        &cfg.escalation_policies,
        cfg.route.as_ref(),
        &known,
    ));
    for d in &cfg.digests {
        for (field, e) in crate::digest::Schedule::problems(&d.schedule, &d.timezone) {
            errs.push(format!("digests.{}.{field}: {e}", d.name));
        }
    }
    if let Some(url) = &cfg.store.url
        && url.starts_with("postgres")
        && let Err(e) = crate::store::postgres::check_url(url)
    {
        errs.push(format!("store.url: {e}"));
    }
    errs
}

/// The API key from the config, else from `ARGOS_API_KEY`.
pub fn api_key(cfg: &Config) -> anyhow::Result<SecretString> {
    if let Some(k) = &cfg.argos.api_key {
        return Ok(k.clone());
    }
    std::env::var("ARGOS_API_KEY")
        .map(SecretString::from)
        .map_err(|_| anyhow::anyhow!("no Argos API key: set argos.api_key in the config (e.g. `${{ARGOS_API_KEY}}`) or the environment variable ARGOS_API_KEY"))
}

pub fn client_config(cfg: &Config) -> anyhow::Result<ClientConfig> {
    let a = &cfg.argos;
    let mut c = ClientConfig::new(a.base_url.clone(), api_key(cfg)?);
    c.timeout = a.timeout.0;
    c.max_retries = a.max_retries;
    c.rate_limit_per_sec = a.rate_limit_per_sec;
    c.encrypted = a.encrypted;
    c.page_size = a.page_size;
    c.max_pages = a.max_pages_per_day;
    c.max_response_bytes = a.max_response_bytes.0;
    c.daily_budget = a.daily_budget;
    c.date_format = a.date_format;
    if let Some(d) = a.retry_base_delay {
        c.retry_base_delay = d.0;
    }
    Ok(c)
}

/// Loads the rule set, turning `check`-style problems into one error.
pub fn load_rules(cfg: &Config) -> anyhow::Result<RuleSet> {
    crate::rules::load_path(&cfg.rules, crate::rules::ScriptLimits::default()).map_err(|diags| {
        let text: Vec<String> = diags.iter().map(ToString::to_string).collect();
        anyhow::anyhow!(
            "the rules in {} have problems:\n{}",
            cfg.rules.display(),
            text.join("\n")
        )
    })
}

/// Compiles the templates and builds every receiver; all problems in one error.
pub fn build_receivers(cfg: &Config) -> anyhow::Result<Vec<Receiver>> {
    let templates =
        Arc::new(templates(cfg).map_err(|errs| {
            anyhow::anyhow!("the templates have problems:\n{}", errs.join("\n"))
        })?);
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for r in &cfg.receivers {
        match Receiver::from_config(r, &templates) {
            Ok(r) => out.push(r),
            Err(e) => errs.push(e),
        }
    }
    anyhow::ensure!(
        errs.is_empty(),
        "the receivers have problems:\n{}",
        errs.join("\n")
    );
    Ok(out)
}

/// The `route:` tree, or every alert to every receiver when there is none.
pub fn build_router(cfg: &Config) -> anyhow::Result<Router> {
    let names: Vec<&str> = cfg.receivers.iter().map(|r| r.name()).collect();
    match &cfg.route {
        Some(r) => Router::build(r, &names)
            .map_err(|errs| anyhow::anyhow!("the route has problems:\n{}", errs.join("\n"))),
        None => Ok(Router::every_receiver(&names)),
    }
}

/// The parts `run` and `backfill` share.
pub struct Engine {
    pub store: Arc<dyn StateStore>,
    pub client: ArgosClient,
    pub pipeline: Pipeline,
    pub outbox: Arc<Outbox>,
    pub wake: Arc<Notify>,
}

impl Engine {
    pub async fn build(cfg: &Config) -> anyhow::Result<Engine> {
        Self::build_with(cfg, Arc::new(load_rules(cfg)?)).await
    }

    /// With a rule set from elsewhere (the demo's embedded pack, a hot reload).
    pub async fn build_with(cfg: &Config, rules: Arc<RuleSet>) -> anyhow::Result<Engine> {
        Self::build_with_clock(cfg, rules, Arc::new(SystemClock)).await
    }

    /// [`Engine::build_with`] with the clock the outbox groups by (tests move it).
    pub async fn build_with_clock(
        cfg: &Config,
        rules: Arc<RuleSet>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Engine> {
        let store = crate::store::open(&cfg.store).await?;
        let client = ArgosClient::new(client_config(cfg)?)?;
        let receivers = build_receivers(cfg)?;
        let router = Arc::new(build_router(cfg)?);
        let wake = Arc::new(Notify::new());
        let outbox =
            Arc::new(Outbox::new(store.clone(), receivers, cfg.outbox.clone()).with_clock(clock));
        let mut pipeline = Pipeline::new(store.clone(), rules, router, wake.clone()).await?;
        if let Some(ttl) = cfg.poll.applicant_lookup {
            pipeline = pipeline.with_applicant_lookup(crate::pipeline::ApplicantLookup::new(
                client.clone(),
                ttl.0,
            ));
        }
        Ok(Engine {
            store,
            client,
            pipeline,
            outbox,
            wake,
        })
    }
}

/// What the daemon sends with: `templates:`, the links of `api:`, and the
/// rules of `rules:` (read again here so a reload of rules and templates
/// stays one step; rules that do not load leave messages without rule
/// facts, and [`load_rules`] reports why).
pub fn templates(cfg: &Config) -> Result<Templates, Vec<String>> {
    let rules = crate::rules::load_path(&cfg.rules, crate::rules::ScriptLimits::default())
        .ok()
        .map(Arc::new);
    Ok(Templates::load(&cfg.templates)?
        .with_links(Links::from_config(cfg))
        .with_rules(rules))
}

/// Renders every template with the samples (`check --config`): the sample
/// notification, and for `digest*` templates the sample digest report.
pub fn check_templates(t: &Templates) -> Vec<String> {
    let report: Value = serde_json::to_value(crate::digest::report::build(
        &crate::digest::report::sample_input(),
        &crate::config::DigestFilters::default(),
        crate::digest::report::Limits { top: 10, open: 50 },
    ))
    .expect("a report serializes");
    t.check_all(&report)
}

/// The alert API and the console, when a token or `console:` is configured.
pub fn api_router(cfg: &Config, store: &Arc<dyn StateStore>) -> Option<axum::Router> {
    if cfg.api.token.is_none() && cfg.console.is_none() {
        return None;
    }
    let policy = crate::store::lifecycle::Policy {
        four_eyes: cfg.lifecycle.four_eyes.clone(),
    };
    let Some((cases, users)) = store.console_roles() else {
        tracing::error!(
            "this store backend has no console tables yet: the alert API and the console are off"
        );
        return None;
    };
    let api = crate::api::router(crate::api::ApiState {
        store: store.clone(),
        users: users.clone(),
        token: cfg.api.token.clone().map(Arc::new),
        policy: policy.clone(),
        link_secret: cfg.api.link_secret.clone().map(Arc::new),
        link_ttl: cfg
            .api
            .link_ttl
            .map_or(crate::api::DEFAULT_LINK_TTL, |d| d.0),
    });
    let console = crate::console::router(
        crate::console::ConsoleState::new(
            cfg.console.clone().unwrap_or_default(),
            policy,
            cfg.api.public_url.clone(),
            cfg.templates.dashboard_url.clone(),
            cases,
            users,
        )
        .with_rules(console_rules(cfg))
        .with_health(store.clone(), cfg.argos.daily_budget),
    );
    Some(api.merge(console))
}

/// What the console says of each rule. Read from the rule folder (as a
/// reload does): the pipeline's running set is not shared with the API.
fn console_rules(cfg: &Config) -> Vec<crate::console::RuleInfo> {
    match crate::rules::load_path(&cfg.rules, crate::rules::ScriptLimits::default()) {
        Ok(set) => set
            .rules()
            .iter()
            .map(|r| crate::console::RuleInfo {
                id: r.id.clone(),
                description: r.description.clone(),
                version: r.version.clone(),
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

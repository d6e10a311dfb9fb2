//! The analyst console (issue 17): server-rendered pages on the API's
//! listener where people sign in, find, understand, act on and close alerts
//! under their own names.
//!
//! - [`auth`]: sign-in (local users or a trusted proxy), sessions, CSRF.
//! - [`pages`]: what people read (inbox, alert, case file, silences, rules, health).
//! - [`actions`]: what they do (each a plain form POST, roles checked here).
//! - [`case`]: an alert's why, masked fields and timeline, from the store's record.
//! - [`view`]: the embedded templates and the hardening headers.

mod actions;
pub mod auth;
mod case;
mod forms;
pub mod identity;
mod pages;
mod view;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::config::ConsoleConfig;
use crate::store::cases::CaseStore;
use crate::store::lifecycle::Policy;
use crate::store::meta::MetaStore;
use crate::store::users::UserStore;

pub use view::CSP;

/// What the console shows of a rule.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleInfo {
    pub id: String,
    pub description: String,
    pub version: String,
}

/// Everything the console's handlers share; built by the composition root.
#[derive(Clone)]
pub struct ConsoleState {
    pub cfg: Arc<ConsoleConfig>,
    pub policy: Policy,
    /// Cookies marked `Secure` (`api.public_url` is https).
    pub secure_cookie: bool,
    /// `templates.dashboard_url`: the Argos dashboard link of a submission.
    pub dashboard_url: Option<String>,
    pub cases: Arc<dyn CaseStore>,
    pub users: Arc<dyn UserStore>,
    pub rules: Arc<Vec<RuleInfo>>,
    /// When this configuration was loaded (the Health page's "last reload").
    pub loaded_at: String,
    /// Where the daemon records the last reload's outcome (the Health page).
    pub meta: Option<Arc<dyn MetaStore>>,
    /// `argos.daily_budget`: Argos calls a UTC day may make (0: no limit).
    pub daily_budget: u64,
}

impl ConsoleState {
    pub fn new(
        cfg: ConsoleConfig,
        policy: Policy,
        public_url: Option<String>,
        dashboard_url: Option<String>,
        cases: Arc<dyn CaseStore>,
        users: Arc<dyn UserStore>,
    ) -> ConsoleState {
        ConsoleState {
            cfg: Arc::new(cfg),
            policy,
            secure_cookie: public_url.is_some_and(|u| u.starts_with("https://")),
            dashboard_url,
            cases,
            users,
            rules: Arc::new(Vec::new()),
            loaded_at: crate::store::fmt_time(chrono::Utc::now()),
            meta: None,
            daily_budget: 0,
        }
    }

    /// What the Health page reads beside the case store: the reload record
    /// in `meta` and the configured daily API budget.
    pub fn with_health(mut self, meta: Arc<dyn MetaStore>, daily_budget: u64) -> ConsoleState {
        self.meta = Some(meta);
        self.daily_budget = daily_budget;
        self
    }

    /// The rules the Rules page and alert pages describe.
    pub fn with_rules(mut self, rules: Vec<RuleInfo>) -> ConsoleState {
        self.rules = Arc::new(rules);
        self
    }

    fn rule(&self, id: &str) -> Option<&RuleInfo> {
        self.rules.iter().find(|r| r.id == id)
    }
}

/// The console's routes, to merge with the alert API's.
pub fn router(s: ConsoleState) -> Router {
    let signed_in = Router::new()
        .route("/", get(pages::inbox))
        .route("/alerts/{fp}", get(pages::alert))
        .route("/alerts/{fp}/case.json", get(pages::case_json))
        .route("/alerts/{fp}/case.html", get(pages::case_html))
        .route("/alerts/{fp}/{action}", post(actions::act))
        .route("/silences", get(pages::silences))
        .route("/silences/{id}/expire", post(actions::expire_silence))
        .route("/rules", get(pages::rules))
        .route("/health", get(pages::health))
        .route("/next", post(actions::next))
        .route("/bulk", post(actions::bulk))
        .route("/logout", post(auth::logout))
        .route_layer(middleware::from_fn_with_state(
            s.clone(),
            auth::require_session,
        ));
    let open = Router::new()
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/static/console.js", get(js))
        .route("/static/console.css", get(css));
    signed_in
        .merge(open)
        .layer(middleware::map_response(harden))
        .with_state(s)
}

async fn harden(mut r: Response) -> Response {
    view::harden(&mut r);
    r
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("static/console.js"),
    )
}

async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("static/console.css"),
    )
}

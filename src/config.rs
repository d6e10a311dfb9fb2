//! `sentinel.yaml`: load -> validate -> build.
//!
//! Loading turns text into structs (unknown keys refused, with
//! `path:line:column`); `${ENV_VAR}` references are replaced first, so secrets
//! stay out of the file. Validation is pure and collects every problem before
//! reporting. Relative paths are resolved against the config file's folder, so
//! the daemon behaves the same from any working directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::util::parse_duration;

mod console;
pub mod env;
mod locate;
mod values;

pub use values::{ByteSize, IpRange};

pub use console::{ConsoleAuth, ConsoleConfig, LifecycleConfig};

/// A YAML syntax error on a line with a flow list (`[a, b]`) holding a
/// bracketed path gets a hint: `[kyc.attempts[0].x]` is read as nested lists.
fn with_hint(text: &str, line: u32, msg: String) -> String {
    match crate::rules::yaml::flow_bracket_hint(text, line) {
        Some(hint) => format!("{msg} ({hint})"),
        None => msg,
    }
}

/// A duration written as `30s`, `15m`, `24h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub argos: ArgosConfig,
    #[serde(default)]
    pub poll: PollConfig,
    /// Folder of rule files.
    #[serde(default = "default_rules")]
    pub rules: PathBuf,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub outbox: OutboxConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub reload: ReloadConfig,
    #[serde(default)]
    pub api: ApiConfig,
    /// The analyst console (served with the API); present = on, even without `api.token`.
    #[serde(default)]
    pub console: Option<ConsoleConfig>,
    /// How alerts may be closed (four-eyes).
    #[serde(default)]
    pub lifecycle: LifecycleConfig,
    /// The Argos webhook endpoint; absent = polling only.
    #[serde(default)]
    pub ingest: Option<IngestConfig>,
    /// Where alerts can go. Without `route:`, every alert goes to every receiver.
    #[serde(default = "default_receivers")]
    pub receivers: Vec<ReceiverConfig>,
    /// Which alerts go to which receivers, grouped how (see `notify::routing`).
    #[serde(default)]
    pub route: Option<RouteConfig>,
    /// Steps that re-notify, louder each time, while nobody acknowledges an
    /// alert; a route names one with `escalation:` (see `escalation`).
    #[serde(default)]
    pub escalation_policies: Vec<EscalationPolicyConfig>,
    /// Notification templates: an override folder, time zone, dashboard link.
    #[serde(default)]
    pub templates: TemplatesConfig,
    /// Scheduled summaries for compliance leads (see `digest`).
    #[serde(default)]
    pub digests: Vec<DigestConfig>,
    /// The file it was read from (what a reload re-reads); not a setting.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

fn default_rules() -> PathBuf {
    PathBuf::from("rules")
}

fn default_receivers() -> Vec<ReceiverConfig> {
    vec![ReceiverConfig::Log { name: "log".into() }]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgosConfig {
    /// `https://rest-api.argosidentity.com`, or the simulator's address.
    pub base_url: String,
    /// The account's API key; prefer `${ARGOS_API_KEY}`. When absent the
    /// environment variable `ARGOS_API_KEY` is read.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// The account has Argos's encryption option switched on.
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
    #[serde(default = "d_retries")]
    pub max_retries: u32,
    /// Client-side ceiling on calls per second (Argos allows 5,000).
    #[serde(default = "d_rate")]
    pub rate_limit_per_sec: u32,
    #[serde(default = "d_page")]
    pub page_size: u32,
    /// Calls per UTC day the engine may spend (Argos allows 500,000); a warning at 80%.
    #[serde(default = "d_budget")]
    pub daily_budget: u64,
    /// First retry delay after a failed call (doubles, with jitter).
    #[serde(default)]
    pub retry_base_delay: Option<Dur>,
    /// Pages one listing of a day may take in one poll; beyond, an error naming the day.
    #[serde(default = "d_max_pages")]
    pub max_pages_per_day: u32,
    /// Largest Argos answer read (enforced while it streams in).
    #[serde(default = "d_max_response")]
    pub max_response_bytes: ByteSize,
    /// `compact` (YYYYMMDD) or `iso` (YYYY-MM-DD) for `start_date`/`end_date`.
    #[serde(default)]
    pub date_format: crate::argos::DateFormat,
}

fn d_max_pages() -> u32 {
    crate::argos::client::DEFAULT_MAX_PAGES
}
fn d_max_response() -> ByteSize {
    ByteSize(crate::argos::client::DEFAULT_MAX_RESPONSE_BYTES)
}

fn d_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}
fn d_retries() -> u32 {
    5
}
fn d_rate() -> u32 {
    20
}
fn d_page() -> u32 {
    100
}
fn d_budget() -> u64 {
    100_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollConfig {
    /// How often the current UTC day is listed.
    #[serde(default = "d_interval")]
    pub interval: Dur,
    /// For how long after 00:00 UTC the previous day is listed too.
    #[serde(default = "d_overlap")]
    pub midnight_overlap: Dur,
    /// Undecided (pending/Incomplete) submissions are re-fetched by id until
    /// decided or older than this.
    #[serde(default = "d_horizon")]
    pub pending_horizon: Dur,
    /// Ask `GET /v3/submission/applicant` for each new applicant_id (cached for
    /// this long), so duplicates submitted before the engine started count in
    /// `derived.applicant_*`. Unset: the store's view only (no extra calls).
    #[serde(default)]
    pub applicant_lookup: Option<Dur>,
}

fn d_interval() -> Dur {
    Dur(Duration::from_secs(30))
}
fn d_overlap() -> Dur {
    Dur(Duration::from_secs(3600))
}
fn d_horizon() -> Dur {
    Dur(Duration::from_secs(7 * 86_400))
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            interval: d_interval(),
            midnight_overlap: d_overlap(),
            pending_horizon: d_horizon(),
            applicant_lookup: None,
        }
    }
}

/// Where the state lives: a SQLite file (`path`, the default) or a
/// PostgreSQL database (`url`); setting both is an error.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "RawStoreConfig")]
pub struct StoreConfig {
    /// SQLite file (created if missing).
    pub path: PathBuf,
    /// `path` was written in the file (not the default): with `url`, an error.
    pub path_given: bool,
    /// `postgres://USER@HOST:PORT/DB[?sslmode=..&sslrootcert=..]`; the
    /// password from `PGPASSWORD` or `${VAR}` in the URL.
    pub url: Option<String>,
    /// Not read from the file: the epoch this process leads with, set by
    /// `crate::ha` on the leader's copy of the config, so the engine's store
    /// is fenced by it (`store::open`).
    pub leader_epoch: Option<i64>,
    /// Raw submission JSON is forgotten this long after its last change;
    /// decisions, alerts and the audit log stay. Unset: kept.
    pub raw_retention: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStoreConfig {
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    raw_retention: Option<Dur>,
}

impl From<RawStoreConfig> for StoreConfig {
    fn from(r: RawStoreConfig) -> Self {
        Self {
            path_given: r.path.is_some(),
            path: r.path.unwrap_or_else(d_store),
            url: r.url,
            leader_epoch: None,
            raw_retention: r.raw_retention,
        }
    }
}

/// `url` with its password (if any) replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(an unreadable URL)".into(),
    }
}

fn d_store() -> PathBuf {
    PathBuf::from("kyc-sentinel.db")
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: d_store(),
            path_given: false,
            url: None,
            leader_epoch: None,
            raw_retention: None,
        }
    }
}

impl StoreConfig {
    /// The store as messages name it: the SQLite file, or the PostgreSQL
    /// URL without its password.
    pub fn describe(&self) -> String {
        match &self.url {
            Some(url) => redact_url(url),
            None => self.path.display().to_string(),
        }
    }

    /// The store's problems, each naming its field.
    fn validate(&self, errs: &mut Vec<String>) {
        let Some(url) = &self.url else { return };
        if self.path_given {
            errs.push(
                "store.url: set together with store.path; `path` is a SQLite file, `url` a \
                 PostgreSQL database: keep one"
                    .into(),
            );
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            errs.push("store.url: not a PostgreSQL URL: it must start with postgres://".into());
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// First retry delay; doubles per attempt up to `retry_max`.
    #[serde(default = "d_retry_base")]
    pub retry_base: Dur,
    #[serde(default = "d_retry_max")]
    pub retry_max: Dur,
    /// A notification still undelivered this long after its alert goes to the dead letter.
    #[serde(default = "d_max_age")]
    pub max_age: Dur,
    /// How long shutdown waits for the outbox to drain; deliveries still in
    /// flight then are cut and sent again after a restart (same key).
    #[serde(default = "d_flush")]
    pub flush_deadline: Dur,
    /// Deliveries in flight at once to one receiver. Each receiver has its own
    /// queue: a slow or dead receiver delays only itself.
    #[serde(default = "d_per_receiver")]
    pub concurrency_per_receiver: usize,
}

fn d_per_receiver() -> usize {
    4
}

fn d_retry_base() -> Dur {
    Dur(Duration::from_secs(5))
}
fn d_retry_max() -> Dur {
    Dur(Duration::from_secs(300))
}
fn d_max_age() -> Dur {
    Dur(Duration::from_secs(86_400))
}
fn d_flush() -> Dur {
    Dur(Duration::from_secs(5))
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            retry_base: d_retry_base(),
            retry_max: d_retry_max(),
            max_age: d_max_age(),
            flush_deadline: d_flush(),
            concurrency_per_receiver: d_per_receiver(),
        }
    }
}

/// The alert API (acknowledge, resolve, list) on the telemetry address.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Bearer token; without one the API is off. Write `${SENTINEL_API_TOKEN}`.
    #[serde(default)]
    pub token: Option<SecretString>,
    /// Secret of the signed one-click acknowledge links; without one, no links.
    #[serde(default)]
    pub link_secret: Option<SecretString>,
    /// How long a link stays valid.
    #[serde(default)]
    pub link_ttl: Option<Dur>,
    /// The URL people reach the daemon at (links are built on it).
    #[serde(default)]
    pub public_url: Option<String>,
}

/// Shortest token or link secret accepted: a guessable secret is no secret.
pub const MIN_SECRET_CHARS: usize = 16;

impl ApiConfig {
    /// Secrets long enough to resist guessing. Pure; names the key, never
    /// the value.
    fn validate(&self) -> Vec<String> {
        use secrecy::ExposeSecret;
        [
            ("api.token", &self.token),
            ("api.link_secret", &self.link_secret),
        ]
        .into_iter()
        .filter_map(|(key, v)| {
            let n = v.as_ref()?.expose_secret().chars().count();
            (n < MIN_SECRET_CHARS).then(|| {
                format!(
                    "{key}: must be at least {MIN_SECRET_CHARS} characters \
                         (e.g. `openssl rand -hex 32`)"
                )
            })
        })
        .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// Re-read the rules when their files change (SIGHUP always reloads).
    #[serde(default = "d_true")]
    pub watch: bool,
    /// How often the rule folder is checked; a change is applied once it has
    /// been stable for one more check.
    #[serde(default = "d_reload_period")]
    pub check_every: Dur,
}

/// The endpoint receiving Argos webhooks (`ingest:`). Each webhook is a hint
/// to fetch its submission now; the poller stays the safety net.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Address to listen on.
    #[serde(default = "d_ingest_listen")]
    pub listen: std::net::SocketAddr,
    /// Shared secret: in the URL path (`/argos/webhook/TOKEN`) or the
    /// `X-Sentinel-Token` header. Prefer `${INGEST_TOKEN}`.
    pub token: SecretString,
    /// Peers allowed to call (addresses or CIDR blocks); empty = any.
    #[serde(default)]
    pub allow_ips: Vec<IpRange>,
    /// Largest body accepted (`64KiB`).
    #[serde(default = "d_max_body")]
    pub max_body: ByteSize,
    /// Requests per second accepted (bursts up to the same number); beyond: 429.
    #[serde(default = "d_ingest_rate")]
    pub rate_limit_per_sec: u32,
    /// The same body again within this window is answered 200 and ignored.
    #[serde(default = "d_replay")]
    pub replay_window: Dur,
    /// Hints waiting for the pipeline; when full, 503 (the poller catches up).
    #[serde(default = "d_queue")]
    pub queue_capacity: usize,
    /// Submissions fetched at once for one batch of hints.
    #[serde(default = "d_fetch_conc")]
    pub fetch_concurrency: usize,
    /// With each batch of hints, also fetch the newest page of the list, so
    /// arrivals whose webhook was lost are evaluated in event-time order with
    /// the hinted ones (one extra call per batch; see the README, "Push ingestion").
    #[serde(default = "d_true")]
    pub catch_up: bool,
}

fn d_true() -> bool {
    true
}
fn d_reload_period() -> Dur {
    Dur(Duration::from_secs(2))
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            watch: true,
            check_every: d_reload_period(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Address of `/metrics` and `/healthz`; loopback by default. `null` turns them off.
    #[serde(default = "d_telemetry")]
    pub listen: Option<std::net::SocketAddr>,
}

fn d_telemetry() -> Option<std::net::SocketAddr> {
    Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9464)))
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            listen: d_telemetry(),
        }
    }
}

fn d_ingest_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 8088))
}
fn d_max_body() -> ByteSize {
    ByteSize(64 * 1024)
}
fn d_ingest_rate() -> u32 {
    200
}
fn d_replay() -> Dur {
    Dur(Duration::from_secs(600))
}
fn d_queue() -> usize {
    10_000
}
fn d_fetch_conc() -> usize {
    8
}

/// A receiver, selected by `type:`. (Written as one tagged enum rather than a
/// struct with a flattened kind: serde cannot refuse unknown keys through
/// `flatten`, and a misspelt key must be an error.)
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReceiverConfig {
    /// One log line per alert, at `warn` level.
    Log { name: String },
    /// Appends each alert as one JSON line to a file.
    File { name: String, path: PathBuf },
    /// An email per notification: SMTP, or `.eml` files without `smtp:`.
    Email(EmailConfig),
    /// An HTTP request per notification, body from a template, HMAC-signed.
    Webhook(WebhookConfig),
}

impl ReceiverConfig {
    pub fn name(&self) -> &str {
        match self {
            ReceiverConfig::Log { name } | ReceiverConfig::File { name, .. } => name,
            ReceiverConfig::Email(e) => &e.name,
            ReceiverConfig::Webhook(w) => &w.name,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub name: String,
    /// `Compliance <sentinel@example.com>` or a bare address.
    pub from: String,
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    /// Absent: messages are written as `.eml` files into `eml_dir`.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// Folder for `.eml` files when `smtp:` is absent (created if missing).
    #[serde(default = "d_eml_dir")]
    pub eml_dir: PathBuf,
    #[serde(default = "d_subject_t")]
    pub subject_template: String,
    #[serde(default = "d_html_t")]
    pub html_template: String,
    #[serde(default = "d_text_t")]
    pub text_template: String,
}

fn d_eml_dir() -> PathBuf {
    PathBuf::from("mail")
}
fn d_subject_t() -> String {
    "email_subject.txt".into()
}
fn d_html_t() -> String {
    "email.html".into()
}
fn d_text_t() -> String {
    "email.txt".into()
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required, never optional). Port 587.
    Starttls,
    /// TLS from the first byte (SMTPS). Port 465.
    Tls,
    /// No encryption: only for a relay on this machine (loopback).
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Default: 587 for starttls, 465 for tls, 25 for none.
    #[serde(default, deserialize_with = "port_number")]
    pub port: Option<u16>,
    #[serde(default = "d_smtp_tls")]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    /// Prefer `${SMTP_PASSWORD}`.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// An extra trusted root certificate (PEM) for a relay with a private CA.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    #[serde(default = "d_smtp_timeout")]
    pub timeout: Dur,
    /// Connections kept open in the pool.
    #[serde(default = "d_pool")]
    pub pool_size: u32,
}

/// A port written as a number or as a string of digits: `port: ${SMTP_PORT}`
/// is a string (a variable's value always is).
fn port_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        Number(u16),
        Text(String),
    }
    match Option::<Port>::deserialize(d)? {
        None => Ok(None),
        Some(Port::Number(n)) => Ok(Some(n)),
        Some(Port::Text(t)) => t.trim().parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("port `{t}` is not a number from 0 to 65535"))
        }),
    }
}

fn d_smtp_tls() -> SmtpTls {
    SmtpTls::Starttls
}
fn d_smtp_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}
fn d_pool() -> u32 {
    4
}

impl SmtpConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        })
    }
}

/// True for `localhost` and loopback IP addresses.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    /// A secret: Slack and Teams URLs carry their token. Prefer `${SLACK_WEBHOOK_URL}`.
    pub url: SecretString,
    #[serde(default = "d_method")]
    pub method: String,
    /// Extra headers; values are secrets (e.g. `Authorization`).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, SecretString>,
    /// Body template: `generic.json`, `slack.json`, `teams.json`,
    /// `pagerduty.json`, `alertmanager.json`, or one of yours.
    #[serde(default = "d_body_t")]
    pub template: String,
    /// Shared secret for the HMAC-SHA256 signature header; no header without it.
    #[serde(default)]
    pub secret: Option<SecretString>,
    #[serde(default = "d_sig_header")]
    pub signature_header: String,
    /// Values the body template reads as `params.NAME` (PagerDuty: `routing_key`).
    #[serde(default)]
    pub params: std::collections::BTreeMap<String, SecretString>,
    #[serde(default = "d_hook_timeout")]
    pub timeout: Dur,
}

fn d_method() -> String {
    "POST".into()
}
fn d_body_t() -> String {
    "generic.json".into()
}
fn d_sig_header() -> String {
    "X-Sentinel-Signature".into()
}
fn d_hook_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

/// A node of the routing tree (Alertmanager-like). See `notify::routing`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Receiver of this node; children inherit it. Required at the root.
    #[serde(default)]
    pub receiver: Option<String>,
    /// `key: value` equality (case-sensitive). Keys: `rule`, `severity`,
    /// `submission_id`, `group_key`, or a label name.
    #[serde(default, rename = "match")]
    pub matchers: std::collections::BTreeMap<String, String>,
    /// `key: regex`, anchored (the whole value must match).
    #[serde(default)]
    pub match_re: std::collections::BTreeMap<String, String>,
    /// Keep looking at the next siblings after this node matched.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Keys whose values make up a group; `[...]` = every alert alone.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    #[serde(default)]
    pub group_wait: Option<Dur>,
    #[serde(default)]
    pub repeat_interval: Option<Dur>,
    /// An `escalation_policies` name; children inherit it.
    #[serde(default)]
    pub escalation: Option<String>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// `escalation_policies: [{name, steps: [{after, receivers}]}]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationPolicyConfig {
    pub name: String,
    pub steps: Vec<EscalationStepConfig>,
}

/// One step: sent `after` the alert fired, if nobody acknowledged it by then.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationStepConfig {
    pub after: Dur,
    pub receivers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplatesConfig {
    /// A folder whose files override or add to the shipped templates by name.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// IANA time zone for the `date` filter (e.g. `Asia/Seoul`).
    #[serde(default = "d_tz")]
    pub timezone: String,
    /// Link to a submission in the Argos dashboard; `{submission_id}` is replaced.
    #[serde(default)]
    pub dashboard_url: Option<String>,
    /// Work one render may do (minijinja fuel: about one instruction, or 64
    /// bytes of output, per unit), plus `render_fuel_per_alert` for each alert
    /// of the notification. A template over it fails that notification only.
    #[serde(default = "d_render_fuel")]
    pub render_fuel: u64,
    #[serde(default = "d_render_fuel_per_alert")]
    pub render_fuel_per_alert: u64,
}

/// Default of `templates.render_fuel`: the budget of any render (about a
/// million instructions, or 64 MB of output).
pub const DEFAULT_RENDER_FUEL: u64 = 1_000_000;
/// Default of `templates.render_fuel_per_alert`, added per alert (rounded up to a
/// power of two alerts): the shipped templates need at most ~200 per alert.
/// Spending a budget takes about 0.1 s per million fuel (1,000 alerts: 0.6 s).
pub const DEFAULT_RENDER_FUEL_PER_ALERT: u64 = 5_000;

fn d_tz() -> String {
    "UTC".into()
}
fn d_render_fuel() -> u64 {
    DEFAULT_RENDER_FUEL
}
fn d_render_fuel_per_alert() -> u64 {
    DEFAULT_RENDER_FUEL_PER_ALERT
}

impl Default for TemplatesConfig {
    fn default() -> Self {
        Self {
            dir: None,
            timezone: d_tz(),
            dashboard_url: None,
            render_fuel: d_render_fuel(),
            render_fuel_per_alert: d_render_fuel_per_alert(),
        }
    }
}

/// One scheduled digest: what it covers, when, and who gets it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestConfig {
    /// Names the digest in the store, the CLI and the message id (A-Z a-z 0-9 - _).
    pub name: String,
    /// Standard 5-field crontab (`0 8 * * *`: every day at 08:00), read in `timezone`.
    pub schedule: String,
    /// IANA time zone the schedule is read in (`Asia/Seoul`).
    #[serde(default = "d_tz")]
    pub timezone: String,
    /// How far back a digest looks; by default since the previous scheduled time.
    #[serde(default)]
    pub period: Option<Dur>,
    /// Receiver names (from `receivers:`); digests do not go through `route:`.
    pub receivers: Vec<String>,
    /// Template base name: `NAME.html`, `NAME.txt` and `NAME_subject.txt`.
    #[serde(default = "d_digest_template")]
    pub template: String,
    #[serde(default)]
    pub filters: DigestFilters,
    /// After downtime: one digest per missed time (`each`) or one for all (`combined`).
    #[serde(default)]
    pub catch_up: CatchUp,
    /// Rows in the "most alerts" tables.
    #[serde(default = "d_digest_top")]
    pub top: usize,
    /// Open alerts listed (oldest first); the total is always given.
    #[serde(default = "d_digest_open")]
    pub open_alerts_limit: usize,
}

/// Which alerts a digest counts; empty = all.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DigestFilters {
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub severities: Vec<String>,
    /// Label `key: value` pairs that must all be equal.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    #[default]
    Each,
    Combined,
}

fn d_digest_template() -> String {
    "digest".into()
}
fn d_digest_top() -> usize {
    10
}
fn d_digest_open() -> usize {
    50
}

impl DigestConfig {
    /// A daily 08:00 UTC digest of everything to no receiver: the demo's
    /// preview when the config has none.
    pub fn daily_default() -> Self {
        Self {
            name: "daily".into(),
            schedule: "0 8 * * *".into(),
            timezone: d_tz(),
            period: None,
            receivers: Vec::new(),
            template: d_digest_template(),
            filters: DigestFilters::default(),
            catch_up: CatchUp::Each,
            top: d_digest_top(),
            open_alerts_limit: d_digest_open(),
        }
    }
}

/// Digest checks the types cannot express. Pure.
fn validate_digests(digests: &[DigestConfig], receivers: &[&str]) -> Vec<String> {
    let mut errs = Vec::new();
    let mut names = std::collections::HashSet::new();
    for d in digests {
        let at = format!("digests.{}", d.name);
        if d.name.is_empty()
            || !d
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            errs.push(format!(
                "digests: name `{}` must be A-Z a-z 0-9 - _ (it goes into message ids)",
                d.name
            ));
        }
        if !names.insert(d.name.as_str()) {
            errs.push(format!("digests: the name `{}` is used twice", d.name));
        }
        if d.receivers.is_empty() {
            errs.push(format!("{at}.receivers: at least one receiver is needed"));
        }
        for r in &d.receivers {
            if !receivers.contains(&r.as_str()) {
                errs.push(format!(
                    "{at}.receivers: no receiver named `{r}` (receivers: {})",
                    receivers.join(", ")
                ));
            }
        }
        if d.period.is_some_and(|p| p.0 < Duration::from_secs(60)) {
            errs.push(format!("{at}.period: must be at least 1m"));
        }
    }
    errs
}

/// Receiver checks the types cannot express. Pure.
fn validate_receiver(r: &ReceiverConfig) -> Vec<String> {
    use secrecy::ExposeSecret;
    let mut errs = Vec::new();
    match r {
        ReceiverConfig::Email(e) => {
            let at = format!("receivers.{}", e.name);
            if e.to.is_empty() {
                errs.push(format!("{at}.to: at least one recipient is needed"));
            }
            for (field, addrs) in [
                ("from", std::slice::from_ref(&e.from)),
                ("to", &e.to[..]),
                ("cc", &e.cc[..]),
            ] {
                for a in addrs {
                    if a.parse::<lettre::message::Mailbox>().is_err() {
                        errs.push(format!("{at}.{field}: `{a}` is not an email address"));
                    }
                }
            }
            if let Some(s) = &e.smtp {
                if s.tls == SmtpTls::None && !is_loopback_host(&s.host) {
                    errs.push(format!(
                        "{at}.smtp.tls: `none` sends mail and password in clear text; it is allowed only for a loopback host (localhost, 127.0.0.1, ::1), not `{}`; use starttls or tls",
                        s.host
                    ));
                }
                if s.username.is_some() != s.password.is_some() {
                    errs.push(format!("{at}.smtp: username and password go together"));
                }
                if s.pool_size == 0 {
                    errs.push(format!("{at}.smtp.pool_size: must be at least 1"));
                }
            }
        }
        ReceiverConfig::Webhook(w) => {
            let at = format!("receivers.{}", w.name);
            let url = w.url.expose_secret();
            // The URL is a secret (Slack, Teams): name the problem, not the value.
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                errs.push(format!("{at}.url: not an http(s) URL"));
            }
            if reqwest::Method::from_bytes(w.method.as_bytes()).is_err() {
                errs.push(format!("{at}.method: `{}` is not an HTTP method", w.method));
            }
            for k in w.headers.keys() {
                if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                    errs.push(format!("{at}.headers: `{k}` is not a header name"));
                }
            }
            if reqwest::header::HeaderName::from_bytes(w.signature_header.as_bytes()).is_err() {
                errs.push(format!(
                    "{at}.signature_header: `{}` is not a header name",
                    w.signature_header
                ));
            }
        }
        _ => {}
    }
    errs
}

/// Strips serde-saphyr's trailing " at line L, column C" (we print the
/// position in front, as `path:line:column:`).
fn bare_message(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(", column ") => &msg[..i],
        _ => msg,
    }
}

/// How strictly a config file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Everything: the daemon, `check`, commands that deliver.
    Strict,
    /// For commands that only read or change the store (`alerts`, `ack`,
    /// `audit`, `silence`, `digest --preview`): variables that are not set
    /// read as empty and the semantic checks are skipped, so a secret those
    /// commands never use (`ARGOS_API_KEY`) need not be in the environment.
    StoreOnly,
}

/// One problem, at a position of the file.
struct Problem {
    line: u32,
    column: u32,
    message: String,
}

/// Deserialization stops at the first error. To report every problem in one
/// run, the entry an error points at is blanked out (its lines kept, so
/// positions hold) and the text parsed again, until it parses. Errors that
/// only follow from a blanked entry are not reported: a `missing field` it
/// held ends the search; a mapping left empty (`poll:` with its only key
/// blanked) is given `{}` and the search goes on.
fn deserialize_all(text: &str) -> (Option<Config>, Vec<(u32, u32, String)>) {
    const MAX_ROUNDS: usize = 64;
    let mut text = text.to_string();
    let mut errors = Vec::new();
    let mut blanked: Vec<(String, u32)> = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let err = match serde_saphyr::from_str::<Config>(&text) {
            Ok(cfg) => return (Some(cfg), errors),
            Err(e) => e,
        };
        let msg = bare_message(&err.without_snippet().to_string()).to_string();
        if blanked
            .iter()
            .any(|(k, _)| msg == format!("missing field `{k}`"))
        {
            break;
        }
        let (line, column) = err
            .location()
            .map_or((1, 1), |l| (l.line() as u32, l.column() as u32));
        let Some((start, end)) = locate::Locator::entry_lines(&text, line) else {
            break;
        };
        let first_line = text[start..end].lines().next().unwrap_or("").to_string();
        let (first, last) = (line, line + text[start..end].matches('\n').count() as u32);
        if blanked
            .iter()
            .any(|&(_, l)| l > first && l < last.max(first + 1))
        {
            // An error of our own making: the parent of a blanked entry.
            if first_line.trim_end().ends_with(':') {
                text.insert_str(start + first_line.trim_end().len(), " {}");
                continue;
            }
            break;
        }
        errors.push((line.max(1), column.max(1), msg));
        let first_text = first_line.trim_start();
        if first_text.starts_with('-') || crate::rules::yaml::parse(&text).is_err() {
            // A list item's first line or a syntax error: blanking it
            // would only produce errors of our own making.
            break;
        }
        let key = first_text
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        blanked.push((key, line));
        let blank: String = text[start..end].chars().filter(|&c| c == '\n').collect();
        text.replace_range(start..end, &blank);
    }
    (None, errors)
}

/// Checks of a whole config supplied from outside (see [`Config::load_checked`]).
pub type Checks<'a> = &'a dyn Fn(&Config) -> Vec<String>;

impl Config {
    /// Reads, interpolates and parses the file; relative paths in it become
    /// relative to its folder.
    pub fn load(path: &Path) -> Result<Config, String> {
        Self::load_with(path, LoadMode::Strict)
    }

    /// [`load`](Self::load) for commands that need only some of the file.
    pub fn load_with(path: &Path, mode: LoadMode) -> Result<Config, String> {
        Self::load_checked(path, mode, &|_| Vec::new())
    }

    /// [`load_with`](Self::load_with) plus `checks`: the problems only the
    /// modules built from the config can see (the composition root's, see
    /// `compose::checks`), reported at their place in the file like the rest.
    pub fn load_checked(path: &Path, mode: LoadMode, checks: Checks<'_>) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let mut cfg = Self::parse_checked(path, &text, |k| std::env::var(k).ok(), mode, checks)?;
        cfg.source = Some(path.to_owned());
        Ok(cfg)
    }

    pub fn parse(
        path: &Path,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        Self::parse_with(path, text, env, LoadMode::Strict)
    }

    /// Every problem of the file in one error, one `path:line:col: message`
    /// per line, in the order of the file.
    pub fn parse_with(
        path: &Path,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
        mode: LoadMode,
    ) -> Result<Config, String> {
        Self::parse_checked(path, text, env, mode, &|_| Vec::new())
    }

    /// [`parse_with`](Self::parse_with) plus `checks` (see [`Config::load_checked`]).
    pub fn parse_checked(
        path: &Path,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
        mode: LoadMode,
        checks: Checks<'_>,
    ) -> Result<Config, String> {
        let (interp, env_errs) = env::interpolate(text, env);
        let mut problems: Vec<Problem> = env_errs
            .into_iter()
            .filter(|e| mode == LoadMode::Strict || !e.message.ends_with("is not set"))
            .map(|e| Problem {
                line: e.line,
                column: e.column,
                message: e.message,
            })
            .collect();
        let (cfg, errs) = deserialize_all(&interp.text);
        for (line, col, msg) in errs {
            problems.push(Problem {
                line,
                column: interp.columns.to_file(line, col),
                message: with_hint(text, line, msg),
            });
        }
        let cfg = cfg.map(|mut cfg| {
            cfg.resolve_paths(path.parent().unwrap_or(Path::new(".")));
            cfg
        });
        if let (Some(cfg), LoadMode::Strict) = (&cfg, mode) {
            let mut errs = cfg.validate().err().unwrap_or_default();
            errs.extend(checks(cfg));
            let loc = locate::Locator::new(&interp.text);
            for message in errs {
                let (line, col) = loc.position_of_message(&message);
                problems.push(Problem {
                    line,
                    column: interp.columns.to_file(line, col),
                    message,
                });
            }
        }
        match cfg {
            Some(cfg) if problems.is_empty() => Ok(cfg),
            _ => {
                problems.sort_by_key(|p| (p.line, p.column));
                Err(problems
                    .iter()
                    .map(|p| format!("{}:{}:{}: {}", path.display(), p.line, p.column, p.message))
                    .collect::<Vec<_>>()
                    .join("\n"))
            }
        }
    }

    /// Relative paths in the file are relative to its folder.
    fn resolve_paths(&mut self, base: &Path) {
        self.rules = base.join(&self.rules);
        self.store.path = base.join(&self.store.path);
        for r in &mut self.receivers {
            match r {
                ReceiverConfig::File { path, .. } => *path = base.join(&*path),
                ReceiverConfig::Email(e) => {
                    e.eml_dir = base.join(&e.eml_dir);
                    if let Some(ca) = e.smtp.as_mut().and_then(|s| s.ca_cert.as_mut()) {
                        *ca = base.join(&*ca);
                    }
                }
                _ => {}
            }
        }
        if let Some(dir) = self.templates.dir.as_mut() {
            *dir = base.join(&*dir);
        }
    }

    /// Checks what the types cannot say. Pure; collects every problem.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        self.store.validate(&mut errs);
        if !(self.argos.base_url.starts_with("http://")
            || self.argos.base_url.starts_with("https://"))
        {
            errs.push(format!(
                "argos.base_url: `{}` is not an http(s) URL",
                self.argos.base_url
            ));
        }
        if self.argos.rate_limit_per_sec == 0 || self.argos.rate_limit_per_sec > 5000 {
            errs.push(
                "argos.rate_limit_per_sec: must be between 1 and 5000 (Argos's limit)".into(),
            );
        }
        if self.argos.page_size == 0 {
            errs.push("argos.page_size: must be at least 1".into());
        }
        if self.argos.max_pages_per_day == 0 {
            errs.push("argos.max_pages_per_day: must be at least 1".into());
        }
        if self.argos.max_response_bytes.0 < 4096 {
            errs.push("argos.max_response_bytes: must be at least 4KiB".into());
        }
        if self.poll.interval.0 < Duration::from_secs(1) {
            errs.push("poll.interval: must be at least 1s".into());
        }
        errs.extend(self.api.validate());
        errs.extend(self.console.iter().flat_map(ConsoleConfig::validate));
        if let Some(l) = self.console.as_ref().and_then(|c| c.listen)
            && Some(l) == self.telemetry.listen
        {
            errs.push(format!(
                "console.listen: {l} is telemetry.listen too; leave console.listen out to serve \
                 the console there, or give it an address of its own"
            ));
        }
        if let Some(i) = &self.ingest {
            use secrecy::ExposeSecret;
            let t = i.token.expose_secret();
            if t.len() < MIN_SECRET_CHARS
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
            {
                errs.push(
                    "ingest.token: must be at least 16 characters of A-Z a-z 0-9 - _ . ~ \
                     (it travels in a URL path)"
                        .into(),
                );
            }
            if i.rate_limit_per_sec == 0 {
                errs.push("ingest.rate_limit_per_sec: must be at least 1".into());
            }
            if i.max_body.0 < 256 {
                errs.push("ingest.max_body: must be at least 256 bytes".into());
            }
            if i.queue_capacity == 0 || i.fetch_concurrency == 0 {
                errs.push(
                    "ingest.queue_capacity and ingest.fetch_concurrency: must be at least 1".into(),
                );
            }
        }
        let mut names = std::collections::HashSet::new();
        for r in &self.receivers {
            if !names.insert(r.name()) {
                errs.push(format!("receivers: the name `{}` is used twice", r.name()));
            }
            errs.extend(validate_receiver(r));
        }
        let known: Vec<&str> = self.receivers.iter().map(|r| r.name()).collect();
        errs.extend(validate_digests(&self.digests, &known));
        if self.templates.timezone.parse::<chrono_tz::Tz>().is_err() {
            errs.push(format!(
                "templates.timezone: `{}` is not an IANA time zone (e.g. `Asia/Seoul`, `UTC`)",
                self.templates.timezone
            ));
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("conf/sentinel.yaml"), text, |k| {
            (k == "KEY").then(|| "s3cret".to_string())
        })
    }

    #[test]
    fn minimal_config_gets_defaults_and_resolves_paths() {
        let c = parse("argos:\n  base_url: http://127.0.0.1:8080\n  api_key: ${KEY}\n").unwrap();
        assert_eq!(c.poll.interval, Dur(Duration::from_secs(30)));
        assert_eq!(c.rules, PathBuf::from("conf/rules"));
        assert_eq!(c.store.path, PathBuf::from("conf/kyc-sentinel.db"));
        use secrecy::ExposeSecret;
        assert_eq!(c.argos.api_key.unwrap().expose_secret(), "s3cret");
    }

    #[test]
    fn unknown_key_is_refused_with_position() {
        let err = parse("argos:\n  base_url: http://x\n  colour: blue\n").unwrap_err();
        assert_eq!(
            err,
            "conf/sentinel.yaml:3:3: unknown field `colour`, expected one of base_url, api_key, encrypted, timeout, max_retries, rate_limit_per_sec, page_size, daily_budget, retry_base_delay, max_pages_per_day, max_response_bytes, date_format"
        );
    }

    #[test]
    fn missing_env_var_names_the_line() {
        let err = parse("argos:\n  base_url: http://x\n  api_key: ${NOPE}\n").unwrap_err();
        assert_eq!(
            err,
            "conf/sentinel.yaml:3:12: environment variable `NOPE` is not set"
        );
    }

    #[test]
    fn ingest_section() {
        let base = "argos:\n  base_url: http://x\n";
        let c = parse(&format!(
            "{base}ingest:\n  token: 0123456789abcdef\n  allow_ips: [10.0.0.0/8, 127.0.0.1]\n  max_body: 1MiB\n"
        ))
        .unwrap();
        let i = c.ingest.unwrap();
        assert_eq!(i.listen, "127.0.0.1:8088".parse().unwrap());
        assert_eq!(i.max_body.0, 1 << 20);
        assert_eq!(i.allow_ips.len(), 2);
        assert_eq!(i.replay_window, Dur(Duration::from_secs(600)));
        assert!(
            !format!("{i:?}").contains("0123456789abcdef"),
            "token redacted"
        );
        let err = parse(&format!(
            "{base}ingest:\n  token: short\n  rate_limit_per_sec: 0\n"
        ))
        .unwrap_err();
        assert_eq!(
            err,
            "conf/sentinel.yaml:4:10: ingest.token: must be at least 16 characters of A-Z a-z 0-9 - _ . ~ (it travels in a URL path)\n\
             conf/sentinel.yaml:5:23: ingest.rate_limit_per_sec: must be at least 1"
        );
        let err = parse(&format!(
            "{base}ingest:\n  token: 0123456789abcdef\n  allow_ips: [argos.com]\n"
        ))
        .unwrap_err();
        assert!(
            err.starts_with(
                "conf/sentinel.yaml:5:15: `argos.com` is not an IP address or CIDR block"
            ),
            "{err}"
        );
    }

    #[test]
    fn bad_duration_and_validation_errors() {
        let err =
            parse("argos:\n  base_url: http://x\npoll:\n  interval: 5 minutes\n").unwrap_err();
        assert_eq!(
            err,
            "conf/sentinel.yaml:4:13: invalid duration `5 minutes`: unknown unit ` minutes` (use s, m, h or d, e.g. `24h`)"
        );
        let err = parse("argos:\n  base_url: ftp://x\n  rate_limit_per_sec: 9000\n").unwrap_err();
        assert_eq!(
            err,
            "conf/sentinel.yaml:2:13: argos.base_url: `ftp://x` is not an http(s) URL\n\
             conf/sentinel.yaml:3:23: argos.rate_limit_per_sec: must be between 1 and 5000 (Argos's limit)"
        );
    }
}

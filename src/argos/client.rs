//! The Argos REST client: list and fetch submissions, follow `nextpageKey`,
//! look up applicants; with retries, a client-side rate limit, the daily call
//! budget, and bounds on everything an answer can make it do.
//!
//! Why it is shaped this way: the poller must never lose or silently skip a
//! page, and it must budget calls per UTC day (Argos allows 500,000 a day).
//! So every failure is classified ([`ArgosError::is_fatal`]) into a
//! configuration problem that retrying cannot fix (a wrong key, a bad
//! parameter, a redirecting base URL) or a transient one that is retried with
//! exponential backoff and jitter (429 honouring `Retry-After`, 5xx, timeouts,
//! connection errors, a body that is not JSON), and every HTTP attempt,
//! retries included, is counted against the budget *before* it is made.
//!
//! An answer is not trusted: its size is capped while it streams in
//! (`max_response_bytes`), pages per listing are capped (`max_pages`) and a
//! repeated `nextpageKey` stops the listing, items are read one by one so a bad
//! one is set aside ([`super::page`]), redirects are never followed (the key
//! would travel to the new host), and no error message quotes a body: they say
//! the status, the byte length and where the JSON went wrong. Errors name the
//! request (URL without the key, the parameters sent) and never the key, which
//! is held as a [`SecretString`].

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::{NaiveDate, Utc};
use futures::Stream;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::budget::CallBudget;
use super::crypto::{AesEcb, Cipher, CryptoError};
use super::model::{ApplicantEntry, NextPageKey};
use super::page::{self, ItemSpan, Unreadable, json_problem};

/// The real service. Configuration may point elsewhere (the simulator).
pub const ARGOS_BASE_URL: &str = "https://rest-api.argosidentity.com";

/// Default cap on one answer's body (`argos.max_response_bytes`).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Default cap on pages of one listing (`argos.max_pages_per_day`): far above
/// any real day (5,000 pages of 100 are 500,000 submissions, a day's budget).
pub const DEFAULT_MAX_PAGES: u32 = 5_000;

/// Of an error answer only this much is read, to report its length.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// A parameter value longer than this is shortened in errors and logs (a
/// `nextpageKey` comes from the answer and may be anything).
const SHOWN_PARAM_CHARS: usize = 100;

/// How `start_date`/`end_date` are written. The vendor page in the project's
/// docs says `YYYYMMDD`; Argos's current public reference shows `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DateFormat {
    /// `YYYYMMDD`
    #[default]
    Compact,
    /// `YYYY-MM-DD`
    Iso,
}

impl DateFormat {
    fn pattern(self) -> &'static str {
        match self {
            DateFormat::Compact => "%Y%m%d",
            DateFormat::Iso => "%Y-%m-%d",
        }
    }

    pub fn other(self) -> Self {
        match self {
            DateFormat::Compact => DateFormat::Iso,
            DateFormat::Iso => DateFormat::Compact,
        }
    }

    /// As an operator reads it.
    pub fn describe(self) -> &'static str {
        match self {
            DateFormat::Compact => "YYYYMMDD (compact)",
            DateFormat::Iso => "YYYY-MM-DD (iso)",
        }
    }
}

/// How the client talks to one Argos account.
#[derive(Clone)]
pub struct ClientConfig {
    pub base_url: String,
    pub api_key: SecretString,
    /// Whole-request timeout (connect, send, read the body).
    pub timeout: Duration,
    /// Retries after the first attempt, for transient failures.
    pub max_retries: u32,
    /// Client-side ceiling on calls per second (Argos allows 5,000).
    pub rate_limit_per_sec: u32,
    /// Account has Argos encrypted mode switched on.
    pub encrypted: bool,
    /// `count` sent when a [`ListQuery`] leaves it unset.
    pub page_size: u32,
    /// First backoff delay; doubles per retry, with jitter (tests use ~10ms).
    pub retry_base_delay: Duration,
    /// Ceiling of one backoff delay.
    pub retry_max_delay: Duration,
    /// Largest answer body read; a larger one is an error, never allocated.
    pub max_response_bytes: usize,
    /// Pages one listing may take; a listing still paging after it is an error.
    pub max_pages: u32,
    /// Calls per UTC day, counted before each call; 0 = unlimited.
    pub daily_budget: u64,
    /// How dates are sent first (the other format is tried once on a 400).
    pub date_format: DateFormat,
}

impl ClientConfig {
    /// Defaults that suit the real service: 30s timeout, 5 retries from 500ms,
    /// 50 calls/s, pages of 50, answers up to 32 MiB, 5,000 pages a listing,
    /// no daily budget (the engine's configuration sets one).
    pub fn new(base_url: impl Into<String>, api_key: SecretString) -> Self {
        ClientConfig {
            base_url: base_url.into(),
            api_key,
            timeout: Duration::from_secs(30),
            max_retries: 5,
            rate_limit_per_sec: 50,
            encrypted: false,
            page_size: 50,
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(30),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_pages: DEFAULT_MAX_PAGES,
            daily_budget: 0,
            date_format: DateFormat::Compact,
        }
    }
}

impl ClientConfig {
    /// Like [`ClientConfig::new`], with the key taken from `ARGOS_API_KEY`.
    pub fn from_env(base_url: impl Into<String>) -> Result<Self, ArgosError> {
        let key = std::env::var("ARGOS_API_KEY").map_err(|_| {
            ArgosError::Config("ARGOS_API_KEY is not set (or not valid UTF-8)".into())
        })?;
        Ok(ClientConfig::new(base_url, SecretString::from(key)))
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"[REDACTED]")
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("rate_limit_per_sec", &self.rate_limit_per_sec)
            .field("encrypted", &self.encrypted)
            .field("page_size", &self.page_size)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_pages", &self.max_pages)
            .field("daily_budget", &self.daily_budget)
            .field("date_format", &self.date_format)
            .finish_non_exhaustive()
    }
}

/// `request_type`: return only one part of each submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestType {
    Kyc,
    Aml,
    Data,
    Others,
}

impl RequestType {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Kyc => "kyc",
            RequestType::Aml => "aml",
            RequestType::Data => "data",
            RequestType::Others => "others",
        }
    }
}

impl std::str::FromStr for RequestType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kyc" => Ok(RequestType::Kyc),
            "aml" => Ok(RequestType::Aml),
            "data" => Ok(RequestType::Data),
            "others" => Ok(RequestType::Others),
            _ => Err(format!(
                "invalid request_type `{s}`: use one of kyc, aml, data, others"
            )),
        }
    }
}

/// The query parameters of `GET /v3/submission` (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub submission_id: Option<String>,
    pub userid: Option<String>,
    pub email: Option<String>,
    /// Page size; the client's `page_size` when unset.
    pub count: Option<u32>,
    /// Inclusive UTC day on `created_at`, sent as `YYYYMMDD`.
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    pub request_type: Option<RequestType>,
    /// The previous page's `nextpageKey`.
    pub next: Option<NextPageKey>,
}

impl ListQuery {
    /// The parameters as they go on the wire, in a stable order, dates as `YYYYMMDD`.
    pub fn params(&self, default_count: u32) -> Vec<(&'static str, String)> {
        self.params_in(default_count, DateFormat::Compact)
    }

    /// [`Self::params`] with dates in `dates`.
    pub fn params_in(&self, default_count: u32, dates: DateFormat) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if let Some(v) = &self.submission_id {
            p.push(("submission_id", v.clone()));
        }
        if let Some(v) = &self.userid {
            p.push(("userid", v.clone()));
        }
        if let Some(v) = &self.email {
            p.push(("email", v.clone()));
        }
        p.push(("count", self.count.unwrap_or(default_count).to_string()));
        if let Some(d) = self.start_date {
            p.push(("start_date", d.format(dates.pattern()).to_string()));
        }
        if let Some(d) = self.end_date {
            p.push(("end_date", d.format(dates.pattern()).to_string()));
        }
        if let Some(t) = self.request_type {
            p.push(("request_type", t.as_str().to_owned()));
        }
        if let Some(k) = &self.next {
            p.push(("nextpage_id", k.id.clone()));
            p.push(("nextpage_date", k.created_at.clone()));
        }
        p
    }

    fn has_dates(&self) -> bool {
        self.start_date.is_some() || self.end_date.is_some()
    }

    /// What a listing covers, for errors: "the day 2025-06-03 (UTC)".
    pub fn scope(&self) -> String {
        match (self.start_date, self.end_date) {
            (Some(a), Some(b)) if a == b => format!("the day {a} (UTC)"),
            (Some(a), Some(b)) => format!("the days {a}..{b} (UTC)"),
            (Some(a), None) => format!("the days from {a} (UTC)"),
            (None, Some(b)) => format!("the days up to {b} (UTC)"),
            (None, None) => "the submission list".to_owned(),
        }
    }
}

/// One page of `GET /v3/submission`.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Raw submissions, as sent (the order is not relied on).
    pub items: Vec<Value>,
    /// Present when Argos says there is another page.
    pub next: Option<NextPageKey>,
    /// Items that could not be read, set aside (see [`super::page`]).
    pub unreadable: Vec<Unreadable>,
    /// Size of the answer's body (plain text when encrypted).
    pub bytes: usize,
}

/// One page of `GET /v3/submission` whose submissions stay the JSON text
/// Argos sent: `backfill` holds fetched days until their turn, and text is a
/// fraction of the size of parsed values (and is what the store keeps).
#[derive(Debug)]
pub struct RawPage {
    pub items: Vec<Box<serde_json::value::RawValue>>,
    pub next: Option<NextPageKey>,
    /// Items that could not be read, set aside (see [`super::page`]).
    pub unreadable: Vec<Unreadable>,
    /// Size of the answer's body (plain text when encrypted).
    pub bytes: usize,
}

/// How one item of a page is read: parsed, or kept as text.
type ItemFn<T> = fn(usize, &ItemSpan<'_>) -> Result<T, Unreadable>;

/// A list answer, its items read one by one.
struct Listed<T> {
    items: Vec<T>,
    unreadable: Vec<Unreadable>,
    next: Option<NextPageKey>,
    bytes: usize,
}

/// The two shapes of a list page, for [`ArgosClient::paginate`].
trait PageKind: Sized + Send + 'static {
    fn next(&self) -> Option<&NextPageKey>;
    fn fetch(
        client: &ArgosClient,
        query: &ListQuery,
    ) -> impl std::future::Future<Output = Result<Self, ArgosError>> + Send;
}

impl PageKind for Page {
    fn next(&self) -> Option<&NextPageKey> {
        self.next.as_ref()
    }
    fn fetch(
        client: &ArgosClient,
        query: &ListQuery,
    ) -> impl std::future::Future<Output = Result<Self, ArgosError>> + Send {
        client.list_page(query)
    }
}

impl PageKind for RawPage {
    fn next(&self) -> Option<&NextPageKey> {
        self.next.as_ref()
    }
    fn fetch(
        client: &ArgosClient,
        query: &ListQuery,
    ) -> impl std::future::Future<Output = Result<Self, ArgosError>> + Send {
        client.list_page_raw(query)
    }
}

/// What went wrong talking to Argos. Messages name the request, never the
/// key, and never quote an answer's body (it may carry personal data).
#[derive(Debug, thiserror::Error)]
pub enum ArgosError {
    #[error(
        "Argos refused the API key (HTTP {status}) for GET {url}: check the API key \
         (configuration or ARGOS_API_KEY) and the IP allow-list of the account; the key is not shown"
    )]
    Auth { status: u16, url: String },
    #[error(
        "Argos rejected the request as invalid (HTTP 400) for GET {url} with parameters [{params}] \
         ({body}, not shown)"
    )]
    BadRequest {
        url: String,
        params: String,
        /// The body's size ("57 bytes"), never its content.
        body: String,
    },
    #[error("GET {url} failed with HTTP {status} after {attempts} attempt(s) ({body}, not shown)")]
    Http {
        status: u16,
        url: String,
        attempts: u32,
        /// The body's size ("57 bytes"), never its content.
        body: String,
    },
    #[error(
        "GET {url} answered HTTP {status}, a redirect, which the client never follows (the API key \
         would go to another address): set argos.base_url to the address that answers itself; \
         the redirect's target is not shown"
    )]
    Redirect { status: u16, url: String },
    #[error("GET {url} failed after {attempts} attempt(s): {message}")]
    Transport {
        url: String,
        attempts: u32,
        message: String,
    },
    #[error(
        "GET {url} answered a body that is not valid JSON after {attempts} attempt(s): {problem} \
         (the body has {bytes} bytes; its content is not shown)"
    )]
    NotJson {
        url: String,
        attempts: u32,
        bytes: usize,
        problem: String,
    },
    #[error(
        "GET {url} answered more than {limit} bytes (argos.max_response_bytes): stopped reading; \
         lower argos.page_size or raise the limit"
    )]
    TooLarge { url: String, limit: usize },
    #[error("GET {url} answered JSON of an unexpected shape: {message}")]
    Shape { url: String, message: String },
    #[error("GET {url}: the submission cannot be read ({problem}); set aside")]
    Unreadable { url: String, problem: String },
    #[error("GET {url}: cannot read the encrypted answer: {source}")]
    Decrypt {
        url: String,
        #[source]
        source: CryptoError,
    },
    #[error(
        "GET {url} answered in encrypted mode but the client is not configured for it: set encrypted mode on"
    )]
    UnexpectedEncryption { url: String },
    #[error(
        "pagination loop while listing {scope}: page {pages} (GET {url}) returned a nextpageKey \
         already seen; stopped there"
    )]
    RepeatedPageKey {
        scope: String,
        url: String,
        pages: u32,
    },
    #[error(
        "listing {scope}: Argos still sent a nextpageKey after {max} pages \
         (argos.max_pages_per_day); stopped there, the rest is not read (last GET {url})"
    )]
    TooManyPages {
        scope: String,
        url: String,
        max: u32,
    },
    #[error("not calling GET {url}: {day_budget}")]
    BudgetExhausted {
        url: String,
        day_budget: super::budget::Exhausted,
    },
    #[error("Argos client configuration: {0}")]
    Config(String),
}

impl ArgosError {
    /// True for problems that retrying later cannot fix: the operator must
    /// change the configuration (key, parameters, encryption setting, base URL).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ArgosError::Auth { .. }
                | ArgosError::BadRequest { .. }
                | ArgosError::Redirect { .. }
                | ArgosError::Decrypt { .. }
                | ArgosError::UnexpectedEncryption { .. }
                | ArgosError::Config(_)
        )
    }

    /// The daily budget is spent: not an error to log again and again.
    pub fn is_budget_exhausted(&self) -> bool {
        matches!(self, ArgosError::BudgetExhausted { .. })
    }
}

/// One failed attempt, before the retry policy decides.
struct Failure {
    retryable: bool,
    retry_after: Option<Duration>,
    error: ArgosError,
}

/// A client for one Argos account. Cheap to clone (shared state).
#[derive(Clone)]
pub struct ArgosClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    config: ClientConfig,
    cipher: Option<Box<dyn Cipher>>,
    limiter: DefaultDirectRateLimiter,
    calls: Arc<AtomicU64>,
    budget: Arc<CallBudget>,
    /// The date format in use: the configured one until Argos refuses it.
    iso_dates: AtomicBool,
}

impl std::fmt::Debug for ArgosClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgosClient")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A body's size as errors show it.
fn body_size(len: Option<usize>, limit: usize) -> String {
    match len {
        Some(n) => format!("{n} bytes"),
        None => format!("a body over {limit} bytes"),
    }
}

/// Reads a body up to `limit` bytes as it streams in; `None` when it is
/// larger (what was read is dropped, the rest never read).
async fn read_capped(
    resp: &mut reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Ok(None);
    }
    let hint = resp.content_length().unwrap_or(0).min(limit as u64) as usize;
    let mut buf = Vec::with_capacity(hint);
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > limit {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf))
}

/// A parameter value as errors show it: long ones shortened.
fn shown_value(v: &str) -> Cow<'_, str> {
    match v.char_indices().nth(SHOWN_PARAM_CHARS) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &v[..cut])),
        None => Cow::Borrowed(v),
    }
}

impl ArgosClient {
    pub fn new(config: ClientConfig) -> Result<Self, ArgosError> {
        let base = Url::parse(config.base_url.trim_end_matches('/')).map_err(|e| {
            ArgosError::Config(format!("invalid base_url `{}`: {e}", config.base_url))
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ArgosError::Config(format!(
                "invalid base_url `{}`: use http:// or https://",
                config.base_url
            )));
        }
        if config.api_key.expose_secret().is_empty() {
            return Err(ArgosError::Config(
                "the API key is empty: set it in the configuration or ARGOS_API_KEY".into(),
            ));
        }
        let rate = NonZeroU32::new(config.rate_limit_per_sec)
            .ok_or_else(|| ArgosError::Config("rate_limit_per_sec must be at least 1".into()))?;
        if config.max_pages == 0 || config.max_response_bytes == 0 {
            return Err(ArgosError::Config(
                "max_pages and max_response_bytes must be at least 1".into(),
            ));
        }
        // No redirects: reqwest would send `x-api-key` to wherever a 3xx points.
        let http = crate::util::http_client()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .build()
            .map_err(|e| ArgosError::Config(format!("cannot build the HTTP client: {e}")))?;
        let cipher: Option<Box<dyn Cipher>> = if config.encrypted {
            Some(Box::new(AesEcb::from_api_key(&config.api_key)))
        } else {
            None
        };
        Ok(ArgosClient {
            inner: Arc::new(Inner {
                http,
                base,
                cipher,
                limiter: RateLimiter::direct(Quota::per_second(rate)),
                calls: Arc::new(AtomicU64::new(0)),
                budget: Arc::new(CallBudget::new(config.daily_budget)),
                iso_dates: AtomicBool::new(config.date_format == DateFormat::Iso),
                config,
            }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// HTTP attempts made so far (retries included).
    pub fn calls_made(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    /// The shared counter behind [`Self::calls_made`] (the poller records the
    /// calls of each poll in the store).
    pub fn call_counter(&self) -> Arc<AtomicU64> {
        self.inner.calls.clone()
    }

    /// The daily budget every call is counted against before it is made.
    pub fn budget(&self) -> &Arc<CallBudget> {
        &self.inner.budget
    }

    /// The date format dates are sent in now.
    pub fn date_format(&self) -> DateFormat {
        if self.inner.iso_dates.load(Ordering::Relaxed) {
            DateFormat::Iso
        } else {
            DateFormat::Compact
        }
    }

    /// One page of `GET /v3/submission`.
    pub async fn list_page(&self, query: &ListQuery) -> Result<Page, ArgosError> {
        let l = self.list(query, page::parse_item).await?;
        Ok(Page {
            items: l.items,
            next: l.next,
            unreadable: l.unreadable,
            bytes: l.bytes,
        })
    }

    /// One page of `GET /v3/submission` with its submissions as sent (see [`RawPage`]).
    pub async fn list_page_raw(&self, query: &ListQuery) -> Result<RawPage, ArgosError> {
        let l = self.list(query, page::raw_item).await?;
        Ok(RawPage {
            items: l.items,
            next: l.next,
            unreadable: l.unreadable,
            bytes: l.bytes,
        })
    }

    /// One list call; on a 400 for a query with dates, the other date format
    /// is tried once, and kept when Argos accepts it.
    async fn list<T: Send>(
        &self,
        query: &ListQuery,
        item: ItemFn<T>,
    ) -> Result<Listed<T>, ArgosError> {
        let size = self.inner.config.page_size;
        let fmt = self.date_format();
        let first = self.list_once(&query.params_in(size, fmt), item).await;
        let refused @ Err(ArgosError::BadRequest { .. }) = first else {
            return first;
        };
        if !query.has_dates() {
            return refused;
        }
        let other = fmt.other();
        match self.list_once(&query.params_in(size, other), item).await {
            Ok(l) => {
                self.switch_date_format(fmt, other);
                Ok(l)
            }
            // Refused in both formats: the first error names the configured one.
            Err(ArgosError::BadRequest { .. }) => refused,
            Err(e) => Err(e),
        }
    }

    fn switch_date_format(&self, from: DateFormat, to: DateFormat) {
        let switched = self
            .inner
            .iso_dates
            .compare_exchange(
                from == DateFormat::Iso,
                to == DateFormat::Iso,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok();
        if switched {
            tracing::warn!(
                "Argos refused dates as {} and accepted {}: this account takes {}, used from now \
                 on (set argos.date_format: {} to skip the refused call at start)",
                from.describe(),
                to.describe(),
                to.describe(),
                match to {
                    DateFormat::Compact => "compact",
                    DateFormat::Iso => "iso",
                }
            );
        }
    }

    async fn list_once<T: Send>(
        &self,
        params: &[(&'static str, String)],
        item: ItemFn<T>,
    ) -> Result<Listed<T>, ArgosError> {
        let (_, listed) = self
            .get_parsed("/v3/submission", params, |shown, n, bytes| {
                self.read_list(shown, n, bytes, item)
            })
            .await?;
        Ok(listed)
    }

    /// A list answer, plain or the encrypted envelope, its items one by one.
    fn read_list<T>(
        &self,
        shown: &str,
        n: u32,
        body: &[u8],
        item: ItemFn<T>,
    ) -> Result<Listed<T>, Failure> {
        let env = page::scan(body).map_err(|e| not_json(shown, n, body.len(), e.to_string()))?;
        if env.is_encrypted != Some(&b"true"[..]) {
            return collect_items(shown, env, body.len(), item);
        }
        let Some(cipher) = &self.inner.cipher else {
            return Err(fatal(ArgosError::UnexpectedEncryption {
                url: shown.to_owned(),
            }));
        };
        let text = env
            .data
            .and_then(|d| serde_json::from_slice::<String>(d).ok())
            .ok_or_else(|| {
                fatal(ArgosError::Shape {
                    url: shown.to_owned(),
                    message: "encrypted answer without a `data` string".into(),
                })
            })?;
        let plain = cipher.decrypt(&text).map_err(|source| {
            fatal(ArgosError::Decrypt {
                url: shown.to_owned(),
                source,
            })
        })?;
        let env = page::scan(&plain)
            .map_err(|e| not_json(shown, n, plain.len(), format!("decrypted text: {e}")))?;
        collect_items(shown, env, plain.len(), item)
    }

    /// Every page, following `nextpageKey` until Argos sends none. Stops after
    /// the first error. A key seen twice is an error, and so is a listing
    /// still paging after `max_pages`, so this never loops.
    pub fn list_all(
        &self,
        query: ListQuery,
    ) -> impl Stream<Item = Result<Page, ArgosError>> + Send + 'static {
        self.paginate(query)
    }

    /// [`Self::list_all`] with the submissions kept as sent (see [`RawPage`]).
    pub fn list_all_raw(
        &self,
        query: ListQuery,
    ) -> impl Stream<Item = Result<RawPage, ArgosError>> + Send + 'static {
        self.paginate(query)
    }

    fn paginate<P: PageKind>(
        &self,
        query: ListQuery,
    ) -> impl Stream<Item = Result<P, ArgosError>> + Send + 'static {
        struct State {
            client: ArgosClient,
            query: ListQuery,
            /// Hashes of the keys seen: a key's text comes from the answer
            /// and may be large, its hash is 8 bytes.
            seen: HashSet<u64>,
            hasher: RandomState,
            pages: u32,
            /// An error to yield after the page that caused it.
            then: Option<ArgosError>,
            done: bool,
        }
        let state = State {
            client: self.clone(),
            query,
            seen: HashSet::new(),
            hasher: RandomState::new(),
            pages: 0,
            then: None,
            done: false,
        };
        futures::stream::unfold(state, |mut st| async move {
            if let Some(e) = st.then.take() {
                st.done = true;
                return Some((Err(e), st));
            }
            if st.done {
                return None;
            }
            let result = P::fetch(&st.client, &st.query).await;
            st.pages += 1;
            let max = st.client.inner.config.max_pages;
            match &result {
                Ok(page) => match page.next() {
                    None => st.done = true,
                    Some(k) if !st.seen.insert(st.hasher.hash_one(k)) => {
                        st.done = true;
                        let url = st.client.shown_list_url(&st.query);
                        let e = ArgosError::RepeatedPageKey {
                            scope: st.query.scope(),
                            url,
                            pages: st.pages,
                        };
                        return Some((Err(e), st));
                    }
                    Some(_) if st.pages >= max => {
                        st.then = Some(ArgosError::TooManyPages {
                            scope: st.query.scope(),
                            url: st.client.shown_list_url(&st.query),
                            max,
                        });
                    }
                    Some(k) => st.query.next = Some(k.clone()),
                },
                Err(_) => st.done = true,
            }
            Some((result, st))
        })
    }

    /// The list URL of `query` as errors show it.
    fn shown_list_url(&self, query: &ListQuery) -> String {
        self.display_url(
            "/v3/submission",
            &query.params_in(self.inner.config.page_size, self.date_format()),
        )
    }

    /// One submission by id; `None` when Argos answers an empty `Items`.
    pub async fn get_submission(&self, id: &str) -> Result<Option<Value>, ArgosError> {
        let q = ListQuery {
            submission_id: Some(id.to_owned()),
            ..ListQuery::default()
        };
        let page = self.list_page(&q).await?;
        match (page.items.into_iter().next(), page.unreadable.first()) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(u)) => Err(ArgosError::Unreadable {
                url: self.shown_list_url(&q),
                problem: u.problem.clone(),
            }),
            (None, None) => Ok(None),
        }
    }

    /// `GET /v3/submission/applicant`: submissions judged to be the same person.
    pub async fn applicant(&self, applicant_id: &str) -> Result<Vec<ApplicantEntry>, ArgosError> {
        let params = [("applicant_id", applicant_id.to_owned())];
        let (url, body) = self.get_json("/v3/submission/applicant", &params).await?;
        serde_json::from_value(body).map_err(|e| ArgosError::Shape {
            url,
            message: format!(
                "expected an array of {{submission_id, email}}: {}",
                json_problem(&e)
            ),
        })
    }

    /// The URL as shown in errors and logs: plain parameters (long values
    /// shortened), never the key (which travels in a header) nor the encrypted blob.
    fn display_url(&self, path: &str, params: &[(&str, String)]) -> String {
        let mut url = self.inner.base.clone();
        url.set_path(&format!(
            "{}{}",
            self.inner.base.path().trim_end_matches('/'),
            path
        ));
        if !params.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(params.iter().map(|(k, v)| (*k, shown_value(v))));
        }
        let s = url.to_string();
        if self.inner.cipher.is_some() {
            format!("{s} (sent encrypted)")
        } else {
            s
        }
    }

    /// The URL actually requested: plain query, or the encrypted `data` parameter.
    fn wire_url(&self, path: &str, params: &[(&str, String)]) -> Url {
        let mut url = self.inner.base.clone();
        url.set_path(&format!(
            "{}{}",
            self.inner.base.path().trim_end_matches('/'),
            path
        ));
        match &self.inner.cipher {
            Some(c) => {
                let obj: Map<String, Value> = params
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
                    .collect();
                let plain = Value::Object(obj).to_string();
                url.query_pairs_mut()
                    .append_pair("data", &c.encrypt(plain.as_bytes()));
            }
            None if !params.is_empty() => {
                url.query_pairs_mut()
                    .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
            }
            None => {}
        }
        url
    }

    /// GET with retries; returns the display URL and the (decrypted) JSON body.
    async fn get_json(
        &self,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<(String, Value), ArgosError> {
        self.get_parsed(path, params, |shown, n, bytes| {
            let body: Value = serde_json::from_slice(bytes)
                .map_err(|e| not_json(shown, n, bytes.len(), json_problem(&e)))?;
            self.unwrap_encrypted(shown, body)
                .map_err(fatal)?
                .map_err(|(problem, len)| not_json(shown, n, len, problem))
        })
        .await
    }

    /// GET with retries, the body read by `parse` (its errors retry or not as
    /// it says); returns the display URL and what `parse` made of the body.
    async fn get_parsed<T>(
        &self,
        path: &str,
        params: &[(&str, String)],
        parse: impl Fn(&str, u32, &[u8]) -> Result<T, Failure>,
    ) -> Result<(String, T), ArgosError> {
        let shown = self.display_url(path, params);
        let wire = self.wire_url(path, params);
        let attempts = AtomicU32::new(0);
        let cfg = &self.inner.config;
        let policy = ExponentialBuilder::default()
            .with_min_delay(cfg.retry_base_delay)
            .with_max_delay(cfg.retry_max_delay)
            .with_max_times(cfg.max_retries as usize)
            .with_jitter();
        let result = (|| async {
            let n = attempts.fetch_add(1, Ordering::Relaxed) + 1;
            let bytes = self.attempt(&wire, &shown, params, n).await?;
            parse(&shown, n, &bytes)
        })
        .retry(policy)
        .when(|f: &Failure| f.retryable)
        .adjust(|f: &Failure, dur| match (f.retry_after, dur) {
            // Honour Retry-After, but only while retries remain.
            (Some(ra), Some(_)) => Some(ra),
            _ => dur,
        })
        .notify(|f: &Failure, dur| {
            tracing::warn!(error = %f.error, retry_in = ?dur, "Argos request failed; retrying");
        })
        .await;
        result.map(|v| (shown, v)).map_err(|f| f.error)
    }

    /// One HTTP attempt, counted against the budget first, classified; the
    /// body of a success, read up to `max_response_bytes`.
    async fn attempt(
        &self,
        wire: &Url,
        shown: &str,
        params: &[(&str, String)],
        n: u32,
    ) -> Result<Vec<u8>, Failure> {
        if let Err(day_budget) = self.inner.budget.spend(Utc::now()) {
            return Err(fatal(ArgosError::BudgetExhausted {
                url: shown.to_owned(),
                day_budget,
            }));
        }
        self.inner.limiter.until_ready().await;
        self.inner.calls.fetch_add(1, Ordering::Relaxed);
        let transport = |e: reqwest::Error| {
            let what = if e.is_timeout() {
                format!("timed out after {:?}", self.inner.config.timeout)
            } else if e.is_connect() {
                format!("cannot connect: {}", root_cause(&e))
            } else {
                root_cause(&e)
            };
            Failure {
                retryable: true,
                retry_after: None,
                error: ArgosError::Transport {
                    url: shown.to_owned(),
                    attempts: n,
                    message: what,
                },
            }
        };
        let mut resp = self
            .inner
            .http
            .get(wire.clone())
            .header("x-api-key", self.inner.config.api_key.expose_secret())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(300)));
        let fail = |retryable: bool, error: ArgosError| Failure {
            retryable,
            retry_after,
            error,
        };
        if status.is_redirection() {
            return Err(fail(
                false,
                ArgosError::Redirect {
                    status: status.as_u16(),
                    url: shown.to_owned(),
                },
            ));
        }
        if status.is_success() {
            let limit = self.inner.config.max_response_bytes;
            return match read_capped(&mut resp, limit).await.map_err(transport)? {
                Some(bytes) => Ok(bytes),
                None => Err(fail(
                    false,
                    ArgosError::TooLarge {
                        url: shown.to_owned(),
                        limit,
                    },
                )),
            };
        }
        // Only the size of an error body is reported; a read error is no
        // reason to hide the status.
        let len = read_capped(&mut resp, ERROR_BODY_LIMIT)
            .await
            .ok()
            .flatten()
            .map(|b| b.len());
        let body = body_size(len, ERROR_BODY_LIMIT);
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => fail(
                false,
                ArgosError::Auth {
                    status: status.as_u16(),
                    url: shown.to_owned(),
                },
            ),
            StatusCode::BAD_REQUEST => {
                let sent = params
                    .iter()
                    .map(|(k, v)| format!("{k}={}", shown_value(v)))
                    .collect::<Vec<_>>()
                    .join(", ");
                fail(
                    false,
                    ArgosError::BadRequest {
                        url: shown.to_owned(),
                        params: sent,
                        body,
                    },
                )
            }
            s => fail(
                matches!(s.as_u16(), 408 | 429 | 500 | 502 | 503 | 504),
                ArgosError::Http {
                    status: s.as_u16(),
                    url: shown.to_owned(),
                    attempts: n,
                    body,
                },
            ),
        })
    }

    /// Unwraps `{"data": ..., "isEncrypted": true}`. The inner result is the
    /// decrypted plain text failing to parse (retryable, like any bad body):
    /// the problem and the text's length.
    #[allow(clippy::type_complexity)]
    fn unwrap_encrypted(
        &self,
        shown: &str,
        body: Value,
    ) -> Result<Result<Value, (String, usize)>, ArgosError> {
        let encrypted = body.get("isEncrypted").and_then(Value::as_bool) == Some(true);
        if !encrypted {
            return Ok(Ok(body));
        }
        let Some(cipher) = &self.inner.cipher else {
            return Err(ArgosError::UnexpectedEncryption {
                url: shown.to_owned(),
            });
        };
        let text = body
            .get("data")
            .and_then(Value::as_str)
            .ok_or_else(|| ArgosError::Shape {
                url: shown.to_owned(),
                message: "encrypted answer without a `data` string".into(),
            })?;
        let plain = cipher.decrypt(text).map_err(|source| ArgosError::Decrypt {
            url: shown.to_owned(),
            source,
        })?;
        Ok(serde_json::from_slice(&plain)
            .map_err(|e| (format!("decrypted text: {}", json_problem(&e)), plain.len())))
    }
}

/// The innermost cause of a reqwest error ("connection refused", ...), which
/// is what an operator needs; reqwest's own text repeats the URL.
fn root_cause(e: &reqwest::Error) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A body that is not (the expected) JSON: retried, like a truncated answer.
fn not_json(shown: &str, n: u32, bytes: usize, problem: String) -> Failure {
    Failure {
        retryable: true,
        retry_after: None,
        error: ArgosError::NotJson {
            url: shown.to_owned(),
            attempts: n,
            bytes,
            problem,
        },
    }
}

/// An error retrying cannot fix.
fn fatal(error: ArgosError) -> Failure {
    Failure {
        retryable: false,
        retry_after: None,
        error,
    }
}

/// The items of a scanned list answer, each read by `item`; the bad ones set aside.
fn collect_items<T>(
    shown: &str,
    env: page::Envelope<'_>,
    bytes: usize,
    item: ItemFn<T>,
) -> Result<Listed<T>, Failure> {
    let shape = |message: String| {
        fatal(ArgosError::Shape {
            url: shown.to_owned(),
            message,
        })
    };
    if env.items_not_array {
        return Err(shape("`Items` is not an array".into()));
    }
    let spans = env
        .items
        .ok_or_else(|| shape("no `Items` in the answer".into()))?;
    let next = next_page_key(env.next).map_err(shape)?;
    let mut items = Vec::with_capacity(spans.len());
    let mut unreadable = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        match item(i, span) {
            Ok(v) => items.push(v),
            Err(u) => unreadable.push(u),
        }
    }
    Ok(Listed {
        items,
        unreadable,
        next,
        bytes,
    })
}

fn next_page_key(v: Option<&[u8]>) -> Result<Option<NextPageKey>, String> {
    match v {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice::<Option<NextPageKey>>(bytes).map_err(|e| {
            format!(
                "`nextpageKey` is not {{id, created_at}}: {}",
                json_problem(&e)
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_in_order_with_dates() {
        let q = ListQuery {
            email: Some("a@b.c".into()),
            start_date: NaiveDate::from_ymd_opt(2024, 1, 2),
            end_date: NaiveDate::from_ymd_opt(2024, 1, 31),
            request_type: Some(RequestType::Aml),
            next: Some(NextPageKey {
                id: "x".into(),
                created_at: "2024-01-02-00-00-00-000".into(),
            }),
            ..Default::default()
        };
        let p: Vec<String> = q
            .params(50)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            p,
            [
                "email=a@b.c",
                "count=50",
                "start_date=20240102",
                "end_date=20240131",
                "request_type=aml",
                "nextpage_id=x",
                "nextpage_date=2024-01-02-00-00-00-000"
            ]
        );
    }

    #[test]
    fn config_debug_hides_key() {
        let c = ClientConfig::new("http://x", SecretString::from("super-secret"));
        assert!(!format!("{c:?}").contains("super-secret"));
    }

    #[test]
    fn bad_config_errors() {
        let e =
            ArgosClient::new(ClientConfig::new("ftp://x", SecretString::from("k"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Argos client configuration: invalid base_url `ftp://x`: use http:// or https://"
        );
        assert!(e.is_fatal());
    }
}

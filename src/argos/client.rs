//! The Argos REST client: list and fetch submissions, follow `nextpageKey`,
//! look up applicants; with retries, a client-side rate limit and an API-call
//! counter.
//!
//! Why it is shaped this way: the poller must never lose or silently skip a
//! page, and it must budget calls per UTC day (Argos allows 500,000 a day).
//! So every failure is classified ([`ArgosError::is_fatal`]) into a
//! configuration problem that retrying cannot fix (a wrong key, a bad
//! parameter) or a transient one that is retried with exponential backoff and
//! jitter (429 honouring `Retry-After`, 5xx, timeouts, connection errors, a body
//! that is not JSON), and every HTTP attempt, retries included, is counted.
//! Errors name the request (URL without the key, the parameters sent) and
//! never the key, which is held as a [`SecretString`].

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::NaiveDate;
use futures::Stream;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::crypto::{AesEcb, Cipher, CryptoError};
use super::model::{ApplicantEntry, NextPageKey};

/// The real service. Configuration may point elsewhere (the simulator).
pub const ARGOS_BASE_URL: &str = "https://rest-api.argosidentity.com";

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
}

impl ClientConfig {
    /// Defaults that suit the real service: 30s timeout, 5 retries from 500ms,
    /// 50 calls/s, pages of 50.
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
    /// The parameters as they go on the wire, in a stable order.
    pub fn params(&self, default_count: u32) -> Vec<(&'static str, String)> {
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
            p.push(("start_date", d.format("%Y%m%d").to_string()));
        }
        if let Some(d) = self.end_date {
            p.push(("end_date", d.format("%Y%m%d").to_string()));
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
}

/// One page of `GET /v3/submission`.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Raw submissions, as sent (the order is not relied on).
    pub items: Vec<Value>,
    /// Present when Argos says there is another page.
    pub next: Option<NextPageKey>,
}

/// One page of `GET /v3/submission` whose submissions stay the JSON text
/// Argos sent: `backfill` holds fetched days until their turn, and text is a
/// fraction of the size of parsed values (and is what the store keeps).
#[derive(Debug)]
pub struct RawPage {
    pub items: Vec<Box<serde_json::value::RawValue>>,
    pub next: Option<NextPageKey>,
}

/// A list answer, plain or the encrypted envelope, read in one pass.
#[derive(serde::Deserialize)]
struct RawPageBody {
    #[serde(rename = "Items", default)]
    items: Option<Vec<Box<serde_json::value::RawValue>>>,
    #[serde(rename = "nextpageKey", default)]
    next: Option<Value>,
    #[serde(rename = "isEncrypted", default)]
    is_encrypted: Option<Value>,
    #[serde(default)]
    data: Option<Value>,
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

/// What went wrong talking to Argos. Messages name the request, never the key.
#[derive(Debug, thiserror::Error)]
pub enum ArgosError {
    #[error(
        "Argos refused the API key (HTTP {status}) for GET {url}: check the API key \
         (configuration or ARGOS_API_KEY) and the IP allow-list of the account; the key is not shown"
    )]
    Auth { status: u16, url: String },
    #[error(
        "Argos rejected the request as invalid (HTTP 400) for GET {url} with parameters [{params}]: {body}"
    )]
    BadRequest {
        url: String,
        params: String,
        body: String,
    },
    #[error("GET {url} failed with HTTP {status} after {attempts} attempt(s): {body}")]
    Http {
        status: u16,
        url: String,
        attempts: u32,
        body: String,
    },
    #[error("GET {url} failed after {attempts} attempt(s): {message}")]
    Transport {
        url: String,
        attempts: u32,
        message: String,
    },
    #[error(
        "GET {url} answered a body that is not valid JSON after {attempts} attempt(s) ({reason}); it starts with: {start:?}"
    )]
    NotJson {
        url: String,
        attempts: u32,
        reason: String,
        start: String,
    },
    #[error("GET {url} answered JSON of an unexpected shape: {message}")]
    Shape { url: String, message: String },
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
        "pagination loop: GET {url} returned nextpageKey {{id: {id:?}, created_at: {created_at:?}}} a second time"
    )]
    RepeatedPageKey {
        url: String,
        id: String,
        created_at: String,
    },
    #[error("Argos client configuration: {0}")]
    Config(String),
}

impl ArgosError {
    /// True for problems that retrying later cannot fix: the operator must
    /// change the configuration (key, parameters, encryption setting).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ArgosError::Auth { .. }
                | ArgosError::BadRequest { .. }
                | ArgosError::Decrypt { .. }
                | ArgosError::UnexpectedEncryption { .. }
                | ArgosError::Config(_)
        )
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
}

impl std::fmt::Debug for ArgosClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgosClient")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// How many bytes of an unexpected body go into an error message.
const BODY_SNIPPET: usize = 200;

fn snippet(bytes: &[u8]) -> String {
    let cut = bytes.len().min(BODY_SNIPPET);
    let mut s = String::from_utf8_lossy(&bytes[..cut]).into_owned();
    if bytes.len() > cut {
        s.push('…');
    }
    s
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
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
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
                config,
            }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// HTTP attempts made so far (retries included), for the daily API budget.
    pub fn calls_made(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    /// The shared counter behind [`Self::calls_made`] (the pipeline may reset
    /// or sample it at UTC midnight).
    pub fn call_counter(&self) -> Arc<AtomicU64> {
        self.inner.calls.clone()
    }

    /// One page of `GET /v3/submission`.
    pub async fn list_page(&self, query: &ListQuery) -> Result<Page, ArgosError> {
        let params = query.params(self.inner.config.page_size);
        let (url, body) = self.get_json("/v3/submission", &params).await?;
        parse_page(&url, body)
    }

    /// One page of `GET /v3/submission` with its submissions as sent (see [`RawPage`]).
    pub async fn list_page_raw(&self, query: &ListQuery) -> Result<RawPage, ArgosError> {
        let params = query.params(self.inner.config.page_size);
        let (url, body) = self
            .get_parsed("/v3/submission", &params, |shown, n, bytes| {
                let body: RawPageBody = serde_json::from_slice(bytes)
                    .map_err(|e| not_json(shown, n, e.to_string(), bytes))?;
                if body.is_encrypted != Some(Value::Bool(true)) {
                    return Ok(body);
                }
                let Some(cipher) = &self.inner.cipher else {
                    return Err(fatal(ArgosError::UnexpectedEncryption {
                        url: shown.to_owned(),
                    }));
                };
                let text = body.data.as_ref().and_then(Value::as_str).ok_or_else(|| {
                    fatal(ArgosError::Shape {
                        url: shown.to_owned(),
                        message: "encrypted answer without a `data` string".into(),
                    })
                })?;
                let plain = cipher.decrypt(text).map_err(|source| {
                    fatal(ArgosError::Decrypt {
                        url: shown.to_owned(),
                        source,
                    })
                })?;
                serde_json::from_slice(&plain)
                    .map_err(|e| not_json(shown, n, format!("decrypted text: {e}"), &plain))
            })
            .await?;
        let shape = |message: String| ArgosError::Shape {
            url: url.clone(),
            message,
        };
        let items = body
            .items
            .ok_or_else(|| shape("no `Items` in the answer".into()))?;
        Ok(RawPage {
            items,
            next: next_page_key(body.next).map_err(shape)?,
        })
    }

    /// Every page, following `nextpageKey` until Argos sends none. Stops after
    /// the first error. A key seen twice is an error, so this never loops.
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
            seen: HashSet<NextPageKey>,
            done: bool,
        }
        let state = State {
            client: self.clone(),
            query,
            seen: HashSet::new(),
            done: false,
        };
        futures::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            let result = P::fetch(&st.client, &st.query).await;
            match &result {
                Ok(page) => match page.next() {
                    None => st.done = true,
                    Some(k) if !st.seen.insert(k.clone()) => {
                        st.done = true;
                        let url = st.client.display_url(
                            "/v3/submission",
                            &st.query.params(st.client.inner.config.page_size),
                        );
                        return Some((
                            Err(ArgosError::RepeatedPageKey {
                                url,
                                id: k.id.clone(),
                                created_at: k.created_at.clone(),
                            }),
                            st,
                        ));
                    }
                    Some(k) => st.query.next = Some(k.clone()),
                },
                Err(_) => st.done = true,
            }
            Some((result, st))
        })
    }

    /// One submission by id; `None` when Argos answers an empty `Items`.
    pub async fn get_submission(&self, id: &str) -> Result<Option<Value>, ArgosError> {
        let q = ListQuery {
            submission_id: Some(id.to_owned()),
            ..ListQuery::default()
        };
        let page = self.list_page(&q).await?;
        Ok(page.items.into_iter().next())
    }

    /// `GET /v3/submission/applicant`: submissions judged to be the same person.
    pub async fn applicant(&self, applicant_id: &str) -> Result<Vec<ApplicantEntry>, ArgosError> {
        let params = [("applicant_id", applicant_id.to_owned())];
        let (url, body) = self.get_json("/v3/submission/applicant", &params).await?;
        serde_json::from_value(body).map_err(|e| ArgosError::Shape {
            url,
            message: format!("expected an array of {{submission_id, email}}: {e}"),
        })
    }

    /// The URL as shown in errors and logs: plain parameters, never the key
    /// (which travels in a header) nor the encrypted blob.
    fn display_url(&self, path: &str, params: &[(&str, String)]) -> String {
        let mut url = self.inner.base.clone();
        url.set_path(&format!(
            "{}{}",
            self.inner.base.path().trim_end_matches('/'),
            path
        ));
        if !params.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
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
                .map_err(|e| not_json(shown, n, e.to_string(), bytes))?;
            self.unwrap_encrypted(shown, n, body)
                .map_err(fatal)?
                .map_err(|(reason, plain)| not_json(shown, n, reason, &plain))
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

    /// One HTTP attempt, classified; the body of a success.
    async fn attempt(
        &self,
        wire: &Url,
        shown: &str,
        params: &[(&str, String)],
        n: u32,
    ) -> Result<bytes::Bytes, Failure> {
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
        let resp = self
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
        let bytes = resp.bytes().await.map_err(transport)?;

        let fail = |retryable: bool, error: ArgosError| Failure {
            retryable,
            retry_after,
            error,
        };
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(fail(
                    false,
                    ArgosError::Auth {
                        status: status.as_u16(),
                        url: shown.to_owned(),
                    },
                ));
            }
            StatusCode::BAD_REQUEST => {
                let sent = params
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(fail(
                    false,
                    ArgosError::BadRequest {
                        url: shown.to_owned(),
                        params: sent,
                        body: snippet(&bytes),
                    },
                ));
            }
            s if !s.is_success() => {
                let retryable = matches!(s.as_u16(), 408 | 429 | 500 | 502 | 503 | 504);
                return Err(fail(
                    retryable,
                    ArgosError::Http {
                        status: s.as_u16(),
                        url: shown.to_owned(),
                        attempts: n,
                        body: snippet(&bytes),
                    },
                ));
            }
            _ => {}
        }
        Ok(bytes)
    }

    /// Unwraps `{"data": ..., "isEncrypted": true}`. The inner result is the
    /// decrypted plain text failing to parse (retryable, like any bad body).
    #[allow(clippy::type_complexity)]
    fn unwrap_encrypted(
        &self,
        shown: &str,
        _n: u32,
        body: Value,
    ) -> Result<Result<Value, (String, Vec<u8>)>, ArgosError> {
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
        Ok(serde_json::from_slice(&plain).map_err(|e| (format!("decrypted text: {e}"), plain)))
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
fn not_json(shown: &str, n: u32, reason: String, bytes: &[u8]) -> Failure {
    Failure {
        retryable: true,
        retry_after: None,
        error: ArgosError::NotJson {
            url: shown.to_owned(),
            attempts: n,
            reason,
            start: snippet(bytes),
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

fn parse_page(url: &str, body: Value) -> Result<Page, ArgosError> {
    let shape = |message: String| ArgosError::Shape {
        url: url.to_owned(),
        message,
    };
    let Value::Object(mut obj) = body else {
        return Err(shape("expected an object with `Items`".into()));
    };
    let items = match obj.remove("Items") {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(shape("`Items` is not an array".into())),
        None => return Err(shape("no `Items` in the answer".into())),
    };
    let next = next_page_key(obj.remove("nextpageKey")).map_err(shape)?;
    Ok(Page { items, next })
}

fn next_page_key(v: Option<Value>) -> Result<Option<NextPageKey>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(k) => serde_json::from_value::<NextPageKey>(k)
            .map(Some)
            .map_err(|e| format!("`nextpageKey` is not {{id, created_at}}: {e}")),
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

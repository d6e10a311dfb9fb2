//! The HTTP face of the simulator: axum handlers for the two Argos endpoints,
//! the API-key check, encrypted mode, fault injection, and the live loop that
//! adds arrivals and decides pending submissions.
//!
//! The semantics of an answer live in [`super::query`]; this module only
//! adapts HTTP to it, so what a test sees over the wire is what the pure
//! functions say.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::faults::{Fault, Faults, Paging};
use super::generator::{Generator, decide};
use super::query::{self, OrderKey, Params, owned_order_key};
use crate::argos::crypto::{AesEcb, Cipher};

/// Everything the handlers and the live loop share.
pub(crate) struct Shared {
    pub state: Mutex<SimState>,
    pub api_key: String,
    pub cipher: Option<AesEcb>,
}

/// The mutable world of the simulator.
pub(crate) struct SimState {
    /// Current version of each submission, in insertion order.
    pub subs: Vec<Value>,
    pub index: HashMap<String, usize>,
    /// Positions in `subs` ordered by (created_at, submission_id), so a page
    /// is read newest first from the `nextpageKey` without sorting.
    pub order: BTreeMap<OrderKey, usize>,
    /// Every version of every submission, in the order they changed.
    pub versions: Vec<Value>,
    pub generator: Generator,
    pub faults: Faults,
    /// Pending submissions waiting for their decision: (due, decided version).
    pub to_decide: Vec<(DateTime<Utc>, Value)>,
    pub requests: u64,
    /// How the list endpoint pages (hostile modes for tests).
    pub paging: Paging,
    /// Accept `start_date`/`end_date` only as `YYYY-MM-DD` (Argos's current
    /// public reference) instead of `YYYYMMDD`.
    pub iso_dates: bool,
    /// Webhook pushing, when configured (set after the backlog is generated:
    /// the backlog happened before anyone listened).
    pub pusher: Option<super::webhooks::Pusher>,
}

impl SimState {
    /// Adds or replaces a submission and records the version.
    pub fn put(&mut self, v: Value) {
        let id = v
            .get("submission_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let key = owned_order_key(&v);
        if let Some(p) = &mut self.pusher {
            let prev = self.index.get(&id).map(|&i| &self.subs[i]);
            p.on_version(self.versions.len(), prev, &v);
        }
        match self.index.get(&id) {
            Some(&i) => {
                // created_at may have been changed by a test.
                self.order.remove(&owned_order_key(&self.subs[i]));
                self.order.insert(key, i);
                self.subs[i] = v.clone();
            }
            None => {
                self.index.insert(id, self.subs.len());
                self.order.insert(key, self.subs.len());
                self.subs.push(v.clone());
            }
        }
        self.versions.push(v);
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v3/submission", get(list))
        .route("/v3/submission/applicant", get(applicant))
        .with_state(shared)
}

fn message(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(json!({ "message": msg }))).into_response()
}

fn bad_request(detail: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"message": "Invalid Query String parameters", "detail": detail})),
    )
        .into_response()
}

/// Applies the fault (if it ends the request), the key check and encrypted
/// mode; returns the plain query parameters or the response to send.
async fn gate(
    shared: &Shared,
    headers: &HeaderMap,
    raw: HashMap<String, String>,
) -> Result<(HashMap<String, String>, Option<Fault>), Response> {
    let fault = {
        let mut st = shared.state.lock().unwrap();
        st.requests += 1;
        st.faults.next()
    };
    match &fault {
        Some(Fault::TooManyRequests { retry_after }) => {
            let mut r = message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            if let Some(s) = retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*s));
            }
            return Err(r);
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let text = status.canonical_reason().unwrap_or("Error");
            return Err(message(status, text));
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(*d).await,
        Some(Fault::Redirect { status, location }) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::TEMPORARY_REDIRECT);
            return Err((status, [(header::LOCATION, location.clone())]).into_response());
        }
        Some(Fault::Huge(n)) => return Err(huge(*n)),
        _ => {}
    }
    let key_ok = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|k| k == shared.api_key);
    if !key_ok {
        return Err(message(StatusCode::FORBIDDEN, "Forbidden"));
    }
    let params = match &shared.cipher {
        None => raw,
        Some(c) => {
            let Some(data) = raw.get("data") else {
                return Err(bad_request(
                    "encrypted mode: send the query as the `data` parameter",
                ));
            };
            let plain = c
                .decrypt(data)
                .map_err(|e| bad_request(&format!("encrypted mode: {e}")))?;
            let obj: serde_json::Map<String, Value> =
                serde_json::from_slice(&plain).map_err(|e| {
                    bad_request(&format!("encrypted mode: query is not a JSON object: {e}"))
                })?;
            obj.into_iter()
                .map(|(k, v)| {
                    let s = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, s)
                })
                .collect()
        }
    };
    Ok((params, fault))
}

/// A 200 answer of `n` bytes, streamed in chunks without a length, so a
/// client must stop reading it rather than see its size up front.
fn huge(n: usize) -> Response {
    const CHUNK: usize = 64 * 1024;
    let head = bytes::Bytes::from_static(b"{\"Items\": [\"");
    let pad = bytes::Bytes::from(vec![b'x'; CHUNK]);
    let rest = n.saturating_sub(head.len());
    let chunks = std::iter::once(head)
        .chain((0..rest / CHUNK).map(move |_| pad.clone()))
        .chain(std::iter::once(bytes::Bytes::from(vec![
            b'x';
            rest % CHUNK
        ])))
        .map(Ok::<_, std::io::Error>);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(futures::stream::iter(chunks)),
    )
        .into_response()
}

/// `body` with `bad` spliced in as the first items of `Items`.
fn splice_items(body: Vec<u8>, bad: &[Vec<u8>]) -> Vec<u8> {
    let marker = b"\"Items\":[";
    let Some(pos) = body.windows(marker.len()).position(|w| w == marker) else {
        return body;
    };
    let at = pos + marker.len();
    let mut out = body[..at].to_vec();
    for b in bad {
        out.extend_from_slice(b);
        out.push(b',');
    }
    if body.get(at) == Some(&b']') {
        out.pop();
    }
    out.extend_from_slice(&body[at..]);
    out
}

/// A 200 answer: encrypted when the account is, cut short on a truncation
/// fault, with raw bad items on a bad-items fault.
fn ok(shared: &Shared, body: Value, fault: Option<Fault>) -> Response {
    let mut plain = body.to_string().into_bytes();
    if let Some(Fault::BadItems(bad)) = &fault {
        plain = splice_items(plain, bad);
    }
    let mut bytes = match &shared.cipher {
        Some(c) => json!({"data": c.encrypt(&plain), "isEncrypted": true})
            .to_string()
            .into_bytes(),
        None => plain,
    };
    if fault == Some(Fault::Truncated) {
        bytes.truncate(bytes.len() / 2);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}

async fn list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(raw): Query<HashMap<String, String>>,
) -> Response {
    let (params, fault) = match gate(&shared, &headers, raw).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let iso = shared.state.lock().unwrap().iso_dates;
    let params = match dates_as_compact(params, iso) {
        Ok(p) => p,
        Err(detail) => return bad_request(&detail),
    };
    let p = match Params::parse(&params) {
        Ok(p) => p,
        Err(e) => return bad_request(&e.0),
    };
    let body = {
        let mut st = shared.state.lock().unwrap();
        if st.paging != Paging::Normal && p.submission_id.is_none() {
            let body = hostile_page(&mut st, &p);
            drop(st);
            return ok(&shared, body, fault);
        }
        // Start below the page key, and below the day after `end_date`: a
        // backfill of an old day must not walk every newer submission first.
        let after = p.after.as_ref().map(|(t, id)| (Some(*t), id.clone()));
        let before_end = p.end.and_then(|e| e.succ_opt()).map(|d| {
            let midnight = d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
            (Some(midnight), String::new())
        });
        let newest_first: Box<dyn Iterator<Item = (&OrderKey, &usize)>> =
            match after.into_iter().chain(before_end).min() {
                Some(bound) => Box::new(st.order.range(..bound).rev()),
                None => Box::new(st.order.iter().rev()),
            };
        query::answer_sorted(newest_first.map(|(_, &i)| &st.subs[i]), &p)
    };
    ok(&shared, body, fault)
}

/// The dates of an ISO-only account, turned into what [`Params::parse`]
/// reads; a compact date is refused as Argos would.
fn dates_as_compact(
    mut params: HashMap<String, String>,
    iso: bool,
) -> Result<HashMap<String, String>, String> {
    if !iso {
        return Ok(params);
    }
    for name in ["start_date", "end_date"] {
        if let Some(v) = params.get_mut(name) {
            let d = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map_err(|_| format!("{name} must be YYYY-MM-DD, got `{v}`"))?;
            *v = d.format("%Y%m%d").to_string();
        }
    }
    Ok(params)
}

/// A page of an endless or key-repeating server.
fn hostile_page(st: &mut SimState, p: &Params) -> Value {
    let now = Utc::now();
    // A repeated key is the same id and time; an endless one is new each time.
    let (items, key_id, key_time) = match st.paging {
        Paging::Endless => {
            let items: Vec<Value> = (0..p.count)
                .map(|_| {
                    let mut v = st.generator.submission_at(now);
                    super::generator::published_by(&mut v, now);
                    v
                })
                .collect();
            let time = crate::argos::model::format_argos_timestamp(now);
            (items, format!("endless-{}", st.requests), time)
        }
        _ => (
            Vec::new(),
            "loop".to_owned(),
            "2025-01-01-00-00-00-000".to_owned(),
        ),
    };
    json!({
        "Items": items,
        "nextpageKey": {
            "id": key_id,
            "created_at": key_time,
        },
    })
}

async fn applicant(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(raw): Query<HashMap<String, String>>,
) -> Response {
    let (params, fault) = match gate(&shared, &headers, raw).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(id) = params.get("applicant_id") else {
        return bad_request("applicant_id is required");
    };
    let body = {
        let st = shared.state.lock().unwrap();
        query::applicant(&st.subs, id)
    };
    ok(&shared, body, fault)
}

/// Adds live arrivals at `rate` per second and publishes decisions when due,
/// until shutdown.
pub(crate) async fn live_loop(
    shared: Arc<Shared>,
    rate: f64,
    pending_share: f64,
    decide_after: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let period = if rate > 0.0 {
        Some(Duration::from_secs_f64(1.0 / rate))
    } else {
        None
    };
    let start = tokio::time::Instant::now();
    let mut arrivals: u64 = 0;
    let tick = period
        .map(|p| p.min(Duration::from_millis(50)))
        .unwrap_or(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(tick) => {}
        }
        let now = Utc::now();
        let mut st = shared.state.lock().unwrap();
        if let Some(p) = period {
            // Catch up on arrivals due by now, so the rate holds under load.
            let due = (start.elapsed().as_secs_f64() / p.as_secs_f64()) as u64;
            while arrivals < due {
                arrivals += 1;
                let v = st.generator.submission_at(now);
                let decidable = v["kyc"]["result"]
                    .as_str()
                    .is_some_and(|r| r == "approved" || r == "rejected");
                if decidable && st.generator.chance(pending_share) {
                    let pending = Generator::pending_version(&v);
                    st.put(pending);
                    let due_at = now + chrono::Duration::from_std(decide_after).unwrap_or_default();
                    st.to_decide.push((due_at, v));
                } else {
                    let mut v = v;
                    super::generator::published_by(&mut v, now);
                    st.put(v);
                }
            }
        }
        let mut i = 0;
        while i < st.to_decide.len() {
            if st.to_decide[i].0 <= now {
                let (_, mut v) = st.to_decide.swap_remove(i);
                let id = v["submission_id"].as_str().unwrap_or_default().to_owned();
                let pending_at = st
                    .index
                    .get(&id)
                    .map(|&j| st.subs[j]["pending_at"].clone())
                    .unwrap_or(Value::Null);
                decide(&mut v, &pending_at, now);
                st.put(v);
            } else {
                i += 1;
            }
        }
    }
}

//! A local Argos API simulator, for tests, the demo and staging.
//!
//! The engine must be testable and demonstrable without an Argos account, so
//! this serves the same endpoints with the same semantics as the real API
//! (`docs/argos-api.md`): newest first, `nextpageKey`, `count`, every filter,
//! `request_type` projections, the applicant endpoint, 403 on a wrong key,
//! optional encrypted mode. It is a library first: a test starts it on port
//! 0, reads the address, adds or changes submissions, scripts faults, and
//! reads back every version it served ([`SimHandle::dump`]).
//!
//! - [`generator`]: the seeded submission generator.
//! - [`query`]: the pure answer of a list/applicant request.
//! - [`faults`]: scripted and seeded random faults.
//! - `server`: axum handlers and the live arrivals loop.
//! - [`webhooks`]: the events pushed to a webhook URL, a seeded share dropped.

pub mod faults;
pub mod generator;
pub mod query;
mod server;
pub mod webhooks;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use faults::{Fault, FaultConfig, Paging};
pub use generator::Generator;
pub use webhooks::{PushRecord, PushStats, WebhookPush};

use crate::argos::crypto::AesEcb;
use server::{Shared, SimState};

/// How to run a simulator.
#[derive(Clone)]
pub struct SimConfig {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Seed of the generator and of the random faults.
    pub seed: u64,
    /// Submissions in the initial backlog.
    pub submissions: usize,
    /// Live arrivals per second after start (0 = none).
    pub rate: f64,
    /// The key accepted in `x-api-key`.
    pub api_key: String,
    /// Answer in Argos encrypted mode.
    pub encrypted: bool,
    /// Random faults (scripted ones are added with [`SimHandle::script_faults`]).
    pub faults: FaultConfig,
    /// Share (0..=1) of decidable live arrivals that first appear `pending`.
    pub pending_share: f64,
    /// How long a live arrival stays pending before its decision.
    pub decide_after: Duration,
    /// How far back the backlog's `created_at` goes from `base_time`.
    /// Default: since 00:00 UTC of `base_time`, so a poller of "today" sees it all.
    pub backlog_span: Option<Duration>,
    /// End of the backlog (default: now). Fix it for a deterministic backlog.
    pub base_time: Option<DateTime<Utc>>,
    /// Where [`SimHandle::shutdown`] writes every version as JSON lines.
    pub dump_path: Option<PathBuf>,
    /// Push a webhook for every version published after start (encrypted
    /// when `encrypted` is on), a seeded share dropped.
    pub webhook: Option<WebhookPush>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: 1,
            submissions: 500,
            rate: 0.0,
            api_key: "sim-key".into(),
            encrypted: false,
            faults: FaultConfig::default(),
            pending_share: 0.3,
            decide_after: Duration::from_secs(30),
            backlog_span: None,
            base_time: None,
            dump_path: None,
            webhook: None,
        }
    }
}

impl std::fmt::Debug for SimConfig {
    // By hand so the key never reaches a log, even a test key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("listen", &self.listen)
            .field("seed", &self.seed)
            .field("submissions", &self.submissions)
            .field("rate", &self.rate)
            .field("api_key", &"[REDACTED]")
            .field("encrypted", &self.encrypted)
            .field("faults", &self.faults)
            .field("pending_share", &self.pending_share)
            .field("decide_after", &self.decide_after)
            .field("backlog_span", &self.backlog_span)
            .field("base_time", &self.base_time)
            .field("dump_path", &self.dump_path)
            .field("webhook", &self.webhook.as_ref().map(|w| w.drop))
            .finish()
    }
}

/// Entry point: see [`Simulator::start`].
pub struct Simulator;

impl Simulator {
    /// Generates the backlog, binds, and serves in the background.
    pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
        let end = config.base_time.unwrap_or_else(Utc::now);
        let span = match config.backlog_span {
            Some(d) => chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(1)),
            None => end - end.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc(),
        };
        let start = end - span;
        let mut generator = Generator::new(config.seed, start);
        let mut state = SimState {
            subs: Vec::with_capacity(config.submissions),
            index: HashMap::new(),
            order: Default::default(),
            versions: Vec::new(),
            generator: Generator::new(0, start),
            faults: faults::Faults::new(config.seed, config.faults.clone()),
            to_decide: Vec::new(),
            requests: 0,
            paging: Paging::default(),
            iso_dates: false,
            pusher: None,
        };
        // Evenly spaced over the span, all at or before `end`.
        let n = config.submissions as i64;
        let step_ms = span.num_milliseconds().max(0) / (n + 1).max(1);
        for i in 1..=n {
            let t = start + chrono::Duration::milliseconds(step_ms * i);
            let mut v = generator.submission_at(t);
            generator::published_by(&mut v, end);
            state.put(v);
        }
        state.generator = generator;
        let (stop_tx, stop_rx) = watch::channel(false);
        let push_stats = Arc::new(PushStats::default());
        let mut tasks = Vec::new();
        if let Some(push) = &config.webhook {
            let cipher = config
                .encrypted
                .then(|| AesEcb::from_api_key(&SecretString::from(config.api_key.clone())));
            let (pusher, task) = webhooks::start(
                push,
                config.seed,
                cipher,
                push_stats.clone(),
                stop_rx.clone(),
            );
            state.pusher = Some(pusher);
            tasks.push(task);
        }

        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            cipher: config
                .encrypted
                .then(|| AesEcb::from_api_key(&SecretString::from(config.api_key.clone()))),
            api_key: config.api_key.clone(),
        });
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let mut srv_stop = stop_rx.clone();
        let app = server::router(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = srv_stop.changed().await;
                })
                .await;
        });
        let live = tokio::spawn(server::live_loop(
            shared.clone(),
            config.rate,
            config.pending_share,
            config.decide_after,
            stop_rx,
        ));
        tasks.push(server);
        tasks.push(live);
        Ok(SimHandle {
            addr,
            shared,
            stop: stop_tx,
            tasks,
            dump_path: config.dump_path,
            push_stats,
        })
    }
}

/// A running simulator. Dropping it stops the server (without writing the dump).
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    dump_path: Option<PathBuf>,
    push_stats: Arc<PushStats>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the base URL to give the client.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a submission, or replaces the one with the same `submission_id`.
    /// The caller sets `updated_at` if the change should look like one.
    pub fn insert(&self, v: Value) {
        self.shared.state.lock().unwrap().put(v);
    }

    /// Changes a submission in place; false when there is no such id.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut Value)) -> bool {
        let mut st = self.shared.state.lock().unwrap();
        let Some(&i) = st.index.get(id) else {
            return false;
        };
        let mut v = st.subs[i].clone();
        f(&mut v);
        st.put(v);
        true
    }

    /// Replaces the random fault settings.
    pub fn set_faults(&self, config: FaultConfig) {
        self.shared.state.lock().unwrap().faults.set_config(config);
    }

    /// Queues exact faults for the next requests, in order.
    pub fn script_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.state.lock().unwrap().faults.script(faults);
    }

    /// Changes how the list endpoint pages (endless, a repeated key).
    pub fn set_paging(&self, paging: Paging) {
        self.shared.state.lock().unwrap().paging = paging;
    }

    /// Which date format `start_date`/`end_date` must be in; the other is a 400.
    pub fn set_date_format(&self, format: crate::argos::DateFormat) {
        self.shared.state.lock().unwrap().iso_dates = format == crate::argos::DateFormat::Iso;
    }

    /// The current version of every submission, in insertion order.
    pub fn submissions(&self) -> Vec<Value> {
        self.shared.state.lock().unwrap().subs.clone()
    }

    /// Every version of every submission, in the order they changed.
    pub fn dump(&self) -> Vec<Value> {
        self.shared.state.lock().unwrap().versions.clone()
    }

    /// Every webhook event generated since start, sent or dropped, in order.
    pub fn webhook_log(&self) -> Vec<PushRecord> {
        self.shared
            .state
            .lock()
            .unwrap()
            .pusher
            .as_ref()
            .map(|p| p.records.clone())
            .unwrap_or_default()
    }

    /// Changes the fraction of webhook events dropped from now on (a test can
    /// make the next events certain to be lost).
    pub fn set_webhook_drop(&self, drop: f64) {
        if let Some(p) = &mut self.shared.state.lock().unwrap().pusher {
            p.set_drop(drop);
        }
    }

    /// (delivered with 2xx, failed, dropped) webhook events so far.
    pub fn webhook_stats(&self) -> (u64, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.push_stats;
        (
            s.delivered.load(Relaxed),
            s.failed.load(Relaxed),
            s.dropped.load(Relaxed),
        )
    }

    /// HTTP requests received so far (faulty ones included).
    pub fn requests(&self) -> u64 {
        self.shared.state.lock().unwrap().requests
    }

    /// Writes [`Self::dump`] as JSON lines.
    pub fn write_dump(&self, path: &std::path::Path) -> std::io::Result<()> {
        let versions = self.dump();
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for v in &versions {
            serde_json::to_writer(&mut out, v)?;
            out.write_all(b"\n")?;
        }
        out.flush()
    }

    /// Stops serving and the live loop, then writes the dump if configured.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            // Idle keep-alive connections may hold graceful shutdown open.
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        if let Some(p) = self.dump_path.take() {
            self.write_dump(&p).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot write dump {}: {e}", p.display()))
            })?;
        }
        Ok(())
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

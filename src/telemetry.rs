//! Logs, metrics and health.
//!
//! Logs: text on a terminal, JSON for shippers; level from `RUST_LOG`.
//! Metrics: one function per event below writes the counter (and, where an
//! operator needs it, the log line) together, so the two never disagree.
//! `/metrics` (Prometheus text) and `/healthz` are served on a loopback
//! address by default.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (once; later calls are ignored, which
/// lets tests run several commands in one process).
/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

pub fn init_logs(format: LogFormat) {
    init_logs_at(format, "info");
}

/// As [`init_logs`], with another level when `RUST_LOG` is unset.
pub fn init_logs_at(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a person at a terminal: a log file, journald
        // or a log shipper would store the escape bytes.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may exist (a test harness); ours still renders.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!("kyc_sentinel_polls_total", "Polls, by outcome (ok, error)");
    describe_counter!(
        "kyc_sentinel_pages_total",
        "Pages of GET /v3/submission read"
    );
    describe_counter!(
        "kyc_sentinel_api_calls_total",
        "HTTP calls to Argos, retries included"
    );
    describe_counter!(
        "kyc_sentinel_api_errors_total",
        "Polls that failed, by HTTP status (or kind)"
    );
    describe_counter!(
        "kyc_sentinel_submissions_seen_total",
        "Submission versions received"
    );
    describe_counter!(
        "kyc_sentinel_versions_changed_total",
        "New or changed versions evaluated"
    );
    describe_counter!(
        "kyc_sentinel_unreadable_total",
        "Items without id or time, skipped and audited"
    );
    describe_counter!(
        "kyc_sentinel_rule_evaluations_total",
        "Rule evaluations, by rule"
    );
    describe_counter!(
        "kyc_sentinel_rule_errors_total",
        "Rule evaluations that failed, by rule"
    );
    describe_counter!(
        "kyc_sentinel_alerts_total",
        "Alerts fired, by rule and severity"
    );
    describe_counter!(
        "kyc_sentinel_deliveries_total",
        "Delivery attempts, by receiver and outcome"
    );
    describe_counter!(
        "kyc_sentinel_digests_total",
        "Digests written to the outbox, by digest and trigger (schedule, catch_up, send_now)"
    );
    describe_gauge!(
        "kyc_sentinel_outbox_depth",
        "Notifications waiting in the outbox"
    );
    describe_gauge!(
        "kyc_sentinel_dead_letters",
        "Notifications given up (dead letter)"
    );
    describe_gauge!(
        "kyc_sentinel_api_calls_today",
        "Argos calls spent this UTC day"
    );
    describe_gauge!(
        "kyc_sentinel_api_budget_used_ratio",
        "Share of the daily API budget spent"
    );
    describe_gauge!(
        "kyc_sentinel_last_successful_poll_timestamp_seconds",
        "Unix time of the last poll that succeeded"
    );
    describe_gauge!(
        "kyc_sentinel_config_reload_success",
        "1 when the last configuration load or reload was applied, 0 when it was refused"
    );
    describe_gauge!(
        "kyc_sentinel_config_last_reload_timestamp_seconds",
        "Unix time of the last configuration load or reload attempt"
    );
    describe_gauge!(
        "kyc_sentinel_window_members",
        "Window members held in memory"
    );
    describe_counter!(
        "kyc_sentinel_webhooks_total",
        "Argos webhook requests, by outcome"
    );
    describe_counter!(
        "kyc_sentinel_http_refused_total",
        "Connections the HTTP listeners refused or cut, by listener and reason (connections: over the cap; header_timeout)"
    );
    describe_counter!(
        "kyc_sentinel_api_calls_refused_total",
        "Argos calls not made because the daily API budget was spent"
    );
    describe_gauge!(
        "kyc_sentinel_api_budget_exhausted",
        "1 while the daily API budget is spent (no Argos calls until 00:00 UTC)"
    );
    describe_counter!(
        "kyc_sentinel_unreadable_items_total",
        "Items of an Argos answer that could not be read, set aside and audited"
    );
    describe_counter!(
        "kyc_sentinel_versions_found_first_total",
        "Submission versions, by the path that found them first"
    );
}

/// Events of the engine, each one metric update (plus a log line where useful).
pub mod emit {
    use super::*;

    pub fn poll_ok(pages: usize, api_calls: u64) {
        counter!("kyc_sentinel_polls_total", "outcome" => "ok").increment(1);
        counter!("kyc_sentinel_pages_total").increment(pages as u64);
        counter!("kyc_sentinel_api_calls_total").increment(api_calls);
        gauge!("kyc_sentinel_last_successful_poll_timestamp_seconds")
            .set(chrono::Utc::now().timestamp() as f64);
    }

    pub fn poll_failed(kind: String, api_calls: u64) {
        counter!("kyc_sentinel_polls_total", "outcome" => "error").increment(1);
        counter!("kyc_sentinel_api_errors_total", "status" => kind).increment(1);
        counter!("kyc_sentinel_api_calls_total").increment(api_calls);
    }

    pub fn api_budget(calls_today: u64, daily_budget: u64) {
        gauge!("kyc_sentinel_api_calls_today").set(calls_today as f64);
        if daily_budget > 0 {
            gauge!("kyc_sentinel_api_budget_used_ratio")
                .set(calls_today as f64 / daily_budget as f64);
        }
    }

    pub fn api_call_refused() {
        counter!("kyc_sentinel_api_calls_refused_total").increment(1);
    }

    pub fn api_budget_exhausted(exhausted: bool) {
        gauge!("kyc_sentinel_api_budget_exhausted").set(if exhausted { 1.0 } else { 0.0 });
    }

    pub fn unreadable_items(n: usize) {
        counter!("kyc_sentinel_unreadable_items_total").increment(n as u64);
    }

    /// A configuration load at start (`true`) or a reload's outcome.
    pub fn config_reload(ok: bool) {
        gauge!("kyc_sentinel_config_reload_success").set(if ok { 1.0 } else { 0.0 });
        gauge!("kyc_sentinel_config_last_reload_timestamp_seconds")
            .set(chrono::Utc::now().timestamp() as f64);
    }

    pub fn batch(received: usize, changed: usize, unreadable: usize) {
        counter!("kyc_sentinel_submissions_seen_total").increment(received as u64);
        counter!("kyc_sentinel_versions_changed_total").increment(changed as u64);
        counter!("kyc_sentinel_unreadable_total").increment(unreadable as u64);
    }

    /// Once per batch and rule (not per evaluation: the hot path stays free).
    pub fn rule_evaluations(rule: &str, n: usize) {
        counter!("kyc_sentinel_rule_evaluations_total", "rule" => rule.to_owned())
            .increment(n as u64);
    }

    pub fn rule_error(rule: &str) {
        counter!("kyc_sentinel_rule_errors_total", "rule" => rule.to_owned()).increment(1);
    }

    /// `mode`: `live`, or `shadow` for a shadow rule's alert (recorded, never sent).
    pub fn alert(rule: &str, severity: &str, mode: &'static str) {
        counter!("kyc_sentinel_alerts_total", "rule" => rule.to_owned(), "severity" => severity.to_owned(), "mode" => mode)
            .increment(1);
    }

    pub fn delivery(receiver: &str, outcome: &'static str) {
        counter!("kyc_sentinel_deliveries_total", "receiver" => receiver.to_owned(), "outcome" => outcome)
            .increment(1);
    }

    pub fn outbox(pending: i64, dead: i64) {
        gauge!("kyc_sentinel_outbox_depth").set(pending as f64);
        gauge!("kyc_sentinel_dead_letters").set(dead as f64);
    }

    /// The webhook endpoint's counters by outcome (absolute values since start).
    pub fn webhooks(outcomes: &[(&'static str, u64)]) {
        for (outcome, v) in outcomes {
            counter!("kyc_sentinel_webhooks_total", "outcome" => *outcome).absolute(*v);
        }
    }

    /// Versions per path that found them first (absolute, from the store).
    pub fn found_first(found: &std::collections::HashMap<String, u64>) {
        for (path, n) in found {
            counter!("kyc_sentinel_versions_found_first_total", "path" => path.clone())
                .absolute(*n);
        }
    }

    pub fn digest(name: &str, trigger: &str) {
        counter!("kyc_sentinel_digests_total", "digest" => name.to_owned(), "trigger" => trigger.to_owned())
            .increment(1);
    }

    pub fn window_members(n: usize) {
        gauge!("kyc_sentinel_window_members").set(n as f64);
    }
}

/// A call budget `/healthz` reports on (the Argos client's): why no call
/// can be made at `now`, if none can.
pub trait SpentBudget: Send + Sync + std::fmt::Debug {
    fn spent_why(&self, now: chrono::DateTime<chrono::Utc>) -> Option<String>;
}

/// Whether the engine is doing its job: the last poll succeeded recently.
#[derive(Debug, Clone)]
pub struct Health {
    last_ok: Arc<AtomicI64>,
    started: i64,
    interval: Duration,
    /// The Argos call budget: a spent budget is reported first.
    budget: Option<Arc<dyn SpentBudget>>,
    /// Why the last configuration reload was refused (cleared by a good one).
    reload: Arc<std::sync::Mutex<Option<String>>>,
}

impl Health {
    pub fn new(interval: Duration) -> Self {
        Self {
            last_ok: Arc::new(AtomicI64::new(0)),
            started: chrono::Utc::now().timestamp(),
            interval,
            budget: None,
            reload: Arc::default(),
        }
    }

    /// Reports a spent daily API budget (no poll can succeed until 00:00 UTC).
    pub fn with_budget(mut self, budget: Arc<dyn SpentBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    pub fn poll_succeeded(&self) {
        self.last_ok
            .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
    }

    /// Records a refused reload (`Some(why)`) or a good one (`None`).
    pub fn reload_refused(&self, why: Option<String>) {
        *self.reload.lock().expect("health lock") = why;
    }

    /// `degraded: reload refused at T: reason` while the running
    /// configuration is not the file's: the daemon works, but the next
    /// restart would refuse to start.
    pub fn degraded(&self) -> Option<String> {
        self.reload
            .lock()
            .expect("health lock")
            .as_ref()
            .map(|w| format!("degraded: {w}"))
    }

    /// Healthy while the last poll succeeded within three intervals (and, just
    /// after start, while the first poll still has time to finish).
    pub fn check(&self, now: i64) -> Result<String, String> {
        if let Some(ex) = self
            .budget
            .as_ref()
            .and_then(|b| b.spent_why(chrono::DateTime::from_timestamp(now, 0).unwrap_or_default()))
        {
            return Err(format!("not polling: {ex}"));
        }
        let limit = (self.interval.as_secs_f64() * 3.0).ceil() as i64;
        let last = self.last_ok.load(Ordering::Relaxed);
        if last == 0 {
            return if now - self.started <= limit {
                Ok("starting: no poll finished yet".into())
            } else {
                Err(format!(
                    "no poll has succeeded in the {}s since start",
                    now - self.started
                ))
            };
        }
        if now - last <= limit {
            Ok(format!("ok: last successful poll {}s ago", now - last))
        } else {
            Err(format!(
                "the last successful poll was {}s ago (more than three poll intervals, {limit}s)",
                now - last
            ))
        }
    }
}

async fn metrics_route() -> String {
    metrics_handle().render()
}

/// With high availability (`crate::ha`): this instance's role, the first
/// line of `/healthz` (`role: leader (epoch N)` or `role: standby`).
static HA_ROLE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Records the role (`/healthz`) and sets the `kyc_sentinel_leader` gauge.
pub fn set_ha_role(leader_epoch: Option<i64>) {
    let line = match leader_epoch {
        Some(e) => format!("role: leader (epoch {e})"),
        None => "role: standby".to_owned(),
    };
    *HA_ROLE.lock().expect("role lock") = Some(line);
    metrics_handle();
    metrics::describe_gauge!(
        "kyc_sentinel_leader",
        "1 while this instance leads (polls, evaluates, delivers), 0 on a standby"
    );
    gauge!("kyc_sentinel_leader").set(if leader_epoch.is_some() { 1.0 } else { 0.0 });
}

/// The role line for `/healthz` ("" without high availability).
pub fn ha_role_line() -> String {
    HA_ROLE
        .lock()
        .expect("role lock")
        .as_ref()
        .map(|r| format!("{r}\n"))
        .unwrap_or_default()
}

async fn health_route(State(h): State<Health>) -> (StatusCode, String) {
    // Degraded stays 200: a probe that restarts the process on it would
    // meet the same broken file at start and take a working daemon down.
    let degraded = ha_role_line() + h.degraded().map(|d| d + "\n").unwrap_or_default().as_str();
    match h.check(chrono::Utc::now().timestamp()) {
        Ok(msg) => (StatusCode::OK, format!("{degraded}{msg}\n")),
        Err(msg) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{degraded}{msg}\n"),
        ),
    }
}

/// Serves `/metrics`, `/healthz` (and `more` routes, the alert API) until the
/// task is aborted; returns the bound address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    more: Option<Router>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    serve_with(addr, health, more, crate::http_guard::Limits::API).await
}

/// As [`serve`], within other limits (tests shorten the timeouts).
pub async fn serve_with(
    addr: SocketAddr,
    health: Health,
    more: Option<Router>,
    limits: crate::http_guard::Limits,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    metrics_handle();
    let mut app = Router::new()
        .route("/metrics", get(metrics_route))
        .route("/healthz", get(health_route))
        .with_state(health);
    if let Some(more) = more {
        app = app.merge(more);
    }
    let listener = crate::http_guard::bind(addr, "telemetry.listen").await?;
    let bound = listener.local_addr()?;
    // Runs until aborted: the daemon drops it on the way out.
    let task = tokio::spawn(crate::http_guard::serve(
        listener,
        app,
        limits,
        "telemetry",
        std::future::pending(),
    ));
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_three_intervals() {
        let h = Health::new(Duration::from_secs(10));
        let t0 = h.started;
        assert!(h.check(t0 + 5).unwrap().starts_with("starting"));
        assert_eq!(
            h.check(t0 + 31).unwrap_err(),
            "no poll has succeeded in the 31s since start"
        );
        h.last_ok.store(t0 + 40, Ordering::Relaxed);
        assert_eq!(
            h.check(t0 + 70).unwrap(),
            "ok: last successful poll 30s ago"
        );
        assert_eq!(
            h.check(t0 + 71).unwrap_err(),
            "the last successful poll was 31s ago (more than three poll intervals, 30s)"
        );
    }
}

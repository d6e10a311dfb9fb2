//! Hot reload: the whole configuration is re-read on SIGHUP and when the
//! config file, a rule file or a template changes.
//!
//! A change is acted on once the files have stayed the same for one more
//! check (debounce), so an editor's save-as-rename or `git checkout` of many
//! files yields one reload. The reload itself is done by the daemon loop,
//! between polls, all or nothing: the file, rules, templates, receivers,
//! routes, escalation policies, digests and API settings are all built and
//! checked first; one problem refuses the lot, the running set stays in force
//! and the refusal shows in `/healthz` and the metrics until a reload succeeds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::Config;
use crate::config_status::ReloadRecord;
use crate::escalation::Escalator;
use crate::notify::Receiver;
use crate::notify::routing::Router;
use crate::rules::RuleSet;
use crate::store::StateStore;

/// Why a reload was asked for (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadReason {
    Signal,
    FilesChanged,
}

impl std::fmt::Display for ReloadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReloadReason::Signal => "SIGHUP",
            ReloadReason::FilesChanged => "config, rule or template files changed",
        })
    }
}

/// What identifies the folders' (or files') content cheaply: names, sizes, mtimes.
fn snapshot(dirs: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    for dir in dirs {
        if let Ok(m) = std::fs::metadata(dir)
            && m.is_file()
        {
            out.push((dir.clone(), m.len(), m.modified().ok()));
            continue;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(m) = e.metadata() {
                out.push((e.path(), m.len(), m.modified().ok()));
            }
        }
    }
    out.sort();
    out
}

/// Starts watching `dirs` (rules, templates) every `period` (if given) and SIGHUP (when
/// `signals`); the receiver gets one message per reload to do.
pub fn watch(
    dirs: Vec<PathBuf>,
    period: Option<Duration>,
    signals: bool,
) -> mpsc::Receiver<ReloadReason> {
    let (tx, rx) = mpsc::channel(4);
    if signals {
        let tx = tx.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                tracing::error!("cannot install the SIGHUP handler; reload on file change only");
                return;
            };
            while hup.recv().await.is_some() {
                if tx.send(ReloadReason::Signal).await.is_err() {
                    break;
                }
            }
        });
    }
    let Some(period) = period else {
        return rx;
    };
    tokio::spawn(async move {
        let mut current = snapshot(&dirs);
        let mut pending: Option<Vec<_>> = None;
        loop {
            tokio::time::sleep(period).await;
            let now = snapshot(&dirs);
            match &pending {
                // Changed, then unchanged for one period: settled.
                Some(p) if *p == now => {
                    pending = None;
                    current = now;
                    if tx.send(ReloadReason::FilesChanged).await.is_err() {
                        break;
                    }
                }
                _ if now != current => pending = Some(now),
                _ => pending = None,
            }
            if tx.is_closed() {
                break;
            }
        }
    });
    rx
}

/// Sections whose change needs a restart: they shape connections and tasks
/// built once at start (the store, listeners, the Argos client, the poller,
/// the outbox's retry policy).
const RESTART_ONLY: &[&str] = &["argos", "poll", "store", "outbox", "telemetry", "ingest"];

/// The file's top-level sections as written, before `${VAR}` substitution:
/// enough to say which changed, without reading or logging a secret.
fn sections(path: &Path) -> BTreeMap<String, Value> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_saphyr::from_str::<BTreeMap<String, Value>>(&t).ok())
        .unwrap_or_default()
}

/// A digest of the template folder's files (names and contents).
fn templates_digest(cfg: &Config) -> String {
    let Some(dir) = &cfg.templates.dir else {
        return String::new();
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|es| es.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let mut text = Vec::new();
    for f in files {
        text.extend(f.to_string_lossy().as_bytes());
        text.extend(std::fs::read(&f).unwrap_or_default());
    }
    crate::util::sha256_hex(&text)
}

/// A whole configuration, built and checked, not applied yet.
pub struct Prepared {
    pub cfg: Config,
    pub rules: Arc<RuleSet>,
    pub receivers: Vec<Receiver>,
    pub router: Arc<Router>,
    sections: BTreeMap<String, Value>,
    templates: String,
}

/// Reads and builds everything a reload swaps in; the first problem refuses it.
pub fn prepare(path: &Path, store: &Arc<dyn StateStore>) -> anyhow::Result<Prepared> {
    let cfg = crate::compose::load_config(path).map_err(anyhow::Error::msg)?;
    let rules = Arc::new(crate::compose::load_rules(&cfg)?);
    let receivers = crate::compose::build_receivers(&cfg)?;
    let router = Arc::new(crate::compose::build_router(&cfg)?);
    // Digests compile their templates when built: built here to be checked.
    crate::digest::Digester::from_config(&cfg, store.clone())?;
    Ok(Prepared {
        sections: sections(path),
        templates: templates_digest(&cfg),
        cfg,
        rules,
        receivers,
        router,
    })
}

/// The API's routes as configured now; swapped on reload.
pub type ApiSlot = Arc<RwLock<Option<axum::Router>>>;

/// An axum router that serves whatever the slot holds (404 while it holds
/// nothing), so a reload can change the token or turn the API on or off.
pub fn api_service(slot: ApiSlot) -> axum::Router {
    axum::Router::new().fallback(move |req: axum::extract::Request| {
        let current = slot.read().expect("api slot").clone();
        async move {
            use axum::response::IntoResponse;
            use tower::ServiceExt;
            match current {
                Some(r) => r.oneshot(req).await.into_response(),
                None => axum::http::StatusCode::NOT_FOUND.into_response(),
            }
        }
    })
}

/// A task a reload restarts: its token is a child of the daemon's, so the
/// daemon's shutdown stops it too.
struct Task {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Task {
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.handle.await;
    }
}

/// The reloadable parts of a running daemon that are not the pipeline's or
/// the outbox's: escalation and digest tasks, the API, and what the running
/// configuration was, to report what a reload changes.
pub struct Live {
    path: Option<PathBuf>,
    cfg: Config,
    sections: BTreeMap<String, Value>,
    templates: String,
    store: Arc<dyn StateStore>,
    wake: Arc<Notify>,
    clock: Arc<dyn Clock>,
    /// Where escalation and digests run (the daemon waits for them).
    tasks: TaskTracker,
    stop: CancellationToken,
    escalation: Option<Task>,
    digests: Option<Task>,
    pub api: ApiSlot,
}

impl Live {
    /// Starts the escalation and digest tasks of `cfg` on `tasks`; they
    /// stop when `stop` is cancelled.
    pub fn start(
        cfg: &Config,
        store: Arc<dyn StateStore>,
        wake: Arc<Notify>,
        clock: Arc<dyn Clock>,
        tasks: TaskTracker,
        stop: CancellationToken,
    ) -> anyhow::Result<Live> {
        let path = cfg.source.clone();
        let mut live = Live {
            sections: path.as_deref().map(sections).unwrap_or_default(),
            templates: templates_digest(cfg),
            path,
            cfg: cfg.clone(),
            api: Arc::new(RwLock::new(crate::compose::api_router(cfg, &store))),
            store,
            wake,
            clock,
            tasks,
            stop,
            escalation: None,
            digests: None,
        };
        live.escalation = live.spawn_escalation();
        live.digests = live.spawn_digests()?;
        crate::telemetry::emit::config_reload(true);
        Ok(live)
    }

    fn spawn_escalation(&self) -> Option<Task> {
        let policies = &self.cfg.escalation_policies;
        (!policies.is_empty()).then(|| {
            let stop = self.stop.child_token();
            let e = Escalator::new(
                self.store.clone(),
                policies,
                self.clock.clone(),
                self.wake.clone(),
            );
            Task {
                handle: self.tasks.spawn(e.run(stop.clone())),
                stop,
            }
        })
    }

    fn spawn_digests(&self) -> anyhow::Result<Option<Task>> {
        let stop = self.stop.child_token();
        let handle = crate::digest::spawn(
            &self.cfg,
            self.store.clone(),
            self.wake.clone(),
            self.clock.clone(),
            &self.tasks,
            stop.clone(),
        )?;
        Ok(handle.map(|handle| Task { stop, handle }))
    }

    /// Re-reads the whole configuration and applies it, or refuses it whole.
    pub async fn reload(
        &mut self,
        reason: ReloadReason,
        pipeline: &mut crate::pipeline::Pipeline,
        outbox: &crate::notify::outbox::Outbox,
        health: &crate::telemetry::Health,
    ) {
        let Some(path) = self.path.clone() else {
            tracing::warn!(
                "{reason}: this configuration was not read from a file; nothing to reload"
            );
            return;
        };
        let new = match prepare(&path, &self.store) {
            Ok(new) => new,
            Err(e) => {
                let now = chrono::Utc::now();
                let at = crate::store::fmt_time(now);
                tracing::error!(
                    "{reason}: configuration reload refused, the running configuration stays in force: {e:#}"
                );
                // The first line says enough for /healthz; the log has all.
                let first = format!("{e:#}").lines().next().unwrap_or("").to_owned();
                health.reload_refused(Some(format!("reload refused at {at}: {first}")));
                crate::telemetry::emit::config_reload(false);
                let record = ReloadRecord::refused(&reason.to_string(), now, &e);
                crate::config_status::record(&self.meta(), &record, None).await;
                return;
            }
        };
        let line = self.describe(pipeline.rules(), &new);
        pipeline.set_rules(new.rules.clone());
        pipeline.set_router(new.router.clone());
        outbox.set_receivers(new.receivers);
        *self.api.write().expect("api slot") = crate::compose::api_router(&new.cfg, &self.store);
        self.cfg = new.cfg;
        self.sections = new.sections;
        self.templates = new.templates;
        // Restarted from the store's state: nothing sent twice, nothing skipped.
        if let Some(t) = self.escalation.take() {
            t.stop().await;
        }
        self.escalation = self.spawn_escalation();
        if let Some(t) = self.digests.take() {
            t.stop().await;
        }
        match self.spawn_digests() {
            Ok(d) => self.digests = d,
            Err(e) => tracing::error!("{reason}: digests not restarted: {e:#}"),
        }
        health.reload_refused(None);
        crate::telemetry::emit::config_reload(true);
        self.record_applied(&reason.to_string()).await;
        tracing::info!("{reason}: configuration reloaded: {line}");
    }

    /// Records that the configuration now running was applied (`start` or a
    /// reload), with its four-eyes policy, for the console and the CLI.
    pub async fn record_applied(&self, reason: &str) {
        let record = ReloadRecord::applied(reason, chrono::Utc::now());
        crate::config_status::record(&self.meta(), &record, Some(&self.cfg.lifecycle.four_eyes))
            .await;
    }

    fn meta(&self) -> Arc<dyn crate::store::meta::MetaStore> {
        self.store.clone()
    }

    /// One line: which sections changed, the rules' versions, and what only
    /// a restart applies. Names only, never values.
    fn describe(&self, running: &RuleSet, new: &Prepared) -> String {
        let mut changed: Vec<String> = Vec::new();
        let mut restart: Vec<String> = Vec::new();
        let keys: std::collections::BTreeSet<&String> =
            self.sections.keys().chain(new.sections.keys()).collect();
        for k in keys {
            if self.sections.get(k) == new.sections.get(k) || k == "rules" {
                continue;
            }
            if RESTART_ONLY.contains(&k.as_str()) {
                restart.push(k.clone());
            } else {
                changed.push(k.clone());
            }
        }
        // Listeners are bound once, at start.
        let listen = |c: &Config| c.console.as_ref().and_then(|c| c.listen);
        if listen(&self.cfg) != listen(&new.cfg) {
            restart.push("console.listen".into());
        }
        if running.version() != new.rules.version() {
            changed.push(format!(
                "rules {} -> {} ({} rules)",
                short(running.version()),
                short(new.rules.version()),
                new.rules.rules().len()
            ));
        }
        if self.templates != new.templates && !changed.iter().any(|c| c == "templates") {
            changed.push("template files".into());
        }
        let mut line = if changed.is_empty() {
            "nothing changed".to_owned()
        } else {
            format!("changed {}", changed.join(", "))
        };
        if !restart.is_empty() {
            line += &format!(
                "; {} changed but apply at the next restart",
                restart.join(", ")
            );
        }
        line
    }
}

fn short(v: &str) -> &str {
    &v[..v.len().min(12)]
}

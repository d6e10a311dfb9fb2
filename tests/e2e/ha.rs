//! High availability on PostgreSQL as an operator runs it: two `run`
//! processes on one database, the leader SIGKILLed and SIGSTOPped while
//! submissions arrive. The standby takes over within max(10 s, 2 poll
//! intervals), logged with the new epoch; every alert `eval` finds is
//! delivered, re-sends only with the same idempotency key. And a webhook sent
//! to the standby is acted on by the leader.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kyc_sentinel::simulator::{SimConfig, SimHandle, Simulator, WebhookPush};
use kyc_sentinel::store::PgStore;
use kyc_sentinel::store::prelude::*;
use rand::{Rng, SeedableRng};

const TOKEN: &str = "ha-test-token-0123456";
const API_TOKEN: &str = "ha-api-token-0123456789";
/// A second receiver for escalation steps; medium alerts escalate twice.
const ESCALATE: &str = "  - name: chan
    type: file
    path: chan.jsonl
route:
  receiver: file
  group_by: ['...']
  group_wait: 0s
  routes:
    - match: { severity: medium }
      escalation: steps
escalation_policies:
  - name: steps
    steps:
      - { after: 0s, receivers: [chan] }
      - { after: 6s, receivers: [chan] }
";
/// max(10 s, 2 poll intervals of 1 s).
const FAILOVER_LIMIT: Duration = Duration::from_secs(10);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `run` process of the pair (restarted under the same config).
struct Instance {
    name: &'static str,
    cfg: PathBuf,
    log: PathBuf,
    port: u16,
    child: Option<KillOnDrop>,
}

impl Instance {
    /// `sentinel-NAME.yaml` in `dir`: the shared store and file receiver,
    /// telemetry on a port of its own, `extra` appended.
    fn new(dir: &Path, name: &'static str, sim: &SimHandle, pg: &Backend, extra: &str) -> Self {
        let port = free_port();
        let text = std::fs::read_to_string(write_config_on(dir, &sim.base_url(), pg, extra))
            .unwrap()
            .replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"));
        let cfg = dir.join(format!("sentinel-{name}.yaml"));
        std::fs::write(&cfg, text).unwrap();
        Instance {
            name,
            cfg,
            log: dir.join(format!("{name}.log")),
            port,
            child: None,
        }
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
            .args(["run", "--config"])
            .arg(&self.cfg)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kyc-sentinel run");
        self.child = Some(KillOnDrop(child));
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{sig}"), &pid])
                .status()
                .unwrap()
                .success(),
            "kill -{sig} {pid}"
        );
    }

    fn kill9(&mut self) {
        let mut c = self.child.take().expect("running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// SIGTERM, then waits (at most 15 s) for a clean exit.
    fn stop(&mut self) {
        self.signal("TERM");
        let mut c = self.child.take().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status}", self.name);
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{} did not stop",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `/healthz`'s body, or `None` when it does not answer within 500 ms.
    async fn health(&self) -> Option<String> {
        let client = kyc_sentinel::util::http_client()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let r = client
            .get(format!("http://127.0.0.1:{}/healthz", self.port))
            .send()
            .await
            .ok()?;
        r.text().await.ok()
    }

    /// The epoch it leads with, from `/healthz` (`role: leader (epoch N)`).
    async fn leading(&self) -> Option<i64> {
        let h = self.health().await?;
        let rest = h.lines().next()?.strip_prefix("role: leader (epoch ")?;
        rest.strip_suffix(')')?.parse().ok()
    }

    async fn standing_by(&self) -> bool {
        self.health()
            .await
            .is_some_and(|h| h.starts_with("role: standby"))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn pg_url(pg: &Backend) -> String {
    match pg {
        Backend::Postgres(db) => db.url(),
        Backend::Sqlite => unreachable!("the HA tests run on PostgreSQL"),
    }
}

/// `/metrics`' `kyc_sentinel_leader` value.
async fn leader_gauge(port: u16) -> Option<String> {
    let text = kyc_sentinel::util::http_client()
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("kyc_sentinel_leader "))
        .map(str::to_owned)
}

/// Polls `check` every 50 ms for at most `limit`; how long it took.
async fn within<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Kill,
    Freeze,
    /// The leader's lock connection ended by the database (as when the
    /// network to it is cut or PostgreSQL fails over).
    Cut,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_after_sigkill_and_sigstop_and_nothing_is_lost() {
    let Some(pg) = Backend::postgres("ha_failover") else {
        return;
    };
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1919);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let sim = Arc::new(
        Simulator::start(SimConfig {
            seed: 51,
            submissions: 400,
            ..recent_backlog()
        })
        .await
        .unwrap(),
    );
    let mut a = Instance::new(dir.path(), "a", &sim, &pg, "");
    let mut b = Instance::new(dir.path(), "b", &sim, &pg, "");
    a.start();
    within(Duration::from_secs(30), || async {
        a.leading().await.is_some()
    })
    .await
    .expect("the first instance leads");
    b.start();
    within(Duration::from_secs(30), || async { b.standing_by().await })
        .await
        .expect("the second instance stands by");
    // Submissions arrive for the whole run of faults. A pending version lives
    // 12 s, longer than any failover, so some leader always sees it.
    let feeder = {
        let sim = sim.clone();
        tokio::spawn(async move { drive_arrivals(&sim, 52, 60, Duration::from_secs(12)).await })
    };
    use Fault::*;
    let plan = [
        Kill, Kill, Cut, Kill, Freeze, Kill, Kill, Kill, Freeze, Kill, Cut, Kill, Kill, Freeze,
        Kill,
    ];
    let db = PgStore::open(&pg_url(&pg)).await.unwrap();
    let mut failovers = Vec::new();
    for fault in plan {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1000..3000))).await;
        let a_leads = a.leading().await.is_some();
        let (leader, standby) = if a_leads {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let before = leader.leading().await.expect("one of the two leads");
        let t0 = Instant::now();
        match fault {
            Kill => leader.kill9(),
            Freeze => leader.signal("STOP"),
            Cut => {
                sqlx::query("SELECT pg_terminate_backend(holder_pid) FROM leadership")
                    .execute(db.pool())
                    .await
                    .unwrap();
            }
        }
        // From the signal to an instance's /healthz saying it leads with a
        // new epoch: the standby, or (its connection cut, the process alive)
        // either of the two, whichever takes the free lock first.
        let (took, epoch, new) = loop {
            if let Some(e) = standby.leading().await.filter(|e| *e > before) {
                break (t0.elapsed(), e, &*standby);
            }
            if fault == Cut
                && let Some(e) = leader.leading().await.filter(|e| *e > before)
            {
                break (t0.elapsed(), e, &*leader);
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "nobody took over after {fault:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            took <= FAILOVER_LIMIT,
            "{fault:?}: {} took over after {took:?}, more than {FAILOVER_LIMIT:?}",
            new.name
        );
        assert!(
            new.log_text()
                .contains(&format!("leader with epoch {epoch}")),
            "{}'s log does not name epoch {epoch}",
            new.name
        );
        failovers.push((fault, took));
        // The old leader comes back; one of the two stands by.
        match fault {
            Kill => leader.start(),
            Freeze => leader.signal("CONT"),
            Cut => {}
        }
        within(Duration::from_secs(30), || async {
            a.standing_by().await || b.standing_by().await
        })
        .await
        .unwrap_or_else(|| panic!("nobody stands by after {fault:?}"));
    }
    feeder.await.unwrap();
    // Let the last decided versions be polled and delivered.
    tokio::time::sleep(Duration::from_secs(5)).await;
    a.stop();
    b.stop();

    let expected = expected_alerts(&sim.dump());
    assert!(expected.len() > 20, "the scenario raises alerts");
    let got = delivered(&dir.path().join("alerts.jsonl"));
    let dups = assert_delivered_exactly(&expected, &got);
    let kills: Vec<_> = failovers.iter().filter(|(f, _)| *f == Kill).collect();
    let freezes: Vec<_> = failovers.iter().filter(|(f, _)| *f == Freeze).collect();
    let cuts: Vec<_> = failovers.iter().filter(|(f, _)| *f == Cut).collect();
    let max = |v: &[&(Fault, Duration)]| v.iter().map(|(_, d)| *d).max().unwrap_or_default();
    println!(
        "HA crash test (CRASH_SEED={seed}): {} SIGKILLs (failover max {:?}), {} SIGSTOPs \
         (failover max {:?}), {} lock connections cut (failover max {:?}); {} alerts expected \
         and delivered, {dups} duplicate deliveries (same idempotency key)",
        kills.len(),
        max(&kills),
        freezes.len(),
        max(&freezes),
        cuts.len(),
        max(&cuts),
        expected.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_sent_to_the_standby_is_acted_on_by_the_leader() {
    let Some(pg) = Backend::postgres("ha_hints") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    let sim = Simulator::start(SimConfig {
        submissions: 0,
        // Argos calls the standby's endpoint.
        webhook: Some(WebhookPush {
            url: format!("http://127.0.0.1:{port_b}/argos/webhook/{TOKEN}"),
            drop: 0.0,
        }),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // Medium alerts escalate: a first step at once, a second after 6 s
    // unless someone acknowledged the alert by then.
    // The console and the alert API on addresses of their own
    // (`console.listen`), on the leader and on the standby alike.
    let (console_a, console_b) = (free_port(), free_port());
    let ingest = |port: u16, console: u16| {
        format!(
            "{ESCALATE}ingest:\n  listen: 127.0.0.1:{port}\n  token: {TOKEN}\napi:\n  token: {API_TOKEN}\n\
             console:\n  listen: 127.0.0.1:{console}\n"
        )
    };
    let mut a = Instance::new(dir.path(), "a", &sim, &pg, &ingest(port_a, console_a));
    let mut b = Instance::new(dir.path(), "b", &sim, &pg, &ingest(port_b, console_b));
    // One poll at start, the next in an hour: only the hint can bring it in.
    for i in [&a, &b] {
        let text = std::fs::read_to_string(&i.cfg)
            .unwrap()
            .replace("interval: 1s", "interval: 1h");
        std::fs::write(&i.cfg, text).unwrap();
    }
    a.start();
    within(Duration::from_secs(30), || async {
        a.health()
            .await
            .is_some_and(|h| h.starts_with("role: leader") && h.contains("last successful poll"))
    })
    .await
    .expect("the first instance leads and has polled");
    b.start();
    within(Duration::from_secs(30), || async { b.standing_by().await })
        .await
        .expect("the second instance stands by");

    let store = PgStore::open(&pg_url(&pg)).await.unwrap();
    let now = kyc_sentinel::argos::model::format_argos_timestamp(chrono::Utc::now());
    sim.insert(serde_json::json!({
        "submission_id": "hinted-1", "userid": "u-hinted", "email": "hinted@example.com",
        "created_at": now, "updated_at": now, "kyc": {"result": "approved"}
    }));
    let took = within(Duration::from_secs(10), || async {
        store.submission("hinted-1").await.unwrap().is_some()
    })
    .await
    .expect("the leader fetched the submission the standby was told about");
    let found = store.found_first().await.unwrap();
    assert_eq!(found.get("webhook"), Some(&1), "{found:?}");
    assert_eq!(leader_gauge(a.port).await.as_deref(), Some("1"));
    assert_eq!(leader_gauge(b.port).await.as_deref(), Some("0"));
    // The standby answers the alert API from the shared store, as the leader,
    // and an acknowledgement made on the standby stops the leader's escalation.
    sim.insert(serde_json::json!({
        "submission_id": "hinted-2", "userid": "u-bank", "email": "bank@example.com",
        "created_at": now, "updated_at": now, "kyc": {"result": "approved"},
        "bank_verification": {"result": "fail"}
    }));
    within(Duration::from_secs(10), || async {
        !store
            .alerts_of_submission("hinted-2")
            .await
            .unwrap()
            .is_empty()
    })
    .await
    .expect("the leader raised the bank-verification alert");
    let fp = store.alerts_of_submission("hinted-2").await.unwrap()[0].clone();
    let http = kyc_sentinel::util::http_client().build().unwrap();
    let list = |port: u16| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("http://127.0.0.1:{port}/api/alerts"))
                .bearer_auth(API_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "GET /api/alerts on port {port}");
            r.text().await.unwrap()
        }
    };
    let on_standby = list(console_b).await;
    assert!(on_standby.contains(&fp), "{on_standby}");
    assert_eq!(on_standby, list(console_a).await);
    // With `console.listen`, the standby's telemetry address keeps the API off.
    let off = http
        .get(format!("http://127.0.0.1:{}/api/alerts", b.port))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        off.status(),
        404,
        "the alert API on the standby's telemetry address"
    );
    // Acknowledged after the first step went out: the second one is what
    // the acknowledgement must stop.
    let chan = dir.path().join("chan.jsonl");
    let first_step =
        || async { std::fs::read_to_string(&chan).is_ok_and(|t| t.lines().count() == 1) };
    within(Duration::from_secs(5), first_step)
        .await
        .expect("the first escalation step went out");
    let r = http
        .post(format!("http://127.0.0.1:{console_b}/api/alerts/{fp}/ack"))
        .bearer_auth(API_TOKEN)
        .json(&serde_json::json!({"note": "seen on the standby"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "ack on the standby: {}",
        r.text().await.unwrap()
    );
    let on_leader = list(console_a).await;
    assert!(on_leader.contains("acknowledged"), "{on_leader}");
    // The leader's escalator sees the acknowledgement when the second step
    // falls due and stops, sending nothing more.
    let stopped = || async {
        store
            .audit_for_alert(&fp)
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.kind == "escalation_stopped")
    };
    within(Duration::from_secs(15), || async {
        stopped().await.is_some()
    })
    .await
    .expect("the leader stopped the escalation");
    assert_eq!(stopped().await.unwrap().detail["reason"], "acknowledged");
    let steps = std::fs::read_to_string(&chan).unwrap_or_default();
    assert_eq!(steps.lines().count(), 1, "only the first step: {steps}");
    assert!(
        a.log_text().contains("leader with epoch"),
        "{}",
        a.log_text()
    );
    println!("webhook to the standby -> processed by the leader in {took:?}");
    // `backfill` needs the database alone: refused while a `run` leads, and
    // it leads (fenced) once they are stopped.
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    let cfg_a = a.cfg.clone();
    let backfill = || {
        Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
            .args(["backfill", "--config"])
            .arg(&cfg_a)
            .args(["--from", &today, "--to", &today])
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let refused = backfill();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{err}");
    assert!(
        err.contains("another kyc-sentinel leads on the store"),
        "{err}"
    );
    a.stop();
    b.stop();
    let done = backfill();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(String::from_utf8_lossy(&done.stdout).contains("submissions received"));
}

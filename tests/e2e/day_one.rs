//! Issue 15's "done when": a compliance team's first day, as one process-level
//! test that executes README.md's "Tutorial: the first day".
//!
//! The files of the tutorial (` ```yaml file=PATH ` blocks) are written as
//! shown; every `kyc-sentinel` command of its `sh` blocks is run through bash,
//! as written, with the binary on the `PATH`. The stand-ins the tutorial starts
//! by hand (the simulator, aiosmtpd, the on-call endpoint) are started here on
//! free ports and named through the same environment variables. The test's own
//! list of commands must equal the tutorial's, so neither can drift.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::repo;
use common::smtp::{Smtp, parse_eml};
use kyc_sentinel::simulator::{SimConfig, Simulator};
use serde_json::Value;

/// The tutorial's commands, in the order the day runs them.
const TEST: &str = "kyc-sentinel test rules";
const CHECK: &str = "kyc-sentinel check --config sentinel.yaml";
const BACKFILL: &str = "kyc-sentinel backfill --config sentinel.yaml --from $(date -u -d '2 days ago' +%Y%m%d) --to $(date -u -d yesterday +%Y%m%d)";
const RUN: &str = "kyc-sentinel run --config sentinel.yaml";
const LIST: &str = "kyc-sentinel alerts list --config sentinel.yaml";
const EXPLAIN: &str = "kyc-sentinel audit --config sentinel.yaml --alert $FP";
const EXPORT: &str = "kyc-sentinel audit --config sentinel.yaml --export --from $(date -u +%Y%m%d) --to $(date -u +%Y%m%d) > audit.jsonl";
/// Started by the test in-process with the same settings (see `simulator`).
const SIMULATE: &str =
    "kyc-sentinel simulate --listen 127.0.0.1:8080 --submissions 600 --backlog-days 3 --rate 1 &";

/// The tutorial section of the README.
fn tutorial() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("\n## Tutorial: the first day\n")
        .expect("README has a section `Tutorial: the first day`");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_owned()
}

/// Fenced blocks as (info string, body).
fn blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("```") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            out.push((info.trim().to_owned(), body.join("\n") + "\n"));
        }
    }
    out
}

/// Writes the tutorial's files into `dir`; the `kyc-sentinel` lines of its shell blocks.
fn materialise(dir: &Path) -> Vec<String> {
    let mut commands = Vec::new();
    for (info, body) in blocks(&tutorial()) {
        if let Some(path) = info
            .split_whitespace()
            .find_map(|w| w.strip_prefix("file="))
        {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        } else if info == "sh" {
            commands.extend(
                body.lines()
                    .filter(|l| l.starts_with("kyc-sentinel "))
                    .map(|l| l.split("  #").next().unwrap().trim_end().to_owned()),
            );
        }
    }
    commands
}

/// The environment the tutorial exports, pointing at the stand-ins.
struct Day {
    dir: PathBuf,
    env: BTreeMap<&'static str, String>,
}

impl Day {
    fn bash(&self, line: &str) -> Command {
        let bin = Path::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
            .parent()
            .unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let mut cmd = Command::new("bash");
        cmd.args(["-c", line])
            .current_dir(&self.dir)
            .env("PATH", path)
            .env("RUST_LOG", "info")
            .envs(&self.env);
        cmd
    }

    /// Runs one tutorial command to its end; panics with its output if it fails.
    fn run(&self, line: &str) -> Output {
        let out = self.bash(line).output().unwrap();
        assert!(
            out.status.success(),
            "`{line}` exited {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// What the on-call endpoint got: (idempotency key, body) per request.
type Calls = Arc<Mutex<Vec<(String, Value)>>>;

async fn on_call() -> (String, Calls) {
    let calls: Calls = Arc::default();
    let c = calls.clone();
    let app = axum::Router::new().fallback(move |h: axum::http::HeaderMap, body: String| {
        let c = c.clone();
        async move {
            let key = h
                .get("idempotency-key")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            c.lock()
                .unwrap()
                .push((key, serde_json::from_str(&body).unwrap_or(Value::Null)));
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slack/on-call", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, calls)
}

/// The simulator the tutorial starts, on a free port.
async fn simulator() -> kyc_sentinel::simulator::SimHandle {
    Simulator::start(SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        submissions: 600,
        backlog_span: Some(Duration::from_secs(3 * 86_400)),
        rate: 1.0,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first alert of the first mail that carries an acknowledge link:
/// (short fingerprint, acknowledge URL, rule).
fn alert_in_mail(smtp: &Smtp) -> Option<(String, String, String)> {
    for file in smtp.files("accepted") {
        let text = parse_eml(&file)["text"].as_str()?.to_owned();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
        };
        if let (Some(fp), Some(ack)) = (field("Fingerprint:"), field("Acknowledge:")) {
            let rule = text
                .lines()
                .find_map(|l| {
                    let l = l.trim();
                    l.starts_with("1. ")
                        .then(|| l.split_whitespace().nth(2).unwrap().trim_end_matches(':'))
                })?
                .to_owned();
            return Some((fp, ack, rule));
        }
    }
    None
}

fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stop(daemon: &mut Child) {
    let pid = daemon.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    let status = loop {
        if let Some(s) = daemon.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "run did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "run exited {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_day_as_the_readme_tells_it() {
    let tmp = tempfile::tempdir().unwrap();
    let commands = materialise(tmp.path());
    assert_eq!(
        commands,
        [SIMULATE, TEST, CHECK, BACKFILL, RUN, LIST, EXPLAIN, EXPORT],
        "the tutorial's commands changed: run them here too"
    );
    for file in ["rules/team.yaml", "rules/team.test.yaml", "sentinel.yaml"] {
        assert!(tmp.path().join(file).exists(), "the tutorial writes {file}");
    }

    let sim = simulator().await;
    let smtp = Smtp::start(tmp.path(), &[]);
    let (hook_url, calls) = on_call().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let day = Day {
        dir: tmp.path().to_owned(),
        env: BTreeMap::from([
            ("ARGOS_BASE_URL", sim.base_url()),
            ("ARGOS_API_KEY", "sim-key".to_owned()),
            ("SMTP_PORT", smtp.port.to_string()),
            ("ONCALL_WEBHOOK_URL", hook_url.clone()),
            ("SENTINEL_LISTEN", listen.clone()),
            ("SENTINEL_URL", format!("http://{listen}")),
            ("SENTINEL_API_TOKEN", "day-one-token-6f1c0b9e2d".to_owned()),
            (
                "SENTINEL_LINK_SECRET",
                "day-one-link-secret-3a7d5e".to_owned(),
            ),
        ]),
    };

    // Rules with their tests, then the whole configuration.
    let out = day.run(TEST);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 tests, 3 passed, 0 failed"), "{text}");
    let out = day.run(CHECK);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("configuration OK"),
        "{out:?}"
    );

    // History, quietly: recorded, nobody told.
    let out = day.run(BACKFILL);
    let summary = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(summary.contains("would have"), "{summary}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(smtp.files("accepted").is_empty(), "backfill sent mail");
    assert!(calls.lock().unwrap().is_empty(), "backfill paged on-call");
    let listed = String::from_utf8_lossy(&day.run(LIST).stdout).into_owned();
    assert!(listed.contains("historical"), "{listed}");

    // Live: today's alerts reach the inbox and on-call.
    let log = std::fs::File::create(tmp.path().join("run.log")).unwrap();
    let mut daemon = common::KillOnDrop(
        day.bash(&format!("exec {RUN}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let (fp, ack, rule) = wait_for(Duration::from_secs(60), || alert_in_mail(&smtp));
    assert!(
        [
            "aml-red-flag",
            "too-many-retry-3-in-24h",
            "one-face-several-emails"
        ]
        .contains(&rule.as_str()),
        "{rule}"
    );
    assert!(ack.starts_with(&format!("http://{listen}/")), "{ack}");
    // The acknowledge link from the mail: a page showing the alert, then the POST.
    let http = kyc_sentinel::util::http_client().build().unwrap();
    let page = http.get(&ack).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains(&rule) && page.contains("Acknowledge"),
        "{page}"
    );
    let done = http
        .post(&ack)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=Mina+Park")
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let done = done.text().await.unwrap();
    assert!(
        done.contains("acknowledged") && done.contains("Mina Park"),
        "{done}"
    );

    // The evidence: who was told, when, under which key.
    let mut env_fp = day;
    env_fp.env.insert("FP", fp.clone());
    let day = env_fp;
    // Every rule of the team is critical or high: on-call got this alert too.
    let explained = wait_for(Duration::from_secs(30), || {
        let text = String::from_utf8_lossy(&day.run(EXPLAIN).stdout).into_owned();
        [
            "compliance-mail attempt 1: delivered",
            "on-call attempt 1: delivered",
        ]
        .iter()
        .all(|want| text.contains(want))
        .then_some(text)
    });
    assert!(explained.contains(&rule), "{explained}");
    assert!(!calls.lock().unwrap().is_empty());
    day.run(EXPORT);
    let rows: Vec<Value> = std::fs::read_to_string(tmp.path().join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let delivered_to: std::collections::BTreeSet<String> = rows
        .iter()
        .filter(|r| {
            r["kind"] == "delivery"
                && r["fingerprint"]
                    .as_str()
                    .is_some_and(|f| f.starts_with(&fp))
                && r["detail"]["outcome"] == "delivered"
        })
        .map(|r| r["detail"]["receiver"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        delivered_to,
        ["compliance-mail", "on-call"].map(String::from).into(),
        "deliveries of {fp} in audit.jsonl"
    );
    let acked = rows.iter().any(|r| {
        r["fingerprint"]
            .as_str()
            .is_some_and(|f| f.starts_with(&fp))
            && r.to_string().contains("Mina Park")
    });
    assert!(acked, "the acknowledgement is in the export");
    stop(&mut daemon);
    // Logs written to a file carry no colour codes (issue 15 item 14).
    let log = std::fs::read(tmp.path().join("run.log")).unwrap();
    assert!(
        !log.is_empty() && !log.contains(&0x1b),
        "run.log has escape codes"
    );
}

//! The analyst console in real headless Chromium: a daemon over the
//! simulator, an email whose console link is opened, and a person per role
//! (tests/browser/console.mjs drives the browser with playwright-core).
//!
//! Needs Debian's `chromium` and playwright-core in `.cache/browser`, both
//! installed by `scripts/test`, which sets KYC_SENTINEL_BROWSER. Without
//! that variable the test says loudly that it did not run.

use crate::common::*;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use kyc_sentinel::argos::model::format_argos_timestamp;
use kyc_sentinel::config::Config;
use kyc_sentinel::simulator::{SimConfig, Simulator};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";
const TOKEN: &str = "t0ken-0123456789abcdef";

fn red_flag(id: &str, risk: &str, email: &str) -> Value {
    let t = format_argos_timestamp(Utc::now());
    json!({"submission_id": id, "created_at": t, "updated_at": t, "kyc": {"result": "approved"},
           "email": email, "applicant_id": format!("app-{id}"),
           "data": {"name": "Kim Ji-woo", "date_of_birth": "1990-01-01", "nationality": "KOR"},
           "aml": {"currentstatus": "Red Flag", "risk_level_summary": risk}})
}

fn add_user(cfg: &Path, name: &str, role: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args([
            "users",
            "add",
            name,
            "--role",
            role,
            "--password-stdin",
            "--config",
        ])
        .arg(cfg)
        .stdin(Stdio::piped())
        .output_after(|stdin| writeln!(stdin, "{PASSWORD}").unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

trait OutputAfter {
    fn output_after(
        &mut self,
        feed: impl FnOnce(&mut std::process::ChildStdin),
    ) -> std::process::Output;
}

impl OutputAfter for Command {
    fn output_after(
        &mut self,
        feed: impl FnOnce(&mut std::process::ChildStdin),
    ) -> std::process::Output {
        let mut child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        feed(child.stdin.as_mut().unwrap());
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }
}

/// The text part of the first .eml in `dir` that mentions `needle`.
fn email_text_with(dir: &Path, needle: &str) -> Option<String> {
    let script = "import email,email.policy,sys\n\
        m = email.message_from_binary_file(open(sys.argv[1],'rb'), policy=email.policy.default)\n\
        print(m.get_body(preferencelist=('plain',)).get_content())\n";
    let entries = std::fs::read_dir(dir).ok()?;
    entries.filter_map(Result::ok).find_map(|e| {
        let out = Command::new("python3")
            .args(["-c", script])
            .arg(e.path())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains(needle).then_some(text)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_headless_chromium() {
    if std::env::var_os("KYC_SENTINEL_BROWSER").is_none() {
        eprintln!(
            "\n!!!!! console_in_headless_chromium DID NOT RUN: KYC_SENTINEL_BROWSER is unset. \
             Run scripts/test (it installs chromium and playwright-core and sets it). !!!!!\n"
        );
        return;
    }
    let playwright = repo().join(".cache/browser/node_modules/playwright-core");
    assert!(
        playwright.is_dir(),
        "{} missing: run scripts/test",
        playwright.display()
    );

    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig {
        submissions: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.insert(red_flag("crit", "High", "alice@example.com"));
    sim.insert(red_flag("med", "Medium", "bob@example.com"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mail = dir.path().join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    let cfg = write_config(
        dir.path(),
        &sim.base_url(),
        &format!(
            "  - name: compliance-inbox\n    type: email\n    from: kyc-sentinel <sentinel@example.com>\n    \
             to: [compliance@example.com]\n    eml_dir: {}\n\
             api:\n  token: {TOKEN}\n  public_url: {base}\n\
             console:\n  idle_timeout: 10m\n\
             lifecycle:\n  four_eyes: [critical]\n",
            mail.display()
        ),
    );
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"));
    std::fs::write(&cfg, text).unwrap();
    for (name, role) in [
        ("ana", "analyst"),
        ("lee", "lead"),
        ("kim", "lead"),
        ("vic", "viewer"),
    ] {
        add_user(&cfg, name, role);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let daemon = tokio::spawn(kyc_sentinel::daemon::run(
        Config::load(&cfg).unwrap(),
        stop.clone(),
    ));

    // Both alerts raised, and the email of `med` written with its console link.
    let http = kyc_sentinel::util::http_client().build().unwrap();
    let mut fps = (String::new(), String::new());
    let mut link = None;
    for _ in 0..200 {
        if daemon.is_finished() {
            panic!("the daemon stopped: {:?}", daemon.await);
        }
        let all: Vec<Value> = match http
            .get(format!("{base}/api/alerts"))
            .bearer_auth(TOKEN)
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => Vec::new(), // not listening yet
        };
        let fp = |id: &str| {
            all.iter()
                .find(|a| a["submission_id"] == id)
                .and_then(|a| a["fingerprint"].as_str())
                .map(str::to_owned)
        };
        if let (Some(c), Some(m)) = (fp("crit"), fp("med")) {
            let want = format!("{base}/alerts/{m}");
            if email_text_with(&mail, &want).is_some() {
                link = Some(want);
                fps = (c, m);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let link = link.expect("an email with the alert's console link");

    let shots = repo().join("docs/img");
    std::fs::create_dir_all(&shots).unwrap();
    let node = tokio::process::Command::new("node")
        .arg(repo().join("tests/browser/console.mjs"))
        .env("PLAYWRIGHT_DIR", &playwright)
        .env("BASE", &base)
        .env("MAIL_LINK", &link)
        .env("FP_CRIT", &fps.0)
        .env("FP_MED", &fps.1)
        .env("PASSWORD", PASSWORD)
        .env("SHOT_DIR", &shots)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), node)
        .await
        .expect("the browser script finished within 2 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("console browser test: OK"),
        "browser script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), daemon).await;
}

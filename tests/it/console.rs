//! The analyst console over a real daemon: sign-in, sessions, CSRF, roles
//! refused by the server, four-eyes, audited reveals, proxy sign-in, and
//! per-user API tokens.

use crate::common;

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use common::*;
use kyc_sentinel::argos::model::format_argos_timestamp;
use kyc_sentinel::config::Config;
use kyc_sentinel::simulator::{SimConfig, Simulator};
use reqwest::StatusCode;
use serde_json::{Value, json};

pub(crate) const PASSWORD: &str = "correct horse battery";
pub(crate) const TOKEN: &str = "t0ken-0123456789abcdef";

fn red_flag(id: &str, risk: &str, email: &str) -> Value {
    let t = format_argos_timestamp(Utc::now());
    json!({"submission_id": id, "created_at": t, "updated_at": t, "kyc": {"result": "approved"},
           "email": email, "applicant_id": format!("app-{id}"),
           "data": {"name": "Kim Ji-woo", "date_of_birth": "1990-01-01"},
           "aml": {"currentstatus": "Red Flag", "risk_level_summary": risk}})
}

/// A daemon with the console, over a simulator holding one critical
/// (`crit`, High risk) and one high (`med`, Medium risk) alert.
pub(crate) struct Console {
    pub(crate) base: String,
    pub(crate) cfg: PathBuf,
    pub(crate) sim: kyc_sentinel::simulator::SimHandle,
    _dir: tempfile::TempDir,
    _stop: tokio_util::sync::DropGuard,
    _daemon: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Console {
    pub(crate) async fn start(extra: &str, users: &[(&str, &str)]) -> Console {
        Console::start_edited(extra, users, |_, text| text.to_owned()).await
    }

    /// [`Console::start`] with the config text passed through `edit` (given
    /// the test's directory) before the daemon reads it.
    pub(crate) async fn start_edited(
        extra: &str,
        users: &[(&str, &str)],
        edit: impl FnOnce(&Path, &str) -> String,
    ) -> Console {
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
        let cfg = write_config(
            dir.path(),
            &sim.base_url(),
            &format!("api:\n  token: {TOKEN}\n{extra}"),
        );
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"));
        std::fs::write(&cfg, edit(dir.path(), &text)).unwrap();
        for (name, role) in users {
            add_user(&cfg, name, role);
        }
        let stop = tokio_util::sync::CancellationToken::new();
        let daemon = tokio::spawn(kyc_sentinel::daemon::run(
            Config::load(&cfg).unwrap(),
            stop.clone(),
        ));
        let c = Console {
            base: format!("http://127.0.0.1:{port}"),
            cfg,
            sim,
            _dir: dir,
            _stop: stop.drop_guard(),
            _daemon: daemon,
        };
        c.wait_for_alerts(2).await;
        c
    }

    async fn wait_for_alerts(&self, n: usize) {
        let http = client(None);
        for _ in 0..200 {
            if let Ok(r) = http
                .get(format!("{}/api/alerts", self.base))
                .bearer_auth(TOKEN)
                .send()
                .await
                && let Ok(v) = r.json::<Vec<Value>>().await
                && v.len() >= n
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the daemon raised no {n} alerts");
    }

    /// The full fingerprint of the alert on submission `id`.
    pub(crate) async fn fp(&self, id: &str) -> String {
        let all: Vec<Value> = client(None)
            .get(format!("{}/api/alerts", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        all.iter().find(|a| a["submission_id"] == id).unwrap()["fingerprint"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

fn add_user(cfg: &Path, name: &str, role: &str) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
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
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn cli(cfg: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args(args)
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `.form()` without reqwest's `form` feature.
trait FormOf {
    fn form_of(self, fields: &[(&str, &str)]) -> Self;
}

impl FormOf for reqwest::RequestBuilder {
    fn form_of(self, fields: &[(&str, &str)]) -> Self {
        let enc = |s: &str| -> String {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect()
        };
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body.join("&"))
    }
}

/// A client that follows no redirects (they carry the cookie), from `from`.
pub(crate) fn client(from: Option<IpAddr>) -> reqwest::Client {
    let mut b = kyc_sentinel::util::http_client().redirect(reqwest::redirect::Policy::none());
    if let Some(ip) = from {
        b = b.local_address(ip);
    }
    b.build().unwrap()
}

/// One signed-in person.
pub(crate) struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

async fn login_from(
    base: &str,
    from: Option<IpAddr>,
    name: &str,
    pw: &str,
) -> Result<Browser, Page> {
    let http = client(from);
    let r = http
        .post(format!("{base}/login"))
        .form_of(&[("username", name), ("password", pw)])
        .send()
        .await
        .unwrap();
    if r.status() != StatusCode::SEE_OTHER {
        return Err(page(r).await);
    }
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = set.split(';').next().unwrap().to_owned();
    Ok(Browser {
        http,
        base: base.to_owned(),
        cookie,
    })
}

pub(crate) async fn login(c: &Console, name: &str) -> Browser {
    match login_from(&c.base, None, name, PASSWORD).await {
        Ok(b) => b,
        Err(p) => panic!("{name} could not sign in: {} {}", p.status, p.body),
    }
}

async fn page(r: reqwest::Response) -> Page {
    Page {
        status: r.status(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

fn csrf_of(body: &str) -> String {
    let at = body
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    body[at..at + 64].to_owned()
}

impl Browser {
    pub(crate) async fn get(&self, path: &str) -> Page {
        page(
            self.http
                .get(format!("{}{path}", self.base))
                .header("cookie", &self.cookie)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn csrf(&self) -> String {
        csrf_of(&self.get("/").await.body)
    }

    /// POSTs a form with this session's CSRF token.
    pub(crate) async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf().await;
        let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        form.extend_from_slice(fields);
        self.post_raw(path, &form).await
    }

    async fn post_raw(&self, path: &str, form: &[(&str, &str)]) -> Page {
        page(
            self.http
                .post(format!("{}{path}", self.base))
                .header("cookie", &self.cookie)
                .form_of(form)
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

pub(crate) async fn state_of(c: &Console, fp: &str) -> Value {
    client(None)
        .get(format!("{}/api/alerts/{fp}", c.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_refusal_is_the_servers() {
    let c = Console::start(
        "",
        &[("vic", "viewer"), ("ana", "analyst"), ("lee", "lead")],
    )
    .await;
    let crit = c.fp("crit").await;
    let med = c.fp("med").await;
    let viewer = login(&c, "vic").await;
    let analyst = login(&c, "ana").await;
    let lead = login(&c, "lee").await;

    // A viewer reads (masked) but every action is refused by the server.
    let p = viewer.get(&format!("/alerts/{med}")).await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("b***@example.com") && !p.body.contains("bob@example.com"));
    assert!(
        !p.body.contains(">Acknowledge</button>"),
        "a viewer sees no action buttons"
    );
    for action in [
        "assign", "ack", "note", "resolve", "reopen", "approve", "reveal", "silence",
    ] {
        let p = viewer
            .post(
                &format!("/alerts/{med}/{action}"),
                &[
                    ("note", "n"),
                    ("outcome", "other"),
                    ("field", "email"),
                    ("reason", "r"),
                    ("expiry", "2099-01-01"),
                ],
            )
            .await;
        assert_eq!(p.status, 403, "viewer {action}: {}", p.body);
    }
    assert_eq!(viewer.post("/next", &[]).await.status, 403);
    assert_eq!(
        viewer
            .post("/bulk", &[("action", "ack"), ("fp", &med)])
            .await
            .status,
        403
    );
    assert_eq!(state_of(&c, &med).await["state"], "open");

    // An analyst acts on a high alert, not on a critical one, and never as a lead.
    assert_eq!(
        analyst
            .post(&format!("/alerts/{med}/ack"), &[])
            .await
            .status,
        303
    );
    let p = analyst
        .post(
            &format!("/alerts/{crit}/resolve"),
            &[("outcome", "false_positive"), ("note", "checked")],
        )
        .await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(p.body.contains("needs the lead role"), "{}", p.body);
    for action in ["reopen", "approve", "reject", "reveal", "silence"] {
        let p = analyst
            .post(
                &format!("/alerts/{crit}/{action}"),
                &[
                    ("field", "email"),
                    ("reason", "r"),
                    ("expiry", "2099-01-01"),
                ],
            )
            .await;
        assert_eq!(p.status, 403, "analyst {action}");
    }
    assert_eq!(analyst.post("/silences/1/expire", &[]).await.status, 403);
    // Resolving needs an outcome from the list and a note.
    let p = analyst
        .post(
            &format!("/alerts/{med}/resolve"),
            &[("outcome", "false_positive")],
        )
        .await;
    assert_eq!(p.status, 400);
    let p = analyst
        .post(
            &format!("/alerts/{med}/resolve"),
            &[
                ("outcome", "false_positive"),
                ("note", "same person, known address"),
            ],
        )
        .await;
    assert_eq!(p.status, 303);
    let st = state_of(&c, &med).await;
    assert_eq!(
        (st["state"].as_str(), st["changed_by"].as_str()),
        (Some("resolved"), Some("ana"))
    );

    // A lead resolves the critical one and reopens.
    let p = lead
        .post(
            &format!("/alerts/{crit}/resolve"),
            &[("outcome", "reported"), ("note", "filed")],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(
        lead.post(&format!("/alerts/{crit}/reopen"), &[])
            .await
            .status,
        303
    );
    assert_eq!(state_of(&c, &crit).await["state"], "open");

    // Per-user API tokens: the person is recorded, the body's `by` is not trusted.
    let vt = cli(&c.cfg, &["users", "token", "vic"]).trim().to_owned();
    let at = cli(&c.cfg, &["users", "token", "ana"]).trim().to_owned();
    let api = client(None);
    let r = api
        .post(format!("{}/api/alerts/{crit}/ack", c.base))
        .bearer_auth(&vt)
        .json(&json!({"by": "ana"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = api
        .post(format!("{}/api/alerts/{crit}/ack", c.base))
        .bearer_auth(&at)
        .json(&json!({"by": "somebody.else"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(state_of(&c, &crit).await["changed_by"], "ana");
    let r = api
        .post(format!("{}/api/alerts/{crit}/resolve", c.base))
        .bearer_auth(&at)
        .json(&json!({"outcome": "other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "an analyst token cannot resolve a critical alert"
    );
    // A disabled user's token stops working.
    cli(&c.cfg, &["users", "disable", "ana"]);
    let r = api
        .get(format!("{}/api/alerts", c.base))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        analyst.get("/").await.status == 303,
        "a disabled user's session ends"
    );
    let list = cli(&c.cfg, &["users", "list"]);
    assert!(
        list.contains("ana\tanalyst\tdisabled") && list.contains("lee\tlead\tenabled"),
        "{list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_headers_and_escaping() {
    let c = Console::start("", &[("ana", "analyst"), ("lee", "lead")]).await;
    let med = c.fp("med").await;
    let ana = login(&c, "ana").await;
    let lee = login(&c, "lee").await;
    // No token, a wrong one, another person's: refused, nothing changed.
    let path = format!("/alerts/{med}/ack");
    assert_eq!(ana.post_raw(&path, &[]).await.status, 403);
    assert_eq!(
        ana.post_raw(&path, &[("csrf", &"0".repeat(64))])
            .await
            .status,
        403
    );
    let other = lee.csrf().await;
    assert_eq!(ana.post_raw(&path, &[("csrf", &other)]).await.status, 403);
    assert_eq!(state_of(&c, &med).await["state"], "open");
    // Without a session a POST is refused and a page sends to sign-in.
    let anon = client(None);
    let r = anon.post(format!("{}{path}", c.base)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = anon
        .get(format!("{}/alerts/{med}", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        format!("/login?next=%2Falerts%2F{med}").as_str()
    );
    // Signing in from there lands on that page.
    let r = anon
        .post(format!("{}/login", c.base))
        .form_of(&[
            ("username", "ana"),
            ("password", PASSWORD),
            ("next", &format!("/alerts/{med}")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], format!("/alerts/{med}").as_str());

    let p = ana.get("/").await;
    assert_eq!(p.headers["x-frame-options"], "DENY");
    assert_eq!(p.headers["referrer-policy"], "no-referrer");
    let csp = p.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(!p.body.contains("<script>"), "no inline script");
    assert!(p.body.contains("<script src=\"/static/console.js\""));
    // A note with markup comes back escaped.
    ana.post(
        &format!("/alerts/{med}/note"),
        &[("note", "<img src=x onerror=alert(1)>")],
    )
    .await;
    let p = ana.get(&format!("/alerts/{med}")).await;
    assert!(
        p.body.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "escaped note"
    );
    assert!(!p.body.contains("<img src=x"));

    // The sign-in cookie: HttpOnly, SameSite=Strict, not Secure over http.
    let r = client(None)
        .post(format!("{}/login", c.base))
        .form_of(&[("username", "ana"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let set = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && !set.contains("Secure"),
        "{set}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_idle_and_absolute_and_logout_ends_them() {
    let c = Console::start(
        "  public_url: https://sentinel.example\nconsole:\n  idle_timeout: 1s\n  absolute_timeout: 3s\n",
        &[("ana", "analyst")],
    )
    .await;
    // Secure when the public URL is https.
    let r = client(None)
        .post(format!("{}/login", c.base))
        .form_of(&[("username", "ana"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );

    // Idle: unused for longer than 1 s, the session is gone.
    let b = login(&c, "ana").await;
    assert_eq!(b.get("/").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let p = b.get("/").await;
    assert_eq!(p.status, 303);
    assert_eq!(p.headers["location"], "/login?next=%2F");

    // Absolute: used every 400 ms, it still ends 3 s after sign-in.
    let b = login(&c, "ana").await;
    let t0 = std::time::Instant::now();
    let mut ended = None;
    while t0.elapsed() < Duration::from_secs(6) {
        if b.get("/").await.status != 200 {
            ended = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let ended = ended.expect("the session outlived its absolute timeout");
    assert!(
        ended >= Duration::from_millis(2900),
        "ended after {ended:?}: the idle timeout was reset by use"
    );

    // Logout ends the session on the server, not only in the browser.
    let b = login(&c, "ana").await;
    let p = b.post("/logout", &[]).await;
    assert_eq!(p.status, 303);
    assert!(
        p.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(b.get("/").await.status, 303, "the old cookie is dead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_limited_per_user_and_per_address() {
    let c = Console::start(
        "",
        &[
            ("alice", "analyst"),
            ("bob", "analyst"),
            ("carol", "analyst"),
        ],
    )
    .await;
    let a1: IpAddr = "127.0.0.1".parse().unwrap();
    let a2: IpAddr = "127.0.0.2".parse().unwrap();
    let a3: IpAddr = "127.0.0.3".parse().unwrap();
    for _ in 0..5 {
        let e = login_from(&c.base, Some(a1), "alice", "wrong password")
            .await
            .err()
            .unwrap();
        assert_eq!(e.status, 401);
        assert!(e.body.contains("Wrong username or password."));
    }
    // Per user: the right password, from another address, is refused now.
    let e = login_from(&c.base, Some(a2), "alice", PASSWORD)
        .await
        .err()
        .unwrap();
    assert_eq!(e.status, 429, "{}", e.body);
    // Per address: another user, from the address that failed, is refused.
    let e = login_from(&c.base, Some(a1), "bob", PASSWORD)
        .await
        .err()
        .unwrap();
    assert_eq!(e.status, 429);
    // Anyone else, from elsewhere, signs in.
    assert!(
        login_from(&c.base, Some(a3), "carol", PASSWORD)
            .await
            .is_ok()
    );
    // An unknown name fails like a wrong password.
    let e = login_from(&c.base, Some(a3), "nobody", PASSWORD)
        .await
        .err()
        .unwrap();
    assert_eq!(e.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reveal_is_audited_and_four_eyes_needs_a_second_lead() {
    let c = Console::start(
        "lifecycle:\n  four_eyes: [critical]\n",
        &[("lee", "lead"), ("kim", "lead")],
    )
    .await;
    let crit = c.fp("crit").await;
    let lee = login(&c, "lee").await;
    let kim = login(&c, "kim").await;

    let p = lee.get(&format!("/alerts/{crit}")).await;
    assert!(p.body.contains("a***@example.com") && !p.body.contains("alice@example.com"));
    let p = lee
        .post(&format!("/alerts/{crit}/reveal"), &[("field", "email")])
        .await;
    assert_eq!(p.status, 200);
    assert!(
        p.body.contains("alice@example.com"),
        "revealed in that response"
    );
    assert!(
        !lee.get(&format!("/alerts/{crit}"))
            .await
            .body
            .contains("alice@example.com"),
        "masked again after"
    );
    let audit = cli(&c.cfg, &["audit", "--alert", &crit]);
    assert!(
        audit.contains("reveal")
            && audit.contains("\"by\":\"lee\"")
            && audit.contains("\"field\":\"email\""),
        "{audit}"
    );
    assert!(
        !audit.contains("alice@example.com"),
        "the audit row names the field, not the value"
    );

    // Four-eyes: lee's resolution waits; lee cannot approve it, kim can.
    let p = lee
        .post(
            &format!("/alerts/{crit}/resolve"),
            &[
                ("outcome", "escalated_to_aml_officer"),
                ("note", "sanctions hit"),
            ],
        )
        .await;
    assert_eq!(p.status, 303);
    assert_eq!(state_of(&c, &crit).await["state"], "pending_approval");
    let p = lee.get(&format!("/alerts/{crit}")).await;
    assert!(p.body.contains("pending approval") && !p.body.contains(">Approve</button>"));
    let p = lee.post(&format!("/alerts/{crit}/approve"), &[]).await;
    assert_eq!(p.status, 409, "{}", p.body);
    assert!(p.body.contains("a different person must approve"));
    assert!(
        kim.get(&format!("/alerts/{crit}"))
            .await
            .body
            .contains(">Approve</button>")
    );
    assert_eq!(
        kim.post(&format!("/alerts/{crit}/approve"), &[])
            .await
            .status,
        303
    );
    let st = state_of(&c, &crit).await;
    assert_eq!(
        (st["state"].as_str(), st["changed_by"].as_str()),
        (Some("resolved"), Some("kim"))
    );

    // The case file says who did what.
    let case: Value =
        serde_json::from_str(&kim.get(&format!("/alerts/{crit}/case.json")).await.body).unwrap();
    let tl: Vec<(String, String)> = case["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["what"].as_str().unwrap().to_owned(),
                e["by"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for want in [
        ("fired", ""),
        ("revealed field email", "lee"),
        ("resolution proposed (pending approval)", "lee"),
        ("approved: resolved", "kim"),
    ] {
        assert!(
            tl.iter().any(|(w, b)| w == want.0 && b == want.1),
            "{want:?} in {tl:?}"
        );
    }
    assert_eq!(case["outcome"], "escalated_to_aml_officer");
    let html = kim.get(&format!("/alerts/{crit}/case.html")).await;
    assert!(html.body.contains("approved: resolved") && html.body.contains("kim"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_filters_search_and_next_unassigned() {
    let c = Console::start("", &[("ana", "analyst")]).await;
    let med = c.fp("med").await;
    let crit = c.fp("crit").await;
    let ana = login(&c, "ana").await;
    let p = ana.get("/").await;
    assert!(p.body.contains("open: <b>2</b>"), "{}", p.body);
    let p = ana.get("/?severity=critical").await;
    assert!(p.body.contains(&crit) && !p.body.contains(&med));
    // Exact search by email, shown masked.
    let p = ana.get("/?q=bob%40example.com").await;
    assert!(p.body.contains(&med) && !p.body.contains(&crit));
    assert!(p.body.contains("b***@example.com") && !p.body.contains("bob@example.com"));
    let p = ana.get("/?q=app-crit").await;
    assert!(p.body.contains(&crit) && !p.body.contains(&med));
    // Next unassigned under a filter: the critical one, assigned to me.
    let p = ana.post("/next", &[("severity", "critical")]).await;
    assert_eq!(p.status, 303);
    assert_eq!(
        p.headers["location"],
        format!("/alerts/{crit}?done=assign").as_str()
    );
    let p = ana.get("/?assignee=me").await;
    assert!(p.body.contains(&crit) && !p.body.contains(&med));
    let p = ana.get("/?assignee=nobody").await;
    assert!(p.body.contains(&med) && !p.body.contains(&crit));
    // Bulk acknowledge.
    let p = ana
        .post("/bulk", &[("action", "ack"), ("fp", &med), ("fp", &crit)])
        .await;
    assert!(
        p.body.contains("Acknowledged 2 of 2 alert(s)."),
        "{}",
        p.body
    );
    assert!(
        ana.get("/?state=acknowledged")
            .await
            .body
            .contains("acknowledged: <b>2</b>")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_sign_in_trusts_only_the_configured_proxy() {
    let c = Console::start(
        "console:\n  auth: proxy\n  trusted_proxies: [127.0.0.1]\n  groups_header: X-Forwarded-Groups\n  \
         group_roles:\n    aml-leads: lead\n    aml: analyst\n",
        &[],
    )
    .await;
    let from = |ip: &str| client(Some(ip.parse().unwrap()));
    let r = from("127.0.0.1")
        .get(format!("{}/", c.base))
        .header("X-Forwarded-User", "pat")
        .header("X-Forwarded-Groups", "staff, aml-leads")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("pat (lead)"));
    // The same header from elsewhere, or no mapped group: not signed in.
    let r = from("127.0.0.2")
        .get(format!("{}/", c.base))
        .header("X-Forwarded-User", "pat")
        .header("X-Forwarded-Groups", "aml-leads")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = from("127.0.0.1")
        .get(format!("{}/", c.base))
        .header("X-Forwarded-User", "sam")
        .header("X-Forwarded-Groups", "staff")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
}

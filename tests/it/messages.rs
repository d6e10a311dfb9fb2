//! Alerts a compliance lead can act on (issue 15 items 3-5, issue 14 items
//! 12 and 14): the facts and links every shipped template carries, chat
//! escaping, the acknowledge pages over real HTTP, fingerprint prefixes in the
//! API and the CLI.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kyc_sentinel::api::{ApiState, ack_link, alert_link, link_expiry};
use kyc_sentinel::config::TemplatesConfig;
use kyc_sentinel::notify::Notification;
use kyc_sentinel::rules::{RuleSet, ScriptLimits, load_path, load_sources};
use kyc_sentinel::store::SqliteStore;
use kyc_sentinel::templates::{Links, SHIPPED, Templates, is_digest_template, sample_params};
use serde_json::{Value, json};

const SECRET: &str = "link-secret-0123456789abcdef";
const TOKEN: &str = "api-token-0123456789abcdef";
const PUBLIC: &str = "https://sentinel.example.com";

fn repo_rules() -> RuleSet {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules");
    load_path(&dir, ScriptLimits::default()).unwrap()
}

fn templates(rules: RuleSet) -> Templates {
    Templates::load(&TemplatesConfig {
        dir: None,
        timezone: "Asia/Seoul".into(),
        dashboard_url: None,
        ..TemplatesConfig::default()
    })
    .unwrap()
    .with_links(Links {
        public_url: Some(PUBLIC.into()),
        secret: Some(SECRET.to_string().into()),
        ttl: Some(Duration::from_secs(3600)),
        dashboard_url: Some("https://dashboard.argosidentity.com/s/{submission_id}".into()),
    })
    .with_rules(Some(Arc::new(rules)))
}

fn submission(id: &str, t: &str, userid: &str) -> Value {
    json!({"submission_id": id, "userid": userid, "email": "kim.minji@example.co.kr",
           "created_at": t, "updated_at": t,
           "data": {"identityNumber": "950214-2876543", "documentNumber": "M70451234"},
           "kyc": {"result": "rejected", "commentCode": "too_many_retry"}})
}

/// A window alert of three `too_many_retry` rejections of user u-123, and a
/// red-flag AML alert whose KYC result is approved.
fn window_and_aml() -> Notification {
    let text = json!([
        {"rule": "repeated-too-many-retry", "severity": "high", "labels": {"team": "fraud"},
         "submission_id": "sub-3", "submission_ids": ["sub-1", "sub-2", "sub-3"],
         "group_key": "u-123", "count": 3, "event_time": "2026-11-26T08:30:00.000Z",
         "fingerprint": "66ae790441da0000000000000000000000000000000000000000000000000001"},
        {"rule": "aml-red-flag-high", "severity": "critical",
         "labels": {"team": "aml", "playbook": "aml-escalation"},
         "submission_id": "aml-1", "submission_ids": ["aml-1"], "group_key": null, "count": 1,
         "event_time": "2026-11-26T08:31:00.000Z",
         "fingerprint": "77bb000000000000000000000000000000000000000000000000000000000002",
         "submission": {"submission_id": "aml-1", "kyc": {"result": "approved"},
                        "updated_at": "2026-11-26-08-31-00-000",
                        "aml": {"currentstatus": "Red Flag", "risk_level_summary": "high"}}}
    ]);
    let mut n = Notification::from_alert_text("compliance-mail", &text.to_string()).unwrap();
    n.submissions.insert(
        "sub-1".into(),
        submission("sub-1", "2026-11-26-01-00-00-000", "u-123"),
    );
    n.submissions.insert(
        "sub-2".into(),
        submission("sub-2", "2026-11-26-04-00-00-000", "u-123"),
    );
    n.submissions.insert(
        "sub-3".into(),
        submission("sub-3", "2026-11-26-08-30-00-000", "u-123"),
    );
    n.group_key = Some("root.1|team=fraud".into());
    n
}

#[test]
fn every_shipped_template_carries_the_facts_and_the_links() {
    let t = templates(repo_rules());
    let n = window_and_aml();
    for (name, _) in SHIPPED
        .iter()
        .filter(|(n, _)| !is_digest_template(n) && *n != "email_subject.txt")
    {
        let out = t.render_with(name, &n, &sample_params()).unwrap();
        // HTML attributes escape `/` and `&`; a browser reads them back.
        let out = out.replace("&#x2f;", "/");
        let must = [
            // rule description, group meaning, member ids, AML facts, severity
            "three times within 24 hours",
            "userid u-123: 3 matching submissions within 24h (threshold 3)",
            "sub-1",
            "sub-2",
            "Red Flag",
            "aml-escalation",
            // signed acknowledge link and the alert's page
            "/api/alerts/66ae790441da0000000000000000000000000000000000000000000000000001/ack-link?by=compliance-mail",
            "/api/alerts/66ae790441da0000000000000000000000000000000000000000000000000001?exp=",
        ];
        for m in must {
            assert!(out.contains(m), "{name} lacks `{m}`:\n{out}");
        }
        for never in [
            "KYC result",
            "950214",
            "2876543",
            "M70451234",
            "kim.minji@",
            "root.1|",
        ] {
            assert!(!out.contains(never), "{name} shows `{never}`:\n{out}");
        }
    }
    let text = t.render("email.txt", &n).unwrap();
    for line in [
        "   Submissions:  3\n     - sub-1  at 2026-11-26 10:00:00 KST\n     - sub-2  at 2026-11-26 13:00:00 KST\n     - sub-3  at 2026-11-26 17:30:00 KST  (fired the alert)\n",
        "   AML:          risk level high, status Red Flag\n",
        "     kyc.result = rejected\n     kyc.commentCode = too_many_retry\n     userid = u-123\n",
        "   Fingerprint:  66ae790441da\n",
        "   Argos:        https://dashboard.argosidentity.com/s/sub-3\n",
    ] {
        assert!(text.contains(line), "email.txt lacks\n{line}\nin\n{text}");
    }
    // The count phrase says how many alerts of which rules, not "and 1 more".
    assert_eq!(
        t.render("email_subject.txt", &n).unwrap(),
        "[kyc-sentinel] CRITICAL: 2 alerts of 2 rules: repeated-too-many-retry (1), aml-red-flag-high (1)"
    );
    let mut same = n.clone();
    same.alerts = vec![n.alerts[0].clone(); 15];
    assert!(
        t.render("email_subject.txt", &same)
            .unwrap()
            .ends_with("HIGH: 15 alerts of repeated-too-many-retry")
    );
}

#[test]
fn a_rule_summary_is_the_subject_and_first_line_and_playbook_url_a_link() {
    let rules = load_sources(
        &[(
            "r.yaml".into(),
            "- id: too-many\n  description: d\n  severity: high\n  \
             summary: \"{{ alert.group.value }}: {{ alert.count }} too_many_retry rejections\"\n  \
             playbook_url: https://wiki.example.com/fraud/retries\n  \
             when: { field: kyc.commentCode, eq: too_many_retry }\n  \
             window: { group_by: userid, threshold: 3, within: 24h }\n"
                .into(),
        )],
        ScriptLimits::default(),
    )
    .unwrap();
    let t = templates(rules);
    let mut n = window_and_aml();
    n.alerts.truncate(1);
    n.alerts[0]["rule"] = "too-many".into();
    assert_eq!(
        t.render("email_subject.txt", &n).unwrap(),
        "[kyc-sentinel] HIGH: too-many: u-123: 3 too_many_retry rejections"
    );
    let text = t.render("email.txt", &n).unwrap();
    assert!(
        text.starts_with("HIGH too-many: u-123: 3 too_many_retry rejections\n"),
        "{text}"
    );
    assert!(
        text.contains("   Playbook:     https://wiki.example.com/fraud/retries\n"),
        "{text}"
    );
    let am: Value = serde_json::from_str(&t.render("alertmanager.json", &n).unwrap()).unwrap();
    assert_eq!(
        am[0]["annotations"]["runbook_url"],
        "https://wiki.example.com/fraud/retries"
    );
    // A summary that is no template is refused when the rules load.
    let errs = load_sources(
        &[(
            "r.yaml".into(),
            "- id: x\n  severity: low\n  summary: \"{{ alert.rule \"\n  when: { field: a, eq: 1 }\n"
                .into(),
        )],
        ScriptLimits::default(),
    )
    .unwrap_err();
    assert!(
        errs[0]
            .to_string()
            .starts_with("r.yaml:3:12: `summary` is not a valid template"),
        "{}",
        errs[0]
    );
}

#[test]
fn slack_and_teams_values_are_escaped() {
    let t = templates(repo_rules());
    let mut n = window_and_aml();
    n.alerts[0]["submission_id"] = "<!channel>".into();
    n.alerts[0]["submission_ids"] = json!(["<!channel>", "<http://evil.example|click> & *b*"]);
    let slack = t.render_with("slack.json", &n, &sample_params()).unwrap();
    let v: Value = serde_json::from_str(&slack).unwrap();
    let texts: Vec<String> = v["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| {
            [
                b["text"]["text"].as_str(),
                b["elements"][0]["text"].as_str(),
            ]
            .into_iter()
            .flatten()
            .map(str::to_owned)
        })
        .chain([v["text"].as_str().unwrap().to_owned()])
        .collect();
    let all = texts.join("\n");
    assert!(!all.contains("<!channel>"), "{all}");
    assert!(!all.contains("<http://evil"), "{all}");
    assert!(
        all.contains("`&lt;!channel&gt;`")
            && all.contains("&lt;http://evil.example|click&gt; &amp; *b*"),
        "{all}"
    );
    // Our own links stay links.
    assert!(all.contains(&format!("<{PUBLIC}/api/alerts/")), "{all}");
    let teams = t.render_with("teams.json", &n, &sample_params()).unwrap();
    assert!(
        teams.contains(r"&lt;http://evil.example|click&gt;"),
        "{teams}"
    );
    assert!(teams.contains(r"\\*b\\*"), "{teams}");
    assert!(!teams.contains("<http://evil"), "{teams}");
}

#[test]
fn generic_json_shows_no_internal_group_key() {
    let t = templates(repo_rules());
    let mut n = window_and_aml();
    n.group_key = Some(format!(
        "root.1|fingerprint={}",
        n.alerts[0]["fingerprint"].as_str().unwrap()
    ));
    let out = t.render("generic.json", &n).unwrap();
    assert!(!out.contains("root.1"), "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["group"], Value::Null);
    assert_eq!(
        v["alerts"][0]["group"]["meaning"],
        "userid u-123: 3 matching submissions within 24h (threshold 3)"
    );
    n.group_key = Some("root.1|rule=aml-red-flag-high".into());
    let v: Value = serde_json::from_str(&t.render("generic.json", &n).unwrap()).unwrap();
    assert_eq!(v["group"], json!({"rule": "aml-red-flag-high"}));
}

/// Three alerts in a store: two share the prefix `66ae7904`.
async fn store_with_alerts(dir: &std::path::Path) -> (SqliteStore, [String; 3]) {
    let store = SqliteStore::open(&dir.join("state.db")).await.unwrap();
    let fps = [
        format!("66ae7904aa{}", "1".repeat(54)),
        format!("66ae7904bb{}", "2".repeat(54)),
        format!("0123abcd00{}", "3".repeat(54)),
    ];
    for (i, fp) in fps.iter().enumerate() {
        let body = json!({"rule": "repeated-too-many-retry", "severity": "high", "labels": {},
            "submission_id": format!("sub-{i}"), "submission_ids": ["sub-a", format!("sub-{i}")],
            "group_key": "u-123", "count": 2, "event_time": "2026-11-26T08:30:00.000Z",
            "fingerprint": fp});
        sqlx::query(
            "INSERT INTO alerts (fingerprint, rule_id, rule_version, severity, submission_id, \
             group_key, event_time, fired_at, body) VALUES (?, 'repeated-too-many-retry', 'v', 'high', ?, \
             'u-123', '2026-11-26T08:30:00.000Z', ?, ?)",
        )
        .bind(fp)
        .bind(format!("sub-{i}"))
        .bind(format!("2026-11-26T08:3{i}:00.000Z"))
        .bind(body.to_string())
        .execute(store.pool())
        .await
        .unwrap();
    }
    (store, fps)
}

async fn serve(store: SqliteStore, ttl: Duration) -> String {
    let router = kyc_sentinel::api::router(ApiState {
        users: Arc::new(store.clone()),
        policy: Default::default(),
        store: Arc::new(store),
        token: Some(Arc::new(TOKEN.to_string().into())),
        link_secret: Some(Arc::new(SECRET.to_string().into())),
        link_ttl: ttl,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

fn assert_html_hardened(r: &reqwest::Response) {
    let h = r.headers();
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(
        h["content-type"].to_str().unwrap().starts_with("text/html"),
        "{h:?}"
    );
}

#[tokio::test]
async fn acknowledge_pages_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fps) = store_with_alerts(dir.path()).await;
    let ttl = Duration::from_secs(3600);
    let base = serve(store, ttl).await;
    let http = kyc_sentinel::util::http_client().build().unwrap();
    let fp = &fps[2];
    let exp = link_expiry(Utc::now(), ttl);

    // GET shows the alert (rule, severity, group, time), acknowledges nothing.
    let link = ack_link(&base, SECRET, fp, "compliance-mail", exp);
    let r = http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_html_hardened(&r);
    let page = r.text().await.unwrap();
    for m in [
        "repeated-too-many-retry",
        "HIGH",
        "u-123",
        "2026-11-26T08:30:00.000Z",
        "sub-a, sub-2",
        "<form method=\"post\">",
        "open",
    ] {
        assert!(page.contains(m), "acknowledge page lacks `{m}`:\n{page}");
    }
    // POST with a typed name: a readable page, not JSON.
    let r = http
        .post(&link)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=Kim+Ji-woo")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_html_hardened(&r);
    let done = r.text().await.unwrap();
    assert!(
        done.contains("is now <b>acknowledged</b>, by <b>Kim Ji-woo</b>"),
        "{done}"
    );
    assert!(!done.trim_start().starts_with('{'), "{done}");
    // Again: a page that says who did it.
    let r = http.post(&link).send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert_html_hardened(&r);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("already acknowledged (by Kim Ji-woo at ")
    );

    // Expiry: past, beyond link_ttl (i64::MAX, an hour too far), all refused even when signed.
    for bad in [Utc::now().timestamp() - 10, i64::MAX, exp + 3600] {
        let l = ack_link(&base, SECRET, &fps[1], "compliance-mail", bad);
        let r = http.get(&l).send().await.unwrap();
        assert_eq!(r.status(), 403, "exp {bad}");
        assert_html_hardened(&r);
        assert_eq!(http.post(&l).send().await.unwrap().status(), 403);
    }
    // A view link shows the page; it cannot acknowledge.
    let view = alert_link(&base, Some(SECRET), &fps[1], exp);
    let r = http.get(&view).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_html_hardened(&r);
    let sig = view.split("sig=").nth(1).unwrap();
    let forged = format!(
        "{base}/api/alerts/{}/ack-link?by=&exp={exp}&sig={sig}",
        fps[1]
    );
    assert_eq!(http.post(&forged).send().await.unwrap().status(), 403);
    // Without a signature or token: no page.
    assert_eq!(
        http.get(format!("{base}/api/alerts/{}", fps[1]))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn fingerprint_prefixes_in_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fps) = store_with_alerts(dir.path()).await;
    let base = serve(store, Duration::from_secs(3600)).await;
    let http = kyc_sentinel::util::http_client().build().unwrap();
    let post = |prefix: &str| {
        http.post(format!("{base}/api/alerts/{prefix}/ack"))
            .bearer_auth(TOKEN)
            .json(&json!({"by": "mlro.kim"}))
            .send()
    };
    // Ambiguous: 409 with the candidates.
    let r = post("66ae7904").await.unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    let cands: Vec<&str> = v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(cands.len(), 2);
    assert!(cands.contains(&fps[0].as_str()) && cands.contains(&fps[1].as_str()));
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("66ae7904aa11 (repeated-too-many-retry, fired ")
    );
    // Too short, or not hex: 400. Unknown: 404. Unique (any case): acknowledged.
    assert_eq!(post("66ae790").await.unwrap().status(), 400);
    assert_eq!(post("zzzzzzzz").await.unwrap().status(), 400);
    assert_eq!(post("ffffffff").await.unwrap().status(), 404);
    let r = post("66AE7904AA").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["fingerprint"], fps[0]);
    // GET by prefix with the token: the alert as JSON.
    let v: Value = http
        .get(format!("{base}/api/alerts/0123abcd"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["fingerprint"], fps[2]);
    assert_eq!(v["state"], "open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fingerprint_prefixes_in_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, fps) = store_with_alerts(dir.path()).await;
    let cfg = crate::common::write_config(dir.path(), "http://127.0.0.1:9", "");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap()
    };
    let out = run(&["ack", "66ae7904", "--by", "mlro.kim"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fingerprint prefix 66ae7904 matches 2 alerts: ")
            && err.contains("66ae7904aa11 (repeated-too-many-retry")
            && err.contains("66ae7904bb22 (repeated-too-many-retry"),
        "{err}"
    );
    let out = run(&["ack", "66ae7904bb22", "--by", "mlro.kim"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("alert 66ae7904bb22 ({}): acknowledged\n", fps[1])
    );
    let out = run(&[
        "resolve",
        "0123abcd",
        "--by",
        "mlro.kim",
        "--outcome",
        "false_positive",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["ack", "0123abc", "--by", "mlro.kim"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8 hex characters"));
}

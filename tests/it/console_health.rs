//! The console's operational side (issue 17): the Health page (last poll,
//! the Argos API budget, outbox backlog, dead letters and the last reload, a
//! refused one with its error locations and nothing of the values or rule
//! text it came from), and `console.listen`, the console's own address.

use std::time::Duration;

use crate::common::repo;
use crate::console::{Browser, Console, login};

/// A rule file that does not load: its severity is a value that must not
/// reach the page, and its condition is rule text that must not either.
const BROKEN: &str = "- id: leaky\n  description: d\n  severity: hunter2-not-a-severity\n  \
                      when:\n    field: data.rule_body_marker\n    eq: body-value-marker\n";

/// The Health page's text once `pred` holds (10 s at most).
async fn health_when(b: &Browser, pred: impl Fn(&str) -> bool) -> String {
    let mut body = String::new();
    for _ in 0..100 {
        let p = b.get("/health").await;
        assert_eq!(p.status, 200);
        body = p.body;
        if pred(&body) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the Health page never showed what was expected:\n{body}");
}

/// (used, budget, percent, left) from "N of B calls used today (P%), L left".
fn budget_of(body: &str) -> (u64, u64, u64, u64) {
    let re = regex::Regex::new(r"(\d+) of (\d+) calls used today \((\d+)%\), (\d+) left").unwrap();
    let c = re
        .captures(body)
        .unwrap_or_else(|| panic!("no budget in {body}"));
    let n = |i: usize| c[i].parse::<u64>().unwrap();
    (n(1), n(2), n(3), n(4))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_shows_the_budget_and_a_refused_reload_by_location_only() {
    let c = Console::start_edited(
        "reload:\n  check_every: 200ms\n",
        &[("vic", "viewer")],
        |dir, text| {
            // A rule folder of the test's own, to break and mend.
            let rules = dir.join("rules");
            std::fs::create_dir(&rules).unwrap();
            for f in ["aml.yaml", "kyc.yaml", "documents.yaml", "retries.yaml"] {
                std::fs::copy(repo().join("rules").join(f), rules.join(f)).unwrap();
            }
            let text = regex::Regex::new(r"(?m)^rules: .*$")
                .unwrap()
                .replace(text, "rules: rules");
            // A receiver nobody answers: its notifications become dead letters
            // after a second.
            text.replace("argos:\n", "argos:\n  daily_budget: 1000\n")
                .replace("outbox:\n", "outbox:\n  max_age: 1s\n")
                .replace(
                    "    path: alerts.jsonl\n",
                    "    path: alerts.jsonl\n  - name: gone\n    type: webhook\n    \
                     url: http://127.0.0.1:1/hook\n    template: generic.json\n    timeout: 1s\n",
                )
        },
    )
    .await;
    let vic = login(&c, "vic").await;

    // The budget: the calls the simulator answered bound what the page counts.
    let body = health_when(&vic, |b| {
        b.contains("applied") && !b.contains("none yet") && budget_of(b).0 >= 1
    })
    .await;
    let (used, daily, percent, left) = budget_of(&body);
    let answered = c.sim.requests();
    assert_eq!(daily, 1000);
    assert!(
        used >= 1 && used <= answered,
        "{used} counted, {answered} answered"
    );
    assert_eq!((left, percent), (1000 - used, used * 100 / 1000));
    assert!(body.contains("(start)"), "the daemon's start: {body}");
    // Two alerts, each to `file` (delivered) and `gone` (dead): no backlog,
    // two dead letters.
    health_when(&vic, |b| {
        b.contains("<tr><th>Dead letters</th><td>2</td></tr>")
            && b.contains("<tr><th>Outbox backlog</th><td>0</td></tr>")
    })
    .await;

    // A rule file that does not load: refused, shown by location.
    let rules = c.cfg.parent().unwrap().join("rules");
    std::fs::write(rules.join("broken.yaml"), BROKEN).unwrap();
    let body = health_when(&vic, |b| b.contains("refused")).await;
    assert!(
        body.contains("broken.yaml:3:13: invalid severity `…`"),
        "the location and the kind of problem: {body}"
    );
    for leak in ["hunter2", "rule_body_marker", "body-value-marker"] {
        assert!(!body.contains(leak), "{leak} on the page: {body}");
    }
    assert!(body.contains("stays in force"), "{body}");

    // Mended: the next reload is applied and says why it ran.
    std::fs::remove_file(rules.join("broken.yaml")).unwrap();
    let body = health_when(&vic, |b| b.contains("applied")).await;
    assert!(
        body.contains("(config, rule or template files changed)"),
        "{body}"
    );
    assert!(!body.contains("broken.yaml"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_listen_serves_the_console_and_api_apart_from_metrics() {
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The harness's address becomes console.listen; metrics move elsewhere.
    let c = Console::start_edited("", &[("ana", "analyst")], |_, text| {
        let re = regex::Regex::new(r"telemetry:\n  listen: (127\.0\.0\.1:\d+)\n").unwrap();
        let console_at = re.captures(text).unwrap()[1].to_owned();
        let text = re.replace(
            text,
            format!("telemetry:\n  listen: 127.0.0.1:{metrics_port}\n").as_str(),
        );
        format!("{text}console:\n  listen: {console_at}\n")
    })
    .await;
    // The console and the API (the harness found the alerts there) answer
    // on console.listen, metrics do not.
    let ana = login(&c, "ana").await;
    assert_eq!(ana.get("/").await.status, 200);
    let http = crate::console::client(None);
    let status = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(format!("{}/metrics", c.base)).await, 404);
    assert_eq!(status(format!("{}/healthz", c.base)).await, 404);
    // Metrics and health on telemetry.listen, without the console or the API.
    let metrics = format!("http://127.0.0.1:{metrics_port}");
    assert_eq!(status(format!("{metrics}/healthz")).await, 200);
    assert_eq!(status(format!("{metrics}/metrics")).await, 200);
    assert_eq!(status(format!("{metrics}/login")).await, 404);
    assert_eq!(status(format!("{metrics}/api/alerts")).await, 404);
}

#[test]
fn console_listen_on_the_telemetry_address_is_refused_by_name() {
    let text = "argos:\n  base_url: http://x\n  api_key: k\ntelemetry:\n  listen: 127.0.0.1:9464\n\
                console:\n  listen: 127.0.0.1:9464\n";
    let err = kyc_sentinel::compose::parse_config(std::path::Path::new("s.yaml"), text, |_| None)
        .unwrap_err();
    assert!(
        err.contains("console.listen: 127.0.0.1:9464 is telemetry.listen too"),
        "{err}"
    );
}

//! Console pages against what they must show (issue 17): an alert's
//! timeline and case file (fired, each delivery, escalation steps,
//! assignment, notes and state changes, with who and when, in time order),
//! the Rules page (description, version, alerts 24 h / 7 d, the share
//! resolved as false positive), and "Silence similar" (the alert's rule and
//! group key, a reason, an expiry at most 180 days ahead).

use std::time::Duration;

use serde_json::Value;

use crate::common::repo;
use crate::console::{Console, cli, login, state_of};

/// A critical alert escalates: step 1 at once to `chan`, step 2 a second
/// later to `head`, while nobody acknowledges it.
fn with_escalation(_: &std::path::Path, text: &str) -> String {
    let text = text.replace(
        "    path: alerts.jsonl\n",
        "    path: alerts.jsonl\n  - name: chan\n    type: file\n    path: chan.jsonl\n  \
         - name: head\n    type: file\n    path: head.jsonl\n",
    );
    format!(
        "{text}route:\n  receiver: file\n  group_by: ['...']\n  group_wait: 0s\n  routes:\n    \
         - match: {{ severity: critical }}\n      escalation: aml-escalation\n\
         escalation_policies:\n  - name: aml-escalation\n    steps:\n      \
         - {{ after: 0s, receivers: [chan] }}\n      - {{ after: 1s, receivers: [head] }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_has_deliveries_escalation_steps_and_people_in_order() {
    let c = Console::start_edited("", &[("lee", "lead")], with_escalation).await;
    let crit = c.fp("crit").await;
    let lee = login(&c, "lee").await;
    // Both steps delivered: the files are the receivers' own record.
    let dir = c.cfg.parent().unwrap().to_owned();
    for _ in 0..100 {
        if dir.join("head.jsonl").exists() && dir.join("chan.jsonl").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(dir.join("head.jsonl").exists(), "step 2 was not delivered");
    lee.post(&format!("/alerts/{crit}/assign"), &[]).await;
    lee.post(
        &format!("/alerts/{crit}/note"),
        &[("note", "calling the MLRO")],
    )
    .await;
    lee.post(&format!("/alerts/{crit}/ack"), &[]).await;

    let case: Value =
        serde_json::from_str(&lee.get(&format!("/alerts/{crit}/case.json")).await.body).unwrap();
    let tl: Vec<(String, String, String)> = case["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("").to_owned();
            (s("at"), s("what"), s("by"))
        })
        .collect();
    let find = |what: &str, by: &str| {
        tl.iter()
            .position(|(_, w, b)| w == what && b == by)
            .unwrap_or_else(|| panic!("{what:?} by {by:?} not in {tl:#?}"))
    };
    let fired = find("fired", "");
    let step1 = find("escalation step 1 (aml-escalation): to chan", "");
    let step2 = find("escalation step 2 (aml-escalation): to head", "");
    find("notification to file: delivered", "");
    find("notification to chan: delivered", "");
    let to_head = find("notification to head: delivered", "");
    let assigned = find("assigned to lee", "lee");
    let note = find("note", "lee");
    let acked = find("open → acknowledged", "lee");
    assert!(fired < step1 && step1 < step2 && step2 < to_head && to_head < assigned);
    assert!(assigned < note && note < acked);
    let times: Vec<&String> = tl.iter().map(|(at, _, _)| at).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");
    // The page shows the same story.
    let page = lee.get(&format!("/alerts/{crit}")).await.body;
    assert!(page.contains("escalation step 2 (aml-escalation): to head"));
    assert!(page.contains("calling the MLRO"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_page_counts_alerts_and_the_false_positive_share() {
    let c = Console::start("", &[("ana", "analyst"), ("lee", "lead")]).await;
    let med = c.fp("med").await;
    let crit = c.fp("crit").await;
    let ana = login(&c, "ana").await;
    let lee = login(&c, "lee").await;
    let resolve = |outcome: &'static str| [("outcome", outcome), ("note", "checked")];
    assert_eq!(
        ana.post(
            &format!("/alerts/{med}/resolve"),
            &resolve("false_positive")
        )
        .await
        .status,
        303
    );
    assert_eq!(
        lee.post(&format!("/alerts/{crit}/resolve"), &resolve("reported"))
            .await
            .status,
        303
    );
    // Description and version as the rule files give them.
    let set = kyc_sentinel::rules::load_path(
        &repo().join("rules"),
        kyc_sentinel::rules::ScriptLimits::default(),
    )
    .unwrap();
    let body = ana.get("/rules").await.body;
    let row_of = |id: &str| -> String {
        let start = body
            .find(&format!(">{id}</a>"))
            .unwrap_or_else(|| panic!("{id} not on {body}"));
        body[start..start + body[start..].find("</tr>").unwrap()].to_owned()
    };
    for (id, share) in [
        ("aml-red-flag-medium", "100% (1 of 1)"),
        ("aml-red-flag-high", "0% (0 of 1)"),
    ] {
        let rule = set.rules().iter().find(|r| r.id == id).unwrap();
        let row = row_of(id);
        let version: String = rule.version.chars().take(12).collect();
        assert!(row.contains(&format!("<code>{version}</code>")), "{row}");
        assert!(
            row.contains(&format!("<td>1</td><td>1</td><td>{share}</td>")),
            "{id}: one alert in 24 h and 7 d, {share}: {row}"
        );
        assert!(row.contains(&html_escaped(&rule.description)), "{row}");
    }
    // A rule that fired nothing: zeros and no share.
    let row = row_of("low-liveness");
    assert!(row.contains("<td>0</td><td>0</td><td>-</td>"), "{row}");
}

/// Text as minijinja's HTML escaping writes it.
fn html_escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_similar_takes_the_rule_and_group_and_caps_the_expiry() {
    let c = Console::start("", &[("lee", "lead")]).await;
    let med = c.fp("med").await;
    let lee = login(&c, "lee").await;
    let day = |n: i64| {
        (chrono::Utc::now() + chrono::Duration::days(n))
            .format("%Y-%m-%d")
            .to_string()
    };
    let path = format!("/alerts/{med}/silence");
    let p = lee
        .post(&path, &[("reason", "migration"), ("expiry", &day(181))])
        .await;
    assert_eq!(p.status, 400, "181 days: {}", p.body);
    assert!(p.body.contains("180 days"), "{}", p.body);
    let p = lee
        .post(&path, &[("reason", "migration"), ("expiry", &day(-1))])
        .await;
    assert_eq!(p.status, 400, "yesterday: {}", p.body);
    // The page's date picker offers exactly what the server accepts.
    let page = lee.get(&format!("/alerts/{med}")).await.body;
    assert!(
        page.contains(&format!("min=\"{}\" max=\"{}\"", day(0), day(180))),
        "{page}"
    );
    let p = lee.post(&path, &[("expiry", &day(30))]).await;
    assert_eq!(p.status, 400, "no reason: {}", p.body);
    let p = lee
        .post(&path, &[("reason", "migration"), ("expiry", "")])
        .await;
    assert_eq!(p.status, 400, "no expiry: {}", p.body);
    assert!(cli(&c.cfg, &["silence", "list"]).contains("no silences"));

    let p = lee
        .post(&path, &[("reason", "migration"), ("expiry", &day(180))])
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    // The silence holds the alert's own rule and group key, by lee, until that day.
    let alert = state_of(&c, &med).await;
    // (A single-submission rule has no group key: the rule alone.)
    let group = alert["group_key"]
        .as_str()
        .map(|g| format!(",group_key={g}"))
        .unwrap_or_default();
    let want = format!(
        "rule={}{group}\tuntil {}T23:59:59",
        alert["rule"].as_str().unwrap(),
        day(180)
    );
    let list = cli(&c.cfg, &["silence", "list"]);
    assert!(
        list.contains(&want) && list.contains("\tby lee\tmigration"),
        "{want} in {list}"
    );
}

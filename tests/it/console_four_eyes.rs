//! Four-eyes is one rule for every way in (issue 17): the CLI's `resolve`
//! (with `--config` and with `--store` alone) and the HTTP alert API (per-user
//! tokens and the shared `api.token`) make a critical resolution a proposal a
//! second, different, named lead approves, as the console does.

use std::path::Path;

use crate::console::{Console, TOKEN, cli, client, login, state_of};
use serde_json::{Value, json};

const FOUR_EYES: &str = "lifecycle:\n  four_eyes: [critical]\n";

/// The CLI binary with `args`: (exit code, stdout, stderr).
fn run(args: &[&str], at: (&str, &Path)) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args(args)
        .arg(at.0)
        .arg(at.1)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn resolve_args<'a>(fp: &'a str, by: &'a str) -> [&'a str; 6] {
    ["resolve", fp, "--by", by, "--outcome", "reported"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_resolve_under_four_eyes_is_a_proposal_a_second_lead_approves() {
    let c = Console::start(
        FOUR_EYES,
        &[("lee", "lead"), ("kim", "lead"), ("ana", "analyst")],
    )
    .await;
    let crit = c.fp("crit").await;
    let med = c.fp("med").await;
    let config = ("--config", c.cfg.as_path());

    // `--by` must be an enabled console user with the role to resolve it.
    let (code, _, err) = run(&resolve_args(&crit, "nobody"), config);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("four-eyes applies") && err.contains("`nobody` is not a console user"),
        "{err}"
    );
    let (code, _, err) = run(&resolve_args(&crit, "ana"), config);
    assert_eq!(code, 1);
    assert!(
        err.contains("needs the lead role and --by `ana` is analyst"),
        "{err}"
    );
    assert_eq!(state_of(&c, &crit).await["state"], "open");

    // A lead's CLI resolution waits for a second lead.
    let (code, out, err) = run(&resolve_args(&crit, "lee"), config);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pending_approval"), "{out}");
    let st = state_of(&c, &crit).await;
    assert_eq!(
        (st["state"].as_str(), st["changed_by"].as_str()),
        (Some("pending_approval"), Some("lee"))
    );
    // Not resolvable again meanwhile, from the CLI either.
    let (code, _, err) = run(&resolve_args(&crit, "kim"), config);
    assert_eq!(code, 1);
    assert!(err.contains("already pending_approval"), "{err}");
    // The proposer cannot approve it; a different lead can.
    let lee = login(&c, "lee").await;
    let kim = login(&c, "kim").await;
    let p = lee.post(&format!("/alerts/{crit}/approve"), &[]).await;
    assert_eq!(p.status, 409, "{}", p.body);
    let p = kim.post(&format!("/alerts/{crit}/approve"), &[]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let st = state_of(&c, &crit).await;
    assert_eq!(
        (st["state"].as_str(), st["changed_by"].as_str()),
        (Some("resolved"), Some("kim"))
    );
    let case: Value =
        serde_json::from_str(&kim.get(&format!("/alerts/{crit}/case.json")).await.body).unwrap();
    assert_eq!(case["outcome"], "reported", "the outcome lee proposed");

    // A severity outside four-eyes resolves at once, by any name (as before).
    let (code, out, _) = run(&resolve_args(&med, "night.shift"), config);
    assert_eq!((code, out.contains(": resolved")), (0, true), "{out}");

    // Bulk resolve in the console follows the same rule: an analyst's
    // selection skips the critical one, a lead's is a proposal.
    let ana = login(&c, "ana").await;
    assert_eq!(
        kim.post(&format!("/alerts/{crit}/reopen"), &[])
            .await
            .status,
        303
    );
    let bulk = [
        ("action", "resolve"),
        ("fp", crit.as_str()),
        ("outcome", "other"),
        ("note", "batch"),
    ];
    let p = ana.post("/bulk", &bulk).await;
    assert!(
        p.body.contains("Resolved 0 of 1 alert(s).") && p.body.contains("critical needs a lead"),
        "{}",
        p.body
    );
    let p = lee.post("/bulk", &bulk).await;
    assert!(
        p.body
            .contains("Resolved 0 of 1 alert(s). Proposed 1 for a second lead&#x27;s approval"),
        "{}",
        p.body
    );
    assert_eq!(state_of(&c, &crit).await["state"], "pending_approval");
    assert_eq!(
        kim.post(&format!("/alerts/{crit}/approve"), &[])
            .await
            .status,
        303
    );

    // `--store` alone: the policy the daemon recorded in the store applies.
    assert_eq!(
        kim.post(&format!("/alerts/{crit}/reopen"), &[])
            .await
            .status,
        303
    );
    let db = c.cfg.parent().unwrap().join("state.db");
    let store = ("--store", db.as_path());
    let (code, _, err) = run(&resolve_args(&crit, "nobody"), store);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("four-eyes applies"), "{err}");
    let (code, out, err) = run(&resolve_args(&crit, "kim"), store);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pending_approval"), "{out}");
    assert_eq!(state_of(&c, &crit).await["state"], "pending_approval");
    // The CLI has no way to approve.
    let (code, _, _) = run(&["approve", &crit, "--by", "lee"], store);
    assert_eq!(code, 2, "no `approve` command");
}

async fn api(c: &Console, token: &str, fp: &str, action: &str, body: Value) -> (u16, Value) {
    let r = client(None)
        .post(format!("{}/api/alerts/{fp}/{action}", c.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_two_named_leads_and_the_shared_token_is_neither() {
    let c = Console::start(
        FOUR_EYES,
        &[("lee", "lead"), ("kim", "lead"), ("ana", "analyst")],
    )
    .await;
    let crit = c.fp("crit").await;
    let med = c.fp("med").await;
    let lee = cli(&c.cfg, &["users", "token", "lee"]).trim().to_owned();
    let kim = cli(&c.cfg, &["users", "token", "kim"]).trim().to_owned();
    let ana = cli(&c.cfg, &["users", "token", "ana"]).trim().to_owned();
    let resolve = json!({"outcome": "false_positive", "note": "same person"});

    // The shared token names no one: it may not propose a four-eyes resolution.
    let (status, body) = api(&c, TOKEN, &crit, "resolve", resolve.clone()).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("shared api.token names no one"),
        "{body}"
    );
    assert_eq!(state_of(&c, &crit).await["state"], "open");

    // lee proposes under their own token.
    let (status, body) = api(&c, &lee, &crit, "resolve", resolve.clone()).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("pending_approval"))
    );
    // Neither the shared token, an analyst, nor the proposer may approve.
    let (status, _) = api(&c, TOKEN, &crit, "approve", json!({})).await;
    assert_eq!(status, 403);
    let (status, _) = api(&c, &ana, &crit, "approve", json!({})).await;
    assert_eq!(status, 403);
    let (status, body) = api(&c, &lee, &crit, "approve", json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("a different person must approve"),
        "{body}"
    );
    assert_eq!(state_of(&c, &crit).await["state"], "pending_approval");

    // kim rejects (back to acknowledged), lee proposes again, kim approves.
    let (status, body) = api(&c, &kim, &crit, "reject", json!({"note": "ask the MLRO"})).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("acknowledged"))
    );
    let (status, _) = api(&c, &lee, &crit, "resolve", resolve).await;
    assert_eq!(status, 200);
    let (status, body) = api(&c, &kim, &crit, "approve", json!({})).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("resolved")));
    assert_eq!(state_of(&c, &crit).await["changed_by"], "kim");
    // The audit log has the pair, each under their own name.
    let audit = cli(&c.cfg, &["audit", "--alert", &crit]);
    assert!(
        audit.contains("\"by\":\"lee\"") && audit.contains("\"to\":\"pending_approval\""),
        "{audit}"
    );
    assert!(
        audit.contains("\"by\":\"kim\"")
            && audit.contains("\"to\":\"resolved\"")
            && audit.contains("\"outcome\":\"false_positive\""),
        "{audit}"
    );

    // Outside four-eyes the shared token still resolves, recorded as `service`.
    let (status, body) = api(&c, TOKEN, &med, "resolve", json!({"outcome": "other"})).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("resolved")));
    assert_eq!(state_of(&c, &med).await["changed_by"], "service");
}

//! The store conformance suite: what every backend of the storage seam must
//! do, written against the role traits only (`Arc<dyn StateStore>`).
//!
//! [`run_all`] takes a constructor of EMPTY stores and runs every check on a
//! fresh one. SQLite runs it below; another backend calls it the same way:
//!
//! ```ignore
//! crate::store_conformance::run_all("postgres", || async { Arc::new(PgStore::open(..).await.unwrap()) as Arc<dyn StateStore> }).await;
//! ```

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use kyc_sentinel::lifecycle::{Action, AlertState, LifecycleError};
use kyc_sentinel::outbox_payload::{OutboxPayload, group_key_hash};
use kyc_sentinel::rules::state::StateChange;
use kyc_sentinel::store::digests::DigestRecord;
use kyc_sentinel::store::escalation::{StepResult, StepSend};
use kyc_sentinel::store::lifecycle::{AlertFilter, ChangeError};
use kyc_sentinel::store::lookup::LookupError;
use kyc_sentinel::store::silences::NewSilence;
use kyc_sentinel::store::{
    AlertRow, AuditRow, BatchCommit, DeliveryOutcome, GroupInsert, OutboxInsert, OutboxStats,
    Source, StateStore, VersionRow,
};
use serde_json::{Value, json};

type Check = fn(Arc<dyn StateStore>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every check, by name. Each gets a fresh, empty store.
const CHECKS: &[(&str, Check)] = &[
    ("commit_batch is idempotent", |s| {
        Box::pin(commit_batch_is_idempotent(s))
    }),
    ("prefetch and window state", |s| {
        Box::pin(prefetch_and_windows(s))
    }),
    ("meta, api budget, found first", |s| Box::pin(meta(s))),
    ("outbox claim, retry, deliver, dead-letter", |s| {
        Box::pin(outbox_lifecycle(s))
    }),
    ("groups flush once", |s| Box::pin(groups_flush_once(s))),
    ("alert lifecycle and its audit rows", |s| {
        Box::pin(lifecycle(s))
    }),
    ("digests recorded once", |s| Box::pin(digests_once(s))),
    ("escalation steps", |s| Box::pin(escalation_steps(s))),
    ("silences", |s| Box::pin(silences(s))),
    ("lookup by fingerprint prefix", |s| Box::pin(lookup(s))),
    ("audit reads", |s| Box::pin(audit_reads(s))),
    ("retention purge", |s| Box::pin(purge(s))),
    ("console: inbox, assign, note, reveal, four-eyes", |s| {
        Box::pin(console_cases(s))
    }),
    ("console: users, tokens, sessions, login failures", |s| {
        Box::pin(console_users(s))
    }),
];

/// Runs every check against stores from `make` (each call: a new, empty
/// store). `backend` names the backend in the failure message.
pub async fn run_all<F, Fut>(backend: &str, make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn StateStore>>,
{
    for (name, check) in CHECKS {
        let store = make().await;
        // A panic inside names the check and the backend.
        let r = tokio::spawn(check(store)).await;
        if let Err(e) = r {
            panic!("store conformance ({backend}): `{name}` failed: {e}");
        }
    }
}

#[tokio::test]
async fn sqlite_passes_the_store_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    run_all("sqlite", || async {
        let path = dir
            .path()
            .join(format!("s{}.db", n.fetch_add(1, Ordering::SeqCst)));
        let cfg = kyc_sentinel::config::StoreConfig {
            path,
            ..Default::default()
        };
        kyc_sentinel::store::open(&cfg).await.unwrap()
    })
    .await;
    // Every check had a store of its own.
    assert_eq!(n.load(Ordering::SeqCst), CHECKS.len());
}

/// The same checks on PostgreSQL: each on a fresh database of the shared
/// throwaway cluster (`common::pg`), opened through `store::open` with
/// `store.url` as `run` opens it.
#[tokio::test]
async fn postgres_passes_the_store_conformance_suite() {
    let Some(cluster) = crate::common::pg::shared() else {
        return;
    };
    let dbs = std::sync::Mutex::new(Vec::new());
    run_all("postgres", || async {
        let db = cluster.database("conformance");
        let cfg = kyc_sentinel::config::StoreConfig {
            url: Some(db.url()),
            ..Default::default()
        };
        dbs.lock().unwrap().push(db);
        kyc_sentinel::store::open(&cfg).await.unwrap()
    })
    .await;
    assert_eq!(dbs.lock().unwrap().len(), CHECKS.len());
}

// ---- fixtures ------------------------------------------------------------

/// A 64-hex fingerprint (lookups take hex prefixes).
fn fp(name: &str) -> String {
    kyc_sentinel::util::sha256_hex(name.as_bytes())
}

fn version(id: &str, hash: &str, result: Option<&str>, t: DateTime<Utc>) -> VersionRow {
    VersionRow {
        submission_id: id.into(),
        content_hash: hash.into(),
        kyc_result: result.map(str::to_owned),
        created_at: Some(t),
        event_time: t,
        raw: json!({"submission_id": id, "applicant_id": format!("app-{id}"), "userid": "u1"})
            .to_string(),
    }
}

fn alert(name: &str, rule: &str, submission: &str, members: &[&str], t: DateTime<Utc>) -> AlertRow {
    AlertRow {
        fingerprint: fp(name),
        rule_id: rule.into(),
        rule_version: "v1".into(),
        severity: "high".into(),
        submission_id: submission.into(),
        group_key: None,
        event_time: t,
        body: json!({"rule": rule, "fingerprint": fp(name), "submission_id": submission,
            "submission_ids": members, "labels": {"team": "aml"}})
        .to_string(),
    }
}

fn decision(submission: &str, fingerprint: Option<String>) -> AuditRow {
    AuditRow {
        kind: "decision",
        submission_id: Some(submission.into()),
        version_hash: Some("h".into()),
        rule_id: Some("r".into()),
        rule_version: Some("v1".into()),
        fingerprint,
        detail: json!({"outcome": "fired"}),
    }
}

/// One submission, one alert, one outbox row: the common start.
fn one_alert_batch(name: &str, t: DateTime<Utc>) -> BatchCommit {
    let sub = format!("sub-{name}");
    BatchCommit {
        versions: vec![version(&sub, "h1", Some("approved"), t)],
        alerts: vec![alert(name, "r", &sub, &[], t)],
        outbox: vec![OutboxInsert {
            fingerprint: fp(name),
            receiver: "file".into(),
            payload: OutboxPayload::group(None, &[json!({"fingerprint": fp(name)})]),
        }],
        audit: vec![decision(&sub, Some(fp(name)))],
        ..Default::default()
    }
}

fn group_insert(receiver: &str, name: &str, escalation: Option<&str>) -> GroupInsert {
    GroupInsert {
        receiver: receiver.into(),
        group_key: "route|team=aml".into(),
        fingerprint: fp(name),
        group_wait: StdDuration::ZERO,
        repeat_interval: StdDuration::from_secs(3600),
        escalation: escalation.map(str::to_owned),
    }
}

fn soon() -> DateTime<Utc> {
    Utc::now() + Duration::seconds(2)
}

// ---- checks --------------------------------------------------------------

async fn commit_batch_is_idempotent(s: Arc<dyn StateStore>) {
    let t = Utc::now() - Duration::hours(1);
    let mut b = one_alert_batch("a", t);
    b.meta = vec![("k".into(), "v".into())];
    b.versions.push(version("sub-p", "hp", Some("Pending"), t));
    s.commit_batch(b).await.unwrap();
    // The same decision again (a redo after a crash): nothing twice.
    s.commit_batch(one_alert_batch("a", t)).await.unwrap();
    let seen = s.seen_versions(&["sub-a", "sub-p", "nope"]).await.unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen["sub-a"].content_hash, "h1");
    assert_eq!(seen["sub-a"].kyc_result.as_deref(), Some("approved"));
    assert_eq!(s.get_meta("k").await.unwrap().as_deref(), Some("v"));
    assert_eq!(s.outbox_stats().await.unwrap().pending, 1, "one outbox row");
    assert_eq!(s.summary().await.unwrap().alerts(), 1, "one alert");
    assert_eq!(s.summary().await.unwrap().submissions, 2);
    // Undecided (`Pending`, any case) inside the horizon: fetched again.
    let undecided = s.undecided_since(t - Duration::days(1)).await.unwrap();
    assert_eq!(
        undecided.iter().map(|u| u.0.as_str()).collect::<Vec<_>>(),
        ["sub-p"]
    );
    assert!(
        s.undecided_since(Utc::now()).await.unwrap().is_empty(),
        "created before the horizon"
    );
    // A new version replaces the last one.
    s.commit_batch(BatchCommit {
        versions: vec![version("sub-p", "hp2", Some("rejected"), t)],
        ..Default::default()
    })
    .await
    .unwrap();
    let seen = s.seen_versions(&["sub-p"]).await.unwrap();
    assert_eq!(seen["sub-p"].content_hash, "hp2");
    assert!(
        s.undecided_since(t - Duration::days(1))
            .await
            .unwrap()
            .is_empty()
    );
    let raw = s.submissions_raw(&["sub-a", "nope"]).await.unwrap();
    assert_eq!(raw.len(), 1);
    assert_eq!(raw["sub-a"]["submission_id"], "sub-a");
}

async fn prefetch_and_windows(s: Arc<dyn StateStore>) {
    let t0 = Utc::now() - Duration::hours(2);
    let t1 = t0 + Duration::minutes(10);
    s.commit_batch(BatchCommit {
        state: vec![
            StateChange::Result {
                submission_id: "s1".into(),
                kyc_result: Some("rejected".into()),
            },
            StateChange::Fired {
                rule_id: "r".into(),
                submission_id: "s1".into(),
            },
            StateChange::Applicant {
                applicant_id: "app".into(),
                submission_id: "s1".into(),
                email: Some("a@x".into()),
                event_time: t0,
            },
            StateChange::Applicant {
                applicant_id: "app".into(),
                submission_id: "s2".into(),
                email: None,
                event_time: t1,
            },
            StateChange::WindowAdd {
                rule_id: "w".into(),
                key: "k".into(),
                submission_id: "s1".into(),
                event_time: t0,
            },
            StateChange::WindowAdd {
                rule_id: "w".into(),
                key: "k".into(),
                submission_id: "s2".into(),
                event_time: t1,
            },
            // Consumes the adds before it, in journal order.
            StateChange::WindowConsume {
                rule_id: "w".into(),
                key: "k".into(),
                submission_ids: vec!["s1".into()],
            },
            StateChange::Throttle {
                rule_id: "r".into(),
                key: "tk".into(),
                until: Utc::now() + Duration::hours(1),
            },
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let pre = s.prefetch(&["s1", "s9"], &["app", "none"]).await.unwrap();
    assert_eq!(pre.results["s1"].as_deref(), Some("rejected"));
    assert!(!pre.results.contains_key("s9"));
    assert_eq!(pre.fired, [("r".to_string(), "s1".to_string())]);
    let mut members = pre.applicants["app"].clone();
    members.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        members,
        [
            ("s1".to_string(), Some("a@x".to_string()), t0_ms(t0)),
            ("s2".to_string(), None, t0_ms(t1)),
        ]
    );
    assert!(!pre.applicants.contains_key("none"));

    let (windows, throttles) = s.open_windows(t0 - Duration::seconds(1)).await.unwrap();
    let mut w: Vec<(String, bool)> = windows
        .iter()
        .map(|m| (m.submission_id.clone(), m.consumed))
        .collect();
    w.sort();
    assert_eq!(w, [("s1".to_string(), true), ("s2".to_string(), false)]);
    assert_eq!(throttles.len(), 1);
    assert_eq!(
        (throttles[0].0.as_str(), throttles[0].1.as_str()),
        ("r", "tk")
    );
    // Only members after `since`.
    let (later, _) = s.open_windows(t0).await.unwrap();
    assert_eq!(later.len(), 1);
    let got = s
        .window_memberships(&[("w", "k", "s2"), ("w", "k", "s7")])
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].submission_id, "s2");
    assert_eq!(got[0].event_time, t0_ms(t1));
    assert_eq!(s.latest_window_event().await.unwrap(), Some(t0_ms(t1)));
}

/// Times come back at the store's precision (milliseconds).
fn t0_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    kyc_sentinel::store::parse_time("test", &kyc_sentinel::store::fmt_time(t)).unwrap()
}

async fn meta(s: Arc<dyn StateStore>) {
    assert_eq!(s.get_meta("x").await.unwrap(), None);
    s.set_meta("x", "1").await.unwrap();
    s.set_meta("x", "2").await.unwrap();
    assert_eq!(s.get_meta("x").await.unwrap().as_deref(), Some("2"));
    assert_eq!(s.api_calls_on("2026-11-26").await.unwrap(), 0);
    assert_eq!(s.add_api_calls("2026-11-26", 5).await.unwrap(), 5);
    assert_eq!(s.add_api_calls("2026-11-26", 7).await.unwrap(), 12);
    assert_eq!(s.api_calls_on("2026-11-26").await.unwrap(), 12);
    let t = Utc::now();
    for (src, id) in [
        (Source::Poll, "a"),
        (Source::Webhook, "b"),
        (Source::Poll, "c"),
    ] {
        s.commit_batch(BatchCommit {
            source: src,
            versions: vec![version(id, "h", None, t)],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let found = s.found_first().await.unwrap();
    assert_eq!(found["poll"], 2);
    assert_eq!(found["webhook"], 1);
}

async fn outbox_lifecycle(s: Arc<dyn StateStore>) {
    let t = Utc::now() - Duration::hours(1);
    let mut b = one_alert_batch("o", t);
    let same = b.outbox[0].payload.clone();
    b.outbox.push(OutboxInsert {
        fingerprint: fp("o"),
        receiver: "mail".into(),
        payload: same,
    });
    s.commit_batch(b).await.unwrap();
    let now = soon();
    let due = s.due_outbox(now, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    assert!(due[0].id < due[1].id, "oldest first");
    assert_eq!(due[0].attempts, 0);
    let mut receivers = s.due_receivers(now).await.unwrap();
    receivers.sort();
    assert_eq!(receivers, ["file", "mail"]);
    let file = s.due_outbox_for("file", now, 10).await.unwrap();
    assert_eq!(file.len(), 1);
    assert_eq!(file[0].fingerprint, fp("o"));
    assert_eq!(s.due_outbox(now, 1).await.unwrap().len(), 1, "limit");
    assert_eq!(s.pending_outbox_of(&fp("o")).await.unwrap().len(), 2);

    // A retry is not due before its time, then comes back with its attempt counted.
    let later = Utc::now() + Duration::minutes(5);
    s.record_delivery(
        &file[0],
        &DeliveryOutcome::Retry {
            error: "HTTP 503".into(),
            next_attempt_at: later,
        },
    )
    .await
    .unwrap();
    assert!(s.due_outbox_for("file", now, 10).await.unwrap().is_empty());
    let again = s.due_outbox_for("file", later, 10).await.unwrap();
    assert_eq!(again[0].attempts, 1);
    let mail = s.due_outbox_for("mail", now, 10).await.unwrap();
    s.record_deliveries(&[
        (
            again[0].clone(),
            DeliveryOutcome::Dead {
                error: "HTTP 400".into(),
            },
        ),
        (mail[0].clone(), DeliveryOutcome::Delivered),
    ])
    .await
    .unwrap();
    assert_eq!(
        s.outbox_stats().await.unwrap(),
        OutboxStats {
            pending: 0,
            delivered: 1,
            dead: 1
        }
    );
    assert!(s.due_outbox(later, 10).await.unwrap().is_empty());
    assert!(s.pending_outbox_of(&fp("o")).await.unwrap().is_empty());
    // Every attempt is audited for each alert its notification carried, and
    // the dead letter too; the alert record shows both rows.
    let audit = s.audit_for_alert(&fp("o")).await.unwrap();
    let kinds: Vec<&str> = audit.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "decision",
            "delivery",
            "dead_letter",
            "delivery",
            "delivery"
        ]
    );
    let outcomes: Vec<(&str, &str)> = audit
        .iter()
        .filter(|a| a.kind == "delivery")
        .map(|a| {
            (
                a.detail["receiver"].as_str().unwrap(),
                a.detail["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("file", "failed, will retry"),
            ("file", "failed, given up (dead letter)"),
            ("mail", "delivered"),
        ]
    );
    assert_eq!(audit[1].detail["idempotency_key"], fp("o").as_str());
    let dead = s
        .dead_letters_between(Utc::now() - Duration::hours(1), soon())
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].receiver.as_str(), dead[0].error.as_str()),
        ("file", "HTTP 400")
    );
    let rec = s.alert(&fp("o")).await.unwrap().unwrap();
    let mut n = rec.notifications.clone();
    n.sort();
    assert_eq!(
        n,
        [
            (
                "file".to_string(),
                "dead".to_string(),
                2,
                Some("HTTP 400".to_string())
            ),
            ("mail".to_string(), "delivered".to_string(), 1, None),
        ]
    );
    assert_eq!(rec.attempts.len(), 3);
}

async fn groups_flush_once(s: Arc<dyn StateStore>) {
    let t = Utc::now() - Duration::hours(1);
    let mut b = BatchCommit::default();
    for name in ["g1", "g2"] {
        let sub = format!("sub-{name}");
        b.versions.push(version(&sub, "h", None, t));
        b.alerts.push(alert(name, "r", &sub, &[], t));
        b.notify.push(group_insert("slack", name, None));
    }
    s.commit_batch(b).await.unwrap();
    assert!(
        s.due_outbox(soon(), 10).await.unwrap().is_empty(),
        "waiting in the group"
    );
    assert_eq!(s.flush_groups(soon()).await.unwrap(), 1, "one group");
    let due = s.due_outbox(soon(), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    let (a, b) = (fp("g1"), fp("g2"));
    assert_eq!(due[0].fingerprint, group_key_hash(&[&a, &b]));
    assert_eq!(due[0].receiver, "slack");
    match OutboxPayload::parse("k", &due[0].payload).unwrap() {
        OutboxPayload::Alerts {
            group_key, alerts, ..
        } => {
            assert_eq!(group_key.as_deref(), Some("route|team=aml"));
            let mut got: Vec<&str> = alerts
                .iter()
                .map(|a| a["fingerprint"].as_str().unwrap())
                .collect();
            got.sort();
            let mut want = [a.as_str(), b.as_str()];
            want.sort();
            assert_eq!(got, want);
        }
        other => panic!("not an alert payload: {other:?}"),
    }
    // Flushed once; the same alerts routed again (a redo) do not come back.
    assert_eq!(s.flush_groups(soon()).await.unwrap(), 0);
    let mut redo = BatchCommit::default();
    redo.notify.push(group_insert("slack", "g1", None));
    s.commit_batch(redo).await.unwrap();
    assert_eq!(
        s.flush_groups(soon() + Duration::hours(2)).await.unwrap(),
        0
    );
    assert_eq!(s.outbox_stats().await.unwrap().pending, 1);
}

async fn lifecycle(s: Arc<dyn StateStore>) {
    let t = Utc::now() - Duration::hours(1);
    s.commit_batch(one_alert_batch("l", t)).await.unwrap();
    let mut hist = one_alert_batch("h", t);
    hist.historical = true;
    s.commit_batch(hist).await.unwrap();
    let f = fp("l");
    let ack = Action::Ack {
        note: Some("looking".into()),
    };
    let resolve = Action::Resolve {
        outcome: "false_positive".into(),
        note: None,
    };
    assert!(matches!(
        s.change_alert(&f, " ", ack.clone()).await,
        Err(ChangeError::Refused(LifecycleError::NoActor))
    ));
    assert!(matches!(
        s.change_alert(&fp("nope"), "ana", ack.clone()).await,
        Err(ChangeError::Refused(LifecycleError::NoSuchAlert(_)))
    ));
    assert_eq!(
        s.change_alert(&f, "ana", ack.clone()).await.unwrap(),
        AlertState::Acknowledged
    );
    match s.change_alert(&f, "bob", ack.clone()).await {
        Err(ChangeError::Refused(LifecycleError::Already { state, by, .. })) => {
            assert_eq!((state, by.as_str()), ("acknowledged", "ana"))
        }
        other => panic!("a second ack: {other:?}"),
    }
    assert_eq!(
        s.change_alert(&f, "bob", resolve.clone()).await.unwrap(),
        AlertState::Resolved
    );
    assert!(matches!(
        s.change_alert(&f, "bob", resolve).await,
        Err(ChangeError::Refused(LifecycleError::Already { .. }))
    ));
    let changes: Vec<Value> = s
        .audit_for_alert(&f)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == "state_change")
        .map(|a| a.detail)
        .collect();
    assert_eq!(changes.len(), 2, "refusals write nothing");
    assert_eq!(
        changes[0],
        json!({"by": "ana", "from": "open", "to": "acknowledged", "note": "looking", "outcome": null})
    );
    assert_eq!(changes[1]["outcome"], "false_positive");
    assert_eq!(changes[1]["from"], "acknowledged");

    let all = s.list_alerts(&AlertFilter::default()).await.unwrap();
    assert_eq!(all.len(), 2);
    let resolved = s
        .list_alerts(&AlertFilter {
            state: Some(AlertState::Resolved),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].fingerprint, f);
    assert_eq!(resolved[0].changed_by.as_deref(), Some("bob"));
    assert_eq!(resolved[0].outcome.as_deref(), Some("false_positive"));
    let historical = s
        .list_alerts(&AlertFilter {
            state: Some(AlertState::Historical),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(historical.len(), 1);
    assert_eq!(historical[0].fingerprint, fp("h"));
    // History may be acknowledged in a review.
    assert_eq!(
        s.change_alert(&fp("h"), "ana", ack).await.unwrap(),
        AlertState::Acknowledged
    );
    let by_rule = s
        .list_alerts(&AlertFilter {
            rule: Some("other".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(by_rule.is_empty());
}

async fn digests_once(s: Arc<dyn StateStore>) {
    let t = Utc::now() - Duration::hours(1);
    s.commit_batch(one_alert_batch("d1", t)).await.unwrap();
    s.commit_batch(one_alert_batch("d2", t)).await.unwrap();
    let mut hist = one_alert_batch("d3", t);
    hist.historical = true;
    s.commit_batch(hist).await.unwrap();
    let mut errs = BatchCommit::default();
    errs.audit.push(AuditRow {
        kind: "rule_error",
        submission_id: Some("sub-d1".into()),
        version_hash: None,
        rule_id: Some("r".into()),
        rule_version: None,
        fingerprint: None,
        detail: json!({"error": "bad field"}),
    });
    s.commit_batch(errs).await.unwrap();
    s.change_alert(&fp("d2"), "ana", Action::Ack { note: None })
        .await
        .unwrap();

    let (from, to) = (Utc::now() - Duration::hours(1), soon());
    let fired = s.alerts_fired_between(from, to).await.unwrap();
    let mut names: Vec<&str> = fired.iter().map(|a| a.fingerprint.as_str()).collect();
    names.sort();
    let mut want = [fp("d1"), fp("d2")];
    want.sort();
    assert_eq!(names, want, "not the historical one");
    let d1 = fired.iter().find(|a| a.fingerprint == fp("d1")).unwrap();
    assert_eq!(d1.labels["team"], "aml");
    assert_eq!(d1.applicant_id.as_deref(), Some("app-sub-d1"));
    assert_eq!(d1.userid.as_deref(), Some("u1"));
    assert_eq!(d1.state, "open");
    let open = s.open_alerts_before(to).await.unwrap();
    assert!(
        open.iter().all(|a| a.fingerprint != fp("d2")),
        "acknowledged"
    );
    assert!(open.iter().any(|a| a.fingerprint == fp("d1")));
    let errors = s.rule_errors_between(from, to).await.unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].rule.as_str(), errors[0].error.as_str()),
        ("r", "bad field")
    );

    // A new digest starts from now; the anchor stays until advanced.
    let now = Utc::now();
    let anchor = s.digest_anchor("daily", "0 9 * * *", now).await.unwrap();
    assert_eq!(anchor, now);
    let again = s
        .digest_anchor("daily", "0 9 * * *", now + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(again, t0_ms(now));
    let rec = DigestRecord {
        name: "daily".into(),
        scheduled_at: t0_ms(now + Duration::hours(2)),
        period_start: t0_ms(now - Duration::hours(22)),
        period_end: t0_ms(now + Duration::hours(2)),
        slots: 1,
        trigger: "schedule".into(),
        content_hash: "c".into(),
    };
    let rows = [OutboxInsert {
        fingerprint: "digest-key".into(),
        receiver: "mail".into(),
        payload: "{}".into(),
    }];
    assert!(s.record_digest(&rec, &rows, true).await.unwrap());
    assert!(
        !s.record_digest(&rec, &rows, true).await.unwrap(),
        "the same digest is recorded once"
    );
    assert_eq!(s.pending_outbox_of("digest-key").await.unwrap().len(), 1);
    assert_eq!(
        s.digests_recorded("daily").await.unwrap(),
        std::slice::from_ref(&rec)
    );
    assert_eq!(
        s.digest_anchor("daily", "0 9 * * *", now).await.unwrap(),
        rec.scheduled_at,
        "advanced with the record"
    );
    let slot = rec.scheduled_at + Duration::days(1);
    s.advance_digest("daily", slot).await.unwrap();
    s.advance_digest("daily", rec.scheduled_at).await.unwrap();
    assert_eq!(
        s.digest_anchor("daily", "0 9 * * *", now).await.unwrap(),
        slot,
        "never moved back"
    );
    // A changed schedule starts again from now.
    let later = t0_ms(now + Duration::days(3));
    assert_eq!(
        s.digest_anchor("daily", "0 8 * * *", later).await.unwrap(),
        later
    );
}

async fn escalation_steps(s: Arc<dyn StateStore>) {
    let t = Utc::now() - Duration::hours(1);
    let batch = || {
        let mut b = BatchCommit::default();
        for name in ["e1", "e2"] {
            let sub = format!("sub-{name}");
            b.versions.push(version(&sub, "h", None, t));
            b.alerts.push(alert(name, "r", &sub, &[], t));
            b.notify.push(group_insert("slack", name, Some("oncall")));
        }
        b
    };
    s.commit_batch(batch()).await.unwrap();
    s.commit_batch(batch()).await.unwrap();
    let active = s.active_escalations().await.unwrap();
    assert_eq!(active.len(), 2, "one per alert, even after a redo");
    assert!(
        active
            .iter()
            .all(|e| e.next_step == 0 && e.policy == "oncall")
    );
    assert_eq!(active[0].alert_state, "open");

    let f = fp("e1");
    let receivers = vec!["pager".to_string(), "boss".to_string()];
    let info = json!({"policy": "oncall", "step": 1});
    let step = |index: usize, key: &'static str| StepSend {
        fingerprint: "",
        policy: "oncall",
        index,
        last: index == 1,
        receivers: &[],
        key,
        due_at: t,
        late: false,
        info: info.clone(),
        now: Utc::now(),
    };
    let s0 = StepSend {
        fingerprint: &f,
        receivers: &receivers,
        ..step(0, "step-0")
    };
    assert_eq!(s.send_escalation_step(&s0).await.unwrap(), StepResult::Sent);
    assert_eq!(
        s.send_escalation_step(&s0).await.unwrap(),
        StepResult::Gone,
        "a step is sent once"
    );
    let rows = s.pending_outbox_of("step-0").await.unwrap();
    assert_eq!(rows.len(), 2);
    match OutboxPayload::parse("step-0", &rows[0].payload).unwrap() {
        OutboxPayload::Alerts {
            alerts, escalation, ..
        } => {
            assert_eq!(alerts.len(), 1);
            assert_eq!(alerts[0]["fingerprint"], f.as_str());
            assert_eq!(escalation, Some(info.clone()));
        }
        other => panic!("not an alert payload: {other:?}"),
    }
    let last = s.last_escalation_steps(&[&f, &fp("e2")]).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[&f].step, 1);
    assert_eq!(last[&f].receivers, receivers);
    let active = s.active_escalations().await.unwrap();
    let e1 = active.iter().find(|e| e.fingerprint == f).unwrap();
    assert_eq!(e1.next_step, 1);

    // Acknowledged before the next step: it stops instead.
    s.change_alert(&f, "ana", Action::Ack { note: None })
        .await
        .unwrap();
    let s1 = StepSend {
        fingerprint: &f,
        receivers: &receivers,
        ..step(1, "step-1")
    };
    assert_eq!(
        s.send_escalation_step(&s1).await.unwrap(),
        StepResult::Stopped("acknowledged".into())
    );
    assert!(s.pending_outbox_of("step-1").await.unwrap().is_empty());
    // The other one ends by hand, once.
    let e2 = fp("e2");
    assert!(
        s.end_escalation(&e2, "oncall", "policy_removed", Utc::now())
            .await
            .unwrap()
    );
    assert!(
        !s.end_escalation(&e2, "oncall", "policy_removed", Utc::now())
            .await
            .unwrap()
    );
    assert!(s.active_escalations().await.unwrap().is_empty());
    let kinds: Vec<String> = s
        .audit_for_alert(&f)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.kind)
        .collect();
    assert_eq!(
        kinds,
        ["escalation_step", "state_change", "escalation_stopped"]
    );
}

async fn silences(s: Arc<dyn StateStore>) {
    let now = Utc::now();
    let new = |rule: &str, ends: DateTime<Utc>| NewSilence {
        rule: Some(rule.into()),
        matchers: [("team".to_string(), "aml".to_string())].into(),
        reason: "known".into(),
        author: "ana".into(),
        starts_at: now - Duration::minutes(1),
        ends_at: ends,
    };
    let a = s
        .add_silence(&new("r1", now + Duration::hours(1)))
        .await
        .unwrap();
    let b = s
        .add_silence(&new("r2", now + Duration::hours(2)))
        .await
        .unwrap();
    assert_ne!(a, b);
    let list = s.silences(now, false).await.unwrap();
    assert_eq!(
        list.iter().map(|x| x.id).collect::<Vec<_>>(),
        [b, a],
        "newest first"
    );
    assert_eq!(list[1].rule.as_deref(), Some("r1"));
    assert_eq!(list[1].matchers["team"], "aml");
    assert_eq!(list[1].ends_at, t0_ms(now + Duration::hours(1)));
    assert!(s.expire_silence(a, now).await.unwrap());
    assert!(!s.expire_silence(a + b + 100, now).await.unwrap());
    let later = now + Duration::seconds(1);
    assert_eq!(
        s.silences(later, false)
            .await
            .unwrap()
            .iter()
            .map(|x| x.id)
            .collect::<Vec<_>>(),
        [b]
    );
    assert_eq!(s.silences(later, true).await.unwrap().len(), 2);
}

async fn lookup(s: Arc<dyn StateStore>) {
    let t = Utc::now() - Duration::hours(1);
    s.commit_batch(one_alert_batch("k", t)).await.unwrap();
    let f = fp("k");
    assert_eq!(
        s.resolve_fingerprint(&f[..12]).await.unwrap(),
        Ok(f.clone())
    );
    assert_eq!(
        s.resolve_fingerprint(&f[..10].to_ascii_uppercase())
            .await
            .unwrap(),
        Ok(f.clone()),
        "case ignored"
    );
    assert!(matches!(
        s.resolve_fingerprint("abc").await.unwrap(),
        Err(LookupError::BadPrefix(_))
    ));
    assert!(matches!(
        s.resolve_fingerprint("%%%%%%%%").await.unwrap(),
        Err(LookupError::BadPrefix(_))
    ));
    let other = if f.starts_with('0') {
        "ffffffff"
    } else {
        "00000000"
    };
    assert!(matches!(
        s.resolve_fingerprint(other).await.unwrap(),
        Err(LookupError::NoSuchAlert(_))
    ));
    // Two alerts sharing a prefix: ambiguous, with both named.
    let mut b = BatchCommit::default();
    for (i, suffix) in ["1", "2"].iter().enumerate() {
        let mut a = alert("x", "r", "sub-x", &[], t + Duration::seconds(i as i64));
        a.fingerprint = format!("abcdef01{suffix}{}", &f[9..]);
        b.alerts.push(a);
    }
    s.commit_batch(b).await.unwrap();
    match s.resolve_fingerprint("abcdef01").await.unwrap() {
        Err(LookupError::Ambiguous { candidates, .. }) => assert_eq!(candidates.len(), 2),
        other => panic!("expected ambiguity: {other:?}"),
    }
    let view = s.alert_view(&f).await.unwrap().unwrap();
    assert_eq!(
        (view.rule.as_str(), view.submission_id.as_str()),
        ("r", "sub-k")
    );
    assert_eq!(view.state, AlertState::Open);
    assert_eq!(view.alert["labels"]["team"], "aml");
    assert!(s.alert_view(&fp("none")).await.unwrap().is_none());
}

async fn audit_reads(s: Arc<dyn StateStore>) {
    let t = Utc::now() - Duration::hours(1);
    let before = Utc::now() - Duration::seconds(1);
    let mut b = BatchCommit::default();
    b.versions.push(version("m1", "h", None, t));
    b.versions.push(version("m2", "h", None, t));
    // A window alert fired by m2 whose members are m1 and m2.
    b.alerts.push(alert("win", "w", "m2", &["m1", "m2"], t));
    b.state = vec![
        StateChange::WindowAdd {
            rule_id: "w".into(),
            key: "k".into(),
            submission_id: "m1".into(),
            event_time: t,
        },
        StateChange::WindowAdd {
            rule_id: "w".into(),
            key: "k".into(),
            submission_id: "m2".into(),
            event_time: t,
        },
        StateChange::WindowConsume {
            rule_id: "w".into(),
            key: "k".into(),
            submission_ids: vec!["m1".into(), "m2".into()],
        },
    ];
    b.alerts[0].group_key = Some("k".into());
    b.audit = vec![decision("m1", None), decision("m2", Some(fp("win")))];
    s.commit_batch(b).await.unwrap();

    assert_eq!(s.audit_for_submission("m1").await.unwrap().len(), 1);
    assert_eq!(s.audit_for_alert(&fp("win")).await.unwrap().len(), 1);
    let between = s.audit_between(before, soon()).await.unwrap();
    assert_eq!(between.len(), 2);
    assert!(between[0].id < between[1].id);
    assert!(
        s.audit_between(soon(), soon() + Duration::hours(1))
            .await
            .unwrap()
            .is_empty()
    );
    let (hash, result, raw) = s.submission("m1").await.unwrap().unwrap();
    assert_eq!((hash.as_str(), result), ("h", None));
    assert!(raw.unwrap().contains("m1"));
    assert!(s.submission("none").await.unwrap().is_none());
    assert_eq!(
        s.alerts_of_submission("m1").await.unwrap(),
        [fp("win")],
        "as a member"
    );
    assert_eq!(
        s.alerts_of_submission("m2").await.unwrap(),
        [fp("win")],
        "firing"
    );
    let m = s.memberships_of("m1").await.unwrap();
    assert_eq!(m.len(), 1);
    assert!(m[0].consumed);
    assert_eq!(
        m[0].consumed_by,
        Some((fp("win"), vec!["m1".to_string(), "m2".to_string()]))
    );
    assert!(m[0].open_members.is_empty());
    let sum = s.summary().await.unwrap();
    assert_eq!((sum.submissions, sum.alerts()), (2, 1));
    assert_eq!(
        sum.alerts_by_rule,
        [("w".to_string(), "high".to_string(), 1)]
    );
}

async fn purge(s: Arc<dyn StateStore>) {
    let t = Utc::now() - Duration::hours(1);
    s.commit_batch(one_alert_batch("p", t)).await.unwrap();
    assert_eq!(
        s.purge_raw_older_than(Utc::now() - Duration::hours(1))
            .await
            .unwrap(),
        0,
        "too recent"
    );
    assert_eq!(s.purge_raw_older_than(soon()).await.unwrap(), 1);
    assert_eq!(s.purge_raw_older_than(soon()).await.unwrap(), 0, "once");
    assert_eq!(s.submission("sub-p").await.unwrap().unwrap().2, None);
    assert!(s.submissions_raw(&["sub-p"]).await.unwrap().is_empty());
    // Decisions, alerts and the audit log stay.
    assert!(s.alert(&fp("p")).await.unwrap().is_some());
    assert_eq!(s.audit_for_submission("sub-p").await.unwrap().len(), 1);
    assert_eq!(s.seen_versions(&["sub-p"]).await.unwrap().len(), 1);
}

// ---- the console's roles -------------------------------------------------

/// An alert of `rule` with `severity`, `labels` and a group key, on `sub`.
fn console_alert(
    name: &str,
    rule: &str,
    severity: &str,
    sub: &str,
    group: Option<&str>,
    team: &str,
) -> AlertRow {
    AlertRow {
        fingerprint: fp(name),
        rule_id: rule.into(),
        rule_version: "v1".into(),
        severity: severity.into(),
        submission_id: sub.into(),
        group_key: group.map(str::to_owned),
        event_time: Utc::now() - Duration::hours(1),
        body: json!({"rule": rule, "fingerprint": fp(name), "labels": {"team": team}}).to_string(),
    }
}

/// Four alerts, committed one after the other (fired_at is the commit time):
/// `ca` (r, high, aml), `cb` (r2, critical, group u1, a window member),
/// `cc` (r, historical), `cd` (r, high, team kyc, silenced). Newest first
/// they are cd, cc, cb, ca.
async fn console_fixture(s: &Arc<dyn StateStore>) {
    let t = Utc::now() - Duration::hours(1);
    let batches = [
        BatchCommit {
            versions: vec![version("sub-ca", "h", Some("approved"), t)],
            state: vec![StateChange::Applicant {
                applicant_id: "app-7".into(),
                submission_id: "sub-ca".into(),
                email: Some("x@example.com".into()),
                event_time: t,
            }],
            alerts: vec![console_alert("ca", "r", "high", "sub-ca", None, "aml")],
            ..Default::default()
        },
        BatchCommit {
            state: vec![StateChange::WindowAdd {
                rule_id: "r2".into(),
                key: "u1".into(),
                submission_id: "sub-cb".into(),
                event_time: t,
            }],
            alerts: vec![console_alert(
                "cb",
                "r2",
                "critical",
                "sub-cb",
                Some("u1"),
                "aml",
            )],
            ..Default::default()
        },
        BatchCommit {
            alerts: vec![console_alert("cc", "r", "high", "sub-cc", None, "aml")],
            historical: true,
            ..Default::default()
        },
        BatchCommit {
            alerts: vec![console_alert("cd", "r", "high", "sub-cd", None, "kyc")],
            // A shadow rule's alert: recorded, never in the inbox or its counts.
            shadow_alerts: vec![kyc_sentinel::store::ShadowAlertRow {
                alert: console_alert("cs", "r-next", "high", "sub-cd", None, "kyc"),
                replaces: Some("r".into()),
            }],
            audit: vec![AuditRow {
                kind: "silenced",
                fingerprint: Some(fp("cd")),
                ..decision("sub-cd", None)
            }],
            ..Default::default()
        },
    ];
    for b in batches {
        s.commit_batch(b).await.unwrap();
        // Distinct commit times: "newest first" has one answer.
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
}

async fn console_cases(s: Arc<dyn StateStore>) {
    use kyc_sentinel::lifecycle::Policy;
    use kyc_sentinel::store::cases::{Assignee, InboxQuery};
    console_fixture(&s).await;
    let (cases, _) = s
        .console_roles()
        .expect("every backend has the console's roles");
    let q = |f: &dyn Fn(&mut InboxQuery)| {
        let mut q = InboxQuery {
            limit: 50,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    let names = |items: &[kyc_sentinel::store::cases::InboxItem]| {
        let mut n: Vec<&str> = Vec::new();
        for i in items {
            let name = ["ca", "cb", "cc", "cd"]
                .into_iter()
                .find(|n| fp(n) == i.fingerprint)
                .expect("a fixture alert");
            n.push(name);
        }
        n
    };
    let (items, total) = cases.inbox(&q(&|_| {})).await.unwrap();
    assert_eq!(names(&items), ["cd", "cc", "cb", "ca"], "newest first");
    assert_eq!(total, 4);
    assert_eq!(items[1].state, "historical");
    assert!(items[0].silenced && !items[1].silenced);
    assert_eq!(items[2].group_key.as_deref(), Some("u1"));
    // A page.
    let (page, total) = cases
        .inbox(&q(&|q| {
            q.offset = 1;
            q.limit = 2
        }))
        .await
        .unwrap();
    assert_eq!((names(&page), total), (vec!["cc", "cb"], 4));
    // Each filter alone.
    let one = |f: &'static dyn Fn(&mut InboxQuery)| {
        let cases = cases.clone();
        let query = q(f);
        async move {
            let (items, total) = cases.inbox(&query).await.unwrap();
            assert_eq!(items.len() as i64, total, "{query:?}");
            names(&items)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(one(&|q| q.state = Some("historical".into())).await, ["cc"]);
    assert_eq!(
        one(&|q| q.state = Some("open".into())).await,
        ["cd", "cb", "ca"]
    );
    assert_eq!(one(&|q| q.state = Some("silenced".into())).await, ["cd"]);
    assert_eq!(one(&|q| q.severity = Some("critical".into())).await, ["cb"]);
    assert_eq!(
        one(&|q| q.rule = Some("r".into())).await,
        ["cd", "cc", "ca"]
    );
    assert_eq!(
        one(&|q| q.label = Some(("team".into(), "kyc".into()))).await,
        ["cd"]
    );
    assert_eq!(one(&|q| q.search = Some("sub-cc".into())).await, ["cc"]);
    assert_eq!(one(&|q| q.search = Some("u1".into())).await, ["cb"]);
    assert_eq!(one(&|q| q.search = Some("app-7".into())).await, ["ca"]);
    assert_eq!(
        one(&|q| q.search = Some("x@example.com".into())).await,
        ["ca"]
    );
    assert!(
        one(&|q| q.search = Some("x@example".into()))
            .await
            .is_empty(),
        "exact only"
    );
    assert!(
        one(&|q| q.until = Some(Utc::now() - Duration::days(1)))
            .await
            .is_empty()
    );
    assert_eq!(
        one(&|q| {
            q.since = Some(Utc::now() - Duration::minutes(5));
            q.rule = Some("r2".into())
        })
        .await,
        ["cb"]
    );
    // Counts per state, the whole store and under a filter.
    let counts = cases.state_counts(&q(&|_| {})).await.unwrap();
    assert_eq!(
        counts,
        [("historical".to_owned(), 1), ("open".to_owned(), 3)]
    );
    let counts = cases
        .state_counts(&q(&|q| q.rule = Some("r".into())))
        .await
        .unwrap();
    assert_eq!(
        counts,
        [("historical".to_owned(), 1), ("open".to_owned(), 2)]
    );

    // Assignment: filters, next unassigned (the oldest open one), audit.
    assert_eq!(
        cases.next_unassigned(&q(&|_| {})).await.unwrap(),
        Some(fp("ca"))
    );
    cases.assign(&fp("ca"), "ana", "lea").await.unwrap();
    assert!(matches!(
        cases.assign(&fp("nope"), "ana", "lea").await,
        Err(ChangeError::Refused(LifecycleError::NoSuchAlert(_)))
    ));
    assert_eq!(
        one(&|q| q.assignee = Assignee::Person("ana".into())).await,
        ["ca"]
    );
    assert_eq!(
        one(&|q| q.assignee = Assignee::Nobody).await,
        ["cd", "cc", "cb"]
    );
    assert_eq!(
        cases.next_unassigned(&q(&|_| {})).await.unwrap(),
        Some(fp("cb"))
    );
    assert_eq!(
        cases
            .next_unassigned(&q(&|q| q.rule = Some("r".into())))
            .await
            .unwrap(),
        Some(fp("cd")),
        "under the filter"
    );
    // Notes and reveals are audited under the person's name; a reveal names
    // the field, never its value.
    cases
        .add_note(&fp("ca"), "ana", "called the bank")
        .await
        .unwrap();
    assert!(matches!(
        cases.add_note(&fp("nope"), "ana", "x").await,
        Err(ChangeError::Refused(LifecycleError::NoSuchAlert(_)))
    ));
    cases
        .record_reveal(&fp("ca"), "lea", "email")
        .await
        .unwrap();
    let case = cases.case(&fp("ca")).await.unwrap().expect("stored");
    assert_eq!(case.assignee.as_deref(), Some("ana"));
    assert_eq!(case.view.submission_id, "sub-ca");
    assert_eq!(case.submission.as_ref().unwrap()["submission_id"], "sub-ca");
    let trail: Vec<(String, Value)> = case
        .audit
        .iter()
        .filter(|a| ["assignment", "note", "reveal"].contains(&a.kind.as_str()))
        .map(|a| (a.kind.clone(), a.detail.clone()))
        .collect();
    assert_eq!(
        trail,
        [
            ("assignment".to_owned(), json!({"by": "lea", "to": "ana"})),
            (
                "note".to_owned(),
                json!({"by": "ana", "note": "called the bank"})
            ),
            ("reveal".to_owned(), json!({"by": "lea", "field": "email"})),
        ]
    );
    assert!(cases.case(&fp("nope")).await.unwrap().is_none());
    let cb = cases.case(&fp("cb")).await.unwrap().unwrap();
    assert_eq!(cb.members.len(), 1);
    assert_eq!(cb.members[0].0, "sub-cb");
    assert_eq!(cases.find(&fp("cb")[..10]).await.unwrap(), Ok(fp("cb")));

    // Four-eyes through change(): a second, different person approves.
    let policy = Policy {
        four_eyes: vec!["critical".into()],
    };
    let resolve = Action::Resolve {
        outcome: "false_positive".into(),
        note: Some("same person, new address".into()),
    };
    assert_eq!(
        cases
            .change(&fp("cb"), "ana", resolve, &policy)
            .await
            .unwrap(),
        AlertState::PendingApproval
    );
    assert_eq!(
        one(&|q| q.state = Some("pending_approval".into())).await,
        ["cb"]
    );
    assert!(matches!(
        cases
            .change(&fp("cb"), "ana", Action::Approve { note: None }, &policy)
            .await,
        Err(ChangeError::Refused(LifecycleError::SamePerson { .. }))
    ));
    assert_eq!(
        cases
            .change(&fp("cb"), "lea", Action::Approve { note: None }, &policy)
            .await
            .unwrap(),
        AlertState::Resolved
    );
    let cb = cases.case(&fp("cb")).await.unwrap().unwrap();
    assert_eq!(cb.outcome.as_deref(), Some("false_positive"));
    assert_eq!(cb.view.state, AlertState::Resolved);
    let counts = cases.state_counts(&q(&|_| {})).await.unwrap();
    assert_eq!(
        counts,
        [
            ("historical".to_owned(), 1),
            ("open".to_owned(), 2),
            ("resolved".to_owned(), 1)
        ]
    );
    let (_, total) = cases
        .inbox(&q(&|q| q.state = Some("resolved".into())))
        .await
        .unwrap();
    assert_eq!(total, 1);

    // The Rules page: per rule, fired in 24 h / 7 d, resolved, false positives.
    let stats: Vec<(String, i64, i64, i64, i64)> = cases
        .rule_stats(Utc::now())
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.rule, r.last_24h, r.last_7d, r.resolved, r.false_positive))
        .collect();
    // A shadow rule's alerts count on its own line (the Rules page shows
    // what a candidate rule would have raised).
    assert_eq!(
        stats,
        [
            ("r".to_owned(), 3, 3, 0, 0),
            ("r-next".to_owned(), 1, 1, 0, 0),
            ("r2".to_owned(), 1, 1, 1, 1)
        ]
    );
    let later = cases
        .rule_stats(Utc::now() + Duration::days(2))
        .await
        .unwrap();
    assert_eq!(later[0].last_24h, 0);
    assert_eq!(later[0].last_7d, 3);
    let health = cases.health("2026-01-01").await.unwrap();
    assert_eq!((health.outbox_pending, health.dead_letters), (0, 0));
}

async fn console_users(s: Arc<dyn StateStore>) {
    let (_, users) = s
        .console_roles()
        .expect("every backend has the console's roles");
    let now = Utc::now();
    assert!(
        users
            .add_user("ana", "analyst", Some("$argon2id$x"))
            .await
            .unwrap()
    );
    assert!(
        !users.add_user("ana", "lead", None).await.unwrap(),
        "name taken"
    );
    assert!(users.add_user("bo", "viewer", None).await.unwrap());
    let list: Vec<(String, String, bool)> = users
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.name, u.role, u.disabled))
        .collect();
    assert_eq!(
        list,
        [
            ("ana".to_owned(), "analyst".to_owned(), false),
            ("bo".to_owned(), "viewer".to_owned(), false)
        ]
    );
    let c = users.credentials("ana").await.unwrap().unwrap();
    assert_eq!(
        (c.role.as_str(), c.password_hash.as_deref(), c.disabled),
        ("analyst", Some("$argon2id$x"), false)
    );
    assert!(users.credentials("nobody").await.unwrap().is_none());
    // Tokens.
    users.add_token("ana", "tokhash").await.unwrap();
    assert_eq!(
        users.user_by_token("tokhash").await.unwrap(),
        Some(("ana".to_owned(), "analyst".to_owned()))
    );
    assert_eq!(users.user_by_token("other").await.unwrap(), None);
    // Sessions: created, touched, ended; a proxy user (no row) is allowed.
    users
        .create_session("s1", "ana", "analyst", "csrf1", now)
        .await
        .unwrap();
    users
        .create_session("s2", "ana", "analyst", "csrf2", now)
        .await
        .unwrap();
    users
        .create_session("sp", "sso-kim", "lead", "csrf3", now)
        .await
        .unwrap();
    let s1 = users.session("s1").await.unwrap().unwrap();
    assert_eq!(
        (s1.name.as_str(), s1.role.as_str(), s1.csrf.as_str()),
        ("ana", "analyst", "csrf1")
    );
    assert_eq!(s1.created_at, kyc_sentinel::store::fmt_time(now));
    users
        .touch_session("s1", now + Duration::minutes(3))
        .await
        .unwrap();
    let s1 = users.session("s1").await.unwrap().unwrap();
    assert_eq!(
        s1.last_seen,
        kyc_sentinel::store::fmt_time(now + Duration::minutes(3))
    );
    assert_eq!(s1.created_at, kyc_sentinel::store::fmt_time(now));
    assert_eq!(users.session("sp").await.unwrap().unwrap().name, "sso-kim");
    users.end_session("s2").await.unwrap();
    assert!(users.session("s2").await.unwrap().is_none());
    // Disabling ends the user's sessions and tokens.
    assert!(users.disable_user("ana").await.unwrap());
    assert!(!users.disable_user("nobody").await.unwrap());
    assert!(users.credentials("ana").await.unwrap().unwrap().disabled);
    assert!(users.session("s1").await.unwrap().is_none());
    assert_eq!(users.user_by_token("tokhash").await.unwrap(), None);
    assert!(
        users.session("sp").await.unwrap().is_some(),
        "others keep theirs"
    );
    // Failed sign-ins, per key, since a time.
    let keys = ["user:ana".to_owned(), "addr:10.0.0.1".to_owned()];
    users
        .record_login_failure(&keys, now - Duration::minutes(30))
        .await
        .unwrap();
    users.record_login_failure(&keys, now).await.unwrap();
    users.record_login_failure(&keys[1..], now).await.unwrap();
    let since = now - Duration::minutes(10);
    assert_eq!(users.login_failures("user:ana", since).await.unwrap(), 1);
    assert_eq!(
        users.login_failures("addr:10.0.0.1", since).await.unwrap(),
        2
    );
    assert_eq!(
        users
            .login_failures("addr:10.0.0.1", now - Duration::hours(1))
            .await
            .unwrap(),
        3
    );
    assert_eq!(users.login_failures("user:bo", since).await.unwrap(), 0);
}

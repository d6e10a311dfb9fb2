//! Issue 19, first part: the PostgreSQL store against a real, throwaway
//! cluster (tests/it/common/pg.rs): the same operations answer the same on
//! SQLite and PostgreSQL; leadership and fencing; `store migrate`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use kyc_sentinel::config::Config;
use kyc_sentinel::store::lifecycle::{Action, AlertFilter, AlertState};
use kyc_sentinel::store::postgres::leader::{Leadership, LeaseConfig};
use kyc_sentinel::store::prelude::*;
use kyc_sentinel::store::{
    AlertRow, AuditRow, BatchCommit, DeliveryOutcome, GroupInsert, OutboxInsert, PgStore,
    ShadowAlertRow, Source, SqliteStore, StateChange, StoreError, VersionRow,
};
use serde_json::{Value, json};

use crate::pg_database_or_skip;

fn t(min: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 8, 0, 0).unwrap() + chrono::Duration::minutes(min)
}

fn fp(n: u32) -> String {
    format!("{n:08x}{}", "ab".repeat(28))
}

fn alert_body(n: u32, members: &[&str]) -> String {
    json!({"fingerprint": fp(n), "rule": "r1", "severity": "high",
           "submission_ids": members, "labels": {"team": "aml"}})
    .to_string()
}

/// A batch touching every table a batch writes, twice the same key where
/// the engine may (results, throttles).
fn first_batch() -> BatchCommit {
    let versions = (0..3)
        .map(|i| VersionRow {
            submission_id: format!("s{i}"),
            content_hash: format!("h{i}"),
            kyc_result: Some(if i == 2 { "Pending" } else { "approved" }.into()),
            created_at: Some(t(i)),
            event_time: t(i),
            raw: json!({"id": format!("s{i}"), "applicant_id": "app1", "userid": "u1"}).to_string(),
        })
        .collect();
    let state = vec![
        StateChange::Result {
            submission_id: "s0".into(),
            kyc_result: Some("pending".into()),
        },
        StateChange::Result {
            submission_id: "s0".into(),
            kyc_result: Some("approved".into()),
        },
        StateChange::Applicant {
            applicant_id: "app1".into(),
            submission_id: "s0".into(),
            email: Some("a@example.com".into()),
            event_time: t(0),
        },
        StateChange::Fired {
            rule_id: "r1".into(),
            submission_id: "s0".into(),
        },
        StateChange::WindowAdd {
            rule_id: "w".into(),
            key: "k".into(),
            submission_id: "s0".into(),
            event_time: t(0),
        },
        StateChange::WindowAdd {
            rule_id: "w".into(),
            key: "k".into(),
            submission_id: "s1".into(),
            event_time: t(1),
        },
        StateChange::WindowConsume {
            rule_id: "w".into(),
            key: "k".into(),
            submission_ids: vec!["s0".into()],
        },
        StateChange::WindowAdd {
            rule_id: "w".into(),
            key: "k".into(),
            submission_id: "s2".into(),
            event_time: t(2),
        },
        StateChange::Throttle {
            rule_id: "r1".into(),
            key: "app1".into(),
            until: t(30),
        },
        StateChange::Throttle {
            rule_id: "r1".into(),
            key: "app1".into(),
            until: t(60),
        },
    ];
    let alerts = vec![
        AlertRow {
            fingerprint: fp(1),
            // The window rule whose consume took s0.
            rule_id: "w".into(),
            rule_version: "v1".into(),
            severity: "high".into(),
            submission_id: "s0".into(),
            group_key: Some("k".into()),
            event_time: t(0),
            body: alert_body(1, &["s0", "s1"]),
        },
        AlertRow {
            fingerprint: fp(2),
            rule_id: "r1".into(),
            rule_version: "v1".into(),
            severity: "critical".into(),
            submission_id: "s1".into(),
            group_key: None,
            event_time: t(1),
            body: alert_body(2, &["s1"]),
        },
    ];
    let bare = |n: u32| {
        json!({"group_key": null, "alerts": [serde_json::from_str::<Value>(&alert_body(n, &["s0"])).unwrap()]}).to_string()
    };
    BatchCommit {
        source: Source::Webhook,
        versions,
        state,
        alerts,
        outbox: vec![
            OutboxInsert {
                fingerprint: fp(1),
                receiver: "hook".into(),
                payload: bare(1),
            },
            OutboxInsert {
                fingerprint: fp(1),
                receiver: "mail".into(),
                payload: bare(1),
            },
        ],
        notify: vec![GroupInsert {
            receiver: "chat".into(),
            group_key: "g".into(),
            fingerprint: fp(2),
            group_wait: Duration::ZERO,
            repeat_interval: Duration::from_secs(3600),
            escalation: Some("aml".into()),
        }],
        audit: vec![AuditRow {
            kind: "decision",
            submission_id: Some("s0".into()),
            version_hash: Some("h0".into()),
            rule_id: Some("r1".into()),
            rule_version: Some("v1".into()),
            fingerprint: Some(fp(1)),
            detail: json!({"why": "test"}),
        }],
        meta: vec![
            ("cursor".into(), "c1".into()),
            ("cursor".into(), "c2".into()),
        ],
        historical: false,
        // Recorded beside the live alerts; never listed, routed or digested.
        shadow_alerts: vec![ShadowAlertRow {
            alert: AlertRow {
                fingerprint: fp(3),
                rule_id: "r1-candidate".into(),
                rule_version: "v1".into(),
                severity: "high".into(),
                submission_id: "s1".into(),
                group_key: None,
                event_time: t(1),
                body: alert_body(3, &["s1"]),
            },
            replaces: Some("r1".into()),
        }],
    }
}

/// Runs the same operations through the `Store` trait and returns what
/// they answered, with the store's own clock times left out.
async fn transcript<S: StateStore>(s: &S) -> Vec<String> {
    let mut out = Vec::new();
    let mut log = |what: &str, v: String| out.push(format!("{what}: {v}"));
    s.commit_batch(first_batch()).await.unwrap();
    // Re-decided after a crash: the same batch again changes nothing.
    s.commit_batch(first_batch()).await.unwrap();
    let seen: BTreeMap<_, _> = s
        .seen_versions(&["s0", "s1", "s2", "nope"])
        .await
        .unwrap()
        .into_iter()
        .collect();
    log("seen", format!("{seen:?}"));
    let undecided = s.undecided_since(t(-10)).await.unwrap();
    log("undecided", format!("{undecided:?}"));
    let mut p = s.prefetch(&["s0", "s1"], &["app1"]).await.unwrap();
    p.fired.sort();
    let results: BTreeMap<_, _> = p.results.into_iter().collect();
    let applicants: BTreeMap<_, _> = p.applicants.into_iter().collect();
    log(
        "prefetch",
        format!("{results:?} {:?} {applicants:?}", p.fired),
    );
    let (mut members, throttles) = s.open_windows(t(-1)).await.unwrap();
    members.sort_by(|a, b| a.submission_id.cmp(&b.submission_id));
    log("windows", format!("{members:?} {throttles:?}"));
    let mut among = s
        .window_memberships(&[("w", "k", "s0"), ("w", "k", "s9"), ("w", "k", "s2")])
        .await
        .unwrap();
    among.sort_by(|a, b| a.submission_id.cmp(&b.submission_id));
    log("among", format!("{among:?}"));
    log(
        "latest",
        format!("{:?}", s.latest_window_event().await.unwrap()),
    );
    log("meta", format!("{:?}", s.get_meta("cursor").await.unwrap()));
    log("found", format!("{:?}", s.found_first().await.unwrap()));
    let later = Utc::now() + chrono::Duration::seconds(5);
    log("flushed", s.flush_groups(later).await.unwrap().to_string());
    log(
        "flushed again",
        s.flush_groups(later).await.unwrap().to_string(),
    );
    let mut receivers = s.due_receivers(later).await.unwrap();
    receivers.sort();
    log("due receivers", format!("{receivers:?}"));
    let due = s.due_outbox(later, 10).await.unwrap();
    // Ids are left out: a PostgreSQL sequence skips the values of rows an
    // `ON CONFLICT DO NOTHING` did not insert (the batch re-committed above).
    let shown: Vec<_> = due
        .iter()
        .map(|r| (&r.fingerprint, &r.receiver, r.attempts))
        .collect();
    log("due", format!("{shown:?}"));
    let chat = s.due_outbox_for("chat", later, 10).await.unwrap();
    log("chat payload", chat[0].payload.clone());
    let outcomes = vec![
        (due[0].clone(), DeliveryOutcome::Delivered),
        (
            due[1].clone(),
            DeliveryOutcome::Retry {
                error: "HTTP 503".into(),
                next_attempt_at: later + chrono::Duration::hours(1),
            },
        ),
        (
            due[2].clone(),
            DeliveryOutcome::Dead {
                error: "HTTP 400".into(),
            },
        ),
    ];
    s.record_deliveries(&outcomes).await.unwrap();
    log("stats", format!("{:?}", s.outbox_stats().await.unwrap()));
    log(
        "api",
        s.add_api_calls("2026-11-26", 3).await.unwrap().to_string(),
    );
    log(
        "api",
        s.add_api_calls("2026-11-26", 4).await.unwrap().to_string(),
    );
    let raw: BTreeMap<_, _> = s
        .submissions_raw(&["s1", "nope"])
        .await
        .unwrap()
        .into_iter()
        .collect();
    log("raw", format!("{raw:?}"));
    let silence = kyc_sentinel::notify::silence::NewSilence {
        rule: Some("r1".into()),
        matchers: [("team".to_owned(), "aml".to_owned())].into(),
        reason: "maintenance".into(),
        author: "ana".into(),
        starts_at: t(0),
        ends_at: Utc::now() + chrono::Duration::hours(1),
    };
    let id = s.add_silence(&silence).await.unwrap();
    log(
        "silences",
        s.silences(Utc::now(), false)
            .await
            .unwrap()
            .len()
            .to_string(),
    );
    log(
        "expired",
        s.expire_silence(id, Utc::now()).await.unwrap().to_string(),
    );
    log(
        "expired none",
        s.expire_silence(id + 99, Utc::now())
            .await
            .unwrap()
            .to_string(),
    );
    log(
        "silences",
        s.silences(Utc::now(), false)
            .await
            .unwrap()
            .len()
            .to_string(),
    );
    log(
        "silences all",
        s.silences(Utc::now(), true)
            .await
            .unwrap()
            .len()
            .to_string(),
    );
    // Shadow alerts: counted per rule, in the comparison lists, never live.
    log(
        "shadow counts",
        format!(
            "{:?}",
            s.shadow_counts(t(-1000), Utc::now() + chrono::Duration::days(1))
                .await
                .unwrap()
        ),
    );
    let fired: Vec<_> = s
        .alerts_fired_since(t(-1000))
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.fingerprint, a.mode, a.replaces))
        .collect();
    log("fired since", format!("{fired:?}"));
    let live: Vec<_> = s
        .live_alerts_between(t(-1000), t(1000))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.fingerprint)
        .collect();
    log("live between", format!("{live:?}"));
    let listed = s.list_alerts(&Default::default()).await.unwrap().len();
    log("listed", listed.to_string());
    out
}

/// The audit rows about an alert as kinds and details (times left out).
fn audit_shown(rows: &[kyc_sentinel::store::AuditEntry]) -> Vec<String> {
    rows.iter()
        .map(|r| format!("{} {:?} {}", r.kind, r.fingerprint, r.detail))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_operations_answer_the_same_on_sqlite_and_postgres() {
    let db = pg_database_or_skip!("same_ops");
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
    let pg = PgStore::open(&db.url()).await.unwrap();
    // Opening again finds the migrations applied.
    let pg = {
        drop(pg);
        PgStore::open(&db.url()).await.unwrap()
    };
    let a = transcript(&lite).await;
    let b = transcript(&pg).await;
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "SQLite and PostgreSQL answered differently");
    }
    assert_eq!(a.len(), b.len());
    assert!(a.iter().any(|l| l == "flushed: 1"), "{a:#?}");

    // The inherent operations (audit, lifecycle, lookup, digests).
    let (l, p) = (
        lite.alert(&fp(1)).await.unwrap().unwrap(),
        pg.alert(&fp(1)).await.unwrap().unwrap(),
    );
    assert_eq!(l.notifications, p.notifications);
    assert_eq!(l.attempts.len(), p.attempts.len());
    assert_eq!(l.alert, p.alert);
    // The delivery-attempt trigger wrote the same audit rows, same JSON text.
    for f in [fp(1), fp(2)] {
        let (la, pa) = (
            lite.audit_for_alert(&f).await.unwrap(),
            pg.audit_for_alert(&f).await.unwrap(),
        );
        assert_eq!(audit_shown(&la), audit_shown(&pa));
    }
    let delivery: Vec<_> = pg
        .audit_for_alert(&fp(1))
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "delivery")
        .collect();
    assert_eq!(
        delivery.len(),
        2,
        "one attempt per receiver of fp1 (hook, mail)"
    );
    assert_eq!(
        lite.alerts_of_submission("s1").await.unwrap(),
        pg.alerts_of_submission("s1").await.unwrap()
    );
    let (lw, pw) = (
        lite.memberships_of("s0").await.unwrap(),
        pg.memberships_of("s0").await.unwrap(),
    );
    assert_eq!(format!("{lw:?}"), format!("{pw:?}"));
    assert!(pw[0].consumed && pw[0].consumed_by.is_some(), "{pw:?}");
    for st in [&lite.summary().await.unwrap(), &pg.summary().await.unwrap()] {
        assert_eq!(st.submissions, 3);
    }
    assert_eq!(
        format!("{:?}", lite.summary().await.unwrap()),
        format!("{:?}", pg.summary().await.unwrap())
    );

    // Lifecycle and lookup.
    let prefix = &fp(2)[..10];
    assert_eq!(
        lite.resolve_fingerprint(prefix).await.unwrap(),
        pg.resolve_fingerprint(prefix).await.unwrap()
    );
    assert_eq!(pg.resolve_fingerprint(prefix).await.unwrap(), Ok(fp(2)));
    let ack = Action::Ack { note: None };
    assert_eq!(
        pg.change_alert(&fp(2), "ana", ack.clone()).await.unwrap(),
        AlertState::Acknowledged
    );
    lite.change_alert(&fp(2), "ana", ack.clone()).await.unwrap();
    let again = pg.change_alert(&fp(2), "bo", ack).await.unwrap_err();
    assert!(
        again.to_string().contains("already acknowledged"),
        "{again}"
    );
    let list = |v: Vec<kyc_sentinel::store::lifecycle::AlertListItem>| {
        v.into_iter()
            .map(|a| (a.fingerprint, a.state, a.changed_by))
            .collect::<Vec<_>>()
    };
    let f = AlertFilter {
        state: Some(AlertState::Acknowledged),
        ..AlertFilter::default()
    };
    assert_eq!(
        list(lite.list_alerts(&f).await.unwrap()),
        list(pg.list_alerts(&f).await.unwrap())
    );
    assert_eq!(list(pg.list_alerts(&f).await.unwrap()).len(), 1);
    let view = pg.alert_view(&fp(2)).await.unwrap().unwrap();
    assert_eq!(view.state, AlertState::Acknowledged);

    // Digest reads.
    let (from, to) = (Utc::now() - chrono::Duration::hours(1), Utc::now());
    let (ld, pd) = (
        lite.alerts_fired_between(from, to).await.unwrap(),
        pg.alerts_fired_between(from, to).await.unwrap(),
    );
    assert_eq!(ld.len(), 2);
    for (x, y) in ld.iter().zip(&pd) {
        assert_eq!(
            (&x.fingerprint, &x.labels, &x.applicant_id, &x.state),
            (&y.fingerprint, &y.labels, &y.applicant_id, &y.state)
        );
    }
    assert_eq!(pd[0].applicant_id.as_deref(), Some("app1"));
    let dead = pg
        .dead_letters_between(from, to + chrono::Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].error, "HTTP 400");
    assert_eq!(pg.api_calls_on("2026-11-26").await.unwrap(), 7);
    let active = pg.active_escalations().await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].alert_state, "acknowledged");
}

fn lease(secs: f64) -> LeaseConfig {
    LeaseConfig {
        lease: Duration::from_secs_f64(secs),
        renew_timeout: Duration::from_secs(2),
    }
}

/// A small batch: one version, one audit row.
fn tiny_batch(id: &str) -> BatchCommit {
    BatchCommit {
        versions: vec![VersionRow {
            submission_id: id.into(),
            content_hash: "h".into(),
            kyc_result: None,
            created_at: None,
            event_time: t(0),
            raw: "{}".into(),
        }],
        ..BatchCommit::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_contenders_leads_and_a_deposed_leader_cannot_commit() {
    let db = pg_database_or_skip!("leader");
    let store = PgStore::open(&db.url()).await.unwrap();
    let cfg = lease(30.0);
    let mut a = Leadership::try_acquire(&db.url(), &cfg)
        .await
        .unwrap()
        .expect("the first contender leads");
    assert!(
        Leadership::try_acquire(&db.url(), &cfg)
            .await
            .unwrap()
            .is_none(),
        "the second must not lead while the first holds the lock and its lease"
    );
    assert!(a.is_leader());
    assert!(a.renew().await);
    let first = a.epoch();
    let a_store = store.fenced(first);
    a_store.commit_batch(tiny_batch("by-a")).await.unwrap();

    // The leader's connection is killed (as by a dead host): the lock goes with it.
    db.cluster
        .psql(&format!("SELECT pg_terminate_backend({})", a.backend_pid()))
        .unwrap();
    let b = tokio::time::timeout(
        Duration::from_secs(10),
        Leadership::acquire(&db.url(), &cfg, Duration::from_millis(50)),
    )
    .await
    .expect("the standby takes over within 10 s")
    .unwrap();
    assert_eq!(b.epoch(), first + 1, "a takeover increments the epoch");
    assert!(!a.renew().await, "the old leader learns it lost");
    assert!(!a.is_leader());

    // The deposed leader's commit is refused, and wrote nothing.
    let e = a_store
        .commit_batch(tiny_batch("late-a"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Fenced { held, current } if held == first && current == first + 1),
        "{e}"
    );
    assert!(e.to_string().contains("another instance took over"), "{e}");
    assert!(store.seen_versions(&["late-a"]).await.unwrap().is_empty());
    store
        .fenced(b.epoch())
        .commit_batch(tiny_batch("by-b"))
        .await
        .unwrap();
    assert_eq!(
        store.seen_versions(&["by-a", "by-b"]).await.unwrap().len(),
        2
    );
    let (epoch, pid): (i64, i32) =
        sqlx::query_as("SELECT epoch, holder_pid FROM leadership WHERE id = 1")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!((epoch, pid), (b.epoch(), b.backend_pid()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_is_deposed_after_its_lease_even_mid_transaction() {
    let db = pg_database_or_skip!("frozen");
    let store = PgStore::open(&db.url()).await.unwrap();
    let cfg = lease(1.0);
    let a = Leadership::try_acquire(&db.url(), &cfg)
        .await
        .unwrap()
        .expect("leads");
    // Frozen (SIGSTOP) in the middle of a commit: its connection and lock
    // stay open, its transaction holds the leadership row, it never renews.
    let mut stuck = store.fenced(a.epoch()).write_tx().await.unwrap();
    sqlx::query("INSERT INTO meta (key, value) VALUES ('frozen', 'x')")
        .execute(&mut *stuck)
        .await
        .unwrap();
    assert!(
        Leadership::try_acquire(&db.url(), &cfg)
            .await
            .unwrap()
            .is_none(),
        "within the lease nobody takes over"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        !a.is_leader(),
        "half a lease without renewal: it no longer counts itself leader"
    );
    let started = std::time::Instant::now();
    let b = Leadership::try_acquire(&db.url(), &cfg)
        .await
        .unwrap()
        .expect("an expired lease is taken over");
    assert_eq!(b.epoch(), a.epoch() + 1);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // The frozen leader wakes up: its transaction was ended, nothing landed.
    assert!(stuck.commit().await.is_err());
    assert_eq!(store.get_meta("frozen").await.unwrap(), None);
}

#[test]
fn store_url_and_path_together_are_an_error_naming_the_field() {
    let text = |store: &str| {
        format!(
            "argos:\n  base_url: http://127.0.0.1:1\n  api_key: k\nrules: rules\n{store}\
             receivers:\n  - name: file\n    type: file\n    path: a.jsonl\n"
        )
    };
    let p = std::path::Path::new("/etc/ks/sentinel.yaml");
    let both = "store:\n  path: state.db\n  url: postgres://ks@db:5432/ks\n";
    let e = Config::parse(p, &text(both), |_| None).unwrap_err();
    assert!(e.contains("store.url: set together with store.path"), "{e}");
    assert!(e.starts_with("/etc/ks/sentinel.yaml:"), "{e}");
    let bad = "store:\n  url: mysql://ks@db/ks\n";
    let e = Config::parse(p, &text(bad), |_| None).unwrap_err();
    assert!(e.contains("store.url: not a PostgreSQL URL"), "{e}");
    // The password comes from a variable and never shows in an error.
    let secret = "store:\n  url: postgres://ks:${PGPW}@db:5432/ks?sslmode=verify-full&sslrootcert=/etc/ca.pem\n";
    let c = Config::parse(p, &text(secret), |k| (k == "PGPW").then(|| "s3cret".into())).unwrap();
    assert!(c.store.url.as_deref().unwrap().contains("s3cret"));
    let shown = c.store.describe();
    assert!(
        shown.starts_with("postgres://ks:***@db") && !shown.contains("s3cret"),
        "{shown}"
    );
    assert_eq!(
        kyc_sentinel::store::postgres::redact_url(c.store.url.as_deref().unwrap()),
        "postgres://ks:***@db:5432/ks?sslmode=verify-full&sslrootcert=/etc/ca.pem"
    );
    let only_url = "store:\n  url: postgres://ks@db:5432/ks\n";
    let c = Config::parse(p, &text(only_url), |_| None).unwrap();
    assert!(!c.store.path_given);
}

/// Every alert to `file` grouped per rule, critical ones escalated at once.
const MIGRATE_ROUTES: &str = "  - name: chan
    type: file
    path: chan.jsonl
route:
  receiver: file
  group_by: ['...']
  group_wait: 0s
  routes:
    - match: { severity: critical }
      escalation: aml-escalation
escalation_policies:
  - name: aml-escalation
    steps:
      - { after: 0s, receivers: [chan] }
";

/// Rows of `sql` (one text column) from either store, sorted.
async fn lite_texts(s: &SqliteStore, sql: &str) -> Vec<String> {
    let mut v: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(s.pool())
        .await
        .unwrap();
    v.sort();
    v
}
async fn pg_texts(s: &PgStore, sql: &str) -> Vec<String> {
    let mut v: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(s.pool())
        .await
        .unwrap();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_migrate_copies_a_backfilled_sqlite_store_with_equal_counts() {
    use crate::common::write_config;
    use kyc_sentinel::daemon::{self, BackfillOptions};
    use kyc_sentinel::simulator::{SimConfig, Simulator};

    let db = pg_database_or_skip!("migrate");
    let dir = tempfile::tempdir().unwrap();
    let end = Utc::now() - chrono::Duration::days(1);
    let sim = Simulator::start(SimConfig {
        seed: 19,
        submissions: 400,
        base_time: Some(end),
        backlog_span: Some(Duration::from_secs(2 * 86_400)),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let cfg_path = write_config(dir.path(), &sim.base_url(), MIGRATE_ROUTES);
    // Notifying, so the outbox, attempts, groups and escalations fill too.
    let opts = BackfillOptions {
        from: (end - chrono::Duration::days(3)).date_naive(),
        to: end.date_naive(),
        concurrency: 2,
        progress: false,
        notify: true,
    };
    let report = daemon::backfill(Config::load(&cfg_path).unwrap(), opts)
        .await
        .unwrap();
    assert!(report.alerts > 5, "history should raise alerts");
    let lite = SqliteStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    // A person acted and a silence exists: lifecycle and silence tables too.
    let some = lite_texts(&lite, "SELECT fingerprint FROM alerts").await;
    lite.change_alert(
        &some[0],
        "ana",
        Action::Ack {
            note: Some("mine".into()),
        },
    )
    .await
    .unwrap();
    SilenceStore::add_silence(
        &lite,
        &kyc_sentinel::notify::silence::NewSilence {
            rule: None,
            matchers: [("team".to_owned(), "aml".to_owned())].into(),
            reason: "review".into(),
            author: "ana".into(),
            starts_at: Utc::now(),
            ends_at: Utc::now() + chrono::Duration::hours(1),
        },
    )
    .await
    .unwrap();
    // The console's tables: a user with a token and a session, an
    // assignment, a note, a failed sign-in.
    {
        use kyc_sentinel::store::cases::CaseStore;
        use kyc_sentinel::store::users::UserStore;
        assert!(
            lite.add_user("ana", "lead", Some("$argon2id$h"))
                .await
                .unwrap()
        );
        lite.add_token("ana", "tokenhash").await.unwrap();
        lite.create_session("sess", "ana", "lead", "csrf", Utc::now())
            .await
            .unwrap();
        lite.record_login_failure(&["user:bo".into()], Utc::now())
            .await
            .unwrap();
        lite.assign(&some[0], "ana", "ana").await.unwrap();
        lite.add_note(&some[0], "ana", "checked").await.unwrap();
    }

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args(["store", "migrate", "--from"])
        .arg(format!("sqlite:{}", dir.path().join("state.db").display()))
        .args(["--to", &db.url()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("every table's count verified"), "{stdout}");

    let pg = PgStore::open(&db.url()).await.unwrap();
    let mut nonempty = 0;
    for table in [
        "submission_versions",
        "rule_fired",
        "submission_results",
        "window_members",
        "throttles",
        "applicants",
        "alerts",
        "outbox",
        "delivery_attempts",
        "audit_log",
        "api_budget",
        "meta",
        "silences",
        "notify_groups",
        "notify_pending",
        "version_sources",
        "alert_states",
        "alert_state_changes",
        "digests",
        "digest_schedules",
        "escalations",
        "escalation_steps",
        "outbox_alerts",
        "users",
        "user_tokens",
        "sessions",
        "login_failures",
        "alert_assignees",
        "alert_notes",
        // Derived by triggers on both sides, not copied.
        "alert_inbox",
    ] {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let l: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_one(lite.pool())
            .await
            .unwrap();
        let p: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(pg.pool())
            .await
            .unwrap();
        assert_eq!(l, p, "{table}");
        assert!(
            stdout.contains(&format!("{table} ")),
            "{table} not reported: {stdout}"
        );
        nonempty += (l > 0) as usize;
    }
    assert!(
        nonempty >= 15,
        "the fixture should fill most tables ({nonempty})"
    );
    // Rows compared: alerts with their bodies, the outbox with its payloads
    // and states, the audit log (the triggers did not add rows twice).
    let sql = "SELECT fingerprint || ' ' || rule_id || ' ' || fired_at || ' ' || body FROM alerts";
    assert_eq!(lite_texts(&lite, sql).await, pg_texts(&pg, sql).await);
    let sql = "SELECT id || ' ' || receiver || ' ' || state || ' ' || attempts || ' ' || payload FROM outbox";
    assert_eq!(lite_texts(&lite, sql).await, pg_texts(&pg, sql).await);
    let sql = "SELECT id || ' ' || kind || ' ' || COALESCE(fingerprint, '-') || ' ' || COALESCE(detail, '-') FROM audit_log";
    assert_eq!(lite_texts(&lite, sql).await, pg_texts(&pg, sql).await);
    assert_eq!(
        format!("{:?}", lite.summary().await.unwrap()),
        format!("{:?}", pg.summary().await.unwrap())
    );
    assert_eq!(
        lite.alert_view(&some[0]).await.unwrap().unwrap().state,
        pg.alert_view(&some[0]).await.unwrap().unwrap().state
    );
    // The console works on the copy: the user signs in with the same token
    // and session, the case shows the assignment and the note.
    {
        use kyc_sentinel::store::cases::CaseStore;
        use kyc_sentinel::store::users::UserStore;
        assert_eq!(
            pg.user_by_token("tokenhash").await.unwrap(),
            Some(("ana".to_owned(), "lead".to_owned()))
        );
        assert_eq!(pg.session("sess").await.unwrap().unwrap().csrf, "csrf");
        let case = CaseStore::case(&pg, &some[0]).await.unwrap().unwrap();
        assert_eq!(case.assignee.as_deref(), Some("ana"));
        assert!(case.audit.iter().any(|a| a.kind == "note"));
        pg.add_note(&some[0], "ana", "after the move")
            .await
            .unwrap();
    }
    // The copy continues: new rows get ids after the copied ones.
    let max: i64 = sqlx::query_scalar("SELECT MAX(id) FROM audit_log")
        .fetch_one(pg.pool())
        .await
        .unwrap();
    pg.change_alert(&some[1], "bo", Action::Ack { note: None })
        .await
        .unwrap();
    let next: i64 = sqlx::query_scalar("SELECT MAX(id) FROM audit_log")
        .fetch_one(pg.pool())
        .await
        .unwrap();
    assert!(next > max);

    // A second migrate into the same database is refused, naming why.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_kyc-sentinel"))
        .args(["store", "migrate", "--from"])
        .arg(format!("sqlite:{}", dir.path().join("state.db").display()))
        .args(["--to", &db.url()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(stderr.contains("already holds state"), "{stderr}");
}

/// Contiguous runs of `versions` (event-time order), at most `max` each and
/// never two versions of one submission in a run, as one poll fetches them.
fn poll_batches(versions: &[Value], max: usize) -> Vec<Vec<Value>> {
    let mut out: Vec<Vec<Value>> = vec![Vec::new()];
    for v in versions {
        let cur = out.last_mut().unwrap();
        if cur.len() >= max || cur.iter().any(|c| c["submission_id"] == v["submission_id"]) {
            out.push(Vec::new());
        }
        out.last_mut().unwrap().push(v.clone());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_and_outbox_on_postgres_deliver_what_eval_finds_and_stop_when_deposed() {
    use crate::common::{assert_delivered_exactly, delivered, expected_alerts, write_config};
    use kyc_sentinel::notify::outbox::Outbox;
    use kyc_sentinel::pipeline::Pipeline;
    use kyc_sentinel::rules::{ScriptLimits, load_path};
    use kyc_sentinel::simulator::{SimConfig, Simulator};
    use std::sync::Arc;

    let db = pg_database_or_skip!("pipeline");
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig {
        seed: 1919,
        submissions: 300,
        ..crate::common::recent_backlog()
    })
    .await
    .unwrap();
    let dump = sim.dump();
    let expected = expected_alerts(&dump);
    assert!(expected.len() > 5, "the backlog should raise alerts");
    let route = "route:\n  receiver: file\n  group_by: ['...']\n  group_wait: 0s\n";
    let cfg = Config::load(&write_config(dir.path(), &sim.base_url(), route)).unwrap();

    let cfg_lease = lease(30.0);
    // Opening the store applies the migrations leadership needs.
    let store = PgStore::open(&db.url()).await.unwrap();
    let leader = Leadership::try_acquire(&db.url(), &cfg_lease)
        .await
        .unwrap()
        .expect("leads");
    let store = store.fenced(leader.epoch());
    let rules = Arc::new(load_path(&cfg.rules, ScriptLimits::default()).unwrap());
    let router = Arc::new(kyc_sentinel::compose::build_router(&cfg).unwrap());
    let wake = Arc::new(tokio::sync::Notify::new());
    let mut pipeline = Pipeline::new(store.clone(), rules, router, wake)
        .await
        .unwrap();
    let receivers = kyc_sentinel::compose::build_receivers(&cfg).unwrap();
    let outbox = Outbox::new(store.clone(), receivers, cfg.outbox.clone());
    for batch in poll_batches(&dump, 25) {
        pipeline.process(batch, "pg test").await.unwrap();
    }
    pipeline.flush().await.unwrap();
    // Groups (one alert each, no wait) go to the outbox, the outbox delivers.
    assert!(store.flush_groups(Utc::now()).await.unwrap() >= expected.len());
    while store.outbox_stats().await.unwrap().pending > 0 {
        outbox.deliver_due().await.unwrap();
    }
    let got = delivered(&dir.path().join("alerts.jsonl"));
    let dupes = assert_delivered_exactly(&expected, &got);
    assert_eq!(dupes, 0);

    // Deposed: the pipeline's next commit is refused, nothing is written.
    db.cluster
        .psql(&format!(
            "SELECT pg_terminate_backend({})",
            leader.backend_pid()
        ))
        .unwrap();
    let next = Leadership::acquire(&db.url(), &cfg_lease, Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(next.epoch(), leader.epoch() + 1);
    let mut late = dump[0].clone();
    late["submission_id"] = json!("late-after-takeover");
    let e = pipeline
        .process(vec![late], "pg test")
        .await
        .and(pipeline.flush().await);
    assert!(matches!(e, Err(StoreError::Fenced { .. })), "{e:?}");
    assert!(
        store
            .seen_versions(&["late-after-takeover"])
            .await
            .unwrap()
            .is_empty()
    );
}

/// A long write transaction of the leader (a backfill's batch of 5,000
/// versions) holds the fence's lock on the leadership row; the leader's own
/// lease renewal must not wait for it, or a busy leader would step down.
#[tokio::test]
async fn a_long_fenced_transaction_does_not_hold_up_the_lease_renewal() {
    let db = pg_database_or_skip!("renew");
    let store = PgStore::open(&db.url()).await.unwrap();
    let mut cfg = lease(30.0);
    cfg.renew_timeout = Duration::from_millis(500);
    let mut leader = Leadership::try_acquire(&db.url(), &cfg)
        .await
        .unwrap()
        .expect("leads");
    let fenced = store.fenced(leader.epoch());
    let tx = fenced.write_tx().await.unwrap(); // fenced, open
    let started = std::time::Instant::now();
    assert!(
        leader.renew().await,
        "renewal blocked by a fenced transaction"
    );
    assert!(started.elapsed() < Duration::from_millis(500));
    drop(tx);
    assert!(leader.is_leader());
}

//! Digests with a controlled clock against a real SQLite store: the Seoul
//! schedule in UTC, Berlin's DST gap and repeated hour, catch-up after
//! downtime (each and combined) and no repeat on restart; snapshots of both
//! parts for a fixed set of alerts; one delivery through real SMTP (aiosmtpd).

use crate::notify_common;

use std::sync::Arc;
use std::time::Duration;

use crate::common::smtp::{Smtp, parse_eml};
use chrono::{DateTime, Utc};
use kyc_sentinel::clock::ManualClock;
use kyc_sentinel::digest::Digester;
use kyc_sentinel::store::prelude::*;
use kyc_sentinel::store::{AlertRow, AuditRow, BatchCommit, SqliteStore, VersionRow};
use notify_common::*;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

const FILE_RECEIVER: &str = "  - name: archive\n    type: file\n    path: digests.jsonl\n";

fn digest_section(schedule: &str, tz: &str, catch_up: &str) -> String {
    format!(
        "digests:\n  - name: daily\n    schedule: '{schedule}'\n    timezone: {tz}\n    \
         receivers: [archive]\n    catch_up: {catch_up}\n"
    )
}

async fn digester(h: &Harness) -> Digester {
    Digester::from_config(&h.cfg, Arc::new(h.store.clone()))
        .unwrap()
        .expect("digests configured")
}

fn slots(sent: &[kyc_sentinel::digest::Sent]) -> Vec<(DateTime<Utc>, DateTime<Utc>, u32)> {
    sent.iter()
        .map(|s| (s.period_start, s.scheduled_at, s.slots))
        .collect()
}

async fn outbox_keys(store: &SqliteStore) -> Vec<String> {
    sqlx::query_scalar("SELECT fingerprint FROM outbox ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn seoul_eight_oclock_fires_at_twenty_three_utc_on_the_scheduler_loop() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(
        dir.path(),
        FILE_RECEIVER,
        &digest_section("0 8 * * *", "Asia/Seoul", "each"),
    )
    .await;
    let clock = ManualClock::new(utc("2026-11-26T12:00:00Z"));
    let stop = CancellationToken::new();
    let stop_rx = stop.clone();
    let task = tokio::spawn(digester(&h).await.run(Arc::new(clock.clone()), stop_rx));
    let recorded =
        |store: SqliteStore| async move { store.digests_recorded("daily").await.unwrap() };
    // The loop anchors the schedule at its first look (12:00Z), then sleeps.
    for _ in 0..200 {
        if sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM digest_schedules")
            .fetch_one(h.store.pool())
            .await
            .unwrap()
            == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    clock.set(utc("2026-11-26T22:59:59Z"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        recorded(h.store.clone()).await.is_empty(),
        "not before 23:00Z"
    );
    clock.set(utc("2026-11-26T23:00:00Z"));
    let mut got = Vec::new();
    for _ in 0..300 {
        got = recorded(h.store.clone()).await;
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].scheduled_at, utc("2026-11-26T23:00:00Z"));
    assert_eq!(got[0].period_start, utc("2026-11-25T23:00:00Z"));
    assert_eq!(got[0].trigger, "schedule");
    assert_eq!(
        outbox_keys(&h.store).await,
        vec!["digest-daily-20261126T230000Z"]
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the loop stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn berlin_dst_gap_runs_at_the_next_valid_time_and_the_repeated_hour_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(
        dir.path(),
        FILE_RECEIVER,
        &digest_section("30 2 * * *", "Europe/Berlin", "each"),
    )
    .await;
    let d = digester(&h).await;
    // Spring forward, 2026-03-29: 02:30 does not exist; 03:00 CEST = 01:00Z.
    assert!(
        d.run_due(utc("2026-03-28T12:00:00Z"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        d.run_due(utc("2026-03-29T00:59:00Z"))
            .await
            .unwrap()
            .is_empty()
    );
    let s = d.run_due(utc("2026-03-29T01:00:00Z")).await.unwrap();
    assert_eq!(
        slots(&s),
        vec![(utc("2026-03-28T01:30:00Z"), utc("2026-03-29T01:00:00Z"), 1)]
    );
    // Fall back, 2026-10-25: 02:30 CEST (00:30Z) and 02:30 CET (01:30Z); once.
    let dir2 = tempfile::tempdir().unwrap();
    let h2 = Harness::new(
        dir2.path(),
        FILE_RECEIVER,
        &digest_section("30 2 * * *", "Europe/Berlin", "each"),
    )
    .await;
    let d = digester(&h2).await;
    assert!(
        d.run_due(utc("2026-10-24T12:00:00Z"))
            .await
            .unwrap()
            .is_empty()
    );
    let s = d.run_due(utc("2026-10-25T00:30:00Z")).await.unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].scheduled_at, utc("2026-10-25T00:30:00Z"));
    assert!(
        d.run_due(utc("2026-10-25T01:30:00Z"))
            .await
            .unwrap()
            .is_empty(),
        "the repeated 02:30 does not run again"
    );
    let s = d.run_due(utc("2026-10-26T01:30:00Z")).await.unwrap();
    assert_eq!(
        slots(&s),
        vec![(utc("2026-10-25T00:30:00Z"), utc("2026-10-26T01:30:00Z"), 1)]
    );
}

#[tokio::test]
async fn down_across_three_times_sends_three_then_nothing_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(
        dir.path(),
        FILE_RECEIVER,
        &digest_section("0 8 * * *", "Asia/Seoul", "each"),
    )
    .await;
    assert!(
        digester(&h)
            .await
            .run_due(utc("2026-11-26T12:00:00Z"))
            .await
            .unwrap()
            .is_empty()
    );
    // Down from 12:00Z on the 26th until 01:00Z on the 30th: 23:00Z on the 26th, 27th, 28th, 29th
    // would be four; stop at the 29th 22:00Z to miss exactly three.
    let start = utc("2026-11-29T22:00:00Z");
    let s = digester(&h).await.run_due(start).await.unwrap();
    assert_eq!(
        slots(&s),
        vec![
            (utc("2026-11-25T23:00:00Z"), utc("2026-11-26T23:00:00Z"), 1),
            (utc("2026-11-26T23:00:00Z"), utc("2026-11-27T23:00:00Z"), 1),
            (utc("2026-11-27T23:00:00Z"), utc("2026-11-28T23:00:00Z"), 1),
        ]
    );
    assert!(s.iter().all(|x| x.recorded));
    let recorded = h.store.digests_recorded("daily").await.unwrap();
    assert!(recorded.iter().all(|r| r.trigger == "catch_up"));
    assert_eq!(outbox_keys(&h.store).await.len(), 3);
    // A restart right after: a new scheduler over the same store sends nothing.
    let again = digester(&h)
        .await
        .run_due(start + chrono::Duration::seconds(30))
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(outbox_keys(&h.store).await.len(), 3);
    // Delivered once each.
    let stats = h.deliver_until_settled(Duration::from_secs(10)).await;
    assert_eq!((stats.delivered, stats.dead, stats.pending), (3, 0, 0));
    let lines = std::fs::read_to_string(dir.path().join("digests.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 3);
}

/// The same catch-up on PostgreSQL: three digests recorded and queued once,
/// none again from a new scheduler over the same database.
#[tokio::test]
async fn down_across_three_times_on_postgres_sends_three_then_nothing_on_restart() {
    let Some(crate::common::Backend::Postgres(db)) = crate::common::Backend::postgres("digest")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(
        dir.path(),
        FILE_RECEIVER,
        &digest_section("0 8 * * *", "Asia/Seoul", "each"),
    )
    .await;
    let store: Arc<dyn StateStore> =
        Arc::new(kyc_sentinel::store::PgStore::open(&db.url()).await.unwrap());
    let digester = || {
        Digester::from_config(&h.cfg, store.clone())
            .unwrap()
            .expect("digests configured")
    };
    assert!(
        digester()
            .run_due(utc("2026-11-26T12:00:00Z"))
            .await
            .unwrap()
            .is_empty()
    );
    let start = utc("2026-11-29T22:00:00Z");
    let s = digester().run_due(start).await.unwrap();
    assert_eq!(
        slots(&s),
        vec![
            (utc("2026-11-25T23:00:00Z"), utc("2026-11-26T23:00:00Z"), 1),
            (utc("2026-11-26T23:00:00Z"), utc("2026-11-27T23:00:00Z"), 1),
            (utc("2026-11-27T23:00:00Z"), utc("2026-11-28T23:00:00Z"), 1),
        ]
    );
    let recorded = store.digests_recorded("daily").await.unwrap();
    assert_eq!(recorded.len(), 3);
    assert!(recorded.iter().all(|r| r.trigger == "catch_up"));
    assert_eq!(store.outbox_stats().await.unwrap().pending, 3);
    let again = digester()
        .run_due(start + chrono::Duration::seconds(30))
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(store.outbox_stats().await.unwrap().pending, 3);
}

#[tokio::test]
async fn down_across_three_times_sends_one_combined_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(
        dir.path(),
        FILE_RECEIVER,
        &digest_section("0 8 * * *", "Asia/Seoul", "combined"),
    )
    .await;
    assert!(
        digester(&h)
            .await
            .run_due(utc("2026-11-26T12:00:00Z"))
            .await
            .unwrap()
            .is_empty()
    );
    let start = utc("2026-11-29T22:00:00Z");
    let s = digester(&h).await.run_due(start).await.unwrap();
    assert_eq!(
        slots(&s),
        vec![(utc("2026-11-25T23:00:00Z"), utc("2026-11-28T23:00:00Z"), 3)]
    );
    assert!(digester(&h).await.run_due(start).await.unwrap().is_empty());
    let r = h.store.digests_recorded("daily").await.unwrap();
    assert_eq!(r.len(), 1);
    let payload: String = sqlx::query_scalar("SELECT payload FROM outbox")
        .fetch_one(h.store.pool())
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&payload).unwrap();
    let text = v["digest"]["text"].as_str().unwrap();
    assert!(
        text.contains("(3 scheduled times, combined after downtime)"),
        "{text}"
    );
    assert!(text.contains("Sent late"), "{text}");
}

/// A fixed set of alerts (the notifier fixtures' submissions, PII inside),
/// fired at known times, with a rule error, a silence and a dead letter.
async fn fixed_alerts(store: &SqliteStore) {
    let fixtures = fixture_alerts();
    let mut commit = BatchCommit::default();
    let mut fired = Vec::new();
    let plan = [
        // (fixture, fingerprint char, rule, severity, fired_at, submission)
        (
            0,
            'a',
            "aml-red-flag-high",
            "critical",
            "2026-11-26T00:10:00Z",
            "sub-7f3a9c",
        ),
        (
            1,
            'b',
            "duplicate-applicant",
            "high",
            "2026-11-26T03:20:00Z",
            "sub-88b1d2",
        ),
        (
            1,
            'c',
            "duplicate-applicant",
            "high",
            "2026-11-26T09:45:00Z",
            "sub-88b1d2",
        ),
        (
            0,
            'd',
            "repeated-rejections",
            "medium",
            "2026-11-26T11:00:00Z",
            "sub-7f3a9c",
        ),
        (
            0,
            'e',
            "repeated-rejections",
            "medium",
            "2026-11-25T08:00:00Z",
            "sub-7f3a9c",
        ),
        (
            0,
            'f',
            "aml-red-flag-high",
            "critical",
            "2026-11-23T20:00:00Z",
            "sub-7f3a9c",
        ),
    ];
    for (i, sub) in fixtures.iter().enumerate() {
        let mut s = sub["submission"].clone();
        s["userid"] = Value::from(format!("user-{}@example.com", i + 1));
        commit.versions.push(VersionRow {
            submission_id: sub["submission_id"].as_str().unwrap().into(),
            content_hash: format!("h{i}"),
            kyc_result: None,
            created_at: None,
            event_time: utc("2026-11-25T00:00:00Z"),
            raw: s.to_string(),
        });
    }
    for (fx, c, rule, sev, at, sub) in plan {
        let mut a = fixtures[fx].clone();
        a.as_object_mut().unwrap().remove("submission");
        let fp = c.to_string().repeat(64);
        a["fingerprint"] = fp.clone().into();
        a["rule"] = rule.into();
        a["severity"] = sev.into();
        commit.alerts.push(AlertRow {
            fingerprint: fp.clone(),
            rule_id: rule.into(),
            rule_version: "v1".into(),
            severity: sev.into(),
            submission_id: sub.into(),
            group_key: None,
            event_time: utc(at),
            body: a.to_string(),
        });
        fired.push((fp, at));
    }
    commit.audit.push(AuditRow {
        kind: "silenced",
        submission_id: Some("sub-7f3a9c".into()),
        version_hash: None,
        rule_id: Some("repeated-rejections".into()),
        rule_version: None,
        fingerprint: Some("d".repeat(64)),
        detail: serde_json::json!({"silence_id": 1}),
    });
    commit.audit.push(AuditRow {
        kind: "rule_error",
        submission_id: Some("sub-88b1d2".into()),
        version_hash: None,
        rule_id: Some("velocity-script".into()),
        rule_version: None,
        fingerprint: None,
        detail: serde_json::json!({"error": "script error: division by zero (line 3, position 9)"}),
    });
    store.commit_batch(commit).await.unwrap();
    for (fp, at) in fired {
        sqlx::query("UPDATE alerts SET fired_at = ? WHERE fingerprint = ?")
            .bind(kyc_sentinel::store::fmt_time(utc(at)))
            .bind(fp)
            .execute(store.pool())
            .await
            .unwrap();
    }
    sqlx::query("UPDATE audit_log SET at = '2026-11-26T06:00:00.000Z' WHERE kind IN ('silenced', 'rule_error')")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO outbox (fingerprint, receiver, payload, created_at, next_attempt_at, attempts, state, last_error, done_at) \
         VALUES ('bbbb', 'slack', '{}', '2026-11-26T04:00:00.000Z', '2026-11-26T04:00:00.000Z', 5, 'dead', \
         'webhook `slack` (bbbb): HTTP 404 Not Found: no_service', '2026-11-26T04:30:00.000Z')",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store
        .change_alert(
            &"b".repeat(64),
            "kim",
            kyc_sentinel::store::lifecycle::Action::Ack { note: None },
        )
        .await
        .unwrap();
    store.add_api_calls("2026-11-26", 4321).await.unwrap();
    store
        .set_meta(
            kyc_sentinel::digest::LAST_POLL_META,
            "2026-11-26T22:59:30.000Z",
        )
        .await
        .unwrap();
}

const DASHBOARD: &str = "templates:\n  timezone: Asia/Seoul\n  dashboard_url: https://dashboard.argosidentity.com/submissions/{submission_id}\n";

#[tokio::test]
async fn preview_of_a_fixed_set_of_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(
        dir.path(),
        FILE_RECEIVER,
        &format!(
            "{}{DASHBOARD}",
            digest_section("0 8 * * *", "Asia/Seoul", "each")
        ),
    )
    .await;
    fixed_alerts(&h.store).await;
    let r = digester(&h)
        .await
        .preview("daily", utc("2026-11-26T23:00:00Z"))
        .await
        .unwrap();
    assert_eq!(
        r.subject,
        "[kyc-sentinel] daily digest 2026-11-27: 4 alerts (+3), 3 critical/high, 5 open"
    );
    for body in [&r.text, &r.html] {
        assert!(!body.contains("950214-2876543"), "no identity number");
        assert!(!body.contains("user-1@example.com"), "user emails masked");
        assert!(body.contains("u***@example.com"));
    }
    // minijinja's HTML escaping writes `/` as `&#x2f;` (browsers read it back).
    assert!(
        r.html.contains(
            "<a href=\"https:&#x2f;&#x2f;dashboard.argosidentity.com&#x2f;submissions&#x2f;sub-7f3a9c\">sub-7f3a9c</a>"
        ),
        "{}",
        r.html
    );
    // Open: oldest first; the acknowledged one is not listed.
    let open = &r.data["open_alerts"];
    assert_eq!(open["count"], 5);
    let ages: Vec<&str> = open["shown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["age"].as_str().unwrap())
        .collect();
    assert_eq!(
        ages,
        vec!["3d 3h", "1d 15h", "22h 50m", "13h 15m", "12h 0m"]
    );
    insta::assert_snapshot!("digest_txt", r.text);
    insta::assert_snapshot!("digest_html", r.html);
    // No recipients were written to: a preview sends nothing.
    assert!(outbox_keys(&h.store).await.iter().all(|k| k == "bbbb"));
}

#[tokio::test]
async fn config_errors_name_the_digest() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "argos:\n  base_url: http://127.0.0.1:9\nreceivers:\n{FILE_RECEIVER}\
         digests:\n  - name: daily\n    schedule: '0 0 8 * * *'\n    timezone: Asia/Soul\n    receivers: [archive, nobody]\n"
    );
    let err = kyc_sentinel::compose::parse_config(&dir.path().join("s.yaml"), &text, |_| None)
        .unwrap_err();
    let p = dir.path().join("s.yaml").display().to_string();
    assert_eq!(
        err,
        format!(
            "{p}:9:15: digests.daily.schedule: `0 0 8 * * *` has 6 fields; a crontab has 5 (minute hour day month weekday), e.g. `0 8 * * *`\n\
             {p}:10:15: digests.daily.timezone: `Asia/Soul` is not an IANA time zone (e.g. `Asia/Seoul`, `UTC`)\n\
             {p}:11:5: digests.daily.receivers: no receiver named `nobody` (receivers: archive)"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_arrives_once_over_real_smtp_with_html_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(dir.path(), &["--fail-first", "1"]);
    let receivers = format!(
        "  - name: leads\n    type: email\n    from: 'kyc-sentinel <sentinel@example.com>'\n    \
         to: [lead@example.com]\n    smtp:\n      host: 127.0.0.1\n      port: {}\n      tls: none\n      timeout: 5s\n",
        smtp.port
    );
    let extra = "digests:\n  - name: daily\n    schedule: '0 8 * * *'\n    timezone: Asia/Seoul\n    receivers: [leads]\n";
    let h = Harness::new(dir.path(), &receivers, &format!("{extra}{DASHBOARD}")).await;
    fixed_alerts(&h.store).await;
    let d = digester(&h).await;
    assert!(
        d.run_due(utc("2026-11-26T12:00:00Z"))
            .await
            .unwrap()
            .is_empty()
    );
    let s = d.run_due(utc("2026-11-26T23:00:00Z")).await.unwrap();
    assert_eq!(s.len(), 1);
    // 451 once, then accepted; a restart finds it done.
    let stats = h.deliver_until_settled(Duration::from_secs(15)).await;
    assert_eq!((stats.delivered, stats.pending), (1, 0), "the digest");
    assert!(
        digester(&h)
            .await
            .run_due(utc("2026-11-26T23:00:30Z"))
            .await
            .unwrap()
            .is_empty()
    );
    let accepted = smtp.files("accepted");
    assert_eq!(accepted.len(), 1, "arrives once");
    let m = parse_eml(&accepted[0]);
    assert_eq!(
        m["message_id"],
        "<digest-daily-20261126T230000Z.leads@kyc-sentinel>"
    );
    assert_eq!(m["parts"], serde_json::json!(["text/plain", "text/html"]));
    assert_eq!(
        m["subject"],
        "[kyc-sentinel] daily digest 2026-11-27: 4 alerts (+3), 3 critical/high, 5 open"
    );
    let (text, html) = (m["text"].as_str().unwrap(), m["html"].as_str().unwrap());
    assert!(text.contains("STILL OPEN (oldest first)"), "{text}");
    assert!(html.contains("<h2>Critical and high alerts</h2>"), "{html}");
    for body in [text, html] {
        assert!(!body.contains("950214-2876543"));
    }
}

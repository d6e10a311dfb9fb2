//! The SQLite store on a real file: one batch commit, change detection,
//! outbox states, retention.

use chrono::{Duration, Utc};
use kyc_sentinel::store::*;
use serde_json::json;

fn batch() -> BatchCommit {
    let t = Utc::now() - Duration::hours(1);
    BatchCommit {
        versions: vec![VersionRow {
            submission_id: "s1".into(),
            content_hash: "h1".into(),
            kyc_result: Some("Pending".into()),
            created_at: Some(t),
            event_time: t,
            raw: r#"{"submission_id":"s1"}"#.into(),
        }],
        alerts: vec![AlertRow {
            fingerprint: "fp1".into(),
            rule_id: "r".into(),
            rule_version: "v".into(),
            severity: "high".into(),
            submission_id: "s1".into(),
            group_key: None,
            event_time: t,
            body: r#"{"rule":"r"}"#.into(),
        }],
        outbox: vec![OutboxInsert {
            fingerprint: "fp1".into(),
            receiver: "file".into(),
            payload: "{}".into(),
        }],
        audit: vec![AuditRow {
            kind: "decision",
            submission_id: Some("s1".into()),
            version_hash: Some("h1".into()),
            rule_id: Some("r".into()),
            rule_version: Some("v".into()),
            fingerprint: Some("fp1".into()),
            detail: json!({"outcome": "fired"}),
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn commit_outbox_dead_letter_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
    store.commit_batch(batch()).await.unwrap();
    // The same decision committed again (a redo after a crash) adds nothing.
    store.commit_batch(batch()).await.unwrap();

    let seen = store.seen_versions(&["s1", "s2"]).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen["s1"].content_hash, "h1");
    // Undecided (pending, stored lower-cased) and inside the horizon: re-fetched.
    let undecided = store
        .undecided_since(Utc::now() - Duration::days(1))
        .await
        .unwrap();
    assert_eq!(
        undecided.iter().map(|u| u.0.as_str()).collect::<Vec<_>>(),
        ["s1"]
    );

    let due = store.due_outbox(Utc::now(), 10).await.unwrap();
    assert_eq!(
        due.len(),
        1,
        "one row per (alert, receiver), even after the redo"
    );
    let later = Utc::now() + Duration::minutes(5);
    store
        .record_delivery(
            &due[0],
            &DeliveryOutcome::Retry {
                error: "HTTP 503".into(),
                next_attempt_at: later,
            },
        )
        .await
        .unwrap();
    assert!(
        store.due_outbox(Utc::now(), 10).await.unwrap().is_empty(),
        "not due before its retry time"
    );
    let again = store.due_outbox(later, 10).await.unwrap();
    assert_eq!(again[0].attempts, 1);
    store
        .record_delivery(
            &again[0],
            &DeliveryOutcome::Dead {
                error: "HTTP 400: bad payload".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.outbox_stats().await.unwrap(),
        OutboxStats {
            pending: 0,
            delivered: 0,
            dead: 1
        }
    );
    let audit = store.audit_for_alert("fp1").await.unwrap();
    assert_eq!(
        audit.iter().map(|a| a.kind.as_str()).collect::<Vec<_>>(),
        ["decision", "decision", "dead_letter"]
    );
    let rec = store.alert("fp1").await.unwrap().unwrap();
    assert_eq!(
        rec.notifications,
        [(
            "file".to_string(),
            "dead".to_string(),
            2,
            Some("HTTP 400: bad payload".to_string())
        )]
    );

    // Retention forgets the raw JSON, keeps the decision records.
    assert!(store.submission("s1").await.unwrap().unwrap().2.is_some());
    assert_eq!(
        store
            .purge_raw_older_than(Utc::now() + Duration::seconds(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.submission("s1").await.unwrap().unwrap().2, None);
    assert!(store.alert("fp1").await.unwrap().is_some());

    assert_eq!(store.add_api_calls("2026-11-26", 5).await.unwrap(), 5);
    assert_eq!(store.add_api_calls("2026-11-26", 7).await.unwrap(), 12);
}

//! Shared helpers of the notifier tests: a real SQLite store with alerts and
//! outbox rows in it, the outbox built from a real config, and Python (the
//! signature check, aiosmtpd).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use kyc_sentinel::config::Config;
use kyc_sentinel::notify::outbox::Outbox;
use kyc_sentinel::notify::{Notification, group_key_hash};
use kyc_sentinel::store::prelude::*;
use kyc_sentinel::store::{
    AlertRow, BatchCommit, OutboxInsert, OutboxStats, SqliteStore, VersionRow,
};
use serde_json::Value;
use sqlx::Row;

pub const HOOK_SECRET: &str = "whsec-test-5f2c";
pub const SMTP_PASSWORD: &str = "smtp-pw-9c1e";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fixture alerts (with their submissions, known PII inside).
pub fn fixture_alerts() -> Vec<Value> {
    serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/notify/alerts.json")).unwrap(),
    )
    .unwrap()
}

pub struct Harness {
    pub dir: PathBuf,
    pub cfg: Config,
    pub store: SqliteStore,
    pub outbox: Outbox<SqliteStore>,
}

impl Harness {
    /// `receivers` is YAML list items (indented two spaces); `extra` goes after.
    pub async fn new(dir: &Path, receivers: &str, extra: &str) -> Harness {
        let text = format!(
            "argos:\n  base_url: http://127.0.0.1:9\n  api_key: k\n\
             rules: {rules}\n\
             store:\n  path: state.db\n\
             outbox:\n  retry_base: 20ms\n  retry_max: 100ms\n  flush_deadline: 1s\n\
             receivers:\n{receivers}{extra}",
            rules = repo().join("rules").display()
        );
        let path = dir.join("sentinel.yaml");
        std::fs::write(&path, &text).unwrap();
        let cfg = kyc_sentinel::compose::parse_config(&path, &text, |k| match k {
            "HOOK_SECRET" => Some(HOOK_SECRET.to_string()),
            "SMTP_PASSWORD" => Some(SMTP_PASSWORD.to_string()),
            _ => None,
        })
        .unwrap_or_else(|e| panic!("config:\n{e}\n{text}"));
        let store = SqliteStore::open(&cfg.store.path).await.unwrap();
        let receivers = kyc_sentinel::compose::build_receivers(&cfg).unwrap();
        let outbox = Outbox::new(store.clone(), receivers, cfg.outbox.clone());
        Harness {
            dir: dir.to_path_buf(),
            cfg,
            store,
            outbox,
        }
    }

    /// Stores `n` fixture alerts (and their submissions) and one notification
    /// of them for `receiver`; returns its idempotency key.
    pub async fn enqueue(&self, receiver: &str, n: usize) -> String {
        self.enqueue_from(receiver, 0, n).await
    }

    /// As [`Harness::enqueue`], with alerts `from..from + n` of an endless
    /// fixture list (beyond the fixtures, fresh fingerprints): several
    /// notifications in one store.
    pub async fn enqueue_from(&self, receiver: &str, from: usize, n: usize) -> String {
        let fixtures = fixture_alerts();
        let mut commit = BatchCommit::default();
        let mut alerts = Vec::new();
        for i in from..from + n {
            let mut a = fixtures[i % fixtures.len()].clone();
            let sub = a.as_object_mut().unwrap().remove("submission").unwrap();
            if i >= fixtures.len() {
                a["fingerprint"] = format!("{:064x}", i).into();
            }
            let id = a["submission_id"].as_str().unwrap().to_owned();
            commit.versions.push(VersionRow {
                submission_id: id.clone(),
                content_hash: format!("h{i}"),
                kyc_result: None,
                created_at: None,
                event_time: Utc::now(),
                raw: sub.to_string(),
            });
            commit.alerts.push(AlertRow {
                fingerprint: a["fingerprint"].as_str().unwrap().into(),
                rule_id: a["rule"].as_str().unwrap().into(),
                rule_version: "v".into(),
                severity: a["severity"].as_str().unwrap().into(),
                submission_id: id,
                group_key: None,
                event_time: Utc::now(),
                body: a.to_string(),
            });
            alerts.push(a);
        }
        let fps: Vec<&str> = alerts
            .iter()
            .map(|a| a["fingerprint"].as_str().unwrap())
            .collect();
        let key = group_key_hash(&fps);
        commit.outbox.push(OutboxInsert {
            fingerprint: key.clone(),
            receiver: receiver.into(),
            payload: Notification::payload(Some("test|group"), &alerts),
        });
        self.store.commit_batch(commit).await.unwrap();
        key
    }

    /// Delivers until nothing is pending (or the time is up); the final stats.
    pub async fn deliver_until_settled(&self, within: Duration) -> OutboxStats {
        let end = tokio::time::Instant::now() + within;
        loop {
            self.outbox.deliver_due().await.unwrap();
            let s = self.store.outbox_stats().await.unwrap();
            if s.pending == 0 || tokio::time::Instant::now() > end {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `ok` of every delivery attempt, in order.
    pub async fn attempts(&self) -> Vec<bool> {
        sqlx::query("SELECT ok FROM delivery_attempts ORDER BY id")
            .fetch_all(self.store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<i64, _>(0) != 0)
            .collect()
    }

    pub async fn outbox_row(&self, key: &str) -> (String, String) {
        let r =
            sqlx::query("SELECT state, COALESCE(last_error, '') FROM outbox WHERE fingerprint = ?")
                .bind(key)
                .fetch_one(self.store.pool())
                .await
                .unwrap();
        (r.get(0), r.get(1))
    }

    pub async fn audit_kinds(&self) -> Vec<String> {
        sqlx::query("SELECT kind FROM audit_log ORDER BY id")
            .fetch_all(self.store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}

/// Runs the README's verification snippet (tests/support/verify_signature.py).
pub fn verify_with_python(dir: &Path, secret: &str, header: &str, body: &str) -> String {
    let body_file = dir.join("body.bin");
    std::fs::write(&body_file, body).unwrap();
    let out = Command::new("python3")
        .arg(repo().join("tests/support/verify_signature.py"))
        .args([secret, header])
        .arg(&body_file)
        .output()
        .expect("python3 runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

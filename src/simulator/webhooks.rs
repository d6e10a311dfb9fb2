//! The simulator's webhook pushing: for every version it publishes, the event
//! Argos would POST to the account's webhook URL, some of them dropped.
//!
//! Argos's FAQ warns that webhooks can be lost; a seeded fraction of events is
//! therefore never sent, so tests can show the poller finds what the push
//! missed. Which events were sent or dropped is recorded ([`PushRecord`]), so a
//! test can tell the alerts a webhook should have sped up from the others.
//!
//! One event per version, named by what changed: a new or changed KYC result
//! gives `created`/`submit`/`approved`/`rejected`, else a changed AML section
//! gives `aml`, else `updated`. The body has the fields of the public guide.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};

use crate::argos::crypto::{AesEcb, Cipher};

/// Where the simulator pushes webhooks, and how many it loses.
#[derive(Debug, Clone)]
pub struct WebhookPush {
    /// The full URL (with the token, as an account would set it in Argos's dashboard).
    pub url: String,
    /// Fraction (0..=1) of events dropped, decided by a generator seeded from the simulator's seed.
    pub drop: f64,
}

/// One event the simulator generated, sent or dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct PushRecord {
    /// Index of the version in [`super::SimHandle::dump`].
    pub version: usize,
    pub submission_id: String,
    pub trigger: String,
    /// When the version was published (the event happened).
    pub at: DateTime<Utc>,
    pub dropped: bool,
}

/// Counts of what the pusher did.
#[derive(Debug, Default)]
pub struct PushStats {
    /// Answered 2xx.
    pub delivered: AtomicU64,
    /// Answered otherwise, or not answered.
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

/// The part of the simulator state that decides and records pushes.
pub(crate) struct Pusher {
    tx: mpsc::UnboundedSender<Value>,
    rng: ChaCha8Rng,
    drop: f64,
    pub records: Vec<PushRecord>,
    stats: Arc<PushStats>,
}

impl Pusher {
    pub fn set_drop(&mut self, drop: f64) {
        self.drop = drop.clamp(0.0, 1.0);
    }

    /// Decides (seeded) whether to drop the version's event, records it, and
    /// queues it for sending.
    pub fn on_version(&mut self, version: usize, prev: Option<&Value>, new: &Value) {
        let event = event_for(prev, new);
        let dropped = self.drop > 0.0 && self.rng.random_bool(self.drop.clamp(0.0, 1.0));
        self.records.push(PushRecord {
            version,
            submission_id: event["submission_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            trigger: event["webhook_trigger"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            at: Utc::now(),
            dropped,
        });
        if dropped {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self.tx.send(event);
        }
    }
}

/// Starts the sending task; returns the pusher for the state and the task.
pub(crate) fn start(
    push: &WebhookPush,
    seed: u64,
    cipher: Option<AesEcb>,
    stats: Arc<PushStats>,
    mut stop: watch::Receiver<bool>,
) -> (Pusher, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let url = push.url.clone();
    let http = crate::util::http_client()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a default HTTP client builds");
    let task_stats = stats.clone();
    let task = tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                _ = stop.changed() => break,
                e = rx.recv() => match e { Some(e) => e, None => break },
            };
            let body = match &cipher {
                Some(c) => json!({ "data": c.encrypt(event.to_string().as_bytes()) }),
                None => event,
            };
            // Each event on its own task: a slow receiver must not delay the next.
            let (http, url, stats) = (http.clone(), url.clone(), task_stats.clone());
            tokio::spawn(async move {
                let ok = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                let c = if ok { &stats.delivered } else { &stats.failed };
                c.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    let pusher = Pusher {
        tx,
        rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0f00_b00c),
        drop: push.drop,
        records: Vec::new(),
        stats,
    };
    (pusher, task)
}

fn result_of(v: &Value) -> Option<String> {
    v.get("kyc")?
        .get("result")?
        .as_str()
        .map(str::to_ascii_lowercase)
}

/// The event Argos would send for the change `prev` -> `new` (pure).
pub fn event_for(prev: Option<&Value>, new: &Value) -> Value {
    let result = result_of(new);
    let result_changed = prev.is_none_or(|p| result_of(p) != result);
    let trigger = if result_changed {
        match result.as_deref() {
            Some("approved") => "approved",
            Some("rejected") => "rejected",
            Some("pending") => "submit",
            _ if prev.is_none() => "created",
            _ => "updated",
        }
    } else if prev.is_some_and(|p| p.get("aml") != new.get("aml")) {
        "aml"
    } else {
        "updated"
    };
    let mut body = Map::new();
    body.insert("webhook_trigger".into(), json!(trigger));
    for k in ["submission_id", "email", "userid", "applicant_id"] {
        if let Some(v) = new.get(k).filter(|v| !v.is_null()) {
            body.insert(k.into(), v.clone());
        }
    }
    let data = new.get("data");
    let cf: Map<String, Value> = ["cf1", "cf2", "cf3"]
        .iter()
        .filter_map(|k| {
            data.and_then(|d| d.get(*k))
                .map(|v| ((*k).to_owned(), v.clone()))
        })
        .collect();
    body.insert("cf".into(), Value::Object(cf));
    if trigger == "aml" {
        let aml = new.get("aml");
        let mut a = Map::new();
        for k in ["currentstatus", "risk_level_summary"] {
            if let Some(v) = aml.and_then(|x| x.get(k)) {
                a.insert(k.into(), v.clone());
            }
        }
        body.insert("aml_result".into(), Value::Object(a));
    } else {
        let mut k = Map::new();
        if let Some(r) = new.get("kyc").and_then(|x| x.get("result")) {
            k.insert("status".into(), r.clone());
        }
        for f in [
            "created_at",
            "updated_at",
            "kyc_result_at",
            "pending_at",
            "reviewer",
        ] {
            if let Some(v) = new.get(f) {
                k.insert(f.into(), v.clone());
            }
        }
        if let Some(c) = new.get("kyc").and_then(|x| x.get("comment")) {
            k.insert("comment".into(), c.clone());
        }
        body.insert("kyc_result".into(), Value::Object(k));
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_what_changed() {
        let pending = json!({"submission_id": "s1", "email": "a@b.c", "data": {"cf1": "x"},
            "created_at": "2026-01-01-00-00-00-000", "kyc": {"result": "pending"}});
        let e = event_for(None, &pending);
        assert_eq!(
            e,
            json!({"webhook_trigger": "submit", "submission_id": "s1", "email": "a@b.c",
                "cf": {"cf1": "x"},
                "kyc_result": {"status": "pending", "created_at": "2026-01-01-00-00-00-000"}})
        );
        let mut rejected = pending.clone();
        rejected["kyc"] =
            json!({"result": "rejected", "comment": ["Multiple invalid KYC attempts"]});
        let e = event_for(Some(&pending), &rejected);
        assert_eq!(e["webhook_trigger"], "rejected");
        assert_eq!(
            e["kyc_result"]["comment"],
            json!(["Multiple invalid KYC attempts"])
        );
        let mut flagged = rejected.clone();
        flagged["aml"] =
            json!({"currentstatus": "Red Flag", "risk_level_summary": "HIGH", "matches": []});
        let e = event_for(Some(&rejected), &flagged);
        assert_eq!(e["webhook_trigger"], "aml");
        assert_eq!(
            e["aml_result"],
            json!({"currentstatus": "Red Flag", "risk_level_summary": "HIGH"})
        );
        assert_eq!(
            event_for(Some(&flagged), &flagged)["webhook_trigger"],
            "updated"
        );
        assert_eq!(
            event_for(None, &json!({"submission_id": "s2"}))["webhook_trigger"],
            "created"
        );
    }

    #[test]
    fn what_the_simulator_sends_is_what_the_engine_reads() {
        let v = json!({"submission_id": "s1", "kyc": {"result": "approved"}});
        let e = event_for(None, &v);
        let parsed = crate::argos::webhook::parse(e.to_string().as_bytes(), None).unwrap();
        assert_eq!(parsed.submission_id, "s1");
        assert_eq!(parsed.trigger, crate::argos::webhook::Trigger::Approved);
    }
}

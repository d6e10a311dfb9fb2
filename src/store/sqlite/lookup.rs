//! [`LookupStore`] on SQLite.

use sqlx::Row;

use super::SqliteStore;
use crate::store::Result;
use crate::store::lifecycle::AlertState;
use crate::store::lookup::{
    AlertView, Candidate, LookupError, LookupStore, MAX_CANDIDATES, valid_prefix,
};

#[async_trait::async_trait]
impl LookupStore for SqliteStore {
    async fn resolve_fingerprint(
        &self,
        prefix: &str,
    ) -> Result<std::result::Result<String, LookupError>> {
        if !valid_prefix(prefix) {
            return Ok(Err(LookupError::BadPrefix(prefix.to_owned())));
        }
        let prefix = prefix.to_ascii_lowercase();
        // A range scan on the primary key: hex has no LIKE wildcards, but a
        // range also uses the index whatever the LIKE settings. `+fired_at`:
        // the few candidates are sorted, never found by walking the time
        // index (what the planner chose with statistics: seconds at 100k).
        let rows = sqlx::query(
            "SELECT fingerprint, rule_id, fired_at FROM alerts \
             WHERE fingerprint >= ?1 AND fingerprint < ?1 || 'g' ORDER BY +fired_at DESC LIMIT ?2",
        )
        .bind(&prefix)
        .bind((MAX_CANDIDATES + 1) as i64)
        .fetch_all(self.pool())
        .await?;
        let mut candidates: Vec<Candidate> = rows
            .into_iter()
            .map(|r| Candidate {
                fingerprint: r.get(0),
                rule: r.get(1),
                fired_at: r.get(2),
            })
            .collect();
        Ok(match candidates.len() {
            0 => Err(LookupError::NoSuchAlert(prefix)),
            1 => Ok(candidates.remove(0).fingerprint),
            _ => Err(LookupError::Ambiguous { prefix, candidates }),
        })
    }

    async fn alert_view(&self, fingerprint: &str) -> Result<Option<AlertView>> {
        let Some(r) = sqlx::query(
            "SELECT a.fingerprint, a.rule_id, a.severity, a.submission_id, a.group_key, a.event_time, \
             a.fired_at, COALESCE(s.state, 'open'), s.changed_by, s.changed_at, a.body \
             FROM alerts a LEFT JOIN alert_states s ON s.fingerprint = a.fingerprint WHERE a.fingerprint = ?",
        )
        .bind(fingerprint)
        .fetch_optional(self.pool())
        .await?
        else {
            return Ok(None);
        };
        let body: String = r.get(10);
        Ok(Some(AlertView {
            fingerprint: r.get(0),
            rule: r.get(1),
            severity: r.get(2),
            submission_id: r.get(3),
            group_key: r.get(4),
            event_time: r.get(5),
            fired_at: r.get(6),
            state: AlertState::parse(&r.get::<String, _>(7)).unwrap_or(AlertState::Open),
            changed_by: r.get(8),
            changed_at: r.get(9),
            alert: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        }))
    }
}

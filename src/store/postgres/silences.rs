//! Silences: matching alerts are recorded, not sent.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::PgStore;
use crate::store::prelude::*;
use crate::store::silences::{NewSilence, Silence};
use crate::store::{Result, StoreError, fmt_time, parse_time};

#[async_trait::async_trait]
impl SilenceStore for PgStore {
    async fn add_silence(&self, s: &NewSilence) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO silences (rule_id, matchers, reason, author, created_at, starts_at, ends_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(&s.rule)
        .bind(serde_json::to_string(&s.matchers).expect("a map serializes"))
        .bind(&s.reason)
        .bind(&s.author)
        .bind(fmt_time(Utc::now()))
        .bind(fmt_time(s.starts_at))
        .bind(fmt_time(s.ends_at))
        .fetch_one(&self.pool)
        .await?)
    }

    async fn silences(&self, now: DateTime<Utc>, include_expired: bool) -> Result<Vec<Silence>> {
        let rows = sqlx::query(
            "SELECT id, rule_id, matchers, reason, author, created_at, starts_at, ends_at \
             FROM silences WHERE $1 OR ends_at > $2 ORDER BY id DESC",
        )
        .bind(include_expired)
        .bind(fmt_time(now))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let m: String = r.get(2);
                let t = |i: usize, what| parse_time(what, &r.get::<String, _>(i));
                Ok(Silence {
                    id: r.get(0),
                    rule: r.get(1),
                    matchers: serde_json::from_str(&m).map_err(|e| StoreError::Corrupt {
                        what: "silences.matchers",
                        detail: e.to_string(),
                    })?,
                    reason: r.get(3),
                    author: r.get(4),
                    created_at: t(5, "silences.created_at")?,
                    starts_at: t(6, "silences.starts_at")?,
                    ends_at: t(7, "silences.ends_at")?,
                })
            })
            .collect()
    }

    async fn expire_silence(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        let n = sqlx::query("UPDATE silences SET ends_at = LEAST(ends_at, $1) WHERE id = $2")
            .bind(fmt_time(now))
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }
}

//! [`ShadowStore`] on PostgreSQL: shadow rules' alerts beside the live ones,
//! and the stored versions a backtest replays (also on a read-only
//! connection, [`PgStore::open_read_only`]).

use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use sqlx::{AssertSqlSafe, Row};

use super::PgStore;
use crate::store::shadow::{FiredAlert, ShadowCount, ShadowStore, StoredVersion, end_of_time};
use crate::store::{Result, fmt_time, parse_time};

const ALERT_SELECT: &str = "SELECT a.fingerprint, a.rule_id, a.submission_id, a.event_time, a.mode, \
     a.replaces, s.outcome FROM alerts a LEFT JOIN alert_states s ON s.fingerprint = a.fingerprint";

fn fired_alert(r: &sqlx::postgres::PgRow) -> Result<FiredAlert> {
    Ok(FiredAlert {
        fingerprint: r.get(0),
        rule: r.get(1),
        submission_id: r.get(2),
        event_time: parse_time("alerts.event_time", &r.get::<String, _>(3))?,
        mode: r.get(4),
        replaces: r.get(5),
        outcome: r.get(6),
    })
}

impl PgStore {
    async fn alerts_where(&self, filter: &str, a: String, b: String) -> Result<Vec<FiredAlert>> {
        let sql = format!("{ALERT_SELECT} WHERE {filter} ORDER BY a.event_time, a.fingerprint");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(a)
            .bind(b)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(fired_alert).collect()
    }
}

#[async_trait::async_trait]
impl ShadowStore for PgStore {
    async fn shadow_counts(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<ShadowCount>> {
        let rows = sqlx::query(
            "SELECT rule_id, MAX(replaces), COUNT(*) FROM alerts \
             WHERE mode = 'shadow' AND fired_at >= $1 AND fired_at < $2 GROUP BY rule_id ORDER BY rule_id",
        )
        .bind(fmt_time(start))
        .bind(fmt_time(end))
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| ShadowCount {
                rule: r.get(0),
                replaces: r.get(1),
                count: r.get::<i64, _>(2) as usize,
            })
            .collect())
    }

    async fn alerts_fired_since(&self, since: DateTime<Utc>) -> Result<Vec<FiredAlert>> {
        self.alerts_where(
            "a.fired_at >= $1 AND a.fired_at < $2",
            fmt_time(since),
            fmt_time(end_of_time()),
        )
        .await
    }

    async fn live_alerts_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<FiredAlert>> {
        self.alerts_where(
            "a.mode = 'live' AND a.event_time >= $1 AND a.event_time < $2",
            fmt_time(from),
            fmt_time(to),
        )
        .await
    }

    fn versions(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxStream<'_, Result<StoredVersion>> {
        // One scan sorted by the server, streamed.
        sqlx::query(
            "SELECT submission_id, raw FROM submission_versions \
             WHERE event_time >= $1 AND event_time < $2 ORDER BY event_time, submission_id",
        )
        .bind(fmt_time(from))
        .bind(fmt_time(to))
        .fetch(self.pool())
        .map(|row| {
            let r = row?;
            Ok(StoredVersion {
                submission_id: r.get(0),
                raw: r.get(1),
            })
        })
        .boxed()
    }
}

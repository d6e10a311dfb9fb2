//! [`HintStore`] on PostgreSQL: `ingest_hints`, written by standbys,
//! drained by the leader.

use sqlx::Row;

use super::{PgStore, insert_many};
use crate::store::hints::{HintStore, StoredHint};
use crate::store::{Result, fmt_time, parse_time};

#[async_trait::async_trait]
impl HintStore for PgStore {
    async fn add_hints(&self, hints: &[StoredHint]) -> Result<()> {
        if hints.is_empty() {
            return Ok(());
        }
        // Not fenced: a standby writes these, which is their purpose.
        let mut conn = self.pool.acquire().await?;
        insert_many(
            &mut conn,
            "INSERT INTO ingest_hints (submission_id, trigger, received_at)",
            3,
            "",
            hints,
            |q, h| {
                q.bind(h.submission_id.clone())
                    .bind(h.trigger.clone())
                    .bind(fmt_time(h.received_at))
            },
        )
        .await
    }

    async fn take_hints(&self, limit: i64) -> Result<Vec<StoredHint>> {
        let mut tx = self.write_tx().await?;
        // SKIP LOCKED: never waits on another taker (there is one leader,
        // but a deposed one may still be finishing).
        let rows = sqlx::query(
            "DELETE FROM ingest_hints WHERE id IN \
             (SELECT id FROM ingest_hints ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, submission_id, trigger, received_at",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok((
                    r.get::<i64, _>(0),
                    StoredHint {
                        submission_id: r.get(1),
                        trigger: r.get(2),
                        received_at: parse_time(
                            "ingest_hints.received_at",
                            &r.get::<String, _>(3),
                        )?,
                    },
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|(id, _)| *id);
        Ok(out.into_iter().map(|(_, h)| h).collect())
    }
}

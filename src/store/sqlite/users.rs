//! [`UserStore`] on SQLite: users, tokens, sessions and failed sign-ins
//! (the trait and its types are in `store::users`).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::SqliteStore;
use crate::store::users::{Credentials, SessionRow, UserRow, UserStore};
use crate::store::{Result, fmt_time};

#[async_trait::async_trait]
impl UserStore for SqliteStore {
    async fn add_user(&self, name: &str, role: &str, password_hash: Option<&str>) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(role)
        .bind(password_hash)
        .bind(fmt_time(Utc::now()))
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn users(&self) -> Result<Vec<UserRow>> {
        let rows = sqlx::query("SELECT name, role, disabled, created_at FROM users ORDER BY name")
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| UserRow {
                name: r.get(0),
                role: r.get(1),
                disabled: r.get::<i64, _>(2) != 0,
                created_at: r.get(3),
            })
            .collect())
    }

    async fn disable_user(&self, name: &str) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let n = sqlx::query("UPDATE users SET disabled = 1 WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM sessions WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM user_tokens WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn credentials(&self, name: &str) -> Result<Option<Credentials>> {
        let row = sqlx::query("SELECT role, password_hash, disabled FROM users WHERE name = ?")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| Credentials {
            role: r.get(0),
            password_hash: r.get(1),
            disabled: r.get::<i64, _>(2) != 0,
        }))
    }

    async fn add_token(&self, name: &str, token_hash: &str) -> Result<()> {
        sqlx::query("INSERT INTO user_tokens (token_hash, name, created_at) VALUES (?, ?, ?)")
            .bind(token_hash)
            .bind(name)
            .bind(fmt_time(Utc::now()))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn user_by_token(&self, token_hash: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query(
            "SELECT u.name, u.role FROM user_tokens t JOIN users u ON u.name = t.name \
             WHERE t.token_hash = ? AND u.disabled = 0",
        )
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    async fn create_session(
        &self,
        id_hash: &str,
        name: &str,
        role: &str,
        csrf: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let now = fmt_time(now);
        sqlx::query(
            "INSERT INTO sessions (id_hash, name, role, csrf, created_at, last_seen) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id_hash)
        .bind(name)
        .bind(role)
        .bind(csrf)
        .bind(&now)
        .bind(&now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn session(&self, id_hash: &str) -> Result<Option<SessionRow>> {
        let row = sqlx::query(
            "SELECT s.name, s.role, s.csrf, s.created_at, s.last_seen FROM sessions s \
             LEFT JOIN users u ON u.name = s.name WHERE s.id_hash = ? AND COALESCE(u.disabled, 0) = 0",
        )
        .bind(id_hash)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| SessionRow {
            name: r.get(0),
            role: r.get(1),
            csrf: r.get(2),
            created_at: r.get(3),
            last_seen: r.get(4),
        }))
    }

    async fn touch_session(&self, id_hash: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_seen = ? WHERE id_hash = ?")
            .bind(fmt_time(now))
            .bind(id_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn end_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = ?")
            .bind(id_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn record_login_failure(&self, keys: &[String], now: DateTime<Utc>) -> Result<()> {
        let now = fmt_time(now);
        let mut tx = self.write_tx().await?;
        for k in keys {
            sqlx::query("INSERT INTO login_failures (key, at) VALUES (?, ?)")
                .bind(k)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
        }
        // Old failures say nothing any more: keep the table small.
        sqlx::query("DELETE FROM login_failures WHERE at < ?")
            .bind(fmt_time(Utc::now() - chrono::Duration::days(1)))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn login_failures(&self, key: &str, since: DateTime<Utc>) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM login_failures WHERE key = ? AND at >= ?")
                .bind(key)
                .bind(fmt_time(since))
                .fetch_one(self.pool())
                .await?,
        )
    }
}

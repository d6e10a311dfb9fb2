//! People: local users, their API tokens, console sessions and failed
//! sign-ins (issue 17). The store keeps hashes only: an argon2id string per
//! password, SHA-256 of each token and session id; the secrets themselves
//! never reach the file.

use super::Result;
use chrono::{DateTime, Utc};

/// A user as `users list` shows it (no hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserRow {
    pub name: String,
    pub role: String,
    pub disabled: bool,
    pub created_at: String,
}

/// What signing in needs: the role and the password hash.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub role: String,
    pub password_hash: Option<String>,
    pub disabled: bool,
}

/// A console session as stored.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub name: String,
    pub role: String,
    pub csrf: String,
    pub created_at: String,
    pub last_seen: String,
}

#[async_trait::async_trait]
pub trait UserStore: Send + Sync {
    /// Adds a user; false when the name is taken.
    async fn add_user(&self, name: &str, role: &str, password_hash: Option<&str>) -> Result<bool>;
    async fn users(&self) -> Result<Vec<UserRow>>;
    /// Disables a user and ends their sessions and tokens; false when unknown.
    async fn disable_user(&self, name: &str) -> Result<bool>;
    async fn credentials(&self, name: &str) -> Result<Option<Credentials>>;
    async fn add_token(&self, name: &str, token_hash: &str) -> Result<()>;
    /// The enabled user holding this token: (name, role).
    async fn user_by_token(&self, token_hash: &str) -> Result<Option<(String, String)>>;
    async fn create_session(
        &self,
        id_hash: &str,
        name: &str,
        role: &str,
        csrf: &str,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// A session whose user is not disabled (a proxy user has no row: allowed).
    async fn session(&self, id_hash: &str) -> Result<Option<SessionRow>>;
    async fn touch_session(&self, id_hash: &str, now: DateTime<Utc>) -> Result<()>;
    async fn end_session(&self, id_hash: &str) -> Result<()>;
    async fn record_login_failure(&self, keys: &[String], now: DateTime<Utc>) -> Result<()>;
    /// Failures under `key` since `since`.
    async fn login_failures(&self, key: &str, since: DateTime<Utc>) -> Result<i64>;
}

//! Who is acting: roles, identities, password and token hashing.
//!
//! Passwords are argon2id (the crate's defaults: 19 MiB, 2 passes); tokens
//! and session ids are 32 random bytes, kept as SHA-256.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};

/// What a person may do. Ordered: each role may do all the one before may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads, masked.
    Viewer,
    /// Assigns, acknowledges, notes, resolves non-critical alerts.
    Analyst,
    /// Also resolves critical alerts, reopens, approves, silences, reveals.
    Lead,
    /// Also manages users.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "analyst" => Some(Role::Analyst),
            "lead" => Some(Role::Lead),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Lead => "lead",
            Role::Admin => "admin",
        }
    }
}

/// The name recorded for the shared `api.token`.
pub const SERVICE: &str = "service";

/// An authenticated person (or the service token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
}

impl Identity {
    /// The shared `api.token`: may do what a lead may (as before users existed).
    pub fn service() -> Identity {
        Identity {
            name: SERVICE.into(),
            role: Role::Lead,
        }
    }

    pub fn may(&self, need: Role) -> bool {
        self.role >= need
    }
}

/// The role an action on an alert of `severity` needs.
pub fn role_to_resolve(severity: &str) -> Role {
    if severity.eq_ignore_ascii_case("critical") {
        Role::Lead
    } else {
        Role::Analyst
    }
}

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| anyhow::anyhow!("password salt: {e}"))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("password hash: {e}"))
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A fresh secret: 32 random bytes as hex (token, session id, CSRF token).
pub fn new_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_roles() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(Role::Lead > Role::Analyst && Role::Admin > Role::Lead);
        assert_eq!(role_to_resolve("critical"), Role::Lead);
        assert_eq!(role_to_resolve("high"), Role::Analyst);
        assert_ne!(new_secret(), new_secret());
    }
}

//! sqlx's errors, turned into the backend-neutral [`StoreError`] for both
//! sqlx backends (SQLite and PostgreSQL); no driver type leaves `store`.

use super::StoreError;

/// Which backend raised a statement's error; errors before any database
/// answered (pool timeout, I/O) name the driver.
fn backend_of(e: &sqlx::Error) -> &'static str {
    match e.as_database_error() {
        Some(d)
            if d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some() =>
        {
            "postgres"
        }
        Some(_) => "sqlite",
        None => "sqlx",
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Backend {
            backend: backend_of(&e),
            message: e.to_string(),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e.to_string())
    }
}

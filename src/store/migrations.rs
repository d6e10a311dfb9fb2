//! The schema migrations of both backends, embedded in the binary.
//!
//! Listed here by hand rather than with `sqlx::migrate!`: that macro needs
//! sqlx's `macros` feature, which compiles sqlx, SQLite's C source and the
//! PostgreSQL driver a second time for the build host (minutes of every fresh
//! CI build). Versions, descriptions and checksums are what the macro made of
//! the same files, so databases it migrated carry on. `tests/it/migrations.rs`
//! keeps each list equal to its directory and to what the macro recorded.

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// `(file name, SQL)` of one migration file.
type File = (&'static str, &'static str);

macro_rules! files {
    ($dir:literal: $($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../migrations/", $dir, $name)))),*]
    };
}

/// `migrations/*.sql`, oldest first.
pub const SQLITE: &[File] = files!("":
    "0001_init.sql",
    "0002_notify.sql",
    "0003_ingest.sql",
    "0004_lifecycle.sql",
    "0005_digests.sql",
    "0006_escalation.sql",
    "0007_indexes.sql",
    "0008_evidence.sql",
    "0009_shadow.sql",
    "0010_console.sql",
    "0011_inbox.sql",
);

/// `migrations/postgres/*.sql`, oldest first.
pub const POSTGRES: &[File] = files!("postgres/":
    "0001_init.sql",
    "0002_leadership.sql",
    "0003_hints.sql",
    "0004_shadow.sql",
    "0005_console.sql",
);

/// A migrator over `files`, named and checksummed as `sqlx::migrate!` would.
pub fn migrator(files: &'static [File]) -> Migrator {
    Migrator::with_migrations(
        files
            .iter()
            .map(|&(name, sql)| migration(name, sql))
            .collect(),
    )
}

fn migration(name: &'static str, sql: &'static str) -> Migration {
    // `NNNN_some_words.sql`: version NNNN, description "some words".
    let (version, rest) = name
        .split_once('_')
        .expect("migration file name NNNN_words.sql");
    let version = version
        .parse()
        .expect("migration file name starts with a number");
    let description = rest.trim_end_matches(".sql").replace('_', " ");
    let no_tx = sql.starts_with("-- no-transaction");
    Migration::new(
        version,
        description.into(),
        MigrationType::Simple,
        sql.into_sql_str(),
        no_tx,
    )
}

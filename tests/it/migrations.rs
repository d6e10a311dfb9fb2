//! The embedded migration lists (`src/store/migrations.rs`) against two
//! independent sources: the `migrations/` directories, and the rows
//! `sqlx::migrate!` wrote into stores it migrated (tests/fixtures/migrations,
//! read off stores made by the last binary built with the macro). A store in
//! the field refuses to open if a checksum or description differs.

use std::path::Path;

use kyc_sentinel::store::migrations::{self, POSTGRES, SQLITE};

fn sql_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".sql"))
        .collect();
    names.sort();
    names
}

fn listed(files: &[(&str, &str)]) -> Vec<String> {
    files.iter().map(|(name, _)| name.to_string()).collect()
}

#[test]
fn every_migration_file_is_embedded_in_order() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    assert_eq!(
        listed(SQLITE),
        sql_files(&root),
        "src/store/migrations.rs SQLITE vs migrations/"
    );
    assert_eq!(
        listed(POSTGRES),
        sql_files(&root.join("postgres")),
        "src/store/migrations.rs POSTGRES vs migrations/postgres/"
    );
}

#[test]
fn versions_descriptions_and_checksums_match_what_the_macro_recorded() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/migrations");
    for (files, fixture) in [(SQLITE, "sqlite.tsv"), (POSTGRES, "postgres.tsv")] {
        let recorded = std::fs::read_to_string(fixtures.join(fixture)).expect("fixture");
        let migrator = migrations::migrator(files);
        let ours: Vec<String> = migrator
            .iter()
            .map(|m| {
                format!(
                    "{}\t{}\t{}",
                    m.version,
                    m.description,
                    hex::encode_upper(&m.checksum)
                )
            })
            .collect();
        let rows: Vec<&str> = recorded.lines().filter(|l| !l.is_empty()).collect();
        assert!(rows.len() >= 4, "{fixture}: too few rows");
        // Migrations added after the fixture was made have no row; every row must match.
        assert_eq!(&ours[..rows.len()], &rows[..], "{fixture}");
    }
}

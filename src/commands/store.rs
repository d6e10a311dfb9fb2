//! `kyc-sentinel store migrate --from sqlite:PATH --to postgres://...`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::cli::StoreCommand;
use crate::store::postgres::{copy::copy_sqlite, redact_url};
use crate::store::{PgStore, SqliteStore};

pub fn run(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StoreCommand::Migrate { from, to } => migrate(&from, &to),
    }
}

fn migrate(from: &str, to: &str) -> anyhow::Result<ExitCode> {
    let Some(path) = from.strip_prefix("sqlite:") else {
        bail!("--from: expected `sqlite:PATH` (the SQLite store to copy)");
    };
    let path = PathBuf::from(path);
    if !path.is_file() {
        bail!("--from: {}: no such SQLite store", path.display());
    }
    let shown = redact_url(to);
    let rt = tokio::runtime::Runtime::new()?;
    let copied = rt.block_on(async {
        let src = SqliteStore::open(&path)
            .await
            .with_context(|| format!("--from {}", path.display()))?;
        let dst = PgStore::open(to)
            .await
            .with_context(|| format!("--to {shown}"))?;
        copy_sqlite(&src, &dst)
            .await
            .with_context(|| format!("store migrate {} -> {shown}", path.display()))
    })?;
    let rows: i64 = copied.iter().map(|c| c.postgres).sum();
    for c in &copied {
        println!("{:<22} {:>9} rows", c.table, c.postgres);
    }
    println!(
        "copied {} tables, {rows} rows, from {} to {shown}; every table's count verified",
        copied.len(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

//! A throwaway PostgreSQL for tests: `initdb` into a temp dir, `pg_ctl start`
//! on a free port (Unix socket in the same dir), a database per test.
//!
//! Debian's `postgresql` package provides the binaries (`scripts/test`
//! installs it); they are looked up on `PATH`, then under
//! `/usr/lib/postgresql/*/bin`. `initdb` refuses to run as root, so as root
//! the cluster belongs to the `postgres` system user (`runuser`).
//!
//! With `KYC_SENTINEL_PG=1` (set by `scripts/test`) a test that cannot get a
//! cluster fails; without it, it is skipped with a message.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A running cluster; stopped (immediately) when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

/// The superuser `initdb` creates (`-U`), trusted on 127.0.0.1.
pub const SUPERUSER: &str = "postgres";

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The directory holding `initdb` and `pg_ctl`.
fn find_bin() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("KYC_SENTINEL_PG_BIN") {
        return Ok(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    for dir in on_path {
        if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
            // Often a symlink (/usr/local/bin -> /usr/lib/postgresql/N/bin):
            // the real directory also holds psql and postgres.
            let real = std::fs::canonicalize(dir.join("initdb"))
                .map_err(|e| format!("{}: {e}", dir.join("initdb").display()))?;
            return Ok(real.parent().unwrap_or(&dir).to_path_buf());
        }
    }
    // Debian keeps them off PATH, one directory per major version: the newest.
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("no initdb on PATH and /usr/lib/postgresql: {e}"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, b)| b)
        .ok_or_else(|| "no initdb on PATH nor under /usr/lib/postgresql/*/bin".into())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl Cluster {
    /// A fresh cluster of its own.
    pub fn start() -> Result<Cluster, String> {
        let bin = find_bin()?;
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("kyc-sentinel-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir for the cluster: {e}"))?;
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()))?;
        }
        let mut c = Cluster {
            dir,
            bin,
            port: 0,
            as_postgres,
        };
        let data = c.data_dir();
        c.pg_command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .map_err(|e| format!("initdb: {e}"))
            .and_then(checked("initdb"))?;
        // A port may be taken between choosing and binding it: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            c.port = free_port();
            let opts = format!(
                "-F -p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100 \
                 -c full_page_writes=off -c synchronous_commit=off",
                c.port,
                c.dir.path().display()
            );
            let out = c
                .pg_command("pg_ctl")
                .args(["start", "-w", "-t", "30", "-D"])
                .arg(&data)
                .args(["-l"])
                .arg(c.dir.path().join("log"))
                .args(["-o", &opts])
                .output()
                .map_err(|e| format!("pg_ctl start: {e}"))?;
            if out.status.success() {
                return Ok(c);
            }
            last = format!(
                "pg_ctl start: {}; server log: {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                std::fs::read_to_string(c.dir.path().join("log")).unwrap_or_default()
            );
        }
        Err(last)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A PostgreSQL binary, run as the cluster's owner.
    fn pg_command(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs one SQL statement through `psql` on database `postgres`.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url("postgres"))
            .args(["-c", sql])
            .output()
            .map_err(|e| format!("psql: {e}"))
            .and_then(checked("psql"))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// A new, empty database, dropped with the value.
    pub fn database(&self, prefix: &str) -> Database<'_> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        self.psql(&format!("CREATE DATABASE \"{name}\""))
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        Database {
            cluster: self,
            name,
        }
    }

    fn stop(&self) {
        let _ = self
            .pg_command("pg_ctl")
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(self.data_dir())
            .output();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Database<'c> {
    pub cluster: &'c Cluster,
    pub name: String,
}

impl Database<'_> {
    pub fn url(&self) -> String {
        self.cluster.url(&self.name)
    }
}

impl Drop for Database<'_> {
    fn drop(&mut self) {
        // WITH (FORCE): a test's pool may still hold connections.
        let _ = self.cluster.psql(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ));
    }
}

fn checked(what: &'static str) -> impl Fn(Output) -> Result<Output, String> {
    move |out| {
        if out.status.success() {
            Ok(out)
        } else {
            Err(format!(
                "{what} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    cmd.output()
        .map_err(|e| format!("{cmd:?}: {e}"))
        .and_then(checked("command"))
        .map(|_| ())
}

/// Whether the tests must have PostgreSQL (`KYC_SENTINEL_PG=1`).
fn required() -> bool {
    std::env::var("KYC_SENTINEL_PG").is_ok_and(|v| v == "1")
}

/// The cluster shared by this test binary's tests (each takes its own
/// database), started on first use and stopped when the process exits.
/// `None` (with a message) when PostgreSQL is not available and not required.
pub fn shared() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    let c = CLUSTER.get_or_init(|| {
        let c = Cluster::start();
        if c.is_ok() {
            // Statics are never dropped: stop the server when the test
            // binary exits (the harness ends with `exit`, which runs these).
            extern "C" fn stop_shared() {
                if let Some(Ok(c)) = CLUSTER.get() {
                    c.stop();
                    let _ = std::fs::remove_dir_all(c.dir());
                }
            }
            // SAFETY: registers a plain function; it only runs pg_ctl.
            unsafe { libc::atexit(stop_shared) };
        }
        c
    });
    match c {
        Ok(c) => Some(c),
        Err(e) if required() => panic!("KYC_SENTINEL_PG=1 but no PostgreSQL could be started: {e}"),
        Err(e) => {
            eprintln!("skipped: no PostgreSQL ({e}); scripts/test installs it (KYC_SENTINEL_PG=1)");
            None
        }
    }
}

/// A fresh database on the shared cluster, or return from the test (skipped).
#[macro_export]
macro_rules! pg_database_or_skip {
    ($prefix:expr) => {
        match $crate::common::pg::shared() {
            Some(c) => c.database($prefix),
            None => return,
        }
    };
}

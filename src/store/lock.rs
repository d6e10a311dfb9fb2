//! One engine per store: `run` and `backfill` hold an exclusive lock on
//! `<store>.lock` while they work.
//!
//! Two pipelines on one store would each keep their own window state in
//! memory and decide the same submissions twice. The lock is an OS file lock
//! (`flock`), so it goes away with its process, however that process ends: a
//! lock file left behind by a crash is stale by construction and is taken
//! over (and said so). The file's text names the holder (pid, host, command,
//! start time), so a refused start can say who is in the way.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Held while the engine runs; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct InstanceLock {
    file: File,
    path: PathBuf,
}

/// `<store path>.lock`.
pub fn lock_path(store: &Path) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown host".into())
}

/// The holder as the lock file describes it, on one line.
fn describe(text: &str) -> String {
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .unwrap_or("?")
            .to_owned()
    };
    format!(
        "pid {} on host {}, `{}` since {}",
        field("pid"),
        field("host"),
        field("command"),
        field("started")
    )
}

/// `flock(LOCK_EX | LOCK_NB)`: false when another open file holds it.
/// (`File::try_lock` does the same from Rust 1.89, above this crate's MSRV.)
fn try_flock(file: &File) -> std::io::Result<bool> {
    // SAFETY: flock on a descriptor this `File` owns and keeps open.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(e)
    }
}

impl InstanceLock {
    /// The lock of a SQLite store; `None` for PostgreSQL, where several
    /// instances share the database and leadership decides who acts
    /// (`crate::ha`).
    pub fn for_store(
        store: &crate::config::StoreConfig,
        command: &str,
    ) -> anyhow::Result<Option<Self>> {
        match &store.url {
            Some(_) => Ok(None),
            None => Self::acquire(&store.path, command).map(Some),
        }
    }

    /// Takes the lock of the store at `store` for `command` (`run`,
    /// `backfill`), or says which process holds it.
    pub fn acquire(store: &Path, command: &str) -> anyhow::Result<Self> {
        let path = lock_path(store);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open the lock file {}: {e}", path.display()))?;
        let mut previous = String::new();
        let _ = file.read_to_string(&mut previous);
        match try_flock(&file) {
            Ok(true) => {}
            Ok(false) => anyhow::bail!(
                "another kyc-sentinel is using the store {} ({}); stop it first, or give this one \
                 its own store.path (lock file {})",
                store.display(),
                describe(&previous),
                path.display()
            ),
            Err(e) => anyhow::bail!("cannot lock {}: {e}", path.display()),
        }
        if !previous.trim().is_empty() {
            // Its process ended without releasing (a crash, a kill -9): the OS
            // dropped the lock, only the text remained.
            tracing::warn!(
                "stale lock of the store taken over: the previous holder ({}) is gone",
                describe(&previous)
            );
        }
        let me = format!(
            "pid={}\nhost={}\ncommand={command}\nstarted={}\n",
            std::process::id(),
            host_name(),
            crate::store::fmt_time(chrono::Utc::now())
        );
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(me.as_bytes())?;
        file.sync_data()?;
        Ok(Self { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InstanceLock {
    /// A clean stop empties the file, so the next start does not call it stale.
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_named_and_a_stale_file_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("state.db");
        let first = InstanceLock::acquire(&store, "run").unwrap();
        let err = InstanceLock::acquire(&store, "backfill")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())) && err.contains("`run` since"),
            "{err}"
        );
        drop(first);
        assert_eq!(std::fs::read_to_string(lock_path(&store)).unwrap(), "");
        // A crashed holder leaves its text but not its lock.
        std::fs::write(
            lock_path(&store),
            "pid=999999\nhost=elsewhere\ncommand=run\nstarted=x\n",
        )
        .unwrap();
        let again = InstanceLock::acquire(&store, "run").unwrap();
        let text = std::fs::read_to_string(again.path()).unwrap();
        assert!(text.starts_with(&format!("pid={}\n", std::process::id())));
    }
}

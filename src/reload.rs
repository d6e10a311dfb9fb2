//! Hot reload: the rules are re-read on SIGHUP and when their files change.
//!
//! A change is acted on once the folder has stayed the same for one more
//! check (debounce), so an editor's save-as-rename or `git checkout` of many
//! files yields one reload. The reload itself is done by the daemon loop,
//! between polls: a broken set is refused with its errors and the running set
//! stays in force.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

/// Why a reload was asked for (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadReason {
    Signal,
    FilesChanged,
}

impl std::fmt::Display for ReloadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReloadReason::Signal => "SIGHUP",
            ReloadReason::FilesChanged => "rule or template files changed",
        })
    }
}

/// What identifies the folders' content cheaply: names, sizes, mtimes.
fn snapshot(dirs: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(m) = e.metadata() {
                out.push((e.path(), m.len(), m.modified().ok()));
            }
        }
    }
    out.sort();
    out
}

/// Starts watching `dirs` (rules, templates) every `period` (if given) and SIGHUP (when
/// `signals`); the receiver gets one message per reload to do.
pub fn watch(
    dirs: Vec<PathBuf>,
    period: Option<Duration>,
    signals: bool,
) -> mpsc::Receiver<ReloadReason> {
    let (tx, rx) = mpsc::channel(4);
    if signals {
        let tx = tx.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                tracing::error!("cannot install the SIGHUP handler; reload on file change only");
                return;
            };
            while hup.recv().await.is_some() {
                if tx.send(ReloadReason::Signal).await.is_err() {
                    break;
                }
            }
        });
    }
    let Some(period) = period else {
        return rx;
    };
    tokio::spawn(async move {
        let mut current = snapshot(&dirs);
        let mut pending: Option<Vec<_>> = None;
        loop {
            tokio::time::sleep(period).await;
            let now = snapshot(&dirs);
            match &pending {
                // Changed, then unchanged for one period: settled.
                Some(p) if *p == now => {
                    pending = None;
                    current = now;
                    if tx.send(ReloadReason::FilesChanged).await.is_err() {
                        break;
                    }
                }
                _ if now != current => pending = Some(now),
                _ => pending = None,
            }
            if tx.is_closed() {
                break;
            }
        }
    });
    rx
}

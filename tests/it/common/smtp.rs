//! A real SMTP server for the tests: aiosmtpd (tests/support/smtp_sink.py),
//! each message saved as `accepted-NNNN.eml` (or `refused-NNNN.eml`) and read
//! back with Python's MIME parser.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::repo;

/// An aiosmtpd process; killed when dropped.
pub struct Smtp {
    child: Child,
    pub port: u16,
    pub folder: PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Smtp {
    /// Starts the sink on a free port, saving into `dir/smtp`; `extra` are
    /// smtp_sink.py's options (`--fail-first N`, `--tlscert`, `--auth`).
    pub fn start(dir: &Path, extra: &[&str]) -> Smtp {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let folder = dir.join("smtp");
        std::fs::create_dir_all(&folder).unwrap();
        let mut child = Command::new(python_with_aiosmtpd())
            .arg(repo().join("tests/support/smtp_sink.py"))
            .args(["--port", &port.to_string(), "--folder"])
            .arg(&folder)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "READY", "aiosmtpd did not start");
        Smtp {
            child,
            port,
            folder,
        }
    }

    /// The saved files of one kind (`accepted` or `refused`), in arrival order.
    pub fn files(&self, kind: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(kind) && n.ends_with(".eml"))
            })
            .collect();
        files.sort();
        files
    }

    /// The saved messages of one kind, parsed.
    pub fn messages(&self, kind: &str) -> Vec<Value> {
        self.files(kind).iter().map(|f| parse_eml(f)).collect()
    }
}

/// One `.eml` file as JSON: from, to, cc, subject, message_id, parts, text, html.
pub fn parse_eml(path: &Path) -> Value {
    let out = Command::new("python3")
        .arg(repo().join("tests/support/parse_eml.py"))
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A Python with aiosmtpd: `KYC_SENTINEL_PYTHON` (set by scripts/test), the
/// repository's `.venv`, or a virtualenv this creates under the target folder.
pub fn python_with_aiosmtpd() -> PathBuf {
    static PY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        let has = |py: &Path| {
            Command::new(py)
                .args(["-c", "import aiosmtpd"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if let Ok(p) = std::env::var("KYC_SENTINEL_PYTHON") {
            let p = PathBuf::from(p);
            assert!(
                has(&p),
                "KYC_SENTINEL_PYTHON={} cannot import aiosmtpd",
                p.display()
            );
            return p;
        }
        let repo_venv = repo().join(".venv/bin/python");
        if has(&repo_venv) {
            return repo_venv;
        }
        let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("aiosmtpd-venv");
        let py = venv.join("bin/python");
        if !has(&py) {
            let ok = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success())
                && Command::new(venv.join("bin/pip"))
                    .args([
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        "aiosmtpd>=1.4,<2",
                    ])
                    .status()
                    .is_ok_and(|s| s.success());
            assert!(
                ok,
                "could not create a virtualenv with aiosmtpd in {}",
                venv.display()
            );
        }
        py
    })
    .clone()
}

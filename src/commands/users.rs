//! `kyc-sentinel users add|token|list|disable`: console users in the store.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use crate::cli::{StoreLocation, UsersArgs, UsersCommand};
use crate::console::identity::{Role, hash_password, new_secret, sha256_hex};
use std::sync::Arc;

use crate::store::users::UserStore;

pub fn run(a: UsersArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        match a.command {
            UsersCommand::Add {
                at,
                name,
                role,
                password_stdin,
            } => add(&at, &name, &role, password_stdin).await,
            UsersCommand::Token { at, name } => token(&at, &name).await,
            UsersCommand::List { at } => list(&at).await,
            UsersCommand::Disable { at, name } => disable(&at, &name).await,
        }
    })
}

/// The store, created if needed: users are often added before the first run.
/// On PostgreSQL every instance sees the same users.
async fn open(at: &StoreLocation) -> anyhow::Result<Arc<dyn UserStore>> {
    let cfg = super::silence::store_config(at)?;
    let store = crate::store::open(&cfg).await?;
    let (_, users) = store
        .console_roles()
        .ok_or_else(|| anyhow::anyhow!("this store backend keeps no console users yet"))?;
    Ok(users)
}

async fn add(at: &StoreLocation, name: &str, role: &str, stdin: bool) -> anyhow::Result<ExitCode> {
    crate::util::check_name(name).map_err(|e| anyhow::anyhow!("user name: {e}"))?;
    let Some(role) = Role::parse(role) else {
        anyhow::bail!("--role `{role}`: use viewer, analyst, lead or admin");
    };
    let password = read_password(stdin)?;
    anyhow::ensure!(
        password.chars().count() >= 12,
        "password: at least 12 characters"
    );
    let store = open(at).await?;
    let hash = hash_password(&password)?;
    if !store.add_user(name, role.as_str(), Some(&hash)).await? {
        eprintln!("error: user `{name}` exists already");
        return Ok(ExitCode::from(1));
    }
    println!("user {name} added ({})", role.as_str());
    Ok(ExitCode::SUCCESS)
}

/// One line from stdin (`--password-stdin`), or a prompt without echo.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let tty = !from_stdin && stdin.is_terminal();
    if !from_stdin && !tty {
        anyhow::bail!("password: no terminal to prompt on; use --password-stdin");
    }
    if tty {
        eprint!("Password: ");
        std::io::stderr().flush()?;
    }
    let _echo = tty.then(EchoOff::new);
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    if tty {
        eprintln!();
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Turns terminal echo off until dropped.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> EchoOff {
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return EchoOff(None);
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            libc::tcsetattr(0, libc::TCSANOW, &t);
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            // SAFETY: restores the settings read in `new`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, t);
            }
        }
    }
}

async fn token(at: &StoreLocation, name: &str) -> anyhow::Result<ExitCode> {
    let store = open(at).await?;
    match store.credentials(name).await? {
        Some(c) if !c.disabled => {}
        _ => {
            eprintln!("error: no enabled user `{name}`");
            return Ok(ExitCode::from(1));
        }
    }
    let token = format!("kss_{}", new_secret());
    store.add_token(name, &sha256_hex(&token)).await?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

async fn list(at: &StoreLocation) -> anyhow::Result<ExitCode> {
    let store = open(at).await?;
    for u in store.users().await? {
        let state = if u.disabled { "disabled" } else { "enabled" };
        println!("{}\t{}\t{state}\t{}", u.name, u.role, u.created_at);
    }
    Ok(ExitCode::SUCCESS)
}

async fn disable(at: &StoreLocation, name: &str) -> anyhow::Result<ExitCode> {
    let store = open(at).await?;
    if !store.disable_user(name).await? {
        eprintln!("error: no user `{name}`");
        return Ok(ExitCode::from(1));
    }
    println!("user {name} disabled; their sessions and tokens ended");
    Ok(ExitCode::SUCCESS)
}

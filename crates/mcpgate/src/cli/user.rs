//! `mcpgate user`.

use super::authserver::require_authorization_server;
use super::*;

/// Passwords come only from standard input: arguments end up in shell
/// history and in the process list (`ps`), environment variables in
/// `/proc/PID/environ` and crash reports.
fn require_password_stdin(given: bool, command: &str, name: &str) -> anyhow::Result<()> {
    if !given {
        bail!(
            "pass --password-stdin and write the password to standard input, e.g.\n  \
             mcpgate user {command} {name} --config FILE --password-stdin < password-file\n\
             (passwords are never taken from the command line, where shell history and `ps` would show them)"
        );
    }
    Ok(())
}

fn check_username(name: &str) -> anyhow::Result<()> {
    if !mcpgate_store::valid_username(name) {
        bail!(
            "username {name:?}: use 1 to {} characters of A-Z a-z 0-9 . _ @ -",
            mcpgate_store::MAX_USERNAME_LEN
        );
    }
    Ok(())
}

/// Reads one line from standard input (the trailing `\n` or `\r\n` is
/// not part of the password), checks the length rules and hashes it.
fn read_password_hash() -> anyhow::Result<String> {
    use mcpgate_crypto::password;
    use std::io::{BufRead as _, IsTerminal as _, Read as _};

    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("Password (one line; it is shown as typed, pipe it in to avoid that):");
    }
    // Room for the longest password and a CRLF, plus one byte so that a
    // longer one is seen as too long rather than silently cut. Allocated
    // once, so no copy of the password is left behind by a reallocation.
    let limit = password::MAX_BYTES + 3;
    let mut line = zeroize::Zeroizing::new(Vec::with_capacity(limit));
    let read = stdin
        .lock()
        .take(limit as u64)
        .read_until(b'\n', &mut line)
        .context("reading the password from standard input")?;
    if read == 0 {
        bail!("no password on standard input (--password-stdin reads one line)");
    }
    let pw = line.strip_suffix(b"\n").unwrap_or(&line);
    let pw = pw.strip_suffix(b"\r").unwrap_or(pw);
    if pw.len() > password::MAX_BYTES {
        return Err(password::PasswordError::TooLong.into());
    }
    let pw = std::str::from_utf8(pw).map_err(|_| anyhow::anyhow!("the password must be UTF-8"))?;
    Ok(password::hash_password(pw)?)
}

pub(super) async fn user(cmd: UserCommand) -> anyhow::Result<()> {
    let now = mcpgate_gateway::authn::now() as i64;
    match cmd {
        UserCommand::Add {
            common,
            name,
            password_stdin,
        } => {
            let cfg = load(&common.config)?;
            require_authorization_server(&cfg, &common.config)?;
            require_password_stdin(password_stdin, "add", &name)?;
            check_username(&name)?;
            let store = open_store(&cfg).await?;
            if store.user(DEFAULT_TENANT, &name).await?.is_some() {
                bail!("user {name:?} already exists (see `mcpgate user list`)");
            }
            let password_hash = read_password_hash()?;
            let rec = UserRecord {
                tenant_id: DEFAULT_TENANT.into(),
                username: name.clone(),
                password_hash,
                created_at: now,
                disabled_at: None,
                password_changed_at: now,
                failed_logins: 0,
                locked_until: None,
                last_login_at: None,
            };
            match store.insert_user(&rec).await {
                Ok(()) => {}
                // Another process added it since, or it differs only in case.
                Err(StoreError::Duplicate) => bail!(
                    "user {name:?} already exists, or one whose name differs only in case (see `mcpgate user list`)"
                ),
                Err(e) => return Err(e.into()),
            }
            super::audit::record_admin(
                &cfg,
                super::audit::admin_event(mcpgate_audit::EventKind::UserCreated).subject(&name),
            )
            .await?;
            if common.json {
                println!("{}", json!({"username": name, "created_at": now}));
            } else {
                println!("added user {name}");
            }
            Ok(())
        }
        UserCommand::List { common } => {
            // Works with the authorization server off: inspecting accounts
            // (or disabling one) must never be blocked.
            let cfg = load(&common.config)?;
            let store = open_store(&cfg).await?;
            let users = store.list_users(DEFAULT_TENANT).await?;
            let state = |u: &UserRecord| {
                if u.disabled_at.is_some() {
                    "disabled"
                } else if u.locked_until.is_some_and(|l| l > now) {
                    "locked"
                } else {
                    "active"
                }
            };
            if common.json {
                let v: Vec<_> = users
                    .iter()
                    .map(|u| {
                        json!({
                            "username": u.username, "state": state(u), "created_at": u.created_at,
                            "disabled_at": u.disabled_at,
                            "locked": u.locked_until.is_some_and(|l| l > now),
                            "locked_until": u.locked_until, "failed_logins": u.failed_logins,
                            "password_changed_at": u.password_changed_at,
                            "last_login_at": u.last_login_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else if users.is_empty() {
                println!("no users (add one with `mcpgate user add NAME --password-stdin`)");
            } else {
                println!(
                    "{:<32} {:<8} {:<12} {:<12} LOCKED UNTIL",
                    "USERNAME", "STATE", "CREATED", "DISABLED"
                );
                let time = |t: Option<i64>| t.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
                for u in &users {
                    println!(
                        "{:<32} {:<8} {:<12} {:<12} {}",
                        u.username,
                        state(u),
                        u.created_at,
                        time(u.disabled_at),
                        time(u.locked_until.filter(|&l| l > now)),
                    );
                }
            }
            Ok(())
        }
        UserCommand::Disable { common, name } => {
            // Like `list`, works with the authorization server off.
            let cfg = load(&common.config)?;
            let store = open_store(&cfg).await?;
            let Some(u) = store.user(DEFAULT_TENANT, &name).await? else {
                bail!("no user {name:?} (see `mcpgate user list`)");
            };
            if !store
                .set_user_disabled(DEFAULT_TENANT, &name, Some(now))
                .await?
            {
                bail!("no user {name:?} (see `mcpgate user list`)");
            }
            let already = u.disabled_at.is_some();
            if !already {
                super::audit::record_admin(
                    &cfg,
                    super::audit::admin_event(mcpgate_audit::EventKind::UserDisabled)
                        .subject(&name),
                )
                .await?;
            }
            if common.json {
                println!(
                    "{}",
                    json!({"username": name, "disabled": true, "already_disabled": already})
                );
            } else if already {
                println!("user {name} was already disabled");
            } else {
                println!("disabled user {name}: it can no longer log in");
            }
            Ok(())
        }
        UserCommand::Enable { common, name } => {
            let cfg = load(&common.config)?;
            require_authorization_server(&cfg, &common.config)?;
            let store = open_store(&cfg).await?;
            let Some(u) = store.user(DEFAULT_TENANT, &name).await? else {
                bail!("no user {name:?} (see `mcpgate user list`)");
            };
            if !store.set_user_disabled(DEFAULT_TENANT, &name, None).await? {
                bail!("no user {name:?} (see `mcpgate user list`)");
            }
            let was = u.disabled_at.is_some();
            if was {
                super::audit::record_admin(
                    &cfg,
                    super::audit::admin_event(mcpgate_audit::EventKind::UserEnabled).subject(&name),
                )
                .await?;
            }
            if common.json {
                println!(
                    "{}",
                    json!({"username": name, "disabled": false, "was_disabled": was})
                );
            } else if was {
                println!("enabled user {name}");
            } else {
                println!("user {name} was not disabled");
            }
            Ok(())
        }
        UserCommand::Passwd {
            common,
            name,
            password_stdin,
        } => {
            let cfg = load(&common.config)?;
            require_authorization_server(&cfg, &common.config)?;
            require_password_stdin(password_stdin, "passwd", &name)?;
            let store = open_store(&cfg).await?;
            if store.user(DEFAULT_TENANT, &name).await?.is_none() {
                bail!("no user {name:?} (see `mcpgate user list`)");
            }
            let password_hash = read_password_hash()?;
            if !store
                .set_user_password(DEFAULT_TENANT, &name, &password_hash, now)
                .await?
            {
                bail!("no user {name:?} (see `mcpgate user list`)");
            }
            super::audit::record_admin(
                &cfg,
                super::audit::admin_event(mcpgate_audit::EventKind::UserPasswordChanged)
                    .subject(&name),
            )
            .await?;
            if common.json {
                println!("{}", json!({"username": name, "password_changed_at": now}));
            } else {
                println!("changed the password of user {name}");
            }
            Ok(())
        }
    }
}

//! Command-line interface and wiring.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use mcpgate_core::ScopeSet;
use mcpgate_core::config::{AuthMode, Config, ConfigError, Upstream};
use mcpgate_store::{ApiKeyRecord, DEFAULT_TENANT, Store, StoreError, UserRecord};
use serde_json::json;

/// OAuth 2.1 gateway for MCP servers.
#[derive(Debug, Parser)]
#[command(name = "mcpgate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Common {
    /// Configuration file (TOML).
    #[arg(long, short = 'c', env = "MCPGATE_CONFIG", value_name = "FILE")]
    config: PathBuf,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Log format (pretty on a terminal by default).
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// API keys for agents and scripts.
    Apikey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// OAuth clients of the built-in authorization server.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Signing keys of the built-in authorization server.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Local user accounts of the built-in authorization server.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create an account; its password is read from standard input.
    Add {
        #[command(flatten)]
        common: Common,
        /// Username: 1 to 64 characters of A-Z a-z 0-9 . _ @ -
        name: String,
        /// Read the password from standard input (one line). Required: a
        /// password in the arguments would be in the shell history and the
        /// process list.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts and their state (never password hashes).
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Refuse all logins to an account until it is enabled again.
    Disable {
        #[command(flatten)]
        common: Common,
        name: String,
    },
    /// Allow a disabled account to log in again.
    Enable {
        #[command(flatten)]
        common: Common,
        name: String,
    },
    /// Set a new password, read from standard input; also lifts a lockout.
    Passwd {
        #[command(flatten)]
        common: Common,
        name: String,
        /// Read the password from standard input (one line); required.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Register a client; a confidential client's secret is printed once.
    Add {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        name: String,
        /// Allowed redirect URI (repeatable).
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// A confidential client (gets a secret).
        #[arg(long)]
        confidential: bool,
        /// Grant type the client may use (repeatable), e.g. client_credentials.
        #[arg(long = "grant", value_name = "GRANT")]
        grants: Vec<String>,
        /// How a confidential client authenticates.
        #[arg(long, default_value = "client_secret_basic", value_parser = ["client_secret_basic", "client_secret_post"])]
        auth_method: String,
        /// Scopes the client may be granted (default: any scope of the resource).
        #[arg(long)]
        scope: Option<String>,
    },
    /// List clients (never secrets).
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Remove a client.
    Remove {
        #[command(flatten)]
        common: Common,
        client_id: String,
    },
    /// Give a confidential client a new secret; the old one keeps working
    /// for `secret_rotation_grace_secs`.
    RotateSecret {
        #[command(flatten)]
        common: Common,
        client_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Key ids, states and dates (never key material).
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Rotate now: the published next key starts signing.
    Rotate {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file; exits 64 with the reason if invalid.
    Check {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Create a key; it is printed once and only its hash is stored.
    Create {
        #[command(flatten)]
        common: Common,
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        /// The route path the key opens (e.g. /mcp).
        #[arg(long)]
        route: String,
        /// Space-separated scopes granted to the key.
        #[arg(long, default_value = "")]
        scopes: String,
        /// Lifetime, e.g. 30d, 12h, 15m, 3600s (default: no expiry).
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Revoke a key; the next request with it is refused.
    Revoke {
        #[command(flatten)]
        common: Common,
        /// The key id (as shown by `apikey list`).
        id: String,
    },
}

const EXIT_CONFIG: u8 = 64;

pub async fn run(cli: Cli) -> ExitCode {
    let json = match &cli.command {
        Command::Serve { common, .. } => common.json,
        Command::Config {
            command: ConfigCommand::Check { common },
        } => common.json,
        Command::Apikey { command } => match command {
            ApiKeyCommand::Create { common, .. }
            | ApiKeyCommand::List { common }
            | ApiKeyCommand::Revoke { common, .. } => common.json,
        },
        Command::Client { command } => match command {
            ClientCommand::Add { common, .. }
            | ClientCommand::List { common }
            | ClientCommand::Remove { common, .. }
            | ClientCommand::RotateSecret { common, .. } => common.json,
        },
        Command::Keys { command } => match command {
            KeysCommand::List { common } | KeysCommand::Rotate { common } => common.json,
        },
        Command::User { command } => match command {
            UserCommand::Add { common, .. }
            | UserCommand::List { common }
            | UserCommand::Disable { common, .. }
            | UserCommand::Enable { common, .. }
            | UserCommand::Passwd { common, .. } => common.json,
        },
    };
    let result = match cli.command {
        Command::Serve { common, log_format } => serve(&common, log_format).await,
        Command::Config {
            command: ConfigCommand::Check { common },
        } => config_check(&common),
        Command::Apikey { command } => apikey(command).await,
        Command::Client { command } => client(command).await,
        Command::Keys { command } => keys(command).await,
        Command::User { command } => user(command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let is_config = e.downcast_ref::<ConfigError>().is_some();
            if json {
                println!("{}", json!({"ok": false, "error": format!("{e:#}")}));
            } else {
                eprintln!("error: {e:#}");
            }
            if is_config {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

fn config_check(common: &Common) -> anyhow::Result<()> {
    let cfg = load(&common.config)?;
    if common.json {
        println!(
            "{}",
            json!({
                "ok": true,
                "routes": cfg.routes.iter().map(|r| &r.path).collect::<Vec<_>>(),
                "trusted_issuers": cfg.trusted_issuers.iter().map(|i| &i.issuer).collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "{}: OK ({} route{}, {} trusted issuer{})",
            common.config.display(),
            cfg.routes.len(),
            if cfg.routes.len() == 1 { "" } else { "s" },
            cfg.trusted_issuers.len(),
            if cfg.trusted_issuers.len() == 1 {
                ""
            } else {
                "s"
            },
        );
    }
    Ok(())
}

async fn open_store(cfg: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = cfg.storage.resolved_url(&cfg.base_dir);
    mcpgate_store::open(&url)
        .await
        .context("opening storage ([storage] url)")
}

fn init_tracing(format: Option<LogFormat>) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let format = format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Pretty => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

async fn serve(common: &Common, log_format: Option<LogFormat>) -> anyhow::Result<()> {
    let cfg = load(&common.config)?;
    init_tracing(log_format);
    let store = open_store(&cfg).await?;
    let listen = cfg.listen;
    let metrics_listen = cfg.metrics_listen;
    let limits = cfg.limits.clone();
    let banner = banner(&cfg, &common.config);
    let authserver = if cfg.authorization_server.enabled {
        let ring = open_key_ring(&cfg, store.clone()).await?;
        ring.spawn_maintenance();
        Some(Arc::new(mcpgate_authserver::AuthServer::new(
            &cfg,
            ring,
            store.clone(),
        )))
    } else {
        None
    };
    let local = authserver
        .as_ref()
        .map(|a| a.keys.clone() as Arc<dyn mcpgate_crypto::jwt::KeySource>);
    let gw = mcpgate_gateway::Gateway::build_with_local_issuer(cfg, store, local)?;
    let router = match &authserver {
        Some(a) => a.router().merge(gw.router()),
        None => gw.router(),
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (`listen`)"))?;
    if let Some(addr) = metrics_listen {
        let ml = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (`metrics_listen`)"))?;
        tokio::spawn(mcpgate_gateway::serve_metrics(ml, gw.metrics.clone()));
    }
    tracing::info!(%listen, "mcpgate listening");
    println!("{banner}");
    mcpgate_gateway::serve(
        listener,
        router,
        limits.max_header_bytes,
        Duration::from_secs(limits.shutdown_grace_secs),
        shutdown_signal(),
    )
    .await;
    gw.shutdown_upstreams();
    tracing::info!("mcpgate stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

/// What to do next, printed on start.
fn banner(cfg: &Config, config_path: &Path) -> String {
    let mut s = format!("mcpgate is listening on {}\n", cfg.public_url.as_str());
    let mut first_oauth = None;
    for r in &cfg.routes {
        let upstream = match &r.upstream {
            Upstream::Http { url } => format!("Streamable HTTP {url}"),
            Upstream::Stdio { command, .. } => format!("stdio `{}`", command.join(" ")),
        };
        let resource = format!("{}{}", cfg.public_url.as_str(), r.path);
        s.push_str(&format!("\n  route {}  ->  {upstream}\n", r.path));
        match r.auth {
            AuthMode::None => s.push_str("    auth: none (public)\n"),
            AuthMode::Oauth => {
                first_oauth.get_or_insert(r);
                s.push_str(&format!(
                    "    MCP server URL: {resource}\n    protected resource metadata: {}\n    scopes: {}\n",
                    mcpgate_gateway::metadata::prm_url(cfg.public_url.as_str(), &r.path),
                    if r.scopes.is_empty() { "(none)".into() } else { r.scopes.to_space_delimited() },
                ));
            }
        }
    }
    if let Some(r) = first_oauth {
        let scopes = r.scopes.to_space_delimited();
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "mcpgate".into());
        s.push_str(&format!(
            "\nNext: create a credential (in another terminal):\n  {exe} apikey create --config {} --name my-agent --route {} --scopes \"{scopes}\"\n\
             then point an MCP client at {}{} with the header\n  Authorization: Bearer <the key>\n",
            config_path.display(),
            r.path,
            cfg.public_url.as_str(),
            r.path,
        ));
        if !cfg.trusted_issuers.is_empty() {
            s.push_str("Access tokens from these issuers are accepted too: ");
            s.push_str(
                &cfg.trusted_issuers
                    .iter()
                    .map(|i| i.issuer.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            s.push('\n');
        }
    }
    s
}

async fn apikey(cmd: ApiKeyCommand) -> anyhow::Result<()> {
    match cmd {
        ApiKeyCommand::Create {
            common,
            name,
            route,
            scopes,
            expires_in,
        } => {
            let cfg = load(&common.config)?;
            let Some(r) = cfg.routes.iter().find(|r| r.path == route) else {
                bail!(
                    "no route with path {route:?} in {}; configured routes: {}",
                    common.config.display(),
                    cfg.routes
                        .iter()
                        .map(|r| r.path.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            };
            if r.auth == AuthMode::None {
                bail!("route {route:?} has auth = \"none\": it needs no key");
            }
            let scopes = ScopeSet::parse(&scopes).context("--scopes")?;
            let now = mcpgate_gateway::authn::now() as i64;
            let expires_at = match expires_in {
                Some(d) => Some(now + parse_duration(&d)? as i64),
                None => None,
            };
            let store = open_store(&cfg).await?;
            let key = mcpgate_crypto::apikey::generate()?;
            let rec = ApiKeyRecord {
                tenant_id: DEFAULT_TENANT.into(),
                id: key.id.clone(),
                name: name.clone(),
                route: route.clone(),
                scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
                secret_hash: key.hash.to_vec(),
                created_at: now,
                expires_at,
                revoked_at: None,
            };
            store.insert_api_key(&rec).await?;
            let secret = std::str::from_utf8(key.key.expose())?;
            let missing = scopes.missing(&r.scopes);
            if common.json {
                println!(
                    "{}",
                    json!({
                        "id": key.id, "key": secret, "name": name, "route": route,
                        "scopes": rec.scopes, "expires_at": expires_at,
                    })
                );
            } else {
                println!("{secret}");
                eprintln!(
                    "Created API key {} ({name}) for route {route} with scopes \"{}\"{}.\n\
                     This is the only time the key is shown; store it now. Use it as\n  Authorization: Bearer {}…",
                    key.id,
                    scopes.to_space_delimited(),
                    expires_at
                        .map(|e| format!(", expiring at unix time {e}"))
                        .unwrap_or_default(),
                    &secret[..12],
                );
            }
            if !missing.is_empty() {
                eprintln!(
                    "warning: route {route} needs scope(s) {:?} that this key lacks; its requests will be refused",
                    missing.iter().map(|s| s.as_str()).collect::<Vec<_>>()
                );
            }
            Ok(())
        }
        ApiKeyCommand::List { common } => {
            let cfg = load(&common.config)?;
            let store = open_store(&cfg).await?;
            let keys = store.list_api_keys(DEFAULT_TENANT).await?;
            let now = mcpgate_gateway::authn::now() as i64;
            if common.json {
                let v: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({
                            "id": k.id, "name": k.name, "route": k.route, "scopes": k.scopes,
                            "created_at": k.created_at, "expires_at": k.expires_at,
                            "revoked_at": k.revoked_at, "state": state(k, now),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else if keys.is_empty() {
                println!("no API keys");
            } else {
                println!(
                    "{:<18} {:<20} {:<16} {:<8} SCOPES",
                    "ID", "NAME", "ROUTE", "STATE"
                );
                for k in &keys {
                    println!(
                        "{:<18} {:<20} {:<16} {:<8} {}",
                        k.id,
                        k.name,
                        k.route,
                        state(k, now),
                        k.scopes.join(" ")
                    );
                }
            }
            Ok(())
        }
        ApiKeyCommand::Revoke { common, id } => {
            let cfg = load(&common.config)?;
            let store = open_store(&cfg).await?;
            let now = mcpgate_gateway::authn::now() as i64;
            let Some(_) = store.api_key(DEFAULT_TENANT, &id).await? else {
                bail!("no API key with id {id:?} (see `mcpgate apikey list`)");
            };
            let changed = store.revoke_api_key(DEFAULT_TENANT, &id, now).await?;
            if common.json {
                println!(
                    "{}",
                    json!({"id": id, "revoked": true, "already_revoked": !changed})
                );
            } else if changed {
                println!("revoked API key {id}");
            } else {
                println!("API key {id} was already revoked");
            }
            Ok(())
        }
    }
}

fn state(k: &ApiKeyRecord, now: i64) -> &'static str {
    if k.revoked_at.is_some() {
        "revoked"
    } else if k.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    }
}

/// `30d`, `12h`, `15m`, `3600s` or a bare number of seconds.
fn parse_duration(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'd')) => (&s[..i], 86_400),
        Some((i, 'h')) => (&s[..i], 3_600),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 's')) => (&s[..i], 1),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("--expires-in {s:?}: expected e.g. 30d, 12h, 15m or 3600s"))?;
    if n == 0 {
        bail!("--expires-in must be positive");
    }
    n.checked_mul(mult)
        .with_context(|| format!("--expires-in {s:?} is too large"))
}

/// The master key: `MCPGATE_MASTER_KEY`, else the key file (created on
/// first use, mode 0600).
fn master_key(cfg: &Config) -> anyhow::Result<mcpgate_crypto::master::MasterKey> {
    Ok(match std::env::var("MCPGATE_MASTER_KEY") {
        Ok(v) => mcpgate_crypto::master::MasterKey::from_env_value(&v)?,
        Err(_) => mcpgate_crypto::master::MasterKey::load_or_create_file(&cfg.master_key_path())?,
    })
}

async fn open_key_ring(
    cfg: &Config,
    store: Arc<dyn Store>,
) -> anyhow::Result<Arc<mcpgate_authserver::KeyRing>> {
    let a = &cfg.authorization_server;
    mcpgate_authserver::KeyRing::open(
        store,
        master_key(cfg)?,
        a.access_token_ttl_secs,
        a.key_rotation_days,
    )
    .await
    .context("loading the authorization server's signing keys")
}

fn require_authorization_server(cfg: &Config, path: &Path) -> anyhow::Result<()> {
    if !cfg.authorization_server.enabled {
        bail!(
            "the built-in authorization server is off in {}; add\n  [authorization_server]\n  enabled = true",
            path.display()
        );
    }
    Ok(())
}

async fn client(cmd: ClientCommand) -> anyhow::Result<()> {
    let now = mcpgate_gateway::authn::now() as i64;
    match cmd {
        ClientCommand::Add {
            common,
            name,
            redirect_uris,
            confidential,
            grants,
            auth_method,
            scope,
        } => {
            let cfg = load(&common.config)?;
            require_authorization_server(&cfg, &common.config)?;
            let grants = if grants.is_empty() {
                vec!["authorization_code".to_owned(), "refresh_token".to_owned()]
            } else {
                grants
            };
            for g in &grants {
                if !matches!(
                    g.as_str(),
                    "authorization_code" | "refresh_token" | "client_credentials"
                ) {
                    bail!(
                        "--grant {g:?}: choose authorization_code, refresh_token or client_credentials"
                    );
                }
            }
            if grants.iter().any(|g| g == "client_credentials") && !confidential {
                bail!(
                    "--grant client_credentials needs --confidential (the client must authenticate)"
                );
            }
            for u in &redirect_uris {
                let ok = url::Url::parse(u).is_ok_and(|p| {
                    p.fragment().is_none()
                        && (p.scheme() == "https"
                            || (p.scheme() == "http"
                                && matches!(
                                    p.host_str(),
                                    Some("localhost" | "127.0.0.1" | "[::1]")
                                )))
                });
                if !ok {
                    bail!(
                        "--redirect-uri {u:?}: must be https, or http on a loopback host, without a fragment"
                    );
                }
            }
            if let Some(sc) = &scope {
                ScopeSet::parse(sc).context("--scope")?;
            }
            let spec = mcpgate_authserver::clients::ClientSpec {
                name: name.clone(),
                redirect_uris,
                confidential,
                grant_types: grants,
                scope,
            };
            let mut new = mcpgate_authserver::clients::build(&spec, now)?;
            if confidential {
                new.record.token_endpoint_auth_method = auth_method;
            }
            let store = open_store(&cfg).await?;
            store.insert_client(&new.record).await?;
            let secret = match &new.secret {
                Some(s) => Some(std::str::from_utf8(s.expose())?.to_owned()),
                None => None,
            };
            if common.json {
                let mut v = json!({
                    "client_id": new.record.client_id, "name": name,
                    "token_endpoint_auth_method": new.record.token_endpoint_auth_method,
                    "grant_types": new.record.grant_types, "redirect_uris": new.record.redirect_uris,
                });
                if let Some(s) = &secret {
                    v["client_secret"] = json!(s);
                }
                println!("{v}");
            } else {
                println!("client_id: {}", new.record.client_id);
                if let Some(s) = &secret {
                    println!("client_secret: {s}");
                    eprintln!("This is the only time the secret is shown; store it now.");
                }
            }
            Ok(())
        }
        ClientCommand::List { common } => {
            let cfg = load(&common.config)?;
            let store = open_store(&cfg).await?;
            let clients = store.list_clients(DEFAULT_TENANT).await?;
            if common.json {
                let v: Vec<_> = clients
                    .iter()
                    .map(|c| {
                        json!({
                            "client_id": c.client_id, "name": c.name,
                            "token_endpoint_auth_method": c.token_endpoint_auth_method,
                            "grant_types": c.grant_types, "redirect_uris": c.redirect_uris,
                            "origin": c.origin, "created_at": c.created_at, "last_used_at": c.last_used_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else if clients.is_empty() {
                println!("no clients");
            } else {
                println!("{:<24} {:<20} {:<20} GRANTS", "CLIENT_ID", "NAME", "AUTH");
                for c in &clients {
                    println!(
                        "{:<24} {:<20} {:<20} {}",
                        c.client_id,
                        c.name,
                        c.token_endpoint_auth_method,
                        c.grant_types.join(" ")
                    );
                }
            }
            Ok(())
        }
        ClientCommand::Remove { common, client_id } => {
            let cfg = load(&common.config)?;
            let store = open_store(&cfg).await?;
            if !store.delete_client(DEFAULT_TENANT, &client_id).await? {
                bail!("no client {client_id:?} (see `mcpgate client list`)");
            }
            if common.json {
                println!("{}", json!({"client_id": client_id, "removed": true}));
            } else {
                println!("removed client {client_id}");
            }
            Ok(())
        }
        ClientCommand::RotateSecret { common, client_id } => {
            let cfg = load(&common.config)?;
            let store = open_store(&cfg).await?;
            let Some(c) = store.client(DEFAULT_TENANT, &client_id).await? else {
                bail!("no client {client_id:?} (see `mcpgate client list`)");
            };
            if c.secret_hash.is_none() {
                bail!("client {client_id:?} is public: it has no secret to rotate");
            }
            let (secret, hash) = mcpgate_authserver::clients::new_secret()?;
            let until = now + cfg.authorization_server.secret_rotation_grace_secs as i64;
            store
                .rotate_client_secret(DEFAULT_TENANT, &client_id, &hash, until)
                .await?;
            let secret = std::str::from_utf8(secret.expose())?.to_owned();
            if common.json {
                println!(
                    "{}",
                    json!({"client_id": client_id, "client_secret": secret, "previous_secret_valid_until": until})
                );
            } else {
                println!("client_secret: {secret}");
                eprintln!("The previous secret keeps working until unix time {until}.");
            }
            Ok(())
        }
    }
}

async fn keys(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::List { common } => {
            let cfg = load(&common.config)?;
            require_authorization_server(&cfg, &common.config)?;
            let store = open_store(&cfg).await?;
            let keys = mcpgate_authserver::keys::list(&*store).await?;
            let state = |k: &mcpgate_store::SigningKeyRecord| match k.state {
                mcpgate_store::KeyState::Next => "next",
                mcpgate_store::KeyState::Current => "current",
                mcpgate_store::KeyState::Retired => "retired",
            };
            if common.json {
                let v: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({
                            "kid": k.kid, "alg": k.alg, "state": state(k), "created_at": k.created_at,
                            "activated_at": k.activated_at, "retired_at": k.retired_at,
                            "publish_until": k.publish_until,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else if keys.is_empty() {
                println!("no signing keys yet (they are created when `serve` first starts)");
            } else {
                println!(
                    "{:<45} {:<8} {:<12} {:<12} PUBLISHED UNTIL",
                    "KID", "STATE", "CREATED", "ACTIVATED"
                );
                for k in &keys {
                    println!(
                        "{:<45} {:<8} {:<12} {:<12} {}",
                        k.kid,
                        state(k),
                        k.created_at,
                        k.activated_at
                            .map(|a| a.to_string())
                            .unwrap_or_else(|| "-".into()),
                        k.publish_until
                            .map(|a| a.to_string())
                            .unwrap_or_else(|| "-".into()),
                    );
                }
            }
            Ok(())
        }
        KeysCommand::Rotate { common } => {
            let cfg = load(&common.config)?;
            require_authorization_server(&cfg, &common.config)?;
            let store = open_store(&cfg).await?;
            let ring = open_key_ring(&cfg, store).await?;
            let rotated = ring.rotate().await?;
            let current = ring.signer().kid.clone();
            if common.json {
                println!(
                    "{}",
                    json!({"rotated": rotated.is_some(), "current_kid": current})
                );
            } else if rotated.is_some() {
                println!(
                    "rotated: {current} signs from now on; running gateways pick it up within 30 s"
                );
            } else {
                println!("another process rotated at the same moment; current key: {current}");
            }
            Ok(())
        }
    }
}

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

async fn user(cmd: UserCommand) -> anyhow::Result<()> {
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
            if common.json {
                println!("{}", json!({"username": name, "password_changed_at": now}));
            } else {
                println!("changed the password of user {name}");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30d").unwrap(), 2_592_000);
        assert_eq!(parse_duration("12h").unwrap(), 43_200);
        assert_eq!(parse_duration("15m").unwrap(), 900);
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert!(parse_duration("0d").is_err());
        assert!(parse_duration("soon").is_err());
    }
}

//! Command-line interface and wiring.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
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
    /// Consents users gave to clients, and revoking them.
    Grants {
        #[command(subcommand)]
        command: GrantsCommand,
    },
    /// Cedar access policies: validate, print the schema, try a request.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The tamper-evident audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Check an MCP server's authorization the way clients discover it;
    /// exit 1 when a MUST is violated.
    Probe(probe::ProbeArgs),
    /// A stdio MCP server that forwards to a remote, protected one, logging
    /// in as an MCP client (for clients that only speak stdio).
    Connect(connect::ConnectArgs),
}

// Parsed once per process; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate a policy file (or a directory of *.cedar files) against the
    /// MCP schema; exits non-zero with the validator's messages.
    Check {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print the Cedar schema policies are written against.
    Schema,
    /// Evaluate one request against a route's policy; prints the decision
    /// and the policies that decided it (exit 1 when denied).
    Test {
        #[command(flatten)]
        common: Common,
        /// The route path, e.g. /mcp.
        #[arg(long)]
        route: String,
        /// user:NAME, client:ID or apikey:ID.
        #[arg(long)]
        principal: String,
        /// Space-separated scopes of the credential.
        #[arg(long, default_value = "")]
        scopes: String,
        /// The OAuth client the principal uses.
        #[arg(long)]
        client_id: Option<String>,
        /// A group of the principal (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// The MCP method, e.g. tools/call.
        #[arg(long)]
        action: String,
        #[arg(long)]
        tool: Option<String>,
        #[arg(long)]
        resource: Option<String>,
        #[arg(long)]
        prompt: Option<String>,
        /// The call's arguments as a JSON object.
        #[arg(long)]
        args: Option<String>,
        #[arg(long)]
        client_ip: Option<std::net::IpAddr>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the whole chain; names the first record changed, deleted or
    /// reordered, and exits non-zero on any defect.
    Verify {
        #[command(flatten)]
        common: Common,
        /// A head recorded earlier (`CHAIN:SEQ:HEX`, from the log line
        /// `audit checkpoint anchor=…` or a previous verify): detects the
        /// newest records cut off. Repeatable.
        #[arg(long = "anchor", value_name = "ANCHOR")]
        anchors: Vec<String>,
    },
    /// Records as JSON Lines (one object per record) for a SIEM.
    Export {
        #[command(flatten)]
        common: Common,
        /// Only records since then: RFC 3339, a date, or an age like 24h, 7d.
        #[arg(long)]
        since: Option<String>,
        /// One readable line per record instead of JSON.
        #[arg(long)]
        text: bool,
    },
}

#[derive(Debug, Subcommand)]
enum GrantsCommand {
    /// Consents given (user, client, resource, scopes).
    List {
        #[command(flatten)]
        common: Common,
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
    },
    /// Withdraw a user's consent to a client and revoke every token the
    /// client holds for the user (refresh tokens at once; access tokens at
    /// the gateway within seconds).
    Revoke {
        #[command(flatten)]
        common: Common,
        /// The username.
        user: String,
        /// The client id.
        client_id: String,
        /// Only for this resource (default: all).
        #[arg(long)]
        resource: Option<String>,
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
        /// How a confidential client authenticates. `private_key_jwt` needs
        /// --jwks.
        #[arg(long, default_value = "client_secret_basic", value_parser = ["client_secret_basic", "client_secret_post", "private_key_jwt"])]
        auth_method: String,
        /// A file holding the client's public keys as a JWK Set (for
        /// `--auth-method private_key_jwt`).
        #[arg(long, value_name = "FILE")]
        jwks: Option<PathBuf>,
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

mod apikey;
mod audit;
mod authserver;
mod connect;
mod policy;
mod probe;
mod user;

use apikey::apikey;
use authserver::{client, keys, open_key_ring};
use user::user;

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
        Command::Grants { command } => match command {
            GrantsCommand::List { common, .. } | GrantsCommand::Revoke { common, .. } => {
                common.json
            }
        },
        Command::Probe(args) => args.json,
        Command::Connect(_) => false,
        Command::Policy { command } => match command {
            PolicyCommand::Check { json, .. } => *json,
            PolicyCommand::Schema => false,
            PolicyCommand::Test { common, .. } => common.json,
        },
        Command::Audit { command } => match command {
            AuditCommand::Verify { common, .. } | AuditCommand::Export { common, .. } => {
                common.json
            }
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
        Command::Grants { command } => authserver::grants(command).await,
        Command::Audit { command } => audit::audit(command).await,
        Command::Policy { command } => policy::policy(command),
        // Its own exit status: 1 means a MUST is violated, not a failure.
        Command::Probe(args) => return probe::probe(args).await,
        Command::Connect(args) => return connect::connect(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The command printed its own report (e.g. `audit verify --json`
        // with defects); only the status is left to give.
        Err(e) if e.downcast_ref::<Reported>().is_some() => ExitCode::FAILURE,
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

/// A failure the command already reported on standard output.
#[derive(Debug)]
struct Reported(String);

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Reported {}

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
    let url = cfg.storage.resolved_url(&cfg.base_dir);
    let (store, audit_store) = mcpgate_store::open_with_audit(&url)
        .await
        .context("opening storage ([storage] url)")?;
    let audit = if cfg.audit.enabled {
        Some(audit::open_log(&cfg, audit_store).await?)
    } else {
        tracing::warn!("the audit trail is off ([audit] enabled = false)");
        None
    };
    let listen = cfg.listen;
    let metrics_listen = cfg.metrics_listen;
    let limits = cfg.limits.clone();
    let banner = banner(&cfg, &common.config);
    let authserver = if cfg.authorization_server.enabled {
        let ring = open_key_ring(&cfg, store.clone()).await?;
        let a = Arc::new(
            mcpgate_authserver::AuthServer::new(&cfg, ring, store.clone())
                .with_audit(audit.clone()),
        );
        a.spawn_maintenance();
        Some(a)
    } else {
        None
    };
    let local = authserver
        .as_ref()
        .map(|a| a.local_issuer() as Arc<dyn mcpgate_crypto::jwt::KeySource>);
    // Session ids bound with a key derived from the master key, where one
    // is configured (audit trail or authorization server on): replicas and
    // restarts keep accepting them. Otherwise a random key per process.
    let sessions = if cfg.audit.enabled || cfg.authorization_server.enabled {
        mcpgate_crypto::session::SessionBinder::from_mac(
            authserver::master_key(&cfg)?.derive_mac("session-binding"),
        )
    } else {
        mcpgate_crypto::session::SessionBinder::random()
            .map_err(|_| anyhow::anyhow!("the system random generator failed"))?
    };
    let gw =
        mcpgate_gateway::Gateway::build_with_sessions(cfg, store, local, audit.clone(), sessions)?;
    let service = gw.service(authserver.as_ref().map(|a| a.router()));
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
        service,
        limits.max_header_bytes,
        Duration::from_secs(limits.shutdown_grace_secs),
        shutdown_signal(),
    )
    .await;
    gw.shutdown_upstreams();
    if let Some(a) = &audit
        && let Err(e) = a.shutdown().await
    {
        tracing::error!(error = %e, "the audit trail did not close cleanly");
    }
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

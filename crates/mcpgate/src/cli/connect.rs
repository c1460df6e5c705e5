//! `mcpgate connect URL`: a stdio MCP server that forwards to a remote,
//! protected MCP server and performs MCP authorization as a client (the
//! work is in `mcpgate_client::connect`). stdout is the JSON-RPC channel;
//! every message for a person goes to stderr. Exit status 0 when stdin
//! ended normally, 1 on a failure, 2 on a bad command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use mcpgate_client::connect::{
    self, Browser, ConnectError, ConnectOptions, Grant, KeyringUse, OAuthOptions, ResourceChoice,
    TransportChoice,
};
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TransportArg {
    /// Streamable HTTP, or HTTP+SSE when the server answers the
    /// `initialize` POST with 404 or 405 (what the MCP specification tells
    /// clients that support older servers to do).
    Auto,
    /// Streamable HTTP (the MCP transport since 2025-03-26).
    StreamableHttp,
    /// HTTP+SSE, the 2024-11-05 transport of older servers.
    Sse,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GrantArg {
    /// A person logs in in a browser (PKCE).
    AuthorizationCode,
    /// An unattended agent authenticates as itself.
    ClientCredentials,
}

#[derive(Debug, Args)]
pub(super) struct ConnectArgs {
    /// The MCP server URL, exactly as clients are given it.
    url: String,
    /// The transport the server speaks.
    #[arg(long, value_enum, default_value = "auto")]
    transport: TransportArg,
    /// How to get tokens.
    #[arg(long, value_enum, default_value = "authorization-code")]
    grant: GrantArg,
    /// A client registered beforehand at the authorization server.
    #[arg(long, env = "MCPGATE_CLIENT_ID")]
    client_id: Option<String>,
    /// Its secret. Prefer the environment variable: a command line is
    /// visible to other local users.
    #[arg(long, env = "MCPGATE_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// A PEM private key (P-256, RSA or Ed25519) to authenticate with
    /// private_key_jwt (RFC 7523) instead of a secret.
    #[arg(long, value_name = "FILE")]
    private_key: Option<PathBuf>,
    /// The URL of this client's metadata document, used as its client_id
    /// where the authorization server supports client ID metadata documents.
    #[arg(long, value_name = "URL")]
    client_metadata_url: Option<String>,
    /// The scopes to ask for (space-separated) instead of those the server
    /// names.
    #[arg(long)]
    scope: Option<String>,
    /// The RFC 8707 resource to ask a token for, instead of the server's.
    #[arg(long, conflicts_with = "no_resource")]
    resource: Option<String>,
    /// Send no resource parameter (for authorization servers that reject it).
    #[arg(long)]
    no_resource: bool,
    /// An extra header for the MCP server, "Name: value" (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Print the login URL on stderr instead of opening a browser.
    #[arg(long, conflicts_with = "open_with")]
    no_browser: bool,
    /// Open the login URL with this command (split on spaces; the URL is
    /// its last argument).
    #[arg(long, value_name = "CMD")]
    open_with: Option<String>,
    /// The loopback port of the login redirect (default: the one used last
    /// time for this server, else any free port).
    #[arg(long)]
    callback_port: Option<u16>,
    /// How long to wait for the browser login, in seconds.
    #[arg(long, default_value_t = 300)]
    login_timeout: u64,
    /// Where tokens and registrations are kept, encrypted (default:
    /// $MCPGATE_CONNECT_DIR, else ~/.config/mcpgate/connect).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Keep the cache key in the OS keyring when one answers (auto), or
    /// only in a 0600 file in the cache directory (off).
    #[arg(long, value_enum, default_value = "auto")]
    keyring: KeyringArg,
    /// Forget the tokens and registrations kept for URL, then exit.
    #[arg(long)]
    logout: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KeyringArg {
    Auto,
    Off,
}

impl From<KeyringArg> for KeyringUse {
    fn from(k: KeyringArg) -> Self {
        match k {
            KeyringArg::Auto => KeyringUse::Auto,
            KeyringArg::Off => KeyringUse::Off,
        }
    }
}

const EXIT_USAGE: u8 = 2;

pub(super) async fn connect(args: ConnectArgs) -> ExitCode {
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ ConnectError::Usage(_)) => {
            eprintln!("mcpgate connect: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("mcpgate connect: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: ConnectArgs) -> Result<(), ConnectError> {
    let url = connect::parse_server_url(&args.url)?;
    if args.logout {
        let had = connect::logout(url.clone(), args.cache_dir, args.keyring.into()).await?;
        eprintln!(
            "mcpgate connect: {} for {url}",
            if had {
                "forgot the tokens and registrations"
            } else {
                "nothing was kept"
            }
        );
        return Ok(());
    }
    let mut headers = connect::HeaderMap::new();
    for h in &args.headers {
        let (k, v) = connect::parse_header(h).map_err(ConnectError::Usage)?;
        headers.append(k, v);
    }
    let private_key = match &args.private_key {
        Some(p) => Some(Zeroizing::new(std::fs::read_to_string(p).map_err(|e| {
            ConnectError::Usage(format!("--private-key {}: {e}", p.display()))
        })?)),
        None => None,
    };
    let browser = Browser::from_args(args.open_with.as_deref(), args.no_browser)?;
    let resource = match (args.resource, args.no_resource) {
        (Some(r), _) => ResourceChoice::Fixed(r),
        (None, true) => ResourceChoice::Omit,
        (None, false) => ResourceChoice::Discovered,
    };
    let grant = match args.grant {
        GrantArg::AuthorizationCode => Grant::AuthorizationCode,
        GrantArg::ClientCredentials => Grant::ClientCredentials,
    };
    if grant == Grant::ClientCredentials
        && (args.client_id.is_none() || (args.client_secret.is_none() && private_key.is_none()))
    {
        return Err(ConnectError::Usage(
            "--grant client-credentials needs --client-id, and --client-secret or --private-key"
                .into(),
        ));
    }
    let opts = ConnectOptions {
        url,
        oauth: OAuthOptions {
            grant,
            client_id: args.client_id,
            client_secret: args.client_secret.map(Zeroizing::new),
            client_metadata_url: args.client_metadata_url,
            private_key,
            scope: args.scope,
            resource,
            browser,
            callback_port: args.callback_port,
            login_timeout: Duration::from_secs(args.login_timeout),
        },
        relay_transport: match args.transport {
            TransportArg::Auto => TransportChoice::Auto,
            TransportArg::StreamableHttp => TransportChoice::StreamableHttp,
            TransportArg::Sse => TransportChoice::LegacySse,
        },
        headers,
        cache_dir: args.cache_dir,
        keyring: args.keyring.into(),
    };
    connect::run(opts).await
}

//! `mcpgate probe URL`: the authorization check-up of an MCP server
//! (the work is in `mcpgate_client::probe`). Exit status: 0 when no MUST
//! is violated, 1 when one is, 2 on a bad command line.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Args;
use mcpgate_client::{ProbeOptions, Token};
use serde_json::json;

#[derive(Debug, Args)]
pub(super) struct ProbeArgs {
    /// The MCP server URL, exactly as clients are given it.
    url: String,
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub(super) json: bool,
    /// An access token for active checks; sent only to the MCP endpoint
    /// (and to --other-resource). Prefer the environment variable: a
    /// command line is visible to other local users.
    #[arg(long, env = "MCPGATE_PROBE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// An extra header for requests to the MCP endpoint only, e.g.
    /// "X-Api-Gateway-Key: …" (repeatable). Not for Authorization: use
    /// --token.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Another MCP server on the same origin, protected by the same
    /// authorization server: the --token must be refused there.
    #[arg(long, value_name = "URL")]
    other_resource: Option<String>,
    /// Register a native test client (loopback redirect URI) to see whether
    /// VS Code and Claude Code could. Creates a client at the authorization
    /// server.
    #[arg(long)]
    register_test_client: bool,
    /// Run the authorization code flow (as `mcpgate connect` does: a
    /// browser login, dynamic registration) to get a token for the active
    /// checks.
    #[arg(long)]
    login: bool,
    /// With --login: print the login URL instead of opening a browser.
    #[arg(long, requires = "login", conflicts_with = "open_with")]
    no_browser: bool,
    /// With --login: open the login URL with this command (split on
    /// spaces; the URL is its last argument).
    #[arg(long, requires = "login", value_name = "CMD")]
    open_with: Option<String>,
}

const EXIT_USAGE: u8 = 2;

pub(super) async fn probe(args: ProbeArgs) -> ExitCode {
    let mut opts = ProbeOptions::default();
    for h in &args.headers {
        match parse_header(h) {
            Ok(kv) => opts.headers.push(kv),
            Err(e) => return usage(args.json, &e),
        }
    }
    opts.token = args.token.map(Token::new);
    opts.other_resource = args.other_resource;
    opts.register_test_client = args.register_test_client;
    opts.login = args.login;
    opts.login_browser = match mcpgate_client::connect::Browser::from_args(
        args.open_with.as_deref(),
        args.no_browser,
    ) {
        Ok(b) => Some(b),
        Err(e) => return usage(args.json, &e.to_string()),
    };
    let report = mcpgate_client::probe(&args.url, &opts).await;
    let out = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot write the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        report.to_string()
    };
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{out}").is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::from(report.exit_code())
}

fn usage(json: bool, msg: &str) -> ExitCode {
    if json {
        println!("{}", json!({"ok": false, "error": msg}));
    } else {
        eprintln!("error: {msg}");
    }
    ExitCode::from(EXIT_USAGE)
}

/// `Name: value`, with a header name as HTTP defines it.
fn parse_header(h: &str) -> Result<(String, String), String> {
    let Some((name, value)) = h.split_once(':') else {
        return Err(format!("--header {h:?}: expected \"Name: value\""));
    };
    let name = name.trim();
    let value = value.trim();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return Err(format!("--header {name:?}: not a header name"));
    }
    if name.eq_ignore_ascii_case("authorization") {
        return Err(
            "--header Authorization: use --token, so the probe knows it is a credential".into(),
        );
    }
    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(format!("--header {name}: the value has control characters"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_authorization_is_refused() {
        assert_eq!(
            parse_header("X-Key:  abc ").unwrap(),
            ("X-Key".to_owned(), "abc".to_owned())
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("Bad Name: x").is_err());
        assert!(parse_header("authorization: Bearer x").is_err());
    }
}

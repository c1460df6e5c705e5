//! `mcpgate-bench`: how much mcpgate costs on the request path, measured
//! against the same upstream reached directly and through nginx, in one run.
//!
//! One invocation starts everything it measures as child processes:
//! - a fast Streamable HTTP upstream (`mcpgate-bench upstream`, its own
//!   process and runtime): `tools/call` POSTs get an immediate JSON result,
//!   `GET` with `Accept: text/event-stream` gets SSE headers and then silence;
//! - a loopback issuer (in this process) serving RFC 8414 metadata and a
//!   JWKS, which mints one ES256 access token for the gateway's route;
//! - the release `mcpgate serve` with a generated config (one HTTP route,
//!   scope `mcp`, SQLite storage in a temporary directory);
//! - nginx with a plain `proxy_pass` (keep-alive upstream pool, no buffering,
//!   no auth), given as many worker processes as mcpgate gets Tokio workers.
//!
//! The load generator (hyper, keep-alive, N connections each sending
//! sequential `tools/call` POSTs) runs direct → nginx → mcpgate, rotated per
//! round, and prints the median over rounds; then 10,000 idle SSE streams are
//! opened through a fresh mcpgate and its RSS is read from `/proc` (and the
//! same through a fresh nginx, for reference).
//!
//! `mcpgate-bench oauth` measures the built-in authorization server instead:
//! the code flow's latency per step and refresh-token grants per second on
//! the embedded SQLite store, next to a SQLite baseline on the same disk
//! (see `oauth.rs`).
//! `mcpgate-bench audit` measures the audit trail's writer alone, in
//! process (see `audit.rs`).
//! See `crates/bench/README.md` for how to run it and read the output.
//!
//! Trust boundary: none; this is a local measuring tool. It only signals
//! processes it started, by their pid.

mod audit;
mod issuer;
mod load;
mod oauth;
mod proc;
mod report;
mod run;
mod sse;
mod upstream;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Benchmark mcpgate against the same upstream direct and through nginx.
#[derive(Debug, Parser)]
#[command(name = "mcpgate-bench", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run only the benchmark upstream MCP server (started by the benchmark
    /// itself as a child; useful on its own for manual tests).
    Upstream(upstream::UpstreamArgs),
    /// Benchmark the built-in authorization server: code flow latency per
    /// step and refresh-token grants per second on SQLite, next to a SQLite
    /// baseline on the same disk.
    Oauth(oauth::OauthArgs),
    /// Benchmark the audit trail's writer alone, in this process: durable
    /// appends to SQLite from N concurrent callers, with records per commit
    /// and the writer thread's CPU per record.
    Audit(audit::AuditArgs),
}

/// Options of the benchmark run (the default command).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The release `mcpgate` binary (default: next to this binary).
    #[arg(long, value_name = "PATH")]
    pub mcpgate: Option<PathBuf>,
    /// The nginx binary.
    #[arg(long, value_name = "PATH", default_value = "nginx")]
    pub nginx: PathBuf,
    /// Measured time per target and round (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time before each measurement, on the same connections.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Rounds of direct/nginx/mcpgate; the table shows medians over rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Targets to measure (e.g. `mcpgate` alone while profiling it); the
    /// comparisons need all three.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,nginx,mcpgate",
        value_parser = ["direct", "nginx", "mcpgate"]
    )]
    pub targets: Vec<String>,
    /// Also measure mcpgate with its audit trail on and a 100-policy Cedar
    /// set on the route, and judge the audit trail's and the policies' cost
    /// against the gateway without them. Without this flag mcpgate runs in
    /// two configurations, rotated with the other targets: audit trail off
    /// (judged against nginx) and as shipped (audit on; for reference).
    #[arg(long)]
    pub features_matrix: bool,
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Proxy parallelism, the same for both proxies: nginx
    /// `worker_processes` and mcpgate's `TOKIO_WORKER_THREADS`.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Runtime threads of the upstream process.
    #[arg(long, default_value_t = 1)]
    pub upstream_threads: usize,
    /// Runtime threads of the load generator (this process).
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Idle SSE streams to open through mcpgate (and nginx) for the RSS
    /// measurement (0 skips that phase).
    #[arg(long, default_value_t = 10_000)]
    pub sse_streams: usize,
    /// Do not open the same idle SSE streams through nginx for reference.
    #[arg(long)]
    pub skip_sse_nginx: bool,
    /// Skip the throughput/latency phase.
    #[arg(long)]
    pub skip_load: bool,
    /// Print the results as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Keep the temporary directory (configs and child logs) and print it.
    #[arg(long)]
    pub keep_tmp: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Upstream(args)) => upstream::main(&args),
        Some(Command::Oauth(args)) => oauth::main(args),
        Some(Command::Audit(args)) => audit::main(args),
        None => run::main(cli.run),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        // The run completed but missed a target or saw errors.
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `10s`, `500ms`, `2m` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 10s, 500ms, 1m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (ms, s or m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn oauth_options_parse() {
        let cli = Cli::try_parse_from([
            "mcpgate-bench",
            "oauth",
            "--duration",
            "5s",
            "--concurrency",
            "1,4,16",
        ])
        .unwrap();
        let Some(Command::Oauth(a)) = cli.command else {
            panic!("not the oauth command");
        };
        assert_eq!(a.duration, Duration::from_secs(5));
        assert_eq!(a.concurrency, vec![1, 4, 16]);
        assert_eq!(a.flows, 200);
    }

    #[test]
    fn audit_subcommand_defaults() {
        let cli = Cli::try_parse_from(["mcpgate-bench", "audit", "--concurrency", "1,32"]).unwrap();
        let Some(Command::Audit(a)) = cli.command else {
            panic!("not the audit command");
        };
        assert_eq!(a.concurrency, vec![1, 32]);
        assert_eq!((a.rounds, a.workers), (3, 1));
        assert_eq!(a.duration, Duration::from_secs(5));
    }
}

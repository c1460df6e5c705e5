//! `mcpgate-bench oauth`: the built-in authorization server on its embedded
//! SQLite store: the authorization code flow's latency per step and
//! `refresh_token` grants per second, next to what the same disk allows.
//!
//! One run starts the release `mcpgate serve` with the authorization server
//! enabled (after `mcpgate user add` and `mcpgate client add` on the same
//! config), then:
//! 1. drives code flows one at a time the way a browser does (forms posted
//!    by hand, cookies kept, redirects not followed; see [`browser`]):
//!    `--flows` with a web redirect URI (the first signs in with Argon2id
//!    and consents, the others reuse the login session and the remembered
//!    consent), `--flows` with a loopback redirect URI (the consent page is
//!    shown every time: localhost impersonation), and `--logins` from a
//!    fresh browser each (Argon2id again, consent remembered);
//! 2. per `--concurrency` level, obtains that many refresh tokens of
//!    independent grants and runs as many closed-loop workers, each
//!    exchanging its current token for the next one (rotation: every use is
//!    durably committed, concurrent ones in shared SQLite transactions),
//!    with mcpgate's CPU time per grant split by thread (see [`cpu`]);
//! 3. runs the same write pattern directly on SQLite files in the same
//!    directory, opened as mcpgate's store opens them (see [`baseline`]):
//!    the ceiling mcpgate's number is to be read against.
//!
//! Latencies are measured by the client over loopback (request written to
//! last body byte read), so they include the client's own small share.
//! Trust boundary: none; a local measuring tool, which only signals the
//! process it started, by its pid.

// Before the submodules, which use it.
macro_rules! progress {
    ($($t:tt)*) => { eprintln!("[mcpgate-bench oauth] {}", format_args!($($t)*)) };
}

mod baseline;
mod browser;
mod cpu;
mod report;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use http::{Method, StatusCode};
use tokio::io::AsyncWriteExt as _;

use crate::load::LoadResult;
use crate::proc::{self, Child};
use browser::{Browser, Conn, FlowTiming, Tokens, code_flow, form, token_response};
use report::{FlowStats, RefreshStats, Report, Setup, ThreadCost};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";
/// The client's redirect URIs: a web application's (consent is
/// remembered) and a native application's loopback one (consent is asked
/// every time). Neither is ever contacted: redirects are not followed.
const WEB_CALLBACK: &str = "https://app.example/callback";
const LOOPBACK_CALLBACK: &str = "http://127.0.0.1:3000/callback";
/// Lifetime of refresh tokens the baselines create: mcpgate's default
/// (`refresh_token_ttl_secs`), which the generated config keeps.
const REFRESH_TTL_SECS: i64 = 30 * 86_400;

/// Options of `mcpgate-bench oauth`.
#[derive(Debug, Args)]
pub struct OauthArgs {
    /// The release `mcpgate` binary (default: next to this binary).
    #[arg(long, value_name = "PATH")]
    pub mcpgate: Option<PathBuf>,
    /// Measured time of each refresh run and each SQLite baseline run.
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    pub duration: Duration,
    /// Unmeasured time before each measurement, on the same workers.
    #[arg(long, default_value = "2s", value_parser = crate::parse_duration)]
    pub warmup: Duration,
    /// Concurrent refresh workers, each with its own grant and connection;
    /// a list (e.g. 1,4,16,64) measures each level in turn.
    #[arg(long, value_delimiter = ',', default_value = "16")]
    pub concurrency: Vec<usize>,
    /// Sequential code flows with one browser to each redirect URI: to the
    /// web one (the first signs in and consents, the others reuse the
    /// session and the remembered consent), then to the loopback one (the
    /// consent page every time).
    #[arg(long, default_value_t = 200)]
    pub flows: usize,
    /// Further flows from a fresh browser each: sign-in (Argon2id), consent
    /// remembered.
    #[arg(long, default_value_t = 10)]
    pub logins: usize,
    /// mcpgate's `TOKIO_WORKER_THREADS` (default: unset, one per CPU).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Run mcpgate with `[audit] enabled = false`, to see what the durable
    /// audit record of each grant costs (the default measures mcpgate as
    /// shipped, audit on).
    #[arg(long)]
    pub no_audit: bool,
    /// Skip the SQLite baseline runs.
    #[arg(long)]
    pub skip_baseline: bool,
    /// Print the results as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Keep the temporary directory (config, databases, mcpgate's log).
    #[arg(long)]
    pub keep_tmp: bool,
}

pub fn main(args: OauthArgs) -> anyhow::Result<bool> {
    if args.concurrency.contains(&0) {
        bail!("--concurrency must be at least 1");
    }
    // One thread drives the flows and the workers: the client's CPU share
    // stays small and is reported. SQLite's connections have their own.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(run(args))
}

async fn run(args: OauthArgs) -> anyhow::Result<bool> {
    let bin = match &args.mcpgate {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary has no directory")?
            .join("mcpgate"),
    };
    if !bin.is_file() {
        bail!(
            "no mcpgate binary at {bin:?}: build it with `cargo build --release -p mcpgate` \
             (same CARGO_TARGET_DIR) or pass --mcpgate PATH"
        );
    }
    let tmp = tempfile::Builder::new()
        .prefix("mcpgate-bench-oauth-")
        .tempdir()
        .context("creating the temporary directory")?;
    let dir = tmp.path().to_owned();
    progress!("working directory {}", dir.display());
    let result = measure_all(&args, &dir, &bin).await;
    if args.keep_tmp {
        let kept = tmp.keep();
        progress!("kept {}", kept.display());
    }
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(report.target_met)
}

async fn measure_all(args: &OauthArgs, dir: &Path, bin: &Path) -> anyhow::Result<Report> {
    let mut gw = AuthServer::start(bin, dir, args.workers, args.no_audit).await?;
    progress!(
        "mcpgate on {} (pid {}), client {}",
        gw.addr,
        gw.child.pid(),
        gw.flow.client_id
    );
    let result = measure_gateway(args, &mut gw).await;
    gw.child.stop(Duration::from_secs(5)).await;
    let (flows, refresh, current) = result?;
    let mut baseline = Vec::new();
    if !args.skip_baseline {
        // One writer committing back to back: the disk's fsync-bound ceiling.
        baseline.push(baseline::rotation(args, dir, 1, 1).await?);
        for (&c, tokens) in args.concurrency.iter().zip(current) {
            // The write pattern of mcpgate's rotations, through a pool like its own.
            let pool = baseline::MCPGATE_CONNECTIONS;
            baseline.push(baseline::rotation(args, dir, c, pool).await?);
            // mcpgate's own store, on its database, with the grants just used.
            let calls = baseline::store_calls(args, &gw.db_url, &gw.flow.client_id, tokens);
            baseline.push(calls.await?);
        }
    }
    let setup = Setup {
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        mcpgate_workers: args.workers,
        duration_secs: args.duration.as_secs_f64(),
        warmup_secs: args.warmup.as_secs_f64(),
        filesystem: filesystem_of(dir),
        audit: !args.no_audit,
    };
    Ok(Report::new(setup, flows, refresh, baseline))
}

/// The flows, then the refresh runs; returns the refresh workers' current
/// tokens per run too (for the store baseline).
async fn measure_gateway(
    args: &OauthArgs,
    gw: &mut AuthServer,
) -> anyhow::Result<(Vec<FlowStats>, Vec<RefreshStats>, Vec<Vec<String>>)> {
    let mut timings: Vec<FlowTiming> = Vec::new();
    let mut browser = Browser::new(gw.addr);
    progress!(
        "{} code flows with one browser to the web redirect URI, {} to the loopback one, \
         then {} sign-ins from fresh browsers",
        args.flows,
        args.flows,
        args.logins
    );
    for _ in 0..args.flows {
        timings.push(code_flow(&gw.flow, &mut browser, WEB_CALLBACK).await?.1);
    }
    for _ in 0..args.flows {
        timings.push(
            code_flow(&gw.flow, &mut browser, LOOPBACK_CALLBACK)
                .await?
                .1,
        );
    }
    for _ in 0..args.logins {
        let mut fresh = Browser::new(gw.addr);
        timings.push(code_flow(&gw.flow, &mut fresh, WEB_CALLBACK).await?.1);
    }
    gw.child.check_alive()?;
    let flows = report::flow_stats(&timings);

    let (mut refresh, mut current) = (Vec::new(), Vec::new());
    for &c in &args.concurrency {
        // Independent grants: one code flow each (the session makes them cheap).
        let mut tokens = Vec::with_capacity(c);
        for _ in 0..c {
            tokens.push(code_flow(&gw.flow, &mut browser, WEB_CALLBACK).await?.0);
        }
        let (stats, tokens) = refresh_run(args, gw, tokens).await?;
        current.push(tokens);
        progress!(
            "concurrency {c:>3}: {:>7.0} refresh grants/s  p50 {:.3} ms  p99 {:.3} ms  mcpgate CPU {:.0} µs/grant",
            stats.grants_per_sec,
            stats.p50_ms,
            stats.p99_ms,
            stats.mcpgate_cpu_us_per_grant
        );
        refresh.push(stats);
        gw.child.check_alive()?;
    }
    Ok((flows, refresh, current))
}

/// The running `mcpgate serve` and the public client registered on it.
#[derive(Debug)]
struct AuthServer {
    child: Child,
    addr: SocketAddr,
    /// Its `[storage] url`.
    db_url: String,
    flow: browser::Client,
}

impl AuthServer {
    async fn start(
        bin: &Path,
        dir: &Path,
        workers: Option<usize>,
        no_audit: bool,
    ) -> anyhow::Result<Self> {
        let port = proc::free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let issuer = format!("http://{addr}");
        let config = dir.join("gw.toml");
        let db_url = format!("sqlite://{}", dir.join("gw.db").display());
        // JSON strings are valid TOML basic strings.
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        std::fs::write(
            &config,
            format!(
                "# Written by mcpgate-bench oauth.\n\
                 listen = {listen}\n\
                 public_url = {public}\n\n\
                 [storage]\n\
                 url = {storage}\n\n\
                 [authorization_server]\n\
                 enabled = true\n\
                 # All the load comes from one address: limits that never\n\
                 # refuse it, while the per-address limiters still run.\n\
                 token_requests_per_minute = 60000000\n\
                 login_attempts_per_minute = 60000000\n\n\
                 [[routes]]\n\
                 path = \"/mcp\"\n\
                 # Never called: only the authorization server is measured.\n\
                 upstream_url = \"http://127.0.0.1:9/mcp\"\n\
                 scopes = [\"mcp\"]\n\n\
                 [audit]\n\
                 enabled = {audit}\n",
                listen = q(&addr.to_string()),
                audit = !no_audit,
                public = q(&issuer),
                storage = q(&db_url),
            ),
        )?;

        let mut add_user = tokio::process::Command::new(bin);
        add_user
            .args(["user", "add", USER, "--password-stdin", "--config"])
            .arg(&config)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = add_user.spawn().context("running mcpgate user add")?;
        let mut stdin = child.stdin.take().context("mcpgate user add: no stdin")?;
        stdin.write_all(format!("{PASSWORD}\n").as_bytes()).await?;
        drop(stdin);
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            bail!(
                "mcpgate user add: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }

        let out = tokio::process::Command::new(bin)
            .args(["client", "add", "--name", "bench"])
            .args(["--redirect-uri", WEB_CALLBACK])
            .args(["--redirect-uri", LOOPBACK_CALLBACK])
            .arg("--config")
            .arg(&config)
            .arg("--json")
            .output()
            .await
            .context("running mcpgate client add")?;
        if !out.status.success() {
            bail!(
                "mcpgate client add: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .context("mcpgate client add --json printed no JSON")?;
        let client_id = v["client_id"]
            .as_str()
            .context("mcpgate client add --json: no client_id")?
            .to_owned();

        let mut cmd = tokio::process::Command::new(bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--log-format")
            .arg("json");
        if let Some(n) = workers {
            cmd.env("TOKIO_WORKER_THREADS", n.to_string());
        }
        let mut child = Child::spawn("mcpgate", cmd, &dir.join("gw.log"), false)?;
        child
            .wait_ready(addr, "/readyz", StatusCode::OK, Duration::from_secs(30))
            .await?;
        Ok(Self {
            child,
            addr,
            db_url,
            flow: browser::Client {
                issuer,
                client_id,
                username: USER,
                password: PASSWORD,
            },
        })
    }
}

/// What a closed-loop worker did inside the window.
#[derive(Debug, Default)]
struct WorkerStats {
    ok: u64,
    latencies_ns: Vec<u64>,
    /// A refresh worker's current (unspent) refresh token at the end.
    refresh_token: Option<String>,
}

/// `tokens.len()` workers, each rotating its own refresh token for
/// warm-up + duration; CPU times are read at the window's edges. Returns
/// the workers' current refresh tokens too.
async fn refresh_run(
    args: &OauthArgs,
    gw: &AuthServer,
    tokens: Vec<Tokens>,
) -> anyhow::Result<(RefreshStats, Vec<String>)> {
    let concurrency = tokens.len();
    let start = Instant::now() + args.warmup;
    let end = start + args.duration;
    let pid = gw.child.pid();
    let window = tokio::spawn(cpu::sample_window(start, end, Some(pid)));
    let mut tasks = tokio::task::JoinSet::new();
    for t in tokens {
        let (addr, client_id) = (gw.addr, gw.flow.client_id.clone());
        tasks.spawn(refresh_worker(addr, client_id, t.refresh_token, start, end));
    }
    let (latencies, current) = collect(&mut tasks).await?;
    let cpu = window.await?;
    let r = LoadResult {
        ok: latencies.len() as u64,
        errors: 0,
        first_error: None,
        elapsed: args.duration,
        latencies_ns: latencies,
    };
    let per = |secs: f64| secs * 1e6 / r.ok.max(1) as f64;
    let stats = RefreshStats {
        concurrency,
        grants: r.ok,
        grants_per_sec: r.req_per_sec(),
        p50_ms: r.percentile_ms(50.0),
        p90_ms: r.percentile_ms(90.0),
        p99_ms: r.percentile_ms(99.0),
        mcpgate_cpu_us_per_grant: per(cpu.target),
        mcpgate_threads: cpu
            .threads
            .iter()
            .map(|g| ThreadCost {
                name: g.name.clone(),
                threads: g.threads,
                user_us_per_grant: per(g.user_secs),
                system_us_per_grant: per(g.system_secs),
                switches_per_grant: g.switches as f64 / r.ok.max(1) as f64,
            })
            .collect(),
        client_cpu_us_per_grant: per(cpu.me),
        background_cpus: cpu.background_cpus(args.duration),
    };
    Ok((stats, current))
}

async fn refresh_worker(
    addr: SocketAddr,
    client_id: String,
    mut refresh_token: String,
    start: Instant,
    end: Instant,
) -> anyhow::Result<WorkerStats> {
    let mut conn = Conn::new(addr);
    let mut stats = WorkerStats::default();
    while Instant::now() < end {
        let body = form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
            ("client_id", &client_id),
        ]);
        let t0 = Instant::now();
        let r = conn
            .send(Method::POST, browser::TOKEN, None, Some(body))
            .await?;
        let t1 = Instant::now();
        // Strictly sequential: the old token is spent, the new one is next.
        refresh_token = token_response(&r).context("refresh grant")?;
        if t1 >= start && t1 < end {
            stats.ok += 1;
            stats.latencies_ns.push((t1 - t0).as_nanos() as u64);
        }
    }
    stats.refresh_token = Some(refresh_token);
    Ok(stats)
}

/// Joins the workers; the first error aborts the run. Returns the sorted
/// latencies and the refresh workers' current tokens.
async fn collect(
    tasks: &mut tokio::task::JoinSet<anyhow::Result<WorkerStats>>,
) -> anyhow::Result<(Vec<u64>, Vec<String>)> {
    let (mut all, mut tokens) = (Vec::new(), Vec::new());
    while let Some(r) = tasks.join_next().await {
        let s = r.context("worker panicked")??;
        debug_assert_eq!(s.ok as usize, s.latencies_ns.len());
        all.extend(s.latencies_ns);
        tokens.extend(s.refresh_token);
    }
    all.sort_unstable();
    Ok((all, tokens))
}

/// The file system holding `dir` (`/proc/self/mounts`, longest mount point
/// that contains it), e.g. `ext4 on /dev/vda`: fsync costs depend on it.
fn filesystem_of(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f[..] {
                [dev, mnt, fs, ..] if dir.starts_with(mnt) => Some((mnt.len(), dev, mnt, fs)),
                _ => None,
            }
        })
        .max_by_key(|m| m.0)
        .map_or_else(
            || "unknown file system".to_owned(),
            |(_, dev, mnt, fs)| format!("{fs} on {dev} (mounted at {mnt})"),
        )
}

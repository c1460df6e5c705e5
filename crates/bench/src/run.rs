//! One benchmark run: start the upstream, the issuer, mcpgate and nginx,
//! measure the three targets in rotated order per round, then open the idle
//! SSE streams through a fresh mcpgate (and a fresh nginx), and report.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::io::AsyncBufReadExt as _;

use crate::RunArgs;
use crate::issuer::Issuer;
use crate::load::{self, TOOLS_CALL, Target};
use crate::proc::{self, Child};
use crate::report::{
    GW_AUDIT_OFF, GW_DEFAULT, GW_POLICIES, Report, RunStats, Setup, SseStats, TARGET_SSE_STREAMS,
};
use crate::sse;

/// The route every target serves (the upstream ignores the path).
const ROUTE: &str = "/mcp";
/// File descriptors kept free in a process besides two per stream.
const FD_MARGIN: u64 = 64;

pub fn main(args: RunArgs) -> anyhow::Result<bool> {
    let fd_limit = proc::raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()
        .context("starting the load generator's runtime")?;
    rt.block_on(run(args, fd_limit))
}

macro_rules! progress {
    ($($t:tt)*) => { eprintln!("[mcpgate-bench] {}", format_args!($($t)*)) };
}

async fn run(args: RunArgs, fd_limit: (Option<u64>, Option<u64>)) -> anyhow::Result<bool> {
    let mcpgate = match &args.mcpgate {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary has no directory")?
            .join("mcpgate"),
    };
    if !mcpgate.is_file() {
        bail!(
            "no mcpgate binary at {mcpgate:?}: build it with `cargo build --release -p mcpgate` \
             (same CARGO_TARGET_DIR) or pass --mcpgate PATH"
        );
    }
    let tmp = tempfile::Builder::new()
        .prefix("mcpgate-bench-")
        .tempdir()
        .context("creating the temporary directory")?;
    let dir = tmp.path().to_owned();
    progress!("working directory {}", dir.display());
    let result = measure_all(&args, &dir, &mcpgate, fd_limit).await;
    if args.keep_tmp {
        // Kept whatever the outcome: the child logs explain failures.
        let kept = tmp.keep();
        progress!("kept {}", kept.display());
    }
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(report.passed())
}

async fn measure_all(
    args: &RunArgs,
    dir: &Path,
    mcpgate: &Path,
    fd_limit: (Option<u64>, Option<u64>),
) -> anyhow::Result<Report> {
    let (mut upstream, upstream_addr) = start_upstream(args, dir).await?;
    progress!("upstream on {upstream_addr} (pid {})", upstream.pid());
    let issuer = Issuer::start().await?;
    progress!("issuer {} (JWKS {})", issuer.issuer, issuer.jwks_uri);

    let nginx_version = if args.skip_load && (args.sse_streams == 0 || args.skip_sse_nginx) {
        String::new()
    } else {
        nginx_version(&args.nginx).await?
    };
    let setup = Setup {
        connections: args.connections,
        duration_secs: args.duration.as_secs_f64(),
        warmup_secs: args.warmup.as_secs_f64(),
        rounds: args.rounds,
        proxy_workers: args.workers,
        upstream_threads: args.upstream_threads,
        client_threads: args.client_threads,
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        nginx_version,
        fd_limit,
    };

    let runs = if args.skip_load {
        Vec::new()
    } else {
        load_phase(args, dir, mcpgate, &issuer, &mut upstream, upstream_addr).await?
    };
    let sse = if args.sse_streams > 0 {
        sse_phase(args, dir, mcpgate, &issuer, &mut upstream, upstream_addr).await?
    } else {
        Vec::new()
    };
    upstream.stop(Duration::from_secs(2)).await;
    Ok(Report::new(setup, runs, sse))
}

async fn load_phase(
    args: &RunArgs,
    dir: &Path,
    mcpgate: &Path,
    issuer: &Issuer,
    upstream: &mut Child,
    upstream_addr: SocketAddr,
) -> anyhow::Result<Vec<RunStats>> {
    // mcpgate without its audit trail (the configuration the nginx targets
    // judge) and as shipped (audit on, no policy), and, with
    // --features-matrix, audit on with 100 policies on the route.
    let mut configs = vec![
        (
            GW_AUDIT_OFF,
            "gateway-audit-off",
            GatewayFeatures {
                audit: false,
                policy: None,
            },
        ),
        (GW_DEFAULT, "gateway", GatewayFeatures::default()),
    ];
    if args.features_matrix {
        let policy = dir.join("bench-policies.cedar");
        std::fs::write(&policy, policy_set())?;
        configs.push((
            GW_POLICIES,
            "gateway-policies",
            GatewayFeatures {
                audit: true,
                policy: Some(policy),
            },
        ));
    }
    let mut gws = Vec::new();
    for (target, name, features) in &configs {
        let gw = Gateway::start(
            mcpgate,
            dir,
            name,
            issuer,
            upstream_addr,
            args.workers,
            features,
        )
        .await?;
        gws.push((*target, gw));
    }
    let mut nginx = start_nginx(args, dir, upstream_addr, "nginx").await?;
    for (target, gw) in &gws {
        progress!(
            "{target} on {} (pid {}), {} worker(s)",
            gw.addr,
            gw.child.pid(),
            args.workers
        );
    }
    progress!(
        "nginx on {} (pid {}), {} worker(s)",
        nginx.1,
        nginx.0.pid(),
        args.workers
    );
    // Each target with the pid of its proxy.
    let mut targets = vec![
        (
            Target {
                name: "direct",
                addr: upstream_addr,
                path: ROUTE.into(),
                bearer: None,
            },
            None,
        ),
        (
            Target {
                name: "nginx",
                addr: nginx.1,
                path: ROUTE.into(),
                bearer: None,
            },
            Some(nginx.0.pid()),
        ),
    ];
    for (name, gw) in &gws {
        targets.push((
            Target {
                name,
                addr: gw.addr,
                path: ROUTE.into(),
                bearer: Some(issuer.mint(&gw.resource, "mcp")),
            },
            Some(gw.child.pid()),
        ));
    }
    for (t, _) in &targets {
        smoke(t).await?;
    }
    for (t, _) in targets.iter().filter(|(t, _)| t.bearer.is_some()) {
        // The gateway really authenticates: no token, no call.
        let anonymous = Target {
            bearer: None,
            ..t.clone()
        };
        let (status, _) = post(&anonymous).await?;
        if status != StatusCode::UNAUTHORIZED {
            bail!(
                "{} answered {status} to a tools/call without a token; expected 401",
                t.name
            );
        }
    }
    if let Some((t, _)) = targets.iter().find(|(t, _)| t.name == GW_POLICIES) {
        // ... and the policies are in force: a caller they forbid is refused.
        let denied = Target {
            bearer: Some(issuer.mint_as(&format!("http://{}{ROUTE}", t.addr), "mcp", "user0")),
            ..t.clone()
        };
        let (status, _) = post(&denied).await?;
        if status != StatusCode::FORBIDDEN {
            bail!(
                "{} answered {status} to a caller its policies forbid; expected 403",
                t.name
            );
        }
    }

    let selected: Vec<&(Target, Option<u32>)> = targets
        .iter()
        .filter(|(t, _)| {
            // `mcpgate` selects every mcpgate configuration.
            let kind = if t.bearer.is_some() {
                "mcpgate"
            } else {
                t.name
            };
            args.targets.iter().any(|n| n == kind)
        })
        .collect();
    let mut runs = Vec::new();
    for round in 0..args.rounds {
        for k in 0..selected.len() {
            // Rotate the order so no target always runs first or last.
            let (t, proxy_pid) = selected[(round + k) % selected.len()];
            let stats = measure(args, t, round + 1, *proxy_pid, upstream.pid()).await?;
            progress!(
                "round {}/{} {:<7}: {:>8.0} req/s  p50 {:.3} ms  p99 {:.3} ms  errors {}",
                round + 1,
                args.rounds,
                t.name,
                stats.req_per_sec,
                stats.p50_ms,
                stats.p99_ms,
                stats.errors
            );
            runs.push(stats);
            upstream.check_alive()?;
            nginx.0.check_alive()?;
            for (_, gw) in &mut gws {
                gw.child.check_alive()?;
            }
        }
    }
    nginx.0.stop(Duration::from_secs(5)).await;
    for (_, gw) in gws {
        gw.child.stop(Duration::from_secs(5)).await;
    }
    Ok(runs)
}

/// The `--features-matrix` policy set: 100 policies shaped like the policy
/// crate's "scoped" benchmark set (`crates/policy/examples/bench.rs`), so
/// that the scope index leaves the bench's call (`User::"bench"`,
/// `tools/call` of `Tool::"echo"` on `Route::"/mcp"`, scope `mcp`, from
/// 127.0.0.1) about six policies to evaluate, one of which permits it.
/// Nothing depends on the time of day or the weekday.
pub fn policy_set() -> String {
    let mut out = String::from(
        "// Written by mcpgate-bench --features-matrix.\n\
         @id(\"bench\")\n\
         permit (principal, action == Action::\"tools/call\", resource == Tool::\"echo\")\n\
         when { context.scopes.contains(\"mcp\") };\n",
    );
    // 40 per-tool permits, 20 per-tool argument forbids.
    for i in 0..40 {
        out += &format!(
            "permit (principal, action == Action::\"tools/call\", resource == Tool::\"tool{i}\")\n\
             when {{ principal.groups.contains(\"g{}\") || principal.scopes.contains(\"admin:tools\") }};\n",
            i % 10
        );
    }
    for i in 0..20 {
        out += &format!(
            "forbid (principal, action == Action::\"tools/call\", resource == Tool::\"tool{}\")\n\
             when {{ context.arguments has path && context.arguments.path like \"/secret/*\" }};\n",
            i * 2
        );
    }
    // 20 per-user forbids (user0 is the one the bench checks is refused).
    for i in 0..20 {
        out += &format!(
            "forbid (principal == User::\"user{}\", action, resource)\n\
             when {{ context.hour_utc < 6 || !context.scopes.contains(\"mcp:tools\") }};\n",
            i * 3
        );
    }
    // 10 permits on other routes, 5 session permits on other routes.
    for i in 0..10 {
        out += &format!(
            "permit (principal, action == Action::\"tools/call\", resource in Route::\"/r{}\")\n\
             when {{ context.scopes.contains(\"s{i}\") && context.arguments has limit && context.arguments.limit < 100 }};\n",
            i % 5
        );
    }
    for i in 0..5 {
        out += &format!(
            "permit (principal, action in [Action::\"initialize\", Action::\"ping\", Action::\"tools/list\", \
             Action::\"resources/list\", Action::\"prompts/list\"], resource == Route::\"/r{i}\");\n"
        );
    }
    // 4 on everything: evaluated for the bench's call, none denies it.
    out += "forbid (principal, action, resource) unless { context.weekday_utc < 7 || principal.roles.contains(\"oncall\") };\n\
            forbid (principal, action == Action::\"tools/call\", resource)\n  \
              when { context has client_ip && !context.client_ip.isLoopback() && !context.client_ip.isInRange(ip(\"10.0.0.0/8\")) };\n\
            forbid (principal is ApiKey, action == Action::\"tools/call\", resource) unless { context.mtls };\n\
            @id(\"admins\") permit (principal, action, resource) when { principal.roles.contains(\"admin\") };\n";
    out
}

/// One measured run of one target, with the CPU time its processes spent
/// inside the measured window.
async fn measure(
    args: &RunArgs,
    t: &Target,
    round: usize,
    proxy_pid: Option<u32>,
    upstream_pid: u32,
) -> anyhow::Result<RunStats> {
    let start = Instant::now() + args.warmup;
    let end = start + args.duration;
    let me = std::process::id();
    let sample = move || {
        (
            proxy_pid.map(proc::cpu_secs_tree),
            proc::cpu_secs_tree(upstream_pid),
            // Not the tree: the proxies and the upstream are our children.
            proc::cpu_secs(me),
            proc::system_busy_secs(),
        )
    };
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(start.into()).await;
        let a = sample();
        tokio::time::sleep_until(end.into()).await;
        (a, sample())
    });
    let r = load::run(t, args.connections, start, end).await?;
    let ((p0, u0, c0, s0), (p1, u1, c1, s1)) = sampler.await?;
    let per_req = |a: f64, b: f64| (b - a) * 1e6 / r.ok.max(1) as f64;
    let ours = (p1.unwrap_or(0.0) - p0.unwrap_or(0.0)) + (u1 - u0) + (c1 - c0);
    let background_cpus = ((s1 - s0) - ours).max(0.0) / args.duration.as_secs_f64();
    Ok(RunStats {
        target: t.name,
        round,
        req_per_sec: r.req_per_sec(),
        p50_ms: r.percentile_ms(50.0),
        p90_ms: r.percentile_ms(90.0),
        p99_ms: r.percentile_ms(99.0),
        ok: r.ok,
        errors: r.errors,
        first_error: r.first_error.clone(),
        proxy_cpu_us_per_req: p0.zip(p1).map(|(a, b)| per_req(a, b)),
        upstream_cpu_us_per_req: per_req(u0, u1),
        client_cpu_us_per_req: per_req(c0, c1),
        background_cpus,
    })
}

/// Opens the idle SSE streams through a fresh mcpgate and, for reference,
/// through a fresh nginx.
async fn sse_phase(
    args: &RunArgs,
    dir: &Path,
    mcpgate: &Path,
    issuer: &Issuer,
    upstream: &mut Child,
    upstream_addr: SocketAddr,
) -> anyhow::Result<Vec<SseStats>> {
    let mut out = Vec::new();
    // Fresh processes, so the memory measured is the streams' and not what
    // the load phase left in the allocator.
    let mut gw = Gateway::start(
        mcpgate,
        dir,
        "gateway-sse",
        issuer,
        upstream_addr,
        args.workers,
        &GatewayFeatures::default(),
    )
    .await?;
    let target = Target {
        name: "mcpgate",
        addr: gw.addr,
        path: ROUTE.into(),
        bearer: Some(issuer.mint(&gw.resource, "mcp")),
    };
    let r = hold_streams(args, &target, &mut gw.child, upstream).await;
    gw.child.stop(Duration::from_secs(5)).await;
    out.push(r?);
    if !args.skip_sse_nginx {
        let (mut nginx, addr) = start_nginx(args, dir, upstream_addr, "nginx-sse").await?;
        let target = Target {
            name: "nginx",
            addr,
            path: ROUTE.into(),
            bearer: None,
        };
        let r = hold_streams(args, &target, &mut nginx, upstream).await;
        nginx.stop(Duration::from_secs(5)).await;
        out.push(r?);
    }
    Ok(out)
}

/// Opens `--sse-streams` idle streams through `proxy` (as many as the fd
/// limits allow), reading its RSS before, along the way and at the end.
async fn hold_streams(
    args: &RunArgs,
    target: &Target,
    proxy: &mut Child,
    upstream: &mut Child,
) -> anyhow::Result<SseStats> {
    // One call first: keys fetched and the token verified, as on a proxy
    // that has seen traffic.
    smoke(target).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = proxy.pid();
    let baseline = proc::memory_tree(pid)?;
    // The process holding the connections (nginx: its worker).
    let holder = proc::connection_holders(pid)
        .into_iter()
        .next()
        .unwrap_or(pid);
    let (baseline_fds, soft) = proc::fds(holder)?;

    // Each stream costs the proxy two sockets (client and upstream side),
    // and this process and the upstream one each. With several nginx
    // workers the streams spread over them; the budget assumes one.
    let proxy_budget = soft.saturating_sub(baseline_fds + FD_MARGIN) / 2;
    let (my_open, my_soft) = proc::fds(std::process::id())?;
    let my_budget = my_soft.saturating_sub(my_open + FD_MARGIN);
    let (up_open, up_soft) = proc::fds(upstream.pid())?;
    let up_budget = up_soft.saturating_sub(up_open + FD_MARGIN);
    let requested = args.sse_streams;
    let budget = proxy_budget.min(my_budget).min(up_budget) as usize;
    let n = requested.min(budget);
    let name = target.name;
    let limited_by = (n < requested).then(|| {
        format!(
            "RLIMIT_NOFILE: {name}'s soft limit is {soft} with {baseline_fds} fds open at rest and \
             it needs 2 per stream (client + upstream socket), so at most {proxy_budget} streams fit \
             (this process: {my_budget}, upstream: {up_budget}); the hard limit can only be raised \
             with CAP_SYS_RESOURCE, so the RSS at {TARGET_SSE_STREAMS} is projected from the measured slope"
        )
    });
    if let Some(why) = &limited_by {
        progress!("{why}");
    }
    progress!(
        "opening {n} idle SSE streams through {name} (baseline RSS {} KiB, {baseline_fds} fds)",
        baseline.rss_kib
    );

    let bearer = target.bearer.as_deref();
    let mut streams = Vec::with_capacity(n);
    let mut checkpoints = Vec::new();
    let batches = 4;
    let started = Instant::now();
    for b in 0..batches {
        let upto = n * (b + 1) / batches;
        let batch = upto - streams.len();
        let opened = sse::open(target.addr, &target.path, bearer, batch)
            .await
            .with_context(|| {
                format!(
                    "opening SSE streams {}..{upto} through {name}",
                    streams.len()
                )
            })?;
        streams.extend(opened);
        proxy.check_alive()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let m = proc::memory_tree(pid)?;
        progress!(
            "  {upto} streams open through {name}: RSS {} KiB",
            m.rss_kib
        );
        checkpoints.push((upto, m));
    }
    progress!(
        "{} streams opened in {:.1}s",
        streams.len(),
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_end = proc::memory_tree(pid)?;
    let (fds_at_end, _) = proc::fds(holder)?;
    // Still alive? A stream that ended would be a proxy bug.
    proxy.check_alive()?;
    drop(streams);

    let kib_per_stream = if n > 0 {
        at_end.rss_kib.saturating_sub(baseline.rss_kib) as f64 / n as f64
    } else {
        0.0
    };
    // The target is stated at 10,000 streams: measured when that many
    // were open, else baseline + slope × 10,000.
    let projected = n < TARGET_SSE_STREAMS;
    let rss_kib_at_target = if projected {
        baseline.rss_kib as f64 + kib_per_stream * TARGET_SSE_STREAMS as f64
    } else {
        at_end.rss_kib as f64
    };
    Ok(SseStats {
        target: name,
        requested,
        opened: n,
        limited_by,
        baseline,
        baseline_fds,
        checkpoints,
        at_end,
        fds_at_end,
        fd_soft_limit: soft,
        kib_per_stream,
        target_streams: TARGET_SSE_STREAMS,
        rss_kib_at_target,
        projected,
    })
}

/// What a gateway's config turns on besides the route itself.
#[derive(Debug)]
struct GatewayFeatures {
    /// `[audit] enabled` (mcpgate's default: on).
    audit: bool,
    /// The route's `policy` file.
    policy: Option<PathBuf>,
}

impl Default for GatewayFeatures {
    /// mcpgate's defaults.
    fn default() -> Self {
        Self {
            audit: true,
            policy: None,
        }
    }
}

/// A running mcpgate with its address and the route's resource URI.
#[derive(Debug)]
struct Gateway {
    child: Child,
    addr: SocketAddr,
    resource: String,
}

impl Gateway {
    async fn start(
        bin: &Path,
        dir: &Path,
        name: &'static str,
        issuer: &Issuer,
        upstream: SocketAddr,
        workers: usize,
        features: &GatewayFeatures,
    ) -> anyhow::Result<Self> {
        let port = proc::free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let public_url = format!("http://{addr}");
        let config_path = dir.join(format!("{name}.toml"));
        let db = dir.join(format!("{name}.db"));
        // JSON strings are valid TOML basic strings.
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let config = format!(
            "# Written by mcpgate-bench.\n\
             listen = {listen}\n\
             public_url = {public}\n\n\
             [storage]\n\
             url = {storage}\n\n\
             [limits]\n\
             # Stop quickly at the end of the run even with streams open.\n\
             shutdown_grace_secs = 1\n\n\
             [audit]\n\
             enabled = {audit}\n\n\
             [[trusted_issuers]]\n\
             issuer = {iss}\n\
             jwks_uri = {jwks}\n\n\
             [[routes]]\n\
             path = {route}\n\
             upstream_url = {up}\n\
             scopes = [\"mcp\"]\n\
             {policy}",
            listen = q(&addr.to_string()),
            public = q(&public_url),
            storage = q(&format!("sqlite://{}", db.display())),
            iss = q(&issuer.issuer),
            jwks = q(&issuer.jwks_uri),
            route = q(ROUTE),
            up = q(&format!("http://{upstream}{ROUTE}")),
            audit = features.audit,
            policy = features.policy.as_ref().map_or_else(String::new, |p| {
                format!("policy = {}\n", q(&p.display().to_string()))
            }),
        );
        std::fs::write(&config_path, config)?;
        let mut cmd = tokio::process::Command::new(bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--log-format")
            .arg("json")
            .env("TOKIO_WORKER_THREADS", workers.to_string());
        let mut child = Child::spawn("mcpgate", cmd, &dir.join(format!("{name}.log")), false)?;
        child
            .wait_ready(addr, "/readyz", StatusCode::OK, Duration::from_secs(30))
            .await?;
        Ok(Self {
            child,
            addr,
            resource: format!("{public_url}{ROUTE}"),
        })
    }
}

async fn start_upstream(args: &RunArgs, dir: &Path) -> anyhow::Result<(Child, SocketAddr)> {
    let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
    cmd.arg("upstream")
        .arg("--port")
        .arg("0")
        .arg("--threads")
        .arg(args.upstream_threads.to_string());
    let mut child = Child::spawn("upstream", cmd, &dir.join("upstream.log"), true)?;
    let stdout = child.stdout().context("upstream stdout not piped")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .context("upstream did not start within 10s")??
        .with_context(|| format!("upstream exited: {}", proc::log_tail(&child.log)))?;
    let addr = line
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("unexpected upstream output {line:?}"))?;
    Ok((child, addr))
}

async fn nginx_version(bin: &Path) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(bin)
        .arg("-v")
        .output()
        .await
        .with_context(|| {
            format!("running {bin:?} -v: is nginx installed? (scripts/bench installs it)")
        })?;
    // nginx prints its version on stderr.
    Ok(String::from_utf8_lossy(&out.stderr)
        .trim()
        .trim_start_matches("nginx version: ")
        .to_owned())
}

/// nginx as a plain reverse proxy to the upstream: HTTP/1.1 keep-alive to
/// the upstream, no buffering, no access log (mcpgate writes no per-request
/// log either), keep-alive limits raised so neither side closes
/// connections during the run (hyper, under mcpgate, has no such limit).
fn nginx_conf(
    dir: &Path,
    name: &str,
    port: u16,
    upstream: SocketAddr,
    workers: usize,
    worker_connections: usize,
) -> String {
    // As root, nginx's workers would switch to `nobody`, who cannot use the
    // (0700) temporary directory; they stay root here.
    let user = if proc::is_root() { "user root;\n" } else { "" };
    let d = dir.display();
    format!(
        "# Written by mcpgate-bench.\n\
         {user}worker_processes {workers};\n\
         error_log {d}/{name}-error.log warn;\n\
         pid {d}/{name}.pid;\n\
         events {{ worker_connections {worker_connections}; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {d}/{name}-tmp/body;\n\
         \x20   proxy_temp_path {d}/{name}-tmp/proxy;\n\
         \x20   fastcgi_temp_path {d}/{name}-tmp/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/{name}-tmp/uwsgi;\n\
         \x20   scgi_temp_path {d}/{name}-tmp/scgi;\n\
         \x20   keepalive_requests 100000000;\n\
         \x20   upstream mcp {{\n\
         \x20       server {upstream};\n\
         \x20       keepalive 128;\n\
         \x20       keepalive_requests 100000000;\n\
         \x20   }}\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{port};\n\
         \x20       location / {{\n\
         \x20           proxy_pass http://mcp;\n\
         \x20           proxy_http_version 1.1;\n\
         \x20           proxy_set_header Connection \"\";\n\
         \x20           proxy_buffering off;\n\
         \x20           # Idle event streams stay open (mcpgate has no read timeout).\n\
         \x20           proxy_read_timeout 1h;\n\
         \x20       }}\n\
         \x20   }}\n\
         }}\n"
    )
}

async fn start_nginx(
    args: &RunArgs,
    dir: &Path,
    upstream: SocketAddr,
    name: &str,
) -> anyhow::Result<(Child, SocketAddr)> {
    let port = proc::free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    std::fs::create_dir_all(dir.join(format!("{name}-tmp")))?;
    let conf: PathBuf = dir.join(format!("{name}.conf"));
    // nginx preallocates its connection table (it counts in its RSS): room
    // for the load and, two connections per proxied stream, the SSE phase,
    // plus the 1/16 nginx keeps free (below that it starts closing
    // connections it deems reusable).
    let worker_connections = (2 * args.sse_streams * 9 / 8 + 1024).max(4096);
    std::fs::write(
        &conf,
        nginx_conf(dir, name, port, upstream, args.workers, worker_connections),
    )?;
    let mut cmd = tokio::process::Command::new(&args.nginx);
    cmd.arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join(format!("{name}-error.log")))
        .arg("-c")
        .arg(&conf)
        .arg("-g")
        .arg("daemon off;");
    let mut child = Child::spawn("nginx", cmd, &dir.join(format!("{name}.log")), false)?;
    // GET goes through to the upstream, which answers 405 to a GET that
    // does not ask for an event stream.
    child
        .wait_ready(
            addr,
            ROUTE,
            StatusCode::METHOD_NOT_ALLOWED,
            Duration::from_secs(10),
        )
        .await?;
    Ok((child, addr))
}

async fn post(t: &Target) -> anyhow::Result<(StatusCode, Bytes)> {
    proc::request(
        t.addr,
        Method::POST,
        &t.path,
        &t.headers()?,
        Bytes::from_static(TOOLS_CALL.as_bytes()),
    )
    .await
}

/// One tools/call through `t` must return the upstream's result.
async fn smoke(t: &Target) -> anyhow::Result<()> {
    let (status, body) = post(t)
        .await
        .with_context(|| format!("smoke test of {}", t.name))?;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status != StatusCode::OK || v.get("result").is_none() || v["id"] != 1 {
        bail!(
            "smoke test of {}: {status} {}",
            t.name,
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

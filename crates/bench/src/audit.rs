//! `mcpgate-bench audit`: the audit trail's writer on its own, in this
//! process, without HTTP, the upstream or a load generator on the CPUs.
//!
//! Each of N tasks appends a gateway-shaped `mcp_request` event and waits
//! for its durable commit ([`AuditLog::append`], as the gateway does before
//! answering a successful request), then appends the next. The store is a
//! fresh SQLite file opened as `mcpgate serve` opens it (WAL,
//! `synchronous=FULL`), in a temporary directory on the disk given.
//!
//! What it reports per round: records committed per second, records per
//! commit (how well group commit works at that concurrency), and the CPU
//! spent per record by the writer's thread (`mcpgate-audit`, read from
//! `/proc/self/task/TID/schedstat`, nanoseconds) and by the whole process.
//! The writer's CPU per record is the number to compare between builds:
//! unlike throughput on a shared machine, it hardly depends on what else
//! runs.
//!
//! Trust boundary: none; a local measuring tool.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;

use mcpgate_audit::{AuditConfig, AuditLog, Event, EventKind, outcome};
use mcpgate_crypto::master::MasterKey;

use crate::proc;

/// Options of `mcpgate-bench audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Measured time per round and concurrency.
    #[arg(long, default_value = "5s", value_parser = crate::parse_duration)]
    pub duration: Duration,
    /// Unmeasured appends before each measurement.
    #[arg(long, default_value = "1s", value_parser = crate::parse_duration)]
    pub warmup: Duration,
    /// Rounds per concurrency; the table shows medians.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Concurrent appenders, each waiting for its commit before the next
    /// append; a list (e.g. 1,32,256) measures each in turn.
    #[arg(long, value_delimiter = ',', default_value = "32")]
    pub concurrency: Vec<usize>,
    /// Directory for the SQLite file (default: the system's temporary
    /// directory; put it on the disk the gateway's database would use).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Runtime worker threads of the appenders (the writer has its own).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
}

/// One measured round.
#[derive(Debug, Clone, Copy)]
struct Round {
    records_per_sec: f64,
    records_per_commit: f64,
    writer_us_per_record: f64,
    process_us_per_record: f64,
}

pub fn main(args: AuditArgs) -> anyhow::Result<bool> {
    if args.concurrency.contains(&0) || args.rounds == 0 || args.workers == 0 {
        bail!("--concurrency, --rounds and --workers must be at least 1");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(run(args))
}

async fn run(args: AuditArgs) -> anyhow::Result<bool> {
    let tmp = match &args.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("creating a temporary directory")?;
    let url = format!("sqlite://{}", tmp.path().join("audit.db").display());
    let store = mcpgate_store::open_audit(&url)
        .await
        .with_context(|| format!("opening {url}"))?;
    let mut key = [0u8; 32];
    mcpgate_crypto::random_bytes(&mut key).context("random key")?;
    let master = MasterKey::from_bytes(&key).context("master key")?;
    let log = AuditLog::open(store, &master, AuditConfig::default())
        .await
        .context("opening the audit log")?;
    let writer = writer_tid().context("no mcpgate-audit thread in this process")?;

    println!(
        "mcpgate-bench audit: durable appends to SQLite in {}, {} s per round x {}, medians shown",
        tmp.path().display(),
        args.duration.as_secs_f64(),
        args.rounds
    );
    println!(
        "{:>11} {:>10} {:>15} {:>22} {:>23}",
        "concurrency",
        "records/s",
        "records/commit",
        "writer CPU/record (µs)",
        "process CPU/record (µs)"
    );
    for &n in &args.concurrency {
        let mut rounds = Vec::with_capacity(args.rounds);
        for _ in 0..args.rounds {
            rounds.push(round(&log, n, &args, writer).await?);
        }
        let med = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
        println!(
            "{:>11} {:>10.0} {:>15.1} {:>22.2} {:>23.2}",
            n,
            med(|r| r.records_per_sec),
            med(|r| r.records_per_commit),
            med(|r| r.writer_us_per_record),
            med(|r| r.process_us_per_record),
        );
    }
    log.shutdown().await.context("stopping the audit log")?;
    Ok(true)
}

/// `n` appenders for the warm-up and the measured window.
async fn round(log: &AuditLog, n: usize, args: &AuditArgs, writer: u32) -> anyhow::Result<Round> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (log, stop, done) = (log.clone(), stop.clone(), done.clone());
        tasks.spawn(async move {
            let subject = format!("user-{i}");
            let args = serde_json::json!({ "path": "/srv/shared/report.txt", "limit": 10 });
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                // As the gateway records a served tools/call.
                let ev = Event::new(EventKind::McpRequest, outcome::OK)
                    .route("/mcp")
                    .subject(subject.as_str())
                    .client_id("bench-client")
                    .method("tools/call")
                    .name("read_file")
                    .args(&args)
                    .latency(started.elapsed())
                    .peer("127.0.0.1");
                log.append(ev).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    // Records, commits, writer CPU (ns), process CPU (s), and when.
    let sample = || {
        (
            done.load(Ordering::Relaxed),
            log.stats().batches,
            thread_cpu_ns(writer),
            proc::cpu_secs(std::process::id()),
            Instant::now(),
        )
    };
    tokio::time::sleep(args.warmup).await;
    let (r0, b0, w0, p0, t0) = sample();
    tokio::time::sleep(args.duration).await;
    let (r1, b1, w1, p1, t1) = sample();
    stop.store(true, Ordering::Relaxed);
    while let Some(joined) = tasks.join_next().await {
        joined.context("an appender panicked")??;
    }
    let records = (r1 - r0).max(1) as f64;
    Ok(Round {
        records_per_sec: records / (t1 - t0).as_secs_f64(),
        records_per_commit: records / (b1 - b0).max(1) as f64,
        writer_us_per_record: w1.saturating_sub(w0) as f64 / 1_000.0 / records,
        process_us_per_record: (p1 - p0) * 1e6 / records,
    })
}

/// The audit writer's thread in this process.
fn writer_tid() -> Option<u32> {
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .find_map(|e| {
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            (comm.trim() == "mcpgate-audit")
                .then(|| e.file_name().to_str()?.parse().ok())
                .flatten()
        })
}

/// Nanoseconds thread `tid` of this process has run (the first field of
/// its `schedstat`).
fn thread_cpu_ns(tid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_round_commits_records_and_reads_the_writer_thread() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        let store = mcpgate_store::open_audit(&url).await.unwrap();
        let master = MasterKey::from_bytes(&[9; 32]).unwrap();
        let log = AuditLog::open(store, &master, AuditConfig::default())
            .await
            .unwrap();
        let writer = writer_tid().expect("the writer thread is found by name");
        let args = AuditArgs {
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(50),
            rounds: 1,
            concurrency: vec![4],
            dir: None,
            workers: 1,
        };
        let r = round(&log, 4, &args, writer).await.unwrap();
        let committed = log.stats().committed;
        log.shutdown().await.unwrap();
        assert!(committed > 1, "appends were committed: {committed}");
        assert!(r.records_per_sec > 0.0, "{r:?}");
        // Four appenders, each waiting for its commit: at most four a batch.
        assert!(
            (1.0..=4.0).contains(&r.records_per_commit),
            "records per commit: {r:?}"
        );
        assert!(
            r.writer_us_per_record > 0.0,
            "the writer's CPU was read: {r:?}"
        );
    }

    #[test]
    fn median_takes_the_middle() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![5.0]), 5.0);
    }
}

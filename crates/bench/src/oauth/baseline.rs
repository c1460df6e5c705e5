//! What mcpgate's refresh grants are read against, on the same disk:
//! - [`rotation`]: the write pattern of a rotation alone (`BEGIN IMMEDIATE;
//!   UPDATE; INSERT; COMMIT`) on a SQLite file opened with the settings of
//!   mcpgate's store (crates/store/src/sql.rs: WAL, `synchronous=FULL`, a
//!   5 s busy timeout): the ceiling set by SQLite and the disk;
//! - [`store_calls`]: the calls a refresh grant makes on mcpgate's own store
//!   (`mcpgate_store`, the same database), without HTTP, JSON or signing:
//!   what the storage layer alone allows.

use std::path::Path;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use mcpgate_store::{DEFAULT_TENANT, RefreshRotation, RefreshTokenRecord, Store};
use tokio::task::JoinSet;

use super::report::BaselineStats;
use super::{OauthArgs, REFRESH_TTL_SECS, WorkerStats, collect, cpu};
use crate::load::LoadResult;

/// As mcpgate's store: how long a connection waits for the write lock ...
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// ... and its pool size (SQLITE_MAX_CONNECTIONS).
pub const MCPGATE_CONNECTIONS: u32 = 4;
/// The kinds of baseline, as reported.
pub const ROTATION_ONLY: &str = "rotation statements only";
pub const STORE_CALLS: &str = "mcpgate's store: a grant's calls";

/// `refresh_tokens` as in mcpgate's SQLite schema (0004_grants.sql), with
/// its indexes, without the foreign key to `grants`.
const BASELINE_SCHEMA: [&str; 3] = [
    "CREATE TABLE refresh_tokens (
        tenant_id  TEXT    NOT NULL,
        token_hash BLOB    NOT NULL CHECK (length(token_hash) = 32),
        grant_id   TEXT    NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        rotated_at INTEGER,
        PRIMARY KEY (tenant_id, token_hash)
    ) STRICT",
    "CREATE INDEX refresh_tokens_tenant_grant ON refresh_tokens (tenant_id, grant_id)",
    "CREATE INDEX refresh_tokens_tenant_expires ON refresh_tokens (tenant_id, expires_at)",
];
const BASELINE_CLAIM: &str = "UPDATE refresh_tokens SET rotated_at = $3 \
    WHERE tenant_id = $1 AND token_hash = $2 AND rotated_at IS NULL AND expires_at > $3";
const BASELINE_INSERT: &str = "INSERT INTO refresh_tokens \
    (tenant_id, token_hash, grant_id, created_at, expires_at, rotated_at) \
    VALUES ($1, $2, $3, $4, $5, NULL)";

/// `concurrency` tasks over a pool of `connections`, each looping
/// `BEGIN IMMEDIATE; UPDATE (claim its row); INSERT (the successor); COMMIT`
/// on a fresh database file in `dir`, opened as mcpgate opens its store.
pub async fn rotation(
    args: &OauthArgs,
    dir: &Path,
    concurrency: usize,
    connections: u32,
) -> anyhow::Result<BaselineStats> {
    let path = dir.join(format!("baseline-{concurrency}x{connections}.db"));
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(connections)
        .connect_with(options)
        .await
        .with_context(|| format!("opening {path:?}"))?;
    for stmt in BASELINE_SCHEMA {
        sqlx::query(stmt).execute(&pool).await?;
    }
    let mut hashes = Vec::with_capacity(concurrency);
    for i in 0..concurrency {
        let h = new_hash()?;
        insert_token(&pool, &h, &format!("grant-{i}")).await?;
        hashes.push(h);
    }
    let stats = measure(
        args,
        ROTATION_ONLY,
        concurrency,
        connections,
        |tasks, start, end| {
            for (i, h) in hashes.into_iter().enumerate() {
                let grant = format!("grant-{i}");
                tasks.spawn(rotation_worker(pool.clone(), grant, h, start, end));
            }
        },
    )
    .await;
    pool.close().await;
    stats
}

/// One task per refresh token (raw, as issued to the client), each looping
/// over what the token endpoint asks of the store for a refresh grant:
/// the client, the token's grant, and the rotation (which checks the user
/// and is group-committed with the other tasks' rotations), on mcpgate's
/// database `url` (mcpgate stopped). The client's last use, which the
/// token endpoint writes at most once a minute off the response's path,
/// is left out.
pub async fn store_calls(
    args: &OauthArgs,
    url: &str,
    client_id: &str,
    tokens: Vec<String>,
) -> anyhow::Result<BaselineStats> {
    let store = mcpgate_store::open(url)
        .await
        .with_context(|| format!("opening mcpgate's store {url}"))?;
    let concurrency = tokens.len();
    measure(
        args,
        STORE_CALLS,
        concurrency,
        MCPGATE_CONNECTIONS,
        |tasks, start, end| {
            for t in tokens {
                let hash = mcpgate_crypto::sha256(t.as_bytes());
                let (store, client_id) = (store.clone(), client_id.to_owned());
                tasks.spawn(store_worker(store, client_id, hash, start, end));
            }
        },
    )
    .await
}

/// Runs the workers `spawn` starts (each given the window's start and end)
/// and measures the window.
async fn measure(
    args: &OauthArgs,
    kind: &'static str,
    concurrency: usize,
    connections: u32,
    spawn: impl FnOnce(&mut JoinSet<anyhow::Result<WorkerStats>>, Instant, Instant),
) -> anyhow::Result<BaselineStats> {
    progress!(
        "SQLite baseline, {kind}: {concurrency} task(s) over {connections} connection(s) for {:?}",
        args.duration
    );
    let start = Instant::now() + args.warmup;
    let end = start + args.duration;
    let window = tokio::spawn(cpu::sample_window(start, end, None));
    let mut tasks = JoinSet::new();
    spawn(&mut tasks, start, end);
    let (latencies, _) = collect(&mut tasks).await?;
    let cpu = window.await?;
    let r = LoadResult {
        ok: latencies.len() as u64,
        errors: 0,
        first_error: None,
        elapsed: args.duration,
        latencies_ns: latencies,
    };
    let stats = BaselineStats {
        kind,
        concurrency,
        connections,
        transactions: r.ok,
        tx_per_sec: r.req_per_sec(),
        p50_ms: r.percentile_ms(50.0),
        p99_ms: r.percentile_ms(99.0),
        cpu_us_per_tx: cpu.me * 1e6 / r.ok.max(1) as f64,
        background_cpus: cpu.background_cpus(args.duration),
    };
    progress!(
        "  {:.0} tx/s  p50 {:.3} ms  p99 {:.3} ms",
        stats.tx_per_sec,
        stats.p50_ms,
        stats.p99_ms
    );
    Ok(stats)
}

fn new_hash() -> anyhow::Result<[u8; 32]> {
    let mut raw = [0u8; 32];
    mcpgate_crypto::random_bytes(&mut raw).map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(mcpgate_crypto::sha256(&raw))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn insert_token<'e, E>(e: E, hash: &[u8; 32], grant: &str) -> anyhow::Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let t = unix_now();
    sqlx::query(BASELINE_INSERT)
        .bind(DEFAULT_TENANT)
        .bind(hash.as_slice())
        .bind(grant)
        .bind(t)
        .bind(t + REFRESH_TTL_SECS)
        .execute(e)
        .await?;
    Ok(())
}

async fn rotation_worker(
    pool: SqlitePool,
    grant: String,
    mut hash: [u8; 32],
    start: Instant,
    end: Instant,
) -> anyhow::Result<WorkerStats> {
    let mut stats = WorkerStats::default();
    while Instant::now() < end {
        let next = new_hash()?;
        let t0 = Instant::now();
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let claimed = sqlx::query(BASELINE_CLAIM)
            .bind(DEFAULT_TENANT)
            .bind(hash.as_slice())
            .bind(unix_now())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if claimed != 1 {
            bail!("baseline: the current row of {grant} was not claimed");
        }
        insert_token(&mut *tx, &next, &grant).await?;
        tx.commit().await?;
        let t1 = Instant::now();
        hash = next;
        if t1 >= start && t1 < end {
            stats.ok += 1;
            stats.latencies_ns.push((t1 - t0).as_nanos() as u64);
        }
    }
    Ok(stats)
}

async fn store_worker(
    store: std::sync::Arc<dyn Store>,
    client_id: String,
    mut hash: [u8; 32],
    start: Instant,
    end: Instant,
) -> anyhow::Result<WorkerStats> {
    let mut stats = WorkerStats::default();
    let tenant = DEFAULT_TENANT;
    while Instant::now() < end {
        let next = new_hash()?;
        let t0 = Instant::now();
        let client = store
            .client(tenant, &client_id)
            .await?
            .context("store baseline: the client is gone")?;
        let grant = store
            .grant_of_refresh_token(tenant, &hash)
            .await?
            .context("store baseline: no grant for the token")?;
        let t = unix_now();
        let rec = RefreshTokenRecord {
            tenant_id: tenant.to_owned(),
            token_hash: next.to_vec(),
            grant_id: grant.grant_id,
            created_at: t,
            expires_at: t + REFRESH_TTL_SECS,
            rotated_at: None,
        };
        match store
            .rotate_refresh_token(tenant, &client.client_id, &hash, &rec, t)
            .await?
        {
            RefreshRotation::Rotated(_) => {}
            other => bail!("store baseline: rotation refused: {other:?}"),
        }
        let t1 = Instant::now();
        hash = next;
        if t1 >= start && t1 < end {
            stats.ok += 1;
            stats.latencies_ns.push((t1 - t0).as_nanos() as u64);
        }
    }
    Ok(stats)
}

//! [`AuditLog`]: group-committed, durable appends by one writer task.
//!
//! Callers queue events on a bounded channel; the writer takes everything
//! queued (up to [`AuditConfig::max_batch`]), appends it to the chain in one
//! transaction, and only then answers each caller. While a batch commits the
//! next one gathers, so under load a single commit (one fsync) serves many
//! requests. The writer runs on a thread of its own, so that sealing records
//! (hashes, MACs) and, on SQLite, the database work itself stay off the
//! runtime's workers, which serve requests. [`AuditLog::append`] returns
//! only once its record is durable; [`AuditLog::append_nowait`] queues
//! without waiting (same chain, same order, no acknowledgement).
//!
//! Failure is loud and quick: a full queue is [`AuditError::Overloaded`]
//! at once, a failed commit [`AuditError::Write`] for every record of the
//! batch, a stuck store [`AuditError::Timeout`] after
//! [`AuditConfig::append_timeout`]. After a failed commit
//! [`AuditLog::ready`] reports the log unavailable until a probe (an empty
//! append, every [`AuditConfig::retry_interval`]) or a later batch succeeds,
//! so the gateway can refuse requests *before* serving them.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use mcpgate_crypto::master::MasterKey;
use mcpgate_store::{AuditRecord, AuditStore, StoreError};

use crate::AuditError;
use crate::chain::{ChainKey, Sealer};
use crate::event::{Event, EventKind, now_ms, outcome};
use crate::export::json_line;
use crate::sink::{Sink, SinkTarget};

/// How an [`AuditLog`] writes. [`Default`] gives the documented defaults.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The chain to append to (default `main`). Writers sharing a database
    /// share the chain; see the crate documentation.
    pub chain_id: String,
    /// Events queued at most (default 10 000); beyond, appends fail with
    /// [`AuditError::Overloaded`].
    pub queue_capacity: usize,
    /// Records per transaction at most (default 1024).
    pub max_batch: usize,
    /// A signed checkpoint whenever the chain passes a multiple of this many
    /// records (default 1000)…
    pub checkpoint_every: u64,
    /// …or in the first batch this long after this writer's last one
    /// (default 10 s), and always at [`AuditLog::shutdown`].
    pub checkpoint_interval: Duration,
    /// How long [`AuditLog::append`] waits for its commit (default 5 s).
    pub append_timeout: Duration,
    /// While the store fails, how often the writer probes it (default 1 s).
    pub retry_interval: Duration,
    /// When a batch starts with others already queued behind its first
    /// event, how long the writer waits for more before committing
    /// (default zero: never). A lone caller never waits, and neither does
    /// a batch after a commit that took longer than this (a slow disk):
    /// its events gathered while that commit ran. Waiting saves CPU per
    /// record (larger batches) and costs every caller the wait.
    pub commit_delay: Duration,
    /// Where committed records are copied as JSON lines, if anywhere.
    pub sink: Option<SinkTarget>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            chain_id: "main".to_owned(),
            queue_capacity: 10_000,
            max_batch: 1024,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            append_timeout: Duration::from_secs(5),
            retry_interval: Duration::from_secs(1),
            commit_delay: Duration::ZERO,
            sink: None,
        }
    }
}

/// Counters since [`AuditLog::open`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Records committed.
    pub committed: u64,
    /// Transactions that committed them.
    pub batches: u64,
    /// Records whose batch failed (not in the log).
    pub failed: u64,
    /// Events waiting in the queue.
    pub queued: usize,
    /// Sink lines dropped because the sink was behind.
    pub sink_dropped: u64,
    /// Sink writes that failed.
    pub sink_errors: u64,
    /// Whether the last commit failed.
    pub failing: bool,
}

/// The audit trail's writer. Cheap to clone; clones share the queue and
/// the writer task, which stops when [`AuditLog::shutdown`] is called or
/// the last clone is dropped (after committing what is queued).
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    chain_id: String,
    append_timeout: Duration,
}

/// State the writer shares with callers and the sink.
#[derive(Default)]
pub(crate) struct Shared {
    failing: AtomicBool,
    /// When the commit in progress started (unix ms), 0 when none is.
    commit_started_ms: AtomicI64,
    committed: AtomicU64,
    batches: AtomicU64,
    failed: AtomicU64,
    pub(crate) sink_dropped: AtomicU64,
    pub(crate) sink_errors: AtomicU64,
}

/// Answers an [`AuditLog::append`], giving its record back once committed
/// for the caller to drop: the record's strings were allocated on the
/// caller's thread, and glibc's `free` of another thread's allocation takes
/// that thread's arena lock and leaves work for its next `malloc` (on the
/// 2-vCPU bench VM, about 15 % of the writer's CPU, and 0.8 µs per request
/// on the worker). The caller turns its event into the stored record by
/// moving its strings (no copy); the writer only fills in the chain fields.
type Ack = oneshot::Sender<Result<AuditRecord, AuditError>>;
/// Answers [`AuditLog::shutdown`].
type StopAck = oneshot::Sender<Result<(), AuditError>>;

// Boxing the record would cost an allocation per append to save queue
// space only while shutdown messages (one per log) are queued.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Record(AuditRecord, Option<Ack>),
    Shutdown(StopAck),
}

/// Records on their way into one transaction, and who waits for each.
/// Kept apart so that the store gets the records as one slice.
struct Batch {
    records: Vec<AuditRecord>,
    acks: Vec<Option<Ack>>,
}

impl Batch {
    fn with_capacity(n: usize) -> Self {
        Self {
            records: Vec::with_capacity(n),
            acks: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, rec: AuditRecord, ack: Option<Ack>) {
        self.records.push(rec);
        self.acks.push(ack);
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The first `n` entries, taken out.
    fn split_front(&mut self, n: usize) -> Batch {
        let rest = Batch {
            records: self.records.split_off(n),
            acks: self.acks.split_off(n),
        };
        std::mem::replace(self, rest)
    }
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("chain_id", &self.inner.chain_id)
            .field("stats", &self.stats())
            .finish()
    }
}

impl AuditLog {
    /// Starts a writer appending to `config.chain_id` in `store`, tagging
    /// with a key derived from `master_key`, and commits an `audit_started`
    /// record before returning: an unwritable store fails here. Must be
    /// called within a multi-threaded Tokio runtime (the writer's thread
    /// runs its async parts, such as PostgreSQL appends, on it), or on a
    /// current-thread one while that is driven by `Runtime::block_on`.
    pub async fn open(
        store: Arc<dyn AuditStore>,
        master_key: &MasterKey,
        config: AuditConfig,
    ) -> Result<Self, AuditError> {
        if config.chain_id.is_empty() {
            return Err(AuditError::InvalidConfig("the audit chain id is empty"));
        }
        if config.queue_capacity == 0 || config.max_batch == 0 || config.checkpoint_every == 0 {
            return Err(AuditError::InvalidConfig(
                "audit queue capacity, batch size and checkpoint interval must be positive",
            ));
        }
        let shared = Arc::new(Shared::default());
        let sink = match &config.sink {
            Some(target) => Some(Sink::open(target, shared.clone())?),
            None => None,
        };
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let writer_id = writer_id();
        let writer = Writer {
            store,
            key: ChainKey::new(master_key),
            chain_id: config.chain_id.clone(),
            rx,
            shared: shared.clone(),
            sink,
            max_batch: config.max_batch,
            checkpoint_every: config.checkpoint_every,
            checkpoint_interval: config.checkpoint_interval,
            retry_interval: config.retry_interval,
            commit_delay: config.commit_delay,
            last_commit: Duration::ZERO,
            last_checkpoint: Instant::now(),
            writer_id: writer_id.clone(),
        };
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("mcpgate-audit".to_owned())
            .spawn(move || runtime.block_on(writer.run()))
            .map_err(AuditError::Start)?;
        let log = Self {
            inner: Arc::new(Inner {
                tx,
                shared,
                chain_id: config.chain_id,
                append_timeout: config.append_timeout,
            }),
        };
        log.append(Event::new(EventKind::AuditStarted, outcome::OK).details(
            serde_json::json!({ "writer": writer_id, "version": env!("CARGO_PKG_VERSION") }),
        ))
        .await?;
        Ok(log)
    }

    /// Appends `ev` and returns once its record is durably committed.
    ///
    /// Errors mean the record is not known to be in the log: the caller
    /// must not report success for what it audits (the gateway answers
    /// 503). After [`AuditError::Timeout`] the record may still be
    /// committed later. Dropping the future does not withdraw the event.
    pub async fn append(&self, ev: Event) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        self.enqueue(Msg::Record(record_of(&self.inner.chain_id, ev), Some(ack)))?;
        match tokio::time::timeout(self.inner.append_timeout, done).await {
            // Dropped here, on the caller's thread (see `Ack`).
            Ok(Ok(result)) => result.map(drop),
            // The writer stopped without answering.
            Ok(Err(_)) => Err(AuditError::Closed),
            Err(_) => Err(AuditError::Timeout(self.inner.append_timeout)),
        }
    }

    /// Queues `ev` without waiting for its commit: it takes its place in
    /// the chain in queue order, but nobody learns whether it was committed
    /// (a failed batch loses it, with a warning in the log). Fails only if
    /// the queue is full or the log closed.
    pub fn append_nowait(&self, ev: Event) -> Result<(), AuditError> {
        self.enqueue(Msg::Record(record_of(&self.inner.chain_id, ev), None))
    }

    /// Whether an append would be expected to succeed now: `Err` while the
    /// last commit failed (until the store recovers), while a commit has
    /// been running longer than the append timeout, when the queue is full
    /// or the log closed. The gateway checks this before serving a request
    /// whose route requires audit.
    pub fn ready(&self) -> Result<(), AuditError> {
        let shared = &self.inner.shared;
        if self.inner.tx.is_closed() {
            return Err(AuditError::Closed);
        }
        if shared.failing.load(Ordering::Relaxed) {
            return Err(AuditError::Unavailable);
        }
        let started = shared.commit_started_ms.load(Ordering::Relaxed);
        let timeout_ms = i64::try_from(self.inner.append_timeout.as_millis()).unwrap_or(i64::MAX);
        if started != 0 && now_ms().saturating_sub(started) > timeout_ms {
            return Err(AuditError::Unavailable);
        }
        if self.inner.tx.capacity() == 0 {
            return Err(AuditError::Overloaded);
        }
        Ok(())
    }

    /// Commits everything queued (including what other clones queue until
    /// the writer gets to this call), then an `audit_stopped` record with a
    /// signed checkpoint, flushes the sink and stops the writer. Later
    /// appends fail with [`AuditError::Closed`].
    pub async fn shutdown(&self) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        self.inner
            .tx
            .send(Msg::Shutdown(ack))
            .await
            .map_err(|_| AuditError::Closed)?;
        done.await.map_err(|_| AuditError::Closed)?
    }

    /// The chain this log appends to.
    pub fn chain_id(&self) -> &str {
        &self.inner.chain_id
    }

    pub fn stats(&self) -> AuditStats {
        let shared = &self.inner.shared;
        AuditStats {
            committed: shared.committed.load(Ordering::Relaxed),
            batches: shared.batches.load(Ordering::Relaxed),
            failed: shared.failed.load(Ordering::Relaxed),
            queued: self.inner.tx.max_capacity() - self.inner.tx.capacity(),
            sink_dropped: shared.sink_dropped.load(Ordering::Relaxed),
            sink_errors: shared.sink_errors.load(Ordering::Relaxed),
            failing: shared.failing.load(Ordering::Relaxed),
        }
    }

    fn enqueue(&self, msg: Msg) -> Result<(), AuditError> {
        self.inner.tx.try_send(msg).map_err(|err| match err {
            TrySendError::Full(_) => AuditError::Overloaded,
            TrySendError::Closed(_) => AuditError::Closed,
        })
    }
}

/// The single writer task.
struct Writer {
    store: Arc<dyn AuditStore>,
    key: ChainKey,
    chain_id: String,
    rx: mpsc::Receiver<Msg>,
    shared: Arc<Shared>,
    sink: Option<Sink>,
    max_batch: usize,
    checkpoint_every: u64,
    checkpoint_interval: Duration,
    retry_interval: Duration,
    commit_delay: Duration,
    /// How long the last commit took, from BEGIN to the end of its flush.
    last_commit: Duration,
    last_checkpoint: Instant,
    writer_id: String,
}

impl Writer {
    async fn run(mut self) {
        let mut batch = Batch::with_capacity(self.max_batch);
        let stop = loop {
            let first = if self.shared.failing.load(Ordering::Relaxed) {
                match tokio::time::timeout(self.retry_interval, self.rx.recv()).await {
                    Ok(msg) => msg,
                    Err(_) => {
                        self.probe().await;
                        continue;
                    }
                }
            } else {
                self.rx.recv().await
            };
            let mut stop = None;
            match first {
                // Every `AuditLog` is gone and the queue is empty.
                None => break None,
                Some(Msg::Shutdown(ack)) => stop = Some(ack),
                Some(Msg::Record(rec, ack)) => batch.push(rec, ack),
            }
            self.drain(&mut batch, &mut stop);
            // Others were queued with it: callers are appending
            // concurrently, and the ones just answered are about to again.
            // Waiting a moment lets them join this batch rather than pay for
            // a commit of their own (PostgreSQL's `commit_delay`); a lone
            // caller is not made to wait. When the last commit took longer
            // than the delay (a slow disk: the flush is most of it), this
            // batch gathered while it ran, and waiting would only add its
            // length to every caller's latency. A blocking sleep: this is
            // the writer's own thread.
            if batch.len() >= 2
                && batch.len() < self.max_batch
                && !self.commit_delay.is_zero()
                && self.last_commit < self.commit_delay
                && stop.is_none()
            {
                std::thread::sleep(self.commit_delay);
                self.drain(&mut batch, &mut stop);
            }
            if !batch.is_empty() {
                // Failures were answered to each caller.
                let _ = self.commit(&mut batch, false).await;
            }
            if stop.is_some() {
                break stop;
            }
        };
        if let Some(ack) = stop {
            // Refuse new events, take in what is queued already, and end
            // with the stop marker and a checkpoint.
            self.rx.close();
            let mut others = Vec::new();
            while let Ok(msg) = self.rx.try_recv() {
                match msg {
                    Msg::Record(rec, ack) => batch.push(rec, ack),
                    Msg::Shutdown(ack) => others.push(ack),
                }
            }
            batch.push(
                record_of(
                    &self.chain_id,
                    Event::new(EventKind::AuditStopped, outcome::OK)
                        .details(serde_json::json!({ "writer": self.writer_id })),
                ),
                None,
            );
            let mut result = Ok(());
            while !batch.is_empty() {
                let mut chunk = batch.split_front(batch.len().min(self.max_batch));
                // The checkpoint goes with the last chunk, the stop marker.
                result = result.and(self.commit(&mut chunk, batch.is_empty()).await);
            }
            if let Some(sink) = self.sink.take() {
                sink.close().await;
            }
            for other in others {
                let _ = other.send(match &result {
                    Ok(()) => Ok(()),
                    Err(_) => Err(AuditError::Unavailable),
                });
            }
            let _ = ack.send(result);
        } else if let Some(sink) = self.sink.take() {
            sink.close().await;
        }
        // How well group commit worked: records per transaction.
        tracing::info!(
            committed = self.shared.committed.load(Ordering::Relaxed),
            batches = self.shared.batches.load(Ordering::Relaxed),
            failed = self.shared.failed.load(Ordering::Relaxed),
            "audit writer stopped"
        );
    }

    /// Moves what is queued into `batch`, up to the batch size or a stop.
    fn drain(&mut self, batch: &mut Batch, stop: &mut Option<StopAck>) {
        while stop.is_none() && batch.len() < self.max_batch {
            match self.rx.try_recv() {
                Ok(Msg::Record(rec, ack)) => batch.push(rec, ack),
                Ok(Msg::Shutdown(ack)) => *stop = Some(ack),
                Err(_) => break,
            }
        }
    }

    /// Appends `batch` in one transaction and answers its callers.
    async fn commit(
        &mut self,
        batch: &mut Batch,
        final_checkpoint: bool,
    ) -> Result<(), AuditError> {
        let n = batch.len() as u64;
        match self.append(&mut batch.records, final_checkpoint).await {
            Ok(()) => {
                if self.shared.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("audit store writable again");
                }
                for (rec, ack) in batch.records.drain(..).zip(batch.acks.drain(..)) {
                    if let Some(ack) = ack {
                        // The caller may have given up waiting; the record
                        // is committed all the same.
                        let _ = ack.send(Ok(rec));
                    }
                }
                Ok(())
            }
            Err(err) => {
                let err = Arc::new(err);
                self.shared.failed.fetch_add(n, Ordering::Relaxed);
                if !self.shared.failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        error = %err,
                        records = n,
                        "audit append failed; the audit log is unavailable until the store recovers"
                    );
                } else {
                    tracing::debug!(error = %err, records = n, "audit append failed again");
                }
                let mut lost = 0usize;
                batch.records.clear();
                for ack in batch.acks.drain(..) {
                    match ack {
                        Some(ack) => {
                            let _ = ack.send(Err(AuditError::Write(err.clone())));
                        }
                        None => lost += 1,
                    }
                }
                if lost > 0 {
                    tracing::warn!(lost, "unacknowledged audit events were not committed");
                }
                Err(AuditError::Write(err))
            }
        }
    }

    /// While the store fails: tries to append an `audit_recovered` record,
    /// a real write (an empty one could succeed while records cannot be
    /// inserted). Success ends the outage, and the record marks it.
    async fn probe(&mut self) {
        let ev = Event::new(EventKind::AuditRecovered, outcome::OK).details(serde_json::json!({
            "writer": self.writer_id,
            "failed_records": self.shared.failed.load(Ordering::Relaxed),
        }));
        let mut rec = [record_of(&self.chain_id, ev)];
        match self.append(&mut rec, false).await {
            Ok(()) => {
                self.shared.failing.store(false, Ordering::Relaxed);
                tracing::info!("audit store writable again");
            }
            Err(err) => tracing::debug!(error = %err, "audit store still failing"),
        }
    }

    /// Appends `records` in one transaction, with a checkpoint if one is
    /// due; on success counts them and copies them to the sink.
    async fn append(
        &mut self,
        records: &mut [AuditRecord],
        final_checkpoint: bool,
    ) -> Result<(), StoreError> {
        let sealer = Sealer {
            key: &self.key,
            checkpoint_every: self.checkpoint_every,
            checkpoint_now: final_checkpoint
                || self.last_checkpoint.elapsed() >= self.checkpoint_interval,
            now_ms: now_ms(),
        };
        self.shared
            .commit_started_ms
            .store(now_ms().max(1), Ordering::Relaxed);
        let started = Instant::now();
        let result = self
            .store
            .append_audit(&self.chain_id, records, &sealer)
            .await;
        self.last_commit = started.elapsed();
        self.shared.commit_started_ms.store(0, Ordering::Relaxed);
        let sealed = result?;
        if let Some(cp) = &sealed.checkpoint {
            self.last_checkpoint = Instant::now();
            // Shipped off the machine with the logs, this line is an anchor
            // for `verify` (see `VerifyOptions::anchors`).
            tracing::info!(
                anchor = %format_args!("{}:{}:{}", cp.chain_id, cp.seq, crate::hex(&cp.hash)),
                "audit checkpoint"
            );
        }
        self.shared
            .committed
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        self.shared.batches.fetch_add(1, Ordering::Relaxed);
        if let Some(sink) = &self.sink {
            sink.send(records.iter().map(json_line).collect());
        }
        Ok(())
    }
}

/// The stored form of `ev`, its chain fields still blank; its strings are
/// moved, not copied.
fn record_of(chain_id: &str, ev: Event) -> AuditRecord {
    AuditRecord {
        chain_id: chain_id.to_owned(),
        seq: 0,
        time_ms: ev.time_ms,
        kind: ev.kind.as_str().to_owned(),
        route: ev.route,
        subject: ev.subject,
        client_id: ev.client_id,
        method: ev.method,
        name: ev.name,
        outcome: ev.outcome,
        reason: ev.reason,
        policy_ids: policy_ids_json(&ev.policy_ids),
        args_digest: ev.args_digest,
        latency_us: ev
            .latency_us
            .map(|us| i64::try_from(us).unwrap_or(i64::MAX)),
        peer: ev.peer,
        details: ev.details.as_ref().map(ToString::to_string),
        prev_hash: Vec::new(),
        hash: Vec::new(),
        tag: String::new(),
    }
}

/// The `policy_ids` column: a JSON array of strings.
fn policy_ids_json(ids: &[String]) -> String {
    if ids.is_empty() {
        return "[]".to_owned();
    }
    serde_json::Value::from(ids).to_string()
}

/// A random id for this writer, named in its start and stop records.
fn writer_id() -> String {
    let mut bytes = [0u8; 8];
    if mcpgate_crypto::random_bytes(&mut bytes).is_err() {
        // Only a label; the time keeps it distinct enough.
        bytes = now_ms().to_be_bytes();
    }
    crate::hex(&bytes)
}

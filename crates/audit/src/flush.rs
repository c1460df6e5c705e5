//! Flushers: threads that make committed batches durable, then answer
//! their callers.
//!
//! On SQLite the writer commits a batch without waiting for the disk and
//! hands it here with the log to flush ([`WalSync`]). A free flusher takes
//! every batch handed over so far, flushes once (one `fdatasync` covers
//! every commit that returned before it started), and only then tells
//! each caller its record is durable. With several flushers, flushes
//! overlap: a batch committed while one is in flight need not wait for it
//! to finish before its own starts, which on disks with a slow cache flush
//! roughly halves the time a request waits for its record. The writer
//! commits the next batch only when a flusher is free to take it
//! ([`Flushers::wait_for_slot`]), so under load batches grow instead of
//! flushes multiplying.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use mcpgate_store::{StoreError, WalSync};

use crate::AuditError;
use crate::event::now_ms;
use crate::log::{Ack, Shared};

/// Batches committed and not yet flushed, with the callers to answer.
struct Pending {
    wal: WalSync,
    acks: Vec<Ack>,
    records: u64,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    /// Flushers flushing now.
    busy: usize,
    closed: bool,
}

struct State {
    queue: Mutex<Queue>,
    /// Work arrived, or closing.
    work: Condvar,
    /// A flusher finished.
    done: Condvar,
    /// When each flusher's flush in progress started (unix ms), 0 if none.
    started_ms: Vec<AtomicI64>,
    log: Arc<Shared>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing here panics while holding the lock; if something did,
        // the queue is still consistent (plain pushes and takes).
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The flusher threads of one audit writer.
pub(crate) struct Flushers {
    state: Arc<State>,
    threads: Vec<JoinHandle<()>>,
}

/// What callers of [`crate::AuditLog::ready`] need: whether a flush is stuck.
#[derive(Clone)]
pub(crate) struct FlushWatch(Arc<State>);

impl FlushWatch {
    /// The start (unix ms) of the oldest flush in progress, 0 if none.
    pub(crate) fn oldest_started_ms(&self) -> i64 {
        self.0
            .started_ms
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|&ms| ms != 0)
            .min()
            .unwrap_or(0)
    }
}

impl Flushers {
    /// Starts `n` (at least one) flusher threads.
    pub(crate) fn start(n: usize, log: Arc<Shared>) -> std::io::Result<Self> {
        let n = n.max(1);
        let state = Arc::new(State {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            started_ms: (0..n).map(|_| AtomicI64::new(0)).collect(),
            log,
        });
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let state = state.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("mcpgate-audit-flush-{i}"))
                    .spawn(move || run(&state, i))?,
            );
        }
        Ok(Self { state, threads })
    }

    pub(crate) fn watch(&self) -> FlushWatch {
        FlushWatch(self.state.clone())
    }

    /// Blocks until a flusher is free to take a batch committed now.
    pub(crate) fn wait_for_slot(&self) {
        let mut q = self.state.lock();
        while q.busy == self.state.started_ms.len() {
            q = self
                .state
                .done
                .wait(q)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Hands over a committed batch: its callers are answered once `wal`
    /// has been flushed after this call.
    pub(crate) fn submit(&self, wal: WalSync, acks: Vec<Ack>, records: u64) {
        self.state.lock().pending.push(Pending { wal, acks, records });
        self.state.work.notify_one();
    }

    /// Flushes and answers what was handed over, then stops the threads.
    pub(crate) fn close(self) {
        self.state.lock().closed = true;
        self.state.work.notify_all();
        for t in self.threads {
            // A flusher that panicked has nothing left to answer: its
            // callers' acks were dropped, which they see as `Closed`.
            let _ = t.join();
        }
    }
}

fn run(state: &State, me: usize) {
    loop {
        let batches = {
            let mut q = state.lock();
            while q.pending.is_empty() && !q.closed {
                q = state.work.wait(q).unwrap_or_else(PoisonError::into_inner);
            }
            if q.pending.is_empty() {
                return;
            }
            q.busy += 1;
            std::mem::take(&mut q.pending)
        };
        state.started_ms[me].store(now_ms().max(1), Ordering::Relaxed);
        let result = flush(&batches);
        state.started_ms[me].store(0, Ordering::Relaxed);
        answer(&state.log, batches, result);
        state.lock().busy -= 1;
        state.done.notify_all();
    }
}

/// One flush per distinct log (in practice there is one).
fn flush(batches: &[Pending]) -> Result<(), std::io::Error> {
    let mut flushed: Vec<&WalSync> = Vec::with_capacity(1);
    for b in batches {
        if !flushed.iter().any(|w| w.same_log(&b.wal)) {
            b.wal.sync()?;
            flushed.push(&b.wal);
        }
    }
    Ok(())
}

fn answer(log: &Shared, batches: Vec<Pending>, result: Result<(), std::io::Error>) {
    match result {
        Ok(()) => {
            log.recovered();
            for b in batches {
                for ack in b.acks {
                    // The caller may have given up waiting; the record is
                    // durable all the same.
                    let _ = ack.send(Ok(()));
                }
            }
        }
        Err(e) => {
            let records: u64 = batches.iter().map(|b| b.records).sum();
            let err = Arc::new(StoreError::Sync(e));
            log.write_failed(&err, records);
            for b in batches {
                for ack in b.acks {
                    let _ = ack.send(Err(AuditError::Write(err.clone())));
                }
            }
        }
    }
}

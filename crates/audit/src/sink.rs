//! The live sink: every committed record, as its export JSON line, to a
//! file (appended to) or stdout, after the commit.
//!
//! The sink is a copy for a SIEM to tail, not the record: it runs in a thread
//! of its own, fed through a bounded queue, so a slow or blocked consumer
//! (a full pipe on stdout) never holds up appends. When the queue is full
//! lines are dropped and counted ([`AuditStats::sink_dropped`](crate::AuditStats)),
//! with a warning; `mcpgate audit export --since` fills the hole from the
//! database. Lines are flushed after each batch; a crash can lose lines not
//! yet written, never records.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};

use crate::AuditError;
use crate::log::Shared;

/// Batches of lines queued for the sink at most.
const SINK_QUEUE: usize = 4096;

/// Where the live sink writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTarget {
    Stdout,
    /// Opened in append mode, created (mode per umask) if missing.
    File(PathBuf),
}

/// The writer's handle on the sink thread.
pub(crate) struct Sink {
    tx: mpsc::Sender<Vec<String>>,
    done: oneshot::Receiver<()>,
    shared: Arc<Shared>,
}

impl Sink {
    /// Opens the target and starts the sink's thread: a thread of its own,
    /// since writes to a file or a pipe block.
    pub(crate) fn open(target: &SinkTarget, shared: Arc<Shared>) -> Result<Self, AuditError> {
        let out: Box<dyn std::io::Write + Send> = match target {
            SinkTarget::Stdout => Box::new(std::io::stdout()),
            SinkTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|err| AuditError::Sink(format!("{}: {err}", path.display())))?,
            ),
        };
        let (tx, rx) = mpsc::channel(SINK_QUEUE);
        let (done_tx, done) = oneshot::channel();
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("mcpgate-audit-sink".to_owned())
            .spawn(move || {
                run(rx, out, &thread_shared);
                let _ = done_tx.send(());
            })
            .map_err(|err| AuditError::Sink(format!("thread: {err}")))?;
        Ok(Self { tx, done, shared })
    }

    /// Queues the lines of one committed batch, or drops them if the sink
    /// is behind.
    pub(crate) fn send(&self, lines: Vec<String>) {
        let n = lines.len() as u64;
        if self.tx.try_send(lines).is_err() {
            let before = self.shared.sink_dropped.fetch_add(n, Ordering::Relaxed);
            if before == 0 {
                tracing::warn!("audit sink is behind: dropping lines (the database has them)");
            }
        }
    }

    /// Writes what is queued, then stops.
    pub(crate) async fn close(self) {
        drop(self.tx);
        // Err: the thread ended without saying so (it cannot panic here).
        let _ = self.done.await;
    }
}

fn run(
    mut rx: mpsc::Receiver<Vec<String>>,
    mut out: Box<dyn std::io::Write + Send>,
    shared: &Shared,
) {
    let mut buf = String::new();
    while let Some(lines) = rx.blocking_recv() {
        buf.clear();
        for line in lines {
            buf.push_str(&line);
            buf.push('\n');
        }
        if let Err(err) = out.write_all(buf.as_bytes()).and_then(|()| out.flush()) {
            let before = shared.sink_errors.fetch_add(1, Ordering::Relaxed);
            if before == 0 {
                tracing::warn!(%err, "audit sink write failed (the database has the records)");
            }
        }
    }
}

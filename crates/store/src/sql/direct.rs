//! Direct (rusqlite) connections to the store's SQLite file, for the paths
//! where sqlx's hand-off of every statement to a connection's worker thread
//! costs more than the statement itself: the audit trail's appends (see
//! `audit_sqlite`) and the API-key lookup of every request authenticated by
//! a key (`SqlStore::api_key`). Statements are prepared once per connection
//! and run on the calling thread.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, TryLockError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::StoreError;

/// One connection to a SQLite file, opened at its first use (the store has
/// created and migrated the file by then).
pub(super) struct LazyConnection {
    path: PathBuf,
    busy_timeout: Duration,
    conn: Mutex<Option<Connection>>,
}

impl LazyConnection {
    /// `busy_timeout`: how long a statement waits for another connection's
    /// lock (zero: it fails at once with `SQLITE_BUSY`).
    pub(super) fn new(path: &Path, busy_timeout: Duration) -> Self {
        Self {
            path: path.to_owned(),
            busy_timeout,
            conn: Mutex::new(None),
        }
    }

    /// Runs `f` on the connection, waiting for another thread using it.
    pub(super) fn with<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        // A panic in `f` left no transaction open (dropping it rolled
        // back), so the connection is fine to reuse.
        let mut guard = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.run(&mut guard, f)
    }

    /// Runs `f` on the connection, or returns `None` at once if another
    /// thread is using it.
    pub(super) fn try_with<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Option<Result<R, StoreError>> {
        let mut guard = match self.conn.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        Some(self.run(&mut guard, f))
    }

    fn run<R>(
        &self,
        conn: &mut Option<Connection>,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let conn = match conn {
            Some(conn) => conn,
            none => none.insert(open(&self.path, self.busy_timeout)?),
        };
        f(conn)
    }
}

fn open(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    // The store put the file in WAL mode, which persists.
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::InvalidRecord(
            "the SQLite database is not in WAL mode",
        ));
    }
    // As the store's connections: an acknowledged write survives a power
    // loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

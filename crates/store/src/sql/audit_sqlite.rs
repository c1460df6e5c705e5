//! SQLite appends to the audit trail, on a connection of their own.
//!
//! Every request through the gateway appends a record and waits until it is
//! durable, so this is the hottest write path of the store. Through sqlx
//! each statement is a round trip to the connection's worker thread (two
//! thread wake-ups) and every bound string is copied; here the audit
//! writer's own thread runs the transaction synchronously with rusqlite,
//! with statements prepared once and values bound by reference.
//!
//! The connection has the store's settings (WAL, `synchronous=FULL`): a
//! commit returns once the write-ahead log is flushed to disk. (Flushing
//! after the commit on other threads, so that the next batch could commit
//! during the flush, was measured on the 2-vCPU VM of `mcpgate-bench` and
//! was slower: each hand-off between threads costs a wake-up, and the flush
//! itself, about 0.2 ms there under load, was not what requests waited on.)
//!
//! Within this process the audit connection and the store's write
//! connection never meet in SQLite's busy handler (which sleeps 1, 2, 5 …
//! ms between attempts): an append holds the gate for this process's
//! writes, `WritePool`, while it writes (see `SqlStore::append_audit`).

use std::path::Path;
use std::sync::LazyLock;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::SQLITE_BUSY_TIMEOUT;
use super::audit::{COLUMN_COUNT, COLUMNS, check_sealed};
use super::direct::LazyConnection;
use crate::{AuditHead, AuditRecord, AuditSealer, SealedBatch, StoreError};

const SELECT_HEAD: &str = "SELECT seq, hash, tag FROM audit_heads WHERE chain_id = ?1";
const INSERT_GENESIS_HEAD: &str =
    "INSERT INTO audit_heads (chain_id, seq, hash, tag) VALUES (?1, 0, ?2, '')";
/// One row, `?1` … `?19` in [`COLUMNS`] order (the order `append` binds).
static INSERT_RECORD: LazyLock<String> = LazyLock::new(|| {
    let params: Vec<String> = (1..=COLUMN_COUNT).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO audit_records ({COLUMNS}) VALUES ({})",
        params.join(", ")
    )
});
const UPDATE_HEAD: &str =
    "UPDATE audit_heads SET seq = ?2, hash = ?3, tag = ?4 WHERE chain_id = ?1";
const INSERT_CHECKPOINT: &str = "INSERT INTO audit_checkpoints \
    (chain_id, seq, hash, time_ms, tag) VALUES (?1, ?2, ?3, ?4, ?5) \
    ON CONFLICT (chain_id, seq) DO NOTHING";

/// The audit trail's connection to one SQLite file.
pub(super) struct AuditConnection {
    conn: LazyConnection,
}

impl AuditConnection {
    pub(super) fn new(path: &Path) -> Self {
        Self {
            conn: LazyConnection::new(path, SQLITE_BUSY_TIMEOUT),
        }
    }

    /// One append transaction: see `AuditStore::append_audit`. Blocks the
    /// calling thread until the commit is on disk.
    pub(super) fn append(
        &self,
        chain_id: &str,
        records: &mut [AuditRecord],
        sealer: &dyn AuditSealer,
    ) -> Result<SealedBatch, StoreError> {
        self.conn
            .with(|conn| append(conn, chain_id, records, sealer))
    }
}

fn append(
    conn: &mut Connection,
    chain_id: &str,
    records: &mut [AuditRecord],
    sealer: &dyn AuditSealer,
) -> Result<SealedBatch, StoreError> {
    // IMMEDIATE takes the write lock at BEGIN, where the busy timeout
    // applies (see `with_write_tx!`); it also serialises appends from
    // other processes, so reading the head here locks it.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let head = tx
        .prepare_cached(SELECT_HEAD)?
        .query_row([chain_id], |row| {
            Ok(AuditHead {
                chain_id: chain_id.to_owned(),
                seq: row.get(0)?,
                hash: row.get(1)?,
                tag: row.get(2)?,
            })
        })
        .optional()?;
    let head = match head {
        Some(head) => head,
        None => {
            let genesis = AuditHead::genesis(chain_id);
            tx.prepare_cached(INSERT_GENESIS_HEAD)?
                .execute(params![chain_id, genesis.hash])?;
            genesis
        }
    };
    let sealed = sealer.seal(&head, records);
    check_sealed(chain_id, &head, records, &sealed)?;
    {
        let mut insert = tx.prepare_cached(&INSERT_RECORD)?;
        for r in records.iter() {
            insert
                .execute(params![
                    r.chain_id,
                    r.seq,
                    r.time_ms,
                    r.kind,
                    r.route,
                    r.subject,
                    r.client_id,
                    r.method,
                    r.name,
                    r.outcome,
                    r.reason,
                    r.policy_ids,
                    r.args_digest,
                    r.latency_us,
                    r.peer,
                    r.details,
                    r.prev_hash,
                    r.hash,
                    r.tag,
                ])
                .map_err(insert_error)?;
        }
    }
    tx.prepare_cached(UPDATE_HEAD)?.execute(params![
        chain_id,
        sealed.head.seq,
        sealed.head.hash,
        sealed.head.tag
    ])?;
    if let Some(cp) = &sealed.checkpoint {
        tx.prepare_cached(INSERT_CHECKPOINT)?.execute(params![
            cp.chain_id,
            cp.seq,
            cp.hash,
            cp.time_ms,
            cp.tag
        ])?;
    }
    tx.commit()?;
    Ok(sealed)
}

/// A taken `(chain_id, seq)` is [`StoreError::Duplicate`], as on the other
/// paths.
fn insert_error(err: rusqlite::Error) -> StoreError {
    match &err {
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Duplicate
        }
        _ => StoreError::Sqlite(err),
    }
}

//! `audit_records`, `audit_heads` and `audit_checkpoints`: the audit trail.
//!
//! An append is one write transaction that locks the chain's head row, lets
//! the caller's [`AuditSealer`] compute the chain fields against it, inserts
//! the batch, moves the head and commits. On SQLite `BEGIN IMMEDIATE`
//! already serialises writers (appends run on a connection of their own,
//! see `audit_sqlite`); on PostgreSQL `SELECT ... FOR UPDATE` on the head
//! row does, once per batch (not per record), so group commit keeps the
//! cross-replica lock cheap. Reads go through sqlx on both.

use std::sync::OnceLock;

use async_trait::async_trait;

use super::{Pool, SqlStore, insert_error};
use crate::{
    AUDIT_HASH_LEN, AuditCheckpoint, AuditHead, AuditRecord, AuditSealer, AuditStore, SealedBatch,
    StoreError,
};

/// `audit_records` columns, in the order of [`bind_record!`] and
/// [`record_from_row!`].
pub(super) const COLUMNS: &str = "chain_id, seq, time_ms, kind, route, subject, client_id, method, name, \
    outcome, reason, policy_ids, args_digest, latency_us, peer, details, prev_hash, hash, tag";
pub(super) const COLUMN_COUNT: usize = 19;
/// PostgreSQL: rows per INSERT statement: a batch is inserted in statements
/// of these sizes (greedily, largest first), so each connection prepares
/// three statements rather than one per batch size (a prepare is a round
/// trip). Not larger: sqlx 0.9 leaves Nagle's algorithm on for
/// PostgreSQL connections, and a 64-row statement (1216 parameters) took
/// ~45 ms there (delayed ACK) where four 16-row ones take ~1 ms.
const INSERT_SIZES: [usize; 3] = [16, 4, 1];

const SELECT_HEAD: &str = "SELECT chain_id, seq, hash, tag FROM audit_heads WHERE chain_id = $1";
/// PostgreSQL: a concurrent append waits here until this one commits, then
/// reads the head it left (read committed re-reads a locked row's newest
/// version).
const SELECT_HEAD_FOR_UPDATE: &str =
    "SELECT chain_id, seq, hash, tag FROM audit_heads WHERE chain_id = $1 FOR UPDATE";
/// A concurrent first append to a new chain waits for this row's insert to
/// commit, then inserts nothing and locks the committed head.
const INSERT_GENESIS_HEAD: &str = "INSERT INTO audit_heads (chain_id, seq, hash, tag) \
    VALUES ($1, 0, $2, '') ON CONFLICT (chain_id) DO NOTHING";
const UPDATE_HEAD: &str =
    "UPDATE audit_heads SET seq = $2, hash = $3, tag = $4 WHERE chain_id = $1";
/// A checkpoint of the same record twice (periodic, then at shutdown) keeps
/// the first.
const INSERT_CHECKPOINT: &str = "INSERT INTO audit_checkpoints \
    (chain_id, seq, hash, time_ms, tag) VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (chain_id, seq) DO NOTHING";
const CHAINS: &str = "SELECT chain_id FROM audit_heads \
    UNION SELECT chain_id FROM audit_records \
    UNION SELECT chain_id FROM audit_checkpoints \
    ORDER BY chain_id";
/// `$3` NULL: any time.
const SELECT_RECORDS: &str = "SELECT chain_id, seq, time_ms, kind, route, subject, client_id, \
    method, name, outcome, reason, policy_ids, args_digest, latency_us, peer, details, \
    prev_hash, hash, tag \
    FROM audit_records WHERE chain_id = $1 AND seq > $2 AND ($3 IS NULL OR time_ms >= $3) \
    ORDER BY seq LIMIT $4";
const FIRST_SEQ_SINCE: &str =
    "SELECT MIN(seq) FROM audit_records WHERE chain_id = $1 AND time_ms >= $2";
const SELECT_CHECKPOINTS: &str = "SELECT chain_id, seq, hash, time_ms, tag \
    FROM audit_checkpoints WHERE chain_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";

/// `audit_heads` columns, as selected.
type HeadRow = (String, i64, Vec<u8>, String);
/// `audit_checkpoints` columns, as selected.
type CheckpointRow = (String, i64, Vec<u8>, i64, String);

/// `($1, $2, …)` for each of `rows` rows, comma-separated.
fn values(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let params: Vec<String> = (1..=COLUMN_COUNT)
                .map(|col| format!("${}", row * COLUMN_COUNT + col))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
    values.join(", ")
}

/// PostgreSQL: `INSERT INTO audit_records` of `rows` rows, one of
/// [`INSERT_SIZES`].
fn insert_sql(rows: usize) -> &'static str {
    static SQL: OnceLock<[String; INSERT_SIZES.len()]> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        INSERT_SIZES.map(|rows| {
            format!(
                "INSERT INTO audit_records ({COLUMNS}) VALUES {}",
                values(rows)
            )
        })
    });
    // `rows` comes from `insert_chunks`: always one of the sizes.
    let i = INSERT_SIZES
        .iter()
        .position(|&size| size == rows)
        .unwrap_or(INSERT_SIZES.len() - 1);
    all[i].as_str()
}

/// `records` split into runs of [`INSERT_SIZES`], largest first.
fn insert_chunks(records: &[AuditRecord]) -> Vec<&[AuditRecord]> {
    let mut chunks = Vec::new();
    let mut rest = records;
    for size in INSERT_SIZES {
        while rest.len() >= size {
            let (chunk, tail) = rest.split_at(size);
            chunks.push(chunk);
            rest = tail;
        }
    }
    chunks
}

/// Binds `$r`'s columns, in [`COLUMNS`] order, to the query `$q`.
macro_rules! bind_record {
    ($q:expr, $r:expr) => {
        $q.bind($r.chain_id.as_str())
            .bind($r.seq)
            .bind($r.time_ms)
            .bind($r.kind.as_str())
            .bind($r.route.as_deref())
            .bind($r.subject.as_deref())
            .bind($r.client_id.as_deref())
            .bind($r.method.as_deref())
            .bind($r.name.as_deref())
            .bind($r.outcome.as_str())
            .bind($r.reason.as_deref())
            .bind($r.policy_ids.as_str())
            .bind($r.args_digest.as_deref())
            .bind($r.latency_us)
            .bind($r.peer.as_deref())
            .bind($r.details.as_deref())
            .bind($r.prev_hash.as_slice())
            .bind($r.hash.as_slice())
            .bind($r.tag.as_str())
    };
}

/// An [`AuditRecord`] from a row of [`SELECT_RECORDS`]. A macro, not a
/// function: the row type is the backend's, and sqlx's tuple decoding stops
/// at 16 columns.
macro_rules! record_from_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = $row;
        Ok::<AuditRecord, sqlx::Error>(AuditRecord {
            chain_id: row.try_get(0)?,
            seq: row.try_get(1)?,
            time_ms: row.try_get(2)?,
            kind: row.try_get(3)?,
            route: row.try_get(4)?,
            subject: row.try_get(5)?,
            client_id: row.try_get(6)?,
            method: row.try_get(7)?,
            name: row.try_get(8)?,
            outcome: row.try_get(9)?,
            reason: row.try_get(10)?,
            policy_ids: row.try_get(11)?,
            args_digest: row.try_get(12)?,
            latency_us: row.try_get(13)?,
            peer: row.try_get(14)?,
            details: row.try_get(15)?,
            prev_hash: row.try_get(16)?,
            hash: row.try_get(17)?,
            tag: row.try_get(18)?,
        })
    }};
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(
        &self,
        chain_id: &str,
        records: &mut [AuditRecord],
        sealer: &dyn AuditSealer,
    ) -> Result<SealedBatch, StoreError> {
        match &self.pool {
            Pool::Sqlite(pools) => {
                // Held, so that this process's other writes wait in the
                // gate's queue rather than in SQLite's busy handler.
                let _writes = pools.write.lock().await;
                pools.audit.append(chain_id, records, sealer)
            }
            Pool::Postgres(pool) => append_postgres(pool, chain_id, records, sealer).await,
        }
    }

    async fn audit_chains(&self) -> Result<Vec<String>, StoreError> {
        let chains = with_pool!(self, pool => {
            sqlx::query_scalar::<_, String>(CHAINS).fetch_all(pool).await
        })?;
        Ok(chains)
    }

    async fn audit_head(&self, chain_id: &str) -> Result<Option<AuditHead>, StoreError> {
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, HeadRow>(SELECT_HEAD)
                .bind(chain_id)
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.map(head_from_row))
    }

    async fn audit_records(
        &self,
        chain_id: &str,
        after_seq: i64,
        since_ms: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let records = with_pool!(self, pool => {
            match sqlx::query(SELECT_RECORDS)
                .bind(chain_id)
                .bind(after_seq)
                .bind(since_ms)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
            {
                Ok(rows) => rows.iter().map(|row| record_from_row!(row)).collect(),
                Err(err) => Err(err),
            }
        })?;
        Ok(records)
    }

    async fn audit_first_seq_since(
        &self,
        chain_id: &str,
        since_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let seq = with_pool!(self, pool => {
            sqlx::query_scalar::<_, Option<i64>>(FIRST_SEQ_SINCE)
                .bind(chain_id)
                .bind(since_ms)
                .fetch_one(pool)
                .await
        })?;
        Ok(seq)
    }

    async fn audit_checkpoints(
        &self,
        chain_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditCheckpoint>, StoreError> {
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, CheckpointRow>(SELECT_CHECKPOINTS)
                .bind(chain_id)
                .bind(after_seq)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
        })?;
        Ok(rows
            .into_iter()
            .map(|(chain_id, seq, hash, time_ms, tag)| AuditCheckpoint {
                chain_id,
                seq,
                hash,
                time_ms,
                tag,
            })
            .collect())
    }
}

/// One append transaction on PostgreSQL (SQLite: `audit_sqlite`).
async fn append_postgres(
    pool: &sqlx::PgPool,
    chain_id: &str,
    records: &mut [AuditRecord],
    sealer: &dyn AuditSealer,
) -> Result<SealedBatch, StoreError> {
    let genesis = AuditHead::genesis(chain_id);
    let mut tx = pool.begin().await?;
    let mut head = sqlx::query_as::<_, HeadRow>(SELECT_HEAD_FOR_UPDATE)
        .bind(chain_id)
        .fetch_optional(&mut *tx)
        .await?;
    if head.is_none() {
        sqlx::query(INSERT_GENESIS_HEAD)
            .bind(chain_id)
            .bind(genesis.hash.as_slice())
            .execute(&mut *tx)
            .await?;
        head = sqlx::query_as::<_, HeadRow>(SELECT_HEAD_FOR_UPDATE)
            .bind(chain_id)
            .fetch_optional(&mut *tx)
            .await?;
    }
    // Present: inserted above if it was not, in this transaction.
    let head = head.map_or(genesis, head_from_row);
    let sealed = sealer.seal(&head, records);
    check_sealed(chain_id, &head, records, &sealed)?;
    for chunk in insert_chunks(records) {
        let mut query = sqlx::query(insert_sql(chunk.len()));
        for rec in chunk {
            query = bind_record!(query, rec);
        }
        query.execute(&mut *tx).await.map_err(insert_error)?;
    }
    sqlx::query(UPDATE_HEAD)
        .bind(chain_id)
        .bind(sealed.head.seq)
        .bind(sealed.head.hash.as_slice())
        .bind(sealed.head.tag.as_str())
        .execute(&mut *tx)
        .await?;
    if let Some(cp) = &sealed.checkpoint {
        sqlx::query(INSERT_CHECKPOINT)
            .bind(cp.chain_id.as_str())
            .bind(cp.seq)
            .bind(cp.hash.as_slice())
            .bind(cp.time_ms)
            .bind(cp.tag.as_str())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(sealed)
}

/// Whether the sealed batch continues `head`: same chain, consecutive
/// `seq`, each `prev_hash` the previous `hash`, a new head on the last
/// record, a checkpoint at or before it.
pub(super) fn check_sealed(
    chain_id: &str,
    head: &AuditHead,
    records: &[AuditRecord],
    sealed: &SealedBatch,
) -> Result<(), StoreError> {
    let mut seq = head.seq;
    let mut prev = head.hash.as_slice();
    for rec in records {
        if rec.chain_id != chain_id {
            return Err(StoreError::InvalidRecord(
                "an audit record names another chain",
            ));
        }
        seq += 1;
        if rec.seq != seq {
            return Err(StoreError::InvalidRecord(
                "audit records must continue the chain's sequence",
            ));
        }
        if rec.prev_hash != prev {
            return Err(StoreError::InvalidRecord(
                "an audit record must link to its predecessor's hash",
            ));
        }
        if rec.hash.len() != AUDIT_HASH_LEN {
            return Err(StoreError::InvalidRecord("an audit hash is 32 bytes"));
        }
        prev = rec.hash.as_slice();
    }
    let new = &sealed.head;
    if new.chain_id != chain_id || new.seq != seq || new.hash != prev {
        return Err(StoreError::InvalidRecord(
            "the new audit head must be the batch's last record",
        ));
    }
    if let Some(cp) = &sealed.checkpoint {
        if cp.chain_id != chain_id || cp.seq < 0 || cp.seq > new.seq {
            return Err(StoreError::InvalidRecord(
                "an audit checkpoint must be of a record of the chain",
            ));
        }
        if cp.hash.len() != AUDIT_HASH_LEN {
            return Err(StoreError::InvalidRecord("an audit hash is 32 bytes"));
        }
    }
    Ok(())
}

fn head_from_row(row: HeadRow) -> AuditHead {
    let (chain_id, seq, hash, tag) = row;
    AuditHead {
        chain_id,
        seq,
        hash,
        tag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_sql_numbers_every_parameter_once() {
        assert_eq!(COLUMNS.split(',').count(), COLUMN_COUNT);
        let params: Vec<String> = (1..=COLUMN_COUNT).map(|i| format!("${i}")).collect();
        assert!(insert_sql(1).ends_with(&format!("VALUES ({})", params.join(", "))));
        for rows in INSERT_SIZES {
            let sql = insert_sql(rows);
            let last = rows * COLUMN_COUNT;
            assert!(sql.contains(&format!("${last})")));
            assert!(!sql.contains(&format!("${}", last + 1)));
        }
    }

    #[test]
    fn batches_split_into_few_statements_of_fixed_sizes() {
        let rec = AuditRecord {
            chain_id: String::new(),
            seq: 0,
            time_ms: 0,
            kind: String::new(),
            route: None,
            subject: None,
            client_id: None,
            method: None,
            name: None,
            outcome: String::new(),
            reason: None,
            policy_ids: String::new(),
            args_digest: None,
            latency_us: None,
            peer: None,
            details: None,
            prev_hash: Vec::new(),
            hash: Vec::new(),
            tag: String::new(),
        };
        let records = vec![rec; 150];
        let sizes: Vec<usize> = insert_chunks(&records).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [16, 16, 16, 16, 16, 16, 16, 16, 16, 4, 1, 1]);
        assert!(insert_chunks(&records[..0]).is_empty());
    }
}

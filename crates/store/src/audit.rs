//! Storage of the tamper-evident audit trail: [`AuditStore`], a trait of its
//! own beside [`Store`](crate::Store), implemented by the same SQL backends.
//!
//! The store keeps rows; it does not hash, sign or interpret them. Chain
//! fields (`seq`, `prev_hash`, `hash`, `tag`) are computed by the caller
//! (`mcpgate-audit`) through an [`AuditSealer`], called *inside* the append
//! transaction once the chain's head is locked: that is what lets several
//! processes append to one chain without forking it. The store checks only
//! that the sealed batch continues the head it was given (consecutive `seq`,
//! linked hashes); it cannot and does not check the hashes themselves.
//!
//! Records are append-only through this trait: nothing here updates or
//! deletes one. Rows changed by other means are what verification finds.

use std::fmt;

use async_trait::async_trait;

use crate::StoreError;

/// Length of the chain hashes (SHA-256).
pub const AUDIT_HASH_LEN: usize = 32;

/// One audit record as stored: the event's fields as plain columns, and its
/// place in the chain.
///
/// Times are unix milliseconds. The record never holds a secret (the caller
/// is responsible for that; see `mcpgate-audit`), so `Debug` is derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// The chain it belongs to.
    pub chain_id: String,
    /// Position in the chain, from 1, without gaps. Set by the sealer.
    pub seq: i64,
    pub time_ms: i64,
    /// The event kind's stable name (`mcp_request`, `token_issued`, …).
    pub kind: String,
    pub route: Option<String>,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub method: Option<String>,
    /// Tool, resource or prompt name.
    pub name: Option<String>,
    pub outcome: String,
    pub reason: Option<String>,
    /// The deciding policy ids, encoded by the caller (a JSON array).
    pub policy_ids: String,
    pub args_digest: Option<String>,
    pub latency_us: Option<i64>,
    pub peer: Option<String>,
    /// Further structured detail, encoded by the caller (JSON text).
    pub details: Option<String>,
    /// The previous record's `hash` (32 zero bytes for `seq` 1). Set by the sealer.
    pub prev_hash: Vec<u8>,
    /// [`AUDIT_HASH_LEN`] bytes. Set by the sealer.
    pub hash: Vec<u8>,
    /// MAC of the record's hash. Set by the sealer.
    pub tag: String,
}

/// The newest record of a chain: its `seq` and `hash`, with a MAC.
///
/// A chain without records has `seq` 0, a `hash` of 32 zero bytes and an
/// empty `tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub chain_id: String,
    pub seq: i64,
    pub hash: Vec<u8>,
    pub tag: String,
}

impl AuditHead {
    /// The head of a chain without records.
    pub fn genesis(chain_id: &str) -> Self {
        Self {
            chain_id: chain_id.to_owned(),
            seq: 0,
            hash: vec![0; AUDIT_HASH_LEN],
            tag: String::new(),
        }
    }
}

/// A signed statement that record `seq` of the chain had hash `hash` at
/// `time_ms` (unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheckpoint {
    pub chain_id: String,
    pub seq: i64,
    pub hash: Vec<u8>,
    pub time_ms: i64,
    pub tag: String,
}

/// What an [`AuditSealer`] made of a batch: the chain's new head, and a
/// checkpoint to store with the batch, if one is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBatch {
    pub head: AuditHead,
    pub checkpoint: Option<AuditCheckpoint>,
}

/// Computes a batch's chain fields once the store has locked the chain.
///
/// Called inside the append transaction, so it must be quick and must not
/// block: pure computation (hashing, MACs) only.
pub trait AuditSealer: Send + Sync {
    /// Sets `seq`, `prev_hash`, `hash` and `tag` of each of `records`, in
    /// order, continuing from `head` (the chain's current head, or
    /// [`AuditHead::genesis`]), and returns the new head. An empty batch
    /// returns a head for the same record (re-signed, if the sealer likes)
    /// and may carry a checkpoint.
    fn seal(&self, head: &AuditHead, records: &mut [AuditRecord]) -> SealedBatch;
}

/// Persistent audit trail. Implementations are cheap to share (`Arc`) and
/// safe to use from several processes at once.
#[async_trait]
pub trait AuditStore: Send + Sync + fmt::Debug {
    /// Appends `records` to `chain_id` in one transaction: locks the chain's
    /// head (creating a genesis head for a new chain), lets `sealer` fill in
    /// the chain fields, inserts the records, updates the head and stores
    /// the checkpoint, if any, then commits. Returns when the commit is
    /// durable (SQLite `synchronous=FULL`; PostgreSQL's commit, as durable
    /// as the server's `synchronous_commit` makes it).
    ///
    /// Across processes, appends to one chain run one after the other.
    /// [`StoreError::InvalidRecord`] if the sealed batch does not continue
    /// the head (or names another chain); [`StoreError::Duplicate`] if a
    /// record's `seq` is taken (the head row was tampered with). Nothing is
    /// written on error.
    ///
    /// On SQLite the transaction runs on the calling thread (a local file;
    /// a commit takes one disk flush, a busy database up to the 5 s busy
    /// timeout): call it from a thread that may block, as the audit writer
    /// does.
    async fn append_audit(
        &self,
        chain_id: &str,
        records: &mut [AuditRecord],
        sealer: &dyn AuditSealer,
    ) -> Result<SealedBatch, StoreError>;

    /// Every chain that has a head, a record or a checkpoint, ordered by id
    /// (bytewise).
    async fn audit_chains(&self) -> Result<Vec<String>, StoreError>;

    /// The chain's head, if it has one.
    async fn audit_head(&self, chain_id: &str) -> Result<Option<AuditHead>, StoreError>;

    /// Up to `limit` records of the chain with `seq > after_seq` (and
    /// `time_ms >= since_ms`, if given), in `seq` order.
    async fn audit_records(
        &self,
        chain_id: &str,
        after_seq: i64,
        since_ms: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError>;

    /// The lowest `seq` of the chain's records with `time_ms >= since_ms`.
    async fn audit_first_seq_since(
        &self,
        chain_id: &str,
        since_ms: i64,
    ) -> Result<Option<i64>, StoreError>;

    /// Up to `limit` checkpoints of the chain with `seq > after_seq`, in
    /// `seq` order.
    async fn audit_checkpoints(
        &self,
        chain_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditCheckpoint>, StoreError>;
}

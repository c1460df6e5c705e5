//! The tamper-evident audit trail of the mcpgate gateway and its built-in
//! authorization server: one append-only record per security-relevant event
//! ([`Event`], [`EventKind`]), hash-chained and tagged so that a changed,
//! deleted or reordered record is found by [`verify()`], exported as JSON
//! Lines for a SIEM ([`export()`]) and optionally copied live to a file or
//! stdout ([`SinkTarget`]).
//!
//! # Trust boundary
//!
//! Events come from the gateway's own code, never from clients directly;
//! their string fields may carry client-chosen values (tool names, client
//! ids), which are stored as data and escaped in every output. Records must
//! never hold a secret: see [`event`](mod@event) for the rule, and
//! [`args_digest`] for tool arguments. Storage is `mcpgate-store`'s
//! [`AuditStore`](mcpgate_store::AuditStore), in the gateway's database or
//! one of its own; anyone who can write that database is the adversary the
//! chain is built against. The only key is derived from the master key
//! (`mcpgate-crypto`), which this crate never stores or prints.
//!
//! # The chain
//!
//! Records form one chain per `chain_id` (normally one per deployment,
//! `main`), numbered from 1 without gaps. Each record stores
//! `hash = SHA-256(canonical encoding of chain id, seq, previous hash and
//! every column)`, the encoding laid out in [`chain`], and a MAC of that
//! hash (HMAC-SHA-256 with a key derived from the master key). The
//! chain's head row (last `seq` and hash) carries its own MAC and moves in
//! the same transaction as each batch; every 1000 records, every 10 s of
//! writing and at clean shutdown a signed checkpoint is stored too, and
//! logged (`audit checkpoint anchor=CHAIN:SEQ:HASH`) so that a copy exists
//! outside the database.
//!
//! **One chain for all writers.** Several replicas (and CLI commands)
//! append to the same chain: each batch locks the head row (PostgreSQL
//! `SELECT … FOR UPDATE`; SQLite's write lock), so the chain stays linear
//! and a record deleted anywhere, the newest included, leaves a hole that
//! the head or a checkpoint proves. A chain per process would need no lock
//! but could be deleted whole with nothing left pointing at it. Group commit
//! makes the lock cheap: one per batch, not per record.
//!
//! **MACs, not signatures.** Tags are HMACs under a key derived from the
//! master key (`MasterKey::derive_mac`), so verifying needs the master key
//! and whoever can verify could also forge. That is acceptable here: the
//! master key already decrypts the authorization server's signing keys, so
//! its holder can do far worse than forge audit records; and an HMAC needs
//! no key pair to publish, rotate or store. Third parties without the key
//! can still check the chain's linkage from an export (`prev_hash`/`hash`).
//!
//! # What an attacker with write access to the database can do
//!
//! Without the master key, undetected by `verify`:
//! - delete *all* records, heads and checkpoints of a chain (an empty
//!   database verifies clean; keep the logged anchors to notice);
//! - cut off the newest records **only if** they also restore a head row
//!   (and delete later checkpoints) they copied earlier, i.e. roll the chain
//!   back to a state they observed; an anchor kept outside the database
//!   (`VerifyOptions::anchors`) detects that too;
//! - read everything (records are not encrypted; they hold no secrets).
//!
//! Everything else is found, naming the first affected record: changing any
//! column of a record (`HashMismatch`), rewriting it with a recomputed hash
//! (`BadTag`), deleting records in the middle (`Gap`) or at the end
//! (`Truncated`), moving or swapping records (`OutOfOrder`), editing a
//! checkpoint or the head (`BadCheckpoint`, `BadHead`). With the master key
//! an attacker can rewrite history undetectably; protect the key.
//!
//! # Durability and crashes
//!
//! [`AuditLog::append`] returns only after the record's transaction has
//! committed (SQLite in WAL mode with `synchronous=FULL`: the WAL is
//! fsynced at commit; PostgreSQL: at commit, with the server's default
//! `synchronous_commit=on`). A request the client saw succeed therefore has
//! its record on disk. A crash (SIGKILL, power loss) can lose only records
//! whose batch had not committed, whose callers had not been answered: a
//! client waiting on them sees an error or a dropped connection, never
//! success. Events queued with [`AuditLog::append_nowait`] are not
//! acknowledged and can be lost the same way. The chain needs no repair
//! after a crash: the head moves in the same transaction as the records, and
//! the next writer continues from it (an `audit_started` record without an
//! `audit_stopped` before it marks the crash).
//!
//! # Failure
//!
//! When the store cannot be written, appends fail promptly
//! ([`AuditError::is_unavailable`]) and [`AuditLog::ready`] reports it until
//! the store recovers; the gateway turns that into 503 on routes that
//! require audit, rather than serve unaudited.

#![forbid(unsafe_code)]

pub mod chain;
pub mod event;
pub mod export;
mod log;
mod sink;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use mcpgate_store::StoreError;

pub use event::{Event, EventKind, UnknownEventKind, args_digest, outcome};
pub use export::{
    ExportFormat, ExportOptions, export, json_line, parse_since, rfc3339_ms, text_line,
};
pub use log::{AuditConfig, AuditLog, AuditStats};
pub use sink::SinkTarget;
pub use verify::{Anchor, ChainSummary, Defect, DefectKind, VerifyOptions, VerifyReport, verify};

/// Why an audit operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The queue is full: the store is not keeping up. Nothing was queued.
    #[error("the audit queue is full")]
    Overloaded,
    /// The log was shut down (or its writer stopped).
    #[error("the audit log is closed")]
    Closed,
    /// The record was not confirmed within the append timeout; it may
    /// still be committed later.
    #[error("the audit record was not committed within {0:?}")]
    Timeout(Duration),
    /// The batch holding the record failed to commit: it is not in the log.
    #[error("the audit store could not be written: {0}")]
    Write(Arc<StoreError>),
    /// The last commit failed (or one is stuck) and the store has not
    /// recovered yet ([`AuditLog::ready`]).
    #[error("the audit store is unavailable")]
    Unavailable,
    /// Reading the store failed (verify, export) or opening it did.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing export output failed.
    #[error("audit export output: {0}")]
    Io(#[from] std::io::Error),
    /// The live sink could not be opened.
    #[error("audit sink {0}")]
    Sink(String),
    #[error("invalid audit anchor `{0}`: expected CHAIN:SEQ:HEX (64 hex digits)")]
    InvalidAnchor(String),
    #[error(
        "invalid time `{0}`: expected RFC 3339 (2026-03-01T12:00:00Z), a date (2026-03-01) or a duration back from now (90s, 15m, 24h, 7d)"
    )]
    InvalidTime(String),
    #[error("invalid audit configuration: {0}")]
    InvalidConfig(&'static str),
    /// The writer's threads could not be started.
    #[error("starting the audit writer: {0}")]
    Start(#[source] std::io::Error),
}

impl AuditError {
    /// Whether this is an append that did not make it into the log (queue
    /// full, closed, timed out, store failing): the request it audits must
    /// be refused (503), not served.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Overloaded | Self::Closed | Self::Timeout(_) | Self::Write(_) | Self::Unavailable
        )
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Bytes of a hex string (either case), if it is one.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16);
    text.as_bytes()
        .chunks(2)
        .map(|pair| u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(unhex("00AB7f"), Some(vec![0x00, 0xab, 0x7f]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("0g"), None);
    }
}

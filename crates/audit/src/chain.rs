//! The hash chain: the canonical encoding of a record, its hash, and the
//! MACs (tags) of records, heads and checkpoints.
//!
//! # Encoding
//!
//! `hash = SHA-256(E)`, where `E` concatenates, in this order:
//!
//! | field | encoding |
//! |---|---|
//! | domain | `lp("mcpgate audit record v1")` |
//! | `chain_id` | `lp` |
//! | `seq` | 8 bytes, big-endian two's complement |
//! | `prev_hash` | `lp` (32 bytes; zeros for `seq` 1) |
//! | `time_ms` | 8 bytes, big-endian two's complement |
//! | `kind` | `lp` |
//! | `route`, `subject`, `client_id`, `method`, `name` | `opt` each |
//! | `outcome` | `lp` |
//! | `reason` | `opt` |
//! | `policy_ids` | `lp` (the stored JSON array text) |
//! | `args_digest` | `opt` |
//! | `latency_us` | `0x00`, or `0x01` and 8 bytes big-endian |
//! | `peer`, `details` | `opt` each (`details`: the stored JSON text) |
//!
//! `lp(x)` is the length of `x` as 8 bytes big-endian, then `x` (UTF-8 for
//! text); `opt(x)` is `0x00` when absent, else `0x01` then `lp(x)`. Every
//! field is length-prefixed or fixed-size, so two different records never
//! encode alike, and the hash covers every stored column except `hash` and
//! `tag` themselves. JSON columns are hashed as the text stored, never
//! re-serialised, so no float or key-order canonicalisation is involved.
//!
//! # Tags
//!
//! With `K = MasterKey::derive_mac("mcpgate audit chain v1")` (HMAC-SHA-256,
//! tags truncated to 128 bits, base64url; `mcpgate_crypto::mac` prefixes
//! each part with its length):
//!
//! - record: `K.tag(["record", chain_id, seq, hash])`
//! - head: `K.tag(["head", chain_id, seq, hash])`
//! - checkpoint: `K.tag(["checkpoint", chain_id, seq, hash, time_ms])`
//!
//! The labels keep the three apart: a record's tag cannot be passed off as a
//! head's, which is what stops someone without the key from cutting records
//! off the end and pointing the head at the new last record.

use mcpgate_crypto::mac::Mac;
use mcpgate_crypto::master::MasterKey;
use mcpgate_store::{AuditCheckpoint, AuditHead, AuditRecord, AuditSealer, SealedBatch};

/// Domain separation of record hashes; part of the encoding.
const HASH_DOMAIN: &str = "mcpgate audit record v1";
/// Label of the key derived from the master key for the chain's tags.
const MAC_LABEL: &str = "mcpgate audit chain v1";

/// The hash of `rec` (all its columns but `hash` and `tag`) as if it were at
/// position `seq`.
pub(crate) fn record_hash_at(rec: &AuditRecord, seq: i64) -> [u8; 32] {
    record_hash_in(&mut Vec::with_capacity(ENCODING_CAPACITY), rec, seq)
}

/// Room for a gateway request's record: its encoding outgrew 256 bytes, and
/// the regrowth's copy showed in the audit writer's profile.
const ENCODING_CAPACITY: usize = 512;

/// [`record_hash_at`], encoding into `e` (cleared first), so that a batch
/// is hashed through one buffer, which grows at most to its largest
/// record.
fn record_hash_in(e: &mut Vec<u8>, rec: &AuditRecord, seq: i64) -> [u8; 32] {
    e.clear();
    lp(e, HASH_DOMAIN.as_bytes());
    lp(e, rec.chain_id.as_bytes());
    e.extend_from_slice(&seq.to_be_bytes());
    lp(e, &rec.prev_hash);
    e.extend_from_slice(&rec.time_ms.to_be_bytes());
    lp(e, rec.kind.as_bytes());
    for field in [
        &rec.route,
        &rec.subject,
        &rec.client_id,
        &rec.method,
        &rec.name,
    ] {
        opt(e, field.as_deref());
    }
    lp(e, rec.outcome.as_bytes());
    opt(e, rec.reason.as_deref());
    lp(e, rec.policy_ids.as_bytes());
    opt(e, rec.args_digest.as_deref());
    match rec.latency_us {
        None => e.push(0),
        Some(us) => {
            e.push(1);
            e.extend_from_slice(&us.to_be_bytes());
        }
    }
    opt(e, rec.peer.as_deref());
    opt(e, rec.details.as_deref());
    mcpgate_crypto::sha256(e)
}

/// The hash of `rec` (every column but `hash` and `tag`) at its own
/// position: what its `hash` must be. Public so that tools outside the
/// gateway can check an export or a database without reimplementing the
/// encoding; checking tags needs the master key and [`verify`](crate::verify()).
pub fn record_hash(rec: &AuditRecord) -> [u8; 32] {
    record_hash_at(rec, rec.seq)
}

fn lp(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn opt(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        None => out.push(0),
        Some(text) => {
            out.push(1);
            lp(out, text.as_bytes());
        }
    }
}

/// The key of the chain's tags, derived from the master key.
pub(crate) struct ChainKey {
    mac: Mac,
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(<redacted>)")
    }
}

impl ChainKey {
    pub(crate) fn new(master: &MasterKey) -> Self {
        Self {
            mac: master.derive_mac(MAC_LABEL),
        }
    }

    pub(crate) fn record_tag(&self, chain_id: &str, seq: i64, hash: &[u8]) -> String {
        self.mac
            .tag(&[b"record", chain_id.as_bytes(), &seq.to_be_bytes(), hash])
    }

    pub(crate) fn record_tag_ok(&self, rec: &AuditRecord) -> bool {
        self.mac.verify(
            &[
                b"record",
                rec.chain_id.as_bytes(),
                &rec.seq.to_be_bytes(),
                &rec.hash,
            ],
            &rec.tag,
        )
    }

    pub(crate) fn head_tag(&self, chain_id: &str, seq: i64, hash: &[u8]) -> String {
        self.mac
            .tag(&[b"head", chain_id.as_bytes(), &seq.to_be_bytes(), hash])
    }

    pub(crate) fn head_tag_ok(&self, head: &AuditHead) -> bool {
        self.mac.verify(
            &[
                b"head",
                head.chain_id.as_bytes(),
                &head.seq.to_be_bytes(),
                &head.hash,
            ],
            &head.tag,
        )
    }

    pub(crate) fn checkpoint_tag(
        &self,
        chain_id: &str,
        seq: i64,
        hash: &[u8],
        time_ms: i64,
    ) -> String {
        self.mac.tag(&[
            b"checkpoint",
            chain_id.as_bytes(),
            &seq.to_be_bytes(),
            hash,
            &time_ms.to_be_bytes(),
        ])
    }

    pub(crate) fn checkpoint_tag_ok(&self, cp: &AuditCheckpoint) -> bool {
        self.mac.verify(
            &[
                b"checkpoint",
                cp.chain_id.as_bytes(),
                &cp.seq.to_be_bytes(),
                &cp.hash,
                &cp.time_ms.to_be_bytes(),
            ],
            &cp.tag,
        )
    }
}

/// Seals one batch: the writer's [`AuditSealer`].
pub(crate) struct Sealer<'a> {
    pub(crate) key: &'a ChainKey,
    /// A checkpoint whenever the chain passes a multiple of this many
    /// records (whoever writes it: the rule needs no shared state).
    pub(crate) checkpoint_every: u64,
    /// A checkpoint in this batch regardless (time since the last one, or
    /// shutdown).
    pub(crate) checkpoint_now: bool,
    pub(crate) now_ms: i64,
}

impl AuditSealer for Sealer<'_> {
    fn seal(&self, head: &AuditHead, records: &mut [AuditRecord]) -> SealedBatch {
        let mut seq = head.seq;
        let mut prev = head.hash.clone();
        let mut encoding = Vec::with_capacity(ENCODING_CAPACITY);
        for rec in records.iter_mut() {
            seq += 1;
            rec.seq = seq;
            rec.prev_hash = prev;
            let hash = record_hash_in(&mut encoding, rec, seq);
            rec.tag = self.key.record_tag(&rec.chain_id, seq, &hash);
            rec.hash = hash.to_vec();
            prev = rec.hash.clone();
        }
        let chain_id = head.chain_id.as_str();
        let every = i64::try_from(self.checkpoint_every.max(1)).unwrap_or(i64::MAX);
        let crossed = seq / every > head.seq / every;
        let checkpoint = (self.checkpoint_now || crossed).then(|| AuditCheckpoint {
            chain_id: chain_id.to_owned(),
            seq,
            hash: prev.clone(),
            time_ms: self.now_ms,
            tag: self.key.checkpoint_tag(chain_id, seq, &prev, self.now_ms),
        });
        SealedBatch {
            head: AuditHead {
                chain_id: chain_id.to_owned(),
                seq,
                tag: self.key.head_tag(chain_id, seq, &prev),
                hash: prev,
            },
            checkpoint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(chain: &str) -> AuditRecord {
        AuditRecord {
            chain_id: chain.to_owned(),
            seq: 0,
            time_ms: 1_700_000_000_000,
            kind: "mcp_request".to_owned(),
            route: Some("github".to_owned()),
            subject: Some("alice".to_owned()),
            client_id: None,
            method: Some("tools/call".to_owned()),
            name: Some("search".to_owned()),
            outcome: "ok".to_owned(),
            reason: None,
            policy_ids: "[]".to_owned(),
            args_digest: None,
            latency_us: Some(12),
            peer: None,
            details: None,
            prev_hash: Vec::new(),
            hash: Vec::new(),
            tag: String::new(),
        }
    }

    fn key() -> ChainKey {
        ChainKey::new(&MasterKey::from_bytes(&[7; 32]).unwrap())
    }

    /// The encoding is a published format (exports are checked with it
    /// outside the gateway, and stored hashes must stay valid): pinned.
    #[test]
    fn record_hash_encoding_is_stable() {
        let mut rec = record("main");
        rec.prev_hash = vec![0xab; 32];
        rec.peer = Some("127.0.0.1".to_owned());
        rec.details = Some(r#"{"k":"v"}"#.to_owned());
        assert_eq!(
            crate::hex(&record_hash_at(&rec, 42)),
            "f73079bc0313a0aa22bce85c4e61b1518e60a37e8ba7faf789dc27ff7c4d0f81"
        );
    }

    #[test]
    fn every_column_is_covered_by_the_hash() {
        let base = record("main");
        let h = record_hash_at(&base, 1);
        let mut variants: Vec<AuditRecord> = Vec::new();
        let mut push = |f: &dyn Fn(&mut AuditRecord)| {
            let mut r = base.clone();
            f(&mut r);
            variants.push(r);
        };
        push(&|r| r.chain_id = "other".into());
        push(&|r| r.time_ms += 1);
        push(&|r| r.kind = "mcp_requests".into());
        push(&|r| r.route = None);
        push(&|r| r.subject = Some("alicf".into()));
        push(&|r| r.client_id = Some(String::new()));
        push(&|r| r.method = None);
        push(&|r| r.name = Some("searcH".into()));
        push(&|r| r.outcome = "error".into());
        push(&|r| r.reason = Some(String::new()));
        push(&|r| r.policy_ids = "[\"p\"]".into());
        push(&|r| r.args_digest = Some("00".into()));
        push(&|r| r.latency_us = None);
        push(&|r| r.latency_us = Some(13));
        push(&|r| r.peer = Some("x".into()));
        push(&|r| r.details = Some("{}".into()));
        push(&|r| r.prev_hash = vec![0; 32]);
        for v in &variants {
            assert_ne!(record_hash_at(v, 1), h, "{v:?}");
        }
        assert_ne!(record_hash_at(&base, 2), h, "seq is covered");
        // Moving a value between adjacent optional fields changes the hash.
        let mut a = base.clone();
        a.subject = None;
        a.client_id = Some("alice".into());
        assert_ne!(record_hash_at(&a, 1), h);
    }

    #[test]
    fn sealer_links_records_and_signs_head_and_checkpoints() {
        let key = key();
        let sealer = Sealer {
            key: &key,
            checkpoint_every: 3,
            checkpoint_now: false,
            now_ms: 9,
        };
        let mut batch = vec![record("main"), record("main")];
        let sealed = sealer.seal(&AuditHead::genesis("main"), &mut batch);
        assert_eq!((batch[0].seq, batch[1].seq), (1, 2));
        assert_eq!(batch[0].prev_hash, vec![0; 32]);
        assert_eq!(batch[1].prev_hash, batch[0].hash);
        assert!(batch.iter().all(|r| key.record_tag_ok(r)));
        assert_eq!(record_hash(&batch[1]).to_vec(), batch[1].hash);
        assert_eq!(sealed.head.seq, 2);
        assert!(key.head_tag_ok(&sealed.head));
        assert_eq!(sealed.checkpoint, None, "2 records do not reach 3");

        let mut more = vec![record("main"), record("main")];
        let sealed = sealer.seal(&sealed.head, &mut more);
        let cp = sealed.checkpoint.unwrap();
        assert_eq!((cp.seq, cp.hash.clone()), (4, more[1].hash.clone()));
        assert!(key.checkpoint_tag_ok(&cp));

        // The three kinds of tag are not interchangeable.
        let as_head = AuditHead {
            tag: more[1].tag.clone(),
            ..sealed.head.clone()
        };
        assert!(!key.head_tag_ok(&as_head));
    }
}

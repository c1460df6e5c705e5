//! `mcpgate audit verify`: walks every chain and names what was changed,
//! deleted or reordered.
//!
//! For each record, in `seq` order: its `seq` must follow the previous one
//! ([`DefectKind::Gap`] otherwise); its columns must hash to its stored
//! hash ([`DefectKind::HashMismatch`], or [`DefectKind::OutOfOrder`] when
//! they hash right at another position: a moved or swapped record); its
//! `prev_hash` must be the previous record's hash ([`DefectKind::BrokenLink`]);
//! and its tag must verify under the master key ([`DefectKind::BadTag`]: the
//! record was rewritten, hash and all, by someone without the key). Then
//! every checkpoint and the head must carry a valid tag and match the
//! record they name; one naming a record past the last is proof that the
//! newest records were deleted ([`DefectKind::Truncated`]). If no tag at all
//! verifies, the key is wrong ([`DefectKind::WrongKey`]) and tag defects are
//! not listed one by one.
//!
//! Memory stays bounded: records are read a page at a time and only the
//! previous one is kept. A defect right after another one is not reported
//! again as a broken link: the first explains it.

use std::fmt;
use std::str::FromStr;

use mcpgate_crypto::master::MasterKey;
use mcpgate_store::{AUDIT_HASH_LEN, AuditCheckpoint, AuditHead, AuditRecord, AuditStore};

use crate::AuditError;
use crate::chain::{ChainKey, record_hash, record_hash_at};
use crate::export::rfc3339_ms;

/// Records per store query.
const PAGE: u32 = 1000;
/// How far from its position a record with a wrong hash is looked for, to
/// tell a moved record from a modified one.
const MOVE_SEARCH: i64 = 1024;
/// How many records with a wrong hash are looked for elsewhere (each search
/// costs 2 × [`MOVE_SEARCH`] hashes).
const MOVE_SEARCHES: u32 = 16;

/// What [`verify`] checks beyond the database's own content.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Heads recorded earlier outside the database (a previous report's
    /// [`ChainSummary::head`], a checkpoint line from the logs): each must
    /// still be in its chain, unchanged. This is what detects the newest
    /// records being cut off together with every checkpoint and head that
    /// named them.
    pub anchors: Vec<Anchor>,
    /// Defects listed at most (the earliest ones); the rest are counted in
    /// [`VerifyReport::omitted_defects`].
    pub max_defects: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            anchors: Vec::new(),
            max_defects: 1000,
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records read, in all chains.
    pub records: u64,
    pub chains: u32,
    /// Checkpoints read, in all chains.
    pub checkpoints: u64,
    /// Ordered by chain, then `seq`: the first is the first bad record.
    pub defects: Vec<Defect>,
    /// Defects found beyond [`VerifyOptions::max_defects`].
    pub omitted_defects: u64,
    /// One per chain, by chain id.
    pub summaries: Vec<ChainSummary>,
}

impl VerifyReport {
    /// Whether no defect was found.
    pub fn is_clean(&self) -> bool {
        self.defects.is_empty() && self.omitted_defects == 0
    }

    /// The first bad record (by chain, then `seq`).
    pub fn first_defect(&self) -> Option<&Defect> {
        self.defects.first()
    }
}

/// One line: what was checked, then `OK` or the defect count and the first
/// defect.
impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records in {} chain{}, {} checkpoints: ",
            self.records,
            self.chains,
            if self.chains == 1 { "" } else { "s" },
            self.checkpoints
        )?;
        match self.first_defect() {
            None => f.write_str("OK"),
            Some(first) => {
                let total = self.defects.len() as u64 + self.omitted_defects;
                write!(
                    f,
                    "{total} defect{}; first: {first}",
                    if total == 1 { "" } else { "s" }
                )
            }
        }
    }
}

/// One chain, as [`verify`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    pub chain_id: String,
    pub records: u64,
    /// `seq` of the last record present (0 if none).
    pub last_seq: u64,
    /// `seq` of the last checkpoint, if any.
    pub last_checkpoint_seq: Option<u64>,
    /// Records after the last checkpoint. They are individually tagged and
    /// covered by the signed head, so they are verified too; but cutting
    /// them off together with the head needs a head observed earlier, which
    /// only an [`Anchor`] kept outside the database defeats.
    pub after_last_checkpoint: u64,
    /// The last record as an anchor, to keep outside the database and pass
    /// back in [`VerifyOptions::anchors`] next time.
    pub head: Option<Anchor>,
}

/// A defect in one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defect {
    pub chain_id: String,
    /// The record concerned (for a gap or truncation, the first missing one;
    /// for a checkpoint or head, the record it names).
    pub seq: u64,
    pub what: DefectKind,
    /// The record's time and kind as stored, when the record is there to
    /// read (they may be what was altered).
    pub time_ms: Option<i64>,
    pub kind: Option<String>,
}

/// What is wrong. See the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DefectKind {
    /// The record's contents were changed: they no longer hash to its hash.
    HashMismatch,
    /// `missing` records from this `seq` on were deleted.
    Gap { missing: u64 },
    /// This row holds record `original_seq`: records were moved or swapped.
    OutOfOrder { original_seq: u64 },
    /// The record does not link to its predecessor: the predecessor was
    /// replaced, or the record rewritten.
    BrokenLink,
    /// The record's hash is consistent but its tag is wrong: rewritten (hash
    /// recomputed) by someone without the master key.
    BadTag,
    /// `missing` records from this `seq` on were deleted at the end of the
    /// chain: a signed head, a checkpoint or an anchor names a later record.
    Truncated { missing: u64 },
    /// A checkpoint's tag is wrong, or it does not match the record it names.
    BadCheckpoint,
    /// The head's tag is wrong, or it does not match the last record, or
    /// records follow it.
    BadHead,
    /// Records exist but the chain's head row is gone.
    HeadMissing,
    /// An anchor's record is present but differs.
    AnchorMismatch,
    /// No tag in the chain verifies under this master key: wrong key (or
    /// every record rewritten).
    WrongKey,
}

impl fmt::Display for DefectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HashMismatch => f.write_str("modified: its contents do not match its hash"),
            Self::Gap { missing: 1 } => f.write_str("deleted: this record is missing"),
            Self::Gap { missing } => write!(f, "deleted: {missing} records missing from here"),
            Self::OutOfOrder { original_seq } => {
                write!(f, "reordered: this row holds record {original_seq}")
            }
            Self::BrokenLink => f.write_str("does not link to its predecessor"),
            Self::BadTag => f.write_str("rewritten: its hash is consistent but its MAC is not"),
            Self::Truncated { missing } => write!(
                f,
                "deleted at the end: {missing} records from here are missing"
            ),
            Self::BadCheckpoint => {
                f.write_str("checkpoint invalid or does not match the record it names")
            }
            Self::BadHead => f.write_str("chain head invalid or does not match the last record"),
            Self::HeadMissing => f.write_str("chain head missing"),
            Self::AnchorMismatch => f.write_str("differs from the anchor given"),
            Self::WrongKey => f.write_str(
                "no MAC verifies under this master key (wrong key, or every record rewritten)",
            ),
        }
    }
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chain {:?}, record {}", self.chain_id, self.seq)?;
        match (self.time_ms, &self.kind) {
            (Some(time), Some(kind)) => write!(f, " ({}, {kind})", rfc3339_ms(time))?,
            (Some(time), None) => write!(f, " ({})", rfc3339_ms(time))?,
            _ => {}
        }
        write!(f, ": {}", self.what)
    }
}

/// A record's hash at a position, known from outside the database:
/// `CHAIN:SEQ:HEX` (the chain id may itself contain `:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub chain_id: String,
    pub seq: u64,
    pub hash: [u8; AUDIT_HASH_LEN],
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.chain_id,
            self.seq,
            crate::hex(&self.hash)
        )
    }
}

impl FromStr for Anchor {
    type Err = AuditError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AuditError::InvalidAnchor(s.to_owned());
        let mut parts = s.rsplitn(3, ':');
        let (Some(hex), Some(seq), Some(chain_id)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let seq: u64 = seq.parse().map_err(|_| bad())?;
        let hash = crate::unhex(hex)
            .and_then(|h| <[u8; AUDIT_HASH_LEN]>::try_from(h).ok())
            .ok_or_else(bad)?;
        if chain_id.is_empty() || seq == 0 {
            return Err(bad());
        }
        Ok(Anchor {
            chain_id: chain_id.to_owned(),
            seq,
            hash,
        })
    }
}

/// Checks every chain in `store` with `master_key` (the gateway's). Fails
/// only when the store cannot be read; defects are in the report.
pub async fn verify(
    store: &dyn AuditStore,
    master_key: &MasterKey,
    options: &VerifyOptions,
) -> Result<VerifyReport, AuditError> {
    let key = ChainKey::new(master_key);
    let mut chains = store.audit_chains().await?;
    for anchor in &options.anchors {
        if !chains.contains(&anchor.chain_id) {
            chains.push(anchor.chain_id.clone());
        }
    }
    chains.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut report = VerifyReport::default();
    let mut defects = Vec::new();
    let mut searches = MOVE_SEARCHES;
    for chain in &chains {
        let mut walk = Walk {
            key: &key,
            chain,
            max: options.max_defects,
            defects: Vec::new(),
            tag_defects: Vec::new(),
            omitted: 0,
            tags_ok: 0,
            tags_bad: 0,
            searches: &mut searches,
        };
        let summary = walk.run(store, &options.anchors, &mut report).await?;
        report.omitted_defects += walk.omitted;
        defects.append(&mut walk.finish());
        report.summaries.push(summary);
    }
    report.chains = u32::try_from(chains.len()).unwrap_or(u32::MAX);
    // Chains were walked in id order; within one, order by seq (head and
    // checkpoint defects were found out of order).
    defects.sort_by(|a, b| (a.chain_id.as_bytes(), a.seq).cmp(&(b.chain_id.as_bytes(), b.seq)));
    if defects.len() > options.max_defects {
        report.omitted_defects += (defects.len() - options.max_defects) as u64;
        defects.truncate(options.max_defects);
    }
    report.defects = defects;
    Ok(report)
}

/// The verification of one chain.
struct Walk<'a> {
    key: &'a ChainKey,
    chain: &'a str,
    max: usize,
    defects: Vec<Defect>,
    /// Tag failures, kept apart: if no tag verifies they become one
    /// [`DefectKind::WrongKey`].
    tag_defects: Vec<Defect>,
    omitted: u64,
    tags_ok: u64,
    tags_bad: u64,
    searches: &'a mut u32,
}

impl Walk<'_> {
    async fn run(
        &mut self,
        store: &dyn AuditStore,
        anchors: &[Anchor],
        report: &mut VerifyReport,
    ) -> Result<ChainSummary, AuditError> {
        let head = store.audit_head(self.chain).await?;
        let checkpoints = all_checkpoints(store, self.chain).await?;
        report.checkpoints += checkpoints.len() as u64;
        let mut anchors: Vec<&Anchor> = anchors
            .iter()
            .filter(|a| a.chain_id == self.chain)
            .collect();
        anchors.sort_by_key(|a| a.seq);
        let mut cps = checkpoints.iter().peekable();
        let mut anchors = anchors.into_iter().peekable();

        let mut expected = 1i64;
        let mut prev_hash = vec![0u8; AUDIT_HASH_LEN];
        let mut prev_flagged = false;
        let mut records = 0u64;
        let mut after_seq = 0i64;
        loop {
            let page = store
                .audit_records(self.chain, after_seq, None, PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after_seq = last.seq;
            for rec in &page {
                records += 1;
                // Checkpoints and anchors of records that are not there: the
                // gap is reported below; their own tags still count.
                while let Some(cp) = cps.next_if(|cp| cp.seq < rec.seq) {
                    self.checkpoint(cp, (cp.seq == 0).then_some(prev_hash.as_slice()));
                }
                while anchors.next_if(|a| u64_of(rec.seq) > a.seq).is_some() {}
                let flagged = self.record(rec, expected, &prev_hash, prev_flagged);
                while let Some(cp) = cps.next_if(|cp| cp.seq == rec.seq) {
                    // A flagged record explains a checkpoint that does not
                    // match it; the checkpoint's own tag is still checked.
                    self.checkpoint(cp, (!flagged).then_some(rec.hash.as_slice()));
                }
                while let Some(anchor) = anchors.next_if(|a| a.seq == u64_of(rec.seq)) {
                    if anchor.hash[..] != rec.hash[..] {
                        self.defect(rec.seq, DefectKind::AnchorMismatch, Some(rec));
                    }
                }
                prev_hash.clone_from(&rec.hash);
                expected = rec.seq.saturating_add(1);
                prev_flagged = flagged;
            }
        }
        report.records += records;
        let last_seq = expected - 1;

        // What names records past the last one proves they existed.
        let mut claimed = last_seq;
        for cp in cps {
            let at_end = cp.seq == last_seq;
            self.checkpoint(cp, at_end.then_some(prev_hash.as_slice()));
            claimed = claimed.max(cp.seq);
        }
        for anchor in anchors {
            claimed = claimed.max(i64::try_from(anchor.seq).unwrap_or(i64::MAX));
        }
        match &head {
            None if records > 0 || !checkpoints.is_empty() => {
                self.defect(last_seq, DefectKind::HeadMissing, None);
            }
            None => {}
            Some(head) => {
                self.head(head, last_seq, &prev_hash);
                claimed = claimed.max(head.seq);
            }
        }
        if claimed > last_seq {
            let missing = u64_of(claimed - last_seq);
            self.defect(last_seq + 1, DefectKind::Truncated { missing }, None);
        }

        let last_checkpoint = checkpoints
            .iter()
            .map(|cp| cp.seq)
            .filter(|&s| s <= last_seq)
            .max();
        Ok(ChainSummary {
            chain_id: self.chain.to_owned(),
            records,
            last_seq: u64_of(last_seq),
            last_checkpoint_seq: last_checkpoint.map(u64_of),
            after_last_checkpoint: u64_of(last_seq - last_checkpoint.unwrap_or(0)),
            head: (records > 0)
                .then(|| <[u8; AUDIT_HASH_LEN]>::try_from(prev_hash.as_slice()).ok())
                .flatten()
                .map(|hash| Anchor {
                    chain_id: self.chain.to_owned(),
                    seq: u64_of(last_seq),
                    hash,
                }),
        })
    }

    /// Checks one record; returns whether it is flagged.
    fn record(
        &mut self,
        rec: &AuditRecord,
        expected: i64,
        prev_hash: &[u8],
        prev_flagged: bool,
    ) -> bool {
        let follows = rec.seq == expected;
        if rec.seq > expected {
            let missing = u64_of(rec.seq - expected);
            self.defect(expected, DefectKind::Gap { missing }, None);
        }
        if record_hash(rec)[..] != rec.hash[..] {
            let what = match self.original_position(rec) {
                Some(original_seq) => DefectKind::OutOfOrder { original_seq },
                None => DefectKind::HashMismatch,
            };
            self.defect(rec.seq, what, Some(rec));
            return true;
        }
        // A predecessor that is missing or flagged already explains a
        // broken link.
        if follows && !prev_flagged && rec.prev_hash != prev_hash {
            self.defect(rec.seq, DefectKind::BrokenLink, Some(rec));
            return true;
        }
        if self.key.record_tag_ok(rec) {
            self.tags_ok += 1;
            false
        } else {
            self.tag_defect(rec.seq, DefectKind::BadTag, Some(rec));
            true
        }
    }

    /// The position `rec`'s columns hash right at, near its own.
    fn original_position(&mut self, rec: &AuditRecord) -> Option<u64> {
        if *self.searches == 0 || rec.hash.len() != AUDIT_HASH_LEN {
            return None;
        }
        *self.searches -= 1;
        (1..=MOVE_SEARCH)
            .flat_map(|d| [rec.seq.checked_sub(d), rec.seq.checked_add(d)])
            .flatten()
            .filter(|&seq| seq >= 1)
            .find(|&seq| record_hash_at(rec, seq)[..] == rec.hash[..])
            .map(u64_of)
    }

    /// Checks a checkpoint; `record_hash` is the hash of the record it
    /// names, if that record is present (or, for `seq` 0, the zero hash).
    fn checkpoint(&mut self, cp: &AuditCheckpoint, record_hash: Option<&[u8]>) {
        if self.key.checkpoint_tag_ok(cp) {
            self.tags_ok += 1;
        } else {
            self.tag_defect(cp.seq, DefectKind::BadCheckpoint, None);
            return;
        }
        let zero_ok = cp.seq == 0 && cp.hash.iter().all(|&b| b == 0);
        match record_hash {
            Some(hash) if hash != cp.hash && !zero_ok => {
                self.defect(cp.seq, DefectKind::BadCheckpoint, None);
            }
            // A missing record is reported as a gap or truncation.
            _ => {}
        }
    }

    fn head(&mut self, head: &AuditHead, last_seq: i64, last_hash: &[u8]) {
        if self.key.head_tag_ok(head) {
            self.tags_ok += 1;
        } else {
            self.tag_defect(head.seq, DefectKind::BadHead, None);
            return;
        }
        if head.seq < last_seq {
            // Records after the head: written around the writer, or the
            // head was set back.
            self.defect(head.seq + 1, DefectKind::BadHead, None);
        } else if head.seq == last_seq && head.hash != last_hash {
            self.defect(head.seq, DefectKind::BadHead, None);
        }
    }

    fn defect(&mut self, seq: i64, what: DefectKind, rec: Option<&AuditRecord>) {
        let defect = self.make(seq, what, rec);
        if self.defects.len() < self.max {
            self.defects.push(defect);
        } else {
            self.omitted += 1;
        }
    }

    fn tag_defect(&mut self, seq: i64, what: DefectKind, rec: Option<&AuditRecord>) {
        self.tags_bad += 1;
        let defect = self.make(seq, what, rec);
        if self.tag_defects.len() < self.max {
            self.tag_defects.push(defect);
        }
    }

    fn make(&self, seq: i64, what: DefectKind, rec: Option<&AuditRecord>) -> Defect {
        Defect {
            chain_id: self.chain.to_owned(),
            seq: u64_of(seq),
            what,
            time_ms: rec.map(|r| r.time_ms),
            kind: rec.map(|r| r.kind.clone()),
        }
    }

    /// The chain's defects, tag failures folded into one
    /// [`DefectKind::WrongKey`] when no tag verified.
    fn finish(mut self) -> Vec<Defect> {
        if self.tags_bad > 0 && self.tags_ok == 0 {
            let first = self.tag_defects.iter().map(|d| d.seq).min().unwrap_or(0);
            self.defects.push(Defect {
                chain_id: self.chain.to_owned(),
                seq: first,
                what: DefectKind::WrongKey,
                time_ms: None,
                kind: None,
            });
        } else {
            let listed = self.tag_defects.len() as u64;
            self.omitted += self.tags_bad - listed;
            self.defects.append(&mut self.tag_defects);
        }
        self.defects
    }
}

async fn all_checkpoints(
    store: &dyn AuditStore,
    chain: &str,
) -> Result<Vec<AuditCheckpoint>, AuditError> {
    let mut all = Vec::new();
    let mut after = -1;
    loop {
        let page = store.audit_checkpoints(chain, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        all.extend(page);
    }
    Ok(all)
}

/// A `seq` (never negative in a chain) as `u64`.
fn u64_of(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_round_trips_and_rejects_junk() {
        let a = Anchor {
            chain_id: "eu:main".into(),
            seq: 42,
            hash: [0xab; 32],
        };
        let text = a.to_string();
        assert_eq!(text, format!("eu:main:42:{}", "ab".repeat(32)));
        assert_eq!(text.parse::<Anchor>().unwrap(), a);
        for bad in [
            "main:42",
            "main:x:00",
            &format!("main:0:{}", "ab".repeat(32)),
            &format!(":1:{}", "ab".repeat(32)),
            &format!("main:1:{}", "ab".repeat(31)),
            &format!("main:1:{}", "zz".repeat(32)),
        ] {
            assert!(bad.parse::<Anchor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn report_display_says_ok_or_names_the_first_defect() {
        let mut report = VerifyReport {
            records: 3,
            chains: 1,
            checkpoints: 1,
            ..VerifyReport::default()
        };
        assert_eq!(
            report.to_string(),
            "3 records in 1 chain, 1 checkpoints: OK"
        );
        report.defects.push(Defect {
            chain_id: "main".into(),
            seq: 2,
            what: DefectKind::Gap { missing: 1 },
            time_ms: None,
            kind: None,
        });
        report.omitted_defects = 1;
        assert_eq!(
            report.to_string(),
            "3 records in 1 chain, 1 checkpoints: 2 defects; first: chain \"main\", \
             record 2: deleted: this record is missing"
        );
    }

    #[test]
    fn defect_display_names_chain_record_time_and_kind() {
        let d = Defect {
            chain_id: "main".into(),
            seq: 7,
            what: DefectKind::HashMismatch,
            time_ms: Some(0),
            kind: Some("mcp_request".into()),
        };
        assert_eq!(
            d.to_string(),
            "chain \"main\", record 7 (1970-01-01T00:00:00.000Z, mcp_request): \
             modified: its contents do not match its hash"
        );
    }
}

//! Origin-log batches: their format, hashes and signatures.
//!
//! A batch is a signed header plus entries. The header commits to every
//! entry through `entries_root`, a hash over each entry's hash, so that an
//! entry's token can later be purged (replaced by its hash) while the batch
//! still verifies. Entry hashes are salted: a hash kept after a purge cannot
//! be tested against a candidate token by anyone holding the token key. The
//! chain runs over header hashes: each header names the SHA-256 of the
//! previous header of the same origin.
//!
//! Verification ([`verify`](crate::trust::batches::verify)) needs the
//! origin's entry in the trust list in force: a signing key of that member
//! (a retired one only up to the last sequence number the list allows it),
//! the `contribute` capability, and, for a suspended origin, no entry past
//! the sequence number its suspension records. Pure: no I/O.

use prost::Message;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{
    keys::signing::SigningKeyFile,
    proto::{BatchHeader, ForkEvidence, LogBatch, LogEntry, LogOp},
    token::{Token, TOKEN_LEN},
};

/// Domain separation for batch signatures.
pub const SIGNING_CONTEXT: &[u8] = b"cix-batch-v1\0";
const ENTRY_CONTEXT: &[u8] = b"cix-entry-v1\0";
const ROOT_CONTEXT: &[u8] = b"cix-entries-v1\0";

/// Why a batch does not decode or does not verify.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// The batch or its header is not valid protobuf; carries the decoder's
    /// message.
    #[error("batch does not decode: {0}")]
    Decode(String),
    /// The number of entries differs from the header's `count`.
    #[error("batch of {origin}: header says {expected} entries, batch has {got}")]
    Count {
        /// Member id the header names as origin.
        origin: String,
        /// Entry count the signed header states.
        expected: u32,
        /// Entries the batch carries.
        got: usize,
    },
    /// The entries do not hash to the header's `entries_root`.
    #[error("batch of {origin} at {first_seq}: entries do not match the signed header (tampered or corrupt)")]
    Root {
        /// Member id the header names as origin.
        origin: String,
        /// Sequence number of the batch's first entry.
        first_seq: u64,
    },
    /// The origin has no entry in the trust list in force.
    #[error("batch of {origin}: the origin is not on the trust list")]
    UnknownOrigin {
        /// Member id the header names as origin.
        origin: String,
    },
    /// The origin's trust-list entry lacks the `contribute` capability.
    #[error("batch of {origin}: the origin lacks the `contribute` capability")]
    NotContributor {
        /// Member id the header names as origin.
        origin: String,
    },
    /// No signing key of the origin allowed at the batch's sequence numbers
    /// made a valid signature over the header.
    #[error("batch of {origin} at {first_seq}: no signing key of the origin allowed at this sequence signed it")]
    Signature {
        /// Member id the header names as origin.
        origin: String,
        /// Sequence number of the batch's first entry.
        first_seq: u64,
    },
    /// The header's creation time is at or after the origin's sharing basis
    /// expiry.
    #[error("batch of {origin} was made after the origin's sharing basis expired")]
    PastSharingBasis {
        /// Member id the header names as origin.
        origin: String,
    },
    /// The origin is suspended and the batch ends past the last sequence
    /// number its suspension allows.
    #[error("batch of {origin} ends at {last_seq}, past {limit}, the last sequence number the coalition accepts from it")]
    PastSuspension {
        /// Member id the header names as origin.
        origin: String,
        /// Sequence number of the batch's last entry.
        last_seq: u64,
        /// Last sequence number the suspension allows.
        limit: u64,
    },
    /// A field of the header or of an entry lies outside the bounds honest
    /// nodes write ([`Batch::check_fields`]). Names the field and the rule,
    /// never a token or other value of the batch.
    #[error("batch of {origin} at {first_seq}: {field}: {rule}")]
    Field {
        /// Member id the header names as origin.
        origin: String,
        /// Sequence number of the batch's first entry.
        first_seq: u64,
        /// The field, e.g. `op` or `entries[3].kind`.
        field: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// An entry of the batch is malformed.
    #[error("entry {index} of a batch of {origin}: {what}")]
    Entry {
        /// Member id the header names as origin.
        origin: String,
        /// Position of the entry in the batch, from 0.
        index: usize,
        /// What is wrong with the entry.
        what: &'static str,
    },
}

/// Most bytes one message between peers may have, in either direction
/// (a `Pull` answer carries one batch or one fork evidence): what every peer
/// client decodes and the peer listener encodes, 16 MiB.
pub const PEER_MESSAGE_BYTES: usize = 16 << 20;

/// Most bytes of one encoded batch a node takes from a peer or sends in a
/// pull: half a peer message, less room for the framing, so that fork
/// evidence (two batches) always fits in one message. Larger than any batch
/// a node writes ([`MAX_WRITTEN_BYTES`]), so that batches written before the
/// write bound by older honest nodes (up to 4 MiB could replicate) still do.
pub const MAX_RECEIVED_BYTES: usize = PEER_MESSAGE_BYTES / 2 - 4096;

/// The default of `limits.max_batch_bytes`: most bytes of one encoded batch
/// this node writes, 2 MiB (about 36,000 entries).
pub const DEFAULT_WRITTEN_BYTES: usize = 2 << 20;

/// The most `limits.max_batch_bytes` may be: 4 MiB, what nodes built before
/// the bound decode, well under [`MAX_RECEIVED_BYTES`].
pub const MAX_WRITTEN_BYTES: usize = 4 << 20;

/// The least `limits.max_batch_bytes` may be: room for the largest header
/// and one entry many times over.
pub const MIN_WRITTEN_BYTES: usize = 4096;

/// Length of the salt [`entry`] draws for each entry.
pub const SALT_LEN: usize = 16;
/// The rule case references and retraction reasons follow.
pub const LABEL_RULE: &str = "must be 1 to 128 characters of printable ASCII or space";

/// Whether `s` is a valid case reference or retraction reason: 1 to 128
/// characters of printable ASCII or space ([`LABEL_RULE`]). The same rule
/// holds for what this node's clients send and what peers' batches carry.
pub fn is_label(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// A decoded batch: the header as signed, and the raw batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// The header, decoded from `raw.header`.
    pub header: BatchHeader,
    /// The batch as received or signed: header bytes, signature, entries.
    pub raw: LogBatch,
}

impl Batch {
    /// Decodes the header of an already decoded batch.
    pub fn decode(raw: LogBatch) -> Result<Batch, BatchError> {
        let header = BatchHeader::decode(raw.header.as_slice())
            .map_err(|e| BatchError::Decode(e.to_string()))?;
        Ok(Batch { header, raw })
    }

    /// Decodes a batch from its encoding, copying `bytes` once.
    pub fn decode_bytes(bytes: &[u8]) -> Result<Batch, BatchError> {
        // One copy of the whole batch; its entries' fields are slices of it.
        Batch::decode_owned(bytes::Bytes::copy_from_slice(bytes))
    }

    /// Decodes a batch whose entries' fields stay slices of `bytes`.
    pub fn decode_owned(bytes: bytes::Bytes) -> Result<Batch, BatchError> {
        Batch::decode(LogBatch::decode(bytes).map_err(|e| BatchError::Decode(e.to_string()))?)
    }

    /// Member id of the origin, as the header names it.
    pub fn origin(&self) -> &str {
        &self.header.origin
    }

    /// Sequence number of the first entry.
    pub fn first_seq(&self) -> u64 {
        self.header.first_seq
    }

    /// Sequence number of the last entry (`u64::MAX` if the header's
    /// numbers overflow; [`Batch::check_fields`] refuses such a batch).
    pub fn last_seq(&self) -> u64 {
        self.checked_last_seq().unwrap_or(u64::MAX)
    }

    /// Sequence number of the last entry; `None` if `first_seq + count - 1`
    /// overflows.
    pub fn checked_last_seq(&self) -> Option<u64> {
        self.header
            .first_seq
            .checked_add(u64::from(self.header.count).max(1) - 1)
    }

    /// What the next batch of the origin names as `prev_hash`.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(&self.raw.header).into()
    }

    /// The header's operation; [`LogOp::Unspecified`] for a value this
    /// build does not know.
    pub fn op(&self) -> LogOp {
        LogOp::try_from(self.header.op).unwrap_or(LogOp::Unspecified)
    }

    /// Whether the entries match the header's `entries_root` and count.
    pub fn check_entries(&self) -> Result<(), BatchError> {
        if self.raw.entries.len() != self.header.count as usize {
            return Err(BatchError::Count {
                origin: self.header.origin.clone(),
                expected: self.header.count,
                got: self.raw.entries.len(),
            });
        }
        if entries_root(&self.raw.entries).as_slice() != self.header.entries_root.as_slice() {
            return Err(BatchError::Root {
                origin: self.header.origin.clone(),
                first_seq: self.header.first_seq,
            });
        }
        Ok(())
    }
}

impl Batch {
    /// Whether every field of the header and of every entry lies within the
    /// bounds honest nodes write (what they enforce on their own clients),
    /// so that a stored batch always applies to the index. Checked on every
    /// received batch before anything is stored:
    ///
    /// - `op` is add, retract or extend;
    /// - `first_seq + count - 1` does not overflow, and `count` equals the
    ///   number of entries;
    /// - `created_unix` and `valid_until_unix` are not negative, and an
    ///   extension names a `valid_until_unix`;
    /// - an addition has a known `tier` and a `case_ref` that is a label
    ///   ([`is_label`]), and no `reason`;
    /// - a retraction has a `reason` that is a label, and no `case_ref`; an
    ///   extension has neither;
    /// - each entry either has a token of [`TOKEN_LEN`] bytes, a known kind
    ///   and a salt of [`SALT_LEN`] bytes, and no purged hash, or is purged
    ///   ([`purged`]): a kept hash of 32 bytes and nothing else.
    ///
    /// Signatures and membership are [`crate::trust::batches::verify`]'s.
    pub fn check_fields(&self) -> Result<(), BatchError> {
        let h = &self.header;
        let bad = |field: String, rule: &'static str| BatchError::Field {
            origin: h.origin.clone(),
            first_seq: h.first_seq,
            field,
            rule,
        };
        let op = LogOp::try_from(h.op)
            .ok()
            .filter(|op| *op != LogOp::Unspecified)
            .ok_or_else(|| bad("op".into(), "must be add, retract or extend"))?;
        if self.checked_last_seq().is_none() {
            return Err(bad(
                "count".into(),
                "first_seq + count - 1 must not overflow",
            ));
        }
        if self.raw.entries.len() != h.count as usize {
            return Err(bad("count".into(), "must equal the number of entries"));
        }
        if h.created_unix < 0 {
            return Err(bad("created_unix".into(), "must not be negative"));
        }
        if h.valid_until_unix < 0 {
            return Err(bad("valid_until_unix".into(), "must not be negative"));
        }
        match op {
            LogOp::Add => {
                let tier = crate::proto::Tier::try_from(h.tier).ok();
                if tier.is_none_or(|t| t == crate::proto::Tier::Unspecified) {
                    return Err(bad(
                        "tier".into(),
                        "must be confirmed, probable or suspected",
                    ));
                }
                if !is_label(&h.case_ref) {
                    return Err(bad("case_ref".into(), LABEL_RULE));
                }
                if !h.reason.is_empty() {
                    return Err(bad("reason".into(), "must be empty in an addition"));
                }
            }
            LogOp::Retract | LogOp::Extend => {
                if !h.case_ref.is_empty() {
                    return Err(bad(
                        "case_ref".into(),
                        "must be empty in a retraction or extension",
                    ));
                }
                if op == LogOp::Retract && !is_label(&h.reason) {
                    return Err(bad("reason".into(), LABEL_RULE));
                }
                if op == LogOp::Extend && !h.reason.is_empty() {
                    return Err(bad("reason".into(), "must be empty in an extension"));
                }
                if op == LogOp::Extend && h.valid_until_unix == 0 {
                    return Err(bad(
                        "valid_until_unix".into(),
                        "an extension must name a time",
                    ));
                }
            }
            LogOp::Unspecified => unreachable!("refused above"),
        }
        for (i, e) in self.raw.entries.iter().enumerate() {
            let field = |name: &str| format!("entries[{i}].{name}");
            if !e.purged_hash.is_empty() {
                if e.purged_hash.len() != TOKEN_LEN {
                    return Err(bad(field("purged_hash"), "must be 32 bytes"));
                }
                if !e.token.is_empty() || !e.salt.is_empty() || e.kind != 0 || e.epoch != 0 {
                    return Err(bad(
                        field("purged_hash"),
                        "a purged entry carries its hash and nothing else",
                    ));
                }
                continue;
            }
            if e.token.len() != TOKEN_LEN {
                return Err(bad(field("token"), "must be 32 bytes"));
            }
            if u8::try_from(e.kind)
                .ok()
                .and_then(crate::ident::Kind::from_code)
                .is_none()
            {
                return Err(bad(field("kind"), "must be a known kind"));
            }
            if e.salt.len() != SALT_LEN {
                return Err(bad(field("salt"), "must be 16 bytes"));
            }
        }
        Ok(())
    }
}

/// The sequence number from which fork evidence freezes its origin: the
/// earlier first sequence number of its two batches.
pub fn fork_point(ev: &ForkEvidence) -> Option<u64> {
    [ev.first.as_ref(), ev.second.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|b| Batch::decode(b.clone()).ok())
        .map(|b| b.first_seq())
        .min()
}

/// The hash an entry is committed under (its kept hash once purged).
pub fn entry_hash(e: &LogEntry) -> [u8; 32] {
    if !e.purged_hash.is_empty() {
        let mut h = [0u8; 32];
        let n = e.purged_hash.len().min(32);
        h[..n].copy_from_slice(&e.purged_hash[..n]);
        return h;
    }
    let mut d = Sha256::new();
    d.update(ENTRY_CONTEXT);
    d.update((e.salt.len() as u32).to_be_bytes());
    d.update(&e.salt);
    d.update((e.kind as u32).to_be_bytes());
    d.update(e.epoch.to_be_bytes());
    d.update(&e.token);
    d.finalize().into()
}

/// The header's commitment to every entry, in order.
pub fn entries_root(entries: &[LogEntry]) -> [u8; 32] {
    let mut d = Sha256::new();
    d.update(ROOT_CONTEXT);
    for e in entries {
        d.update(entry_hash(e));
    }
    d.finalize().into()
}

/// A new entry with a fresh salt.
pub fn entry(token: &Token, kind: i32, epoch: u32) -> LogEntry {
    let mut salt = [0u8; SALT_LEN];
    rand::thread_rng().fill_bytes(&mut salt);
    LogEntry {
        token: bytes::Bytes::copy_from_slice(&token.0),
        kind,
        epoch,
        salt: bytes::Bytes::copy_from_slice(&salt),
        purged_hash: bytes::Bytes::new(),
    }
}

/// The entry with its token and metadata removed, its hash kept.
pub fn purged(e: &LogEntry) -> LogEntry {
    LogEntry {
        purged_hash: bytes::Bytes::copy_from_slice(&entry_hash(e)),
        ..Default::default()
    }
}

/// Signs a header over `entries` (filling `count` and `entries_root`).
pub fn sign(mut header: BatchHeader, entries: Vec<LogEntry>, key: &SigningKeyFile) -> Batch {
    header.count = entries.len() as u32;
    header.entries_root = entries_root(&entries).to_vec();
    let header_bytes = header.encode_to_vec();
    let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + header_bytes.len());
    msg.extend_from_slice(SIGNING_CONTEXT);
    msg.extend_from_slice(&header_bytes);
    let signature = key.sign(&msg).to_bytes().to_vec();
    Batch {
        header,
        raw: LogBatch {
            header: header_bytes,
            signature,
            entries,
        },
    }
}

/// The same batch signed again by `key`: the header bytes, and so the
/// batch's hash and its place in the chain, are unchanged; only the
/// signature (which lies outside the header) is new. For an origin's own
/// node after a key rotation with a continuation point.
pub fn resign(batch: &Batch, key: &SigningKeyFile) -> Batch {
    let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + batch.raw.header.len());
    msg.extend_from_slice(SIGNING_CONTEXT);
    msg.extend_from_slice(&batch.raw.header);
    let mut b = batch.clone();
    b.raw.signature = key.sign(&msg).to_bytes().to_vec();
    b
}

/// Signs `entries` under copies of `header` in as many batches as it takes
/// for each to encode in at most `max_bytes` (at least one entry each),
/// chained from `header`'s `first_seq` and `prev_hash`, in order.
pub fn sign_bounded(
    header: BatchHeader,
    entries: Vec<LogEntry>,
    max_bytes: usize,
    key: &SigningKeyFile,
) -> Vec<Batch> {
    // The header at its largest: any numbers, 32-byte hashes.
    let mut widest = header.clone();
    widest.first_seq = u64::MAX;
    widest.prev_hash = vec![0; 32];
    widest.count = u32::MAX;
    widest.entries_root = vec![0; 32];
    let framed = |n: usize| 1 + prost::length_delimiter_len(n) + n;
    let fixed = framed(widest.encoded_len()) + framed(ed25519_dalek::SIGNATURE_LENGTH);
    let mut out: Vec<Batch> = Vec::new();
    let mut next = header;
    let mut part: Vec<LogEntry> = Vec::new();
    let mut size = fixed;
    let seal = |part: Vec<LogEntry>, next: &mut BatchHeader, out: &mut Vec<Batch>| {
        let b = sign(next.clone(), part, key);
        debug_assert!(b.raw.encoded_len() <= max_bytes || b.raw.entries.len() == 1);
        next.first_seq = b.last_seq().saturating_add(1);
        next.prev_hash = b.hash().to_vec();
        out.push(b);
    };
    for e in entries {
        let n = framed(e.encoded_len());
        if !part.is_empty() && size + n > max_bytes {
            seal(std::mem::take(&mut part), &mut next, &mut out);
            size = fixed;
        }
        size += n;
        part.push(e);
    }
    if !part.is_empty() || out.is_empty() {
        seal(part, &mut next, &mut out);
    }
    out
}

pub(crate) fn signature_valid(batch: &Batch, public_key: &[u8]) -> bool {
    let Ok(pk) = <[u8; 32]>::try_from(public_key) else {
        return false;
    };
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&pk) else {
        return false;
    };
    let Ok(sig) = ed25519_dalek::Signature::from_slice(&batch.raw.signature) else {
        return false;
    };
    let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + batch.raw.header.len());
    msg.extend_from_slice(SIGNING_CONTEXT);
    msg.extend_from_slice(&batch.raw.header);
    vk.verify_strict(&msg, &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(entries: Vec<LogEntry>) -> Batch {
        let header = BatchHeader {
            origin: "liaison".into(),
            first_seq: 1,
            prev_hash: vec![0; 32],
            created_unix: 1_767_225_600,
            op: LogOp::Add as i32,
            case_ref: "CASE-1".into(),
            tier: 1,
            ..Default::default()
        };
        sign(header, entries, &SigningKeyFile::generate())
    }

    fn field_of(b: &Batch) -> String {
        match b.check_fields() {
            Err(BatchError::Field { field, .. }) => field,
            other => panic!("not refused for a field: {other:?}"),
        }
    }

    fn with_header(b: &Batch, f: impl FnOnce(&mut BatchHeader)) -> Batch {
        let mut h = b.header.clone();
        f(&mut h);
        sign(h, b.raw.entries.clone(), &SigningKeyFile::generate())
    }

    #[test]
    fn what_honest_nodes_write_passes() {
        let b = add(vec![
            entry(&Token([1; 32]), 6, 1),
            entry(&Token([2; 32]), 8, 2),
        ]);
        b.check_fields().unwrap();
        let mut purged_one = b.clone();
        purged_one.raw.entries[0] = purged(&purged_one.raw.entries[0]);
        purged_one.check_fields().unwrap();
        let retract = with_header(&b, |h| {
            h.op = LogOp::Retract as i32;
            h.case_ref.clear();
            h.reason = "false positive".into();
        });
        retract.check_fields().unwrap();
        let extend = with_header(&b, |h| {
            h.op = LogOp::Extend as i32;
            h.case_ref.clear();
            h.valid_until_unix = 1_800_000_000;
        });
        extend.check_fields().unwrap();
    }

    #[test]
    fn each_field_outside_the_bounds_is_named() {
        let b = add(vec![entry(&Token([1; 32]), 6, 1)]);
        assert_eq!(field_of(&with_header(&b, |h| h.op = 0)), "op");
        assert_eq!(field_of(&with_header(&b, |h| h.op = 9)), "op");
        assert_eq!(field_of(&with_header(&b, |h| h.tier = 0)), "tier");
        assert_eq!(field_of(&with_header(&b, |h| h.tier = 4)), "tier");
        assert_eq!(
            field_of(&with_header(&b, |h| h.case_ref.clear())),
            "case_ref"
        );
        assert_eq!(
            field_of(&with_header(&b, |h| h.case_ref = "x".repeat(129))),
            "case_ref"
        );
        assert_eq!(
            field_of(&with_header(&b, |h| h.case_ref = "tab\there".into())),
            "case_ref"
        );
        assert_eq!(
            field_of(&with_header(&b, |h| h.reason = "why".into())),
            "reason"
        );
        assert_eq!(
            field_of(&with_header(&b, |h| h.created_unix = -1)),
            "created_unix"
        );
        let retract_without_reason = with_header(&b, |h| {
            h.op = LogOp::Retract as i32;
            h.case_ref.clear();
        });
        assert_eq!(field_of(&retract_without_reason), "reason");
        let extend_to_nothing = with_header(&b, |h| {
            h.op = LogOp::Extend as i32;
            h.case_ref.clear();
        });
        assert_eq!(field_of(&extend_to_nothing), "valid_until_unix");

        let mut e = entry(&Token([1; 32]), 6, 1);
        e.kind = 99;
        assert_eq!(field_of(&add(vec![e])), "entries[0].kind");
        let mut e = entry(&Token([1; 32]), 6, 1);
        e.token = e.token.slice(..31);
        let short = add(vec![entry(&Token([2; 32]), 6, 1), e]);
        assert_eq!(field_of(&short), "entries[1].token");
        let mut e = entry(&Token([1; 32]), 6, 1);
        e.salt = bytes::Bytes::new();
        assert_eq!(field_of(&add(vec![e])), "entries[0].salt");
        let mut p = purged(&entry(&Token([1; 32]), 6, 1));
        p.kind = 6;
        assert_eq!(field_of(&add(vec![p])), "entries[0].purged_hash");
        let mut p = purged(&entry(&Token([1; 32]), 6, 1));
        p.purged_hash = p.purged_hash.slice(..31);
        assert_eq!(field_of(&add(vec![p])), "entries[0].purged_hash");
        // The message names the field and the rule, not the token.
        let mut e = entry(&Token([0xab; 32]), 6, 1);
        e.token = e.token.slice(..31);
        let msg = add(vec![e]).check_fields().unwrap_err().to_string();
        assert!(msg.contains("entries[0].token: must be 32 bytes"), "{msg}");
        assert!(!msg.to_lowercase().contains("abab"), "{msg}");
    }

    #[test]
    fn entries_over_the_byte_bound_are_signed_in_chained_batches_within_it() {
        let key = SigningKeyFile::generate();
        let header = BatchHeader {
            origin: "liaison".into(),
            first_seq: 7,
            prev_hash: vec![9; 32],
            created_unix: 1_767_225_600,
            op: LogOp::Retract as i32,
            reason: "r".repeat(128),
            ..Default::default()
        };
        // A case of 80,000 indicators, at the default bound.
        let entries: Vec<LogEntry> = (0..80_000u32)
            .map(|i| {
                let mut t = [0x11; 32];
                t[..4].copy_from_slice(&i.to_be_bytes());
                entry(&Token(t), 6, u32::MAX)
            })
            .collect();
        let batches = sign_bounded(header.clone(), entries.clone(), DEFAULT_WRITTEN_BYTES, &key);
        assert_eq!(batches.len(), 3);
        let mut next = (7, vec![9; 32]);
        let mut all = Vec::new();
        for b in &batches {
            assert!(b.raw.encoded_len() <= DEFAULT_WRITTEN_BYTES);
            assert_eq!((b.first_seq(), b.header.prev_hash.clone()), next);
            b.check_entries().unwrap();
            b.check_fields().unwrap();
            assert!(signature_valid(b, &key.verifying_key().to_bytes()));
            assert_eq!(b.header.reason, header.reason);
            next = (b.last_seq() + 1, b.hash().to_vec());
            all.extend(b.raw.entries.iter().cloned());
        }
        assert_eq!(all, entries, "every entry, in order");
        // A bound as small as allowed still makes progress; what fits is one batch.
        let small = sign_bounded(
            header.clone(),
            entries[..200].to_vec(),
            MIN_WRITTEN_BYTES,
            &key,
        );
        assert!(
            small.len() > 1
                && small
                    .iter()
                    .all(|b| b.raw.encoded_len() <= MIN_WRITTEN_BYTES)
        );
        assert_eq!(
            sign_bounded(header, entries[..2].to_vec(), MIN_WRITTEN_BYTES, &key).len(),
            1
        );
    }

    #[test]
    fn sequence_numbers_that_overflow_are_refused_not_wrapped() {
        let b = add(vec![
            entry(&Token([1; 32]), 6, 1),
            entry(&Token([2; 32]), 6, 1),
        ]);
        let top = with_header(&b, |h| h.first_seq = u64::MAX);
        assert_eq!(top.checked_last_seq(), None);
        assert_eq!(top.last_seq(), u64::MAX);
        assert_eq!(field_of(&top), "count");
        let last = with_header(&b, |h| h.first_seq = u64::MAX - 1);
        assert_eq!(last.checked_last_seq(), Some(u64::MAX));
        last.check_fields().unwrap();
        let mut h = b.header.clone();
        h.first_seq = u64::MAX;
        h.count = u32::MAX;
        let raw = LogBatch {
            header: h.encode_to_vec(),
            ..Default::default()
        };
        let huge = Batch::decode(raw).unwrap();
        assert_eq!(huge.last_seq(), u64::MAX);
        assert_eq!(field_of(&huge), "count");
    }
}

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
    token::Token,
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

    /// Sequence number of the last entry.
    pub fn last_seq(&self) -> u64 {
        self.header.first_seq + u64::from(self.header.count).max(1) - 1
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
    let mut salt = [0u8; 16];
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

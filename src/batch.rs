//! Origin-log batches: their format, hashes, signatures and verification.
//!
//! A batch is a signed header plus entries. The header commits to every
//! entry through `entries_root`, a hash over each entry's hash, so that an
//! entry's token can later be purged (replaced by its hash) while the batch
//! still verifies. Entry hashes are salted: a hash kept after a purge cannot
//! be tested against a candidate token by anyone holding the token key. The
//! chain runs over header hashes: each header names the SHA-256 of the
//! previous header of the same origin.
//!
//! Verification ([`verify`]) needs the origin's entry in the trust list in
//! force: a signing key of that member (a retired one only up to the last
//! sequence number the list allows it), the `contribute` capability, and,
//! for a suspended origin, no entry past the sequence number its suspension
//! records. Pure: no I/O.

use prost::Message;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{
    proto::{
        BatchHeader, ForkEvidence, LogBatch, LogEntry, LogOp, Member, MemberStatus, PeerCapability,
    },
    token::Token,
    trust::{keys::SigningKeyFile, list::TrustList},
};

/// Domain separation for batch signatures.
pub const SIGNING_CONTEXT: &[u8] = b"cix-batch-v1\0";
const ENTRY_CONTEXT: &[u8] = b"cix-entry-v1\0";
const ROOT_CONTEXT: &[u8] = b"cix-entries-v1\0";

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch does not decode: {0}")]
    Decode(String),
    #[error("batch of {origin}: header says {expected} entries, batch has {got}")]
    Count {
        origin: String,
        expected: u32,
        got: usize,
    },
    #[error("batch of {origin} at {first_seq}: entries do not match the signed header (tampered or corrupt)")]
    Root { origin: String, first_seq: u64 },
    #[error("batch of {origin}: the origin is not on the trust list")]
    UnknownOrigin { origin: String },
    #[error("batch of {origin}: the origin lacks the `contribute` capability")]
    NotContributor { origin: String },
    #[error("batch of {origin} at {first_seq}: no signing key of the origin allowed at this sequence signed it")]
    Signature { origin: String, first_seq: u64 },
    #[error("batch of {origin} was made after the origin's sharing basis expired")]
    PastSharingBasis { origin: String },
    #[error("batch of {origin} ends at {last_seq}, past {limit}, the last sequence number the coalition accepts from it")]
    PastSuspension {
        origin: String,
        last_seq: u64,
        limit: u64,
    },
    #[error("entry {index} of a batch of {origin}: {what}")]
    Entry {
        origin: String,
        index: usize,
        what: &'static str,
    },
}

/// A decoded batch: the header as signed, and the raw batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub header: BatchHeader,
    pub raw: LogBatch,
}

impl Batch {
    pub fn decode(raw: LogBatch) -> Result<Batch, BatchError> {
        let header = BatchHeader::decode(raw.header.as_slice())
            .map_err(|e| BatchError::Decode(e.to_string()))?;
        Ok(Batch { header, raw })
    }

    pub fn decode_bytes(bytes: &[u8]) -> Result<Batch, BatchError> {
        // One copy of the whole batch; its entries' fields are slices of it.
        Batch::decode_owned(bytes::Bytes::copy_from_slice(bytes))
    }

    /// Decodes a batch whose entries' fields stay slices of `bytes`.
    pub fn decode_owned(bytes: bytes::Bytes) -> Result<Batch, BatchError> {
        Batch::decode(LogBatch::decode(bytes).map_err(|e| BatchError::Decode(e.to_string()))?)
    }

    pub fn origin(&self) -> &str {
        &self.header.origin
    }

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

fn signature_valid(batch: &Batch, public_key: &[u8]) -> bool {
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

/// Checks a batch against the trust list in force: entries match the
/// signed header, the origin may contribute, a key of the origin allowed
/// at these sequence numbers signed it, and a suspended origin's batch ends
/// no later than its suspension allows, and one made after the origin's
/// sharing basis expired is refused. (Chain and numbering are checked
/// against the store on append.)
pub fn verify(batch: &Batch, list: &TrustList) -> Result<(), BatchError> {
    let origin = batch.origin().to_string();
    batch.check_entries()?;
    let member: &Member = list
        .member(&origin)
        .ok_or_else(|| BatchError::UnknownOrigin {
            origin: origin.clone(),
        })?;
    if !TrustList::has_capability(member, PeerCapability::Contribute) {
        return Err(BatchError::NotContributor { origin });
    }
    let last = batch.last_seq();
    if member.status == MemberStatus::Suspended as i32 && last > member.suspended_after_seq {
        return Err(BatchError::PastSuspension {
            origin,
            last_seq: last,
            limit: member.suspended_after_seq,
        });
    }
    let basis = member.sharing_basis_expires_at;
    if basis != 0 && batch.header.created_unix >= basis {
        return Err(BatchError::PastSharingBasis { origin });
    }
    let signed = member
        .signing_keys
        .iter()
        .filter(|k| !k.retired || last <= k.last_seq)
        .any(|k| signature_valid(batch, &k.public_key));
    if !signed {
        return Err(BatchError::Signature {
            origin,
            first_seq: batch.first_seq(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{self, LogSigningKey, MemberKind};

    fn list_with(member: proto::Member) -> TrustList {
        let op = SigningKeyFile::generate();
        let now = crate::keyring::now_unix();
        let body = crate::trust::list::new_list(
            "c",
            &[op.verifying_key()],
            1,
            vec![],
            vec![member],
            now,
            now + 1000,
        );
        let mut signed = crate::trust::list::unsigned(&body);
        crate::trust::list::sign(&mut signed, &op);
        crate::trust::list::verify_root(&signed, None).unwrap()
    }

    fn origin(key: &SigningKeyFile) -> proto::Member {
        let mut m =
            crate::trust::list::member("liaison", "L", MemberKind::Liaison, &"ab".repeat(32), "");
        m.signing_keys.push(LogSigningKey {
            public_key: key.verifying_key().to_bytes().to_vec(),
            retired: false,
            last_seq: 0,
        });
        m
    }

    fn batch(key: &SigningKeyFile, first: u64, n: usize) -> Batch {
        let header = BatchHeader {
            origin: "liaison".into(),
            first_seq: first,
            prev_hash: vec![0; 32],
            op: LogOp::Add as i32,
            tier: 1,
            ..Default::default()
        };
        let entries = (0..n).map(|i| entry(&Token([i as u8; 32]), 6, 1)).collect();
        sign(header, entries, key)
    }

    #[test]
    fn a_signed_batch_verifies_and_survives_purging() {
        let key = SigningKeyFile::generate();
        let list = list_with(origin(&key));
        let mut b = batch(&key, 1, 5);
        verify(&b, &list).unwrap();
        let hash = b.hash();
        b.raw.entries[2] = purged(&b.raw.entries[2]);
        assert!(b.raw.entries[2].token.is_empty());
        verify(&b, &list).unwrap();
        assert_eq!(b.hash(), hash, "purging does not change the chain");
        // Round trip through bytes.
        let again = Batch::decode_bytes(&b.raw.encode_to_vec()).unwrap();
        verify(&again, &list).unwrap();
    }

    #[test]
    fn tampering_is_detected() {
        let key = SigningKeyFile::generate();
        let list = list_with(origin(&key));
        let good = batch(&key, 1, 4);

        let mut changed = good.clone();
        let mut flipped = changed.raw.entries[1].token.to_vec();
        flipped[0] ^= 1;
        changed.raw.entries[1].token = flipped.into();
        assert!(matches!(
            verify(&changed, &list),
            Err(BatchError::Root { .. })
        ));

        let mut dropped = good.clone();
        dropped.raw.entries.remove(2);
        assert!(matches!(
            verify(&dropped, &list),
            Err(BatchError::Count { .. })
        ));

        let mut reordered = good.clone();
        reordered.raw.entries.swap(0, 3);
        assert!(matches!(
            verify(&reordered, &list),
            Err(BatchError::Root { .. })
        ));

        let other = SigningKeyFile::generate();
        let resigned = batch(&other, 1, 4);
        assert!(matches!(
            verify(&resigned, &list),
            Err(BatchError::Signature { .. })
        ));

        let mut header_edit = good.clone();
        let mut h = header_edit.header.clone();
        h.case_ref = "forged".into();
        header_edit.raw.header = h.encode_to_vec();
        let header_edit = Batch::decode(header_edit.raw).unwrap();
        assert!(matches!(
            verify(&header_edit, &list),
            Err(BatchError::Signature { .. })
        ));
    }

    #[test]
    fn retired_keys_and_suspensions_bound_the_sequence() {
        let key = SigningKeyFile::generate();
        let mut m = origin(&key);
        m.signing_keys[0].retired = true;
        m.signing_keys[0].last_seq = 10;
        let list = list_with(m.clone());
        verify(&batch(&key, 6, 5), &list).unwrap();
        assert!(matches!(
            verify(&batch(&key, 8, 5), &list),
            Err(BatchError::Signature { .. })
        ));

        let mut m = origin(&key);
        m.status = MemberStatus::Suspended as i32;
        m.suspended_after_seq = 10;
        let list = list_with(m.clone());
        verify(&batch(&key, 1, 10), &list).unwrap();
        assert!(matches!(
            verify(&batch(&key, 11, 1), &list),
            Err(BatchError::PastSuspension { limit: 10, .. })
        ));

        m.status = MemberStatus::Active as i32;
        m.sharing_basis_expires_at = 1_000;
        let list = list_with(m.clone());
        let mut early = batch(&key, 1, 1);
        early.header.created_unix = 999;
        let early = sign(early.header, early.raw.entries, &key);
        verify(&early, &list).unwrap();
        let mut late = batch(&key, 2, 1);
        late.header.created_unix = 1_000;
        let late = sign(late.header, late.raw.entries, &key);
        assert!(matches!(
            verify(&late, &list),
            Err(BatchError::PastSharingBasis { .. })
        ));

        m.sharing_basis_expires_at = 0;
        m.capabilities = vec![PeerCapability::Replicate as i32];
        let list = list_with(m);
        assert!(matches!(
            verify(&batch(&key, 1, 1), &list),
            Err(BatchError::NotContributor { .. })
        ));
    }
}

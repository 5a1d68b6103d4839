//! Which batches the trust list in force admits: the origin is a listed
//! member that may contribute, one of its log keys allowed at those
//! sequence numbers signed the batch (a key signs from its `first_seq` on
//! and, once retired, up to its `last_seq`), and it ends no later than a
//! suspension allows and was made before the origin's sharing basis
//! expired. The batch format and its signatures are [`crate::batch`]; the
//! chain and numbering are checked against the store on append.

use crate::{
    batch::{signature_valid, Batch, BatchError},
    proto::{Member, MemberStatus, PeerCapability},
    trust::list::TrustList,
};

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
        .filter(|k| batch.first_seq() >= k.first_seq && (!k.retired || last <= k.last_seq))
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
    use crate::{
        batch::{entry, purged, sign},
        keys::signing::SigningKeyFile,
        proto::{BatchHeader, LogOp},
        token::Token,
    };
    use prost::Message;

    fn list_with(member: proto::Member) -> TrustList {
        let op = SigningKeyFile::generate();
        let now = 1_767_225_600;
        let body = crate::trust::edit::new_list(
            "c",
            &[op.verifying_key()],
            1,
            vec![],
            vec![member],
            now,
            now + 1000,
        );
        let mut signed = crate::trust::edit::unsigned(&body);
        crate::trust::list::sign(&mut signed, &op);
        crate::trust::list::verify_root(&signed, None).unwrap()
    }

    fn origin(key: &SigningKeyFile) -> proto::Member {
        let mut m =
            crate::trust::edit::member("liaison", "L", MemberKind::Liaison, &"ab".repeat(32), "");
        m.signing_keys.push(LogSigningKey {
            public_key: key.verifying_key().to_bytes().to_vec(),
            retired: false,
            last_seq: 0,
            first_seq: 0,
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

    #[test]
    fn a_rotation_with_a_continuation_point_splits_the_log_between_old_and_new_keys() {
        let old = SigningKeyFile::generate();
        let new = SigningKeyFile::generate();
        let mut m = origin(&old);
        crate::trust::edit::rotate_signing_key(&mut m, &new.verifying_key(), 6).unwrap();
        let list = list_with(m);
        verify(&batch(&old, 1, 5), &list).unwrap();
        verify(&batch(&new, 6, 5), &list).unwrap();
        // The old key no longer signs from 6 on, nor the new one before it.
        assert!(matches!(
            verify(&batch(&old, 6, 1), &list),
            Err(BatchError::Signature { .. })
        ));
        assert!(matches!(
            verify(&batch(&new, 5, 1), &list),
            Err(BatchError::Signature { .. })
        ));
    }
}

//! What operators' tools change in a trust list: a new body, members,
//! their keys and status, key epochs, operator keys, the next version.
//! These helpers edit a body and never sign (signing and the acceptance
//! rules are in [`super::list`]). Pure: no I/O, no clock (callers pass
//! `now`).

use ed25519_dalek::VerifyingKey;
use prost::Message;

use crate::proto::{
    self, KeyEpoch, Member, MemberKind, MemberStatus, OperatorKey, PeerCapability, SignedTrustList,
};

/// Why an edit could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    /// No member has this id.
    #[error("no member {0:?} on the list")]
    NoMember(String),
    /// A member with this id is already listed.
    #[error("member {0:?} is already on the list")]
    DuplicateMember(String),
    /// No key epoch has this id.
    #[error("no epoch {0} on the list")]
    NoEpoch(u32),
    /// A key epoch with this id is already listed.
    #[error("epoch {0} is already on the list")]
    DuplicateEpoch(u32),
    /// No operator key has this public key (hex).
    #[error("operator key {0} is not on the list")]
    NoOperatorKey(String),
    /// An operator key with this public key (hex) is already listed.
    #[error("operator key {0} is already on the list")]
    DuplicateOperatorKey(String),
    /// The member has no log signing key with this public key.
    #[error("member {member:?} has no signing key {key}")]
    NoSigningKey {
        /// The member's id.
        member: String,
        /// The public key, hex.
        key: String,
    },
    /// The member already has a log signing key with this public key.
    #[error("member {member:?} already has signing key {key}")]
    DuplicateSigningKey {
        /// The member's id.
        member: String,
        /// The public key, hex.
        key: String,
    },
    /// A key rotation's continuation point must be a sequence number (1 or more).
    #[error("the continuation point must be 1 or more")]
    ContinuationPoint,
}

/// A version-1 body. Operator keys are labelled `op-1`, `op-2`, ... in order.
pub fn new_list(
    coalition_id: &str,
    operator_keys: &[VerifyingKey],
    threshold: u32,
    epochs: Vec<KeyEpoch>,
    members: Vec<Member>,
    issued_at: i64,
    expires_at: i64,
) -> proto::TrustList {
    proto::TrustList {
        coalition_id: coalition_id.to_string(),
        version: 1,
        issued_at,
        expires_at,
        operator_keys: operator_keys
            .iter()
            .enumerate()
            .map(|(i, k)| OperatorKey {
                id: format!("op-{}", i + 1),
                public_key: k.as_bytes().to_vec(),
            })
            .collect(),
        threshold,
        epochs,
        members,
        query_policy: None,
    }
}

/// An active member with every capability and one certificate key;
/// `endpoint` may be empty.
pub fn member(
    id: &str,
    name: &str,
    kind: MemberKind,
    tls_spki_sha256: &str,
    endpoint: &str,
) -> Member {
    Member {
        id: id.to_string(),
        name: name.to_string(),
        kind: kind as i32,
        capabilities: vec![
            PeerCapability::Contribute as i32,
            PeerCapability::Replicate as i32,
            PeerCapability::Query as i32,
            PeerCapability::Feedback as i32,
        ],
        tls_spki_sha256: vec![tls_spki_sha256.to_string()],
        signing_keys: Vec::new(),
        endpoint: endpoint.to_string(),
        status: MemberStatus::Active as i32,
        suspended_after_seq: 0,
        sharing_basis_expires_at: 0,
        contact: String::new(),
    }
}

/// After an edit: version + 1, issued now, and a new expiry if given.
pub fn next_version(b: &mut proto::TrustList, now: i64, expires_at: Option<i64>) {
    b.version += 1;
    b.issued_at = now;
    if let Some(e) = expires_at {
        b.expires_at = e;
    }
}

/// An unsigned `SignedTrustList` of `body`.
pub fn unsigned(body: &proto::TrustList) -> SignedTrustList {
    SignedTrustList {
        body: body.encode_to_vec(),
        signatures: Vec::new(),
    }
}

/// Adds a member, refusing an id already listed.
pub fn add_member(b: &mut proto::TrustList, m: Member) -> Result<(), EditError> {
    if b.members.iter().any(|x| x.id == m.id) {
        return Err(EditError::DuplicateMember(m.id));
    }
    b.members.push(m);
    Ok(())
}

/// The member with this id, to edit.
pub fn member_mut<'a>(b: &'a mut proto::TrustList, id: &str) -> Result<&'a mut Member, EditError> {
    b.members
        .iter_mut()
        .find(|m| m.id == id)
        .ok_or_else(|| EditError::NoMember(id.to_string()))
}

/// Removes the member with this id and returns it.
pub fn remove_member(b: &mut proto::TrustList, id: &str) -> Result<Member, EditError> {
    let i = b
        .members
        .iter()
        .position(|m| m.id == id)
        .ok_or_else(|| EditError::NoMember(id.to_string()))?;
    Ok(b.members.remove(i))
}

/// Suspends a member; its origin log is accepted up to `last_seq`.
pub fn suspend(m: &mut Member, last_seq: u64) {
    m.status = MemberStatus::Suspended as i32;
    m.suspended_after_seq = last_seq;
}

/// Makes a suspended member active again, clearing its suspension's
/// sequence number.
pub fn reinstate(m: &mut Member) {
    m.status = MemberStatus::Active as i32;
    m.suspended_after_seq = 0;
}

/// Adds a log signing key to a member, not retired, refusing one it
/// already has.
pub fn add_signing_key(m: &mut Member, key: &VerifyingKey) -> Result<(), EditError> {
    if m.signing_keys
        .iter()
        .any(|k| k.public_key[..] == key.as_bytes()[..])
    {
        return Err(EditError::DuplicateSigningKey {
            member: m.id.clone(),
            key: hex::encode(key.as_bytes()),
        });
    }
    m.signing_keys.push(proto::LogSigningKey {
        public_key: key.as_bytes().to_vec(),
        retired: false,
        last_seq: 0,
        first_seq: 0,
    });
    Ok(())
}

/// Retires a member's log signing key: it may sign entries up to and
/// including `last_seq` only.
pub fn retire_signing_key(
    m: &mut Member,
    key: &VerifyingKey,
    last_seq: u64,
) -> Result<(), EditError> {
    let id = m.id.clone();
    let k = m
        .signing_keys
        .iter_mut()
        .find(|k| k.public_key[..] == key.as_bytes()[..])
        .ok_or_else(|| EditError::NoSigningKey {
            member: id,
            key: hex::encode(key.as_bytes()),
        })?;
    k.retired = true;
    k.last_seq = last_seq;
    Ok(())
}

/// Rotates a member's log signing key with a continuation point: every
/// key it has is retired at `from_seq - 1` at the latest (a key already
/// retired keeps a lower bound), and `key` is added, valid for batches
/// from `from_seq` on. What the old keys signed from `from_seq` on no
/// longer verifies anywhere; the member's node, run with `key`, signs its
/// own stored batches from there on again (see the README, "Forks").
pub fn rotate_signing_key(
    m: &mut Member,
    key: &VerifyingKey,
    from_seq: u64,
) -> Result<(), EditError> {
    if from_seq == 0 {
        return Err(EditError::ContinuationPoint);
    }
    if m.signing_keys
        .iter()
        .any(|k| k.public_key[..] == key.as_bytes()[..])
    {
        return Err(EditError::DuplicateSigningKey {
            member: m.id.clone(),
            key: hex::encode(key.as_bytes()),
        });
    }
    for k in &mut m.signing_keys {
        let last = from_seq - 1;
        k.last_seq = if k.retired {
            k.last_seq.min(last)
        } else {
            last
        };
        k.retired = true;
        k.first_seq = k.first_seq.min(last.saturating_add(1));
    }
    m.signing_keys.push(proto::LogSigningKey {
        public_key: key.as_bytes().to_vec(),
        retired: false,
        last_seq: 0,
        first_seq: from_seq,
    });
    Ok(())
}

/// Adds a key epoch, refusing an id already listed.
pub fn add_epoch(b: &mut proto::TrustList, e: KeyEpoch) -> Result<(), EditError> {
    if b.epochs.iter().any(|x| x.id == e.id) {
        return Err(EditError::DuplicateEpoch(e.id));
    }
    b.epochs.push(e);
    Ok(())
}

/// Ends an epoch's validity at `at`.
pub fn retire_epoch(b: &mut proto::TrustList, id: u32, at: i64) -> Result<(), EditError> {
    let e = b
        .epochs
        .iter_mut()
        .find(|e| e.id == id)
        .ok_or(EditError::NoEpoch(id))?;
    e.valid_until = at;
    Ok(())
}

/// Adds an operator key labelled `id`, refusing a public key already
/// listed.
pub fn add_operator_key(
    b: &mut proto::TrustList,
    id: &str,
    key: &VerifyingKey,
) -> Result<(), EditError> {
    if b.operator_keys
        .iter()
        .any(|k| k.public_key[..] == key.as_bytes()[..])
    {
        return Err(EditError::DuplicateOperatorKey(hex::encode(key.as_bytes())));
    }
    b.operator_keys.push(OperatorKey {
        id: id.to_string(),
        public_key: key.as_bytes().to_vec(),
    });
    Ok(())
}

/// Removes the operator key with this public key and returns it.
pub fn remove_operator_key(
    b: &mut proto::TrustList,
    key: &VerifyingKey,
) -> Result<OperatorKey, EditError> {
    let i = b
        .operator_keys
        .iter()
        .position(|k| k.public_key[..] == key.as_bytes()[..])
        .ok_or_else(|| EditError::NoOperatorKey(hex::encode(key.as_bytes())))?;
    Ok(b.operator_keys.remove(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{keys::signing::SigningKeyFile, trust::list::check_body};

    const NOW: i64 = 1_700_000_000;
    const DAY: i64 = 86_400;

    fn key(n: u8) -> SigningKeyFile {
        SigningKeyFile::from_seed(&[n; 32])
    }

    fn bank(id: &str, spki: char) -> Member {
        member(
            id,
            &format!("{id} bank"),
            MemberKind::Bank,
            &spki.to_string().repeat(64),
            "node.example:7444",
        )
    }

    /// Version 1, operator keys 1..=3 (op-1..op-3), threshold 2, epoch 1,
    /// members bank-a and bank-b.
    fn body() -> proto::TrustList {
        let keys: Vec<_> = [1, 2, 3].iter().map(|&n| key(n).verifying_key()).collect();
        let epochs = vec![KeyEpoch {
            id: 1,
            valid_from: NOW - DAY,
            valid_until: NOW + 365 * DAY,
            key_sha256: "e".repeat(64),
        }];
        let members = vec![bank("bank-a", 'a'), bank("bank-b", 'b')];
        new_list("c1", &keys, 2, epochs, members, NOW - DAY, NOW + 30 * DAY)
    }

    #[test]
    fn new_list_and_member_make_a_valid_body_and_unsigned_has_no_signature() {
        let b = body();
        check_body(&b).unwrap();
        assert_eq!(b.version, 1);
        let ids: Vec<_> = b.operator_keys.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["op-1", "op-2", "op-3"]);
        let m = &b.members[0];
        assert_eq!(m.status, MemberStatus::Active as i32);
        assert_eq!(m.capabilities.len(), 4);
        let s = unsigned(&b);
        assert!(s.signatures.is_empty());
        assert_eq!(proto::TrustList::decode(&s.body[..]).unwrap(), b);
    }

    #[test]
    fn suspend_and_reinstate() {
        let mut b = body();
        let m = member_mut(&mut b, "bank-b").unwrap();
        suspend(m, 42);
        assert_eq!(
            (m.status, m.suspended_after_seq),
            (MemberStatus::Suspended as i32, 42)
        );
        reinstate(m);
        assert_eq!(
            (m.status, m.suspended_after_seq),
            (MemberStatus::Active as i32, 0)
        );
    }

    #[test]
    fn editing_helpers() {
        let mut b = body();
        assert_eq!(
            add_member(&mut b, bank("bank-a", 'f')),
            Err(EditError::DuplicateMember("bank-a".into()))
        );
        assert_eq!(remove_member(&mut b, "bank-a").unwrap().id, "bank-a");
        assert_eq!(
            remove_member(&mut b, "bank-a"),
            Err(EditError::NoMember("bank-a".into()))
        );
        let k = key(9).verifying_key();
        let m = member_mut(&mut b, "bank-b").unwrap();
        add_signing_key(m, &k).unwrap();
        assert!(add_signing_key(m, &k).is_err());
        retire_signing_key(m, &k, 7).unwrap();
        assert!(m.signing_keys[0].retired && m.signing_keys[0].last_seq == 7);
        assert!(retire_signing_key(m, &key(8).verifying_key(), 1).is_err());
        retire_epoch(&mut b, 1, NOW).unwrap();
        assert_eq!(b.epochs[0].valid_until, NOW);
        assert_eq!(retire_epoch(&mut b, 2, NOW), Err(EditError::NoEpoch(2)));
        let e = b.epochs[0].clone();
        assert!(add_epoch(&mut b, e).is_err());
        add_operator_key(&mut b, "op-4", &key(4).verifying_key()).unwrap();
        assert!(add_operator_key(&mut b, "x", &key(4).verifying_key()).is_err());
        assert_eq!(
            remove_operator_key(&mut b, &key(1).verifying_key())
                .unwrap()
                .id,
            "op-1"
        );
        assert!(remove_operator_key(&mut b, &key(1).verifying_key()).is_err());
        next_version(&mut b, NOW + 5, None);
        assert_eq!((b.version, b.issued_at), (2, NOW + 5));
        check_body(&b).unwrap();
    }
}

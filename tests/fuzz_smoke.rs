//! A fuzz smoke run over every parser of untrusted input, on the stable
//! toolchain: identifier normalization (any string from a member's
//! systems), trust lists and signed batches (any bytes from a peer). Each
//! must answer with a value or an error, never panic, and never accept a
//! mutated signed document.

use cix::{
    batch::{self, Batch},
    ident::{self, Kind},
    keys::signing::SigningKeyFile,
    proto,
    token::Token,
    trust::{edit, list},
};
use proptest::prelude::*;
use prost::Message;

fn signed_list(op: &SigningKeyFile) -> proto::SignedTrustList {
    let now = cix::time::Clock::system().now();
    let m = edit::member(
        "bank-a",
        "Bank A",
        proto::MemberKind::Bank,
        &"ab".repeat(32),
        "127.0.0.1:1",
    );
    let body = edit::new_list(
        "c",
        &[op.verifying_key()],
        1,
        vec![],
        vec![m],
        now,
        now + 1000,
    );
    let mut s = edit::unsigned(&body);
    list::sign(&mut s, op);
    s
}

fn signed_batch(key: &SigningKeyFile) -> Batch {
    let header = proto::BatchHeader {
        origin: "bank-a".into(),
        first_seq: 1,
        prev_hash: vec![0; 32],
        op: proto::LogOp::Add as i32,
        tier: 1,
        ..Default::default()
    };
    batch::sign(
        header,
        (0..4)
            .map(|i| batch::entry(&Token([i; 32]), 6, 1))
            .collect(),
        key,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn normalization_answers_any_string(kind in 0usize..8, raw in ".{0,300}") {
        let kind = Kind::ALL[kind];
        if let Ok(c) = ident::normalize(kind, &raw) {
            prop_assert!(c.as_str().bytes().all(|b| (0x21..=0x7e).contains(&b) || b == b':'));
            prop_assert!(!c.as_str().is_empty());
        }
    }

    #[test]
    fn normalization_answers_any_near_valid_value(kind in 0usize..8, seed in any::<u64>(), pos in any::<usize>(), byte in any::<u8>()) {
        let kind = Kind::ALL[kind];
        let mut v = cix::testbed::synth::Synth::new(seed).of(kind).into_bytes();
        let i = pos % v.len();
        v[i] = byte;
        let raw = String::from_utf8_lossy(&v);
        let _ = ident::normalize(kind, &raw);
    }

    #[test]
    fn trust_list_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(s) = list::decode_signed(&bytes) {
            let _ = list::verify_root(&s, None);
        }
    }

    #[test]
    fn a_mutated_trust_list_is_never_accepted(pos in any::<usize>(), flip in 1u8..=255) {
        let op = SigningKeyFile::from_seed(&[7; 32]);
        let good = signed_list(&op);
        let mut bytes = good.encode_to_vec();
        let i = pos % bytes.len();
        bytes[i] ^= flip;
        if let Ok(s) = list::decode_signed(&bytes) {
            if s != good {
                if let Ok(l) = list::verify_root(&s, None) {
                    // Only a change outside the signed body (e.g. a signature
                    // list re-encoded) may still verify: the body is intact.
                    prop_assert_eq!(l.signed().body.clone(), good.body.clone());
                }
            }
        }
    }

    #[test]
    fn batch_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(b) = Batch::decode_bytes(&bytes) {
            let _ = b.check_entries();
            let _ = b.last_seq();
        }
    }

    #[test]
    fn a_mutated_batch_never_verifies_with_other_content(pos in any::<usize>(), flip in 1u8..=255) {
        let key = SigningKeyFile::from_seed(&[9; 32]);
        let good = signed_batch(&key);
        let mut member = edit::member("bank-a", "Bank A", proto::MemberKind::Bank, &"ab".repeat(32), "");
        member.signing_keys.push(proto::LogSigningKey {
            public_key: key.verifying_key().to_bytes().to_vec(),
            retired: false,
            last_seq: 0,
            first_seq: 0,
        });
        let op = SigningKeyFile::from_seed(&[7; 32]);
        let now = cix::time::Clock::system().now();
        let body = edit::new_list("c", &[op.verifying_key()], 1, vec![], vec![member], now, now + 1000);
        let mut s = edit::unsigned(&body);
        list::sign(&mut s, &op);
        let trust = list::verify_root(&s, None).unwrap();

        let mut bytes = good.raw.encode_to_vec();
        let i = pos % bytes.len();
        bytes[i] ^= flip;
        if let Ok(b) = Batch::decode_bytes(&bytes) {
            if cix::trust::batches::verify(&b, &trust).is_ok() {
                // Verifies only if header and entries say exactly what was signed.
                prop_assert_eq!(b.raw.header.clone(), good.raw.header.clone());
                prop_assert_eq!(batch::entries_root(&b.raw.entries), batch::entries_root(&good.raw.entries));
                let tokens = |x: &Batch| x.raw.entries.iter().map(|e| e.token.clone()).collect::<Vec<_>>();
                prop_assert_eq!(tokens(&b), tokens(&good));
            }
        }
    }
}

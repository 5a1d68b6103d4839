//! Federation between member nodes, one file per direction of each
//! protocol of the peer listener (`cix.v1.Federation`):
//!
//! - origin-log replication: [`send_batches`] serves `Pull` and `Watch`
//!   (what the caller lacks, fork evidence, heads); [`receive_batches`]
//!   pulls from and watches peers, verifying every batch; [`forks`] says
//!   which fork evidence is in force under the trust list and where each
//!   origin is frozen;
//! - prefix queries: [`answer_prefix`] serves `QueryPrefix` (limits,
//!   padding); [`ask_prefix`] screens through a peer and compares locally;
//! - the trust list: [`trust_serve`] serves `GetTrustList` and
//!   `PublishTrustList`; [`trust_sync`] pushes a newly applied list to
//!   peers and polls them for newer ones, so a list reaches every node
//!   without operator action, including nodes that were down when it was
//!   published.
//!
//! This module holds what both directions share: reaching peers over pinned
//! mutual TLS with keepalive and a call deadline ([`PeerDialer`]), with
//! clients that decode what peers may send ([`client`],
//! [`crate::batch::PEER_MESSAGE_BYTES`]), the heads a node announces ([`heads`]) and
//! the one rule for whether this node's history of an origin is the same as
//! a peer's at the peer's head ([`history_at`]).

pub(crate) mod answer_prefix;
pub(crate) mod ask_prefix;
pub(crate) mod forks;
pub(crate) mod receive_batches;
pub(crate) mod send_batches;
pub(crate) mod trust_serve;
pub(crate) mod trust_sync;

use std::{path::PathBuf, time::Duration};

use tonic::transport::Channel;

use crate::{
    batch::PEER_MESSAGE_BYTES,
    proto::{federation_client::FederationClient, Member, OriginHead},
    store::{Store, StoreError},
    tls::{self, TlsError},
    trust::list::QueryPolicy,
};

/// Opens connections to other members' peer listeners, presenting this
/// node's peer certificate and accepting only the keys the trust list gives
/// for the member dialled.
/// Every channel keeps HTTP/2 keepalive pings going (idle or not), so that
/// a peer that vanishes is noticed, and gives up waiting for the answer to
/// any call after [`PEER_CALL_TIMEOUT`] (for a stream: its opening).
#[derive(Clone, Debug)]
pub(crate) struct PeerDialer {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub keepalive: Keepalive,
}

/// HTTP/2 keepalive on peer connections: a ping every `interval`; a ping
/// unanswered within `timeout` closes the connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Keepalive {
    pub interval: Duration,
    pub timeout: Duration,
}

/// How long one call to a peer may take before it is given up.
pub(crate) const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Most prefixes in one `QueryPrefix` request under any query policy; the
/// policy's bucket size may allow fewer ([`prefixes_per_request`]).
pub(crate) const MAX_PREFIXES_PER_REQUEST: usize = 1024;

/// Most bytes a prefix answer may encode in: three quarters of what the
/// asker decodes ([`PEER_MESSAGE_BYTES`]), the rest a margin.
pub(crate) const PREFIX_ANSWER_BYTES: usize = PEER_MESSAGE_BYTES / 4 * 3;

/// Most bytes one entry of a prefix answer encodes in, with its framing in
/// the bucket: a 32-byte token, an origin of 64 characters, a case
/// reference of 128, every number at its widest.
pub(crate) const MAX_PREFIX_ENTRY_BYTES: usize = 288;

/// Most bytes a bucket adds besides its entries (its framing and prefix).
const PREFIX_BUCKET_BYTES: usize = 16;

/// Real entries one prefix may hold at the least before a query for it is
/// refused, whatever the bucket size: 256 indicators under one prefix means
/// some 268 million in the coalition at 20 bits, 16 million at 16.
const MIN_ENTRIES_PER_PREFIX: usize = 256;

/// Most entries (real and decoys) the answer for one prefix may have under
/// `policy`: 256 rounded up to whole buckets, at least one bucket.
pub(crate) fn entries_per_prefix(policy: &QueryPolicy) -> usize {
    let bucket = (policy.bucket_size.max(1)) as usize;
    MIN_ENTRIES_PER_PREFIX.div_ceil(bucket) * bucket
}

/// Most prefixes in one request under `policy`: as many as keep the largest
/// answer the answerer may build (each prefix at [`entries_per_prefix`],
/// each entry at its widest) within [`PREFIX_ANSWER_BYTES`]; 170 at the
/// default bucket size of 64, 10 at the largest, 4096.
pub(crate) fn prefixes_per_request(policy: &QueryPolicy) -> usize {
    let per_prefix = entries_per_prefix(policy) * MAX_PREFIX_ENTRY_BYTES + PREFIX_BUCKET_BYTES;
    (PREFIX_ANSWER_BYTES / per_prefix).clamp(1, MAX_PREFIXES_PER_REQUEST)
}

/// Most entries an answer with `buckets` buckets may hold in all, each at
/// its widest, within [`PREFIX_ANSWER_BYTES`]: the bound on answers to the
/// per-epoch form of `QueryPrefix`, whose prefixes may be shorter than the
/// policy's and hold more than [`entries_per_prefix`].
pub(crate) fn widest_answer_entries(buckets: usize) -> usize {
    PREFIX_ANSWER_BYTES.saturating_sub(buckets * PREFIX_BUCKET_BYTES) / MAX_PREFIX_ENTRY_BYTES
}

impl PeerDialer {
    pub(crate) async fn channel(&self, member: &Member) -> Result<Channel, TlsError> {
        let config =
            tls::peer_client_config(&self.cert, &self.key, member.tls_spki_sha256.clone())?;
        let keepalive = self.keepalive;
        tls::connect_tuned(&member.endpoint, None, config, |e| {
            e.timeout(PEER_CALL_TIMEOUT)
                .http2_keep_alive_interval(keepalive.interval)
                .keep_alive_timeout(keepalive.timeout)
                .keep_alive_while_idle(true)
        })
        .await
    }

    pub(crate) async fn federation(
        &self,
        member: &Member,
    ) -> Result<FederationClient<Channel>, TlsError> {
        Ok(client(self.channel(member).await?))
    }
}

/// A Federation client on `channel` that decodes and encodes messages of up
/// to [`PEER_MESSAGE_BYTES`], what the peer listener may send: every client
/// of a peer is made here.
pub(crate) fn client(channel: Channel) -> FederationClient<Channel> {
    FederationClient::new(channel)
        .max_decoding_message_size(PEER_MESSAGE_BYTES)
        .max_encoding_message_size(PEER_MESSAGE_BYTES)
}

/// Every origin's head, with hashes, as a pull request or watch message.
pub(crate) fn heads(store: &Store) -> Result<Vec<OriginHead>, StoreError> {
    Ok(store
        .heads()?
        .into_iter()
        .map(|(origin, h)| OriginHead {
            origin,
            last_seq: h.last_seq,
            hash: h.hash.to_vec(),
        })
        .collect())
}

/// How this node's history of an origin stands against a peer's head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AtHead {
    /// This node holds the same history up to the peer's head (a head at 0
    /// is an empty history, the same as any).
    Same,
    /// This node holds nothing at the head's sequence number yet.
    Lacking,
    /// This node's batch holding the head's sequence number is another one
    /// (a different batch, or one ending elsewhere): the histories differ
    /// from that batch on, which starts at `from_seq`.
    Differs { from_seq: u64 },
}

/// What a peer's head and this node's head of one origin say by
/// themselves, before any batch is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heads {
    /// The same sequence number and hash (or the peer holds nothing).
    Same,
    /// The peer is ahead: this node lacks its head.
    PeerAhead,
    /// The same sequence number, different hashes: the histories differ.
    SameSeqDiffers,
    /// The peer is behind: whether it is a prefix of this node's history
    /// needs this node's batch at the peer's head.
    PeerBehind,
}

/// Compares a peer's head with this node's (`mine_seq`, `mine_hash`).
pub(crate) fn compare_heads(mine_seq: u64, mine_hash: &[u8], head: &OriginHead) -> Heads {
    if head.last_seq == 0 {
        Heads::Same
    } else if head.last_seq > mine_seq {
        Heads::PeerAhead
    } else if head.last_seq < mine_seq {
        Heads::PeerBehind
    } else if head.hash.as_slice() == mine_hash {
        Heads::Same
    } else {
        Heads::SameSeqDiffers
    }
}

/// Whether this node's history of `head.origin` is the same as a peer's
/// whose head is `head`. The serving side sends a caller whose history
/// differs this node's batch from where it differs, so that the caller sees
/// the fork; the receiving side pulls when the heads alone say it lacks the
/// peer's head or differs there ([`compare_heads`]). Reads the origin's
/// head and, only when the peer's head is behind it or differs from it,
/// the batch holding that sequence number.
pub(crate) fn history_at(store: &Store, head: &OriginHead) -> Result<AtHead, StoreError> {
    let mine = store.head(&head.origin)?.unwrap_or_default();
    match compare_heads(mine.last_seq, &mine.hash, head) {
        Heads::Same => return Ok(AtHead::Same),
        Heads::PeerAhead => return Ok(AtHead::Lacking),
        Heads::SameSeqDiffers | Heads::PeerBehind => {}
    }
    Ok(match store.batch_holding(&head.origin, head.last_seq)? {
        Some(b) if b.last_seq() == head.last_seq && b.hash().as_slice() == head.hash.as_slice() => {
            AtHead::Same
        }
        Some(b) => AtHead::Differs {
            from_seq: b.first_seq(),
        },
        None => AtHead::Lacking,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_prefix_answer_fits_in_what_the_asker_decodes() {
        use prost::Message;
        let widest = crate::proto::PrefixEntry {
            token: vec![0xff; 32],
            kind: i32::MAX,
            origin: "o".repeat(64),
            tier: i32::MAX,
            case_ref: "c".repeat(128),
            created_unix: i64::MAX,
            valid_until_unix: i64::MAX,
            epoch: u32::MAX,
            seq: u64::MAX,
        };
        let bucket = |n: usize| crate::proto::PrefixBucket {
            prefix: u32::MAX,
            entries: vec![widest.clone(); n],
        };
        let one = bucket(1).encoded_len() - bucket(0).encoded_len();
        assert!(one <= MAX_PREFIX_ENTRY_BYTES, "{one}");
        // The prefix, the tag and a length of up to four bytes.
        assert!(bucket(0).encoded_len() + 5 <= PREFIX_BUCKET_BYTES);
        for size in [1, 8, 64, 100, 1000, 4096] {
            let policy = QueryPolicy {
                bucket_size: size,
                ..QueryPolicy::DEFAULT
            };
            let n = prefixes_per_request(&policy);
            let per = entries_per_prefix(&policy);
            assert!(per >= MIN_ENTRIES_PER_PREFIX && per % size as usize == 0);
            let b = bucket(per);
            let answer = n * (1 + prost::length_delimiter_len(b.encoded_len()) + b.encoded_len());
            assert!(answer <= PREFIX_ANSWER_BYTES, "bucket {size}: {answer}");
            assert!(answer < PEER_MESSAGE_BYTES);
        }
        assert_eq!(prefixes_per_request(&QueryPolicy::DEFAULT), 170);
    }
    use crate::{
        batch::{self, Batch},
        keys::signing::SigningKeyFile,
        proto::{BatchHeader, LogOp},
        token::Token,
    };

    fn signed(first_seq: u64, n: u8, prev: Vec<u8>, case: &str, key: &SigningKeyFile) -> Batch {
        let header = BatchHeader {
            origin: "liaison".into(),
            first_seq,
            prev_hash: prev,
            op: LogOp::Add as i32,
            case_ref: case.into(),
            tier: 1,
            ..Default::default()
        };
        let entries = (0..n)
            .map(|i| batch::entry(&Token([i + first_seq as u8; 32]), 6, 1))
            .collect();
        batch::sign(header, entries, key)
    }

    fn at(last_seq: u64, b: &Batch) -> OriginHead {
        OriginHead {
            origin: "liaison".into(),
            last_seq,
            hash: b.hash().to_vec(),
        }
    }

    #[test]
    fn history_at_a_peers_head_is_same_lacking_or_differs_from_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        let key = SigningKeyFile::generate();
        // This node: 1..=3, 4..=5.
        let b1 = signed(1, 3, vec![0; 32], "a", &key);
        let b2 = signed(4, 2, b1.hash().to_vec(), "a", &key);
        store.append(&b1).unwrap();
        store.append(&b2).unwrap();
        let none = OriginHead {
            origin: "liaison".into(),
            last_seq: 0,
            hash: vec![],
        };
        assert_eq!(history_at(&store, &none).unwrap(), AtHead::Same);
        assert_eq!(history_at(&store, &at(5, &b2)).unwrap(), AtHead::Same);
        assert_eq!(history_at(&store, &at(3, &b1)).unwrap(), AtHead::Same);
        // A peer ahead of this node.
        let b3 = signed(6, 1, b2.hash().to_vec(), "a", &key);
        assert_eq!(history_at(&store, &at(6, &b3)).unwrap(), AtHead::Lacking);
        // Another batch at this node's head, or one ending inside a batch.
        let other = signed(4, 2, b1.hash().to_vec(), "b", &key);
        assert_eq!(
            history_at(&store, &at(5, &other)).unwrap(),
            AtHead::Differs { from_seq: 4 }
        );
        let short = signed(4, 1, b1.hash().to_vec(), "a", &key);
        assert_eq!(
            history_at(&store, &at(4, &short)).unwrap(),
            AtHead::Differs { from_seq: 4 }
        );
        let early = signed(1, 3, vec![0; 32], "b", &key);
        assert_eq!(
            history_at(&store, &at(3, &early)).unwrap(),
            AtHead::Differs { from_seq: 1 }
        );
        // An origin this node holds nothing of.
        let mut unknown = at(2, &b1);
        unknown.origin = "bank".into();
        assert_eq!(history_at(&store, &unknown).unwrap(), AtHead::Lacking);
    }
}

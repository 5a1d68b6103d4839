//! Asking another member's node by prefix queries (the asking side of
//! `Federation.QueryPrefix`), for `Screening.MatchRemote`: this node hashes
//! the identifiers under every valid epoch, sends only prefixes of the
//! tokens to the peer over this node's own pinned mTLS connection, and
//! compares the answers locally ([`compare`]). The member's own systems
//! never hold peer credentials, and the peer never sees a token or an
//! outcome.
//!
//! With one valid epoch every prefix has the trust list's `prefix_bits`
//! (B), in requests of at most [`super::prefixes_per_request`] under the
//! query policy, so that every answer fits in what this node decodes.
//! During a key rotation (two or more valid epochs) a value's tokens under
//! the epochs are independent, so B bits of each would tell the answerer
//! B bits per epoch: the bits are split instead ([`split_bits`]), b_e bits
//! of the epoch-e token with the sum of b_e equal to B, chosen from the
//! peer's count of indicators per epoch so that the answers stay small, and
//! sent in the per-epoch form (`by_epoch`). The split is held for the UTC
//! day across peers, so that screening a value again that day, through any
//! peer, sends the same prefixes. Such requests are packed by the answer
//! size the counts lead to expect ([`pack`]); one the answerer refuses as
//! too large is halved and sent again. The answering side is
//! [`super::answer_prefix`].

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use parking_lot::Mutex;
use tonic::{transport::Channel, Status};

use super::{
    prefixes_per_request, widest_answer_entries, PeerDialer, MAX_PREFIXES_PER_REQUEST,
    PEER_CALL_TIMEOUT,
};
use crate::{
    ident::{Kind, Reason},
    index::{token_prefix, Indicator, Tier},
    proto::{
        federation_client::FederationClient, EpochPrefixes, PeerCapability, PrefixBucket,
        PrefixEntry, QueryPrefixRequest, QueryPrefixResponse,
    },
    screening::{Engine, Hashed, Outcome},
    time::Clock,
    token::Token,
    trust::{
        list::{QueryPolicy, TrustList},
        state::TrustState,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("peer: this node is not federated (no [peer_listener])")]
    NotFederated,
    /// The name given is not echoed: it is the caller's input.
    #[error("peer: must be the member id of another active member of the trust list")]
    UnknownPeer,
    #[error("peer: member {0:?} has no peer endpoint")]
    NoEndpoint(String),
    #[error("peer: member {0:?} does not have the replicate or contribute capability, so it holds no indicators to ask")]
    HoldsNothing(String),
    #[error("peer {peer}: could not connect: {}", crate::telemetry::chain(.error))]
    Connect {
        peer: String,
        error: crate::tls::TlsError,
    },
    /// The peer's own answer (its status code and message, with any retry hint).
    #[error("peer {peer}: {}", status.message())]
    Peer { peer: String, status: Status },
}

/// Remote matching for one node: the trust list, the dialer and a
/// connection per peer, reused across calls.
pub(crate) struct Remote {
    trust: Arc<TrustState>,
    dialer: PeerDialer,
    clock: Clock,
    channels: Mutex<HashMap<String, (Vec<String>, Channel)>>,
    /// Active indicators per epoch, as each peer last said.
    counts: Mutex<HashMap<String, Vec<(u32, u64)>>>,
    /// The prefix length per epoch (epoch, bits) in use during a rotation:
    /// for the valid epochs and the UTC day it was chosen on.
    split: Mutex<Option<SplitFor>>,
}

/// A split in use: the valid epochs and the UTC day it was chosen for, and
/// the prefix length per epoch (epoch, bits).
type SplitFor = (Vec<u32>, i64, Vec<(u32, u32)>);

impl Remote {
    pub(crate) fn new(trust: Arc<TrustState>, dialer: PeerDialer, clock: Clock) -> Remote {
        Remote {
            trust,
            dialer,
            clock,
            channels: Mutex::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
            split: Mutex::new(None),
        }
    }

    async fn client(&self, peer: &str) -> Result<FederationClient<Channel>, RemoteError> {
        let list = self.trust.current();
        let now = self.clock.now();
        let m = list
            .member(peer)
            .filter(|m| TrustList::is_active(m, now) && peer != self.trust.node_id())
            .ok_or(RemoteError::UnknownPeer)?;
        if m.endpoint.is_empty() {
            return Err(RemoteError::NoEndpoint(peer.to_string()));
        }
        if !TrustList::has_capability(m, PeerCapability::Replicate)
            && !TrustList::has_capability(m, PeerCapability::Contribute)
        {
            return Err(RemoteError::HoldsNothing(peer.to_string()));
        }
        // A channel is reused while the peer's pinned keys stay the same.
        if let Some((spki, ch)) = self.channels.lock().get(peer) {
            if *spki == m.tls_spki_sha256 {
                return Ok(super::client(ch.clone()));
            }
        }
        let ch = self
            .dialer
            .channel(m)
            .await
            .map_err(|error| RemoteError::Connect {
                peer: peer.to_string(),
                error,
            })?;
        self.channels
            .lock()
            .insert(peer.to_string(), (m.tls_spki_sha256.clone(), ch.clone()));
        Ok(super::client(ch))
    }

    /// Screens `items` (kind, raw value) through `peer`.
    pub(crate) async fn screen<'a, I>(
        &self,
        engine: &Engine,
        peer: &str,
        items: I,
    ) -> Result<Vec<Outcome>, RemoteError>
    where
        I: IntoIterator<Item = (Result<Kind, Reason>, &'a str)>,
    {
        let now = self.clock.now();
        let hashed = engine.hash_identifiers(items, now);
        let policy = QueryPolicy::of(self.trust.current().body());
        let bits = policy.prefix_bits;
        let epochs = engine.valid_epochs(now);
        let mut buckets = Vec::new();
        if hashed.iter().any(|h| h.is_ok()) {
            let mut client = self.client(peer).await?;
            if epochs.len() <= 1 {
                let prefixes = prefixes_of(&hashed, bits);
                // Requests the answerer takes, answers this node decodes.
                for chunk in prefixes.chunks(prefixes_per_request(&policy)) {
                    let req = QueryPrefixRequest {
                        prefixes: chunk.to_vec(),
                        prefix_bits: bits,
                        by_epoch: Vec::new(),
                    };
                    buckets.extend(self.call(&mut client, peer, req).await?.buckets);
                }
            } else {
                let known = self.counts.lock().get(peer).cloned();
                let counts = match known {
                    Some(c) if epochs.iter().all(|e| c.iter().any(|(id, _)| id == e)) => c,
                    _ => {
                        // Only the counts: no prefix, no quota.
                        let probe = QueryPrefixRequest {
                            by_epoch: epochs
                                .iter()
                                .map(|e| EpochPrefixes {
                                    epoch: *e,
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        };
                        self.call(&mut client, peer, probe).await?;
                        self.counts.lock().get(peer).cloned().unwrap_or_default()
                    }
                };
                let split = self.split(&epochs, now, bits, &counts);
                let mut queue: VecDeque<QueryPrefixRequest> =
                    pack(&hashed, &split, &counts, &policy).into();
                while let Some(req) = queue.pop_front() {
                    match self.call(&mut client, peer, req.clone()).await {
                        Ok(r) => buckets.extend(r.buckets),
                        Err(RemoteError::Peer { status, .. })
                            if status.code() == tonic::Code::FailedPrecondition
                                && count_of(&req) > 1 =>
                        {
                            let (a, b) = halve(&req);
                            queue.push_front(b);
                            queue.push_front(a);
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        let list = self.trust.current();
        Ok(compare(&hashed, &buckets, &|origin| {
            list.member(origin).is_some()
        }))
    }

    /// One QueryPrefix call to `peer`, keeping the per-epoch counts it
    /// answers with.
    async fn call(
        &self,
        client: &mut FederationClient<Channel>,
        peer: &str,
        req: QueryPrefixRequest,
    ) -> Result<QueryPrefixResponse, RemoteError> {
        // The channel bounds the wait for the answer's headers; this bounds
        // the whole call.
        let answer = tokio::time::timeout(PEER_CALL_TIMEOUT, client.query_prefix(req))
            .await
            .unwrap_or_else(|_| {
                Err(Status::deadline_exceeded(
                    "QueryPrefix: no answer within the peer call deadline",
                ))
            });
        match answer {
            Ok(r) => {
                let r = r.into_inner();
                if !r.epochs.is_empty() {
                    let c = r.epochs.iter().map(|e| (e.epoch, e.active)).collect();
                    self.counts.lock().insert(peer.to_string(), c);
                }
                Ok(r)
            }
            Err(status) => {
                if status.code() == tonic::Code::Unavailable {
                    self.channels.lock().remove(peer);
                }
                Err(RemoteError::Peer {
                    peer: peer.to_string(),
                    status,
                })
            }
        }
    }

    /// The split in use for `epochs` today, or a new one from `counts`.
    fn split(&self, epochs: &[u32], now: i64, bits: u32, counts: &[(u32, u64)]) -> Vec<(u32, u32)> {
        let day = now.div_euclid(86_400);
        let mut held = self.split.lock();
        if let Some((e, d, split)) = held.as_ref() {
            if e.as_slice() == epochs && *d == day && split.iter().map(|s| s.1).sum::<u32>() == bits
            {
                return split.clone();
            }
        }
        let of: Vec<(u32, u64)> = epochs
            .iter()
            .map(|e| (*e, counts.iter().find(|(id, _)| id == e).map_or(0, |c| c.1)))
            .collect();
        let split = split_bits(bits, &of);
        *held = Some((epochs.to_vec(), day, split.clone()));
        split
    }
}

/// Splits `bits` (the policy's B) over the epochs of `counts` (epoch,
/// active indicators the answerer holds under it): bit by bit to the epoch
/// whose prefixes would hold the most indicators, so that the expected
/// answer (the sum of N_e / 2^b_e) is as small as it gets with the sum of
/// b_e equal to B. Whatever the counts say, the bits sent add up to B: a
/// lying answerer can make answers larger, never learn more.
pub(crate) fn split_bits(bits: u32, counts: &[(u32, u64)]) -> Vec<(u32, u32)> {
    let mut split: Vec<(u32, u32)> = counts.iter().map(|(e, _)| (*e, 0)).collect();
    if split.is_empty() {
        return split;
    }
    for _ in 0..bits {
        // N_i / 2^b_i > N_j / 2^b_j  <=>  N_i * 2^b_j > N_j * 2^b_i.
        let held = |i: usize| u128::from(counts[i].1);
        let best = (0..split.len())
            .reduce(|best, i| {
                if held(i) << split[best].1 > held(best) << split[i].1 {
                    i
                } else {
                    best
                }
            })
            .unwrap_or(0);
        split[best].1 += 1;
    }
    split
}

/// The per-epoch requests for `items` under `split`: for each epoch its
/// tokens' distinct prefixes of that epoch's length, packed into requests
/// whose answers, at the size `counts` leads to expect with a margin, take
/// at most three quarters of what one answer carries.
pub(crate) fn pack(
    items: &[Hashed],
    split: &[(u32, u32)],
    counts: &[(u32, u64)],
    policy: &QueryPolicy,
) -> Vec<QueryPrefixRequest> {
    let bucket = policy.bucket_size.max(1) as usize;
    let mut out: Vec<QueryPrefixRequest> = Vec::new();
    let mut cur = QueryPrefixRequest::default();
    let (mut n, mut expected) = (0usize, 0usize);
    for (epoch, bits) in split {
        let held = counts.iter().find(|(id, _)| id == epoch).map_or(0, |c| c.1);
        let mean = held as f64 / 2f64.powi(*bits as i32);
        let est = ((mean + 4.0 * mean.sqrt() + 4.0).ceil() as usize).div_ceil(bucket) * bucket;
        let mut seen = HashMap::new();
        for h in items.iter().filter_map(|h| h.as_ref().ok()) {
            for (_, t) in h.iter().filter(|(e, _)| e == epoch) {
                let p = token_prefix(t, *bits);
                if seen.insert(p, ()).is_some() {
                    continue;
                }
                let fits = n < MAX_PREFIXES_PER_REQUEST
                    && (expected + est) * 4 <= widest_answer_entries(n + 1) * 3;
                if n > 0 && !fits {
                    out.push(std::mem::take(&mut cur));
                    (n, expected) = (0, 0);
                }
                match cur.by_epoch.last_mut() {
                    Some(e) if e.epoch == *epoch => e.prefixes.push(p),
                    _ => cur.by_epoch.push(EpochPrefixes {
                        epoch: *epoch,
                        prefix_bits: *bits,
                        prefixes: vec![p],
                    }),
                }
                n += 1;
                expected += est;
            }
        }
    }
    if n > 0 {
        out.push(cur);
    }
    out
}

/// How many prefixes a per-epoch request carries.
fn count_of(req: &QueryPrefixRequest) -> usize {
    req.by_epoch.iter().map(|e| e.prefixes.len()).sum()
}

/// A per-epoch request cut into two with half its prefixes each.
fn halve(req: &QueryPrefixRequest) -> (QueryPrefixRequest, QueryPrefixRequest) {
    let mut left = count_of(req) / 2;
    let (mut a, mut b) = (QueryPrefixRequest::default(), QueryPrefixRequest::default());
    for e in &req.by_epoch {
        let k = left.min(e.prefixes.len());
        left -= k;
        for (to, ps) in [(&mut a, &e.prefixes[..k]), (&mut b, &e.prefixes[k..])] {
            if !ps.is_empty() {
                to.by_epoch.push(EpochPrefixes {
                    epoch: e.epoch,
                    prefix_bits: e.prefix_bits,
                    prefixes: ps.to_vec(),
                });
            }
        }
    }
    (a, b)
}

/// The distinct prefixes of the hashed items, in first-seen order.
pub(crate) fn prefixes_of(items: &[Hashed], bits: u32) -> Vec<u32> {
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    for h in items.iter().filter_map(|h| h.as_ref().ok()) {
        for (_, t) in h {
            let p = token_prefix(t, bits);
            if seen.insert(p, ()).is_none() {
                out.push(p);
            }
        }
    }
    out
}

/// Compares the asker's tokens with the answers: an item matches the entries
/// carrying exactly one of its tokens under the epoch that token was made
/// with. Decoys never match (random tokens). An entry that carries one of
/// the tokens but is not well formed (an origin `listed` does not name, a
/// case reference outside the label rule, an unknown kind or tier) is
/// ignored and logged: the answering member vouches for what it sends, but
/// nothing malformed reaches the caller.
pub(crate) fn compare(
    items: &[Hashed],
    buckets: &[PrefixBucket],
    listed: &dyn Fn(&str) -> bool,
) -> Vec<Outcome> {
    let mut by_token: HashMap<[u8; 32], Vec<&PrefixEntry>> = HashMap::new();
    for e in buckets.iter().flat_map(|b| &b.entries) {
        if let Ok(t) = <[u8; 32]>::try_from(e.token.as_slice()) {
            by_token.entry(t).or_default().push(e);
        }
    }
    items
        .iter()
        .map(|h| match h {
            Err(r) => Outcome::Invalid(r.as_str()),
            Ok(tokens) => {
                let hits: Vec<Indicator> = tokens
                    .iter()
                    .flat_map(|(epoch, t)| {
                        by_token
                            .get(&t.0)
                            .into_iter()
                            .flatten()
                            .filter(move |e| e.epoch == *epoch)
                            .map(move |e| (t, e))
                    })
                    .filter_map(|(t, e)| {
                        let i = indicator(*t, e, listed);
                        if i.is_none() {
                            tracing::warn!(origin_listed = listed(&e.origin), "a prefix answer's entry carrying a screened token is malformed: ignored");
                        }
                        i
                    })
                    .collect();
                if hits.is_empty() {
                    Outcome::NoMatch
                } else {
                    Outcome::Match(hits)
                }
            }
        })
        .collect()
}

fn indicator(token: Token, e: &PrefixEntry, listed: &dyn Fn(&str) -> bool) -> Option<Indicator> {
    if !listed(&e.origin) || !crate::batch::is_label(&e.case_ref) {
        return None;
    }
    Some(Indicator {
        token,
        origin: e.origin.as_str().into(),
        kind: u8::try_from(e.kind).ok().and_then(Kind::from_code)?,
        tier: Tier::from_code(e.tier)?,
        epoch: e.epoch,
        case_ref: e.case_ref.as_str().into(),
        created: e.created_unix,
        valid_until: (e.valid_until_unix != 0).then_some(e.valid_until_unix),
        seq: e.seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(token: Token, origin: &str, case_ref: &str) -> PrefixEntry {
        PrefixEntry {
            token: token.0.to_vec(),
            kind: i32::from(Kind::Domain.code()),
            origin: origin.into(),
            tier: crate::proto::Tier::Confirmed as i32,
            case_ref: case_ref.into(),
            created_unix: 100,
            valid_until_unix: 0,
            epoch: 1,
            seq: 1,
        }
    }

    #[test]
    fn an_answered_entry_naming_an_unlisted_origin_or_a_bad_case_reference_is_no_match() {
        let t = Token([0x42; 32]);
        let hashed: Vec<Hashed> = vec![Ok(vec![(1, t)])];
        let listed = |o: &str| o == "liaison";
        let answer = |e: PrefixEntry| {
            vec![PrefixBucket {
                prefix: token_prefix(&t, 20),
                entries: vec![e],
            }]
        };
        let good = compare(&hashed, &answer(entry(t, "liaison", "CASE-1")), &listed);
        assert!(
            matches!(&good[0], Outcome::Match(h) if h.len() == 1),
            "{good:?}"
        );
        for bad in [
            entry(t, "made-up-origin", "CASE-1"),
            entry(t, "liaison", ""),
            entry(t, "liaison", "line\nbreak"),
            entry(t, "liaison", &"x".repeat(129)),
        ] {
            let out = compare(&hashed, &answer(bad.clone()), &listed);
            assert_eq!(out[0], Outcome::NoMatch, "{bad:?}");
        }
    }

    #[test]
    fn the_bits_split_over_the_epochs_add_up_to_the_policy_and_balance_the_answers() {
        assert_eq!(split_bits(20, &[(1, 1000), (2, 1000)]), [(1, 10), (2, 10)]);
        // Early in a rotation: nearly all bits to the old epoch.
        let early = split_bits(20, &[(1, 1_000_000), (2, 100)]);
        assert_eq!(early.iter().map(|s| s.1).sum::<u32>(), 20);
        assert!(early[0].1 >= 16 && early[1].1 <= 4, "{early:?}");
        let (n1, n2) = (
            1e6 / 2f64.powi(early[0].1 as i32),
            100.0 / 2f64.powi(early[1].1 as i32),
        );
        assert!(n1 / n2 <= 2.0 && n2 / n1 <= 2.0, "{n1} {n2}");
        // Whatever the counts say (none, absurd), the sum is the policy's.
        for counts in [
            vec![(1, 0), (2, 0)],
            vec![(1, u64::MAX), (2, 0)],
            vec![(1, u64::MAX), (2, u64::MAX), (3, 7)],
        ] {
            let s = split_bits(16, &counts);
            assert_eq!(s.iter().map(|s| s.1).sum::<u32>(), 16, "{s:?}");
        }
        assert_eq!(split_bits(20, &[(4, 9)]), [(4, 20)]);
    }

    #[test]
    fn per_epoch_requests_carry_each_prefix_once_and_halving_keeps_them_all() {
        let items: Vec<Hashed> = (0..3000u32)
            .map(|i| {
                let mut a = [0u8; 32];
                a[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
                let mut b = a;
                b[0] ^= 0xff;
                Ok(vec![(1, Token(a)), (2, Token(b))])
            })
            .collect();
        let split = [(1, 14), (2, 6)];
        let counts = [(1, 1 << 20), (2, 1 << 12)];
        let policy = QueryPolicy::DEFAULT;
        let reqs = pack(&items, &split, &counts, &policy);
        assert!(reqs.len() > 1);
        let mut sent: Vec<(u32, u32)> = Vec::new();
        for r in &reqs {
            assert!(r.prefixes.is_empty() && r.prefix_bits == 0);
            assert!(count_of(r) <= MAX_PREFIXES_PER_REQUEST);
            for e in &r.by_epoch {
                let bits = split.iter().find(|s| s.0 == e.epoch).unwrap().1;
                assert_eq!(e.prefix_bits, bits);
                sent.extend(e.prefixes.iter().map(|p| (e.epoch, *p)));
            }
        }
        let mut want: Vec<(u32, u32)> = Vec::new();
        for (epoch, bits) in split {
            let mut ps: Vec<u32> = items
                .iter()
                .flat_map(|h| h.as_ref().unwrap())
                .filter(|(e, _)| *e == epoch)
                .map(|(_, t)| token_prefix(t, bits))
                .collect();
            ps.sort();
            ps.dedup();
            want.extend(ps.into_iter().map(|p| (epoch, p)));
        }
        let mut got = sent.clone();
        got.sort();
        assert_eq!(got, want, "each distinct prefix once");
        let (a, b) = halve(&reqs[0]);
        assert_eq!(count_of(&a) + count_of(&b), count_of(&reqs[0]));
        assert_eq!(count_of(&a), count_of(&reqs[0]) / 2);
        let rejoined: Vec<(u32, u32)> = [a, b]
            .iter()
            .flat_map(|r| {
                r.by_epoch
                    .iter()
                    .flat_map(|e| e.prefixes.iter().map(|p| (e.epoch, *p)))
            })
            .collect();
        let first: Vec<(u32, u32)> = reqs[0]
            .by_epoch
            .iter()
            .flat_map(|e| e.prefixes.iter().map(|p| (e.epoch, *p)))
            .collect();
        assert_eq!(rejoined, first);
    }
}

//! Asking another member's node by prefix queries (the asking side of
//! `Federation.QueryPrefix`), for `Screening.MatchRemote`: this node hashes
//! the identifiers under every valid epoch, sends only the prefixes (the
//! trust list's `prefix_bits`) to the peer over this node's own pinned mTLS
//! connection, and compares the answers locally ([`compare`]). The member's
//! own systems never hold peer credentials, and the peer never sees a token
//! or an outcome. Prefixes go in requests of at most
//! [`super::prefixes_per_request`] under the query policy, so that every
//! answer fits in what this node decodes. The answering side is
//! [`super::answer_prefix`].

use std::{collections::HashMap, sync::Arc};

use parking_lot::Mutex;
use tonic::{transport::Channel, Status};

use super::{prefixes_per_request, PeerDialer, PEER_CALL_TIMEOUT};
use crate::{
    ident::{Kind, Reason},
    index::{token_prefix, Indicator, Tier},
    proto::{
        federation_client::FederationClient, PeerCapability, PrefixBucket, PrefixEntry,
        QueryPrefixRequest,
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
}

impl Remote {
    pub(crate) fn new(trust: Arc<TrustState>, dialer: PeerDialer, clock: Clock) -> Remote {
        Remote {
            trust,
            dialer,
            clock,
            channels: Mutex::new(HashMap::new()),
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
        let hashed = engine.hash_identifiers(items, self.clock.now());
        let policy = QueryPolicy::of(self.trust.current().body());
        let bits = policy.prefix_bits;
        let prefixes = prefixes_of(&hashed, bits);
        let mut buckets = Vec::with_capacity(prefixes.len());
        if !prefixes.is_empty() {
            let mut client = self.client(peer).await?;
            // Requests the answerer takes, answers this node decodes.
            for chunk in prefixes.chunks(prefixes_per_request(&policy)) {
                let req = QueryPrefixRequest {
                    prefixes: chunk.to_vec(),
                    prefix_bits: bits,
                };
                // The channel bounds the wait for the answer's headers;
                // this bounds the whole call.
                let answer = tokio::time::timeout(PEER_CALL_TIMEOUT, client.query_prefix(req))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Status::deadline_exceeded(
                            "QueryPrefix: no answer within the peer call deadline",
                        ))
                    });
                match answer {
                    Ok(r) => buckets.extend(r.into_inner().buckets),
                    Err(status) => {
                        if status.code() == tonic::Code::Unavailable {
                            self.channels.lock().remove(peer);
                        }
                        return Err(RemoteError::Peer {
                            peer: peer.to_string(),
                            status,
                        });
                    }
                }
            }
        }
        let list = self.trust.current();
        Ok(compare(&hashed, &buckets, &|origin| {
            list.member(origin).is_some()
        }))
    }
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
}

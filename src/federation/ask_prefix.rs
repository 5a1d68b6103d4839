//! Screening through another member's node by prefix queries, for
//! `Screening.MatchRemote`: this node hashes the identifiers under every
//! valid epoch, sends only the prefixes (the trust list's `prefix_bits`) to
//! the peer's `Federation.QueryPrefix` over this node's own pinned mTLS
//! connection, and compares the answers locally ([`crate::federation::prefix::compare`]).
//! The member's own systems never hold peer credentials, and the peer never
//! sees a token or an outcome.

use std::{collections::HashMap, sync::Arc};

use parking_lot::Mutex;
use tonic::{transport::Channel, Status};

use super::{
    prefix::{self, MAX_PREFIXES_PER_REQUEST},
    PeerDialer,
};
use crate::{
    epochs::now_unix,
    ident::{Kind, Reason},
    proto::{federation_client::FederationClient, PeerCapability, QueryPrefixRequest},
    screening::{Engine, Outcome},
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
    #[error("peer {peer}: could not connect: {source}")]
    Connect {
        peer: String,
        #[source]
        source: crate::tls::TlsError,
    },
    /// The peer's own answer (its status code and message, with any retry hint).
    #[error("peer {peer}: {}", status.message())]
    Peer { peer: String, status: Status },
}

/// Remote matching for one node: the trust list, the dialer and a
/// connection per peer, reused across calls.
pub struct Remote {
    trust: Arc<TrustState>,
    dialer: PeerDialer,
    channels: Mutex<HashMap<String, (Vec<String>, Channel)>>,
}

impl Remote {
    pub fn new(trust: Arc<TrustState>, dialer: PeerDialer) -> Remote {
        Remote {
            trust,
            dialer,
            channels: Mutex::new(HashMap::new()),
        }
    }

    async fn client(&self, peer: &str) -> Result<FederationClient<Channel>, RemoteError> {
        let list = self.trust.current();
        let now = now_unix();
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
                return Ok(FederationClient::new(ch.clone()));
            }
        }
        let ch = self
            .dialer
            .channel(m)
            .await
            .map_err(|source| RemoteError::Connect {
                peer: peer.to_string(),
                source,
            })?;
        self.channels
            .lock()
            .insert(peer.to_string(), (m.tls_spki_sha256.clone(), ch.clone()));
        Ok(FederationClient::new(ch))
    }

    /// Screens `items` (kind, raw value) through `peer`.
    pub async fn screen<'a, I>(
        &self,
        engine: &Engine,
        peer: &str,
        items: I,
    ) -> Result<Vec<Outcome>, RemoteError>
    where
        I: IntoIterator<Item = (Result<Kind, Reason>, &'a str)>,
    {
        let hashed = engine.hash_identifiers(items, now_unix());
        let bits = QueryPolicy::of(self.trust.current().body()).prefix_bits;
        let prefixes = prefix::prefixes_of(&hashed, bits);
        let mut buckets = Vec::with_capacity(prefixes.len());
        if !prefixes.is_empty() {
            let mut client = self.client(peer).await?;
            for chunk in prefixes.chunks(MAX_PREFIXES_PER_REQUEST) {
                let req = QueryPrefixRequest {
                    prefixes: chunk.to_vec(),
                    prefix_bits: bits,
                };
                match client.query_prefix(req).await {
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
        Ok(prefix::compare(&hashed, &buckets))
    }
}

//! Federation between member nodes. For now: reaching peers over pinned
//! mutual TLS ([`PeerDialer`]) and keeping every node on the newest trust
//! list ([`trust_sync`]): a node that applies a list passes it on to its
//! peers at once, and every node asks its peers for newer versions on a
//! timer, so a list reaches every node without operator action, including
//! nodes that were down when it was published.

pub mod prefix;
pub mod remote;
pub mod replicate;
pub mod trust_sync;

use std::{path::PathBuf, time::Duration};

use tonic::transport::Channel;

use crate::{
    proto::{federation_client::FederationClient, Member},
    tls::{self, TlsError},
};

/// Opens connections to other members' peer listeners, presenting this
/// node's peer certificate and accepting only the keys the trust list gives
/// for the member dialled.
#[derive(Clone, Debug)]
pub struct PeerDialer {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How long one call to a peer may take before it is given up.
pub const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(5);

impl PeerDialer {
    pub async fn channel(&self, member: &Member) -> Result<Channel, TlsError> {
        let config =
            tls::peer_client_config(&self.cert, &self.key, member.tls_spki_sha256.clone())?;
        tls::connect(&member.endpoint, None, config).await
    }

    pub async fn federation(&self, member: &Member) -> Result<FederationClient<Channel>, TlsError> {
        Ok(FederationClient::new(self.channel(member).await?))
    }
}

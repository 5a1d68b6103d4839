//! `cix trust publish`: hands the list to a node's peer listener over
//! mutual TLS (Federation.PublishTrustList); the node passes it on. A node
//! that lacks a key-changing list between its version and this one refuses
//! it and asks its peers for the chain: the command then waits (bounded)
//! until the node holds the version, or says why not.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use super::{read_signed, spki_arg};
use crate::{time::format_time, time::system_now, trust::list};

/// Options of `cix trust publish`.
#[derive(Args, Debug)]
pub struct PublishArgs {
    /// Trust-list file to publish.
    #[arg(long)]
    pub file: PathBuf,
    /// The node's peer listener, HOST:PORT.
    #[arg(long)]
    pub node: String,
    /// Name to check in the node's certificate (default: HOST).
    #[arg(long)]
    pub server_name: Option<String>,
    /// Client certificate (PEM) of an active member.
    #[arg(long)]
    pub cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// SHA-256 of the node's certificate SubjectPublicKeyInfo, 64 hex (repeat to allow several).
    #[arg(long, value_name = "HEX", required = true)]
    pub node_spki: Vec<String>,
}

pub(super) async fn publish(a: PublishArgs) -> Result<()> {
    let signed = read_signed(&a.file)?;
    // A list no node would take is not worth a connection.
    let l = list::verify_root(&signed, None).map_err(|e| anyhow::anyhow!("not publishing: {e}"))?;
    if l.is_expired(system_now()?) {
        bail!(
            "not publishing: the list expired at {}",
            format_time(l.expires_at())
        );
    }
    let spkis = a.node_spki.iter().map(|s| spki_arg(s)).collect();
    let config = crate::tls::peer_client_config(&a.cert, &a.key, spkis)?;
    let channel = crate::tls::connect(&a.node, a.server_name.as_deref(), config).await?;
    let mut client = crate::federation::client(channel);
    let resp = match client.publish_trust_list(signed).await {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == tonic::Code::FailedPrecondition && s.message().contains(GAP) => {
            // The node lacks a key-changing list between its version and
            // this one, and asks its peers for the chain: wait for it.
            eprintln!("node refused the list as it stands: {}", s.message());
            return wait_for(&mut client, &a.node, l.version(), s.message()).await;
        }
        Err(s) => bail!("node refused: {:?}: {}", s.code(), s.message()),
    };
    println!(
        "node {} holds version {} ({})",
        a.node,
        resp.version,
        if resp.applied {
            "applied"
        } else {
            "unchanged: it already had this list"
        }
    );
    Ok(())
}

/// What a node's refusal says when lists between are missing
/// ([`crate::trust::list::missing_versions`]).
const GAP: &str = "lists are missing and are needed first";

/// How long `publish` waits for a node to walk the chain through its peers.
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Asks the node for its version until it holds `version` (through its
/// peers), for at most [`CATCH_UP_WAIT`].
async fn wait_for(
    client: &mut crate::proto::federation_client::FederationClient<tonic::transport::Channel>,
    node: &str,
    version: u64,
    refusal: &str,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
    let mut held = 0;
    loop {
        if let Ok(r) = client
            .get_trust_list(crate::proto::GetTrustListRequest {
                have_version: u64::MAX,
            })
            .await
        {
            held = r.into_inner().version;
            if held >= version {
                println!(
                    "node {node} holds version {held} (applied: it walked the key-changing lists from its peers)"
                );
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "node {node} still holds version {held} after {}s: none of its peers sent the key-changing lists it needs ({refusal}); \
                 publish those lists to it first, oldest first, or write them with `cix trust chain` and name the file in its [trust] chain_file",
                CATCH_UP_WAIT.as_secs()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

//! `cix trust publish`: hands the list to a node's peer listener over
//! mutual TLS (Federation.PublishTrustList); the node passes it on.

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
    let resp = crate::federation::client(channel)
        .publish_trust_list(signed)
        .await
        .map_err(|s| anyhow::anyhow!("node refused: {:?}: {}", s.code(), s.message()))?
        .into_inner();
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

//! How a client command reaches its node: the connection flags every
//! member-API command takes ([`Conn`]: a `cix init` directory, or the
//! node's address and the client's certificate files) and how the node's
//! refusals read ([`status_error`]).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::client::{Clients, Identity};

/// How to reach the node and who to be.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// A directory made by `cix init`: defaults for every option below.
    #[arg(long, env = "CIX_DIR", default_value = ".")]
    pub dir: PathBuf,
    /// The node's member listener, HOST:PORT.
    #[arg(long, env = "CIX_NODE")]
    pub node: Option<String>,
    /// Name to check in the node's certificate (default: HOST).
    #[arg(long)]
    pub server_name: Option<String>,
    /// CA of the node's server certificate (PEM).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM).
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long)]
    pub key: Option<PathBuf>,
}

impl Conn {
    /// The identity to connect as: the `--dir` directory's, with each option
    /// given replacing its part; without a readable directory, `--node`,
    /// `--ca`, `--cert` and `--key` are all needed.
    pub fn identity(&self) -> Result<Identity> {
        let from_dir = Identity::from_dir(&self.dir);
        let mut id = match (&self.node, &self.ca, &self.cert, &self.key, from_dir) {
            (_, _, _, _, Ok(id)) => id,
            (Some(node), Some(ca), Some(cert), Some(key), Err(_)) => Identity {
                node: node.clone(),
                server_name: None,
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            },
            (.., Err(e)) => return Err(anyhow::Error::new(e).context(
                "give --dir (a directory made by `cix init`) or all of --node, --ca, --cert, --key",
            )),
        };
        if let Some(n) = &self.node {
            id.node = n.clone();
        }
        if let Some(c) = &self.ca {
            id.ca = c.clone();
        }
        if let Some(c) = &self.cert {
            id.cert = c.clone();
        }
        if let Some(k) = &self.key {
            id.key = k.clone();
        }
        id.server_name = self.server_name.clone();
        Ok(id)
    }

    /// Connects to the node as [`Conn::identity`].
    pub async fn connect(&self) -> Result<Clients> {
        Ok(self.identity()?.connect().await?)
    }
}

/// A refusal by the node, as the commands print it.
pub(super) fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("node refused: {:?}: {}", s.code(), s.message())
}

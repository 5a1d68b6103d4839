//! The mTLS client side of the member API, for the `cix` commands, the demo
//! and tests: where the node is, which identity to present, and connected
//! gRPC clients.

use std::path::{Path, PathBuf};

use tonic::transport::Channel;

use crate::{
    config::RawConfig,
    proto::{
        self, admin_client::AdminClient, alerts_client::AlertsClient,
        contribution_client::ContributionClient, dispositions_client::DispositionsClient,
        figures_client::FiguresClient, outcomes_client::OutcomesClient,
        quarantine_client::QuarantineClient, reports_client::ReportsClient,
        screening_client::ScreeningClient, watchlist_client::WatchlistClient,
    },
    tls::{self, TlsError},
};

/// Largest message the client sends or accepts.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// How to reach a node and who to be.
#[derive(Clone, Debug)]
pub struct Identity {
    /// HOST:PORT of the node's member listener.
    pub node: String,
    /// Name checked against the server certificate (default: HOST).
    pub server_name: Option<String>,
    /// CA that signed the node's server certificate.
    pub ca: PathBuf,
    /// Client certificate to present (PEM).
    pub cert: PathBuf,
    /// Private key of the client certificate (PEM).
    pub key: PathBuf,
}

/// Why a client could not be set up or connected.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TLS files do not load, or the connection failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The node directory's config does not read or parse.
    #[error("node directory {dir}: {message}")]
    Dir {
        /// The node directory.
        dir: PathBuf,
        /// What failed.
        message: String,
    },
}

impl Identity {
    /// The defaults of a directory made by `cix init`: the node's address
    /// (from its running `member.addr`, else its config) and the client
    /// identity under `tls/`.
    pub fn from_dir(dir: &Path) -> Result<Identity, ClientError> {
        let err = |message: String| ClientError::Dir {
            dir: dir.to_path_buf(),
            message,
        };
        let config_path = dir.join("node.toml");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| err(format!("reading node.toml: {e}")))?;
        let raw = RawConfig::parse(&text, &config_path).map_err(|e| err(e.to_string()))?;
        let data_dir = if raw.node.data_dir.is_absolute() {
            raw.node.data_dir.clone()
        } else {
            dir.join(&raw.node.data_dir)
        };
        let node = std::fs::read_to_string(data_dir.join(crate::node::MEMBER_ADDR_FILE))
            .map(|s| s.trim().to_string())
            .unwrap_or(raw.member_listener.listen);
        Ok(Identity {
            node,
            server_name: None,
            ca: dir.join("tls/ca.crt"),
            cert: dir.join("tls/client.crt"),
            key: dir.join("tls/client.key"),
        })
    }

    /// Opens a gRPC channel to the node over mutual TLS.
    pub async fn channel(&self) -> Result<Channel, ClientError> {
        let config = tls::client_config(&self.ca, &self.cert, &self.key)?;
        Ok(tls::connect(&self.node, self.server_name.as_deref(), config).await?)
    }

    /// Opens a channel and the member API's clients on it.
    pub async fn connect(&self) -> Result<Clients, ClientError> {
        Ok(Clients::new(self.channel().await?))
    }
}

/// The member API's clients over one connection.
#[derive(Clone)]
pub struct Clients {
    /// Screening: matching identifiers and tokens, locally or at peers.
    pub screening: ScreeningClient<Channel>,
    /// Contribution: the member's own indicators (add, retract, extend,
    /// list, rekey).
    pub contribution: ContributionClient<Channel>,
    /// Administration: the node's status.
    pub admin: AdminClient<Channel>,
    /// The watchlist: the bank's book under continuous screening.
    pub watchlist: WatchlistClient<Channel>,
    /// Alerts: the node's alert log (Subscribe, List).
    pub alerts: AlertsClient<Channel>,
    /// Outcomes: the feedback this node heard about its own indicators.
    pub outcomes: OutcomesClient<Channel>,
    /// Figures: the coalition's outcome figures.
    pub figures: FiguresClient<Channel>,
    /// Dispositions: the bank's outcomes of alerts and hits (Record, List).
    pub dispositions: DispositionsClient<Channel>,
    /// Reports: the case package of an alert or a hit.
    pub reports: ReportsClient<Channel>,
    /// Flood control's quarantines (List, Lift).
    pub quarantine: QuarantineClient<Channel>,
    /// gRPC health, per service (any client certificate of the member CA).
    pub health: tonic_health::pb::health_client::HealthClient<Channel>,
}

impl Clients {
    /// The clients on `channel`; screening and contribution messages may be
    /// up to 64 MiB each way.
    pub fn new(channel: Channel) -> Clients {
        Clients {
            screening: ScreeningClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            contribution: ContributionClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            watchlist: WatchlistClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            admin: AdminClient::new(channel.clone()),
            outcomes: OutcomesClient::new(channel.clone()),
            quarantine: QuarantineClient::new(channel.clone()),
            alerts: AlertsClient::new(channel.clone()),
            figures: FiguresClient::new(channel.clone()),
            dispositions: DispositionsClient::new(channel.clone()),
            reports: ReportsClient::new(channel.clone()),
            health: tonic_health::pb::health_client::HealthClient::new(channel),
        }
    }
}

impl Clients {
    /// The quarantines in force on the node (Quarantine.List; `admin`).
    pub async fn quarantines(&mut self) -> Result<Vec<proto::QuarantinedIndicator>, tonic::Status> {
        Ok(self
            .quarantine
            .list(proto::ListQuarantinesRequest {})
            .await?
            .into_inner()
            .quarantined)
    }

    /// Lifts the quarantine of the indicator `origin`:`seq` (Quarantine.Lift;
    /// `admin`): exempt for the rest of the UTC day, its paused alerts raised.
    pub async fn lift_quarantine(&mut self, origin: &str, seq: u64) -> Result<(), tonic::Status> {
        self.quarantine
            .lift(proto::LiftQuarantineRequest {
                origin: origin.to_string(),
                seq,
            })
            .await?;
        Ok(())
    }
}

/// The retry hint of a RESOURCE_EXHAUSTED status (a `google.rpc.RetryInfo`
/// detail), if it carries one.
pub fn retry_hint(s: &tonic::Status) -> Option<std::time::Duration> {
    use tonic_types::StatusExt;
    s.get_details_retry_info().and_then(|r| r.retry_delay)
}

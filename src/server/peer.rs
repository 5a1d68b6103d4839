//! The peer listener and the federation tasks of a federated node: other
//! members' nodes (peers) reach `cix.v1.Federation` over TLS 1.3 with
//! certificates pinned by the trust list in force, every request authorized
//! anew ([`crate::auth::peers`]), within the listener's limits
//! (`[peer_listener.limits]`: connections, handshakes, streams per
//! connection, request size, trust-list publishes); and this node pulls
//! from, watches and syncs its trust list with its peers, through one
//! [`PeerDialer`].

use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use super::{ServeTask, ServerError};
use crate::{
    api::federation::FederationService,
    auth::peers::PeerAuthLayer,
    capture::CaptureLayer,
    config::{Config, Federation},
    counters::Counters,
    federation::{
        answer_prefix::PrefixAnswers,
        receive_batches::{self, Replication},
        send_batches::BatchSender,
        trust_serve::PublishRate,
        trust_sync, Keepalive, PeerDialer,
    },
    node::NodeState,
    proto::federation_server::FederationServer,
    screening::Engine,
    time::Clock,
    tls,
    trust::state::TrustState,
};

/// The dialer for every outgoing peer connection of this node.
pub(super) fn dialer(fed: &Federation) -> PeerDialer {
    PeerDialer {
        cert: fed.peer.cert.clone(),
        key: fed.peer.key.clone(),
        keepalive: Keepalive {
            interval: fed.keepalive_interval,
            timeout: fed.keepalive_timeout,
        },
    }
}

/// Serves the peer listener on `listener` until `stop`.
#[allow(clippy::too_many_arguments)]
pub(super) fn serve(
    config: &Config,
    fed: &Federation,
    trust: &Arc<TrustState>,
    state: &Arc<NodeState>,
    engine: Engine,
    listener: TcpListener,
    health_service: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    stop: &CancellationToken,
) -> Result<ServeTask, ServerError> {
    let policy: tls::SpkiPolicy = {
        let trust = trust.clone();
        Arc::new(move |spki: &str| trust.admits(spki))
    };
    let peer_tls = tls::peer_server_config(
        &fed.peer.cert,
        &fed.peer.key,
        fed.peer.coalition_ca.as_deref(),
        policy,
    )?;
    let limits = &fed.peer.limits;
    let incoming = ReceiverStream::new(tls::accept_loop(
        listener,
        peer_tls,
        trust.connections().clone(),
        tls::AcceptLimits {
            max_connections: limits.max_connections,
            max_handshakes: limits.max_handshakes,
            handshake_timeout: Duration::from_secs(limits.handshake_timeout_seconds),
        },
        Some(state.counters.clone()),
    ));
    let capture = CaptureLayer::from_env(&config.node_id).map_err(|source| ServerError::Write {
        path: std::env::var_os(crate::capture::ENV)
            .map(PathBuf::from)
            .unwrap_or_default(),
        source,
    })?;
    let router = Server::builder()
        .http2_keepalive_interval(Some(fed.keepalive_interval))
        .http2_keepalive_timeout(Some(fed.keepalive_timeout))
        .max_concurrent_streams(Some(limits.max_streams_per_connection))
        .layer(capture)
        .layer(PeerAuthLayer::new(trust.clone(), state.counters.clone()))
        .add_service(
            FederationServer::new(FederationService::new(
                state.clone(),
                trust.clone(),
                state.counters.clone(),
                BatchSender::new(state.logs.clone(), state.counters.clone(), stop.clone()),
                PrefixAnswers::new(
                    state.queries.clone(),
                    trust.clone(),
                    engine,
                    state.clock.clone(),
                ),
                PublishRate::new(
                    limits.trust_publish_per_second,
                    limits.trust_publish_burst,
                    state.clock.clone(),
                ),
            ))
            .max_decoding_message_size(limits.max_message_bytes)
            .max_encoding_message_size(crate::batch::PEER_MESSAGE_BYTES),
        )
        .add_service(health_service);
    Ok(tokio::spawn(router.serve_with_incoming_shutdown(
        incoming,
        stop.clone().cancelled_owned(),
    )))
}

/// Starts trust-list sync and replication with the peers.
pub(super) fn spawn_tasks(
    trust: &Arc<TrustState>,
    dialer: PeerDialer,
    fed: &Federation,
    replication: Option<&Arc<Replication>>,
    counters: Arc<Counters>,
    clock: Clock,
    stop: &CancellationToken,
) {
    tokio::spawn(trust_sync::run(
        trust.clone(),
        dialer,
        counters,
        fed.sync_interval,
        clock,
        stop.clone(),
    ));
    if let Some(r) = replication {
        tokio::spawn(receive_batches::run(r.clone(), stop.clone()));
    }
}

/// Warns when peers will refuse this node: it is not an active member, its
/// list warns of expiry, or its log signing key is not a current key of its
/// entry.
pub(super) fn warn_if_refused(config: &Config, trust: &TrustState, state: &NodeState) {
    if !trust.own_member_active() {
        tracing::warn!(node = %config.node_id, "this node is not an active member of its trust list: peers will refuse it");
    }
    if let Some(w) = trust.warning(state.clock.now()) {
        tracing::warn!("{w}");
    }
    let own = trust.current();
    let own_key = state.signer.verifying_key().to_bytes();
    let listed = own.member(&config.node_id).is_some_and(|m| {
        m.signing_keys
            .iter()
            .any(|k| !k.retired && k.public_key == own_key)
    });
    if !listed {
        tracing::warn!(node = %config.node_id, public_key = %state.signer.public_hex(), "this node's log signing key is not a current key of its trust-list entry: peers will refuse its batches");
    }
}

//! The node process: opens the store, rebuilds the index, loads the keys,
//! binds the member listener and serves until asked to stop.
//!
//! [`run`] takes a shutdown future so that the binary (signals) and tests
//! (a channel) drive the same code. On shutdown the node stops accepting,
//! gives in-flight requests the configured drain time, flushes the store and
//! returns. Every acknowledged write was already flushed before its answer.

pub mod shutdown;

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::{RwLock, RwLockUpgradableReadGuard};
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{service::interceptor::InterceptedService, transport::Server};

use tokio_util::sync::CancellationToken;

use crate::{
    api::{
        admin::AdminService, contribution::ContributionService, federation::FederationService,
        screening::ScreeningService, wire::screening_server::ScreeningServer,
    },
    auth::{
        clients::{Authenticated, ClientCapability, Grants, Require},
        peers::PeerAuthLayer,
    },
    capture::CaptureLayer,
    config::Config,
    contribution::Contributions,
    epochs::{now_unix, KeyRing},
    federation::{
        answer_prefix::PrefixAnswers,
        ask_prefix::Remote,
        receive_batches::{self, Replication},
        send_batches::BatchSender,
        trust_sync, PeerDialer,
    },
    index::Index,
    node::{open_state, NodeError, NodeState, MEMBER_ADDR_FILE, PEER_ADDR_FILE},
    proto::{
        admin_server::AdminServer, contribution_server::ContributionServer,
        federation_server::FederationServer,
    },
    screening::Engine,
    store::StoreError,
    tls::{self, TlsError},
};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    #[error("binding {what} to {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("listener: {0}")]
    Serve(#[from] tonic::transport::Error),
}

async fn bind(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), ServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { what, addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { what, addr, source })?;
    Ok((listener, bound))
}

/// Writes a listener's bound address into the data directory.
fn write_addr(data_dir: &Path, file: &str, addr: SocketAddr) -> Result<PathBuf, ServerError> {
    let path = data_dir.join(file);
    std::fs::write(&path, format!("{addr}\n")).map_err(|source| ServerError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

type ServeTask = tokio::task::JoinHandle<Result<(), tonic::transport::Error>>;

/// Runs the node until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let state = Arc::new(open_state(&config).await?);
    for e in state.keys.get().all() {
        tracing::info!(epoch = e.id, fingerprint = %e.fingerprint, valid_now = e.valid_at(now_unix()), "token key loaded");
    }
    if state.keys.get().valid_at(now_unix()).next().is_none() {
        tracing::warn!(
            "no key epoch is valid now: nothing will match and contributions are refused"
        );
    }
    let stop = CancellationToken::new();
    let mut tasks: Vec<ServeTask> = Vec::new();
    let mut addr_files = Vec::new();

    // The member listener.
    let member_tls = tls::member_server_config(
        &config.member.cert,
        &config.member.key,
        &config.member.client_ca,
    )?;
    let (listener, member_addr) = bind("the member listener", config.member.listen).await?;
    let grants = Grants::new(config.member.clients.clone());
    let max_items = config.limits.max_batch_items;
    let max_bytes = config.limits.max_message_bytes;
    let engine = Engine::new(state.index.clone(), state.keys.clone());
    let replication = match (&config.federation, &state.trust) {
        (Some(fed), Some(trust)) => {
            let dialer = PeerDialer {
                cert: fed.peer.cert.clone(),
                key: fed.peer.key.clone(),
            };
            Some(Replication::new(
                state.logs.clone(),
                trust.clone(),
                dialer,
                receive_batches::Settings {
                    pull_interval: fed.pull_interval,
                    retention: config.retention,
                    only: fed.pull_from.clone(),
                },
                state.counters.clone(),
                state.clock.clone(),
            ))
        }
        _ => None,
    };
    let ready = match &replication {
        Some((_, ready)) => ready.clone(),
        None => tokio::sync::watch::channel(true).1,
    };
    let replication = replication.map(|(r, _)| r);
    let contributions = Arc::new(Contributions::new(
        config.node_id.clone(),
        state.logs.clone(),
        state.keys.clone(),
        state.signer.clone(),
        ready,
    ));
    let remote = match (&config.federation, &state.trust) {
        (Some(fed), Some(trust)) => Some(Arc::new(Remote::new(
            trust.clone(),
            PeerDialer {
                cert: fed.peer.cert.clone(),
                key: fed.peer.key.clone(),
            },
            state.clock.clone(),
        ))),
        _ => None,
    };
    let screening = ScreeningServer::new(ScreeningService::new(
        engine.clone(),
        max_items,
        state.match_limits.clone(),
        remote,
    ))
    .max_decoding_message_size(max_bytes)
    .max_encoding_message_size(usize::MAX);
    let contribution = ContributionServer::new(ContributionService::new(contributions, max_items))
        .max_decoding_message_size(max_bytes)
        .max_encoding_message_size(usize::MAX);
    let admin = AdminServer::new(AdminService::new(state.clone(), replication.clone()));
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ScreeningServer<ScreeningService>>()
        .await;
    health_reporter
        .set_serving::<ContributionServer<ContributionService>>()
        .await;
    let incoming = ReceiverStream::new(tls::accept_loop(
        listener,
        member_tls,
        tls::Connections::default(),
    ));
    let router = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(InterceptedService::new(
            screening,
            Require::new(&grants, ClientCapability::Screen),
        ))
        .add_service(InterceptedService::new(
            contribution,
            Require::new(&grants, ClientCapability::Contribute),
        ))
        .add_service(InterceptedService::new(
            admin,
            Require::new(&grants, ClientCapability::Admin),
        ))
        .add_service(InterceptedService::new(health.clone(), Authenticated))
        .add_service(InterceptedService::new(reflection(), Authenticated));
    tasks.push(tokio::spawn(router.serve_with_incoming_shutdown(
        incoming,
        stop.clone().cancelled_owned(),
    )));
    tracing::info!(node = %config.node_id, addr = %member_addr, "member listener ready (TLS 1.3, client certificates required)");

    // The peer listener and trust-list sync, for a federated node.
    if let (Some(fed), Some(trust)) = (&config.federation, &state.trust) {
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
        let (listener, addr) = bind("the peer listener", fed.peer.listen).await?;
        addr_files.push(write_addr(&config.data_dir, PEER_ADDR_FILE, addr)?);
        let incoming = ReceiverStream::new(tls::accept_loop(
            listener,
            peer_tls,
            trust.connections().clone(),
        ));
        let router = Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .layer(CaptureLayer::from_env(&config.node_id).map_err(|source| {
                ServerError::Write {
                    path: std::env::var_os(crate::capture::ENV)
                        .map(PathBuf::from)
                        .unwrap_or_default(),
                    source,
                }
            })?)
            .layer(PeerAuthLayer::new(trust.clone(), state.counters.clone()))
            .add_service(
                FederationServer::new(FederationService::new(
                    trust.clone(),
                    state.counters.clone(),
                    BatchSender::new(state.logs.clone(), stop.clone()),
                    PrefixAnswers::new(
                        state.queries.clone(),
                        trust.clone(),
                        engine.clone(),
                        state.clock.clone(),
                    ),
                ))
                .max_decoding_message_size(64 * 1024 * 1024)
                .max_encoding_message_size(64 * 1024 * 1024),
            )
            .add_service(health);
        tasks.push(tokio::spawn(router.serve_with_incoming_shutdown(
            incoming,
            stop.clone().cancelled_owned(),
        )));
        if !trust.own_member_active() {
            tracing::warn!(node = %config.node_id, "this node is not an active member of its trust list: peers will refuse it");
        }
        if let Some(w) = trust.warning(now_unix()) {
            tracing::warn!("{w}");
        }
        tracing::info!(%addr, "peer listener ready (TLS 1.3, member certificates pinned by the trust list)");
        let dialer = PeerDialer {
            cert: fed.peer.cert.clone(),
            key: fed.peer.key.clone(),
        };
        tokio::spawn(trust_sync::run(
            trust.clone(),
            dialer,
            fed.sync_interval,
            state.clock.clone(),
            stop.clone(),
        ));
        if let Some(r) = &replication {
            tokio::spawn(receive_batches::run(r.clone(), stop.clone()));
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
        tokio::spawn(rebuild_keys_on_change(state.clone(), stop.clone()));
    }

    tokio::spawn(merge_when_idle(state.index.clone(), stop.clone()));
    tokio::spawn(crate::retention::run(
        state.store.clone(),
        config.retention,
        config.purge_interval,
        stop.clone(),
    ));
    // Last, so that a waiting client finds every listener up.
    addr_files.push(write_addr(&config.data_dir, MEMBER_ADDR_FILE, member_addr)?);
    let mut first = futures::future::select_all(tasks.iter_mut());
    let failed = tokio::select! {
        (r, _, _) = &mut first => Some(r),
        _ = shutdown => None,
    };
    drop(first);
    stop.cancel();
    health_reporter
        .set_not_serving::<ScreeningServer<ScreeningService>>()
        .await;
    let result = match failed {
        Some(r) => {
            for t in &tasks {
                t.abort();
            }
            match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(ServerError::from(e)),
                Err(e) => {
                    tracing::error!(error = %e, "listener task failed");
                    Ok(())
                }
            }
        }
        None => {
            let drained =
                tokio::time::timeout(config.drain, futures::future::join_all(tasks.iter_mut()))
                    .await;
            match drained {
                Ok(results) => results
                    .into_iter()
                    .find_map(|r| match r {
                        Ok(Err(e)) => Some(Err(ServerError::from(e))),
                        _ => None,
                    })
                    .unwrap_or(Ok(())),
                Err(_) => {
                    tracing::warn!(
                        drain_seconds = config.drain.as_secs(),
                        "drain deadline passed; closing remaining connections"
                    );
                    for t in &tasks {
                        t.abort();
                    }
                    Ok(())
                }
            }
        }
    };
    for f in addr_files {
        let _ = std::fs::remove_file(f);
    }
    state.store.flush().await?;
    tracing::info!("store flushed; node stopped");
    result
}

fn reflection() -> tonic_reflection::server::v1::ServerReflectionServer<
    impl tonic_reflection::server::v1::ServerReflection,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("descriptor set compiled by build.rs is valid")
}

/// Merges the index's pending changes once writes pause for a second.
/// Until then every look-up that misses the sorted array also probes the
/// change map (up to a quarter of the indicators after a large ingest, one
/// cache miss per probe); merged, look-ups are batched array reads again.
/// The new array is built under an upgradable read lock, beside look-ups
/// (writes wait, and so do look-ups that come after a waiting write); the
/// write lock is held only to swap it in and free the old one.
async fn merge_when_idle(index: Arc<RwLock<Index>>, stop: CancellationToken) {
    let mut last = index.read().pending().1;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let (pending, applied) = index.read().pending();
        if pending > 0 && applied == last {
            let index = index.clone();
            let merged = tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let ix = index.upgradable_read();
                let merged = ix.merged()?;
                let built = started.elapsed();
                // Installing frees the old arrays too (a small part of it).
                RwLockUpgradableReadGuard::upgrade(ix).install(merged);
                Some((built, started.elapsed() - built))
            })
            .await;
            if let Ok(Some((built, locked))) = merged {
                tracing::debug!(
                    changes = pending,
                    built_ms = built.as_millis() as u64,
                    write_locked_us = locked.as_micros() as u64,
                    "index changes merged while writes paused"
                );
            }
        }
        last = applied;
    }
}

/// A new trust list may change epoch windows: rebuild the key ring.
async fn rebuild_keys_on_change(state: Arc<NodeState>, stop: CancellationToken) {
    let Some(trust) = state.trust.clone() else {
        return;
    };
    let mut changed = trust.subscribe();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            r = changed.changed() => {
                if r.is_err() {
                    return;
                }
                let list = trust.current();
                match KeyRing::build(&state.loaded_keys, Some(&list.body().epochs), false) {
                    Ok(ring) => {
                        state.keys.set(ring);
                        tracing::info!(version = list.version(), "key epochs updated from the trust list");
                    }
                    Err(e) => tracing::error!(error = %e, "key epochs not updated"),
                }
            }
        }
    }
}

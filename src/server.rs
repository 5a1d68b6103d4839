//! The node process: opens the store, rebuilds the index, loads the keys,
//! binds the member listener and serves until asked to stop.
//!
//! [`run`] takes a shutdown future so that the binary (signals) and tests
//! (a channel) drive the same code. On shutdown the node stops accepting,
//! gives in-flight requests the configured drain time, flushes the store and
//! returns. Every acknowledged write was already flushed before its answer.

use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{service::interceptor::InterceptedService, transport::Server};

use crate::{
    api::{admin::AdminService, contribution::ContributionService, screening::ScreeningService},
    auth::{Authenticated, Capability, Grants, Require},
    config::Config,
    contribution::Contributions,
    index::{Index, IndexError},
    keyring::{now_unix, KeyRing},
    proto::{
        admin_server::AdminServer, contribution_server::ContributionServer,
        screening_server::ScreeningServer,
    },
    screening::Engine,
    store::{Store, StoreError},
    tls::{self, TlsError},
    token::KeyError,
};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rebuilding the index: {0}")]
    Index(#[from] IndexError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("member listener tls: {0}")]
    Tls(#[from] TlsError),
    #[error("binding the member listener to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    AddrFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("member listener: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// What the services share.
pub struct NodeState {
    pub node_id: String,
    pub store: Arc<Store>,
    pub index: Arc<RwLock<Index>>,
    pub keys: Arc<KeyRing>,
    pub started: Instant,
    pub started_unix: i64,
}

/// Name of the file, in the data directory, where a running node writes the
/// member listener's bound address (useful with port 0).
pub const MEMBER_ADDR_FILE: &str = "member.addr";

/// Opens the store and replays every batch into a fresh index.
pub fn open_state(config: &Config) -> Result<NodeState, ServerError> {
    let started = Instant::now();
    let keys = KeyRing::load(&config.epochs)?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::AddrFile {
        path: config.data_dir.clone(),
        source,
    })?;
    let store = Store::open(&config.data_dir, config.store.cache_mb)?;
    let mut index = Index::new();
    let mut batches = 0u64;
    for batch in store.batches() {
        index.apply(&batch?)?;
        batches += 1;
    }
    tracing::info!(
        batches,
        tokens = index.tokens(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "index rebuilt from the store"
    );
    Ok(NodeState {
        node_id: config.node_id.clone(),
        store: Arc::new(store),
        index: Arc::new(RwLock::new(index)),
        keys: Arc::new(keys),
        started,
        started_unix: now_unix(),
    })
}

/// Runs the node until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let state = Arc::new(open_state(&config)?);
    for e in state.keys.all() {
        tracing::info!(epoch = e.id, fingerprint = %e.fingerprint, valid_now = e.valid_at(now_unix()), "token key loaded");
    }
    if state.keys.valid_at(now_unix()).next().is_none() {
        tracing::warn!(
            "no key epoch is valid now: nothing will match and contributions are refused"
        );
    }
    let tls_config = tls::member_server_config(
        &config.member.cert,
        &config.member.key,
        &config.member.client_ca,
    )?;
    let listener = TcpListener::bind(config.member.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.member.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.member.listen,
        source,
    })?;
    let addr_file = config.data_dir.join(MEMBER_ADDR_FILE);
    std::fs::write(&addr_file, format!("{addr}\n")).map_err(|source| ServerError::AddrFile {
        path: addr_file.clone(),
        source,
    })?;

    let grants = Grants::new(config.member.clients.clone());
    let max_items = config.limits.max_batch_items;
    let max_bytes = config.limits.max_message_bytes;
    let engine = Engine::new(state.index.clone(), state.keys.clone());
    let contributions = Arc::new(Contributions::new(
        config.node_id.clone(),
        state.store.clone(),
        state.index.clone(),
        state.keys.clone(),
    ));

    let screening = ScreeningServer::new(ScreeningService::new(engine, max_items))
        .max_decoding_message_size(max_bytes)
        .max_encoding_message_size(usize::MAX);
    let contribution = ContributionServer::new(ContributionService::new(contributions, max_items))
        .max_decoding_message_size(max_bytes)
        .max_encoding_message_size(usize::MAX);
    let admin = AdminServer::new(AdminService::new(state.clone()));
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ScreeningServer<ScreeningService>>()
        .await;
    health_reporter
        .set_serving::<ContributionServer<ContributionService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("descriptor set compiled by build.rs is valid");

    let incoming = ReceiverStream::new(tls::accept_loop(listener, tls_config));
    let router = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(InterceptedService::new(
            screening,
            Require::new(&grants, Capability::Screen),
        ))
        .add_service(InterceptedService::new(
            contribution,
            Require::new(&grants, Capability::Contribute),
        ))
        .add_service(InterceptedService::new(
            admin,
            Require::new(&grants, Capability::Admin),
        ))
        .add_service(InterceptedService::new(health, Authenticated))
        .add_service(InterceptedService::new(reflection, Authenticated));

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut serve = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = stop_rx.await;
    }));
    tracing::info!(node = %config.node_id, %addr, "member listener ready (TLS 1.3, client certificates required)");

    let result = tokio::select! {
        r = &mut serve => Some(r),
        _ = shutdown => None,
    };
    let served = match result {
        Some(r) => r,
        None => {
            let _ = stop_tx.send(());
            health_reporter
                .set_not_serving::<ScreeningServer<ScreeningService>>()
                .await;
            match tokio::time::timeout(config.drain, &mut serve).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(
                        drain_seconds = config.drain.as_secs(),
                        "drain deadline passed; closing remaining connections"
                    );
                    serve.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    let _ = std::fs::remove_file(&addr_file);
    state.store.flush().await?;
    tracing::info!("store flushed; node stopped");
    match served {
        Ok(r) => r.map_err(ServerError::from),
        Err(e) => {
            tracing::error!(error = %e, "server task failed");
            Ok(())
        }
    }
}

//! The node process: opens the store, rebuilds the index, loads the keys,
//! binds the member listener and serves until asked to stop.
//!
//! [`run`] takes a shutdown future so that the binary (signals) and tests
//! (a channel) drive the same code. On shutdown the node stops accepting,
//! gives in-flight requests the configured drain time, flushes the store and
//! returns. Every acknowledged write was already flushed before its answer.

pub(crate) mod health;
mod member;
mod peer;
pub(crate) mod shutdown;
mod tasks;

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    contribution::Contributions,
    federation::{
        ask_prefix::Remote,
        receive_batches::{self, Replication},
    },
    node::{open_state, NodeError, NodeState, MEMBER_ADDR_FILE, PEER_ADDR_FILE},
    screening::Engine,
    store::StoreError,
    tls::TlsError,
};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ServerError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("binding {what} to {addr}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("listener failed")]
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
pub(crate) async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let state = Arc::new(open_state(&config).await?);
    log_keys(&state);
    let stop = CancellationToken::new();
    let mut tasks: Vec<ServeTask> = Vec::new();
    let mut addr_files = Vec::new();
    let (member_listener, member_addr) = bind("the member listener", config.member.listen).await?;
    let engine = Engine::new(state.index.clone(), state.keys.clone());
    let federated = match (&config.federation, &state.trust) {
        (Some(fed), Some(trust)) => Some((fed, trust.clone(), peer::dialer(fed))),
        _ => None,
    };
    let replication = federated.as_ref().map(|(fed, trust, dialer)| {
        Replication::new(
            state.logs.clone(),
            trust.clone(),
            dialer.clone(),
            receive_batches::Settings {
                pull_interval: fed.pull_interval,
                retention: config.retention,
                only: fed.pull_from.clone(),
                pull_idle: fed.pull_idle_timeout,
                backoff_min: fed.backoff_min,
                backoff_max: fed.backoff_max,
            },
            state.counters.clone(),
            state.clock.clone(),
        )
    });
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
        config.limits.max_batch_bytes,
    ));
    let remote = federated.as_ref().map(|(_, trust, dialer)| {
        Arc::new(Remote::new(
            trust.clone(),
            dialer.clone(),
            state.clock.clone(),
        ))
    });
    let (health, health_service) = tonic_health::server::health_reporter();
    // Statuses set before either listener answers, kept current after.
    let (screening, federation) =
        health::statuses(state.clock.now(), &state.keys.get(), state.trust.as_deref());
    health::set(&health, screening, federation).await;
    tokio::spawn(health::run(
        health.clone(),
        state.clone(),
        state.trust.clone(),
        stop.clone(),
    ));
    tasks.push(
        member::serve(
            &config,
            &state,
            member_listener,
            member::MemberServices {
                engine: engine.clone(),
                contributions,
                remote,
                replication: replication.clone(),
            },
            &health,
            health_service.clone(),
            &stop,
        )
        .await?,
    );
    tracing::info!(node = %config.node_id, addr = %member_addr, "member listener ready (TLS 1.3, client certificates required)");

    if let Some((fed, trust, dialer)) = federated {
        let (listener, addr) = bind("the peer listener", fed.peer.listen).await?;
        tasks.push(peer::serve(
            &config,
            fed,
            &trust,
            &state,
            engine,
            listener,
            health_service,
            &stop,
        )?);
        addr_files.push(write_addr(&config.data_dir, PEER_ADDR_FILE, addr)?);
        peer::warn_if_refused(&config, &trust, &state);
        tracing::info!(%addr, "peer listener ready (TLS 1.3, member certificates pinned by the trust list)");
        let feedback = &state.feedback_state;
        for (queue, route) in feedback.deliveries() {
            tokio::spawn(crate::feedback::deliver::run(
                queue,
                route,
                state.node_id.clone(),
                trust.clone(),
                dialer.clone(),
                stop.clone(),
            ));
        }
        // As an operator: the daily batches of anonymous feedback, delivered
        // to each origin under this node's identity.
        if let Some(relay) = &feedback.relay {
            tokio::spawn(crate::feedback::relay::run(
                relay.clone(),
                state.clock.clone(),
                stop.clone(),
            ));
            tokio::spawn(crate::feedback::deliver::run(
                relay.out.clone(),
                crate::feedback::deliver::Route::Origin,
                state.node_id.clone(),
                trust.clone(),
                dialer.clone(),
                stop.clone(),
            ));
        }
        peer::spawn_tasks(
            &trust,
            dialer,
            fed,
            replication.as_ref(),
            state.counters.clone(),
            state.clock.clone(),
            &stop,
        );
    }
    tasks::spawn(&state, &config, &stop);
    // Last, so that a waiting client finds every listener up.
    addr_files.push(write_addr(&config.data_dir, MEMBER_ADDR_FILE, member_addr)?);

    let result = serve_until(tasks, shutdown, &stop, &health, &config).await;
    for f in addr_files {
        let _ = std::fs::remove_file(f);
    }
    state.store.flush().await?;
    tracing::info!("store flushed; node stopped");
    result
}

fn log_keys(state: &NodeState) {
    let now = state.clock.now();
    tracing::info!(
        clock = state.clock.kind(),
        now = %crate::time::format_time(now),
        "node clock"
    );
    for e in state.keys.get().all() {
        tracing::info!(epoch = e.id, fingerprint = %e.fingerprint, valid_now = e.valid_at(now), "token key loaded");
    }
    if state.keys.get().valid_at(now).next().is_none() {
        tracing::warn!(
            "no key epoch is valid now: nothing will match and contributions are refused"
        );
    }
}

/// Waits for `shutdown` or a listener that ends, then cancels `stop`,
/// marks Screening not serving (so that health watchers and load balancers
/// learn it as the drain starts) and gives in-flight requests the
/// configured drain time.
async fn serve_until(
    mut tasks: Vec<ServeTask>,
    shutdown: impl Future<Output = ()>,
    stop: &CancellationToken,
    health: &tonic_health::server::HealthReporter,
    config: &Config,
) -> Result<(), ServerError> {
    let mut first = futures::future::select_all(tasks.iter_mut());
    let failed = tokio::select! {
        (r, _, _) = &mut first => Some(r),
        _ = shutdown => None,
    };
    drop(first);
    stop.cancel();
    health::not_serving(health, config.federation.is_some()).await;
    match failed {
        Some(r) => {
            for t in &tasks {
                t.abort();
            }
            match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(ServerError::from(e)),
                Err(e) => {
                    tracing::error!(error = %crate::telemetry::chain(&e), "listener task failed");
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
    }
}

//! The node's state: what every service and background task shares (store,
//! index, origin logs, keys, trust list, limits, clock), how it is opened
//! from the config ([`open_state`]), and the node's status report as a
//! domain value ([`NodeState::status`]), which the Admin API only converts.

use std::{path::PathBuf, sync::Arc, time::Instant};

use parking_lot::RwLock;

use crate::{
    config::Config,
    epochs::{load_keys, KeyRing, KeyRingError, Keys, LoadedKey},
    federation::prefix::Gate,
    index::{Index, IndexError},
    keys::{
        signing::{KeyFileError, SigningKeyFile},
        KeyError,
    },
    logs::OriginLogs,
    ratelimit::CallerLimits,
    store::{Store, StoreError},
    time::{Clock, ClockError},
    trust::state::{TrustState, TrustStateError},
};

/// Why a node's state could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rebuilding the index: {0}")]
    Index(#[from] IndexError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    KeyRing(#[from] KeyRingError),
    #[error(transparent)]
    Trust(#[from] TrustStateError),
    #[error("node.signing_key: {0}")]
    SigningKey(#[from] KeyFileError),
    #[error(transparent)]
    Clock(#[from] ClockError),
    #[error("creating {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the services share.
pub struct NodeState {
    pub node_id: String,
    pub store: Arc<Store>,
    pub index: Arc<RwLock<Index>>,
    pub logs: Arc<OriginLogs>,
    /// Signs this node's origin-log batches.
    pub signer: Arc<SigningKeyFile>,
    pub keys: Keys,
    /// The key files, kept to rebuild the ring when the trust list changes.
    pub loaded_keys: Vec<LoadedKey>,
    /// The trust list in force (federated nodes only).
    pub trust: Option<Arc<TrustState>>,
    pub started: Instant,
    pub started_unix: i64,
    /// Where the node's time comes from ([`crate::time`]): the system clock,
    /// or a test build's settable clock.
    pub clock: Clock,
    /// Prefix queries answered for other members: limits and counts.
    pub queries: Arc<Gate>,
    /// The member listener's optional limits on match calls.
    pub match_limits: Arc<CallerLimits>,
}

/// Files, in the data directory, where a running node writes its listeners'
/// bound addresses (useful with port 0); removed on a clean stop.
pub const MEMBER_ADDR_FILE: &str = "member.addr";
pub const PEER_ADDR_FILE: &str = "peer.addr";

/// Opens the store, replays every batch into a fresh index, loads the trust
/// list and the keys (refusing a key that does not match its epoch).
pub async fn open_state(config: &Config) -> Result<NodeState, NodeError> {
    let started = Instant::now();
    let clock = Clock::from_env()?;
    let loaded_keys = load_keys(&config.epochs)?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::Write {
        path: config.data_dir.clone(),
        source,
    })?;
    let store = Arc::new(Store::open(&config.data_dir, config.store.cache_mb)?);
    let trust = match &config.federation {
        Some(f) => Some(Arc::new(
            TrustState::open(
                store.clone(),
                &f.root_file,
                &config.node_id,
                f.expiry_warning_secs,
                clock.clone(),
            )
            .await?,
        )),
        None => None,
    };
    let ring = {
        let list = trust.as_ref().map(|t| t.current());
        KeyRing::build(
            &loaded_keys,
            list.as_ref().map(|l| l.body().epochs.as_slice()),
            true,
        )?
    };
    let signer = Arc::new(SigningKeyFile::load(&config.signing_key)?);
    let mut batches = 0u64;
    let mut index = Index::build(store.batches_read_ahead()?.map(|b| {
        batches += 1;
        b.map_err(NodeError::from)
    }))?;
    for (origin, ev) in store.forks()? {
        let from = crate::batch::fork_point(&ev).unwrap_or(1);
        tracing::error!(origin = %origin, frozen_from_seq = from, "origin frozen by fork evidence");
        index.freeze(&origin, from);
    }
    let index = Arc::new(RwLock::new(index));
    tracing::info!(
        batches,
        tokens = index.read().tokens(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "index rebuilt from the store"
    );
    Ok(NodeState {
        node_id: config.node_id.clone(),
        logs: Arc::new(OriginLogs::new(store.clone(), index.clone())),
        store,
        index,
        signer,
        keys: Keys::new(ring),
        loaded_keys,
        trust,
        started,
        started_unix: clock.now(),
        clock,
        queries: Arc::new(Gate::new()),
        match_limits: Arc::new(CallerLimits::new(
            config.limits.match_requests_per_second,
            config.limits.match_burst,
        )),
    })
}

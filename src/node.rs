//! The node's state: what every service and background task shares (store,
//! index, origin logs, keys, trust list, limits, clock), how it is opened
//! from the config ([`open_state`]), and the node's status report as a
//! domain value ([`NodeState::status`]), which the Admin API only converts.

mod figures;

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Instant};

use parking_lot::RwLock;

use crate::{
    alerts::{
        engine::{Monitor, MonitorStatus},
        log::{AlertLog, AlertLogError},
        webhook::{Webhook, WebhookError, WebhookStatus},
    },
    batch::fork_point,
    config::Config,
    counters::{Counters, Rechecks, SessionFailure, Snapshot},
    dispositions::{DispositionCounts, DispositionError, Dispositions},
    epochs::{load_keys, KeyRing, KeyRingError, Keys, LoadedKey},
    federation::{
        answer_prefix::{Gate, QueryCounts},
        forks::{self, ForkState},
        receive_batches::Replication,
    },
    feedback::{Feedback, FeedbackStatus},
    flood::{Flood, FloodError, FloodStatus},
    ident::Kind,
    index::Index,
    keys::{
        signing::{KeyFileError, SigningKeyFile},
        KeyError,
    },
    logs::{self, LogsError, OriginLogs, SetAside},
    outcome::FeedbackSink,
    ratelimit::CallerLimits,
    store::{Store, StoreError},
    time::{Clock, ClockError},
    trust::state::{TrustState, TrustStateError},
    watchlist::{WatchError, WatchKey, Watchlist},
};

/// Why a node's state could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rebuilding the index")]
    Logs(#[from] LogsError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    KeyRing(#[from] KeyRingError),
    #[error(transparent)]
    Trust(#[from] TrustStateError),
    #[error("node.signing_key")]
    SigningKey(#[from] KeyFileError),
    #[error(transparent)]
    Clock(#[from] ClockError),
    #[error("watchlist")]
    Watchlist(#[from] WatchError),
    #[error(transparent)]
    AlertLog(#[from] AlertLogError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error(transparent)]
    Feedback(#[from] crate::feedback::OpenError),
    #[error("opening the dispositions in {path}")]
    DispositionsOpen {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("reading the dispositions back")]
    Dispositions(#[from] DispositionError),
    #[error(transparent)]
    Flood(#[from] FloodError),
    #[error("creating {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the services share.
pub(crate) struct NodeState {
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
    /// Prefix queries answered for other members: limits (counts are in
    /// `counters`).
    pub queries: Arc<Gate>,
    /// The member listener's optional limits on match calls.
    pub match_limits: Arc<CallerLimits>,
    /// What happened with each peer (batches received, refusals, pulls),
    /// for Status and metrics ([`crate::counters`]).
    pub counters: Arc<Counters>,
    /// The bank's book under continuous screening; `None` without
    /// `[watchlist] key_file`.
    pub watchlist: Option<Arc<Watchlist>>,
    /// Alerts for the watchlist: told of new and removed watch entries.
    pub monitor: Arc<Monitor>,
    /// The alert log (`<data_dir>/alerts`, [`crate::alerts::log`]).
    pub alert_log: Arc<AlertLog>,
    /// The webhook sink, if `[alerts.webhook]` configures one.
    pub webhook: Option<Arc<Webhook>>,
    /// The bank's dispositions (`<data_dir>/dispositions`).
    pub dispositions: Arc<Dispositions>,
    /// Where dispositions and flood control hand feedback for the origin
    /// ([`crate::outcome::NoFeedback`] while feedback is off).
    pub feedback: Arc<dyn FeedbackSink>,
    /// Flood control: daily counts per indicator and the quarantines
    /// (`<data_dir>/flood`, [`crate::flood`]).
    pub flood: Arc<Flood>,
    /// The feedback side: mode, queue, and the origin's record of what it
    /// received ([`crate::feedback`]).
    pub feedback_state: Arc<Feedback>,
}

/// The dispositions' folder in the data directory.
pub(crate) const DISPOSITIONS_DIR: &str = "dispositions";

/// Flood control's folder in the data directory.
pub(crate) const FLOOD_DIR: &str = "flood";

/// The watchlist's folder in the data directory.
pub(crate) const WATCHLIST_DIR: &str = "watchlist";

/// Files, in the data directory, where a running node writes its listeners'
/// bound addresses (useful with port 0); removed on a clean stop.
pub(crate) const MEMBER_ADDR_FILE: &str = "member.addr";
pub(crate) const PEER_ADDR_FILE: &str = "peer.addr";

/// Opens the store, replays every batch into a fresh index (setting aside
/// what does not apply, [`logs::open`]), loads the trust list and the keys
/// (refusing a key that does not match its epoch).
pub(crate) async fn open_state(config: &Config) -> Result<NodeState, NodeError> {
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
                f.chain_file.as_deref(),
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
    // The watchlist's journal is read on a thread of its own while the
    // index is rebuilt from the store: a start takes the longer of the two,
    // not their sum.
    let opening_watchlist = match &config.watchlist_key {
        Some(path) => {
            let key = WatchKey::load(path)?;
            let dir = config.data_dir.join(WATCHLIST_DIR);
            Some(std::thread::spawn(move || {
                let opened = Instant::now();
                Watchlist::open(&dir, key).map(|w| (w, opened.elapsed()))
            }))
        }
        None => None,
    };
    let counters = Arc::new(Counters::new());
    // After a key rotation, what no longer verifies is signed again (the
    // own log) or dropped, before the index is rebuilt from the store.
    if let Some(t) = &trust {
        let r = logs::recheck_signatures(&store, &t.current(), &config.node_id, &signer, |_| {})?;
        counters.batches_rechecked(r.dropped, r.resigned);
    }
    // What does not apply is set aside (logged, in Status), never a failed start.
    let logs::Opened {
        index,
        batches,
        set_aside,
    } = logs::open(&store)?;
    let index = Arc::new(RwLock::new(index));
    let logs = Arc::new(OriginLogs::new(store.clone(), index.clone(), set_aside));
    // Fork evidence is checked again against the list in force: what no
    // longer verifies no longer freezes.
    match &trust {
        Some(t) => {
            forks::recheck(&logs, &t.current(), &counters)?;
        }
        None => {
            for (origin, ev) in store.forks()? {
                index.write().set_frozen(&origin, fork_point(&ev));
            }
        }
    }
    for (origin, from) in index.read().frozen() {
        tracing::error!(origin = %origin, frozen_from_seq = from, "origin frozen by fork evidence or a suspension");
    }
    tracing::info!(
        batches,
        tokens = index.read().tokens(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "index rebuilt from the store"
    );
    let watchlist = match opening_watchlist {
        Some(opening) => {
            let (w, took) = opening
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            tracing::info!(
                entries = w.len(),
                memory_bytes = w.heap_bytes() as u64,
                elapsed_ms = took.as_millis() as u64,
                "watchlist opened"
            );
            Some(Arc::new(w))
        }
        None => None,
    };
    let alert_log = Arc::new(AlertLog::open(&config.data_dir.join("alerts"))?);
    let webhook = match &config.webhook {
        Some(w) => Some(Arc::new(Webhook::open(
            w.url.clone(),
            &w.secret_file,
            w.ca_file.as_deref(),
            w.timeout,
            alert_log.clone(),
            clock.clone(),
        )?)),
        None => None,
    };
    let dispositions = {
        let path = config.data_dir.join(DISPOSITIONS_DIR);
        let db = crate::store::open_db(
            &sled::Config::new()
                .path(&path)
                .cache_capacity(4 * 1024 * 1024)
                .use_compression(false),
        )
        .map_err(|source| NodeError::DispositionsOpen { path, source })?;
        Arc::new(Dispositions::open(db)?)
    };
    // Today's prefix-query usage per member, as recorded before a restart.
    let queries = Arc::new(Gate::persistent(
        counters.clone(),
        store.clone(),
        clock.now(),
    )?);
    let feedback_state = Arc::new(Feedback::open(
        &config.data_dir,
        config.feedback,
        config.feedback_relay.clone(),
    )?);
    let feedback = feedback_state.sink();
    let flood = Arc::new(Flood::open(
        &config.data_dir.join(FLOOD_DIR),
        config.flood,
        feedback.clone(),
        clock.now(),
    )?);
    Ok(NodeState {
        node_id: config.node_id.clone(),
        feedback_state,
        logs,
        store,
        index,
        signer,
        keys: Keys::new(ring),
        loaded_keys,
        trust,
        started,
        started_unix: clock.now(),
        clock,
        queries,
        match_limits: Arc::new(CallerLimits::new(
            config.limits.match_requests_per_second,
            config.limits.match_burst,
        )),
        counters,
        watchlist,
        monitor: Arc::new(Monitor::new()),
        alert_log,
        webhook,
        dispositions,
        feedback,
        flood,
    })
}

/// The node's status report, as the Admin API serves it and `cix status`
/// prints it. Built by [`NodeState::status`]; [`crate::api`] only converts it.
#[derive(Debug, Clone)]
pub(crate) struct NodeStatus {
    pub node_id: String,
    pub version: &'static str,
    pub started_unix: i64,
    pub uptime_seconds: u64,
    /// Active indicators per kind.
    pub by_kind: Vec<(Kind, u64)>,
    /// Every origin this node holds, sorted by name.
    pub origins: Vec<OriginStatus>,
    pub epochs: Vec<EpochStatus>,
    pub store_bytes: u64,
    pub batches: u64,
    /// Index changes not yet merged into the sorted array.
    pub index_pending: u64,
    /// Match calls on the member listener refused by its limits.
    pub client_requests_limited: u64,
    /// Prefix queries answered for other members, per member: the
    /// prefix-query part of [`NodeStatus::counters`], in the shape Status
    /// has served it since before the counters existed.
    pub queries_served: Vec<(String, QueryCounts)>,
    /// The trust list in force (federated nodes only).
    pub trust: Option<TrustStatus>,
    /// What this node last saw of each peer it replicates with.
    pub peers: Vec<PeerStatus>,
    /// Fork evidence, in force (the origin frozen from its fork point)
    /// and lifted ([`crate::federation::forks`]).
    pub forks: Vec<ForkState>,
    /// What re-checking stored evidence and batches against a new list did.
    pub rechecks: Rechecks,
    /// Stored batches (each with the rest of its origin's log) and fork
    /// evidence the start set aside ([`crate::logs`]).
    pub set_aside: Vec<SetAside>,
    /// Whether contributions are open (the own log's head is confirmed).
    pub own_log_ready: bool,
    /// The node's counters per peer ([`crate::counters`]).
    pub counters: Snapshot,
    /// The watchlist, if the node keeps one.
    pub watchlist: Option<WatchStatus>,
    /// The alert log's newest and oldest retained event numbers.
    pub alerts_newest: u64,
    pub alerts_oldest: u64,
    /// The webhook sink's figures (all zero without one).
    pub webhook: WebhookStatus,
    /// The alert engine's figures.
    pub alerts: MonitorStatus,
    /// The dispositions' figures.
    pub dispositions: DispositionCounts,
    /// Flood control's figures.
    pub flood: FloodStatus,
    /// Feedback sent and received.
    pub feedback: FeedbackStatus,
}

/// The watchlist in Status: counts only, never a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WatchStatus {
    pub entries: u64,
    /// The newest key epoch valid now (0: none).
    pub newest_valid_epoch: u32,
    /// Entries without a hash under it.
    pub lacking_newest_epoch: u64,
}

/// One origin log on this node.
#[derive(Debug, Clone)]
pub(crate) struct OriginStatus {
    pub origin: String,
    pub indicators: u64,
    pub last_seq: u64,
}

/// One key epoch the node holds.
#[derive(Debug, Clone)]
pub(crate) struct EpochStatus {
    pub id: u32,
    pub valid_from: i64,
    pub valid_until: i64,
    pub fingerprint: String,
    pub valid_now: bool,
}

/// The trust list in force.
#[derive(Debug, Clone)]
pub(crate) struct TrustStatus {
    pub version: u64,
    pub expires_at: i64,
    pub members: u32,
    pub warning: Option<String>,
    /// Open connections on the peer listener.
    pub connections: u32,
}

/// One peer as this node's replication sees it.
#[derive(Debug, Clone)]
pub(crate) struct PeerStatus {
    pub member: String,
    pub connected: bool,
    pub last_pull_unix: i64,
    pub last_error: String,
    /// Why the last session ended, if one has.
    pub last_failure: Option<SessionFailure>,
    /// Sessions failed in a row (0 after a healthy one).
    pub failures_in_a_row: u32,
    /// When the next attempt is due by the node's clock (0: a session is
    /// open or under way).
    pub next_attempt_unix: i64,
    /// Per origin: the peer's head and how far this node is behind it.
    pub origins: Vec<OriginLag>,
}

/// How far this node is behind a peer on one origin.
#[derive(Debug, Clone)]
pub(crate) struct OriginLag {
    pub origin: String,
    pub peer_last_seq: u64,
    pub lag: u64,
}

impl NodeState {
    /// The node's status now; `replication` is the node's replication
    /// with its peers, if it is federated.
    pub(crate) fn status(
        &self,
        replication: Option<&Replication>,
    ) -> Result<NodeStatus, NodeError> {
        let now = self.clock.now();
        let (by_kind, by_origin) = self.index.read().counts(now);
        let heads = self.store.heads()?;
        let mut origins: Vec<OriginStatus> = heads
            .iter()
            .map(|(origin, head)| OriginStatus {
                origin: origin.clone(),
                indicators: by_origin
                    .iter()
                    .find(|(o, _)| &**o == origin)
                    .map(|(_, c)| *c)
                    .unwrap_or(0),
                last_seq: head.last_seq,
            })
            .collect();
        origins.sort_by(|a, b| a.origin.cmp(&b.origin));
        let mine: HashMap<&str, u64> = heads
            .iter()
            .map(|(o, h)| (o.as_str(), h.last_seq))
            .collect();
        let peers = replication
            .map(|r| r.views())
            .unwrap_or_default()
            .into_iter()
            .map(|(member, v)| {
                let mut origins: Vec<OriginLag> = v
                    .heads
                    .iter()
                    .map(|(o, seq)| OriginLag {
                        origin: o.clone(),
                        peer_last_seq: *seq,
                        lag: seq.saturating_sub(mine.get(o.as_str()).copied().unwrap_or(0)),
                    })
                    .collect();
                origins.sort_by(|a, b| a.origin.cmp(&b.origin));
                PeerStatus {
                    member,
                    connected: v.connected,
                    last_pull_unix: v.last_pull_unix,
                    last_error: v.last_error,
                    last_failure: v.last_failure,
                    failures_in_a_row: v.failures_in_a_row,
                    next_attempt_unix: v.next_attempt_unix,
                    origins,
                }
            })
            .collect();
        let list = self.trust.as_ref().map(|t| t.current());
        let forks = forks::states(&self.store, list.as_deref())?;
        let trust = self.trust.as_ref().map(|t| {
            let list = t.current();
            TrustStatus {
                version: list.version(),
                expires_at: list.expires_at(),
                members: list.body().members.len() as u32,
                warning: t.warning(now),
                connections: t.connections().len() as u32,
            }
        });
        Ok(NodeStatus {
            node_id: self.node_id.clone(),
            version: env!("CARGO_PKG_VERSION"),
            started_unix: self.started_unix,
            uptime_seconds: self.started.elapsed().as_secs(),
            by_kind,
            origins,
            epochs: self
                .keys
                .get()
                .all()
                .iter()
                .map(|e| EpochStatus {
                    id: e.id,
                    valid_from: e.valid_from,
                    valid_until: e.valid_until,
                    fingerprint: e.fingerprint.clone(),
                    valid_now: e.valid_at(now),
                })
                .collect(),
            store_bytes: self.store.size_on_disk(),
            batches: self.store.batch_count() as u64,
            index_pending: self.index.read().pending().0 as u64,
            client_requests_limited: self.match_limits.refused(),
            queries_served: self.queries.counts(),
            trust,
            peers,
            forks,
            rechecks: self.counters.rechecks(),
            set_aside: self.logs.set_aside().to_vec(),
            own_log_ready: replication.is_none_or(|r| r.is_ready()),
            counters: self.counters.snapshot(),
            alerts_newest: self.alert_log.newest(),
            alerts_oldest: self.alert_log.oldest(),
            webhook: self
                .webhook
                .as_ref()
                .map(|w| w.status())
                .unwrap_or_default(),
            alerts: self.monitor.status(),
            dispositions: self.dispositions.counts(),
            flood: self.flood.status(now),
            watchlist: self.watch_status(now),
            feedback: self.feedback_state.status(),
        })
    }

    /// The watchlist's counts against the newest key epoch valid at `now`.
    pub(crate) fn watch_status(&self, now: i64) -> Option<WatchStatus> {
        let w = self.watchlist.as_ref()?;
        let counts = w.counts();
        let newest = self.keys.get().newest_valid(now).map_or(0, |e| e.id);
        Some(WatchStatus {
            entries: counts.entries,
            newest_valid_epoch: newest,
            lacking_newest_epoch: if newest == 0 {
                0
            } else {
                counts.lacking(newest)
            },
        })
    }
}

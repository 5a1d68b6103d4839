//! The trust list in force on this node, and what follows from it.
//!
//! The node starts from the root list named in its config, or from the
//! newer list it accepted before and kept in its store (verified again at
//! every start, so a list corrupted or edited on disk stops the node rather
//! than being trusted). A new list is accepted only through
//! [`TrustState::offer`], which applies every rule of
//! [`crate::trust::list::verify_update`] on the blocking pool and outside
//! any lock, then (under the apply lock, only for a list that verified)
//! makes the list durable, swaps it in, and closes at once every open peer
//! connection whose member is no longer active. Watchers
//! ([`TrustState::subscribe`]) rebuild the key ring and pass the list on to
//! peers; long-lived sessions and streams re-check their right to run at
//! every new list and as the node's clock moves
//! ([`TrustState::until_refused`]). Membership, expiry and updates are judged
//! at the node's [`Clock`], which the state carries for everyone who holds it.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use parking_lot::RwLock;
use tokio::sync::watch;

use crate::{
    proto::{Member, PeerCapability, SignedTrustList},
    store::{Store, StoreError},
    time::{format_time, Clock},
    tls::Connections,
    trust::list::{decode_signed, verify_root, verify_update, TrustError, TrustList, Update},
};

/// How often [`TrustState::until_refused`] checks again with no new list.
pub const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Why the trust list to start from could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TrustStateError {
    /// The root file does not read.
    #[error("reading the root trust list {path}")]
    Read {
        /// The root file named in the config.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The root file does not decode or verify, or, newer than the stored
    /// list, is not a valid update of it.
    #[error("root trust list {path}")]
    Root {
        /// The root file named in the config.
        path: PathBuf,
        /// Why it was refused.
        #[source]
        source: TrustError,
    },
    /// The list kept in the store does not decode, verify by its own
    /// operator keys, or name the root file's coalition.
    #[error(
        "the trust list kept in the store fails verification ({0}); it may be corrupt or tampered with: \
         restore the data directory from a backup, or move it away to start again from the root file"
    )]
    Stored(TrustError),
    /// The store could not read or keep the list.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an offered list was not applied, or that it could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    /// The offered list breaks a rule of
    /// [`verify_update`].
    #[error(transparent)]
    Rejected(#[from] TrustError),
    /// The list was accepted but could not be made durable; the list in
    /// force is unchanged.
    #[error("keeping the new trust list")]
    Store(#[from] StoreError),
    /// The node is stopping: the list was not verified.
    #[error("the node is stopping; the trust list was not verified")]
    Stopped,
}

/// What an accepted offer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Byte-identical to the list in force.
    Same {
        /// The version in force.
        version: u64,
    },
    /// Applied; `cut` connections of members no longer active were closed.
    Applied {
        /// The version replaced.
        from: u64,
        /// The version now in force.
        to: u64,
        /// Peer connections closed.
        cut: usize,
    },
}

/// The trust list in force on this node, the store that keeps it, and the
/// open peer connections it governs.
pub struct TrustState {
    current: RwLock<Arc<TrustList>>,
    store: Arc<Store>,
    apply: tokio::sync::Mutex<()>,
    changed: watch::Sender<u64>,
    connections: Connections,
    node_id: String,
    warning_secs: i64,
    /// The node's clock: membership, expiry and updates are judged by it.
    clock: Clock,
}

impl TrustState {
    /// Loads the list to start from: the stored one, or the root file when
    /// the store has none or the root file is a valid newer version. The
    /// state judges activity, expiry and updates at `clock`'s time.
    pub async fn open(
        store: Arc<Store>,
        root_file: &Path,
        node_id: &str,
        warning_secs: i64,
        clock: Clock,
    ) -> Result<TrustState, TrustStateError> {
        let bytes = std::fs::read(root_file).map_err(|source| TrustStateError::Read {
            path: root_file.to_path_buf(),
            source,
        })?;
        let root_err = |source| TrustStateError::Root {
            path: root_file.to_path_buf(),
            source,
        };
        let root =
            verify_root(&decode_signed(&bytes).map_err(root_err)?, None).map_err(root_err)?;
        let current = match store.trust_list()? {
            None => {
                store.put_trust_list(root.encoded()).await?;
                root
            }
            Some(stored) => {
                let stored = decode_signed(&stored)
                    .and_then(|s| verify_root(&s, Some(root.coalition_id())))
                    .map_err(TrustStateError::Stored)?;
                if root.version() > stored.version() {
                    match verify_update(&stored, root.signed(), clock.now()).map_err(root_err)? {
                        Update::Newer(list) => {
                            store.put_trust_list(list.encoded()).await?;
                            list
                        }
                        Update::Same => stored,
                    }
                } else {
                    stored
                }
            }
        };
        tracing::info!(
            coalition = current.coalition_id(),
            version = current.version(),
            expires_at = %format_time(current.expires_at()),
            members = current.body().members.len(),
            "trust list in force"
        );
        let (changed, _) = watch::channel(current.version());
        Ok(TrustState {
            current: RwLock::new(Arc::new(current)),
            store,
            apply: tokio::sync::Mutex::new(()),
            changed,
            connections: Connections::default(),
            node_id: node_id.to_string(),
            warning_secs,
            clock,
        })
    }

    /// The list in force now.
    pub fn current(&self) -> Arc<TrustList> {
        self.current.read().clone()
    }

    /// This node's id, as its config names it (its member id on the list).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The node's clock, by which this state judges the list.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The registry of open peer connections.
    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    /// Notified with the new version whenever a list is applied.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Resolves with `check`'s refusal once it refuses: checked now, then
    /// at every newly applied list and every [`RECHECK_EVERY`] (the list
    /// expires, and sharing bases run out, by the node's clock, with no new
    /// list). What ends long-lived peer sessions and streams whose member
    /// lost the right to them.
    pub async fn until_refused<E>(&self, mut check: impl FnMut(&TrustState) -> Result<(), E>) -> E {
        let mut changed = self.subscribe();
        let mut tick = tokio::time::interval(RECHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Err(e) = check(self) {
                return e;
            }
            tokio::select! {
                r = changed.changed() => {
                    if r.is_err() {
                        tick.tick().await;
                    }
                }
                _ = tick.tick() => {}
            }
        }
    }

    /// Whether the certificate key `spki` belongs to an active member now.
    pub fn admits(&self, spki: &str) -> bool {
        self.current()
            .active_member_by_spki(spki, self.clock.now())
            .is_some()
    }

    /// Whether `signed` is the list in force, byte for byte (nothing to
    /// verify).
    pub fn is_current(&self, signed: &SignedTrustList) -> bool {
        self.current().signed() == signed
    }

    /// Verifies and applies a list handed over by `source` (for logs).
    ///
    /// The list is verified against the list in force on the blocking pool,
    /// holding no lock, so a bogus list costs one bounded verification off
    /// the async workers and never delays another offer. Only a list that
    /// verified takes the apply lock, to install it if the list it was
    /// verified against is still in force (else it is verified again
    /// against the newer one).
    pub async fn offer(
        &self,
        signed: &SignedTrustList,
        source: &str,
    ) -> Result<Offered, OfferError> {
        let signed = Arc::new(signed.clone());
        loop {
            let current = self.current();
            let list = match self.verify(&current, &signed).await? {
                Ok(Update::Same) => {
                    return Ok(Offered::Same {
                        version: current.version(),
                    })
                }
                Ok(Update::Newer(list)) => list,
                Err(e) => {
                    tracing::warn!(source, version = current.version(), error = %crate::telemetry::chain(&e), "trust list refused");
                    return Err(e.into());
                }
            };
            let _guard = self.apply.lock().await;
            if !Arc::ptr_eq(&current, &self.current()) {
                // Another list came into force meanwhile: judge this one by it.
                continue;
            }
            self.store.put_trust_list(list.encoded()).await?;
            let (from, to) = (current.version(), list.version());
            *self.current.write() = Arc::new(list);
            let cut = self.cut_off();
            tracing::info!(
                source,
                from,
                to,
                connections_closed = cut,
                "trust list applied"
            );
            self.changed.send_replace(to);
            return Ok(Offered::Applied { from, to, cut });
        }
    }

    /// [`verify_update`] of `signed` against `current` at the clock's time,
    /// on the blocking pool.
    async fn verify(
        &self,
        current: &Arc<TrustList>,
        signed: &Arc<SignedTrustList>,
    ) -> Result<Result<Update, TrustError>, OfferError> {
        let (current, signed, now) = (current.clone(), signed.clone(), self.clock.now());
        match tokio::task::spawn_blocking(move || verify_update(&current, &signed, now)).await {
            Ok(r) => Ok(r),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(OfferError::Stopped),
        }
    }

    /// Closes every peer connection whose member is no longer active (a new
    /// list, or a sharing basis that has run out). Returns how many.
    pub fn cut_off(&self) -> usize {
        let list = self.current();
        let now = self.clock.now();
        let closed = self
            .connections
            .close_unless(|spki| list.active_member_by_spki(spki, now).is_some());
        for spki in &closed {
            let who = list
                .member_by_spki(spki)
                .map(|m| m.id.as_str())
                .unwrap_or("(not on the list)");
            tracing::warn!(member = who, spki_sha256 = %spki, "peer connection closed: member no longer active");
        }
        closed.len()
    }

    /// What operators should know about the list's validity, if anything.
    pub fn warning(&self, now: i64) -> Option<String> {
        let list = self.current();
        let exp = list.expires_at();
        if list.is_expired(now) {
            Some(format!(
                "trust list version {} expired at {}: peer requests other than GetTrustList and PublishTrustList are refused until a newer list arrives",
                list.version(),
                format_time(exp)
            ))
        } else if exp - now <= self.warning_secs {
            Some(format!(
                "trust list version {} expires at {} (in {} hours): operators must publish a newer one",
                list.version(),
                format_time(exp),
                (exp - now) / 3600
            ))
        } else {
            None
        }
    }

    /// Other active members with a peer endpoint (and `cap`, if given),
    /// limited to `only` when it names any: the nodes this one talks to.
    pub fn peers(&self, cap: Option<PeerCapability>, only: &[String]) -> Vec<Member> {
        let list = self.current();
        let now = self.clock.now();
        list.body()
            .members
            .iter()
            .filter(|m| {
                m.id != self.node_id
                    && (only.is_empty() || only.contains(&m.id))
                    && !m.endpoint.is_empty()
                    && TrustList::is_active(m, now)
                    && cap.is_none_or(|c| TrustList::has_capability(m, c))
            })
            .cloned()
            .collect()
    }

    /// Whether this node's own member entry is active now.
    pub fn own_member_active(&self) -> bool {
        let list = self.current();
        list.member(&self.node_id)
            .is_some_and(|m| TrustList::is_active(m, self.clock.now()))
    }
}

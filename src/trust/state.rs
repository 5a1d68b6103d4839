//! The trust list in force on this node, and what follows from it.
//!
//! The node starts from the root list named in its config, or from the
//! newer list it accepted before and kept in its store (verified again at
//! every start, so a list corrupted or edited on disk stops the node rather
//! than being trusted); a root file newer than the stored list is reached by
//! walking from it through the key-changing lists of the chain file named
//! in the config. A new list is accepted only through
//! [`TrustState::offer`] or, for a node behind a key change,
//! [`TrustState::offer_chain`], which apply every rule of
//! [`crate::trust::list::verify_update`] to each step on the blocking pool
//! and outside any lock, then (under the apply lock, only for a chain that
//! verified) make the list durable with every key-changing step (the newest
//! [`KEPT_CHAIN_LISTS`], served to peers behind), swap it in, and close at
//! once every open peer connection whose member is no longer active. Watchers
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

use prost::Message;

use crate::{
    proto::{Member, PeerCapability, SignedTrustList, TrustListChain},
    store::{Store, StoreError},
    time::{format_time, Clock},
    tls::Connections,
    trust::list::{
        changes_keys, decode_body, decode_signed, missing_versions, verify_chain, verify_root,
        ChainError, TrustError, TrustList, MAX_CHAIN_LISTS, MAX_LIST_BYTES,
    },
};

/// How many of the key-changing lists it accepted a node keeps (the newest):
/// 64, so that a node down through 64 operator-key or threshold changes
/// still catches up by itself (a coalition changes keys a few times a year),
/// and the kept lists stay within 64 MiB at the largest list size (a few
/// hundred KiB in practice). With the list in force, a chain is at most
/// [`MAX_CHAIN_LISTS`] lists.
pub const KEPT_CHAIN_LISTS: usize = MAX_CHAIN_LISTS - 1;

/// Largest chain file read: [`MAX_CHAIN_LISTS`] lists of
/// [`MAX_LIST_BYTES`], with their framing.
const MAX_CHAIN_FILE_BYTES: u64 = (MAX_CHAIN_LISTS * (MAX_LIST_BYTES + 16)) as u64;

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
    /// The chain file does not read or decode.
    #[error("reading the trust list chain file {path}: {reason}")]
    ChainFile {
        /// The chain file named in the config.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The root file is newer than the stored list but cannot be reached
    /// from it through the chain file's lists.
    #[error(
        "root trust list {path} (version {root}) cannot be reached from the list kept in the store (version {stored}); \
         name in [trust] chain_file a chain file (`cix trust chain`) holding every list that changed the operator keys \
         or the threshold after version {stored}, or restore the root file the node ran with"
    )]
    Walk {
        /// The root file named in the config.
        path: PathBuf,
        /// The root file's version.
        root: u64,
        /// The stored list's version.
        stored: u64,
        /// The step that failed (boxed: a start error is rare, and the
        /// node's error stays small).
        #[source]
        source: Box<ChainError>,
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
    /// [`crate::trust::list::verify_update`].
    #[error(transparent)]
    Rejected(#[from] TrustError),
    /// The offered list, newer by more than one version, is not signed by a
    /// threshold of the operator keys in force: a list between may have
    /// changed them, and is needed first.
    #[error(
        "version {got} is not signed by a threshold of the operator keys of version {have} in force{}",
        missing_versions(*.have, *.got)
    )]
    Gap {
        /// The version in force.
        have: u64,
        /// The offered version.
        got: u64,
        /// The rule it broke.
        #[source]
        source: TrustError,
    },
    /// A chain of lists (more than one) broke a rule at one of its steps.
    #[error(transparent)]
    Chain(#[from] ChainError),
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
    /// The key-changing lists kept, oldest first, with their versions (as
    /// in the store, read once at start).
    chain: RwLock<Arc<Vec<(u64, SignedTrustList)>>>,
    store: Arc<Store>,
    apply: tokio::sync::Mutex<()>,
    /// Woken when a list arrived that needs lists this node lacks.
    catch_up: tokio::sync::Notify,
    changed: watch::Sender<u64>,
    connections: Connections,
    node_id: String,
    warning_secs: i64,
    /// The node's clock: membership, expiry and updates are judged by it.
    clock: Clock,
}

impl TrustState {
    /// Loads the list to start from: the stored one, or the root file when
    /// the store has none or the root file is a newer version reached by a
    /// walk from the stored list through the lists of `chain_file` (a
    /// [`TrustListChain`], at most [`MAX_CHAIN_LISTS`] lists) that lie
    /// between them. The state judges activity, expiry and updates at
    /// `clock`'s time.
    pub async fn open(
        store: Arc<Store>,
        root_file: &Path,
        chain_file: Option<&Path>,
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
                    let mut steps: Vec<SignedTrustList> = match chain_file {
                        Some(path) => read_chain_file(path)?
                            .into_iter()
                            .filter(|s| {
                                decode_body(s).is_ok_and(|b| {
                                    b.version > stored.version() && b.version < root.version()
                                })
                            })
                            .collect(),
                        None => Vec::new(),
                    };
                    steps.push(root.signed().clone());
                    let walked = match verify_chain(&stored, &steps, clock.now()) {
                        Ok(walked) => walked,
                        // The root file alone, refused for its own fault.
                        Err(ChainError::Step {
                            source,
                            version,
                            after,
                            ..
                        }) if steps.len() == 1 && !is_gap(after, version, &source) => {
                            return Err(root_err(source))
                        }
                        Err(source) => {
                            return Err(TrustStateError::Walk {
                                path: root_file.to_path_buf(),
                                root: root.version(),
                                stored: stored.version(),
                                source: Box::new(source),
                            })
                        }
                    };
                    keep(&store, &stored, &walked).await?;
                    walked.into_iter().last().unwrap_or(stored)
                } else {
                    stored
                }
            }
        };
        let mut chain = Vec::new();
        for bytes in store.trust_chain()? {
            let signed = decode_signed(&bytes).map_err(TrustStateError::Stored)?;
            let version = decode_body(&signed)
                .map_err(TrustStateError::Stored)?
                .version;
            chain.push((version, signed));
        }
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
            chain: RwLock::new(Arc::new(chain)),
            store,
            apply: tokio::sync::Mutex::new(()),
            catch_up: tokio::sync::Notify::new(),
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

    /// Asks whoever keeps this node's list current (the sync task) to ask
    /// the peers for newer lists now: a list arrived that needs lists this
    /// node lacks.
    pub fn request_catch_up(&self) {
        self.catch_up.notify_one();
    }

    /// Resolves once [`TrustState::request_catch_up`] was called (since the
    /// last time this resolved).
    pub async fn catch_up_requested(&self) {
        self.catch_up.notified().await;
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

    /// The key-changing lists kept, oldest first, with their versions.
    pub fn chain(&self) -> Arc<Vec<(u64, SignedTrustList)>> {
        self.chain.read().clone()
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
        self.offer_chain(std::slice::from_ref(signed), source).await
    }

    /// Verifies and applies a chain handed over by `source` (for logs): the
    /// lists that changed the operator keys or threshold after the list in
    /// force, oldest first, then the list to reach, walked step by step by
    /// [`verify_chain`] (on the blocking pool, holding no lock, like
    /// [`TrustState::offer`]). One outcome: the node ends on the last list,
    /// keeping every key-changing step, or nothing changes. A chain of one
    /// list is an offer of that list.
    pub async fn offer_chain(
        &self,
        steps: &[SignedTrustList],
        source: &str,
    ) -> Result<Offered, OfferError> {
        let steps = Arc::new(steps.to_vec());
        loop {
            // Checked again after a list came into force meanwhile: it may
            // be this one (a peer pushed it during the walk).
            if steps.last().is_some_and(|last| self.is_current(last)) {
                return Ok(Offered::Same {
                    version: self.current().version(),
                });
            }
            let current = self.current();
            let walked = match self.verify(&current, &steps).await? {
                Ok(walked) => walked,
                Err(e) => {
                    let e = offer_error(e, steps.len());
                    tracing::warn!(source, version = current.version(), error = %crate::telemetry::chain(&e), "trust list refused");
                    return Err(e);
                }
            };
            let _guard = self.apply.lock().await;
            if !Arc::ptr_eq(&current, &self.current()) {
                // Another list came into force meanwhile: judge this one by it.
                continue;
            }
            keep(&self.store, &current, &walked).await?;
            let kept: Vec<(u64, SignedTrustList)> = kept_lists(&current, &walked)
                .into_iter()
                .map(|l| (l.version(), l.signed().clone()))
                .collect();
            let Some(list) = walked.into_iter().last() else {
                return Err(OfferError::Chain(ChainError::Empty));
            };
            let (from, to) = (current.version(), list.version());
            if !kept.is_empty() {
                let mut chain: Vec<_> = self.chain().as_ref().clone();
                chain.extend(kept);
                let drop = chain.len().saturating_sub(KEPT_CHAIN_LISTS);
                chain.drain(..drop);
                *self.chain.write() = Arc::new(chain);
            }
            *self.current.write() = Arc::new(list);
            let cut = self.cut_off();
            tracing::info!(
                source,
                from,
                to,
                steps = steps.len(),
                connections_closed = cut,
                "trust list applied"
            );
            self.changed.send_replace(to);
            return Ok(Offered::Applied { from, to, cut });
        }
    }

    /// [`verify_chain`] of `steps` from `current` at the clock's time, on
    /// the blocking pool.
    async fn verify(
        &self,
        current: &Arc<TrustList>,
        steps: &Arc<Vec<SignedTrustList>>,
    ) -> Result<Result<Vec<TrustList>, ChainError>, OfferError> {
        let (current, steps, now) = (current.clone(), steps.clone(), self.clock.now());
        match tokio::task::spawn_blocking(move || verify_chain(&current, &steps, now)).await {
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

/// The steps of `walked` (from `from`) that changed the operator keys or
/// the threshold of the step before them.
fn kept_lists<'a>(from: &'a TrustList, walked: &'a [TrustList]) -> Vec<&'a TrustList> {
    let mut prev = from;
    let mut kept = Vec::new();
    for step in walked {
        if changes_keys(prev.body(), step.body()) {
            kept.push(step);
        }
        prev = step;
    }
    kept
}

/// Makes the last of `walked` the stored list in force, keeping its
/// key-changing steps, in one durable write.
async fn keep(store: &Store, from: &TrustList, walked: &[TrustList]) -> Result<(), StoreError> {
    let Some(last) = walked.last() else {
        return Ok(());
    };
    let kept: Vec<(u64, &[u8])> = kept_lists(from, walked)
        .into_iter()
        .map(|l| (l.version(), l.encoded()))
        .collect();
    store
        .put_trust_lists(&kept, last.encoded(), KEPT_CHAIN_LISTS)
        .await
}

/// Whether a list of `version`, refused after `after` for `source`, may
/// only lack the key-changing lists between: newer by more than one
/// version, and not signed by a threshold of the keys in force.
fn is_gap(after: u64, version: Option<u64>, source: &TrustError) -> bool {
    matches!(source, TrustError::BelowThreshold { of: "current", .. })
        && version.is_some_and(|v| v > after + 1)
}

/// A refused chain as an offer's error: a chain of one list is refused as
/// that list (by its rule, or as a gap when a key change may lie between).
fn offer_error(e: ChainError, steps: usize) -> OfferError {
    match e {
        ChainError::Step {
            version: Some(got),
            after,
            source,
            ..
        } if steps == 1 && is_gap(after, Some(got), &source) => OfferError::Gap {
            have: after,
            got,
            source,
        },
        ChainError::Step { source, .. } if steps == 1 => OfferError::Rejected(source),
        e => OfferError::Chain(e),
    }
}

/// The lists of a chain file ([`TrustListChain`]), bounded in size and count.
fn read_chain_file(path: &Path) -> Result<Vec<SignedTrustList>, TrustStateError> {
    use std::io::Read;
    let err = |reason: String| TrustStateError::ChainFile {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_CHAIN_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(e.to_string()))?;
    if bytes.len() as u64 > MAX_CHAIN_FILE_BYTES {
        return Err(err(format!("must be at most {MAX_CHAIN_FILE_BYTES} bytes")));
    }
    let chain =
        TrustListChain::decode(&bytes[..]).map_err(|e| err(format!("does not decode: {e}")))?;
    if chain.lists.len() > MAX_CHAIN_LISTS {
        return Err(err(format!(
            "holds {} lists, at most {MAX_CHAIN_LISTS} are allowed",
            chain.lists.len()
        )));
    }
    Ok(chain.lists)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        keys::signing::SigningKeyFile,
        trust::{edit, list::sign},
    };

    const NOW: i64 = 1_700_000_000;
    const DAY: i64 = 86_400;

    fn key(n: u8) -> SigningKeyFile {
        SigningKeyFile::from_seed(&[n; 32])
    }

    /// Version `v`, operator keys `ops`, threshold `t`, signed by `by`.
    fn list(v: u64, ops: &[u8], t: u32, by: &[u8]) -> SignedTrustList {
        let keys: Vec<_> = ops.iter().map(|&n| key(n).verifying_key()).collect();
        let mut b = edit::new_list("c1", &keys, t, vec![], vec![], NOW - DAY, NOW + 30 * DAY);
        b.version = v;
        let mut s = edit::unsigned(&b);
        for &n in by {
            sign(&mut s, &key(n));
        }
        s
    }

    fn bytes(s: &SignedTrustList) -> Vec<u8> {
        s.encode_to_vec()
    }

    async fn state(dir: &Path, root: &SignedTrustList) -> (Arc<Store>, TrustState) {
        let root_file = dir.join("root.ctl");
        std::fs::write(&root_file, bytes(root)).unwrap();
        let store = Arc::new(Store::open(&dir.join("data"), 8).unwrap());
        let state = TrustState::open(
            store.clone(),
            &root_file,
            None,
            "bank-a",
            0,
            Clock::fixed(NOW as f64),
        )
        .await
        .unwrap();
        (store, state)
    }

    #[tokio::test]
    async fn a_walked_chain_applies_as_one_and_keeps_only_its_key_changing_steps() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = list(1, &[1, 2, 3], 2, &[1, 2]);
        let (store, state) = state(dir.path(), &v1).await;
        let v2 = list(2, &[1, 2, 3], 2, &[1, 2]);
        let v3 = list(3, &[4, 5, 6], 2, &[1, 2, 4, 5]);
        let v4 = list(4, &[4, 5, 6], 3, &[4, 5, 6]);
        let v5 = list(5, &[4, 5, 6], 3, &[4, 5, 6]);
        // A bad last step: nothing of the good steps before it is kept.
        let thin = list(5, &[4, 5, 6], 3, &[4, 5]);
        let chain = [v2.clone(), v3.clone(), v4.clone(), thin];
        assert!(matches!(
            state.offer_chain(&chain, "test").await,
            Err(OfferError::Chain(ChainError::Step { index: 3, .. }))
        ));
        assert_eq!(state.current().version(), 1);
        assert_eq!(store.trust_list().unwrap().unwrap(), bytes(&v1));
        assert!(store.trust_chain().unwrap().is_empty());
        assert!(state.chain().is_empty());

        let chain = [v2, v3.clone(), v4.clone(), v5.clone()];
        assert_eq!(
            state.offer_chain(&chain, "test").await.unwrap(),
            Offered::Applied {
                from: 1,
                to: 5,
                cut: 0
            }
        );
        assert_eq!(store.trust_list().unwrap().unwrap(), bytes(&v5));
        // Version 2 kept the keys, 5 kept keys and threshold: not kept.
        assert_eq!(store.trust_chain().unwrap(), [bytes(&v3), bytes(&v4)]);
        assert_eq!(
            state.chain().iter().map(|(v, _)| *v).collect::<Vec<_>>(),
            [3, 4]
        );
        // Offering the list in force again changes nothing.
        assert_eq!(
            state.offer_chain(&[v3, v4, v5], "test").await.unwrap(),
            Offered::Same { version: 5 }
        );
    }

    #[tokio::test]
    async fn a_list_past_a_key_change_the_node_lacks_is_refused_as_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let (_, state) = state(dir.path(), &list(1, &[1, 2, 3], 2, &[1, 2])).await;
        let e = state
            .offer(&list(4, &[4, 5, 6], 2, &[4, 5]), "test")
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                OfferError::Gap {
                    have: 1,
                    got: 4,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("versions 2 to 3 changed the operator keys"),
            "{e}"
        );
        // The next version, below the threshold, is no gap: just refused.
        assert!(matches!(
            state.offer(&list(2, &[1, 2, 3], 2, &[1]), "test").await,
            Err(OfferError::Rejected(TrustError::BelowThreshold { .. }))
        ));
    }

    #[tokio::test]
    async fn the_store_keeps_only_the_newest_key_changing_lists() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        for v in 1..=5u64 {
            let l = v.to_be_bytes();
            store
                .put_trust_lists(&[(v, &l[..])], b"current", 3)
                .await
                .unwrap();
        }
        let kept: Vec<Vec<u8>> = (3..=5u64).map(|v| v.to_be_bytes().to_vec()).collect();
        assert_eq!(store.trust_chain().unwrap(), kept);
        assert_eq!(store.trust_list().unwrap().unwrap(), b"current");
    }
}

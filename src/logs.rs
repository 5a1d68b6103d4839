//! Every origin log this node holds, its own and its peers': the one place
//! batches enter the store and the index, whether this node wrote them (contributions) or
//! received them from a peer (replication, verified before they get here).
//! Each append extends the origin's chain in the store, updates the index
//! and announces the origin's new head to watchers (push hints for peers);
//! store and index change as one outcome (the index checks the batch before
//! the store takes it), so a batch is stored and fully indexed, or nothing
//! changed. A batch appended durably (this node's own) is served to peers
//! only once a flush made it durable: a failed flush is the caller's error
//! and leaves it stored and indexed but not yet served.
//!
//! At start ([`open`]) the index is rebuilt from the store. A stored batch
//! that does not decode, breaks a field rule ([`Batch::check_fields`]) or
//! is refused by the index is set aside with every later batch of its
//! origin ([`Store::set_aside`]): kept, not indexed, not relayed, its
//! origin's log waiting there; fork evidence that does not decode or check
//! is set aside likewise. Each is logged at every start and reported in
//! Status; a start checks them again, so a build that accepts them applies
//! them. A node never refuses to start because of what a peer sent.
//!
//! After a key rotation with a continuation point C (the list retires an
//! origin's keys at C - 1 and adds a key valid from C), the origin's stored
//! batches from C on no longer verify ([`recheck_signatures`], at start
//! before the index is rebuilt and at every new list): this node's own
//! log is signed again with the node's signing key if that key is the new
//! one (same headers, same hashes: nothing acknowledged changes); any
//! other origin's log is dropped from the first batch that no longer
//! verifies (its index entries with it), so that peers bring the re-signed
//! batches again and a branch signed by the old keys verifies nowhere.

use std::sync::Arc;

use parking_lot::{RwLock, RwLockUpgradableReadGuard};
use prost::Message;
use tokio::sync::broadcast;

use crate::{
    batch::{fork_point, Batch, BatchError},
    index::{Builder, Index, IndexError},
    keys::signing::SigningKeyFile,
    proto::ForkEvidence,
    store::{Head, Store, StoreError},
    telemetry::chain,
    trust::{batches::verify, list::TrustList},
};

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The origin's log is set aside on this node from `first_seq`: it
    /// takes no batch until an operator acts (see the README).
    #[error("the log of {origin} is set aside on this node from sequence {first_seq} ({rule}); it takes no batch until an operator acts")]
    SetAside {
        origin: String,
        first_seq: u64,
        rule: String,
    },
}

/// What a start found in the store and could not apply: a batch (with
/// every later batch of its origin), or fork evidence. Kept in the store,
/// not indexed, not relayed; reported in Status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SetAside {
    pub origin: String,
    /// The batch's first sequence number; for fork evidence, its fork
    /// point (0 if it does not decode).
    pub first_seq: u64,
    /// The rule it breaks, e.g. `entries[3].kind: must be a known kind`;
    /// never a value of the batch.
    pub rule: String,
    /// Fork evidence rather than a batch.
    pub evidence: bool,
}

/// What one applied batch changed, for the alert engine: its origin, its
/// operation and its tokens (purged entries left out).
#[derive(Clone, Debug)]
pub(crate) struct Applied {
    pub origin: String,
    pub op: crate::proto::LogOp,
    pub tokens: Vec<crate::token::Token>,
}

/// Receives every batch applied, after store and index took it.
pub(crate) type AppliedHook = Box<dyn Fn(Applied) + Send + Sync>;

/// "Origin X is now at sequence N".
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HeadUpdate {
    pub origin: String,
    pub last_seq: u64,
}

pub(crate) struct OriginLogs {
    pub store: Arc<Store>,
    pub index: Arc<RwLock<Index>>,
    heads: broadcast::Sender<HeadUpdate>,
    /// What the start set aside (fixed until the next start).
    set_aside: Vec<SetAside>,
    /// Told of every batch applied ([`OriginLogs::on_applied`]).
    applied: RwLock<Option<AppliedHook>>,
}

impl OriginLogs {
    pub(crate) fn new(
        store: Arc<Store>,
        index: Arc<RwLock<Index>>,
        set_aside: Vec<SetAside>,
    ) -> OriginLogs {
        let (heads, _) = broadcast::channel(4096);
        OriginLogs {
            store,
            index,
            heads,
            set_aside,
            applied: RwLock::new(None),
        }
    }

    /// Calls `hook` with every batch applied from now on (the alert
    /// engine: it must return at once).
    pub(crate) fn on_applied(&self, hook: AppliedHook) {
        *self.applied.write() = Some(hook);
    }

    /// What the start set aside, batches and fork evidence.
    pub(crate) fn set_aside(&self) -> &[SetAside] {
        &self.set_aside
    }

    /// The set-aside batch `origin`'s log waits at on this node, if any.
    pub(crate) fn waiting(&self, origin: &str) -> Option<&SetAside> {
        self.set_aside
            .iter()
            .find(|s| !s.evidence && s.origin == origin)
    }

    /// Appends a batch that extends its origin's chain, applies it to the
    /// index and announces the new head. With `durable`, the store is
    /// flushed before this returns (contributions are acknowledged only
    /// then); replicated batches can be fetched again and are flushed in
    /// groups by the caller. A batch the index would refuse, or of an
    /// origin whose log is set aside here, changes nothing.
    pub(crate) async fn append(&self, batch: &Batch, durable: bool) -> Result<Head, LogsError> {
        if let Some(s) = self.waiting(batch.origin()) {
            return Err(LogsError::SetAside {
                origin: s.origin.clone(),
                first_seq: s.first_seq,
                rule: s.rule.clone(),
            });
        }
        let head = {
            // One outcome: checked before the store takes it, applied with
            // no other writer in between (the upgradable lock excludes
            // writers, not look-ups), so the apply cannot fail.
            let index = self.index.upgradable_read();
            index.check(batch)?;
            // A batch acknowledged only once durable is served to peers
            // only then too: if the flush fails, the caller is told, the
            // batch stays stored and indexed (a later flush makes it
            // durable) and no peer has it until one does.
            let head = if durable {
                self.store.append_unserved(batch)?
            } else {
                self.store.append(batch)?
            };
            RwLockUpgradableReadGuard::upgrade(index).apply(batch)?;
            head
        };
        if let Some(hook) = &*self.applied.read() {
            hook(Applied {
                origin: batch.origin().to_string(),
                op: crate::proto::LogOp::try_from(batch.header.op)
                    .unwrap_or(crate::proto::LogOp::Unspecified),
                tokens: batch
                    .raw
                    .entries
                    .iter()
                    .filter_map(|e| crate::token::Token::from_slice(&e.token).ok())
                    .collect(),
            });
        }
        if durable {
            self.store.flush().await?;
        }
        let _ = self.heads.send(HeadUpdate {
            origin: batch.origin().to_string(),
            last_seq: head.last_seq,
        });
        Ok(head)
    }

    /// Head changes from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<HeadUpdate> {
        self.heads.subscribe()
    }
}

/// What a signature re-check did ([`recheck_signatures`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rechecked {
    /// Batches of other origins dropped: they no longer verify.
    pub dropped: u64,
    /// Batches of this node's own log signed again with its key.
    pub resigned: u64,
}

/// The latest continuation point of `origin`'s keys in `list`: the
/// highest `first_seq` of its signing keys, if above 1.
fn continuation(list: &TrustList, origin: &str) -> Option<u64> {
    list.member(origin)?
        .signing_keys
        .iter()
        .map(|k| k.first_seq)
        .max()
        .filter(|c| *c > 1)
}

/// Whether the list in force refuses `b` for its signature (not for a
/// suspension or anything else).
fn unsigned_under(b: &Batch, list: &TrustList) -> bool {
    matches!(verify(b, list), Err(BatchError::Signature { .. }))
}

/// Re-checks, for every origin whose keys in `list` have a continuation
/// point C, its stored batches from the one holding C on. If the first of
/// them verifies, the origin was re-checked under this rotation before
/// (each pass leaves every batch from there on verifying). Otherwise the
/// node's own log (`own`) is signed again with `signer`, last batch first
/// (so that a pass cut short is done again at the next start), if the
/// re-signed batches verify; and another origin's log is dropped from
/// there, its head going back to the batch before. `origins`: the origins
/// to re-check (`None`: all); `dropped` is called, with the origin, after
/// its batches were dropped (the index then takes the rest of its log
/// again). Store errors end it.
pub(crate) fn recheck_signatures(
    store: &Store,
    list: &TrustList,
    own: &str,
    signer: &SigningKeyFile,
    mut dropped: impl FnMut(&str),
) -> Result<Rechecked, StoreError> {
    let mut done = Rechecked::default();
    for m in &list.body().members {
        let Some(from) = continuation(list, &m.id) else {
            continue;
        };
        let Some(first) = store.batch_holding(&m.id, from)? else {
            continue;
        };
        if !unsigned_under(&first, list) {
            continue;
        }
        if m.id == own {
            let mut all = Vec::new();
            for b in store.decoded_after(&m.id, first.first_seq() - 1) {
                all.push(crate::batch::resign(&b?, signer));
            }
            if all.iter().any(|b| verify(b, list).is_err()) {
                tracing::error!(origin = %m.id, from_seq = first.first_seq(), "this node's own log from here on does not verify under the trust list in force after a key rotation, nor signed again with the node's signing key: restart the node with the new key as node.signing_key");
                continue;
            }
            for b in all.iter().rev() {
                store.rewrite(b)?;
            }
            store.flush_blocking()?;
            done.resigned += all.len() as u64;
            tracing::warn!(origin = %m.id, from_seq = first.first_seq(), batches = all.len(), "key rotation: this node's own log signed again with its new key from the continuation point on");
        } else {
            let before = (first.first_seq() > 1).then(|| Head {
                last_seq: first.first_seq() - 1,
                hash: first
                    .header
                    .prev_hash
                    .as_slice()
                    .try_into()
                    .unwrap_or([0; 32]),
            });
            let n = store.truncate(&m.id, first.first_seq(), before)?;
            done.dropped += n as u64;
            tracing::warn!(origin = %m.id, from_seq = first.first_seq(), batches = n, "key rotation: stored batches of the origin no longer verify under the trust list in force; dropped, to be pulled again as signed anew");
            dropped(&m.id);
        }
    }
    Ok(done)
}

impl OriginLogs {
    /// [`recheck_signatures`] on a running node: the index is held (no
    /// append in between) while an origin's batches are dropped, and takes
    /// the rest of that origin's log again. CPU and disk bound: on the
    /// blocking pool.
    pub(crate) fn recheck_signatures(
        &self,
        list: &TrustList,
        own: &str,
        signer: &SigningKeyFile,
    ) -> Result<Rechecked, StoreError> {
        let mut index = self.index.write();
        recheck_signatures(&self.store, list, own, signer, |origin| {
            index.drop_origin(origin);
            for b in self.store.decoded_after(origin, 0) {
                let applied = b
                    .map_err(|e| chain(&e))
                    .and_then(|b| index.apply(&b).map_err(|e| e.to_string()));
                if let Err(e) = applied {
                    tracing::error!(origin, error = %e, "indexing a kept batch again");
                }
            }
        })
    }
}

/// What a start read from the store.
pub(crate) struct Opened {
    /// Every batch that applies.
    pub index: Index,
    /// Batches indexed.
    pub batches: u64,
    /// What was set aside, batches first, each logged.
    pub set_aside: Vec<SetAside>,
}

/// The rule a field of `b` breaks, as Status names it.
fn field_rule(b: &Batch) -> Result<(), String> {
    b.check_fields().map_err(|e| match e {
        BatchError::Field { field, rule, .. } => format!("{field}: {rule}"),
        e => e.to_string(),
    })
}

/// Whether stored fork evidence reads: it decodes, holds two batches that
/// decode, and both keep the field rules.
fn evidence_rule(raw: &[u8]) -> Result<ForkEvidence, String> {
    let ev = ForkEvidence::decode(raw).map_err(|_| "fork evidence does not decode".to_string())?;
    for b in [&ev.first, &ev.second] {
        let b = b
            .clone()
            .ok_or_else(|| "fork evidence lacks one of its two batches".to_string())?;
        let b = Batch::decode(b).map_err(|_| "a batch of the fork evidence does not decode")?;
        field_rule(&b)?;
    }
    Ok(ev)
}

/// Rebuilds the index from the store, setting aside (in the store) every
/// stored batch that does not apply, with the rest of its origin's log,
/// and every fork evidence that does not read; what an earlier start set
/// aside is checked again first and goes back if it now applies. Fails only
/// on the store's own errors (sled, a segment file it cannot open).
pub(crate) fn open(store: &Store) -> Result<Opened, LogsError> {
    let mut set_aside = Vec::new();
    for (origin, first_seq) in store.set_aside_logs()? {
        let rule = match store.set_aside_batch(&origin, first_seq) {
            Ok(b) => field_rule(&b),
            Err(e) => Err(chain(&e)),
        };
        let rule = match rule {
            Ok(()) if store.restore(&origin)? => continue,
            Ok(()) => "this node's log of the origin no longer ends before it".to_string(),
            Err(rule) => rule,
        };
        set_aside.push(SetAside {
            origin,
            first_seq,
            rule,
            evidence: false,
        });
    }
    let mut builder = Builder::new();
    let mut batches = 0u64;
    // The last batch indexed: where a log set aside after it ends.
    let mut last: Option<(String, Head)> = None;
    let mut failed: Vec<(SetAside, Option<Head>)> = Vec::new();
    for item in store.batches_read_ahead()? {
        let item = item?;
        if failed.last().is_some_and(|(s, _)| s.origin == item.origin) {
            continue;
        }
        let applied = item.batch.map_err(|e| chain(&e)).and_then(|b| {
            field_rule(&b)?;
            builder.add(&b).map_err(|e| e.to_string())?;
            Ok(b)
        });
        match applied {
            Ok(b) => {
                batches += 1;
                let head = Head {
                    last_seq: b.last_seq(),
                    hash: b.hash(),
                };
                last = Some((item.origin, head));
            }
            Err(rule) => {
                let before = last
                    .as_ref()
                    .filter(|(o, _)| *o == item.origin)
                    .map(|(_, h)| *h);
                let s = SetAside {
                    origin: item.origin,
                    first_seq: item.first_seq,
                    rule,
                    evidence: false,
                };
                failed.push((s, before));
            }
        }
    }
    for (s, before) in failed {
        store.set_aside(&s.origin, s.first_seq, before)?;
        set_aside.push(s);
    }
    for (origin, raw) in store.fork_records(true)? {
        if evidence_rule(&raw).is_ok() {
            store.set_aside_fork(&origin, false)?;
        }
    }
    for (origin, raw) in store.fork_records(false)? {
        if evidence_rule(&raw).is_err() {
            store.set_aside_fork(&origin, true)?;
        }
    }
    for (origin, raw) in store.fork_records(true)? {
        let rule = match evidence_rule(&raw) {
            // Kept evidence of the origin was there first.
            Ok(_) => "evidence of the origin's fork is already kept".to_string(),
            Err(rule) => rule,
        };
        set_aside.push(SetAside {
            origin,
            first_seq: ForkEvidence::decode(raw.as_slice())
                .ok()
                .and_then(|ev| fork_point(&ev))
                .unwrap_or(0),
            rule,
            evidence: true,
        });
    }
    for s in &set_aside {
        if s.evidence {
            tracing::error!(origin = %s.origin, rule = %s.rule, "stored fork evidence set aside: it does not read; kept in the store, not used, not relayed");
        } else {
            tracing::error!(origin = %s.origin, first_seq = s.first_seq, rule = %s.rule, "stored batch set aside with the rest of its origin's log: not indexed, not relayed; the origin's log waits on this node for an operator action (see the README)");
        }
    }
    Ok(Opened {
        index: builder.finish(),
        batches,
        set_aside,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        batch,
        keys::signing::SigningKeyFile,
        proto::{BatchHeader, LogOp},
        token::Token,
    };

    fn add(origin: &str, first: u64, prev: [u8; 32], kinds: &[i32]) -> Batch {
        let header = BatchHeader {
            origin: origin.into(),
            first_seq: first,
            prev_hash: prev.to_vec(),
            created_unix: 1,
            op: LogOp::Add as i32,
            case_ref: "CASE-1".into(),
            tier: 1,
            ..Default::default()
        };
        let entries = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| batch::entry(&Token([first as u8 + i as u8; 32]), *k, 1))
            .collect();
        batch::sign(header, entries, &SigningKeyFile::generate())
    }

    fn logs(dir: &std::path::Path) -> OriginLogs {
        let store = Arc::new(Store::open(dir, 8).unwrap());
        let opened = open(&store).unwrap();
        OriginLogs::new(store, Arc::new(RwLock::new(opened.index)), opened.set_aside)
    }

    #[tokio::test]
    async fn a_batch_the_index_would_refuse_leaves_the_store_head_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let logs = logs(dir.path());
        let good = add("liaison", 1, [0; 32], &[6]);
        let head = logs.append(&good, true).await.unwrap();
        // Its second entry names a kind this build does not know.
        let bad = add("liaison", 2, good.hash(), &[6, 99]);
        assert!(matches!(
            logs.append(&bad, true).await,
            Err(LogsError::Index(IndexError::BadEntry { index: 1, .. }))
        ));
        assert_eq!(logs.store.head("liaison").unwrap(), Some(head));
        assert_eq!(logs.store.batch_count(), 1);
        assert_eq!(logs.index.read().tokens(), 1);
        assert_eq!(logs.index.read().active(&Token([2; 32]), 0).count(), 0);
    }

    #[tokio::test]
    async fn a_batch_whose_flush_fails_is_an_error_and_not_served_to_peers_until_a_flush_succeeds()
    {
        let dir = tempfile::tempdir().unwrap();
        let logs = logs(dir.path());
        let b1 = add("liaison", 1, [0; 32], &[6]);
        logs.append(&b1, true).await.unwrap();
        let b2 = add("liaison", 2, b1.hash(), &[6]);
        logs.store.fail_flushes(true);
        let mut heads = logs.subscribe();
        assert!(matches!(
            logs.append(&b2, true).await,
            Err(LogsError::Store(StoreError::Sled(_)))
        ));
        // Stored and indexed as one outcome, announced to no one, and not
        // what a peer pulling after b1 is served.
        assert_eq!(logs.store.head("liaison").unwrap().unwrap().last_seq, 2);
        assert_eq!(logs.index.read().tokens(), 2);
        assert!(heads.try_recv().is_err());
        assert_eq!(logs.store.batch_after("liaison", 1).unwrap(), None);
        assert!(!logs.store.all_served());
        // The next flush that succeeds makes it durable, and served.
        logs.store.fail_flushes(false);
        let b3 = add("liaison", 3, b2.hash(), &[6]);
        logs.append(&b3, true).await.unwrap();
        assert!(logs.store.all_served());
        let (first, body) = logs.store.batch_after("liaison", 1).unwrap().unwrap();
        assert_eq!((first, body), (2, b2.raw.encode_to_vec()));
    }

    #[tokio::test]
    async fn a_stored_batch_that_fails_at_start_is_set_aside_with_its_tail() {
        let dir = tempfile::tempdir().unwrap();
        let b1 = add("liaison", 1, [0; 32], &[6]);
        let mut b2 = add("liaison", 2, b1.hash(), &[6]);
        b2.raw.entries[0].kind = 99;
        let b3 = add("liaison", 3, b2.hash(), &[6]);
        {
            let store = Store::open(dir.path(), 8).unwrap();
            for b in [&b1, &b2, &b3, &add("bank", 1, [0; 32], &[6])] {
                store.append(b).unwrap();
            }
            store.flush_blocking().unwrap();
        }
        for run in 0..2 {
            let logs = logs(dir.path());
            assert_eq!(
                logs.set_aside(),
                [SetAside {
                    origin: "liaison".into(),
                    first_seq: 2,
                    rule: "entries[0].kind: must be a known kind".into(),
                    evidence: false,
                }]
            );
            assert_eq!(logs.store.head("liaison").unwrap().unwrap().last_seq, 1);
            // liaison's first batch, bank's, and what bank appended since.
            assert_eq!(logs.index.read().tokens(), 2 + run);
            assert!(matches!(
                logs.append(&add("liaison", 2, b1.hash(), &[6]), true).await,
                Err(LogsError::SetAside { first_seq: 2, .. })
            ));
            let h = logs.store.head("bank").unwrap().unwrap();
            let next = add("bank", h.last_seq + 1, h.hash, &[6]);
            logs.append(&next, true).await.unwrap();
        }
    }
}

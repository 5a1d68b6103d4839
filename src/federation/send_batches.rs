//! Sending origin-log batches to peers (the serving side of
//! `Federation.Pull` and `Watch`). A Pull gets every fork evidence this
//! node holds, then, per origin, the batches the caller lacks after the
//! head it sent; a caller whose history differs at its head
//! ([`super::history_at`]) gets this node's batches from where they differ,
//! so that it sees the fork. Nothing larger than a peer decodes is sent: a
//! batch over [`crate::batch::MAX_RECEIVED_BYTES`] (which every node would
//! refuse) ends its origin's part of the pull, while the other origins go
//! on; fork evidence over [`crate::batch::PEER_MESSAGE_BYTES`] is left out;
//! either is logged and counted for the peer ([`Withheld`]). A Watch gets
//! every head at once, then each origin's new head as this node takes
//! batches in, until the node stops or the caller goes. One member may
//! have at most [`STREAMS_PER_MEMBER`] Pull and as many Watch streams open
//! at once.
//!
//! A Pull's batches (sled and segment files) are read one at a time on a
//! blocking thread, never on a runtime worker, and no thread waits on a
//! slow caller: the stream's task sends each before the next is read.

use std::{collections::HashMap, sync::Arc};

use prost::Message;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::{heads, history_at, AtHead};
use crate::{
    counters::{Counters, Withheld},
    logs::OriginLogs,
    proto::{pull_response, LogBatch, OriginHead, PullResponse, WatchResponse},
    store::{Store, StoreError},
};

/// Why this node could not serve a peer's Pull or Watch (its own store).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("reading the store for a peer")]
    Store(#[from] StoreError),
    #[error("a stored batch of {origin} does not decode")]
    Corrupt { origin: String },
    #[error("the thread reading the store for a peer failed")]
    Reader,
    /// The member has as many streams of this kind open as it may.
    #[error("{stream}: at most {max} streams of this kind per member at once; one must end first")]
    Busy { stream: &'static str, max: usize },
}

/// Most Pull streams, and most Watch streams, one member may have open on
/// this node at once. An honest node keeps one of each per session; a Pull
/// from scratch reads the whole store, so a member opening many would make
/// this node read it many times over.
pub(crate) const STREAMS_PER_MEMBER: usize = 2;

/// The Pull and Watch streams open per member (members only: every caller
/// is an authorized member, so the map is bounded by the trust list).
#[derive(Default)]
struct OpenStreams(parking_lot::Mutex<HashMap<(String, &'static str), usize>>);

/// One open stream, counted until it is dropped with the stream's task.
struct Slot {
    open: Arc<OpenStreams>,
    key: (String, &'static str),
}

impl OpenStreams {
    fn take(self: &Arc<Self>, member: &str, stream: &'static str) -> Result<Slot, SendError> {
        let key = (member.to_string(), stream);
        let mut open = self.0.lock();
        let n = open.entry(key.clone()).or_default();
        if *n >= STREAMS_PER_MEMBER {
            return Err(SendError::Busy {
                stream,
                max: STREAMS_PER_MEMBER,
            });
        }
        *n += 1;
        Ok(Slot {
            open: self.clone(),
            key,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.0.lock();
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The serving side of replication.
pub(crate) struct BatchSender {
    logs: Arc<OriginLogs>,
    counters: Arc<Counters>,
    /// Cancelled when the node stops: ends the long-lived Watch streams so
    /// that shutdown need not wait for its drain deadline.
    stop: CancellationToken,
    open: Arc<OpenStreams>,
}

/// A stream of messages for a peer, each or an error that ends it.
pub(crate) type Outgoing<T> = ReceiverStream<Result<T, SendError>>;

impl BatchSender {
    pub(crate) fn new(
        logs: Arc<OriginLogs>,
        counters: Arc<Counters>,
        stop: CancellationToken,
    ) -> BatchSender {
        BatchSender {
            logs,
            counters,
            stop,
            open: Arc::default(),
        }
    }

    /// A slot for one more `stream` of `peer`, or the refusal (counted).
    fn slot(&self, peer: &str, stream: &'static str) -> Result<Slot, SendError> {
        self.open.take(peer, stream).inspect_err(|_| {
            self.counters
                .request_refused(peer, crate::counters::RequestRefusal::StreamLimit);
        })
    }

    /// What a caller whose heads are `have` lacks: fork evidence first,
    /// then each origin's batches after where the caller's history agrees
    /// with this node's. `peer` is the caller, for the counters.
    pub(crate) fn pull(
        &self,
        peer: String,
        have: Vec<OriginHead>,
    ) -> Result<Outgoing<PullResponse>, SendError> {
        let slot = self.slot(&peer, "Pull")?;
        let store = self.logs.store.clone();
        let counters = self.counters.clone();
        let have: HashMap<String, OriginHead> =
            have.into_iter().map(|h| (h.origin.clone(), h)).collect();
        let forks = store.forks()?;
        let origins = store.heads()?;
        let (tx, rx) = mpsc::channel(32);
        tokio::spawn(async move {
            let _slot = slot;
            for (origin, ev) in forks {
                if ev.encoded_len() + 16 > crate::batch::PEER_MESSAGE_BYTES {
                    tracing::warn!(%peer, origin = %origin, bytes = ev.encoded_len(), "fork evidence larger than a peer decodes: not sent");
                    counters.withheld(&peer, Withheld::OversizedEvidence);
                    continue;
                }
                let item = pull_response::Item::Fork(ev);
                if tx
                    .send(Ok(PullResponse { item: Some(item) }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            for (origin, head) in origins {
                let after = match have.get(&origin) {
                    None => 0,
                    // Without its history here, serve from the caller's
                    // head: the fork check waits for the next pull.
                    Some(h) => match off_runtime(&store, {
                        let h = h.clone();
                        move |store| sent_after(store, &h)
                    })
                    .await
                    {
                        Ok(after) => after,
                        Err(e) => {
                            tracing::error!(origin = %origin, error = %crate::telemetry::chain(&e), "reading this node's history for a peer's pull");
                            h.last_seq
                        }
                    },
                };
                if head.last_seq <= after {
                    continue;
                }
                let mut next = after;
                while let Some(raw) = next_batch(&store, &origin, &mut next).await {
                    let batch = match raw.and_then(|r| {
                        LogBatch::decode(r.as_slice()).map_err(|_| SendError::Corrupt {
                            origin: origin.clone(),
                        })
                    }) {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    };
                    if batch.encoded_len() > crate::batch::MAX_RECEIVED_BYTES {
                        tracing::warn!(%peer, origin = %origin, bytes = batch.encoded_len(), "stored batch larger than peers take: the rest of its origin is not sent");
                        counters.withheld(&peer, Withheld::OversizedBatch);
                        break;
                    }
                    let item = pull_response::Item::Batch(batch);
                    if tx
                        .send(Ok(PullResponse { item: Some(item) }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }

    /// Every head now, then each origin's new head as it moves, until the
    /// node stops or the caller (`peer`) goes.
    pub(crate) fn watch(&self, peer: &str) -> Result<Outgoing<WatchResponse>, SendError> {
        let slot = self.slot(peer, "Watch")?;
        let store = self.logs.store.clone();
        let mut updates = self.logs.subscribe();
        let first = heads(&store)?;
        let (tx, rx) = mpsc::channel(64);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if tx.send(Ok(WatchResponse { heads: first })).await.is_err() {
                return;
            }
            loop {
                let update = tokio::select! {
                    _ = stop.cancelled() => return,
                    // The caller went: its slot frees at once, not at the
                    // next head that moves.
                    _ = tx.closed() => return,
                    u = updates.recv() => u,
                };
                let heads = match update {
                    Ok(u) => match store.head(&u.origin) {
                        Ok(Some(h)) => vec![OriginHead {
                            origin: u.origin,
                            last_seq: h.last_seq,
                            hash: h.hash.to_vec(),
                        }],
                        _ => continue,
                    },
                    // Missed some: send them all again.
                    Err(RecvError::Lagged(_)) => match heads(&store) {
                        Ok(h) => h,
                        Err(_) => return,
                    },
                    Err(RecvError::Closed) => return,
                };
                if tx.send(Ok(WatchResponse { heads })).await.is_err() {
                    return;
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}

/// Runs `read` of the store on a blocking thread.
async fn off_runtime<T: Send + 'static>(
    store: &Arc<Store>,
    read: impl FnOnce(&Store) -> Result<T, SendError> + Send + 'static,
) -> Result<T, SendError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || read(&store))
        .await
        .unwrap_or_else(|_| Err(SendError::Reader))
}

/// The body of `origin`'s batch after `*after`, read on a blocking thread;
/// moves `*after` past it. `None` after the last one.
async fn next_batch(
    store: &Arc<Store>,
    origin: &str,
    after: &mut u64,
) -> Option<Result<Vec<u8>, SendError>> {
    let (origin, from) = (origin.to_string(), *after);
    match off_runtime(store, move |s| Ok(s.batch_after(&origin, from)?)).await {
        Ok(Some((first_seq, body))) => {
            *after = first_seq;
            Some(Ok(body))
        }
        Ok(None) => None,
        Err(e) => Some(Err(e)),
    }
}

/// The sequence number after which a caller at head `h` gets this node's
/// batches of the origin: its head, or, where the histories differ, the
/// start of this node's batch there.
fn sent_after(store: &Store, h: &OriginHead) -> Result<u64, SendError> {
    Ok(match history_at(store, h)? {
        AtHead::Same | AtHead::Lacking => h.last_seq,
        AtHead::Differs { from_seq } => from_seq.saturating_sub(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        batch::{self, Batch},
        index::Index,
        keys::signing::SigningKeyFile,
        proto::{BatchHeader, ForkEvidence, LogOp},
        token::Token,
    };
    use futures::StreamExt;

    fn add(origin: &str, first_seq: u64, prev: Vec<u8>, n: u32, key: &SigningKeyFile) -> Batch {
        let header = BatchHeader {
            origin: origin.into(),
            first_seq,
            prev_hash: prev,
            created_unix: 100,
            op: LogOp::Add as i32,
            case_ref: "case-1".into(),
            tier: 1,
            ..Default::default()
        };
        let entries = (0..n)
            .map(|i| {
                let mut t = [0x42; 32];
                t[..4].copy_from_slice(&i.to_be_bytes());
                batch::entry(&Token(t), 6, 1)
            })
            .collect();
        batch::sign(header, entries, key)
    }

    #[tokio::test]
    async fn a_batch_or_fork_evidence_larger_than_peers_take_is_withheld_and_other_origins_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), 8).unwrap());
        let key = SigningKeyFile::generate();
        // As an older node may have stored it: about 9 MiB.
        let big = add("big", 1, vec![0; 32], 160_000, &key);
        assert!(big.raw.encoded_len() > batch::MAX_RECEIVED_BYTES);
        let after = add("big", big.last_seq() + 1, big.hash().to_vec(), 1, &key);
        let small = add("small", 1, vec![0; 32], 2, &key);
        for b in [&big, &after, &small] {
            store.append(b).unwrap();
        }
        let ev = ForkEvidence {
            first: Some(big.raw.clone()),
            second: Some(big.raw.clone()),
        };
        store.put_fork("big", &ev).unwrap();
        let counters = Arc::new(Counters::new());
        let logs = Arc::new(OriginLogs::new(
            store,
            Arc::new(parking_lot::RwLock::new(Index::new())),
            Vec::new(),
        ));
        let sender = BatchSender::new(logs, counters.clone(), CancellationToken::new());
        let sent: Vec<PullResponse> = sender
            .pull("bank-b".into(), vec![])
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
            .await;
        let origins: Vec<String> = sent
            .iter()
            .map(|m| match &m.item {
                Some(pull_response::Item::Batch(b)) => {
                    Batch::decode(b.clone()).unwrap().origin().to_string()
                }
                _ => panic!("not a batch"),
            })
            .collect();
        assert_eq!(origins, ["small"]);
        let c = counters.peer("bank-b");
        assert_eq!(c.withheld(Withheld::OversizedBatch), 1);
        assert_eq!(c.withheld(Withheld::OversizedEvidence), 1);
    }
}

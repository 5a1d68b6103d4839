//! The sender's durable feedback queue, `<data_dir>/feedback` (its own sled
//! database): one entry per item, keyed by origin and a growing number, so
//! each origin's items leave in the order they were queued. A send writes
//! and flushes (fsync) before it returns; an item leaves the queue only
//! once its origin answered for it ([`super::deliver`]). Holds what the
//! wire carries and nothing more: no token, kind or case reference.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use prost::Message;
use tokio::sync::Notify;

use crate::{
    outcome::{day_string, Action, FeedbackOutcome, FeedbackSink, IndicatorRef, QueueError},
    proto::FeedbackItem,
};

/// The queue's folder in the data directory.
pub const QUEUE_DIR: &str = "feedback";
/// The folder of the queue of anonymous feedback (for the relay): kept
/// apart, so that an item queued to go anonymously never goes under this
/// node's name, whatever the mode later becomes.
pub const ANONYMOUS_QUEUE_DIR: &str = "feedback_anonymous";

/// Why the queue could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum QueueOpenError {
    /// The database could not be opened.
    #[error("opening the feedback queue {path}")]
    Open {
        /// The queue's folder.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
    /// A read or write of the queue failed.
    #[error("reading or writing a feedback queue")]
    Db(#[from] sled::Error),
}

/// The queue's counts since the node started, and what waits now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct QueueCounts {
    pub queued: u64,
    pub delivered: u64,
    pub refused: u64,
    pub pending: u64,
}

/// One queued item: its key in the queue and what goes on the wire.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub key: sled::IVec,
    pub item: FeedbackItem,
}

/// A key and its value, to write.
pub(crate) type KeyValue = (Vec<u8>, Vec<u8>);

/// The durable queue; the node's [`FeedbackSink`] when feedback is on.
pub struct Queue {
    db: sled::Db,
    items: sled::Tree,
    notify: Notify,
    queued: AtomicU64,
    delivered: AtomicU64,
    refused: AtomicU64,
}

fn origin_prefix(origin: &str) -> Vec<u8> {
    let mut k = origin.as_bytes().to_vec();
    k.push(0);
    k
}

impl Queue {
    /// Opens (or creates) the queue in `<data_dir>/feedback`.
    pub fn open(data_dir: &Path) -> Result<Queue, QueueOpenError> {
        Queue::open_in(&data_dir.join(QUEUE_DIR))
    }

    /// Opens (or creates) the queue of anonymous feedback in
    /// `<data_dir>/feedback_anonymous`.
    pub fn open_anonymous(data_dir: &Path) -> Result<Queue, QueueOpenError> {
        Queue::open_in(&data_dir.join(ANONYMOUS_QUEUE_DIR))
    }

    /// A queue in the tree `name` of an open database (the relay keeps its
    /// outbound queue beside its own records, to write both atomically).
    pub(crate) fn on(db: sled::Db, name: &str) -> Result<Queue, QueueOpenError> {
        let items = db.open_tree(name)?;
        Ok(Queue {
            db,
            items,
            notify: Notify::new(),
            queued: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// The queue's tree, for a writer that adds items in its own
    /// transaction ([`Queue::keyed`], then [`Queue::pushed`]).
    pub(crate) fn tree(&self) -> &sled::Tree {
        &self.items
    }

    /// The keys and values that queue `items` for their origins, in the
    /// order given.
    pub(crate) fn keyed(
        &self,
        items: &[(String, FeedbackItem)],
    ) -> Result<Vec<KeyValue>, QueueOpenError> {
        items
            .iter()
            .map(|(origin, item)| {
                let mut key = origin_prefix(origin);
                key.extend_from_slice(&self.db.generate_id()?.to_be_bytes());
                Ok((key, item.encode_to_vec()))
            })
            .collect()
    }

    /// Counts `n` items written through [`Queue::tree`] and wakes delivery.
    pub(crate) fn pushed(&self, n: usize) {
        if n > 0 {
            self.queued.fetch_add(n as u64, Ordering::Relaxed);
            self.notify.notify_one();
        }
    }

    /// Opens (or creates) a queue in the folder `path`.
    pub(crate) fn open_in(path: &Path) -> Result<Queue, QueueOpenError> {
        let db = crate::store::open_db(&sled::Config::new().path(path)).map_err(|source| {
            QueueOpenError::Open {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Queue::on(db, "items")
    }

    /// Items waiting, in all.
    pub fn pending(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn counts(&self) -> QueueCounts {
        QueueCounts {
            queued: self.queued.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            pending: self.items.len() as u64,
        }
    }

    /// The origins with items waiting, in order.
    pub(crate) fn origins(&self) -> Result<Vec<String>, QueueOpenError> {
        let mut out: Vec<String> = Vec::new();
        let mut from: Vec<u8> = Vec::new();
        // One seek per origin, not one step per item.
        while let Some((k, _)) = self.items.range(from.clone()..).next().transpose()? {
            let end = k.iter().position(|b| *b == 0).unwrap_or(k.len());
            let origin = String::from_utf8_lossy(&k[..end]).into_owned();
            from = k[..end].to_vec();
            from.push(1);
            out.push(origin);
        }
        Ok(out)
    }

    /// Up to `n` of `origin`'s items, oldest first.
    pub(crate) fn next(&self, origin: &str, n: usize) -> Result<Vec<Queued>, QueueOpenError> {
        let mut out = Vec::new();
        for kv in self.items.scan_prefix(origin_prefix(origin)).take(n) {
            let (key, v) = kv?;
            match FeedbackItem::decode(v.as_ref()) {
                Ok(item) => out.push(Queued { key, item }),
                // Written by this node only; a damaged entry would block its
                // origin for ever, so it goes (counted as refused).
                Err(_) => {
                    self.items.remove(&key)?;
                    self.refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(out)
    }

    /// Removes items their origin answered for: `delivered` accepted,
    /// `refused` refused for good. Flushed before it returns.
    pub(crate) fn remove(
        &self,
        keys: &[sled::IVec],
        delivered: u64,
        refused: u64,
    ) -> Result<(), QueueOpenError> {
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(k.clone());
        }
        self.items.apply_batch(batch)?;
        self.db.flush()?;
        self.delivered.fetch_add(delivered, Ordering::Relaxed);
        self.refused.fetch_add(refused, Ordering::Relaxed);
        Ok(())
    }

    /// Waits until something is queued.
    pub(crate) async fn queued(&self) {
        self.notify.notified().await
    }
}

impl FeedbackSink for Queue {
    fn send(
        &self,
        about: &IndicatorRef,
        outcome: FeedbackOutcome,
        actions: &[Action],
        day: i64,
    ) -> Result<(), QueueError> {
        let item = FeedbackItem {
            seq: about.seq,
            outcome: super::outcome_to_wire(outcome) as i32,
            actions: crate::outcome::leaving(actions)
                .into_iter()
                .filter_map(super::action_to_wire)
                .map(|a| a as i32)
                .collect(),
            date: day_string(day),
            anonymous_senders: 0,
        };
        let id = self
            .db
            .generate_id()
            .map_err(|e| QueueError(e.to_string()))?;
        let mut key = origin_prefix(&about.origin);
        key.extend_from_slice(&id.to_be_bytes());
        self.items
            .insert(key, item.encode_to_vec())
            .map_err(|e| QueueError(e.to_string()))?;
        self.db.flush().map_err(|e| QueueError(e.to_string()))?;
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::outcome::parse_day;

    fn about(origin: &str, seq: u64) -> IndicatorRef {
        IndicatorRef {
            origin: Arc::from(origin),
            seq,
        }
    }

    #[test]
    fn items_survive_reopen_in_order_per_origin_without_reported() {
        let dir = tempfile::tempdir().unwrap();
        let day = parse_day("2026-12-07").unwrap();
        {
            let q = Queue::open(dir.path()).unwrap();
            q.send(
                &about("liaison-b", 7),
                FeedbackOutcome::Confirmed,
                &[Action::Reported, Action::Closed, Action::Blocked],
                day,
            )
            .unwrap();
            q.send(&about("liaison-a", 3), FeedbackOutcome::Flood, &[], day)
                .unwrap();
            q.send(
                &about("liaison-b", 2),
                FeedbackOutcome::FalsePositive,
                &[],
                day,
            )
            .unwrap();
            assert_eq!(q.counts().queued, 3);
        }
        let q = Queue::open(dir.path()).unwrap();
        assert_eq!(q.pending(), 3);
        assert_eq!(q.origins().unwrap(), ["liaison-a", "liaison-b"]);
        let b = q.next("liaison-b", 10).unwrap();
        assert_eq!(
            b.iter().map(|i| i.item.seq).collect::<Vec<_>>(),
            [7, 2],
            "queued order"
        );
        assert_eq!(b[0].item.date, "2026-12-07");
        assert_eq!(
            b[0].item.actions,
            [
                crate::proto::FeedbackAction::Blocked as i32,
                crate::proto::FeedbackAction::Closed as i32
            ],
            "reported never queued"
        );
        q.remove(&[b[0].key.clone()], 1, 0).unwrap();
        drop(q);
        let q = Queue::open(dir.path()).unwrap();
        let b = q.next("liaison-b", 10).unwrap();
        assert_eq!(b.iter().map(|i| i.item.seq).collect::<Vec<_>>(), [2]);
        assert_eq!(q.next("liaison-b", 0).unwrap().len(), 0);
    }
}

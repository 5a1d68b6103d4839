//! Every origin log this node holds, its own and its peers': the one place
//! batches enter the store and the index, whether this node wrote them (contributions) or
//! received them from a peer (replication, verified before they get here).
//! Each append extends the origin's chain in the store, updates the index
//! and announces the origin's new head to watchers (push hints for peers).

use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::broadcast;

use crate::{
    batch::Batch,
    index::{Index, IndexError},
    store::{Head, Store, StoreError},
};

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
}

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
}

impl OriginLogs {
    pub(crate) fn new(store: Arc<Store>, index: Arc<RwLock<Index>>) -> OriginLogs {
        let (heads, _) = broadcast::channel(4096);
        OriginLogs {
            store,
            index,
            heads,
        }
    }

    /// Appends a batch that extends its origin's chain, applies it to the
    /// index and announces the new head. With `durable`, the store is
    /// flushed before this returns (contributions are acknowledged only
    /// then); replicated batches can be fetched again and are flushed in
    /// groups by the caller.
    pub(crate) async fn append(&self, batch: &Batch, durable: bool) -> Result<Head, LogsError> {
        let head = self.store.append(batch)?;
        if durable {
            self.store.flush().await?;
        }
        self.index.write().apply(batch)?;
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

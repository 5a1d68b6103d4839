//! The node's on-disk store: origin logs as signed, append-only batches (the
//! unit of replication), each origin's head, fork evidence, the trust list
//! and the schema version.
//!
//! Matching never reads the store: the token index lives in memory
//! ([`crate::index`]) and is rebuilt from these batches at start. Batch
//! bodies (the `LogBatch` protobuf bytes as received or written: signed
//! header verbatim, entries replaced by their hashes once purged) are
//! records in append-only segment files ([`segments`]), written once and
//! fsynced before sled records where they are; sled holds the small, often
//! rewritten state: one 16-byte location per batch, heads, trust list, fork
//! evidence. Keeping the bodies out of sled's tree saves the copies sled
//! makes of large values as its nodes split and are rewritten (about 2.7
//! per batch, measured), and lets a cold start read them sequentially.
//! Nothing is compressed, so that tests can search the data directory for
//! raw identifiers and prove that none is there. Batches hold tokens,
//! kinds, epochs and case labels only, never a raw identifier.
//!
//! A compaction ([`Store::compact`]) copies the live data into a fresh
//! directory while the store goes on: reads never wait for it, writes wait
//! only while it re-copies what was written during its copy and swaps the
//! fresh store in (a few records and the small trees, one fsync, one open).
//! Every call here does file I/O; async code makes the long ones (a
//! compaction, reading batch bodies for a peer) on a blocking thread. The
//! lock on the handles ([`Store::t`]) is held only for the instant of a
//! clone or a swap, so short reads may take it from a runtime worker.
//!
//! Layout: sled's files in `store/`, segment files in `store/segments/`, so
//! that a compaction replaces both with one rename. Trees:
//! - `meta`: `schema_version` → u32 big-endian.
//! - `batches`: origin id, 0x00, first sequence number (u64 big-endian) →
//!   the body's [`segments::Location`]. Version 1 stores held the bodies
//!   here; opening one moves them into segment files.
//! - `heads`: origin id → last sequence number (u64 big-endian) ‖ SHA-256 of
//!   the last batch's header.
//! - `forks`: origin id → `ForkEvidence` (two validly signed batches of the
//!   origin at one sequence number): of all the evidence found, the one
//!   with the lowest fork point ([`Store::put_fork`]).
//! - `forks_lifted`: origin id → fork evidence that no longer verifies
//!   under the trust list in force (a suspension before its fork point, a
//!   key rotation at or before it), moved out of `forks`: an audit record,
//!   not used, not relayed; it goes back if a later list lets it verify.
//! - `set_aside`: keyed as `batches`: the locations of batches a start found
//!   it could not apply, and of every later batch of their origin
//!   ([`Store::set_aside`]); their bodies stay in the segment files, so that
//!   nothing acknowledged is lost, and the origin's head in `heads` stops
//!   before them. `set_aside_heads`: origin id → the head the log had
//!   before, for [`Store::restore`].
//! - `forks_set_aside`: origin id → fork evidence a start found it could not
//!   read, moved out of `forks` as it was stored.
//! - `trust`: `current` → the newest accepted `SignedTrustList`, as received;
//!   `chain/` ‖ version (u64 big-endian) → each accepted list that changed
//!   the operator keys or the threshold, the newest of them only (the bound
//!   is the caller's), so that a node behind can walk from its list to the
//!   newest one.
//! - `query_usage`: member id → UTC day (i64 big-endian, days since the
//!   epoch) ‖ prefixes of that day's query quota taken (u64 big-endian):
//!   the only record of other members' prefix queries, counts and never a
//!   prefix; one day per member, earlier days pruned at start.
//! - `meta` also holds `decoy_secret` → 32 random bytes, made once, from
//!   which prefix-query answers derive their decoys.

pub mod segments;

/// Keys of the key-changing trust lists in the `trust` tree.
const CHAIN_PREFIX: &[u8] = b"chain/";

fn chain_key(version: u64) -> Vec<u8> {
    let mut k = CHAIN_PREFIX.to_vec();
    k.extend_from_slice(&version.to_be_bytes());
    k
}

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use parking_lot::{Mutex, RwLock};
use prost::Message;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use crate::{batch::Batch, proto::ForkEvidence};
use segments::{Location, SegmentError, Segments};

/// The store layout this build reads and writes.
pub const SCHEMA_VERSION: u32 = 2;

/// The layout with batch bodies inside sled, which an open migrates.
const SCHEMA_BODIES_IN_SLED: u32 = 1;

/// Directory of the segment files, inside sled's directory.
const SEGMENTS_DIR: &str = "segments";

/// The environment variable that pauses a test build's compactions: the
/// path of a file that a compaction creates once it has copied its first
/// batch body, then waits (at most five minutes) until the test
/// removes it, so that a test can act while a compaction is under way.
/// Honoured only by debug builds and builds with the `test-clock` feature,
/// as [`crate::time::TEST_CLOCK_ENV`] is; a release build ignores it.
pub const TEST_COMPACTION_PAUSE_ENV: &str = "CIX_TEST_COMPACTION_PAUSE_FILE";

/// The pause of [`TEST_COMPACTION_PAUSE_ENV`], where this build honours it.
fn test_pause_mid_copy() {
    #[cfg(any(debug_assertions, feature = "test-clock"))]
    if let Some(path) = std::env::var_os(TEST_COMPACTION_PAUSE_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if std::fs::write(&path, b"compaction paused mid-copy\n").is_ok() {
            let deadline = Instant::now() + std::time::Duration::from_secs(300);
            while path.exists() && Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// Why a store operation failed, or a batch was not appended.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled could not open its files (another process may hold them).
    #[error("opening the store at {path}")]
    Open {
        /// sled's directory, `store/` in the data directory.
        path: PathBuf,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// The store has a layout this build does not read.
    #[error("store at {path} has schema version {found}; this build of cix reads version {SCHEMA_VERSION} only")]
    Schema {
        /// sled's directory, `store/` in the data directory.
        path: PathBuf,
        /// The schema version recorded in the store.
        found: u32,
    },
    /// A read or write of sled's trees failed.
    #[error("the store's database")]
    Sled(#[from] sled::Error),
    /// A segment file could not be read or written, or a record in it is
    /// damaged.
    #[error(transparent)]
    Segments(#[from] SegmentError),
    /// The thread of [`Store::batches_read_ahead`] could not be started.
    #[error("store: cannot start a reader thread: {0}")]
    Thread(std::io::Error),
    /// Something stored does not decode, a batch to append is empty, or
    /// moving the store's directories (at open, in a compaction) failed;
    /// says what.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// The batch's first sequence number does not follow the origin's head.
    #[error("batch does not extend the log of {origin}: expected sequence {expected}, got {got}")]
    NotContiguous {
        /// Member id of the origin.
        origin: String,
        /// The sequence number after the head.
        expected: u64,
        /// The batch's first sequence number.
        got: u64,
    },
    /// The batch's previous-batch hash is not the hash of the head's batch.
    #[error("batch does not extend the log of {origin}: previous-batch hash differs")]
    ChainBroken {
        /// Member id of the origin.
        origin: String,
    },
}

/// The position of an origin's log: last sequence number and the hash of
/// its last batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Head {
    /// Sequence number of the log's last entry; 0 for an empty log.
    pub last_seq: u64,
    /// SHA-256 of the last batch's header; all zero for an empty log.
    pub hash: [u8; 32],
}

impl Head {
    fn encode(&self) -> [u8; 40] {
        let mut b = [0u8; 40];
        b[..8].copy_from_slice(&self.last_seq.to_be_bytes());
        b[8..].copy_from_slice(&self.hash);
        b
    }

    fn decode(b: &[u8]) -> Result<Head, StoreError> {
        if b.len() != 40 {
            return Err(StoreError::Corrupt("head record is not 40 bytes".into()));
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&b[8..]);
        Ok(Head {
            last_seq: u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
            hash,
        })
    }
}

fn decode(body: Vec<u8>) -> Result<Batch, StoreError> {
    Batch::decode_owned(body.into()).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Checks that `batch` extends a log whose head is `head`.
fn extends(head: Head, batch: &Batch) -> Result<(), StoreError> {
    let expected = head.last_seq.saturating_add(1);
    if head.last_seq == u64::MAX || batch.first_seq() != expected {
        return Err(StoreError::NotContiguous {
            origin: batch.origin().to_string(),
            expected,
            got: batch.first_seq(),
        });
    }
    if batch.header.prev_hash.as_slice() != head.hash {
        return Err(StoreError::ChainBroken {
            origin: batch.origin().to_string(),
        });
    }
    Ok(())
}

fn origin_prefix(origin: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(origin.len() + 1);
    k.extend_from_slice(origin.as_bytes());
    k.push(0);
    k
}

fn batch_key(origin: &str, first_seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(origin.len() + 9);
    k.extend_from_slice(origin.as_bytes());
    k.push(0);
    k.extend_from_slice(&first_seq.to_be_bytes());
    k
}

/// The origin and first sequence number a `batches` key names.
fn key_parts(key: &[u8]) -> Result<(String, u64), StoreError> {
    let corrupt = || StoreError::Corrupt("batch key".into());
    let split = key.len().checked_sub(9).ok_or_else(corrupt)?;
    if key[split] != 0 {
        return Err(corrupt());
    }
    let origin = String::from_utf8(key[..split].to_vec()).map_err(|_| corrupt())?;
    let seq = u64::from_be_bytes(key[split + 1..].try_into().map_err(|_| corrupt())?);
    Ok((origin, seq))
}

/// Aborts a transaction with `e`, or passes on sled's error.
fn transaction_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    }
}

/// Every record of a tree keyed by origin id, as stored.
fn by_origin(tree: &sled::Tree) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    tree.iter()
        .map(|r| {
            let (k, v) = r?;
            let origin = String::from_utf8(k.to_vec())
                .map_err(|_| StoreError::Corrupt("origin id".into()))?;
            Ok((origin, v.to_vec()))
        })
        .collect()
}

/// One batch as [`Store::batches_read_ahead`] reads it: where it sits in
/// its origin's log, and its body decoded, or why it could not be.
#[derive(Debug)]
pub struct StoredBatch {
    /// Member id of the origin, from the batch's key.
    pub origin: String,
    /// Sequence number of its first entry, from the batch's key.
    pub first_seq: u64,
    /// The batch, or why its body could not be read or decoded.
    pub batch: Result<Batch, StoreError>,
}

/// The keys of `origin`'s batches that start after sequence number `after`.
fn keys_after(origin: &str, after: u64) -> std::ops::RangeInclusive<Vec<u8>> {
    batch_key(origin, after.saturating_add(1))..=batch_key(origin, u64::MAX)
}

/// The store of one node: sled's trees and the segment files, in the data
/// directory's `store/`.
pub struct Store {
    path: PathBuf,
    cache_mb: u64,
    /// Replaced whole by [`Store::compact`]; held only to clone or swap.
    trees: RwLock<Trees>,
    /// Writers hold it shared for the length of their write; a compaction
    /// holds it exclusively from its re-copy to its swap, so that it never
    /// loses a write.
    writes: RwLock<()>,
    /// The keys of [`LOCATION_TREES`] written since the running compaction
    /// began its copy (it copies them again), by tree; `None` while none
    /// runs.
    written: Mutex<Option<Written>>,
    /// Held by the one compaction running.
    compaction: Mutex<()>,
    /// Set when a compaction failed after its first rename and could not
    /// roll back: writes are refused until a restart repairs the store.
    broken: std::sync::atomic::AtomicBool,
    /// Keys of batches appended by [`Store::append_unserved`] that no flush
    /// has made durable yet: [`Store::batch_after`] (what peers are served)
    /// stops before them.
    unserved: Mutex<BTreeSet<Vec<u8>>>,
    /// Test builds: the next flushes fail (a full or failing disk).
    #[cfg(test)]
    fail_flushes: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
struct Trees {
    db: sled::Db,
    meta: sled::Tree,
    batches: sled::Tree,
    heads: sled::Tree,
    trust: sled::Tree,
    forks: sled::Tree,
    set_aside: sled::Tree,
    set_aside_heads: sled::Tree,
    forks_set_aside: sled::Tree,
    query_usage: sled::Tree,
    forks_lifted: sled::Tree,
    segments: Arc<Segments>,
}

/// Keys of location trees, by tree: what a compaction copies again.
type Written = BTreeSet<(&'static str, Vec<u8>)>;

/// The trees whose values are [`Location`]s of bodies in the segment
/// files: a compaction copies the bodies they name.
const LOCATION_TREES: [&str; 2] = ["batches", "set_aside"];

/// Batches [`Store::batches_read_ahead`] decodes before they are asked for.
pub const READ_AHEAD: usize = 4;

impl Trees {
    /// The batch an entry of the `batches` tree names, decoded.
    fn batch(&self, entry: sled::Result<(sled::IVec, sled::IVec)>) -> Result<Batch, StoreError> {
        decode(self.body(&entry?.1)?)
    }

    /// The body a `batches` value names.
    fn body(&self, location: &[u8]) -> Result<Vec<u8>, StoreError> {
        let at = Location::decode(location)
            .ok_or_else(|| StoreError::Corrupt("batch location is not 16 bytes".into()))?;
        Ok(self.segments.read(at)?)
    }
}

/// How long an open waits for sled's file lock: a handle this process just
/// dropped (for instance the fresh copy a compaction wrote) lets go of the
/// file only when sled's background flusher does, a moment later. Another
/// process holding the store (a second node on the same directory) also
/// makes the open wait this long before it fails with sled's message.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens the sled database of `config`, waiting up to [`LOCK_WAIT`] for its
/// file lock (also for the alert log's own database).
pub(crate) fn open_db(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn open_trees(path: &Path, cache_mb: u64) -> Result<Trees, StoreError> {
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(cache_mb.saturating_mul(1024 * 1024))
        .use_compression(false)
        .mode(sled::Mode::HighThroughput);
    let db = open_db(&config).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let meta = db.open_tree("meta")?;
    let found = match meta.get("schema_version")? {
        Some(v) => u32::from_be_bytes(
            v.as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("schema_version is not 4 bytes".into()))?,
        ),
        None => {
            meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
            db.flush()?;
            SCHEMA_VERSION
        }
    };
    if found != SCHEMA_VERSION && found != SCHEMA_BODIES_IN_SLED {
        return Err(StoreError::Schema {
            path: path.to_path_buf(),
            found,
        });
    }
    let trees = Trees {
        batches: db.open_tree("batches")?,
        heads: db.open_tree("heads")?,
        trust: db.open_tree("trust")?,
        forks: db.open_tree("forks")?,
        set_aside: db.open_tree("set_aside")?,
        set_aside_heads: db.open_tree("set_aside_heads")?,
        forks_set_aside: db.open_tree("forks_set_aside")?,
        query_usage: db.open_tree("query_usage")?,
        forks_lifted: db.open_tree("forks_lifted")?,
        segments: Arc::new(Segments::open(&path.join(SEGMENTS_DIR))?),
        meta,
        db,
    };
    if found == SCHEMA_BODIES_IN_SLED {
        move_bodies_to_segments(&trees)?;
    }
    Ok(trees)
}

/// Writes the body of every entry of `batches` (`body` reads it from the
/// entry's value) into `segments`, in log order, syncs once, and returns
/// the sled batch that points the entries at their copies.
fn copy_bodies(
    batches: &sled::Tree,
    segments: &Segments,
    body: impl Fn(&[u8]) -> Result<Vec<u8>, StoreError>,
) -> Result<sled::Batch, StoreError> {
    let mut moved = sled::Batch::default();
    for r in batches.iter() {
        let (key, value) = r?;
        moved.insert(key, segments.write(&body(&value)?)?.encode().to_vec());
    }
    segments.sync()?;
    Ok(moved)
}

/// Migrates a version 1 store: every batch body goes into a segment file
/// (durably), then one transaction replaces the bodies by their locations
/// and records the new version. Cut short, it starts again from the bodies
/// still in sled; the copies written before are never named.
fn move_bodies_to_segments(t: &Trees) -> Result<(), StoreError> {
    let moved = copy_bodies(&t.batches, &t.segments, |body| Ok(body.to_vec()))?;
    (&t.batches, &t.meta)
        .transaction(|(batches, meta)| {
            batches.apply_batch(&moved)?;
            meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
            Ok(())
        })
        .map_err(transaction_error)?;
    t.db.flush()?;
    Ok(())
}

/// The steps of a compaction's swap, in order, as its test hook names them.
#[cfg(test)]
const SWAP_STEPS: [&str; 5] = [
    "sync_fresh",
    "rename_old",
    "rename_fresh",
    "open_fresh",
    "remove_old",
];

/// Makes the entries of directory `dir` (files created, renamed or removed
/// in it) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Removes the directory `path` and what it holds, if it is there.
fn remove_dir_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, checking its schema version.
    /// `cache_mb` sizes sled's page cache. Finishes what a compaction cut
    /// short left (see [`Store::compact`]): every state it can leave holds
    /// a complete store, `store/` or else `store.old/`.
    pub fn open(dir: &Path, cache_mb: u64) -> Result<Store, StoreError> {
        let path = dir.join("store");
        let repair = |e: std::io::Error| {
            StoreError::Corrupt(format!("finishing a compaction cut short: {e}"))
        };
        // A compaction cut short: the old store is complete, the new one
        // may not be, and no write ever went to it before it was `store/`.
        remove_dir_if_there(&path.with_extension("compact")).map_err(repair)?;
        if !path.exists() && path.with_extension("old").exists() {
            std::fs::rename(path.with_extension("old"), &path).map_err(repair)?;
            sync_dir(dir).map_err(repair)?;
        }
        remove_dir_if_there(&path.with_extension("old")).map_err(repair)?;
        let trees = open_trees(&path, cache_mb)?;
        Ok(Store {
            path,
            cache_mb,
            trees: RwLock::new(trees),
            writes: RwLock::new(()),
            written: Mutex::new(None),
            compaction: Mutex::new(()),
            broken: std::sync::atomic::AtomicBool::new(false),
            unserved: Mutex::new(BTreeSet::new()),
            #[cfg(test)]
            fail_flushes: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Shared hold on [`Store::writes`] for one write; refused once a
    /// compaction left the handles pointing at files that are no longer
    /// the store's (its roll-back failed), so that nothing is acknowledged
    /// that the next open would not find.
    fn writing(&self) -> Result<parking_lot::RwLockReadGuard<'_, ()>, StoreError> {
        if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Corrupt(
                "a compaction failed and could not put the store back; restart the node, which repairs it".into(),
            ));
        }
        Ok(self.writes.read())
    }

    /// A snapshot of the handles, for reads.
    fn t(&self) -> Trees {
        self.trees.read().clone()
    }

    /// Notes that a write changed the entry `key` of the location tree
    /// `tree`, for the compaction running, if any. The caller holds
    /// [`Store::writes`].
    fn note_written(&self, tree: &'static str, key: &[u8]) {
        if let Some(keys) = self.written.lock().as_mut() {
            keys.insert((tree, key.to_vec()));
        }
    }

    /// Rewrites the store into a fresh directory holding only live data and
    /// deletes the old one, so that superseded bytes (batch bodies replaced
    /// by a purge, the versions sled kept of its own pages) leave the disk.
    ///
    /// The live bodies are copied without a lock while reads and writes go
    /// on. Then, with writes held back, the batches written meanwhile are
    /// copied again, the small trees whole, the copy is made durable and
    /// swapped in; reads go on against the old handles until the swap. A
    /// body rewritten after the copy passed it is copied again, and its
    /// first copy stays as dead bytes until the next compaction (a purge
    /// rewrites before it compacts). Long (it copies every live body):
    /// call it on a blocking thread.
    ///
    /// The swap is two renames, `store/` to `store.old/` and the fresh
    /// copy to `store/`, each made durable (the data directory fsynced)
    /// before the next step; the fresh copy is fsynced whole before them.
    /// A crash at any point leaves `store/` complete, or no `store/` and a
    /// complete `store.old/` (the old store, which every write before the
    /// swap went to), which [`Store::open`] puts back. A failure after the
    /// first rename puts the old store back before writes go on; if even
    /// that fails, writes are refused until a restart repairs the store.
    pub fn compact(&self) -> Result<(), StoreError> {
        self.compact_pausing(test_pause_mid_copy, |_| Ok(()))
    }

    /// [`Store::compact`], calling `mid_copy` once its first body is copied
    /// and `step` before each step of the swap ([`SWAP_STEPS`]), whose
    /// error is that step's.
    fn compact_pausing(
        &self,
        mid_copy: impl FnOnce(),
        step: impl Fn(&'static str) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        let _one = self.compaction.lock();
        *self.written.lock() = Some(BTreeSet::new());
        let result = self.compact_tracked(mid_copy, step);
        *self.written.lock() = None;
        result
    }

    fn compact_tracked(
        &self,
        mid_copy: impl FnOnce(),
        step: impl Fn(&'static str) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        let old = self.t();
        let fresh_path = self.path.with_extension("compact");
        let old_path = self.path.with_extension("old");
        let _ = std::fs::remove_dir_all(&fresh_path);
        let copied = {
            let fresh = sled::Config::new()
                .path(&fresh_path)
                .use_compression(false)
                .open()?;
            let segments = Segments::open(&fresh_path.join(SEGMENTS_DIR))?;
            // The live bodies, copied in log order into fresh segments.
            let mut mid_copy = Some(mid_copy);
            for name in LOCATION_TREES {
                let (from, to) = (old.db.open_tree(name)?, fresh.open_tree(name)?);
                for r in from.iter() {
                    let (key, location) = r?;
                    let at = segments.write(&old.body(&location)?)?;
                    to.insert(key, at.encode().as_slice())?;
                    if let Some(pause) = mid_copy.take() {
                        pause();
                    }
                }
            }
            segments.sync()?;
            // Writes wait from here to the swap; reads do not.
            let gate = self.writes.write();
            let locked = Instant::now();
            let written = self.written.lock().take().unwrap_or_default();
            let rewritten = written.len();
            for (name, key) in written {
                let (from, to) = (old.db.open_tree(name)?, fresh.open_tree(name)?);
                match from.get(&key)? {
                    Some(location) => {
                        let at = segments.write(&old.body(&location)?)?;
                        to.insert(key, at.encode().as_slice())?;
                    }
                    None => {
                        to.remove(key)?;
                    }
                }
            }
            segments.sync()?;
            // Every other tree is small (heads, trust list, forks, meta):
            // copied whole, now that nothing changes them.
            for name in old.db.tree_names() {
                if LOCATION_TREES.iter().any(|t| name.as_ref() == t.as_bytes()) {
                    continue;
                }
                let (from, to) = (old.db.open_tree(&name)?, fresh.open_tree(&name)?);
                for r in from.iter() {
                    let (k, v) = r?;
                    to.insert(k, v)?;
                }
            }
            fresh.flush()?;
            (gate, locked, rewritten)
        };
        let (gate, locked, rewritten) = copied;
        let io = |e: std::io::Error| StoreError::Corrupt(format!("compacting the store: {e}"));
        let data_dir = self.path.parent().unwrap_or(Path::new("."));
        // The fresh copy's own entries (sled's files, the segments
        // directory) are durable before it is named.
        step("sync_fresh")
            .and_then(|()| sync_dir(&fresh_path))
            .map_err(io)?;
        step("rename_old")
            .and_then(|()| std::fs::rename(&self.path, &old_path))
            .and_then(|()| sync_dir(data_dir))
            .map_err(io)?;
        // From here a failure puts the old store back before writes go on.
        let swapped = step("rename_fresh")
            .and_then(|()| std::fs::rename(&fresh_path, &self.path))
            .and_then(|()| sync_dir(data_dir))
            .map_err(io)
            .and_then(|()| {
                step("open_fresh").map_err(io)?;
                open_trees(&self.path, self.cache_mb)
            });
        let fresh = match swapped {
            Ok(fresh) => fresh,
            Err(e) => {
                let back = (|| {
                    if self.path.exists() {
                        std::fs::rename(&self.path, &fresh_path)?;
                    }
                    std::fs::rename(&old_path, &self.path)?;
                    sync_dir(data_dir)
                })();
                if let Err(back) = back {
                    self.broken.store(true, std::sync::atomic::Ordering::SeqCst);
                    tracing::error!(error = %back, "a failed compaction could not put the old store back; writes are refused until a restart repairs the store");
                }
                drop(gate);
                return Err(e);
            }
        };
        *self.trees.write() = fresh;
        drop(gate);
        tracing::info!(
            batches_copied_again = rewritten,
            writes_held_ms = locked.elapsed().as_millis() as u64,
            "store compacted"
        );
        drop(old);
        // The compaction is done: an old store left behind is removed by
        // the next open.
        if let Err(e) = step("remove_old")
            .and_then(|()| std::fs::remove_dir_all(&old_path))
            .and_then(|()| sync_dir(data_dir))
        {
            tracing::warn!(error = %e, "compacted; the old store stays on disk until the next start");
        }
        Ok(())
    }

    /// The head of `origin`'s log, if the store holds any of it.
    pub fn head(&self, origin: &str) -> Result<Option<Head>, StoreError> {
        self.t()
            .heads
            .get(origin.as_bytes())?
            .map(|v| Head::decode(&v))
            .transpose()
    }

    /// Every origin's head.
    pub fn heads(&self) -> Result<Vec<(String, Head)>, StoreError> {
        self.t()
            .heads
            .iter()
            .map(|r| {
                let (k, v) = r?;
                let origin = String::from_utf8(k.to_vec())
                    .map_err(|_| StoreError::Corrupt("origin id".into()))?;
                Ok((origin, Head::decode(&v)?))
            })
            .collect()
    }

    /// Appends one batch to its origin's log, atomically with the head, if it
    /// extends the log exactly (contiguous numbering, matching previous hash).
    /// Returns the new head. The body is durable when this returns, the
    /// record of it (and so the batch) not until [`Store::flush`].
    pub fn append(&self, batch: &Batch) -> Result<Head, StoreError> {
        if batch.header.count == 0 {
            return Err(StoreError::Corrupt("empty batch".into()));
        }
        let origin = batch.origin();
        let new_head = Head {
            last_seq: batch.last_seq(),
            hash: batch.hash(),
        };
        let key = batch_key(origin, batch.first_seq());
        let _writing = self.writing()?;
        let t = self.t();
        let head_of = |v: Option<sled::IVec>| v.map_or(Ok(Head::default()), |v| Head::decode(&v));
        // Checked before the body is written (so a refused batch leaves no
        // bytes behind) and again, atomically, when its location is.
        extends(head_of(t.heads.get(origin.as_bytes())?)?, batch)?;
        let location = t.segments.append(&batch.raw.encode_to_vec())?.encode();
        let result = (&t.batches, &t.heads).transaction(|(batches, heads)| {
            let head = head_of(heads.get(origin.as_bytes())?)
                .map_err(ConflictableTransactionError::Abort)?;
            extends(head, batch).map_err(ConflictableTransactionError::Abort)?;
            batches.insert(key.as_slice(), location.as_slice())?;
            heads.insert(origin.as_bytes(), new_head.encode().as_slice())?;
            Ok(())
        });
        match result {
            Ok(()) => {
                self.note_written("batches", &key);
                Ok(new_head)
            }
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// [`Store::append`], keeping the batch from peers ([`Store::batch_after`])
    /// until a flush has made it durable: a batch this node writes and
    /// might lose in a crash must never have left it, or the node would
    /// sign another batch at its sequence numbers.
    pub fn append_unserved(&self, batch: &Batch) -> Result<Head, StoreError> {
        let key = batch_key(batch.origin(), batch.first_seq());
        let mut unserved = self.unserved.lock();
        let head = self.append(batch)?;
        unserved.insert(key);
        Ok(head)
    }

    /// Whether a flush has made every batch of [`Store::append_unserved`]
    /// durable (peers are served all of them).
    pub fn all_served(&self) -> bool {
        self.unserved.lock().is_empty()
    }

    /// The stored batch of `origin` that holds sequence number `seq`.
    pub fn batch_holding(&self, origin: &str, seq: u64) -> Result<Option<Batch>, StoreError> {
        let t = self.t();
        let found = t
            .batches
            .range(origin_prefix(origin)..=batch_key(origin, seq))
            .next_back()
            .transpose()?;
        match found {
            Some((_, v)) => {
                let b = decode(t.body(&v)?)?;
                Ok((b.last_seq() >= seq).then_some(b))
            }
            None => Ok(None),
        }
    }

    /// The batches of `origin` after sequence number `after`, in order, as
    /// stored (encoded `LogBatch`).
    pub fn batches_after(
        &self,
        origin: &str,
        after: u64,
    ) -> impl Iterator<Item = Result<Vec<u8>, StoreError>> + '_ {
        let t = self.t();
        t.batches
            .range(keys_after(origin, after))
            .map(move |r| t.body(&r?.1))
    }

    /// The first batch of `origin` that starts after sequence number
    /// `after`, as stored, with that first sequence number (the `after` of
    /// the next call): one seek and one read, for a caller that reads a log
    /// a batch at a time on a blocking thread. What peers are served: none
    /// from a batch of [`Store::append_unserved`] that is not durable yet.
    pub fn batch_after(
        &self,
        origin: &str,
        after: u64,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        if after == u64::MAX {
            return Ok(None);
        }
        let t = self.t();
        let Some((key, location)) = t
            .batches
            .range(keys_after(origin, after))
            .next()
            .transpose()?
        else {
            return Ok(None);
        };
        if self.unserved.lock().contains(key.as_ref()) {
            return Ok(None);
        }
        let first_seq = key
            .len()
            .checked_sub(8)
            .and_then(|at| key[at..].try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| StoreError::Corrupt("batch key is shorter than 8 bytes".into()))?;
        Ok(Some((first_seq, t.body(&location)?)))
    }

    /// The batches of `origin` after sequence number `after`, in order, decoded.
    pub fn decoded_after(
        &self,
        origin: &str,
        after: u64,
    ) -> impl Iterator<Item = Result<Batch, StoreError>> + '_ {
        let t = self.t();
        t.batches
            .range(keys_after(origin, after))
            .map(move |r| t.batch(r))
    }

    /// Replaces a stored batch by the same batch with some entries purged.
    /// The caller checks that the header is unchanged.
    pub fn rewrite(&self, batch: &Batch) -> Result<(), StoreError> {
        let _writing = self.writing()?;
        let t = self.t();
        let location = t.segments.append(&batch.raw.encode_to_vec())?;
        let key = batch_key(batch.origin(), batch.first_seq());
        t.batches
            .insert(key.as_slice(), location.encode().as_slice())?;
        self.note_written("batches", &key);
        Ok(())
    }

    /// Records fork evidence for an origin. Of all the evidence found, the
    /// one with the lowest fork point ([`crate::batch::fork_point`]) is
    /// kept, whatever the order it arrived in: new evidence replaces the
    /// kept one only if its fork point is lower. Returns whether it was
    /// kept (new, or lower than the evidence it replaced).
    pub fn put_fork(&self, origin: &str, evidence: &ForkEvidence) -> Result<bool, StoreError> {
        let _writing = self.writing()?;
        let forks = &self.t().forks;
        let point = crate::batch::fork_point(evidence).unwrap_or(1);
        let new = evidence.encode_to_vec();
        loop {
            let current = forks.get(origin.as_bytes())?;
            if let Some(c) = &current {
                let kept = ForkEvidence::decode(c.as_ref())
                    .ok()
                    .and_then(|ev| crate::batch::fork_point(&ev));
                // Evidence that does not read is replaced by evidence that does.
                if kept.is_some_and(|k| k <= point) {
                    return Ok(false);
                }
            }
            if forks
                .compare_and_swap(origin.as_bytes(), current, Some(new.as_slice()))?
                .is_ok()
            {
                return Ok(true);
            }
        }
    }

    /// The fork point of the evidence kept for `origin`, if any reads.
    pub fn fork_point(&self, origin: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .t()
            .forks
            .get(origin.as_bytes())?
            .and_then(|v| ForkEvidence::decode(v.as_ref()).ok())
            .and_then(|ev| crate::batch::fork_point(&ev)))
    }

    /// Lifts `origin`'s kept fork evidence if it is still `expected` (as
    /// read): it moves to `forks_lifted`, replacing what was lifted
    /// before. Returns whether it moved. Durable when this returns.
    pub fn lift_fork(&self, origin: &str, expected: &ForkEvidence) -> Result<bool, StoreError> {
        self.move_fork(origin, expected, true)
    }

    /// Puts `origin`'s lifted fork evidence back in force if it is still
    /// `expected` and no evidence with a fork point as low is kept.
    /// Returns whether it moved. Durable when this returns.
    pub fn unlift_fork(&self, origin: &str, expected: &ForkEvidence) -> Result<bool, StoreError> {
        self.move_fork(origin, expected, false)
    }

    fn move_fork(&self, origin: &str, ev: &ForkEvidence, lift: bool) -> Result<bool, StoreError> {
        let _writing = self.writing()?;
        let t = self.t();
        let (from, to) = if lift {
            (&t.forks, &t.forks_lifted)
        } else {
            (&t.forks_lifted, &t.forks)
        };
        let expected = ev.encode_to_vec();
        let point = crate::batch::fork_point(ev).unwrap_or(1);
        let moved = (from, to)
            .transaction(|(from, to)| {
                if from.get(origin.as_bytes())?.as_deref() != Some(expected.as_slice()) {
                    return Ok(false);
                }
                if !lift {
                    let lower = to
                        .get(origin.as_bytes())?
                        .and_then(|v| ForkEvidence::decode(v.as_ref()).ok())
                        .and_then(|k| crate::batch::fork_point(&k))
                        .is_some_and(|k| k <= point);
                    if lower {
                        return Ok(false);
                    }
                }
                from.remove(origin.as_bytes())?;
                to.insert(origin.as_bytes(), expected.as_slice())?;
                Ok(true)
            })
            .map_err(transaction_error)?;
        t.db.flush()?;
        Ok(moved)
    }

    /// Every lifted fork evidence, by origin.
    pub fn lifted_forks(&self) -> Result<Vec<(String, ForkEvidence)>, StoreError> {
        by_origin(&self.t().forks_lifted)?
            .into_iter()
            .map(|(origin, v)| {
                let ev = ForkEvidence::decode(v.as_slice())
                    .map_err(|e| StoreError::Corrupt(format!("lifted fork evidence: {e}")))?;
                Ok((origin, ev))
            })
            .collect()
    }

    /// Drops `origin`'s batches from `from_seq` on, in one durable
    /// transaction, the head going back to `before` (the last batch kept;
    /// `None`: nothing of the origin is kept). For batches that no longer
    /// verify under the trust list in force after a key rotation: the
    /// origin's node signs them again and peers pull them anew. Returns how
    /// many batches were dropped.
    pub fn truncate(
        &self,
        origin: &str,
        from_seq: u64,
        before: Option<Head>,
    ) -> Result<usize, StoreError> {
        let _writing = self.writing()?;
        let t = self.t();
        let dropped = t
            .batches
            .range(batch_key(origin, from_seq)..=batch_key(origin, u64::MAX))
            .keys()
            .collect::<Result<Vec<_>, _>>()?;
        if dropped.is_empty() {
            return Ok(0);
        }
        (&t.batches, &t.heads)
            .transaction(|(batches, heads)| {
                for k in &dropped {
                    batches.remove(k)?;
                }
                match before {
                    Some(b) => heads.insert(origin.as_bytes(), b.encode().as_slice())?,
                    None => heads.remove(origin.as_bytes())?,
                };
                Ok(())
            })
            .map_err(transaction_error)?;
        for k in &dropped {
            self.note_written("batches", k);
        }
        t.db.flush()?;
        Ok(dropped.len())
    }

    /// Every fork evidence held, by origin.
    pub fn forks(&self) -> Result<Vec<(String, ForkEvidence)>, StoreError> {
        by_origin(&self.t().forks)?
            .into_iter()
            .map(|(origin, v)| {
                let ev = ForkEvidence::decode(v.as_slice())
                    .map_err(|e| StoreError::Corrupt(format!("fork evidence: {e}")))?;
                Ok((origin, ev))
            })
            .collect()
    }

    /// Every fork evidence record, by origin, as stored: kept (`aside`
    /// false) or set aside at a start (true).
    pub fn fork_records(&self, aside: bool) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let t = self.t();
        by_origin(if aside { &t.forks_set_aside } else { &t.forks })
    }

    /// Moves `origin`'s fork evidence record into the set-aside tree
    /// (`aside`) or back; a record moved back never replaces evidence kept
    /// since. Durable when this returns.
    pub fn set_aside_fork(&self, origin: &str, aside: bool) -> Result<(), StoreError> {
        let _writing = self.writing()?;
        let t = self.t();
        let (from, to) = if aside {
            (&t.forks, &t.forks_set_aside)
        } else {
            (&t.forks_set_aside, &t.forks)
        };
        (from, to)
            .transaction(|(from, to)| {
                if let Some(v) = from.remove(origin.as_bytes())? {
                    if to.get(origin.as_bytes())?.is_none() {
                        to.insert(origin.as_bytes(), v)?;
                    }
                }
                Ok(())
            })
            .map_err(transaction_error)?;
        t.db.flush()?;
        Ok(())
    }

    /// Sets aside `origin`'s batches from `from_seq` on, in one durable
    /// transaction: their records move from `batches` to `set_aside` (the
    /// bodies stay where they are), the head goes back to `before` (the
    /// last batch kept; `None`: nothing of the origin is kept), and the
    /// head the log had is kept for [`Store::restore`]. Nothing reads them
    /// from then on: not the heads, not a pull, not a start's index.
    pub fn set_aside(
        &self,
        origin: &str,
        from_seq: u64,
        before: Option<Head>,
    ) -> Result<(), StoreError> {
        let _writing = self.writing()?;
        let t = self.t();
        let moved = t
            .batches
            .range(batch_key(origin, from_seq)..=batch_key(origin, u64::MAX))
            .collect::<Result<Vec<_>, _>>()?;
        if moved.is_empty() {
            return Ok(());
        }
        (&t.batches, &t.heads, &t.set_aside, &t.set_aside_heads)
            .transaction(|(batches, heads, aside, aside_heads)| {
                if let Some(h) = heads.get(origin.as_bytes())? {
                    if aside_heads.get(origin.as_bytes())?.is_none() {
                        aside_heads.insert(origin.as_bytes(), h)?;
                    }
                }
                for (k, v) in &moved {
                    batches.remove(k)?;
                    aside.insert(k, v)?;
                }
                match before {
                    Some(b) => heads.insert(origin.as_bytes(), b.encode().as_slice())?,
                    None => heads.remove(origin.as_bytes())?,
                };
                Ok(())
            })
            .map_err(transaction_error)?;
        self.note_moved(&moved);
        t.db.flush()?;
        Ok(())
    }

    /// Notes, for the compaction running, that the location records
    /// `moved` went from one location tree to the other.
    fn note_moved(&self, moved: &[(sled::IVec, sled::IVec)]) {
        for (k, _) in moved {
            for tree in LOCATION_TREES {
                self.note_written(tree, k);
            }
        }
    }

    /// Every origin with batches set aside, and the first sequence number
    /// set aside, by origin.
    pub fn set_aside_logs(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let t = self.t();
        let mut out = Vec::new();
        for (origin, _) in by_origin(&t.set_aside_heads)? {
            if let Some(r) = t.set_aside.scan_prefix(origin_prefix(&origin)).next() {
                out.push(key_parts(&r?.0)?);
            }
        }
        Ok(out)
    }

    /// The set-aside batch of `origin` that starts at `first_seq`, decoded.
    pub fn set_aside_batch(&self, origin: &str, first_seq: u64) -> Result<Batch, StoreError> {
        let t = self.t();
        let location = t
            .set_aside
            .get(batch_key(origin, first_seq))?
            .ok_or_else(|| StoreError::Corrupt("set-aside batch missing".into()))?;
        decode(t.body(&location)?)
    }

    /// Puts `origin`'s set-aside batches back at the end of its log, with
    /// the head they had, in one durable transaction, if the log still
    /// ends just before them; returns whether it did.
    pub fn restore(&self, origin: &str) -> Result<bool, StoreError> {
        let _writing = self.writing()?;
        let t = self.t();
        let moved = t
            .set_aside
            .scan_prefix(origin_prefix(origin))
            .collect::<Result<Vec<_>, _>>()?;
        let Some((first, _)) = moved.first() else {
            return Ok(false);
        };
        let (_, first_seq) = key_parts(first)?;
        let restored = (&t.batches, &t.heads, &t.set_aside, &t.set_aside_heads)
            .transaction(|(batches, heads, aside, aside_heads)| {
                let now = heads
                    .get(origin.as_bytes())?
                    .map_or(Ok(Head::default()), |v| Head::decode(&v))
                    .map_err(ConflictableTransactionError::Abort)?;
                if now.last_seq.saturating_add(1) != first_seq {
                    return Ok(false);
                }
                let head = aside_heads.remove(origin.as_bytes())?.ok_or_else(|| {
                    ConflictableTransactionError::Abort(StoreError::Corrupt(
                        "set-aside head missing".into(),
                    ))
                })?;
                for (k, v) in &moved {
                    aside.remove(k)?;
                    batches.insert(k, v)?;
                }
                heads.insert(origin.as_bytes(), head)?;
                Ok(true)
            })
            .map_err(transaction_error)?;
        self.note_moved(&moved);
        t.db.flush()?;
        Ok(restored)
    }

    /// Makes everything appended so far durable (fsync); then peers are
    /// served what [`Store::append_unserved`] held back until now.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let pending = self.unserved.lock().clone();
        self.injected_flush_failure()?;
        self.t().db.flush_async().await?;
        self.served(&pending);
        Ok(())
    }

    /// Synchronous flush, for shutdown paths outside the runtime.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        let pending = self.unserved.lock().clone();
        self.injected_flush_failure()?;
        self.t().db.flush()?;
        self.served(&pending);
        Ok(())
    }

    /// Batches held back that a flush made durable.
    fn served(&self, durable: &BTreeSet<Vec<u8>>) {
        if !durable.is_empty() {
            self.unserved.lock().retain(|k| !durable.contains(k));
        }
    }

    /// Test builds: fail the flushes from now on, or no longer.
    #[cfg(test)]
    pub(crate) fn fail_flushes(&self, fail: bool) {
        self.fail_flushes
            .store(fail, std::sync::atomic::Ordering::SeqCst);
    }

    fn injected_flush_failure(&self) -> Result<(), StoreError> {
        #[cfg(test)]
        if self.fail_flushes.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Sled(sled::Error::Io(std::io::Error::other(
                "injected flush failure",
            ))));
        }
        Ok(())
    }

    /// Every batch, per origin in sequence order, decoded.
    pub fn batches(&self) -> impl Iterator<Item = Result<Batch, StoreError>> + '_ {
        let t = self.t();
        t.batches.iter().map(move |r| t.batch(r))
    }

    /// Every batch as [`Store::batches`] gives them, read and decoded on a
    /// thread of its own up to [`READ_AHEAD`] batches ahead of the consumer:
    /// a cold start decodes on one core while it indexes on the other.
    /// A body that cannot be read or decoded is named by its key
    /// ([`StoredBatch`]); an error reading the keys themselves is the
    /// item's. Dropping the iterator stops the thread.
    pub fn batches_read_ahead(
        &self,
    ) -> Result<impl Iterator<Item = Result<StoredBatch, StoreError>>, StoreError> {
        let t = self.t();
        let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD);
        std::thread::Builder::new()
            .name("cix-store-read".into())
            .spawn(move || {
                for r in t.batches.iter() {
                    let item = r.map_err(StoreError::from).and_then(|(k, v)| {
                        let (origin, first_seq) = key_parts(&k)?;
                        let batch = t.body(&v).and_then(decode);
                        Ok(StoredBatch {
                            origin,
                            first_seq,
                            batch,
                        })
                    });
                    if tx.send(item).is_err() {
                        break;
                    }
                }
            })
            .map_err(StoreError::Thread)?;
        Ok(rx.into_iter())
    }

    /// The newest accepted trust list, as received.
    pub fn trust_list(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.t().trust.get("current")?.map(|v| v.to_vec()))
    }

    /// Replaces the stored trust list and makes it durable.
    pub async fn put_trust_list(&self, signed: &[u8]) -> Result<(), StoreError> {
        {
            let _writing = self.writing()?;
            self.t().trust.insert("current", signed)?;
        }
        self.flush().await
    }

    /// Each member's recorded prefix-query usage: (member id, UTC day,
    /// prefixes taken that day). Records of days before `today` are removed
    /// (durably) as they are read.
    pub fn query_usage(&self, today: i64) -> Result<Vec<(String, i64, u64)>, StoreError> {
        let _writing = self.writing()?;
        let t = self.t();
        let mut out = Vec::new();
        let mut pruned = false;
        for r in t.query_usage.iter() {
            let (k, v) = r?;
            let bad = || StoreError::Corrupt("query_usage record".into());
            let member = String::from_utf8(k.to_vec()).map_err(|_| bad())?;
            let v: [u8; 16] = v.as_ref().try_into().map_err(|_| bad())?;
            let day = i64::from_be_bytes(v[..8].try_into().map_err(|_| bad())?);
            let used = u64::from_be_bytes(v[8..].try_into().map_err(|_| bad())?);
            if day < today {
                t.query_usage.remove(k)?;
                pruned = true;
            } else {
                out.push((member, day, used));
            }
        }
        if pruned {
            t.db.flush()?;
        }
        Ok(out)
    }

    /// Records that `member` has taken `used` prefixes of its quota on UTC
    /// day `day`, replacing its earlier record, durably (fsync) before it
    /// returns: file I/O, for a blocking thread.
    pub fn put_query_usage(&self, member: &str, day: i64, used: u64) -> Result<(), StoreError> {
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&day.to_be_bytes());
        v[8..].copy_from_slice(&used.to_be_bytes());
        let _writing = self.writing()?;
        let t = self.t();
        t.query_usage.insert(member.as_bytes(), &v)?;
        t.db.flush()?;
        Ok(())
    }

    /// The node's secret for prefix-query decoys, made (32 random bytes,
    /// durably) the first time it is asked for.
    pub fn decoy_secret(&self) -> Result<[u8; 32], StoreError> {
        let _writing = self.writing()?;
        let t = self.t();
        if let Some(v) = t.meta.get("decoy_secret")? {
            return v
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("decoy_secret is not 32 bytes".into()));
        }
        let mut secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
        t.meta.insert("decoy_secret", &secret)?;
        t.db.flush()?;
        Ok(secret)
    }

    /// The key-changing trust lists kept (see [`Store::put_trust_lists`]),
    /// oldest first, as received.
    pub fn trust_chain(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.t()
            .trust
            .scan_prefix(CHAIN_PREFIX)
            .values()
            .map(|v| Ok(v?.to_vec()))
            .collect()
    }

    /// Keeps, in one atomic write made durable, `current` as the list in
    /// force and each of `chain` (version, list) as a key-changing list, then
    /// drops the oldest key-changing lists beyond the newest `keep`.
    pub async fn put_trust_lists(
        &self,
        chain: &[(u64, &[u8])],
        current: &[u8],
        keep: usize,
    ) -> Result<(), StoreError> {
        {
            let _writing = self.writing()?;
            let trust = self.t().trust;
            let mut batch = sled::Batch::default();
            batch.insert("current", current);
            let mut versions: BTreeSet<Vec<u8>> = trust
                .scan_prefix(CHAIN_PREFIX)
                .keys()
                .map(|k| k.map(|k| k.to_vec()))
                .collect::<Result<_, sled::Error>>()?;
            for (version, list) in chain {
                let key = chain_key(*version);
                batch.insert(key.clone(), *list);
                versions.insert(key);
            }
            for old in versions.iter().take(versions.len().saturating_sub(keep)) {
                batch.remove(old.clone());
            }
            trust.apply_batch(batch)?;
        }
        self.flush().await
    }

    /// Number of batches held.
    pub fn batch_count(&self) -> usize {
        self.t().batches.len()
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        let t = self.t();
        t.db.size_on_disk().unwrap_or(0) + t.segments.size()
    }

    /// The schema version recorded in the store.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let v = self
            .t()
            .meta
            .get("schema_version")?
            .ok_or_else(|| StoreError::Corrupt("schema_version missing".into()))?;
        Ok(u32::from_be_bytes(v.as_ref().try_into().map_err(|_| {
            StoreError::Corrupt("schema_version".into())
        })?))
    }

    /// Overwrites the schema version (for migrations and their tests).
    pub fn set_schema_version(&self, v: u32) -> Result<(), StoreError> {
        let _writing = self.writing()?;
        let t = self.t();
        t.meta.insert("schema_version", &v.to_be_bytes())?;
        t.db.flush()?;
        Ok(())
    }
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

    fn batch(origin: &str, first: u64, prev: [u8; 32], n: usize) -> Batch {
        let header = BatchHeader {
            origin: origin.into(),
            first_seq: first,
            prev_hash: prev.to_vec(),
            created_unix: 1,
            op: LogOp::Add as i32,
            ..Default::default()
        };
        let entries = (0..n)
            .map(|i| batch::entry(&Token([i as u8; 32]), 1, 1))
            .collect();
        batch::sign(header, entries, &SigningKeyFile::generate())
    }

    fn fork_at(seq: u64) -> ForkEvidence {
        ForkEvidence {
            first: Some(batch("liaison", seq, [0; 32], 1).raw),
            second: Some(batch("liaison", seq, [1; 32], 1).raw),
        }
    }

    #[test]
    fn the_fork_evidence_kept_is_the_lowest_whatever_the_order_and_lifting_moves_it_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (low, high) = (fork_at(2), fork_at(5));
        {
            let a = Store::open(&dir.path().join("a"), 8).unwrap();
            assert!(a.put_fork("liaison", &high).unwrap());
            assert!(a.put_fork("liaison", &low).unwrap());
            assert!(!a.put_fork("liaison", &high).unwrap());
            let b = Store::open(&dir.path().join("b"), 8).unwrap();
            assert!(b.put_fork("liaison", &low).unwrap());
            assert!(!b.put_fork("liaison", &high).unwrap());
            for s in [&a, &b] {
                assert_eq!(s.fork_point("liaison").unwrap(), Some(2));
                s.flush_blocking().unwrap();
            }
        }
        let a = Store::open(&dir.path().join("a"), 8).unwrap();
        assert_eq!(a.fork_point("liaison").unwrap(), Some(2));
        // Lifted only if it is still what was read.
        assert!(!a.lift_fork("liaison", &high).unwrap());
        assert!(a.lift_fork("liaison", &low).unwrap());
        assert_eq!(a.fork_point("liaison").unwrap(), None);
        assert!(a.forks().unwrap().is_empty());
        assert_eq!(
            a.lifted_forks().unwrap(),
            vec![("liaison".into(), low.clone())]
        );
        // Back in force only while no evidence as low is kept.
        assert!(a.put_fork("liaison", &fork_at(1)).unwrap());
        assert!(!a.unlift_fork("liaison", &low).unwrap());
    }

    /// Whether any file under `dir` contains `needle`.
    fn files_contain(dir: &Path, needle: &[u8]) -> bool {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if std::fs::read(&p)
                    .unwrap()
                    .windows(needle.len())
                    .any(|w| w == needle)
                {
                    return true;
                }
            }
        }
        false
    }

    #[test]
    fn a_head_at_the_last_sequence_number_takes_nothing_more() {
        let full = Head {
            last_seq: u64::MAX,
            hash: [0; 32],
        };
        assert!(matches!(
            extends(full, &batch("a", 0, [0; 32], 1)),
            Err(StoreError::NotContiguous {
                expected: u64::MAX,
                ..
            })
        ));
        let below = Head {
            last_seq: u64::MAX - 1,
            hash: [0; 32],
        };
        extends(below, &batch("a", u64::MAX, [0; 32], 1)).unwrap();
    }

    #[test]
    fn append_chains_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        let h1 = store.append(&batch("a", 1, [0; 32], 3)).unwrap();
        assert_eq!(h1.last_seq, 3);
        // wrong sequence, wrong hash: refused, nothing changes
        assert!(matches!(
            store.append(&batch("a", 5, h1.hash, 1)),
            Err(StoreError::NotContiguous { expected: 4, .. })
        ));
        assert!(matches!(
            store.append(&batch("a", 4, [9; 32], 1)),
            Err(StoreError::ChainBroken { .. })
        ));
        let b2 = batch("a", 4, h1.hash, 2);
        let h2 = store.append(&b2).unwrap();
        store.append(&batch("b", 1, [0; 32], 1)).unwrap();
        store.flush_blocking().unwrap();
        drop(store);
        let store = Store::open(dir.path(), 8).unwrap();
        assert_eq!(store.head("a").unwrap(), Some(h2));
        let firsts: Vec<_> = store
            .batches()
            .map(|b| {
                let b = b.unwrap();
                (b.origin().to_string(), b.first_seq())
            })
            .collect();
        assert_eq!(
            firsts,
            vec![("a".into(), 1), ("a".into(), 4), ("b".into(), 1)]
        );
        let ahead: Vec<_> = store
            .batches_read_ahead()
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                let b = r.batch.unwrap();
                assert_eq!(
                    (r.origin.as_str(), r.first_seq),
                    (b.origin(), b.first_seq())
                );
                b
            })
            .collect();
        let plain: Vec<_> = store.batches().map(Result::unwrap).collect();
        assert_eq!(ahead, plain);
        assert_eq!(store.batch_holding("a", 5).unwrap(), Some(b2.clone()));
        assert_eq!(store.batch_holding("a", 2).unwrap().unwrap().first_seq(), 1);
        assert_eq!(store.batch_holding("a", 6).unwrap(), None);
        assert_eq!(store.batches_after("a", 3).count(), 1);
        assert_eq!(store.batches_after("a", 0).count(), 2);
        let after: Vec<_> = store.decoded_after("a", 3).map(Result::unwrap).collect();
        assert_eq!(after, vec![b2]);
        assert_eq!(store.batches_after("b", 1).count(), 0);
        let (first, body) = store.batch_after("a", 0).unwrap().unwrap();
        assert_eq!(first, 1);
        assert_eq!(
            Some(body),
            store.batches_after("a", 0).next().transpose().unwrap()
        );
        assert_eq!(store.batch_after("a", 1).unwrap().unwrap().0, 4);
        assert_eq!(store.batch_after("a", 4).unwrap(), None);
        assert_eq!(store.batch_after("a", u64::MAX).unwrap(), None);
    }

    #[test]
    fn compaction_keeps_live_data_and_drops_superseded_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        let mut b = batch("a", 1, [0; 32], 3);
        store.append(&b).unwrap();
        let secret = b.raw.entries[1].token.clone();
        b.raw.entries[1] = batch::purged(&b.raw.entries[1]);
        store.rewrite(&b).unwrap();
        store.flush_blocking().unwrap();
        store.compact().unwrap();
        assert!(
            !files_contain(dir.path(), &secret),
            "purged token bytes still on disk after compaction"
        );
        assert_eq!(store.batch_holding("a", 2).unwrap(), Some(b.clone()));
        let h = store.head("a").unwrap().unwrap();
        assert_eq!(h.last_seq, 3);
        // Still writable, and it survives a reopen.
        store.append(&batch("a", 4, h.hash, 1)).unwrap();
        store.flush_blocking().unwrap();
        drop(store);
        let store = Store::open(dir.path(), 8).unwrap();
        assert_eq!(store.head("a").unwrap().unwrap().last_seq, 4);
    }

    /// Reads and writes made while a compaction copies (here on the
    /// compaction's own thread: any lock it held would deadlock them) go
    /// on, and the writes are in the compacted store: an append, a new
    /// origin, a purge's rewrite, fork evidence and a log set aside (its
    /// body copied too).
    #[test]
    fn reads_and_writes_go_on_while_a_compaction_copies_and_none_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        let mut a1 = batch("a", 1, [0; 32], 3);
        store.append(&a1).unwrap();
        let a2 = batch("a", 4, a1.hash(), 2);
        store.append(&a2).unwrap();
        let b1 = batch("b", 1, [0; 32], 1);
        store.append(&b1).unwrap();
        let a3 = batch("a", 6, a2.hash(), 1);
        let c1 = batch("c", 1, [0; 32], 2);
        let evidence = ForkEvidence::default();
        store
            .compact_pausing(
                || {
                    assert_eq!(store.batch_holding("a", 4).unwrap(), Some(a2.clone()));
                    assert_eq!(store.heads().unwrap().len(), 2);
                    store.append(&a3).unwrap();
                    store.append(&c1).unwrap();
                    a1.raw.entries[1] = batch::purged(&a1.raw.entries[1]);
                    store.rewrite(&a1).unwrap();
                    assert!(store.put_fork("b", &evidence).unwrap());
                    store.set_aside("b", 1, None).unwrap();
                },
                |_| Ok(()),
            )
            .unwrap();
        let check = |store: &Store| {
            let all: Vec<_> = store.batches().map(Result::unwrap).collect();
            assert_eq!(all.len(), 4);
            assert_eq!(store.set_aside_batch("b", 1).unwrap(), b1.clone());
            assert_eq!(store.batch_holding("a", 2).unwrap(), Some(a1.clone()));
            assert_eq!(store.head("a").unwrap().unwrap().last_seq, 6);
            assert_eq!(store.head("c").unwrap().unwrap().hash, c1.hash());
            assert_eq!(store.forks().unwrap().len(), 1);
        };
        check(&store);
        store.flush_blocking().unwrap();
        drop(store);
        check(&Store::open(dir.path(), 8).unwrap());
    }

    /// A compaction that fails at each step of its swap, or whose process
    /// dies there (a panic drops every handle unflushed, as a crash would),
    /// leaves a store that goes on taking writes and reopens with every
    /// batch appended and flushed, before and after.
    #[test]
    fn a_compaction_failing_or_cut_short_at_any_step_of_its_swap_loses_no_batch() {
        for at in SWAP_STEPS {
            for crash in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open(dir.path(), 8).unwrap();
                let b1 = batch("a", 1, [0; 32], 2);
                let b2 = batch("a", 3, b1.hash(), 1);
                store.append(&b1).unwrap();
                store.append(&b2).unwrap();
                store.flush_blocking().unwrap();
                let fail = |step: &'static str| {
                    if step != at {
                        return Ok(());
                    }
                    if crash {
                        panic!("the process dies before {step}");
                    }
                    Err(std::io::Error::other(format!("injected before {step}")))
                };
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    store.compact_pausing(|| {}, fail)
                }));
                let mut expect = vec![b1.clone(), b2.clone()];
                let what = format!("failing at {at}, crash {crash}");
                if !crash {
                    // An error before the swap took effect is the caller's.
                    assert_eq!(r.unwrap().is_err(), at != "remove_old", "{what}");
                    let b3 = batch("a", 4, b2.hash(), 1);
                    store.append(&b3).unwrap();
                    store.flush_blocking().unwrap();
                    assert_eq!(store.batches().count(), 3, "{what}");
                    expect.push(b3);
                } else {
                    assert!(r.is_err(), "{what}");
                }
                drop(store);
                let store = Store::open(dir.path(), 8).unwrap();
                let all: Vec<_> = store.batches().map(Result::unwrap).collect();
                assert_eq!(all, expect, "{what}");
                assert_eq!(
                    store.head("a").unwrap().unwrap().hash,
                    expect.last().unwrap().hash(),
                    "{what}"
                );
                for leftover in ["store.old", "store.compact"] {
                    assert!(!dir.path().join(leftover).exists(), "{what}: {leftover}");
                }
                // And it compacts, whole, afterwards.
                store.compact().unwrap();
                assert_eq!(store.batches().count(), expect.len(), "{what}");
            }
        }
    }

    #[test]
    fn a_set_aside_tail_leaves_the_log_and_comes_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        let b1 = batch("a", 1, [0; 32], 2);
        let b2 = batch("a", 3, b1.hash(), 1);
        let b3 = batch("a", 4, b2.hash(), 1);
        for b in [&b1, &b2, &b3] {
            store.append(b).unwrap();
        }
        store.append(&batch("b", 1, [0; 32], 1)).unwrap();
        let full = store.head("a").unwrap().unwrap();
        let kept = Head {
            last_seq: 2,
            hash: b1.hash(),
        };
        store.set_aside("a", 3, Some(kept)).unwrap();
        assert_eq!(store.head("a").unwrap(), Some(kept));
        assert_eq!(store.batches_after("a", 0).count(), 1);
        assert_eq!(store.set_aside_logs().unwrap(), vec![("a".to_string(), 3)]);
        assert_eq!(store.set_aside_batch("a", 3).unwrap(), b2);
        // Compaction keeps the set-aside bodies.
        store.compact().unwrap();
        drop(store);
        let store = Store::open(dir.path(), 8).unwrap();
        assert!(store.restore("a").unwrap());
        assert_eq!(store.head("a").unwrap(), Some(full));
        assert!(store.set_aside_logs().unwrap().is_empty());
        let all: Vec<_> = store.decoded_after("a", 0).map(Result::unwrap).collect();
        assert_eq!(all, vec![b1.clone(), b2, b3]);
        // A whole log set aside leaves no head.
        store.set_aside("a", 1, None).unwrap();
        assert_eq!(store.head("a").unwrap(), None);
        assert_eq!(store.heads().unwrap().len(), 1);
        assert!(store.restore("a").unwrap());
        assert_eq!(store.head("a").unwrap(), Some(full));
    }

    #[test]
    fn unknown_schema_version_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path(), 8)
            .unwrap()
            .set_schema_version(99)
            .unwrap();
        let e = Store::open(dir.path(), 8).err().unwrap().to_string();
        assert!(e.contains("schema version 99"), "{e}");
        assert!(e.contains("version 2 only"), "{e}");
    }

    #[test]
    fn a_version_1_store_has_its_bodies_moved_into_segment_files() {
        let dir = tempfile::tempdir().unwrap();
        let b1 = batch("a", 1, [0; 32], 3);
        let b2 = batch("a", 4, b1.hash(), 2);
        {
            // The version 1 layout: bodies as sled values.
            let db = sled::Config::new()
                .path(dir.path().join("store"))
                .open()
                .unwrap();
            let meta = db.open_tree("meta").unwrap();
            meta.insert("schema_version", &1u32.to_be_bytes()).unwrap();
            let batches = db.open_tree("batches").unwrap();
            for b in [&b1, &b2] {
                batches
                    .insert(batch_key("a", b.first_seq()), b.raw.encode_to_vec())
                    .unwrap();
            }
            let head = Head {
                last_seq: 5,
                hash: b2.hash(),
            };
            db.open_tree("heads")
                .unwrap()
                .insert("a", head.encode().as_slice())
                .unwrap();
            db.flush().unwrap();
        }
        let store = Store::open(dir.path(), 8).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let all: Vec<_> = store.batches().map(Result::unwrap).collect();
        assert_eq!(all, vec![b1.clone(), b2.clone()]);
        let t = store.t();
        for r in t.batches.iter() {
            assert_eq!(r.unwrap().1.len(), Location::ENCODED_LEN);
        }
        drop(t);
        store
            .append(&batch("a", 6, b2.hash(), 1))
            .expect("the migrated log goes on");
        store.flush_blocking().unwrap();
        drop(store);
        let store = Store::open(dir.path(), 8).unwrap();
        assert_eq!(store.batches().count(), 3);
        assert_eq!(store.batch_holding("a", 2).unwrap(), Some(b1));
    }

    #[test]
    fn a_damaged_body_is_an_error_not_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        let b = batch("a", 1, [0; 32], 3);
        store.append(&b).unwrap();
        store.flush_blocking().unwrap();
        drop(store);
        let seg_dir = dir.path().join("store").join(SEGMENTS_DIR);
        let seg = std::fs::read_dir(&seg_dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut bytes = std::fs::read(&seg).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&seg, bytes).unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        let e = store.batches().next().unwrap().unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
        let mut ahead = store.batches_read_ahead().unwrap();
        let damaged = ahead.next().unwrap().unwrap();
        assert_eq!((damaged.origin.as_str(), damaged.first_seq), ("a", 1));
        let e = damaged.batch.unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
        assert!(ahead.next().is_none());
        assert!(store.batch_holding("a", 1).is_err());
    }
}

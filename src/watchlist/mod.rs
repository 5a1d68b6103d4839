//! The bank's book under continuous screening: watch entries (the bank's
//! own reference, a kind, and the identifier's token under each valid key
//! epoch), kept only under a second, node-local key ([`WatchKey`]).
//!
//! This module owns the watch entries, their one file and their in-memory
//! lookup. It never holds a token or a raw value beyond the call that
//! hashes it, never logs a reference, and never talks to a peer.
//!
//! - **Watch hash**: `HMAC-SHA256(watch key, "cix-watch-v1" || 0x00 ||
//!   token)` truncated to 16 bytes ([`Watchlist::hash`]). Arriving
//!   indicators are checked the same way. A copy of the files alone
//!   reveals no token: the key never leaves the node.
//! - **On disk** (`<data_dir>/watchlist/`): `journal`, append-only records
//!   (id, kind, reference, (epoch, watch hash) pairs; removals), framed with
//!   a length and a CRC, written in one write and one fsync per call before
//!   it returns; a torn tail is dropped at open. `key.check` holds
//!   `HMAC-SHA256(watch key, "cix-watch-check-v1")` in hex, so that a
//!   different key is refused at open rather than silently matching
//!   nothing.
//! - **In memory**: 16 bytes per entry and epoch (the first 11 bytes of its
//!   watch hash, the epoch, the entry id) in a sorted array, 8 bytes per
//!   entry for the offset of its record, and 8 per entry for the
//!   reference-hash index that removal by reference uses: 32 bytes per
//!   entry with one epoch. References stay on disk, read back only for
//!   [`Watchlist::entry`], listings, and to confirm a duplicate or a
//!   removal.
//! - Entries are unique on (reference, kind, token). Registering an entry
//!   again under an epoch it lacks completes it ([`Added::Completed`]);
//!   with nothing new it is [`Added::AlreadyPresent`] and nothing is
//!   written. Entry ids are never reused.

mod journal;
mod sorted;

use std::{
    collections::{BinaryHeap, HashMap, HashSet},
    fs::{File, OpenOptions},
    hash::{BuildHasher, RandomState},
    io::{self, BufReader, Seek, Write},
    path::{Path, PathBuf},
};

use hmac::{Hmac, Mac};
use parking_lot::{Mutex, RwLock};
use sha2::Sha256;
use smallvec::SmallVec;

use crate::{
    ident::Kind,
    keys::{KeyError, TokenKey},
    token::Token,
};
use journal::{Record, Stored};
use sorted::{Keyed, Sorted};

/// A watch entry's number on this node (never leaves it).
pub(crate) type EntryId = u32;

/// HMAC-SHA256(node-local key, token), truncated to 16 bytes: how a watch
/// entry is stored and indexed, and how arriving indicators are checked.
pub(crate) type WatchHash = [u8; 16];

/// Domain-separation prefix of every watch hash input.
const HASH_PREFIX: &[u8] = b"cix-watch-v1\0";
/// Input of the key's check value in `key.check`.
const CHECK_INPUT: &[u8] = b"cix-watch-check-v1";
const JOURNAL: &str = "journal";
const CHECK_FILE: &str = "key.check";
/// Longest reference, in bytes (printable ASCII).
pub(crate) const REFERENCE_MAX: usize = 128;
/// Distinct key epochs the watchlist can hold over its life.
const MAX_EPOCHS: usize = 255;
/// An entry's offset once it is removed.
const DEAD: u64 = u64::MAX;
/// Bytes of a watch hash kept in memory: a false candidate between one
/// arriving token and one entry has probability 2^-88.
const MEM_HASH: usize = 11;

/// Why the watchlist failed. Never carries a reference, a token or a value.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "{}: the watchlist was written under a different watch key; \
         the watchlist.key_file must be the key it was created with",
        .path.display()
    )]
    WrongKey { path: PathBuf },
    #[error(
        "{}: missing while the journal holds entries; the check value of the watch key \
         must sit next to the journal it was written with",
        .path.display()
    )]
    MissingCheck { path: PathBuf },
    #[error("{}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("watchlist: entries of more than {MAX_EPOCHS} key epochs")]
    TooManyEpochs,
    #[error("watchlist: entry ids exhausted")]
    Full,
    #[error("watchlist: an entry without a token")]
    NoTokens,
}

/// The node-local key of the watchlist: 32 random bytes in a 0600 file of
/// 64 hex characters, loaded like the token keys ([`TokenKey`]). It never
/// leaves the node and is never printed.
pub(crate) struct WatchKey(TokenKey);

impl WatchKey {
    /// Reads the key file (refusing loose permissions or a bad format).
    pub(crate) fn load(path: &Path) -> Result<WatchKey, WatchError> {
        Ok(WatchKey(TokenKey::load(path)?))
    }

    /// Writes a new random key to `path` (mode 0600, never overwriting).
    pub(crate) fn generate(path: &Path) -> Result<(), WatchError> {
        Ok(TokenKey::generate().write_new(path)?)
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(self.0.bytes()).expect("HMAC takes any key length")
    }
}

/// A watch entry to register: its tokens as (epoch, token).
#[derive(Clone, Debug)]
pub(crate) struct NewEntry {
    pub reference: String,
    pub kind: Kind,
    pub tokens: Vec<(u32, Token)>,
}

/// What [`Watchlist::add`] did with one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // `Added::Added` reads as the API's ADDED
pub(crate) enum Added {
    Added,
    AlreadyPresent,
    /// An existing entry gained an epoch.
    Completed,
}

/// A watch entry as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EntryView {
    pub id: EntryId,
    pub reference: String,
    pub kind: Kind,
    /// Its epochs, ascending.
    pub epochs: Vec<u32>,
}

/// What to remove.
#[derive(Clone, Debug)]
pub(crate) enum Removal {
    /// Every entry with this reference.
    Reference(String),
    /// Every entry holding one of these tokens (any epoch), with this
    /// reference if one is given.
    Tokens {
        reference: Option<String>,
        tokens: Vec<Token>,
    },
}

/// What [`Watchlist::remove`] removed: per item, how many entries; and
/// every entry removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Removed {
    pub per_item: Vec<u64>,
    pub ids: Vec<EntryId>,
}

/// How many entries the watchlist holds, in all and per epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub entries: u64,
    /// (epoch, entries holding it), ascending by epoch, no zero counts.
    pub by_epoch: Vec<(u32, u64)>,
}

impl Counts {
    /// Entries without a hash under `epoch` (to register again during a
    /// key rotation).
    pub(crate) fn lacking(&self, epoch: u32) -> u64 {
        let holding = self
            .by_epoch
            .iter()
            .find(|(e, _)| *e == epoch)
            .map_or(0, |(_, n)| *n);
        self.entries - holding
    }
}

/// One sync session (mark and sweep): the entries it registered are
/// marked; [`Watchlist::sync_commit`] removes every other entry. A session
/// dropped without a commit removes nothing.
#[derive(Default)]
pub(crate) struct SyncSession {
    marks: Vec<u64>,
}

impl SyncSession {
    /// Marks an entry as part of the synced set.
    pub(crate) fn mark(&mut self, id: EntryId) {
        let (w, b) = (id as usize / 64, id % 64);
        if self.marks.len() <= w {
            self.marks.resize(w + 1, 0);
        }
        self.marks[w] |= 1 << b;
    }

    fn marked(&self, id: EntryId) -> bool {
        self.marks
            .get(id as usize / 64)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }
}

/// A slot of the lookup array: 16 bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    hash: [u8; MEM_HASH],
    /// Index into [`Mem::epochs`].
    epoch: u8,
    id: u32,
}

impl Keyed for Slot {
    fn bucket(&self) -> u16 {
        u16::from_be_bytes([self.hash[0], self.hash[1]])
    }
    fn id(&self) -> u32 {
        self.id
    }
}

/// A slot of the reference index: a 32-bit hash of the reference (a
/// collision costs one read more) and the entry.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct RefSlot {
    hash: u32,
    id: u32,
}

impl Keyed for RefSlot {
    fn bucket(&self) -> u16 {
        (self.hash >> 16) as u16
    }
    fn id(&self) -> u32 {
        self.id
    }
}

struct Mem {
    slots: Sorted<Slot>,
    refs: Sorted<RefSlot>,
    /// Journal offset of each entry's newest record, [`DEAD`] once removed.
    offsets: Vec<u64>,
    /// The epochs entries hold hashes under; slots name them by index.
    epochs: Vec<u32>,
    /// Live entries per index of `epochs`.
    per_epoch: Vec<u64>,
    live: u64,
}

fn is_live(offsets: &[u64], id: u32) -> bool {
    offsets.get(id as usize).is_some_and(|&o| o != DEAD)
}

fn mem_hash(h: &WatchHash) -> [u8; MEM_HASH] {
    h[..MEM_HASH].try_into().expect("prefix of a watch hash")
}

impl Mem {
    fn lookup(&self, h: &WatchHash, out: &mut SmallVec<[EntryId; 2]>) {
        let probe = Slot {
            hash: mem_hash(h),
            epoch: 0,
            id: 0,
        };
        self.slots.find(
            &probe,
            |s| s.hash == probe.hash,
            |s| {
                if is_live(&self.offsets, s.id) && !out.contains(&s.id) {
                    out.push(s.id);
                }
            },
        );
    }

    fn with_reference(&self, h: u32) -> Vec<(EntryId, u64)> {
        let mut out = Vec::new();
        self.refs.find(
            &RefSlot { hash: h, id: 0 },
            |s| s.hash == h,
            |s| {
                if is_live(&self.offsets, s.id) {
                    out.push((s.id, self.offsets[s.id as usize]));
                }
            },
        );
        out
    }

    fn epoch_index(&self, epoch: u32) -> Option<u8> {
        self.epochs
            .iter()
            .position(|&e| e == epoch)
            .map(|i| i as u8)
    }

    /// The index of `epoch`, added to the table if new.
    fn epoch_index_or_add(&mut self, epoch: u32) -> u8 {
        match self.epoch_index(epoch) {
            Some(i) => i,
            None => {
                self.epochs.push(epoch);
                self.per_epoch.push(0);
                (self.epochs.len() - 1) as u8
            }
        }
    }
}

struct Writer {
    file: File,
    end: u64,
    next_id: u32,
}

/// The watchlist of this node. Send + Sync; every method takes `&self`.
/// Lookups read memory only, under a read lock; writers are serialized.
pub(crate) struct Watchlist {
    journal_path: PathBuf,
    /// Keyed with the watch key, fed the domain prefix.
    mac: Hmac<Sha256>,
    ref_hasher: RandomState,
    mem: RwLock<Mem>,
    writer: Mutex<Writer>,
    reader: File,
}

/// One planned `Put`: the entry, whether it is new, and the hashes it gains.
struct Planned {
    stored: Stored,
    fresh: bool,
    gained: Vec<(u32, WatchHash)>,
}

impl Watchlist {
    /// Opens (or creates) the watchlist in `dir`, refusing a key other than
    /// the one it was written with; a torn journal tail is dropped.
    pub(crate) fn open(dir: &Path, key: WatchKey) -> Result<Watchlist, WatchError> {
        let io_at = |path: &Path| {
            let path = path.to_path_buf();
            move |source| WatchError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        let journal_path = dir.join(JOURNAL);
        let check_path = dir.join(CHECK_FILE);
        let check = {
            let mut m = key.mac();
            m.update(CHECK_INPUT);
            hex::encode(m.finalize().into_bytes())
        };
        match std::fs::read_to_string(&check_path) {
            Ok(found) if found.trim_end() == check => {}
            Ok(_) => return Err(WatchError::WrongKey { path: check_path }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let held = std::fs::metadata(&journal_path).map_or(0, |m| m.len());
                if held > 0 {
                    return Err(WatchError::MissingCheck { path: check_path });
                }
                crate::keys::file::write_new_private(&check_path, format!("{check}\n").as_bytes())
                    .map_err(io_at(&check_path))?;
            }
            Err(e) => return Err(io_at(&check_path)(e)),
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&journal_path)
            .map_err(io_at(&journal_path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_at(dir))?;

        let ref_hasher = RandomState::new();
        let mut offsets: Vec<u64> = Vec::new();
        let mut slots = Vec::new();
        let mut refs = Vec::new();
        let mut epochs: Vec<u32> = Vec::new();
        let mut too_many = false;
        let end = journal::scan(
            BufReader::with_capacity(1 << 20, &file),
            |at, rec| match rec {
                Record::Put(s) => {
                    let i = s.id as usize;
                    if offsets.len() <= i {
                        offsets.resize(i + 1, DEAD);
                    }
                    offsets[i] = at;
                    refs.push(RefSlot {
                        hash: ref_hasher.hash_one(&s.reference) as u32,
                        id: s.id,
                    });
                    for (epoch, h) in &s.hashes {
                        let e = match epochs.iter().position(|x| x == epoch) {
                            Some(e) => e,
                            None => {
                                epochs.push(*epoch);
                                epochs.len() - 1
                            }
                        };
                        too_many |= e >= MAX_EPOCHS;
                        slots.push(Slot {
                            hash: mem_hash(h),
                            epoch: e as u8,
                            id: s.id,
                        });
                    }
                }
                Record::Del(id) => {
                    if let Some(o) = offsets.get_mut(id as usize) {
                        *o = DEAD;
                    }
                }
            },
        )
        .map_err(io_at(&journal_path))?;
        if too_many {
            return Err(WatchError::TooManyEpochs);
        }
        let len = file.metadata().map_err(io_at(&journal_path))?.len();
        if end < len {
            tracing::warn!(
                kept_bytes = end,
                dropped_bytes = len - end,
                "watchlist journal: a torn tail (a write cut before it was acknowledged) dropped"
            );
            file.set_len(end)
                .and_then(|()| file.sync_all())
                .map_err(io_at(&journal_path))?;
        }
        file.seek(io::SeekFrom::Start(end))
            .map_err(io_at(&journal_path))?;
        let slots = Sorted::build(slots, |id| is_live(&offsets, id));
        let refs = Sorted::build(refs, |id| is_live(&offsets, id));
        let mut per_epoch = vec![0u64; epochs.len()];
        for s in slots.iter() {
            per_epoch[usize::from(s.epoch)] += 1;
        }
        let live = offsets.iter().filter(|&&o| o != DEAD).count() as u64;
        let next_id = u32::try_from(offsets.len()).map_err(|_| WatchError::Full)?;
        let reader = File::open(&journal_path).map_err(io_at(&journal_path))?;
        let mut mac = key.mac();
        mac.update(HASH_PREFIX);
        Ok(Watchlist {
            journal_path,
            mac,
            ref_hasher,
            mem: RwLock::new(Mem {
                slots,
                refs,
                offsets,
                epochs,
                per_epoch,
                live,
            }),
            writer: Mutex::new(Writer { file, end, next_id }),
            reader,
        })
    }

    /// The watch hash of a token: `HMAC-SHA256(watch key, "cix-watch-v1" ||
    /// 0x00 || token)`, first 16 bytes. About a microsecond.
    pub(crate) fn hash(&self, token: &Token) -> WatchHash {
        let mut m = self.mac.clone();
        m.update(&token.0);
        m.finalize().into_bytes()[..16]
            .try_into()
            .expect("16 of 32 bytes")
    }

    /// The live entries holding this watch hash (under any epoch). Memory
    /// only, under a read lock: two binary searches of a bucket.
    pub(crate) fn lookup(&self, h: &WatchHash) -> SmallVec<[EntryId; 2]> {
        let mut out = SmallVec::new();
        self.mem.read().lookup(h, &mut out);
        out
    }

    /// [`Watchlist::lookup`] of many hashes under one read lock: (position
    /// in `hashes`, entry) for every hit, in order of position.
    pub(crate) fn lookup_all(&self, hashes: &[WatchHash]) -> Vec<(usize, EntryId)> {
        let mem = self.mem.read();
        let mut out = Vec::new();
        let mut ids = SmallVec::new();
        for (i, h) in hashes.iter().enumerate() {
            ids.clear();
            mem.lookup(h, &mut ids);
            out.extend(ids.iter().map(|&id| (i, id)));
        }
        out
    }

    /// A live entry, read back from the journal (one read); `None` when it
    /// was removed or never existed.
    pub(crate) fn entry(&self, id: EntryId) -> Result<Option<EntryView>, WatchError> {
        let offset = match self.mem.read().offsets.get(id as usize) {
            Some(&o) if o != DEAD => o,
            _ => return Ok(None),
        };
        Ok(Some(view(self.read(offset)?)))
    }

    /// Live entries.
    pub(crate) fn len(&self) -> u64 {
        self.mem.read().live
    }

    /// Entries in all and per epoch.
    pub(crate) fn counts(&self) -> Counts {
        let mem = self.mem.read();
        let mut by_epoch: Vec<(u32, u64)> = mem
            .epochs
            .iter()
            .zip(&mem.per_epoch)
            .filter(|(_, &n)| n > 0)
            .map(|(&e, &n)| (e, n))
            .collect();
        by_epoch.sort_unstable();
        Counts {
            entries: mem.live,
            by_epoch,
        }
    }

    /// Bytes the in-memory lookup holds on the heap.
    pub(crate) fn heap_bytes(&self) -> usize {
        let mem = self.mem.read();
        mem.slots.heap_bytes() + mem.refs.heap_bytes() + mem.offsets.capacity() * 8
    }

    fn read(&self, offset: u64) -> Result<Stored, WatchError> {
        match journal::read_at(&self.reader, offset) {
            Ok(Record::Put(s)) => Ok(s),
            Ok(Record::Del(_)) => Err(self.io(io::Error::new(
                io::ErrorKind::InvalidData,
                "an entry's offset names a removal",
            ))),
            Err(e) => Err(self.io(e)),
        }
    }

    fn io(&self, source: io::Error) -> WatchError {
        WatchError::Io {
            path: self.journal_path.clone(),
            source,
        }
    }

    fn ref_hash(&self, reference: &str) -> u32 {
        self.ref_hasher.hash_one(reference) as u32
    }

    /// Registers entries: one result per entry, in order, with its id.
    /// Durable (one write, one fsync) before it returns; nothing is written
    /// when nothing is new. Every entry must have at least one token.
    pub(crate) fn add(&self, items: &[NewEntry]) -> Result<Vec<(Added, EntryId)>, WatchError> {
        if items.iter().any(|i| i.tokens.is_empty()) {
            return Err(WatchError::NoTokens);
        }
        let hashed: Vec<Vec<(u32, WatchHash)>> = items
            .iter()
            .map(|i| i.tokens.iter().map(|(e, t)| (*e, self.hash(t))).collect())
            .collect();
        let mut w = self.writer.lock();
        let mut plan: Vec<Planned> = Vec::new();
        // (kind, reference, hash) -> index in `plan`, for repeats in one call.
        let mut pending: HashMap<(Kind, &str, WatchHash), usize> = HashMap::new();
        let mut out = Vec::with_capacity(items.len());
        let mut next_id = w.next_id;
        for (item, hs) in items.iter().zip(hashed) {
            let key = |h: &WatchHash| (item.kind, item.reference.as_str(), *h);
            let at = match hs.iter().find_map(|(_, h)| pending.get(&key(h)).copied()) {
                Some(p) => Some(p),
                None => match self.existing(item, &hs)? {
                    Some(stored) => {
                        plan.push(Planned {
                            stored,
                            fresh: false,
                            gained: Vec::new(),
                        });
                        Some(plan.len() - 1)
                    }
                    None => None,
                },
            };
            let p = match at {
                Some(p) => {
                    let stored = &mut plan[p].stored;
                    let gained: Vec<_> = hs
                        .iter()
                        .filter(|(e, _)| !stored.hashes.iter().any(|(x, _)| x == e))
                        .copied()
                        .collect();
                    let id = stored.id;
                    if gained.is_empty() {
                        out.push((Added::AlreadyPresent, id));
                        continue;
                    }
                    stored.hashes.extend(gained.iter().copied());
                    plan[p].gained.extend(gained);
                    out.push((Added::Completed, id));
                    p
                }
                None => {
                    let id = next_id;
                    next_id = next_id.checked_add(1).ok_or(WatchError::Full)?;
                    plan.push(Planned {
                        stored: Stored {
                            id,
                            kind: item.kind,
                            reference: item.reference.clone(),
                            hashes: hs.clone(),
                        },
                        fresh: true,
                        gained: hs.clone(),
                    });
                    out.push((Added::Added, id));
                    plan.len() - 1
                }
            };
            for (_, h) in &hs {
                pending.insert(key(h), p);
            }
        }
        // Existing entries found but left unchanged are not written.
        plan.retain(|p| !p.gained.is_empty());
        if plan.is_empty() {
            return Ok(out);
        }
        {
            let mem = self.mem.read();
            let mut known: HashSet<u32> = mem.epochs.iter().copied().collect();
            known.extend(plan.iter().flat_map(|p| p.gained.iter().map(|(e, _)| *e)));
            if known.len() > MAX_EPOCHS {
                return Err(WatchError::TooManyEpochs);
            }
        }
        let mut buf = Vec::with_capacity(plan.len() * 64);
        let mut offsets = Vec::with_capacity(plan.len());
        for p in &plan {
            offsets.push(w.end + buf.len() as u64);
            Record::Put(p.stored.clone()).encode(&mut buf);
        }
        self.append(&mut w, &buf)?;
        w.next_id = next_id;
        let mut mem = self.mem.write();
        let mut new_slots = Vec::new();
        let mut new_refs = Vec::new();
        for (p, offset) in plan.iter().zip(offsets) {
            let id = p.stored.id;
            if p.fresh {
                let i = id as usize;
                if mem.offsets.len() <= i {
                    mem.offsets.resize(i + 1, DEAD);
                }
                mem.live += 1;
                new_refs.push(RefSlot {
                    hash: self.ref_hash(&p.stored.reference),
                    id,
                });
            }
            mem.offsets[id as usize] = offset;
            for (epoch, h) in &p.gained {
                let e = mem.epoch_index_or_add(*epoch);
                mem.per_epoch[usize::from(e)] += 1;
                new_slots.push(Slot {
                    hash: mem_hash(h),
                    epoch: e,
                    id,
                });
            }
        }
        let Mem {
            slots,
            refs,
            offsets,
            ..
        } = &mut *mem;
        slots.insert(new_slots, |id| is_live(offsets, id));
        refs.insert(new_refs, |id| is_live(offsets, id));
        Ok(out)
    }

    /// The live entry equal to `item` on (reference, kind, one of its
    /// hashes), read back from the journal.
    fn existing(
        &self,
        item: &NewEntry,
        hs: &[(u32, WatchHash)],
    ) -> Result<Option<Stored>, WatchError> {
        let (candidates, same_ref) = {
            let mem = self.mem.read();
            let mut ids = SmallVec::new();
            for (_, h) in hs {
                mem.lookup(h, &mut ids);
            }
            if ids.is_empty() {
                return Ok(None);
            }
            (ids, mem.with_reference(self.ref_hash(&item.reference)))
        };
        for id in candidates {
            let Some(&(_, offset)) = same_ref.iter().find(|(x, _)| *x == id) else {
                continue;
            };
            let s = self.read(offset)?;
            if s.kind == item.kind
                && s.reference == item.reference
                && hs.iter().any(|h| s.hashes.contains(h))
            {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    /// Writes `buf` at the journal's end and syncs it; on failure the file
    /// is cut back to where it was.
    fn append(&self, w: &mut Writer, buf: &[u8]) -> Result<(), WatchError> {
        let written = w.file.write_all(buf).and_then(|()| w.file.sync_data());
        if let Err(e) = written {
            let _ = w.file.set_len(w.end);
            let _ = w.file.seek(io::SeekFrom::Start(w.end));
            return Err(self.io(e));
        }
        w.end += buf.len() as u64;
        Ok(())
    }

    /// Removes entries: by reference (all its entries) or by token (with
    /// or without a reference). Durable before it returns.
    pub(crate) fn remove(&self, items: &[Removal]) -> Result<Removed, WatchError> {
        let hashed: Vec<Vec<WatchHash>> = items
            .iter()
            .map(|i| match i {
                Removal::Reference(_) => Vec::new(),
                Removal::Tokens { tokens, .. } => tokens.iter().map(|t| self.hash(t)).collect(),
            })
            .collect();
        let mut w = self.writer.lock();
        let mut victims: HashMap<EntryId, Stored> = HashMap::new();
        let mut per_item = Vec::with_capacity(items.len());
        for (item, hs) in items.iter().zip(&hashed) {
            let found = match item {
                Removal::Reference(r) => {
                    let candidates = self.mem.read().with_reference(self.ref_hash(r));
                    self.read_matching(candidates, |s| s.reference == *r)?
                }
                Removal::Tokens { reference, .. } => {
                    let candidates: Vec<(EntryId, u64)> = {
                        let mem = self.mem.read();
                        let mut ids = SmallVec::<[EntryId; 2]>::new();
                        for h in hs {
                            mem.lookup(h, &mut ids);
                        }
                        ids.iter()
                            .map(|&id| (id, mem.offsets[id as usize]))
                            .collect()
                    };
                    self.read_matching(candidates, |s| {
                        reference.as_ref().is_none_or(|r| s.reference == *r)
                            && s.hashes.iter().any(|(_, h)| hs.contains(h))
                    })?
                }
            };
            let mut n = 0;
            for s in found {
                if let std::collections::hash_map::Entry::Vacant(v) = victims.entry(s.id) {
                    n += 1;
                    v.insert(s);
                }
            }
            per_item.push(n);
        }
        let ids = self.delete(&mut w, victims.into_values().collect())?;
        Ok(Removed { per_item, ids })
    }

    fn read_matching(
        &self,
        candidates: Vec<(EntryId, u64)>,
        keep: impl Fn(&Stored) -> bool,
    ) -> Result<Vec<Stored>, WatchError> {
        let mut out = Vec::new();
        for (_, offset) in candidates {
            let s = self.read(offset)?;
            if keep(&s) {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Writes the removals of `victims` (one write, one fsync) and drops
    /// them from memory; their ids, ascending.
    fn delete(&self, w: &mut Writer, mut victims: Vec<Stored>) -> Result<Vec<EntryId>, WatchError> {
        if victims.is_empty() {
            return Ok(Vec::new());
        }
        victims.sort_unstable_by_key(|s| s.id);
        let mut buf = Vec::with_capacity(victims.len() * 13);
        for s in &victims {
            Record::Del(s.id).encode(&mut buf);
        }
        self.append(w, &buf)?;
        let mut mem = self.mem.write();
        for s in &victims {
            mem.offsets[s.id as usize] = DEAD;
            mem.live -= 1;
            for (epoch, _) in &s.hashes {
                if let Some(e) = mem.epoch_index(*epoch) {
                    mem.per_epoch[usize::from(e)] -= 1;
                }
            }
        }
        Ok(victims.into_iter().map(|s| s.id).collect())
    }

    /// Ends a sync session: removes every live entry it did not mark
    /// (durable before it returns); the ids removed.
    pub(crate) fn sync_commit(&self, session: &SyncSession) -> Result<Vec<EntryId>, WatchError> {
        let mut w = self.writer.lock();
        let unmarked: Vec<(EntryId, u64)> = {
            let mem = self.mem.read();
            mem.offsets
                .iter()
                .enumerate()
                .filter(|&(id, &o)| o != DEAD && !session.marked(id as EntryId))
                .map(|(id, &o)| (id as EntryId, o))
                .collect()
        };
        let victims = self.read_matching(unmarked, |_| true)?;
        self.delete(&mut w, victims)
    }

    /// Live entries with ids above `after`, ascending, at most `limit`.
    pub(crate) fn page_by_id(
        &self,
        after: Option<EntryId>,
        limit: usize,
    ) -> Result<Vec<EntryView>, WatchError> {
        let from = after.map_or(0, |a| a as usize + 1);
        let picked: Vec<u64> = {
            let mem = self.mem.read();
            mem.offsets
                .iter()
                .skip(from)
                .filter(|&&o| o != DEAD)
                .take(limit)
                .copied()
                .collect()
        };
        picked.into_iter().map(|o| self.read(o).map(view)).collect()
    }

    /// Live entries after `after` in (reference, id) order, at most
    /// `limit`. Reads the whole journal once (sequentially).
    pub(crate) fn page_by_reference(
        &self,
        after: Option<(&str, EntryId)>,
        limit: usize,
    ) -> Result<Vec<EntryView>, WatchError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let w = self.writer.lock();
        let mem = self.mem.read();
        let mut best: BinaryHeap<(String, EntryId, u64)> = BinaryHeap::new();
        let file = File::open(&self.journal_path).map_err(|e| self.io(e))?;
        let reader = BufReader::with_capacity(1 << 20, io::Read::take(file, w.end));
        journal::scan(reader, |at, rec| {
            let Record::Put(s) = rec else { return };
            if mem.offsets.get(s.id as usize) != Some(&at) {
                return;
            }
            if let Some((r, id)) = after {
                if (s.reference.as_str(), s.id) <= (r, id) {
                    return;
                }
            }
            if best.len() < limit {
                best.push((s.reference, s.id, at));
            } else if let Some(top) = best.peek() {
                if (&s.reference, s.id) < (&top.0, top.1) {
                    best.pop();
                    best.push((s.reference, s.id, at));
                }
            }
        })
        .map_err(|e| self.io(e))?;
        drop((mem, w));
        best.into_sorted_vec()
            .into_iter()
            .map(|(_, _, o)| self.read(o).map(view))
            .collect()
    }

    /// Every live entry of one reference, by id.
    pub(crate) fn of_reference(&self, reference: &str) -> Result<Vec<EntryView>, WatchError> {
        let candidates = self.mem.read().with_reference(self.ref_hash(reference));
        let mut out: Vec<EntryView> = self
            .read_matching(candidates, |s| s.reference == reference)?
            .into_iter()
            .map(view)
            .collect();
        out.sort_unstable_by_key(|v| v.id);
        Ok(out)
    }
}

fn view(s: Stored) -> EntryView {
    let mut epochs: Vec<u32> = s.hashes.iter().map(|(e, _)| *e).collect();
    epochs.sort_unstable();
    EntryView {
        id: s.id,
        reference: s.reference,
        kind: s.kind,
        epochs,
    }
}

#[cfg(test)]
mod tests;

//! The in-memory token index: token → the indicators that carry it.
//!
//! Rebuilt from the store's batches at start and updated with every append
//! (checked before the store takes the batch, applied whole: the store and
//! the index change together or not at all), so it always equals the replay
//! of the origin logs. Matching only reads it. Origins and case references are interned: a contribution of
//! 10,000 tokens under one case label stores the label once.
//!
//! Layout: a sorted array of 64-byte slots (token + packed entry), a
//! directory by the tokens' top bits (tokens are uniform HMAC output, so
//! each directory word covers a handful of slots) and the slots' first eight
//! token bytes in a parallel array; changes since the last merge sit in a
//! small hash map keyed by the token's own first eight bytes, and are merged
//! into the array (under the write lock) once they reach a quarter of it.
//! About 73 bytes per indicator once merged; a prefix query reads one
//! contiguous range of the array.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::Arc,
};

use crate::{batch::Batch, ident::Kind, proto::LogOp, token::Token};

/// The first 8 bytes of a token, big-endian (so they sort like the token).
fn head(t: &Token) -> u64 {
    u64::from_be_bytes(t.0[..8].try_into().expect("8 bytes"))
}

/// The first 16 bits of a token.
fn prefix16(t: &Token) -> u16 {
    u16::from_be_bytes([t.0[0], t.0[1]])
}

/// The first `bits` (at most 32) bits of a token, as a number.
pub fn token_prefix(t: &Token, bits: u32) -> u32 {
    u32::from_be_bytes([t.0[0], t.0[1], t.0[2], t.0[3]])
        .checked_shr(32 - bits)
        .unwrap_or(0)
}

/// How sure the contributor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Confirmed (`confirmed`, code 1).
    Confirmed = 1,
    /// Probable (`probable`, code 2).
    Probable = 2,
    /// Suspected (`suspected`, code 3).
    Suspected = 3,
}

impl Tier {
    /// The tier of a protobuf or log code; `None` for an unknown code
    /// (0, unspecified, included).
    pub fn from_code(c: i32) -> Option<Tier> {
        match c {
            1 => Some(Tier::Confirmed),
            2 => Some(Tier::Probable),
            3 => Some(Tier::Suspected),
            _ => None,
        }
    }

    /// The tier's name: `confirmed`, `probable` or `suspected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Confirmed => "confirmed",
            Tier::Probable => "probable",
            Tier::Suspected => "suspected",
        }
    }

    /// Parses the exact lower-case name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "confirmed" => Some(Tier::Confirmed),
            "probable" => Some(Tier::Probable),
            "suspected" => Some(Tier::Suspected),
            _ => None,
        }
    }
}

/// Hashes a token by its first eight bytes (tokens are already uniform).
#[derive(Default)]
pub struct TokenHasher(u64);

impl Hasher for TokenHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length (usize) then its bytes; keep the first 8 token bytes.
        if bytes.len() >= 8 {
            self.0 = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

type TokenMap<V> = HashMap<Token, V, BuildHasherDefault<TokenHasher>>;

/// One token's entries in the change map: almost always one origin's, held
/// inline, so the map is one allocation (freed whole by a merge) rather
/// than one per token.
type EntryList = smallvec::SmallVec<[Entry; 1]>;

/// One indicator as held in memory: 32 bytes. Times are unix seconds in
/// 32 bits (to 2106); a `valid_until` of 0 means no expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Sequence number of the entry that added it.
    pub seq: u64,
    /// The case reference, interned ([`Index::resolve`] gives its text).
    pub case: u32,
    /// Key epoch of the token.
    pub epoch: u32,
    created: u32,
    valid_until: u32,
    /// The origin, interned ([`Index::resolve`] gives its member id).
    pub origin: u16,
    /// Identifier kind.
    pub kind: Kind,
    /// How sure the contributor is.
    pub tier: Tier,
}

/// `origin` of a slot retracted since the last merge.
const DEAD: u16 = u16::MAX;

fn secs32(t: i64) -> u32 {
    t.clamp(0, i64::from(u32::MAX)) as u32
}

/// The kind of an entry's code; `None` for a code this build does not know.
fn kind_of(code: i32) -> Option<Kind> {
    u8::try_from(code).ok().and_then(Kind::from_code)
}

fn until32(t: i64) -> u32 {
    if t == i64::MAX {
        0
    } else {
        secs32(t).max(1)
    }
}

impl Entry {
    /// Whether the entry has not expired at `now` (unix seconds).
    pub fn active_at(&self, now: i64) -> bool {
        self.valid_until == 0 || now < i64::from(self.valid_until)
    }

    /// When the batch that added it was made, unix seconds.
    pub fn created(&self) -> i64 {
        i64::from(self.created)
    }

    /// `None` for no expiry.
    pub fn valid_until(&self) -> Option<i64> {
        (self.valid_until != 0).then_some(i64::from(self.valid_until))
    }
}

/// One change a log entry makes.
#[derive(Clone, Copy, Debug)]
enum Change {
    Add(Entry),
    Retract {
        origin: u16,
        seq: u64,
    },
    Extend {
        origin: u16,
        seq: u64,
        valid_until: u32,
    },
}

impl Change {
    fn origin(&self) -> u16 {
        match self {
            Change::Add(e) => e.origin,
            Change::Retract { origin, .. } | Change::Extend { origin, .. } => *origin,
        }
    }
}

/// A retraction or an extension applied to the state of one (token, origin).
fn fold(state: &mut Option<Entry>, change: &Change) {
    match change {
        Change::Add(e) => *state = Some(*e),
        Change::Retract { .. } => *state = None,
        Change::Extend { valid_until, .. } => {
            if let Some(e) = state {
                e.valid_until = *valid_until;
            }
        }
    }
}

/// The order of `main`: (token, origin, seq). The first eight bytes decide
/// almost every comparison; nothing is copied.
fn slot_order(a: &Slot, b: &Slot) -> std::cmp::Ordering {
    head(&a.token)
        .cmp(&head(&b.token))
        .then_with(|| a.token.cmp(&b.token))
        .then(a.entry.origin.cmp(&b.entry.origin))
        .then(a.entry.seq.cmp(&b.entry.seq))
}

/// Sorts slots by [`slot_order`]. Large arrays are first distributed in
/// place into 256 buckets by the tokens' first byte (one pass over the
/// array; tokens are uniform, so the buckets are about equal), then the
/// buckets are sorted one by one, each small enough to stay in the cache,
/// the lower half's on a second thread.
fn sort_slots(slots: &mut [Slot]) {
    if slots.len() < 100_000 {
        slots.sort_unstable_by(slot_order);
        return;
    }
    let mut count = [0usize; 256];
    for s in slots.iter() {
        count[s.token.0[0] as usize] += 1;
    }
    let mut start = [0usize; 257];
    for b in 0..256 {
        start[b + 1] = start[b] + count[b];
    }
    // Each swap puts one slot into its bucket for good.
    let mut next = start;
    for b in 0..256 {
        while next[b] < start[b + 1] {
            let d = slots[next[b]].token.0[0] as usize;
            if d == b {
                next[b] += 1;
            } else {
                slots.swap(next[b], next[d]);
                next[d] += 1;
            }
        }
    }
    let sort_buckets = |part: &mut [Slot], buckets: std::ops::Range<usize>, offset: usize| {
        for b in buckets {
            part[start[b] - offset..start[b + 1] - offset].sort_unstable_by(slot_order);
        }
    };
    let (low, high) = slots.split_at_mut(start[128]);
    std::thread::scope(|s| {
        s.spawn(|| sort_buckets(low, 0..128, 0));
        sort_buckets(high, 128..256, start[128]);
    });
}

/// A token and one origin's entry for it: 64 bytes.
#[derive(Clone, Copy, Debug)]
struct Slot {
    token: Token,
    entry: Entry,
}

/// An indicator with its interned names resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Indicator {
    /// The token.
    pub token: Token,
    /// Member id of the origin.
    pub origin: Arc<str>,
    /// Identifier kind.
    pub kind: Kind,
    /// How sure the contributor is.
    pub tier: Tier,
    /// Key epoch of the token.
    pub epoch: u32,
    /// The contributor's case reference.
    pub case_ref: Arc<str>,
    /// When the batch that added it was made, unix seconds.
    pub created: i64,
    /// `None` for no expiry.
    pub valid_until: Option<i64>,
    /// Sequence number of the entry that added it.
    pub seq: u64,
}

/// One indicator held, as [`Index::held`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// The origin's member id.
    pub origin: Arc<str>,
    /// Sequence number of the entry that added it.
    pub seq: u64,
    /// Identifier kind.
    pub kind: Kind,
    /// When the batch that added it was made, unix seconds.
    pub created: i64,
    /// The contributor's case reference.
    pub case_ref: Arc<str>,
}

#[derive(Default)]
struct Interner {
    names: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, u32>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        let a: Arc<str> = s.into();
        self.names.push(a.clone());
        self.ids.insert(a, id);
        id
    }

    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }
}

/// Why the index cannot take a batch ([`Index::check`]). Checked before a
/// batch is stored; at start, a stored batch the index refuses is set aside
/// (`logs`), never a failed start.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The header has an unknown or unspecified operation or an unknown
    /// tier (reported as entry 0), or an entry an unknown kind or a token
    /// not 32 bytes long.
    #[error("batch {origin}#{first_seq}: entry {index}: {what}")]
    BadEntry {
        /// Member id the header names as origin.
        origin: String,
        /// Sequence number of the batch's first entry.
        first_seq: u64,
        /// Position of the entry in the batch, from 0.
        index: usize,
        /// What is wrong with it.
        what: &'static str,
    },
    /// The batch's origin would be the 65536th; the index numbers at most
    /// 65535.
    #[error("more than 65535 origins")]
    TooManyOrigins,
}

/// Active indicators by kind and by origin.
pub type Counts = (Vec<(Kind, u64)>, Vec<(Arc<str>, u64)>);

/// The index: a sorted array of slots (by token, then origin) with a
/// directory by the tokens' top bits, plus a small hash map of changes not
/// yet merged into the array. About 65 bytes per indicator once merged (a
/// hash map of vectors takes about twice that). Tokens are uniform, so a
/// directory entry covers a handful of slots: a look-up reads one directory
/// word and one short run of the array, and a prefix query reads one
/// contiguous range.
#[derive(Default)]
pub struct Index {
    /// Sorted by (token, origin); slots retracted since the last merge are
    /// marked [`DEAD`] and dropped at the next one.
    main: Vec<Slot>,
    /// The first 8 bytes of each slot's token (big-endian), in `main`'s
    /// order: a look-up scans these (one cache line per directory entry)
    /// and reads a slot only on a likely hit.
    heads: Vec<u64>,
    /// `dir[p]`: the first position in `main` whose token's top `dir_bits`
    /// bits are at least `p`; `2^dir_bits + 1` words.
    dir: Vec<u32>,
    dir_bits: u32,
    dead: usize,
    /// Batches applied since the index was made.
    applied: u64,
    /// Entries added since the last merge (tokens not in `main` for that
    /// origin), and their tokens by first 16 bits for prefix queries.
    delta: TokenMap<EntryList>,
    delta_entries: usize,
    delta_by_prefix: HashMap<u16, Vec<Token>>,
    origins: Interner,
    cases: Interner,
    /// Origins frozen by fork evidence: entries from this sequence number on
    /// no longer match.
    frozen: HashMap<u16, u64>,
}

/// A merged sorted array, heads and directory ready to replace an index's
/// ([`Index::merged`], [`Index::install`]).
pub struct Merged {
    main: Vec<Slot>,
    heads: Vec<u64>,
    dir: Vec<u32>,
    dir_bits: u32,
    /// The index's batch count when this was computed.
    applied: u64,
}

/// The token heads of a sorted array and its directory: about four slots per
/// directory entry; at least 2^8 entries, at most 2^28.
fn directory(main: &[Slot]) -> (Vec<u64>, Vec<u32>, u32) {
    let heads = main.iter().map(|s| head(&s.token)).collect();
    let bits = (main.len() / 4).max(1).ilog2().clamp(8, 28);
    let mut dir = Vec::with_capacity((1 << bits) + 1);
    let mut at = 0usize;
    for p in 0..(1u32 << bits) {
        while at < main.len() && token_prefix(&main[at].token, bits) < p {
            at += 1;
        }
        dir.push(at as u32);
    }
    dir.push(main.len() as u32);
    (heads, dir, bits)
}

/// Changes held before a merge: at least this many, or a quarter of the array.
const MIN_DELTA: usize = 65_536;

impl Index {
    /// An empty index.
    pub fn new() -> Index {
        Index::default()
    }

    /// Bytes the index holds on the heap (arrays and maps, approximately:
    /// hash maps count their entries, not their spare capacity).
    pub fn heap_bytes(&self) -> usize {
        let delta: usize = self
            .delta
            .values()
            .map(|l| {
                32 + std::mem::size_of::<EntryList>()
                    + 8
                    + l.spilled() as usize * l.capacity() * std::mem::size_of::<Entry>()
            })
            .sum();
        self.main.capacity() * std::mem::size_of::<Slot>()
            + self.heads.capacity() * 8
            + self.dir.capacity() * 4
            + delta
            + self
                .delta_by_prefix
                .values()
                .map(|v| v.capacity() * 32 + 32)
                .sum::<usize>()
            + self
                .origins
                .names
                .iter()
                .map(|n| n.len() + 48)
                .sum::<usize>()
            + self.cases.names.iter().map(|n| n.len() + 48).sum::<usize>()
    }

    /// Changes not yet merged into the sorted array, and a count of the
    /// batches applied so far (which tells whether writes are still coming).
    pub fn pending(&self) -> (usize, u64) {
        (self.delta_entries + self.dead, self.applied)
    }

    /// Indicator slots held (including expired ones not yet purged).
    pub fn tokens(&self) -> usize {
        self.main.len() - self.dead + self.delta_entries
    }

    /// The range of `main` whose tokens' top `bits` bits equal `prefix`.
    fn range(&self, bits: u32, prefix: u32) -> std::ops::Range<usize> {
        if self.main.is_empty() {
            return 0..0;
        }
        let d = self.dir_bits;
        let (lo, hi) = if bits >= d {
            let p = (prefix >> (bits - d)) as usize;
            (self.dir[p] as usize, self.dir[p + 1] as usize)
        } else {
            let p = (prefix as usize) << (d - bits);
            let q = ((prefix as usize) + 1) << (d - bits);
            (self.dir[p] as usize, self.dir[q] as usize)
        };
        lo..hi
    }

    /// Positions in `main` holding `token` (dead or alive).
    fn main_slots(&self, token: &Token) -> std::ops::Range<usize> {
        let r = self.range(self.dir_bits, token_prefix(token, self.dir_bits));
        let h = head(token);
        let Some(first) = self.heads[r.clone()].iter().position(|x| *x == h) else {
            return 0..0;
        };
        // Tokens sharing the first eight bytes (rare, but possible) sit
        // together in token order: skip the smaller ones.
        let start = r.start
            + first
            + self.main[r.start + first..r.end]
                .iter()
                .take_while(|s| s.token < *token)
                .count();
        let len = self.main[start..r.end]
            .iter()
            .take_while(|s| s.token == *token)
            .count();
        start..start + len
    }

    fn main_slot_of(&self, token: &Token, origin: u16) -> Option<usize> {
        self.main_slots(token)
            .find(|&i| self.main[i].entry.origin == origin)
    }

    /// Applies every entry of a batch, in order. Purged entries (no token
    /// left) are skipped: they no longer say anything.
    pub fn apply(&mut self, batch: &Batch) -> Result<(), IndexError> {
        self.changes(batch, |ix, token, change| match change {
            Change::Add(entry) => ix.add(token, entry),
            Change::Retract { origin, .. } => ix.retract(&token, origin),
            Change::Extend {
                origin,
                valid_until,
                ..
            } => ix.extend(&token, origin, valid_until),
        })?;
        self.applied += 1;
        if self.delta_entries > MIN_DELTA.max(self.main.len() / 4) {
            self.merge();
        }
        Ok(())
    }

    /// The index of a whole store, from its batches in log order (each
    /// origin's in sequence). Equal to applying them one by one, but every
    /// addition is collected into one array and sorted once (on two threads),
    /// with no hash map on the way: what a cold start needs. The first
    /// error ends it; [`Builder`] lets the caller decide batch by batch.
    pub fn build<E: From<IndexError>>(
        batches: impl IntoIterator<Item = Result<Batch, E>>,
    ) -> Result<Index, E> {
        let mut b = Builder::new();
        for batch in batches {
            b.add(&batch?)?;
        }
        Ok(b.finish())
    }

    /// Whether [`Index::apply`] would take every entry of `batch`: a known
    /// op (and, for an addition, a known tier), every entry purged or with
    /// a 32-byte token (and, for an addition, a known kind), and room for
    /// its origin. Changes nothing. [`Index::apply`] checks this before its
    /// first change, so a batch is applied whole or not at all; a caller
    /// that checks first, then stores the batch, then applies it with no
    /// other writer in between, knows the apply cannot fail.
    pub fn check(&self, batch: &Batch) -> Result<(), IndexError> {
        let h = &batch.header;
        if self.origins.get(&h.origin).is_none() && self.origins.names.len() >= usize::from(DEAD) {
            return Err(IndexError::TooManyOrigins);
        }
        let bad = |index, what| IndexError::BadEntry {
            origin: h.origin.clone(),
            first_seq: h.first_seq,
            index,
            what,
        };
        let op = match LogOp::try_from(h.op) {
            Ok(LogOp::Unspecified) => return Err(bad(0, "unspecified op")),
            Ok(op) => op,
            Err(_) => return Err(bad(0, "unknown op")),
        };
        if op == LogOp::Add && Tier::from_code(h.tier).is_none() {
            return Err(bad(0, "unknown tier"));
        }
        for (i, e) in batch.raw.entries.iter().enumerate() {
            if !e.purged_hash.is_empty() {
                continue;
            }
            if e.token.len() != crate::token::TOKEN_LEN {
                return Err(bad(i, "token is not 32 bytes"));
            }
            if op == LogOp::Add && kind_of(e.kind).is_none() {
                return Err(bad(i, "unknown kind"));
            }
        }
        Ok(())
    }

    /// Reads the changes of a batch, in order, and hands each to `f`.
    fn changes(
        &mut self,
        batch: &Batch,
        mut f: impl FnMut(&mut Index, Token, Change),
    ) -> Result<(), IndexError> {
        // All or nothing: nothing below fails once this passes.
        self.check(batch)?;
        let h = &batch.header;
        let origin = self.origins.intern(&h.origin);
        let origin = u16::try_from(origin)
            .ok()
            .filter(|o| *o != DEAD)
            .ok_or(IndexError::TooManyOrigins)?;
        let bad = |index, what| IndexError::BadEntry {
            origin: h.origin.clone(),
            first_seq: h.first_seq,
            index,
            what,
        };
        let op = LogOp::try_from(h.op).map_err(|_| bad(0, "unknown op"))?;
        let valid_until = if h.valid_until_unix == 0 {
            i64::MAX
        } else {
            h.valid_until_unix
        };
        let case = match op {
            LogOp::Add => self.cases.intern(&h.case_ref),
            _ => 0,
        };
        let tier = match op {
            LogOp::Add => Tier::from_code(h.tier).ok_or_else(|| bad(0, "unknown tier"))?,
            _ => Tier::Confirmed,
        };
        for (i, e) in batch.raw.entries.iter().enumerate() {
            if !e.purged_hash.is_empty() {
                continue;
            }
            let token = Token::from_slice(&e.token).map_err(|_| bad(i, "token is not 32 bytes"))?;
            let seq = h.first_seq.saturating_add(i as u64);
            let change = match op {
                LogOp::Add => {
                    let kind = kind_of(e.kind).ok_or_else(|| bad(i, "unknown kind"))?;
                    Change::Add(Entry {
                        origin,
                        kind,
                        tier,
                        epoch: e.epoch,
                        case,
                        created: secs32(h.created_unix),
                        valid_until: until32(valid_until),
                        seq,
                    })
                }
                LogOp::Retract => Change::Retract { origin, seq },
                LogOp::Extend => Change::Extend {
                    origin,
                    seq,
                    valid_until: until32(valid_until),
                },
                LogOp::Unspecified => return Err(bad(i, "unspecified op")),
            };
            f(self, token, change);
        }
        Ok(())
    }

    fn extend(&mut self, token: &Token, origin: u16, valid_until: u32) {
        if let Some(at) = self.main_slot_of(token, origin) {
            self.main[at].entry.valid_until = valid_until;
        } else if let Some(x) = self
            .delta
            .get_mut(token)
            .and_then(|l| l.iter_mut().find(|x| x.origin == origin))
        {
            x.valid_until = valid_until;
        }
    }

    fn add(&mut self, token: Token, entry: Entry) {
        if let Some(at) = self.main_slot_of(&token, entry.origin) {
            self.main[at].entry = entry;
            return;
        }
        match self.delta.entry(token) {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                match o.get_mut().iter_mut().find(|x| x.origin == entry.origin) {
                    Some(x) => *x = entry,
                    None => {
                        o.get_mut().push(entry);
                        self.delta_entries += 1;
                    }
                }
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(smallvec::smallvec![entry]);
                self.delta_entries += 1;
                self.delta_by_prefix
                    .entry(prefix16(&token))
                    .or_default()
                    .push(token);
            }
        }
    }

    fn retract(&mut self, token: &Token, origin: u16) {
        if let Some(at) = self.main_slot_of(token, origin) {
            self.main[at].entry.origin = DEAD;
            self.dead += 1;
        }
        if let Some(list) = self.delta.get_mut(token) {
            let before = list.len();
            list.retain(|x| x.origin != origin);
            self.delta_entries -= before - list.len();
            if list.is_empty() {
                self.delta.remove(token);
                if let Some(b) = self.delta_by_prefix.get_mut(&prefix16(token)) {
                    b.retain(|t| t != token);
                }
            }
        }
    }

    /// Folds the changes into the sorted array (dropping retracted slots)
    /// and rebuilds the directory. Also called once after a rebuild at start.
    pub fn merge(&mut self) {
        if let Some(m) = self.merged() {
            self.install(m);
        }
    }

    /// The sorted array with the changes folded in (retracted slots
    /// dropped), its heads and directory, computed from a shared reference:
    /// the node computes it under an upgradable read lock, so look-ups go
    /// on meanwhile, and holds the write lock only for [`Index::install`].
    /// `None` when nothing is pending.
    pub fn merged(&self) -> Option<Merged> {
        if self.delta.is_empty() && self.dead == 0 {
            return None;
        }
        let mut add: Vec<Slot> = Vec::with_capacity(self.delta_entries);
        for (t, list) in &self.delta {
            add.extend(list.iter().map(|&entry| Slot { token: *t, entry }));
        }
        add.sort_unstable_by_key(|a| (a.token, a.entry.origin));
        let mut main = Vec::with_capacity(self.main.len() - self.dead + add.len());
        let mut a = add.into_iter().peekable();
        for &s in self.main.iter().filter(|s| s.entry.origin != DEAD) {
            while let Some(x) = a.next_if(|x| (x.token, x.entry.origin) < (s.token, s.entry.origin))
            {
                main.push(x);
            }
            main.push(s);
        }
        main.extend(a);
        let (heads, dir, dir_bits) = directory(&main);
        Some(Merged {
            main,
            heads,
            dir,
            dir_bits,
            applied: self.applied,
        })
    }

    /// Puts a [`Merged`] computed from this index in place, freeing what it
    /// replaces (so a Status that reports the merge reports memory without
    /// the old arrays).
    ///
    /// # Panics
    /// If batches were applied since `m` was computed (it would lose them).
    pub fn install(&mut self, m: Merged) {
        assert_eq!(
            m.applied, self.applied,
            "a merge installed after further changes"
        );
        self.main = m.main;
        self.heads = m.heads;
        self.dir = m.dir;
        self.dir_bits = m.dir_bits;
        self.delta = TokenMap::default();
        self.delta_by_prefix = HashMap::new();
        self.dead = 0;
        self.delta_entries = 0;
    }

    /// Sets where `origin`'s entries stop matching: from sequence number
    /// `seq` on (the fork point of the evidence in force, or past what a
    /// suspension accepts), or nowhere (`None`). Raises and lifts a freeze
    /// as well as lowers it: the caller computes it from the evidence and
    /// the trust list in force.
    pub fn set_frozen(&mut self, origin: &str, seq: Option<u64>) {
        match seq {
            Some(seq) => {
                let o = self.origins.intern(origin) as u16;
                self.frozen.insert(o, seq);
            }
            None => {
                if let Some(o) = self.origins.get(origin) {
                    self.frozen.remove(&(o as u16));
                }
            }
        }
    }

    /// Origins frozen now, and from which sequence number.
    pub fn frozen(&self) -> Vec<(String, u64)> {
        self.frozen
            .iter()
            .map(|(o, s)| (self.origins.names[*o as usize].to_string(), *s))
            .collect()
    }

    /// Where `origin`'s entries stop matching, if it is frozen.
    pub fn frozen_from(&self, origin: &str) -> Option<u64> {
        let o = self.origins.get(origin)? as u16;
        self.frozen.get(&o).copied()
    }

    /// Every token held (live or not) whose first 8 bits are `prefix`, in
    /// no order: lets a whole-index scan go in 256 steps that each hold the
    /// read lock briefly, whatever merges happen in between.
    pub fn tokens_under8(&self, prefix: u8) -> Vec<Token> {
        let mut out: Vec<Token> = self.main[self.range(8, u32::from(prefix))]
            .iter()
            .filter(|s| s.entry.origin != DEAD)
            .map(|s| s.token)
            .collect();
        let first = u16::from(prefix) << 8;
        for p16 in first..=first | 0xff {
            out.extend(self.delta_by_prefix.get(&p16).into_iter().flatten());
        }
        out.dedup();
        out
    }

    /// Removes every entry of `origin` (its log is then applied again from
    /// the store, up to where it is kept: after a key rotation drops the
    /// batches that no longer verify).
    pub fn drop_origin(&mut self, origin: &str) {
        let Some(o) = self.origins.get(origin) else {
            return;
        };
        let o = o as u16;
        for slot in &mut self.main {
            if slot.entry.origin == o {
                slot.entry.origin = DEAD;
                self.dead += 1;
            }
        }
        let mut emptied = Vec::new();
        for (token, list) in self.delta.iter_mut() {
            let before = list.len();
            list.retain(|x| x.origin != o);
            self.delta_entries -= before - list.len();
            if list.is_empty() {
                emptied.push(*token);
            }
        }
        for token in emptied {
            self.delta.remove(&token);
            if let Some(b) = self.delta_by_prefix.get_mut(&prefix16(&token)) {
                b.retain(|t| *t != token);
            }
        }
    }

    /// Whether an entry counts now: not retracted, not expired, not past a fork.
    fn live(&self, e: &Entry, now: i64) -> bool {
        e.origin != DEAD
            && e.active_at(now)
            && self.frozen.get(&e.origin).is_none_or(|f| e.seq < *f)
    }

    /// Every (token, entry) held, retracted slots left out, in no order.
    fn all(&self) -> impl Iterator<Item = (Token, Entry)> + '_ {
        self.main
            .iter()
            .filter(|s| s.entry.origin != DEAD)
            .map(|s| (s.token, s.entry))
            .chain(
                self.delta
                    .iter()
                    .flat_map(|(t, l)| l.iter().map(move |e| (*t, *e))),
            )
    }

    /// The entry of `origin` for `token`, active or not.
    pub fn entry_of(&self, token: &Token, origin: &str) -> Option<Entry> {
        let o = self.origins.get(origin)? as u16;
        if let Some(at) = self.main_slot_of(token, o) {
            return Some(self.main[at].entry);
        }
        self.delta
            .get(token)?
            .iter()
            .find(|e| e.origin == o)
            .copied()
    }

    /// Resolves an entry's interned names.
    pub fn resolve(&self, token: Token, e: &Entry) -> Indicator {
        Indicator {
            token,
            origin: self.origins.names[e.origin as usize].clone(),
            kind: e.kind,
            tier: e.tier,
            epoch: e.epoch,
            case_ref: self.cases.names[e.case as usize].clone(),
            created: e.created(),
            valid_until: e.valid_until(),
            seq: e.seq,
        }
    }

    /// Active indicators for a token.
    pub fn active(&self, token: &Token, now: i64) -> std::vec::IntoIter<Indicator> {
        let mut out = Vec::new();
        for i in self.main_slots(token) {
            let e = &self.main[i].entry;
            if self.live(e, now) {
                out.push(self.resolve(*token, e));
            }
        }
        if let Some(list) = self.delta.get(token) {
            for e in list.iter().filter(|e| self.live(e, now)) {
                out.push(self.resolve(*token, e));
            }
        }
        out.into_iter()
    }

    /// Whether each token may be held: `false` means no indicator at all,
    /// `true` calls for [`Index::active`]. Looks up in two passes over
    /// chunks of the batch (directory words, then token heads) so that the
    /// memory reads of different tokens overlap instead of each waiting on
    /// the one before.
    pub fn may_hold(&self, tokens: &[Token]) -> Vec<bool> {
        let mut out = Vec::with_capacity(tokens.len());
        let mut ranges = [(0usize, 0usize); 64];
        for chunk in tokens.chunks(64) {
            for (r, t) in ranges.iter_mut().zip(chunk) {
                *r = if self.main.is_empty() {
                    (0, 0)
                } else {
                    let p = token_prefix(t, self.dir_bits) as usize;
                    (self.dir[p] as usize, self.dir[p + 1] as usize)
                };
            }
            for (&(lo, hi), t) in ranges.iter().zip(chunk) {
                let in_main = self.heads[lo..hi].contains(&head(t));
                out.push(in_main || (!self.delta.is_empty() && self.delta.contains_key(t)));
            }
        }
        out
    }

    /// Calls `f` with every token held (for benchmarks' reference maps).
    pub fn for_each_token(&self, mut f: impl FnMut(&Token)) {
        self.all().for_each(|(t, _)| f(&t));
    }

    /// Active indicators (of epochs for which `epoch_ok` holds) whose token
    /// begins with the `bits` (16 to 24) bits of `prefix`, in token order.
    pub fn under_prefix(
        &self,
        bits: u32,
        prefix: u32,
        now: i64,
        epoch_ok: impl Fn(u32) -> bool,
    ) -> Vec<Indicator> {
        debug_assert!((16..=24).contains(&bits));
        self.under_prefix_at_most(bits, prefix, now, epoch_ok, usize::MAX)
            .unwrap_or_default()
    }

    /// As [`Index::under_prefix`] for any prefix length from 0 to 24 bits,
    /// giving up (`None`) as soon as more than `most` indicators are found,
    /// so that a short prefix costs no more than `most` resolved entries.
    pub fn under_prefix_at_most(
        &self,
        bits: u32,
        prefix: u32,
        now: i64,
        epoch_ok: impl Fn(u32) -> bool,
        most: usize,
    ) -> Option<Vec<Indicator>> {
        debug_assert!(bits <= 24);
        let keep = |t: &Token, e: &Entry| {
            token_prefix(t, bits) == prefix && self.live(e, now) && epoch_ok(e.epoch)
        };
        let mut out: Vec<Indicator> = Vec::new();
        for s in &self.main[self.range(bits, prefix)] {
            if keep(&s.token, &s.entry) {
                if out.len() == most {
                    return None;
                }
                out.push(self.resolve(s.token, &s.entry));
            }
        }
        // The delta is kept by 16-bit prefix: a shorter prefix spans many.
        let (first, span) = if bits >= 16 {
            (prefix >> (bits - 16), 1)
        } else {
            (prefix << (16 - bits), 1u32 << (16 - bits))
        };
        for p16 in first..first + span {
            for t in self
                .delta_by_prefix
                .get(&(p16 as u16))
                .into_iter()
                .flatten()
            {
                for e in self.delta.get(t).into_iter().flatten() {
                    if keep(t, e) {
                        if out.len() == most {
                            return None;
                        }
                        out.push(self.resolve(*t, e));
                    }
                }
            }
        }
        out.sort_unstable_by(|a, b| a.token.cmp(&b.token).then(a.origin.cmp(&b.origin)));
        Some(out)
    }

    /// Active indicators by key epoch, in epoch order.
    pub fn active_by_epoch(&self, now: i64) -> Vec<(u32, u64)> {
        let mut by: std::collections::BTreeMap<u32, u64> = std::collections::BTreeMap::new();
        for (_, e) in self.all().filter(|(_, e)| self.live(e, now)) {
            *by.entry(e.epoch).or_default() += 1;
        }
        by.into_iter().collect()
    }

    /// The first active indicator (of an epoch for which `epoch_ok` holds)
    /// at or after `from` in token order among the merged entries, wrapping
    /// around, looking at most `scan` entries. Prefix-query decoys copy the
    /// metadata of the indicator found from a secret point, so that theirs
    /// follows the real indicators' own distribution and stays put while the
    /// index changes elsewhere. Entries not yet merged are not drawn.
    pub fn live_from(
        &self,
        from: &Token,
        now: i64,
        epoch_ok: impl Fn(u32) -> bool,
        scan: usize,
    ) -> Option<Indicator> {
        let n = self.main.len();
        let start = self.main.partition_point(|s| s.token < *from);
        (0..scan.min(n))
            .map(|i| &self.main[(start + i) % n])
            .find(|s| self.live(&s.entry, now) && epoch_ok(s.entry.epoch))
            .map(|s| self.resolve(s.token, &s.entry))
    }

    /// The indicator `origin`'s entry `seq` added, if the index holds it
    /// (active or not). A scan of every entry: for a disposition or a case
    /// package, never for screening.
    pub fn by_seq(&self, origin: &str, seq: u64) -> Option<Indicator> {
        let o = self.origins.get(origin)? as u16;
        self.all()
            .find(|(_, e)| e.origin == o && e.seq == seq)
            .map(|(t, e)| self.resolve(t, &e))
    }

    /// Active indicators of `origin`, in token order, after `after`, at most `limit`.
    pub fn page_of_origin(
        &self,
        origin: &str,
        after: Option<Token>,
        limit: usize,
        now: i64,
    ) -> Vec<Indicator> {
        let Some(o) = self.origins.get(origin) else {
            return Vec::new();
        };
        let o = o as u16;
        let mut page: Vec<(Token, Entry)> = self
            .all()
            .filter(|(t, e)| e.origin == o && self.live(e, now) && after.is_none_or(|a| *t > a))
            .collect();
        page.sort_unstable_by_key(|a| a.0);
        page.truncate(limit);
        page.into_iter().map(|(t, e)| self.resolve(t, &e)).collect()
    }

    /// Tokens of `origin`'s active indicators under `case_ref`.
    pub fn tokens_of_case(
        &self,
        origin: &str,
        case_ref: &str,
        now: i64,
    ) -> Vec<(Token, Kind, u32)> {
        let (Some(o), Some(c)) = (self.origins.get(origin), self.cases.get(case_ref)) else {
            return Vec::new();
        };
        let o = o as u16;
        let mut out: Vec<_> = self
            .all()
            .filter(|(_, e)| e.origin == o && e.case == c && self.live(e, now))
            .map(|(t, e)| (t, e.kind, e.epoch))
            .collect();
        out.sort_unstable_by_key(|a| a.0);
        out
    }

    /// Every indicator held (active or expired, not retracted), once per
    /// (origin, add entry) whatever the epochs of its tokens.
    pub fn held(&self) -> Vec<Held> {
        let mut seen = std::collections::HashSet::new();
        self.all()
            .filter(|(_, e)| seen.insert((e.origin, e.seq)))
            .map(|(_, e)| Held {
                origin: self.origins.names[e.origin as usize].clone(),
                seq: e.seq,
                kind: e.kind,
                created: e.created(),
                case_ref: self.cases.names[e.case as usize].clone(),
            })
            .collect()
    }

    /// Active indicators by kind and by origin.
    pub fn counts(&self, now: i64) -> Counts {
        let mut by_kind = [0u64; 9];
        let mut by_origin = vec![0u64; self.origins.names.len()];
        for (_, e) in self.all().filter(|(_, e)| self.live(e, now)) {
            by_kind[e.kind.code() as usize] += 1;
            by_origin[e.origin as usize] += 1;
        }
        (
            Kind::ALL
                .iter()
                .map(|k| (*k, by_kind[k.code() as usize]))
                .collect(),
            self.origins.names.iter().cloned().zip(by_origin).collect(),
        )
    }
}

/// Builds an index from a store's batches in log order (each origin's in
/// sequence), as [`Index::build`] does, with the caller deciding batch by
/// batch: a batch [`Builder::add`] refuses changes nothing, and the caller
/// may go on with other origins.
pub struct Builder {
    ix: Index,
    adds: Vec<Slot>,
    /// Retractions and extensions, rare: (token, seq, change).
    others: Vec<(Token, u64, Change)>,
    started: std::time::Instant,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder::new()
    }
}

impl Builder {
    /// An empty build.
    pub fn new() -> Builder {
        Builder {
            ix: Index::new(),
            adds: Vec::new(),
            others: Vec::new(),
            started: std::time::Instant::now(),
        }
    }

    /// Whether the index would take `batch` now ([`Index::check`]).
    pub fn check(&self, batch: &Batch) -> Result<(), IndexError> {
        self.ix.check(batch)
    }

    /// Adds every change of `batch`, or, if the index cannot take one of
    /// its entries, none.
    pub fn add(&mut self, batch: &Batch) -> Result<(), IndexError> {
        let (adds, others) = (&mut self.adds, &mut self.others);
        self.ix.changes(batch, |_, token, change| match change {
            Change::Add(entry) => adds.push(Slot { token, entry }),
            Change::Retract { seq, .. } | Change::Extend { seq, .. } => {
                others.push((token, seq, change))
            }
        })
    }

    /// The index of every batch added.
    pub fn finish(self) -> Index {
        let Builder {
            mut ix,
            mut adds,
            mut others,
            started,
        } = self;
        let read = started.elapsed();
        sort_slots(&mut adds);
        let sorted = started.elapsed();
        others.sort_unstable_by_key(|(t, seq, c)| (*t, c.origin(), *seq));
        // Fold each (token, origin) group in sequence order, in place.
        let mut out = 0usize;
        let mut i = 0usize;
        let mut o = others.iter().peekable();
        while i < adds.len() {
            let key = (adds[i].token, adds[i].entry.origin);
            let mut j = i;
            while j + 1 < adds.len() && (adds[j + 1].token, adds[j + 1].entry.origin) == key {
                j += 1;
            }
            // Changes to groups with no addition say nothing.
            while o.next_if(|(t, _, c)| (*t, c.origin()) < key).is_some() {}
            let mut state: Option<Entry> = None;
            let mut a = i;
            loop {
                let next_add = (a <= j).then(|| adds[a].entry.seq);
                let next_other = o
                    .peek()
                    .filter(|(t, _, c)| (*t, c.origin()) == key)
                    .map(|(_, seq, _)| *seq);
                match (next_add, next_other) {
                    (None, None) => break,
                    (Some(sa), Some(so)) if so < sa => {
                        fold(&mut state, &o.next().expect("peeked").2)
                    }
                    (None, Some(_)) => fold(&mut state, &o.next().expect("peeked").2),
                    (Some(_), _) => {
                        state = Some(adds[a].entry);
                        a += 1;
                    }
                }
            }
            if let Some(entry) = state {
                adds[out] = Slot {
                    token: key.0,
                    entry,
                };
                out += 1;
            }
            i = j + 1;
        }
        adds.truncate(out);
        adds.shrink_to_fit();
        ix.main = adds;
        (ix.heads, ix.dir, ix.dir_bits) = directory(&ix.main);
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        tracing::debug!(
            slots = ix.main.len(),
            read_ms = ms(read),
            sort_ms = ms(sorted - read),
            fold_and_directory_ms = ms(started.elapsed() - sorted),
            "index built"
        );
        ix
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{batch, keys::signing::SigningKeyFile, proto::BatchHeader};

    fn batch(origin: &str, op: LogOp, first: u64, tokens: &[u8], valid_until: i64) -> Batch {
        let header = BatchHeader {
            origin: origin.into(),
            first_seq: first,
            created_unix: 100,
            op: op as i32,
            case_ref: "case-1".into(),
            tier: 1,
            valid_until_unix: valid_until,
            ..Default::default()
        };
        let entries = tokens
            .iter()
            .map(|t| batch::entry(&Token([*t; 32]), 6, 1))
            .collect();
        batch::sign(header, entries, &SigningKeyFile::generate())
    }

    #[test]
    fn log_order_decides_add_retract_readd_extend() {
        let mut ix = Index::new();
        let t = Token([7; 32]);
        ix.apply(&batch("liaison", LogOp::Add, 1, &[7, 8], 0))
            .unwrap();
        ix.apply(&batch("bank", LogOp::Add, 1, &[7], 500)).unwrap();
        assert_eq!(ix.active(&t, 200).count(), 2);
        assert_eq!(ix.active(&t, 600).count(), 1, "bank's entry expired");
        ix.apply(&batch("liaison", LogOp::Retract, 3, &[7], 0))
            .unwrap();
        let left: Vec<_> = ix.active(&t, 200).map(|i| i.origin.to_string()).collect();
        assert_eq!(left, vec!["bank"]);
        ix.apply(&batch("bank", LogOp::Extend, 2, &[7], 1000))
            .unwrap();
        assert_eq!(ix.active(&t, 600).count(), 1, "extended");
        ix.apply(&batch("liaison", LogOp::Add, 4, &[7], 0)).unwrap();
        assert_eq!(ix.active(&t, 600).count(), 2, "re-added");
        let (by_kind, by_origin) = ix.counts(200);
        assert_eq!(
            by_kind.iter().find(|(k, _)| *k == Kind::Email).unwrap().1,
            3
        );
        assert_eq!(by_origin.len(), 2);
        assert_eq!(ix.tokens_of_case("liaison", "case-1", 200).len(), 2);
        assert_eq!(ix.page_of_origin("liaison", None, 1, 200).len(), 1);
    }

    #[test]
    fn under_prefix_finds_exactly_the_active_tokens_under_it() {
        let mut ix = Index::new();
        // Tokens [7;32], [8;32], [9;32]: distinct 16-bit buckets; retract 8.
        ix.apply(&batch("liaison", LogOp::Add, 1, &[7, 8, 9], 0))
            .unwrap();
        ix.apply(&batch("bank", LogOp::Add, 1, &[7], 0)).unwrap();
        ix.apply(&batch("liaison", LogOp::Retract, 4, &[8], 0))
            .unwrap();
        let t7 = Token([7; 32]);
        for bits in [16, 20, 24] {
            let p = token_prefix(&t7, bits);
            let got = ix.under_prefix(bits, p, 0, |_| true);
            assert_eq!(got.len(), 2, "two origins hold token 7 ({bits} bits)");
            assert!(got.iter().all(|i| i.token == t7));
            assert!(ix.under_prefix(bits, p ^ 1, 0, |_| true).is_empty());
        }
        let p8 = token_prefix(&Token([8; 32]), 20);
        assert!(ix.under_prefix(20, p8, 0, |_| true).is_empty(), "retracted");
        assert!(
            ix.under_prefix(20, token_prefix(&t7, 20), 0, |e| e != 1)
                .is_empty(),
            "epoch filter"
        );
        assert_eq!(token_prefix(&Token([0xab; 32]), 20), 0x000a_baba);
    }

    #[test]
    fn under_a_short_prefix_every_active_token_is_found_and_the_walk_stops_past_most() {
        let mut ix = Index::new();
        ix.apply(&batch("liaison", LogOp::Add, 1, &[7, 8, 9, 0x17], 0))
            .unwrap();
        let all = |bits, p| ix.under_prefix_at_most(bits, p, 0, |_| true, 10).unwrap();
        assert_eq!(all(0, 0).len(), 4);
        // 4 bits: tokens 7, 8 and 9 begin with 0x0, 0x17.. with 0x1.
        assert_eq!(all(4, 0).len(), 3);
        assert_eq!(all(4, 1).len(), 1);
        let t8 = Token([8; 32]);
        let got = all(12, token_prefix(&t8, 12));
        assert!(got.len() == 1 && got[0].token == t8);
        assert!(ix.under_prefix_at_most(0, 0, 0, |_| true, 3).is_none());
        assert!(ix
            .under_prefix_at_most(0, 0, 0, |e| e != 1, 0)
            .unwrap()
            .is_empty());
        assert_eq!(ix.active_by_epoch(0), [(1, 4)]);
    }

    /// A merge computed before another batch was applied would drop that
    /// batch's changes: installing it is refused.
    #[test]
    #[should_panic(expected = "a merge installed after further changes")]
    fn a_merge_computed_before_a_later_batch_is_not_installed() {
        let mut ix = Index::new();
        ix.apply(&batch("liaison", LogOp::Add, 1, &[1, 2], 0))
            .unwrap();
        let m = ix.merged().expect("changes pending");
        ix.apply(&batch("liaison", LogOp::Add, 3, &[3], 0)).unwrap();
        ix.install(m);
    }

    /// Computed from a shared reference and installed, a merge answers as
    /// the index did before it, with nothing pending.
    #[test]
    fn a_merge_built_beside_look_ups_then_installed_changes_no_answer() {
        let mut ix = Index::new();
        ix.apply(&batch("liaison", LogOp::Add, 1, &[1, 2, 3], 0))
            .unwrap();
        ix.merge();
        ix.apply(&batch("bank", LogOp::Add, 1, &[2, 4], 0)).unwrap();
        ix.apply(&batch("liaison", LogOp::Retract, 4, &[1], 0))
            .unwrap();
        let answers = |ix: &Index| -> Vec<usize> {
            (1..=5u8)
                .map(|t| ix.active(&Token([t; 32]), 100).count())
                .collect()
        };
        let before = answers(&ix);
        assert_eq!(before, [0, 2, 1, 1, 0]);
        let m = ix.merged().expect("changes pending");
        // Look-ups go on while the merge is built.
        assert_eq!(answers(&ix), before);
        ix.install(m);
        assert_eq!(answers(&ix), before);
        assert_eq!(ix.pending().0, 0);
        assert!(ix.merged().is_none());
    }

    /// The index, merged at random points, against a plain map of
    /// (token, origin) -> (seq, valid_until), over random operation runs.
    #[test]
    fn matches_a_simple_model_across_merges() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        use std::collections::BTreeMap;
        let origins = ["liaison", "bank", "third"];
        let tokens: Vec<u8> = (1..=40).collect();
        for seed in 0..20u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut ix = Index::new();
            let mut model: BTreeMap<(u8, &str), (u64, i64)> = BTreeMap::new();
            let mut log = Vec::new();
            let mut next = [1u64; 3];
            for _ in 0..60 {
                let o = rng.gen_range(0..3);
                let picked: Vec<u8> = tokens
                    .iter()
                    .copied()
                    .filter(|_| rng.gen_bool(0.2))
                    .collect();
                if picked.is_empty() {
                    continue;
                }
                let until = if rng.gen_bool(0.3) { 150 } else { 0 };
                let op = match rng.gen_range(0..4) {
                    0 => LogOp::Retract,
                    1 => LogOp::Extend,
                    _ => LogOp::Add,
                };
                let b = batch(origins[o], op, next[o], &picked, until);
                ix.apply(&b).unwrap();
                log.push(b);
                // A cold start reads the logs origin by origin.
                log.sort_by_key(|b| (b.header.origin.clone(), b.header.first_seq));
                let built = Index::build(log.iter().cloned().map(Ok::<_, IndexError>)).unwrap();
                for (i, t) in picked.iter().enumerate() {
                    let seq = next[o] + i as u64;
                    let u = if until == 0 { i64::MAX } else { until };
                    match op {
                        LogOp::Add => {
                            model.insert((*t, origins[o]), (seq, u));
                        }
                        LogOp::Retract => {
                            model.remove(&(*t, origins[o]));
                        }
                        _ => {
                            if let Some(x) = model.get_mut(&(*t, origins[o])) {
                                x.1 = u;
                            }
                        }
                    }
                }
                next[o] += picked.len() as u64;
                if rng.gen_bool(0.3) {
                    ix.merge();
                }
                for now in [100, 200] {
                    for t in &tokens {
                        let mut got: Vec<(String, u64)> = ix
                            .active(&Token([*t; 32]), now)
                            .map(|i| (i.origin.to_string(), i.seq))
                            .collect();
                        got.sort();
                        let want: Vec<(String, u64)> = model
                            .iter()
                            .filter(|((mt, _), (_, u))| mt == t && now < *u)
                            .map(|((_, o), (seq, _))| (o.to_string(), *seq))
                            .collect();
                        assert_eq!(got, want, "seed {seed} token {t} at {now}");
                        let mut rebuilt: Vec<(String, u64)> = built
                            .active(&Token([*t; 32]), now)
                            .map(|i| (i.origin.to_string(), i.seq))
                            .collect();
                        rebuilt.sort();
                        assert_eq!(rebuilt, want, "built, seed {seed} token {t} at {now}");
                        let under =
                            ix.under_prefix(16, token_prefix(&Token([*t; 32]), 16), now, |_| true);
                        assert_eq!(under.len(), want.len(), "prefix, seed {seed}");
                    }
                    let live = model.values().filter(|(_, u)| now < *u).count() as u64;
                    let (by_kind, _) = ix.counts(now);
                    assert_eq!(by_kind.iter().map(|(_, c)| c).sum::<u64>(), live);
                    let pages: usize = origins
                        .iter()
                        .map(|o| ix.page_of_origin(o, None, 1000, now).len())
                        .sum();
                    assert_eq!(pages as u64, live);
                }
            }
        }
    }

    /// Large enough for the two-thread sort: every token found, in order,
    /// including tokens that share their first eight bytes.
    #[test]
    fn build_sorts_large_stores_on_two_threads() {
        let tokens: Vec<u8> = (0..=255).collect();
        let mut log = Vec::new();
        let mut seq = 1;
        for round in 0..600u64 {
            // 256 tokens a batch, made distinct per round by the bytes after the first.
            let mut b = batch("liaison", LogOp::Add, seq, &tokens, 0);
            for e in &mut b.raw.entries {
                let mut t = e.token.to_vec();
                t[1..9].copy_from_slice(&round.to_be_bytes());
                e.token = t.into();
            }
            seq += tokens.len() as u64;
            log.push(b);
        }
        let built = Index::build(log.iter().cloned().map(Ok::<_, IndexError>)).unwrap();
        assert_eq!(built.tokens(), 600 * 256);
        assert!(built.main.windows(2).all(|w| w[0].token < w[1].token));
        let mut probe = [7u8; 32];
        probe[1..9].copy_from_slice(&599u64.to_be_bytes());
        assert_eq!(built.active(&Token(probe), 100).count(), 1);
    }

    /// A batch with a bad entry after good ones changes nothing, applied
    /// or built: no half batch.
    #[test]
    fn a_batch_with_one_bad_entry_is_applied_whole_or_not_at_all() {
        let good = batch("liaison", LogOp::Add, 1, &[1], 0);
        let mut bad = batch("liaison", LogOp::Add, 2, &[2, 3, 4], 0);
        bad.raw.entries[2].kind = 99;
        let mut ix = Index::new();
        ix.apply(&good).unwrap();
        assert!(ix.check(&bad).is_err());
        assert!(matches!(
            ix.apply(&bad),
            Err(IndexError::BadEntry { index: 2, .. })
        ));
        assert_eq!(ix.tokens(), 1);
        assert_eq!(ix.pending().1, 1, "not counted as applied");
        assert_eq!(ix.active(&Token([2; 32]), 0).count(), 0);
        let mut b = Builder::new();
        b.add(&good).unwrap();
        assert!(b.add(&bad).is_err());
        let built = b.finish();
        assert_eq!(built.tokens(), 1);
        assert_eq!(built.active(&Token([2; 32]), 0).count(), 0);
    }

    #[test]
    fn frozen_origins_stop_matching_from_the_fork_on() {
        let mut ix = Index::new();
        ix.apply(&batch("liaison", LogOp::Add, 1, &[1, 2, 3], 0))
            .unwrap();
        ix.set_frozen("liaison", Some(2));
        assert_eq!(ix.active(&Token([1; 32]), 0).count(), 1);
        assert_eq!(ix.active(&Token([2; 32]), 0).count(), 0);
        assert_eq!(ix.active(&Token([3; 32]), 0).count(), 0);
    }

    #[test]
    fn a_freeze_can_be_raised_and_lifted_not_only_lowered() {
        let mut ix = Index::new();
        ix.apply(&batch("liaison", LogOp::Add, 1, &[1, 2, 3], 0))
            .unwrap();
        ix.set_frozen("liaison", Some(1));
        assert_eq!(ix.active(&Token([1; 32]), 0).count(), 0);
        ix.set_frozen("liaison", Some(3));
        assert_eq!(ix.active(&Token([2; 32]), 0).count(), 1);
        assert_eq!(ix.active(&Token([3; 32]), 0).count(), 0);
        assert_eq!(ix.frozen(), vec![("liaison".to_string(), 3)]);
        ix.set_frozen("liaison", None);
        assert_eq!(ix.active(&Token([3; 32]), 0).count(), 1);
        assert!(ix.frozen().is_empty());
    }

    #[test]
    fn dropping_an_origin_removes_its_entries_merged_or_not_and_no_other() {
        let mut ix = Index::new();
        ix.apply(&batch("liaison", LogOp::Add, 1, &[1, 2], 0))
            .unwrap();
        ix.apply(&batch("bank", LogOp::Add, 1, &[2, 3], 0)).unwrap();
        ix.merge();
        ix.apply(&batch("liaison", LogOp::Add, 3, &[4], 0)).unwrap();
        ix.drop_origin("liaison");
        assert_eq!(ix.tokens(), 2);
        for t in [1, 4] {
            assert_eq!(ix.active(&Token([t; 32]), 0).count(), 0);
        }
        assert_eq!(ix.active(&Token([2; 32]), 0).count(), 1);
        ix.apply(&batch("liaison", LogOp::Add, 1, &[1], 0)).unwrap();
        ix.merge();
        assert_eq!(ix.active(&Token([1; 32]), 0).count(), 1);
        assert_eq!(ix.tokens(), 3);
    }
}

//! The in-memory token index: token → the indicators that carry it.
//!
//! Rebuilt from the store's batches at start and updated after every durable
//! append, so it always equals the replay of the origin logs. Matching only
//! reads it. Origins and case references are interned: a contribution of
//! 10,000 tokens under one case label stores the label once.
//!
//! Tokens are uniform (HMAC output), so the hash map uses the token's own
//! first eight bytes as its hash instead of hashing again.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::Arc,
};

use crate::{batch::Batch, ident::Kind, proto::LogOp, token::Token};

/// The first 16 bits of a token.
fn prefix16(t: &Token) -> u16 {
    u16::from_be_bytes([t.0[0], t.0[1]])
}

/// The first `bits` (at most 32) bits of a token, as a number.
pub fn token_prefix(t: &Token, bits: u32) -> u32 {
    u32::from_be_bytes([t.0[0], t.0[1], t.0[2], t.0[3]]) >> (32 - bits)
}

/// How sure the contributor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    Confirmed = 1,
    Probable = 2,
    Suspected = 3,
}

impl Tier {
    pub fn from_code(c: i32) -> Option<Tier> {
        match c {
            1 => Some(Tier::Confirmed),
            2 => Some(Tier::Probable),
            3 => Some(Tier::Suspected),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Confirmed => "confirmed",
            Tier::Probable => "probable",
            Tier::Suspected => "suspected",
        }
    }

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

/// One indicator as held in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub origin: u16,
    pub kind: Kind,
    pub tier: Tier,
    pub epoch: u32,
    pub case: u32,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds; `i64::MAX` for no expiry.
    pub valid_until: i64,
    /// Sequence number of the entry that added it.
    pub seq: u64,
}

impl Entry {
    pub fn active_at(&self, now: i64) -> bool {
        now < self.valid_until
    }
}

/// An indicator with its interned names resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Indicator {
    pub token: Token,
    pub origin: Arc<str>,
    pub kind: Kind,
    pub tier: Tier,
    pub epoch: u32,
    pub case_ref: Arc<str>,
    pub created: i64,
    /// `None` for no expiry.
    pub valid_until: Option<i64>,
    pub seq: u64,
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

/// Errors from applying a batch that the store accepted but the index
/// cannot read: a bug or a corrupt store, never a user error.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("batch {origin}#{first_seq}: entry {index}: {what}")]
    BadEntry {
        origin: String,
        first_seq: u64,
        index: usize,
        what: &'static str,
    },
    #[error("more than 65535 origins")]
    TooManyOrigins,
}

/// Active indicators by kind and by origin.
pub type Counts = (Vec<(Kind, u64)>, Vec<(Arc<str>, u64)>);

#[derive(Default)]
pub struct Index {
    map: TokenMap<Vec<Entry>>,
    /// Every token held, by its first 16 bits: serves prefix queries
    /// (16 to 24 bits) without a scan of the whole map.
    by_prefix: HashMap<u16, Vec<Token>>,
    origins: Interner,
    cases: Interner,
    /// Origins frozen by fork evidence: entries from this sequence number on
    /// no longer match.
    frozen: HashMap<u16, u64>,
}

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    /// Number of distinct tokens held (including expired ones not yet purged).
    pub fn tokens(&self) -> usize {
        self.map.len()
    }

    /// Applies every entry of a batch, in order. Purged entries (no token
    /// left) are skipped: they no longer say anything.
    pub fn apply(&mut self, batch: &Batch) -> Result<(), IndexError> {
        let h = &batch.header;
        let origin = self.origins.intern(&h.origin);
        let origin = u16::try_from(origin).map_err(|_| IndexError::TooManyOrigins)?;
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
        for (i, e) in batch.raw.entries.iter().enumerate() {
            if !e.purged_hash.is_empty() {
                continue;
            }
            let token = Token::from_slice(&e.token).map_err(|_| bad(i, "token is not 32 bytes"))?;
            let seq = h.first_seq + i as u64;
            match op {
                LogOp::Add => {
                    let kind = u8::try_from(e.kind)
                        .ok()
                        .and_then(Kind::from_code)
                        .ok_or_else(|| bad(i, "unknown kind"))?;
                    let tier = Tier::from_code(h.tier).ok_or_else(|| bad(i, "unknown tier"))?;
                    let entry = Entry {
                        origin,
                        kind,
                        tier,
                        epoch: e.epoch,
                        case,
                        created: h.created_unix,
                        valid_until,
                        seq,
                    };
                    let list = match self.map.entry(token) {
                        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            self.by_prefix
                                .entry(prefix16(&token))
                                .or_default()
                                .push(token);
                            v.insert(Vec::new())
                        }
                    };
                    match list.iter_mut().find(|x| x.origin == origin) {
                        Some(x) => *x = entry,
                        None => list.push(entry),
                    }
                }
                LogOp::Retract => {
                    if let Some(list) = self.map.get_mut(&token) {
                        list.retain(|x| x.origin != origin);
                        if list.is_empty() {
                            self.map.remove(&token);
                            if let Some(b) = self.by_prefix.get_mut(&prefix16(&token)) {
                                b.retain(|t| *t != token);
                            }
                        }
                    }
                }
                LogOp::Extend => {
                    if let Some(x) = self
                        .map
                        .get_mut(&token)
                        .and_then(|l| l.iter_mut().find(|x| x.origin == origin))
                    {
                        x.valid_until = valid_until;
                    }
                }
                LogOp::Unspecified => return Err(bad(i, "unspecified op")),
            }
        }
        Ok(())
    }

    /// Freezes `origin` from sequence number `seq` on (fork evidence).
    pub fn freeze(&mut self, origin: &str, seq: u64) {
        let o = self.origins.intern(origin) as u16;
        let at = self.frozen.entry(o).or_insert(seq);
        *at = (*at).min(seq);
    }

    /// Whether an entry counts now: not expired, not past a fork.
    fn live(&self, e: &Entry, now: i64) -> bool {
        e.active_at(now) && self.frozen.get(&e.origin).is_none_or(|f| e.seq < *f)
    }

    /// The raw entries for a token (active or not).
    pub fn entries(&self, token: &Token) -> &[Entry] {
        self.map.get(token).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The entry of `origin` for `token`, active or not.
    pub fn entry_of(&self, token: &Token, origin: &str) -> Option<&Entry> {
        let o = self.origins.get(origin)? as u16;
        self.entries(token).iter().find(|e| e.origin == o)
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
            created: e.created,
            valid_until: (e.valid_until != i64::MAX).then_some(e.valid_until),
            seq: e.seq,
        }
    }

    /// Active indicators for a token.
    pub fn active(&self, token: &Token, now: i64) -> impl Iterator<Item = Indicator> + '_ {
        let token = *token;
        self.entries(&token)
            .iter()
            .filter(move |e| self.live(e, now))
            .map(move |e| self.resolve(token, e))
    }

    /// Calls `f` with every token held (for benchmarks' reference maps).
    pub fn for_each_token(&self, mut f: impl FnMut(&Token)) {
        self.map.keys().for_each(&mut f);
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
        let Some(tokens) = self.by_prefix.get(&((prefix >> (bits - 16)) as u16)) else {
            return Vec::new();
        };
        let mut out: Vec<Indicator> = tokens
            .iter()
            .filter(|t| token_prefix(t, bits) == prefix)
            .flat_map(|t| self.active(t, now))
            .filter(|i| epoch_ok(i.epoch))
            .collect();
        out.sort_unstable_by(|a, b| a.token.cmp(&b.token).then(a.origin.cmp(&b.origin)));
        out
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
            .map
            .iter()
            .filter(|(t, _)| after.is_none_or(|a| **t > a))
            .filter_map(|(t, list)| {
                list.iter()
                    .find(|e| e.origin == o && self.live(e, now))
                    .map(|e| (*t, *e))
            })
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
            .map
            .iter()
            .filter_map(|(t, list)| {
                list.iter()
                    .find(|e| e.origin == o && e.case == c && self.live(e, now))
                    .map(|e| (*t, e.kind, e.epoch))
            })
            .collect();
        out.sort_unstable_by_key(|a| a.0);
        out
    }

    /// Active indicator counts by kind and by origin.
    pub fn counts(&self, now: i64) -> Counts {
        let mut by_kind = [0u64; 9];
        let mut by_origin = vec![0u64; self.origins.names.len()];
        for e in self.map.values().flatten().filter(|e| self.live(e, now)) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{batch, proto::BatchHeader, trust::keys::SigningKeyFile};

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
    fn frozen_origins_stop_matching_from_the_fork_on() {
        let mut ix = Index::new();
        ix.apply(&batch("liaison", LogOp::Add, 1, &[1, 2, 3], 0))
            .unwrap();
        ix.freeze("liaison", 2);
        assert_eq!(ix.active(&Token([1; 32]), 0).count(), 1);
        assert_eq!(ix.active(&Token([2; 32]), 0).count(), 0);
        assert_eq!(ix.active(&Token([3; 32]), 0).count(), 0);
    }
}

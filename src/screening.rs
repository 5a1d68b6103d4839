//! The match engine: identifiers or tokens in, per-item outcomes out.
//!
//! Each identifier is normalized and hashed under every key epoch valid now
//! (outside any lock), then the whole batch is looked up under one read lock
//! of the index. Raw values are borrowed from the request and never copied
//! anywhere that outlives it; the one buffer their canonical forms are
//! written to is zeroized (`zeroize`, which the compiler may not elide)
//! before the lookup. Outcomes carry tokens and reasons only.

use std::sync::Arc;

use parking_lot::RwLock;
use zeroize::Zeroize;

use crate::{
    epochs::Keys,
    flood::Subject,
    ident::{self, Kind, Reason},
    index::{Index, Indicator},
    token::Token,
};

/// The answer for one item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    NoMatch,
    /// Every active indicator for the item, from any origin and epoch.
    Match(Vec<Indicator>),
    /// Rejected before hashing; the reason is a fixed word, never the value.
    Invalid(&'static str),
}

/// One item hashed for matching elsewhere: its token under each valid epoch
/// (epoch id, token), or why it was rejected.
pub(crate) type Hashed = Result<Vec<(u32, Token)>, Reason>;

#[derive(Clone)]
pub(crate) struct Engine {
    index: Arc<RwLock<Index>>,
    keys: Keys,
}

impl Engine {
    pub(crate) fn new(index: Arc<RwLock<Index>>, keys: Keys) -> Engine {
        Engine { index, keys }
    }

    /// Screens identifiers given as (kind, raw value as text bytes).
    pub(crate) fn match_identifiers<I, V>(&self, items: I, now: i64) -> Vec<Outcome>
    where
        I: IntoIterator<Item = (Result<Kind, Reason>, V)>,
        V: AsRef<[u8]>,
    {
        let ring = self.keys.get();
        let epochs: Vec<_> = ring.valid_at(now).collect();
        let n_epochs = epochs.len();
        let mut buf = Vec::with_capacity(128);
        let items = items.into_iter();
        let n = items.size_hint().0;
        // Per item: Ok(index of its first token in `tokens`) or the reason.
        let mut plan: Vec<Result<usize, Reason>> = Vec::with_capacity(n);
        let mut tokens: Vec<Token> = Vec::with_capacity(n * n_epochs);
        for (kind, value) in items {
            let r = kind.and_then(|k| ident::normalize_into(k, &value, &mut buf).map(|_| k));
            plan.push(r.map(|k| {
                let at = tokens.len();
                tokens.extend(epochs.iter().map(|e| e.tokenizer.token(k, &buf)));
                at
            }));
        }
        buf.zeroize();
        let index = self.index.read();
        let maybe = index.may_hold(&tokens);
        plan.into_iter()
            .map(|p| match p {
                Err(r) => Outcome::Invalid(r.as_str()),
                Ok(at) if maybe[at..at + n_epochs].contains(&true) => {
                    collect(&index, &tokens[at..at + n_epochs], now)
                }
                Ok(_) => Outcome::NoMatch,
            })
            .collect()
    }

    /// Screens pre-computed tokens. Indicators of an epoch that is not valid
    /// now do not match, as for identifiers.
    pub(crate) fn match_tokens(&self, tokens: &[Token], now: i64) -> Vec<Outcome> {
        let ring = self.keys.get();
        let valid: Vec<u32> = ring.valid_at(now).map(|e| e.id).collect();
        let index = self.index.read();
        let maybe = index.may_hold(tokens);
        tokens
            .iter()
            .zip(maybe)
            .map(|(t, maybe)| {
                if !maybe {
                    return Outcome::NoMatch;
                }
                let hits: Vec<Indicator> = index
                    .active(t, now)
                    .filter(|i| valid.contains(&i.epoch))
                    .collect();
                outcome(hits)
            })
            .collect()
    }

    /// Normalizes and hashes identifiers under every epoch valid now, for
    /// matching against answers from elsewhere (prefix queries).
    pub(crate) fn hash_identifiers<'a, I>(&self, items: I, now: i64) -> Vec<Hashed>
    where
        I: IntoIterator<Item = (Result<Kind, Reason>, &'a str)>,
    {
        self.hash_identifiers_checked(items, now, |_, _| Ok(()))
    }

    /// [`Engine::hash_identifiers`] with a check of each item's canonical
    /// form (`check(position, canonical)`) before it is hashed: the watchlist
    /// refuses a reference equal to the value it names.
    pub(crate) fn hash_identifiers_checked<'a, I, E>(
        &self,
        items: I,
        now: i64,
        mut check: impl FnMut(usize, &[u8]) -> Result<(), E>,
    ) -> Vec<Result<Vec<(u32, Token)>, E>>
    where
        I: IntoIterator<Item = (Result<Kind, Reason>, &'a str)>,
        E: From<Reason>,
    {
        let ring = self.keys.get();
        let epochs: Vec<_> = ring.valid_at(now).collect();
        let mut buf = Vec::with_capacity(128);
        let out = items
            .into_iter()
            .enumerate()
            .map(|(i, (kind, value))| {
                let k = kind.and_then(|k| ident::normalize_into(k, value, &mut buf).map(|_| k))?;
                check(i, &buf)?;
                Ok(epochs
                    .iter()
                    .map(|e| (e.id, e.tokenizer.token(k, &buf)))
                    .collect())
            })
            .collect();
        buf.zeroize();
        out
    }

    /// Ids of the key epochs valid at `now`.
    pub(crate) fn valid_epochs(&self, now: i64) -> Vec<u32> {
        self.keys.get().valid_at(now).map(|e| e.id).collect()
    }

    pub(crate) fn index(&self) -> &Arc<RwLock<Index>> {
        &self.index
    }
}

/// What flood control counts a hit on `i` by.
pub(crate) fn subject(i: &Indicator) -> Subject<'_> {
    Subject {
        origin: &i.origin,
        seq: i.seq,
        kind: i.kind,
        case_ref: &i.case_ref,
    }
}

fn outcome(hits: Vec<Indicator>) -> Outcome {
    if hits.is_empty() {
        Outcome::NoMatch
    } else {
        Outcome::Match(hits)
    }
}

/// Identifiers: each token was made under a valid epoch, and an entry
/// carries the epoch of its token, so every live entry found counts.
fn collect(index: &Index, tokens: &[Token], now: i64) -> Outcome {
    let mut hits: Vec<Indicator> = Vec::new();
    for t in tokens {
        hits.extend(index.active(t, now));
    }
    outcome(hits)
}

//! The match engine: identifiers or tokens in, per-item outcomes out.
//!
//! Each identifier is normalized and hashed under every key epoch valid now
//! (outside any lock), then the whole batch is looked up under one read lock
//! of the index. Raw values are borrowed from the request and never copied
//! anywhere that outlives it; outcomes carry tokens and reasons only.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::{
    ident::{self, Kind, Reason},
    index::{Index, Indicator},
    keyring::Keys,
    token::Token,
};

/// The answer for one item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    NoMatch,
    /// Every active indicator for the item, from any origin and epoch.
    Match(Vec<Indicator>),
    /// Rejected before hashing; the reason is a fixed word, never the value.
    Invalid(&'static str),
}

#[derive(Clone)]
pub struct Engine {
    index: Arc<RwLock<Index>>,
    keys: Keys,
}

impl Engine {
    pub fn new(index: Arc<RwLock<Index>>, keys: Keys) -> Engine {
        Engine { index, keys }
    }

    /// Screens identifiers given as (kind, raw value).
    pub fn match_identifiers<'a, I>(&self, items: I, now: i64) -> Vec<Outcome>
    where
        I: IntoIterator<Item = (Result<Kind, Reason>, &'a str)>,
    {
        let ring = self.keys.get();
        let epochs: Vec<_> = ring.valid_at(now).collect();
        let n_epochs = epochs.len();
        let mut buf = Vec::with_capacity(128);
        // Per item: Ok(index of its first token in `tokens`) or the reason.
        let mut plan: Vec<Result<usize, Reason>> = Vec::new();
        let mut tokens: Vec<Token> = Vec::new();
        for (kind, value) in items {
            let r = kind.and_then(|k| ident::normalize_into(k, value, &mut buf).map(|_| k));
            plan.push(r.map(|k| {
                let at = tokens.len();
                tokens.extend(epochs.iter().map(|e| e.tokenizer.token(k, &buf)));
                at
            }));
        }
        buf.fill(0);
        let index = self.index.read();
        plan.into_iter()
            .map(|p| match p {
                Err(r) => Outcome::Invalid(r.as_str()),
                Ok(at) => collect(&index, &tokens[at..at + n_epochs], now),
            })
            .collect()
    }

    /// Screens pre-computed tokens.
    pub fn match_tokens(&self, tokens: &[Token], now: i64) -> Vec<Outcome> {
        let index = self.index.read();
        tokens
            .iter()
            .map(|t| collect(&index, std::slice::from_ref(t), now))
            .collect()
    }
}

fn collect(index: &Index, tokens: &[Token], now: i64) -> Outcome {
    let mut hits: Vec<Indicator> = Vec::new();
    for t in tokens {
        hits.extend(index.active(t, now));
    }
    if hits.is_empty() {
        Outcome::NoMatch
    } else {
        Outcome::Match(hits)
    }
}

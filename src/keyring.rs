//! The node's token keys, one per key epoch, with their validity windows.
//!
//! Matching hashes under every epoch valid now (two during a rotation);
//! contributions use the newest valid one. Windows come from the config for
//! now; once a trust list is in force its windows decide and the config only
//! maps epoch ids to key files. Keys are loaded once at start; their bytes
//! stay inside [`crate::token`] types, which never print them.

use crate::{
    config::EpochConfig,
    token::{KeyError, TokenKey, Tokenizer},
};

/// One key epoch.
#[derive(Debug)]
pub struct Epoch {
    pub id: u32,
    /// Unix seconds; valid in [valid_from, valid_until).
    pub valid_from: i64,
    pub valid_until: i64,
    /// SHA-256 of the key bytes, lowercase hex.
    pub fingerprint: String,
    pub tokenizer: Tokenizer,
}

impl Epoch {
    pub fn valid_at(&self, now: i64) -> bool {
        self.valid_from <= now && now < self.valid_until
    }
}

#[derive(Debug)]
pub struct KeyRing {
    epochs: Vec<Epoch>,
}

impl KeyRing {
    /// Loads every configured key file (refusing loose permissions).
    pub fn load(epochs: &[EpochConfig]) -> Result<KeyRing, KeyError> {
        let mut out = Vec::with_capacity(epochs.len());
        for e in epochs {
            let key = TokenKey::load(&e.key_file)?;
            out.push(Epoch {
                id: e.id,
                valid_from: e.valid_from,
                valid_until: e.valid_until,
                fingerprint: key.fingerprint(),
                tokenizer: Tokenizer::new(&key),
            });
        }
        Ok(KeyRing::new(out))
    }

    pub fn new(mut epochs: Vec<Epoch>) -> KeyRing {
        // Newest first: contributions take the first valid one.
        epochs.sort_by(|a, b| b.valid_from.cmp(&a.valid_from).then(b.id.cmp(&a.id)));
        KeyRing { epochs }
    }

    pub fn all(&self) -> &[Epoch] {
        &self.epochs
    }

    /// Epochs valid at `now`, newest first.
    pub fn valid_at(&self, now: i64) -> impl Iterator<Item = &Epoch> + '_ {
        self.epochs.iter().filter(move |e| e.valid_at(now))
    }

    /// The epoch new contributions use.
    pub fn newest_valid(&self, now: i64) -> Option<&Epoch> {
        self.valid_at(now).next()
    }

    pub fn get(&self, id: u32) -> Option<&Epoch> {
        self.epochs.iter().find(|e| e.id == id)
    }
}

/// Current unix time in seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

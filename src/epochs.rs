//! The node's token keys, one per key epoch, with their validity windows.
//!
//! Matching hashes under every epoch valid now (two during a rotation);
//! contributions use the newest valid one. Key files are loaded once at
//! start ([`load_keys`]); the windows come from the trust list when the node
//! is federated (and every key must match its epoch's fingerprint there),
//! else from the config. A new trust list rebuilds the ring ([`Keys::set`])
//! without touching the keys. Key bytes stay inside [`crate::token`] types,
//! which never print them.

use std::{path::PathBuf, sync::Arc};

use parking_lot::RwLock;

use crate::{
    keys::{KeyError, TokenKey},
    proto::KeyEpoch,
    token::Tokenizer,
};

/// One key epoch as the node's config names it.
#[derive(Debug, Clone)]
pub struct EpochConfig {
    pub id: u32,
    pub key_file: PathBuf,
    /// Unix seconds; `None` when the trust list decides.
    pub window: Option<(i64, i64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "token key file {path} does not match epoch {id} of the trust list (list fingerprint {expected}, file fingerprint {got}); \
         a wrong key would silently never match: install the coalition's key for epoch {id}"
    )]
    Mismatch {
        id: u32,
        path: PathBuf,
        expected: String,
        got: String,
    },
}

/// A key file loaded at start.
#[derive(Debug, Clone)]
pub struct LoadedKey {
    pub id: u32,
    pub path: PathBuf,
    pub fingerprint: String,
    pub tokenizer: Tokenizer,
    /// The config's window (standalone nodes only).
    pub window: Option<(i64, i64)>,
}

/// Loads every configured key file (refusing loose permissions).
pub fn load_keys(epochs: &[EpochConfig]) -> Result<Vec<LoadedKey>, KeyError> {
    epochs
        .iter()
        .map(|e| {
            let key = TokenKey::load(&e.key_file)?;
            Ok(LoadedKey {
                id: e.id,
                path: e.key_file.clone(),
                fingerprint: key.fingerprint(),
                tokenizer: Tokenizer::new(&key),
                window: e.window,
            })
        })
        .collect()
}

/// One key epoch the node can hash under.
#[derive(Clone, Debug)]
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

#[derive(Debug, Default)]
pub struct KeyRing {
    epochs: Vec<Epoch>,
}

impl KeyRing {
    /// Builds the ring. With `list` (a trust list's epochs), windows come from
    /// it; a key whose fingerprint differs from its epoch's is an error when
    /// `strict`, else logged and left out; a key for an epoch the list lacks
    /// is left out with a warning. Without `list`, the config's windows.
    pub fn build(
        keys: &[LoadedKey],
        list: Option<&[KeyEpoch]>,
        strict: bool,
    ) -> Result<KeyRing, KeyRingError> {
        let mut epochs = Vec::new();
        for k in keys {
            let window = match list {
                None => k.window,
                Some(list) => match list.iter().find(|e| e.id == k.id) {
                    None => {
                        tracing::warn!(epoch = k.id, path = %k.path.display(), "token key for an epoch the trust list does not name; not used");
                        None
                    }
                    Some(e) if e.key_sha256 != k.fingerprint => {
                        let err = KeyRingError::Mismatch {
                            id: k.id,
                            path: k.path.clone(),
                            expected: e.key_sha256.clone(),
                            got: k.fingerprint.clone(),
                        };
                        if strict {
                            return Err(err);
                        }
                        tracing::error!(error = %err, "token key not used");
                        None
                    }
                    Some(e) => Some((e.valid_from, e.valid_until)),
                },
            };
            if let Some((valid_from, valid_until)) = window {
                epochs.push(Epoch {
                    id: k.id,
                    valid_from,
                    valid_until,
                    fingerprint: k.fingerprint.clone(),
                    tokenizer: k.tokenizer.clone(),
                });
            }
        }
        if let Some(list) = list {
            for e in list.iter().filter(|e| !keys.iter().any(|k| k.id == e.id)) {
                tracing::warn!(
                    epoch = e.id,
                    "the trust list names an epoch this node has no key file for"
                );
            }
        }
        Ok(KeyRing::new(epochs))
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

/// The key ring in force, replaced whole when a new trust list changes the
/// epochs. Readers take a snapshot per request.
#[derive(Clone, Default)]
pub struct Keys {
    inner: Arc<RwLock<Arc<KeyRing>>>,
}

impl Keys {
    pub fn new(ring: KeyRing) -> Keys {
        Keys {
            inner: Arc::new(RwLock::new(Arc::new(ring))),
        }
    }

    pub fn get(&self) -> Arc<KeyRing> {
        self.inner.read().clone()
    }

    pub fn set(&self, ring: KeyRing) {
        *self.inner.write() = Arc::new(ring);
    }
}

/// The system's unix time in seconds, 0 if it reads before 1970. Node
/// logic reads the node's [`crate::time::Clock`] instead (a failing clock
/// is an error there, and tests can set it); this stays only until the
/// last callers (federation, CLI, benchmarks, testbed) take the clock too.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

//! The bank's book under continuous screening: watch entries (the bank's
//! own reference, a kind, and the identifier's token under each valid key
//! epoch), kept only under a second, node-local key.
//!
//! Placeholder: the entries, their key and their files come with the
//! watchlist itself.
#![allow(dead_code)]

/// A watch entry's number on this node (never leaves it).
pub(crate) type EntryId = u32;

/// HMAC-SHA256(node-local key, token), truncated to 16 bytes: how a watch
/// entry is stored and indexed, and how arriving indicators are checked.
pub(crate) type WatchHash = [u8; 16];

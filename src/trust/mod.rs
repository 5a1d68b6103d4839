//! The coalition trust list: operator-signed membership, modelled on The
//! Update Framework's root metadata (signed, versioned, expiring,
//! threshold-signed, with operator key rotation).
//!
//! - [`list`]: decoding, the acceptance rules and editing (pure).
//! - [`keys`]: Ed25519 key files of operators and members.
//! - [`state`]: the list in force on a node, offers of new lists, cut-offs.
//! - [`auth`]: per-request authorization of peers on the peer listener.

pub mod auth;
pub mod keys;
pub mod list;
pub mod state;

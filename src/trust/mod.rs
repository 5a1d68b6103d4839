//! The coalition trust list: operator-signed membership, modelled on The
//! Update Framework's root metadata (signed, versioned, expiring,
//! threshold-signed, with operator key rotation).
//!
//! - [`list`]: decoding, signing and the acceptance rules (pure).
//! - [`edit`]: what operators' tools change in a list (pure).
//! - [`batches`]: which origin-log batches the list in force admits.
//! - [`state`]: the list in force on a node, offers of new lists, cut-offs.

pub mod batches;
pub mod edit;
pub mod list;
pub mod state;

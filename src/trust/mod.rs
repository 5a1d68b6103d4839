//! The coalition trust list: operator-signed membership, modelled on The
//! Update Framework's root metadata (signed, versioned, expiring,
//! threshold-signed, with operator key rotation).
//!
//! - [`list`]: decoding, the acceptance rules and editing (pure).
//! - [`batches`]: which origin-log batches the list in force admits.
//! - [`state`]: the list in force on a node, offers of new lists, cut-offs.

pub mod batches;
pub mod list;
pub mod state;

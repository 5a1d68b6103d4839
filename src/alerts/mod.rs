//! Alerts: an event the moment an indicator becomes active (or stops being
//! active) for an entry of this node's watchlist, numbered in one durable
//! log per node, delivered to subscribers and to a webhook sink.
//!
//! - `engine`: which (watch entry, origin, case reference) triples have an
//!   active indicator, and the events when that changes.

pub(crate) mod engine;

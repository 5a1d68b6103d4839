//! Alerts: an event the moment an indicator becomes active (or stops being
//! active) for an entry of this node's watchlist, numbered in one durable
//! log per node, delivered to subscribers and to a webhook sink.
//!
//! - `casework`: dispositions recorded against alerts and hits (with the
//!   feedback they give), and the case package.
//! - `engine`: which (watch entry, origin, case reference) triples have an
//!   active indicator, and the events when that changes.
//! - `log`: the durable, numbered alert log, the engine's state beside it,
//!   the sinks' cursors, the live stream from a cursor, retention, and the
//!   event's JSON form.
//! - `webhook`: the webhook sink: each event POSTed in order, signed, until
//!   the receiver acknowledges it.

pub(crate) mod casework;
pub(crate) mod engine;
pub(crate) mod log;
pub(crate) mod webhook;

//! The alert engine: compares what the index holds for each watch entry
//! with the alerts open, and appends the differences to the alert log.
//!
//! Placeholder: the engine comes with the alerts.
#![allow(dead_code)]

use crate::{token::Token, watchlist::EntryId};

/// Keeps the open alerts equal to what the index and the watchlist say.
pub(crate) struct Monitor {}

impl Monitor {
    /// A monitor with nothing to watch yet.
    pub(crate) fn new() -> Monitor {
        Monitor {}
    }

    /// New watch entries (or entries that gained an epoch), with their
    /// tokens as (epoch, token): alerts for what already matches (the
    /// baseline). Queued; returns at once.
    pub(crate) fn registered(&self, _entries: &[(EntryId, Vec<(u32, Token)>)]) {}

    /// Watch entries removed: their open alerts are withdrawn. Queued;
    /// returns at once.
    pub(crate) fn removed(&self, _entries: &[EntryId]) {}
}

//! Reports a node's admin draws from its records: the coalition's outcome
//! figures ([`outcomes`]), counts only and suppressed below five.

pub mod outcomes;

//! cix: the Coalition Indicator eXchange node.
//!
//! Members of a financial coalition against online child sexual exploitation
//! exchange keyed-hash indicators (HMAC-SHA256 tokens) of accounts, cards,
//! merchants, wallets, e-mails, phones and domains, never the identifiers
//! themselves. Each member runs a node; its own systems screen against the
//! node's local copy of every origin log over mutual TLS.
//!
//! # Words
//!
//! - **member**: a bank, payment company, liaison or operator on the
//!   coalition's signed trust list.
//! - **client**: the member's own systems calling its node on the *member
//!   listener* (screening, contributions, status), authorized by the grants
//!   in the node's config (client capabilities `screen`,
//!   `contribute`, `admin`, `watchlist`, `disposition`).
//! - **peer**: another member's node calling on the *peer listener*
//!   (`cix.v1.Federation`) or called by this one, authorized by the trust
//!   list in force (its peer capabilities `replicate`, `contribute`,
//!   `query`, `feedback`).
//! - **origin log**: one member's append-only, signed log of entries;
//!   [`batch`]es are its unit of storage and replication. The node keeps
//!   every origin log it holds in `logs` (store + index, one entry point).
//! - **replication**: pulling batches from peers (`federation`); not to be
//!   confused with a bank's read replicas of its node.
//! - **key epoch**: one token key and its validity window (`epochs`).
//!
//! Config keys, environment variables and wire names predate these words
//! and stay as they are (`[member_listener]`, `Federation.Pull`).
//!
//! # Map
//!
//! Floors from the bottom up; a module imports only from floors below it
//! (or its own).
//!
//! 0. Leaves: [`ident`] (identifier kinds and normalization,
//!    `docs/spec/IDENTIFIERS.md`), [`proto`] (generated protobuf),
//!    [`time`] (the node's clock, RFC 3339), [`keys`] (token keys, signing
//!    keys, secret files), [`counters`] (typed per-peer counts for Status
//!    and metrics), `ratelimit` (token buckets, daily quotas),
//!    [`telemetry`] (logging, error chains), [`capture`] (opt-in capture of
//!    peer messages).
//! 1. [`token`]: the HMAC token; [`tls`]: rustls configs, caller identity,
//!    connection cut-off; [`outcome`]: dispositions, actions, feedback
//!    outcomes, UTC days (the words of Report and Disrupt).
//! 2. `epochs`: the key epochs valid now; [`batch`]: origin-log batches
//!    (format, salted entry hashes, signatures).
//! 3. [`store`]: batch bodies in segment files, sled for locations, heads,
//!    trust list, forks, what a start set aside; [`index`]: the in-memory
//!    token index; `watchlist`: the bank's book under continuous
//!    screening, under a node-local key; `dispositions`: the bank's
//!    outcomes of alerts and hits, and the alert triples they settle.
//!    screening, under a node-local key; `flood`: per-indicator daily
//!    counts of hits and watch entries, and the quarantines past them.
//! 4. [`trust`]: the trust list: acceptance rules, the list in force,
//!    which batches it admits, operators' edits.
//! 5. `logs`: where batches enter store and index (one outcome), and the
//!    start's rebuild, which sets aside what does not apply; `screening`: the match
//!    engine; `retention`: purging dead entries; `auth`: clients by the
//!    config's grants, peers by the trust list.
//! 6. `contribution`: this node's own origin log; `federation`: one file
//!    per direction of each protocol (Pull/Watch, QueryPrefix, trust-list
//!    sync) and the peer dialer; `config`: the TOML file, validated;
//!    `alerts`: the watchlist against the index, the alert log, its
//!    subscribers and webhook sink, dispositions recorded against alerts
//!    and hits, and the case package; [`report`]: the coalition's outcome
//!    figures (counts, suppressed, with a chart).
//! 7. [`feedback`]: outcomes back to the origin: the sender's durable
//!    queue and delivery, the origin's checks and record of what it heard.
//! 8. `node`: the node's state and its status report.
//! 9. `api`: tonic services (thin handlers), protobuf conversions, the
//!    mapping of domain errors to statuses.
//! 10. `server`: listeners, background tasks, shutdown; `server::run`.
//! 11. [`client`]: the mTLS client of the member API.
//! 12. [`testbed`]: a local coalition of real node processes for the demo,
//!     benchmarks and tests.
//! 13. [`bench`]: `cix bench`.
//! 14. [`cli`]: the `cix` command line, one command family per file; only
//!     `main.rs` imports it.
//!
//! # Lint policy
//!
//! Set in `Cargo.toml`: `unsafe_code` is forbidden; `unreachable_pub` and
//! `missing_docs` warn, and CI denies warnings. The public surface is the
//! modules the binary, the integration tests and the benchmarks use; the
//! rest are private, their items `pub(crate)`, so the compiler reports code
//! nothing calls. Generated code ([`proto`], the screening service) is
//! exempt from `missing_docs`.

#![forbid(unsafe_code)]

mod alerts;
mod api;
mod auth;
pub mod batch;
pub mod bench;
pub mod capture;
pub mod cli;
pub mod client;
mod config;
mod contribution;
pub mod counters;
mod dispositions;
mod epochs;
mod federation;
pub mod feedback;
mod flood;
pub mod ident;
pub mod index;
pub mod keys;
mod logs;
mod node;
pub mod outcome;
pub mod proto;
mod ratelimit;
pub mod report;
mod retention;
mod screening;
mod server;
pub mod store;
pub mod telemetry;
pub mod testbed;
pub mod time;
pub mod tls;
pub mod token;
pub mod trust;
mod watchlist;

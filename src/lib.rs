//! cix: the Coalition Indicator eXchange node.
//!
//! Members of a financial coalition against online child sexual exploitation
//! exchange keyed-hash indicators (HMAC-SHA256 tokens) of accounts, cards,
//! merchants, wallets, e-mails, phones and domains, never the identifiers
//! themselves. Each member runs a node; its own systems screen against the
//! node's local replica over mutual TLS.
//!
//! The map, from the bottom up:
//!
//! - [`ident`]: identifier kinds and normalization to canonical forms
//!   (`docs/spec/IDENTIFIERS.md`). Pure.
//! - [`token`]: token keys, key files, the HMAC token. Pure but for key files.
//! - [`keyring`]: the key epochs a node holds and which are valid now.
//! - [`store`]: on disk: origin-log batches in append-only segment files;
//!   sled for their locations, heads, trust list, forks, schema.
//! - [`batch`]: origin-log batches: format, salted entry hashes, signatures, verification.
//! - [`index`]: the in-memory token index, rebuilt from the store at start.
//! - [`replica`]: where batches enter the store and the index, and heads are announced.
//! - [`screening`]: the match engine over the index.
//! - [`retention`]: purging dead entries after the retention period (batches still verify).
//! - [`contribution`]: this node's own origin log: add, retract, extend.
//! - [`prefix`]: k-anonymous prefix queries between members, both sides.
//! - [`ratelimit`]: per-caller token buckets and daily quotas.
//! - [`auth`], [`tls`]: who is calling (certificate public key) and what they may do.
//! - [`trust`]: the operator-signed trust list, its verification and the
//!   per-request authorization of peers.
//! - [`federation`]: reaching peers; keeping every node on the newest list.
//! - [`api`]: the tonic services; thin handlers and protobuf conversions.
//! - [`capture`]: opt-in capture of the peer listener's gRPC messages (audits, leak tests).
//! - [`server`], [`shutdown`]: the node process and its lifecycle.
//! - [`config`]: the TOML config, validated.
//! - [`client`], [`cli`]: the `cix` command line and its mTLS client.
//! - [`synth`]: synthetic identifiers for the demo, tests and benchmarks.
//! - [`bench`]: `cix bench`, measured figures (never asserted in tests).
//! - [`telemetry`]: logging setup.

#![forbid(unsafe_code)]

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
mod epochs;
mod federation;
pub mod ident;
pub mod index;
pub mod keys;
mod logs;
mod node;
pub mod proto;
mod ratelimit;
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

//! Key material and the files that hold it: the coalition's token keys
//! ([`TokenKey`], one per key epoch), the Ed25519 signing keys of operators
//! and members ([`signing`]), and the private-file rules every secret file
//! follows ([`file`](mod@file): mode 0600, never overwritten). Nothing here
//! prints a key: every `Debug` is redacted and no error echoes file content.

pub mod file;
pub mod signing;
mod token_key;

pub use token_key::{KeyError, TokenKey};

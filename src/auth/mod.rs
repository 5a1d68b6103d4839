//! Who is calling and what they may do, on both listeners. A caller is the
//! SHA-256 of its client certificate's SubjectPublicKeyInfo
//! ([`crate::tls::TlsIdentity`]), and every request is authorized anew: a
//! client by the grants of the node's config, a peer by the trust list in
//! force, so a membership taken away takes effect on the next call, even on
//! an open connection.
//!
//! - [`clients`]: the member's own systems on the member listener, by the
//!   grants in the node's config ([`clients::ClientCapability`]).
//! - [`peers`]: other coalition members' nodes on the peer listener, by the
//!   trust list in force (membership, status and the trust list's peer
//!   capabilities).

pub(crate) mod clients;
pub(crate) mod peers;

//! Authorization of clients (the member's own systems) on the member
//! listener.
//!
//! A caller is its client certificate's public key: the SHA-256 of the DER
//! SubjectPublicKeyInfo (see [`crate::tls::spki_sha256`]), computed once per
//! connection at the handshake. What it may do is looked up in the grants of
//! the node's config (`[[member_listener.client]]`, fixed while the node
//! runs) on *every request*, by the capability the service needs. Handlers
//! never see a request that failed here.

use std::{collections::HashMap, sync::Arc};

use tonic::{service::Interceptor, Request, Status};

use crate::tls::TlsIdentity;

/// What a member-listener caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ClientCapability {
    /// `Screening.*`
    Screen,
    /// `Contribution.*`
    Contribute,
    /// `Admin.*`
    Admin,
    /// `Watchlist.*` and `Alerts.*`: the bank's book under continuous
    /// screening, and the alerts it raises.
    Watchlist,
    /// `Dispositions.*`: the bank's outcomes of alerts and hits.
    Disposition,
}

impl ClientCapability {
    pub(crate) fn parse(s: &str) -> Option<ClientCapability> {
        match s {
            "screen" => Some(ClientCapability::Screen),
            "contribute" => Some(ClientCapability::Contribute),
            "admin" => Some(ClientCapability::Admin),
            "watchlist" => Some(ClientCapability::Watchlist),
            "disposition" => Some(ClientCapability::Disposition),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ClientCapability::Screen => "screen",
            ClientCapability::Contribute => "contribute",
            ClientCapability::Admin => "admin",
            ClientCapability::Watchlist => "watchlist",
            ClientCapability::Disposition => "disposition",
        }
    }
}

/// The authorized caller of one request, for handlers and audit.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub name: String,
    pub spki_sha256: Arc<str>,
}

/// What one client certificate (by SPKI hash) is called and may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientGrant {
    pub name: String,
    pub capabilities: Vec<ClientCapability>,
}

/// Who may do what, from the node's config; shared by every interceptor.
#[derive(Clone, Default)]
pub(crate) struct Grants {
    inner: Arc<HashMap<String, ClientGrant>>,
}

impl Grants {
    pub(crate) fn new(grants: HashMap<String, ClientGrant>) -> Grants {
        Grants {
            inner: Arc::new(grants),
        }
    }

    /// Checks one request's caller for `cap`.
    pub(crate) fn authorize(
        &self,
        peer: Option<&TlsIdentity>,
        cap: ClientCapability,
    ) -> Result<Caller, Status> {
        let peer = peer
            .ok_or_else(|| Status::unauthenticated("no client certificate on this connection"))?;
        let grants = &self.inner;
        match grants.get(&*peer.spki_sha256) {
            Some(g) if g.capabilities.contains(&cap) => Ok(Caller {
                name: g.name.clone(),
                spki_sha256: peer.spki_sha256.clone(),
            }),
            Some(g) => Err(Status::permission_denied(format!(
                "client {:?} lacks the `{}` capability",
                g.name,
                cap.as_str()
            ))),
            None => Err(Status::permission_denied(format!(
                "client certificate (spki sha256 {}) is not granted the `{}` capability",
                peer.spki_sha256,
                cap.as_str()
            ))),
        }
    }
}

/// A tonic interceptor that admits a request only if its caller holds `cap`,
/// and attaches the [`Caller`] for the handler.
#[derive(Clone)]
pub(crate) struct Require {
    grants: Grants,
    cap: ClientCapability,
}

impl Require {
    pub(crate) fn new(grants: &Grants, cap: ClientCapability) -> Require {
        Require {
            grants: grants.clone(),
            cap,
        }
    }
}

impl Interceptor for Require {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let caller = self
            .grants
            .authorize(req.extensions().get::<TlsIdentity>(), self.cap)
            .inspect_err(|s| {
                tracing::warn!(
                    capability = self.cap.as_str(),
                    reason = s.message(),
                    "request refused"
                )
            })?;
        tracing::trace!(caller = %caller.name, capability = self.cap.as_str(), "request authorized");
        req.extensions_mut().insert(caller);
        Ok(req)
    }
}

/// The interceptor for services any authenticated caller may use (health,
/// reflection): the handshake already required a certificate from the CA.
#[derive(Clone)]
pub(crate) struct Authenticated;

impl Interceptor for Authenticated {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        if req.extensions().get::<TlsIdentity>().is_none() {
            return Err(Status::unauthenticated(
                "no client certificate on this connection",
            ));
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants() -> Grants {
        let mut m = HashMap::new();
        m.insert(
            "aa".repeat(32),
            ClientGrant {
                name: "screener".into(),
                capabilities: vec![ClientCapability::Screen],
            },
        );
        Grants::new(m)
    }

    fn peer(fp: &str) -> TlsIdentity {
        TlsIdentity {
            spki_sha256: fp.into(),
        }
    }

    #[test]
    fn capability_is_checked_per_call() {
        let g = grants();
        let p = peer(&"aa".repeat(32));
        assert!(g.authorize(Some(&p), ClientCapability::Screen).is_ok());
        let e = g
            .authorize(Some(&p), ClientCapability::Contribute)
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("contribute"));
        let unknown = peer(&"bb".repeat(32));
        assert_eq!(
            g.authorize(Some(&unknown), ClientCapability::Screen)
                .unwrap_err()
                .code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            g.authorize(None, ClientCapability::Screen)
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
    }
}

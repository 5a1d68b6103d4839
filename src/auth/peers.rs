//! Authorization on the peer listener: every request, not once per
//! connection, re-checks the caller's certificate key against the trust
//! list in force, the member's status and the capability the method needs.
//! So neither an open connection nor TLS session resumption lets a member
//! in after a list suspends it. A tower layer, so that the rule table for
//! every method lives in one place ([`requirement`]). Streams that outlive
//! their request (Pull, Watch) are checked again by the same rules at every
//! new list and as the node's clock moves, and cut once refused
//! ([`while_authorized`]). Refusals and cuts are counted per member and
//! reason in the node's [`Counters`].

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tonic::Status;

use crate::{
    counters::{Counters, RequestRefusal, ANONYMOUS, UNLISTED},
    proto::PeerCapability,
    time::format_time,
    tls::TlsIdentity,
    trust::{list::TrustList, state::TrustState},
};

/// The member behind a peer request, for handlers.
#[derive(Clone, Debug)]
pub(crate) struct PeerMember {
    pub id: String,
}

/// The relay's method, whose callers are never named in logs or counters.
const RELAY_FEEDBACK: &str = "/cix.v1.Federation/RelayFeedback";

/// What a method needs: a capability (beyond being an active member), and
/// whether it stays open when the node's list has expired.
pub(crate) fn requirement(path: &str) -> (Option<PeerCapability>, bool) {
    match path {
        "/cix.v1.Federation/GetTrustList" | "/cix.v1.Federation/PublishTrustList" => (None, true),
        // Replication, and prefix queries (a member without `query` is
        // refused here before any routing).
        "/cix.v1.Federation/Pull" | "/cix.v1.Federation/Watch" => {
            (Some(PeerCapability::Replicate), false)
        }
        "/cix.v1.Federation/QueryPrefix" => (Some(PeerCapability::Query), false),
        "/cix.v1.Federation/Feedback" | RELAY_FEEDBACK => (Some(PeerCapability::Feedback), false),
        _ => (None, false),
    }
}

fn capability_name(c: PeerCapability) -> &'static str {
    match c {
        PeerCapability::Contribute => "contribute",
        PeerCapability::Replicate => "replicate",
        PeerCapability::Query => "query",
        PeerCapability::Feedback => "feedback",
        PeerCapability::Unspecified => "unspecified",
    }
}

/// A refused peer request: the member (or [`UNLISTED`]), why, and the
/// answer for the caller.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub member: String,
    pub reason: RequestRefusal,
    pub status: Status,
}

/// Checks one peer request, at the node's time ([`TrustState::clock`]).
pub(crate) fn authorize(
    trust: &TrustState,
    peer: Option<&TlsIdentity>,
    path: &str,
) -> Result<PeerMember, Refusal> {
    // A relay keeps no sender identity: a refused RelayFeedback is counted
    // and logged without its caller.
    let anonymous = path == RELAY_FEEDBACK;
    let shown = |member: &str| if anonymous { ANONYMOUS } else { member }.to_string();
    let refused = |member: &str, reason, status| Refusal {
        member: shown(member),
        reason,
        status,
    };
    let peer = peer.ok_or_else(|| {
        refused(
            UNLISTED,
            RequestRefusal::NoCertificate,
            Status::unauthenticated("no client certificate on this connection"),
        )
    })?;
    let list = trust.current();
    let now = trust.clock().now();
    let Some(member) = list.active_member_by_spki(&peer.spki_sha256, now) else {
        let who = list.member_by_spki(&peer.spki_sha256).map(|m| m.id.clone());
        if anonymous {
            tracing::warn!(method = path, "peer request refused: not an active member");
        } else {
            tracing::warn!(member = who.as_deref().unwrap_or("(not on the list)"), spki_sha256 = %peer.spki_sha256, method = path, "peer request refused: not an active member");
        }
        return Err(refused(
            who.as_deref().unwrap_or(UNLISTED),
            RequestRefusal::NotActiveMember,
            Status::permission_denied(format!(
                "certificate (spki sha256 {}) is not an active member of trust list version {}",
                peer.spki_sha256,
                list.version()
            )),
        ));
    };
    let (cap, open_when_expired) = requirement(path);
    if list.is_expired(now) && !open_when_expired {
        tracing::error!(member = %shown(&member.id), method = path, "peer request refused: this node's trust list has expired");
        return Err(refused(
            &member.id,
            RequestRefusal::ListExpired,
            Status::failed_precondition(format!(
                "this node's trust list (version {}) expired at {}; only GetTrustList and PublishTrustList are served until a newer list arrives",
                list.version(),
                format_time(list.expires_at())
            )),
        ));
    }
    if let Some(cap) = cap {
        if !TrustList::has_capability(member, cap) {
            tracing::warn!(member = %shown(&member.id), capability = capability_name(cap), method = path, "peer request refused: capability missing");
            return Err(refused(
                &member.id,
                RequestRefusal::MissingCapability,
                Status::permission_denied(format!(
                    "member {} lacks the `{}` capability",
                    member.id,
                    capability_name(cap)
                )),
            ));
        }
    }
    Ok(PeerMember {
        id: member.id.clone(),
    })
}

/// A stream served to a peer.
pub(crate) type PeerStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

/// Serves `stream` (a Pull or Watch of method `path`) only while
/// [`authorize`] would still let its request in: checked again at every new
/// trust list and as the node's clock moves
/// ([`TrustState::until_refused`]), so that a member suspended, removed or
/// stripped of the capability, or this node's list expiring, ends the
/// stream at once with PERMISSION_DENIED naming the reason. Each cut is
/// counted per member and reason.
pub(crate) fn while_authorized<T: Send + 'static>(
    trust: Arc<TrustState>,
    counters: Arc<Counters>,
    peer: Option<TlsIdentity>,
    path: &'static str,
    stream: impl futures::Stream<Item = Result<T, Status>> + Send + 'static,
) -> PeerStream<T> {
    use futures::StreamExt;
    let revoked = async move {
        trust
            .until_refused(|t| authorize(t, peer.as_ref(), path).map(|_| ()))
            .await
    };
    let state = Some((Box::pin(stream), Box::pin(revoked)));
    Box::pin(futures::stream::unfold(state, move |state| {
        let counters = counters.clone();
        async move {
            let (mut stream, mut revoked) = state?;
            tokio::select! {
                biased;
                r = &mut revoked => {
                    counters.stream_cut(&r.member, r.reason);
                    tracing::warn!(member = %r.member, reason = r.reason.name(), method = path, "peer stream cut: the member lost the right to it");
                    let status = Status::permission_denied(format!(
                        "{path} ended: {}",
                        r.status.message()
                    ));
                    Some((Err(status), None))
                }
                item = stream.next() => item.map(|i| (i, Some((stream, revoked)))),
            }
        }
    }))
}

/// The tower layer that runs [`authorize`] before any peer service and
/// counts its refusals.
#[derive(Clone)]
pub(crate) struct PeerAuthLayer {
    trust: Arc<TrustState>,
    counters: Arc<Counters>,
}

impl PeerAuthLayer {
    pub(crate) fn new(trust: Arc<TrustState>, counters: Arc<Counters>) -> PeerAuthLayer {
        PeerAuthLayer { trust, counters }
    }
}

impl<S> tower::Layer<S> for PeerAuthLayer {
    type Service = PeerAuth<S>;
    fn layer(&self, inner: S) -> PeerAuth<S> {
        PeerAuth {
            inner,
            trust: self.trust.clone(),
            counters: self.counters.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct PeerAuth<S> {
    inner: S,
    trust: Arc<TrustState>,
    counters: Arc<Counters>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for PeerAuth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        match authorize(
            &self.trust,
            req.extensions().get::<TlsIdentity>(),
            req.uri().path(),
        ) {
            Ok(member) => {
                req.extensions_mut().insert(member);
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.call(req))
            }
            Err(r) => {
                self.counters.request_refused(&r.member, r.reason);
                Box::pin(std::future::ready(Ok(r.status.into_http())))
            }
        }
    }
}

//! The sender's delivery task: for each origin with queued feedback, sends
//! its items in queued order (at most [`super::receive::MAX_ITEMS`] per
//! call) over the federation's peer dialer (pinned mutual TLS): to the
//! origin's endpoint on the trust list in force (`Federation.Feedback`), or
//! in the anonymous mode to the operator node that relays
//! (`Federation.RelayFeedback`), each item naming its origin. An item leaves the queue
//! only once the origin answered for it: accepted, or refused for good
//! (counted). Anything else (the origin down, unknown, its feedback off, a
//! malformed answer) keeps the items and retries that origin after a
//! backoff of 1 s doubling to 5 min; the queue is on disk, so nothing is
//! lost across restarts of either side.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use crate::{
    federation::PeerDialer,
    proto::{self, MemberKind, PeerCapability},
    trust::{list::TrustList, state::TrustState},
};

use super::{queue::Queue, receive::MAX_ITEMS};

/// The first retry's wait.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest wait between retries.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How long the task sleeps with nothing to retry before looking again.
const IDLE: Duration = Duration::from_secs(60);
/// Most characters of an origin's refusal text that reach the log.
const RULE_CHARS: usize = 200;

/// Where a queue's items go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// To each item's origin, under this node's identity.
    Origin,
    /// To the operator that relays anonymous feedback: the one named, or
    /// the first by id on the trust list in force that can.
    Relay(Option<String>),
}

/// Why one attempt at an origin failed (its items stay queued).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliveryError {
    #[error("origin {0} is not an active member with an endpoint on the trust list in force")]
    NoEndpoint(String),
    #[error("no relay for anonymous feedback: {0}")]
    NoRelay(String),
    #[error("connecting to node {origin}")]
    Connect {
        origin: String,
        #[source]
        source: crate::tls::TlsError,
    },
    #[error("node {origin} answered {code:?}: {message}")]
    Status {
        origin: String,
        code: tonic::Code,
        message: String,
    },
    #[error("node {origin} answered {got} results for {sent} items")]
    Answer {
        origin: String,
        got: usize,
        sent: usize,
    },
    #[error("{to} kept {n} items for later: {rule}")]
    Later { to: String, n: usize, rule: String },
    #[error(transparent)]
    Queue(#[from] super::queue::QueueOpenError),
}

struct Backoff {
    wait: Duration,
    next: Instant,
}

/// Runs until `stop` is cancelled.
pub(crate) async fn run(
    queue: Arc<Queue>,
    route: Route,
    node_id: String,
    trust: Arc<TrustState>,
    dialer: PeerDialer,
    stop: CancellationToken,
) {
    let mut backoff: HashMap<String, Backoff> = HashMap::new();
    loop {
        let origins = match queue.origins() {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %crate::telemetry::chain(&e), "reading the feedback queue");
                Vec::new()
            }
        };
        backoff.retain(|o, _| origins.contains(o));
        let now = Instant::now();
        for origin in &origins {
            if backoff.get(origin).is_some_and(|b| b.next > now) {
                continue;
            }
            match deliver(&queue, &route, &node_id, &trust, &dialer, origin).await {
                Ok(()) => {
                    backoff.remove(origin);
                }
                Err(e) => {
                    let b = backoff.entry(origin.clone()).or_insert(Backoff {
                        wait: BACKOFF_MIN / 2,
                        next: now,
                    });
                    b.wait = (b.wait * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                    b.next = Instant::now() + b.wait;
                    tracing::warn!(error = %crate::telemetry::chain(&e), retry_in_secs = b.wait.as_secs(), "feedback not delivered; kept in the queue");
                }
            }
            if stop.is_cancelled() {
                return;
            }
        }
        // Loop again at once while an origin that answered has more.
        let more = origins.iter().any(|o| !backoff.contains_key(o))
            && queue
                .origins()
                .is_ok_and(|now| now.iter().any(|o| !backoff.contains_key(o)));
        if more {
            continue;
        }
        let wait = backoff
            .values()
            .map(|b| b.next.saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(IDLE);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = queue.queued() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The operator node that relays anonymous feedback under `list`.
pub(crate) fn relay_member(
    list: &TrustList,
    named: Option<&str>,
    node_id: &str,
    now: i64,
) -> Result<proto::Member, String> {
    let can = |m: &proto::Member| {
        m.kind == MemberKind::Operator as i32
            && TrustList::is_active(m, now)
            && TrustList::has_capability(m, PeerCapability::Feedback)
            && TrustList::has_capability(m, PeerCapability::Replicate)
            && !m.endpoint.is_empty()
            && m.id != node_id
    };
    match named {
        Some(id) => list
            .member(id)
            .filter(|m| can(m))
            .cloned()
            .ok_or_else(|| {
                format!("[feedback] relay {id} is not an active operator node with the feedback and replicate capabilities and an endpoint on the trust list in force")
            }),
        None => {
            let mut ops: Vec<&proto::Member> = list.body().members.iter().filter(|m| can(m)).collect();
            ops.sort_by(|a, b| a.id.cmp(&b.id));
            ops.first().map(|m| (*m).clone()).ok_or_else(|| {
                "no active operator node on the trust list in force has the feedback and replicate capabilities and an endpoint".to_string()
            })
        }
    }
}

/// One call for `origin`'s oldest items.
async fn deliver(
    queue: &Queue,
    route: &Route,
    node_id: &str,
    trust: &TrustState,
    dialer: &PeerDialer,
    origin: &str,
) -> Result<(), DeliveryError> {
    let items = queue.next(origin, MAX_ITEMS)?;
    if items.is_empty() {
        return Ok(());
    }
    let list = trust.current();
    let now = trust.clock().now();
    let member = match route {
        // A suspended origin is not sent what its analysts could use.
        Route::Origin => list
            .member(origin)
            .filter(|m| !m.endpoint.is_empty() && TrustList::is_active(m, now))
            .cloned()
            .ok_or_else(|| DeliveryError::NoEndpoint(origin.to_string()))?,
        Route::Relay(named) => {
            relay_member(&list, named.as_deref(), node_id, now).map_err(DeliveryError::NoRelay)?
        }
    };
    drop(list);
    let mut client = dialer
        .federation(&member)
        .await
        .map_err(|source| DeliveryError::Connect {
            origin: member.id.clone(),
            source,
        })?;
    let answer = match route {
        Route::Origin => {
            client
                .feedback(proto::FeedbackRequest {
                    items: items.iter().map(|q| q.item.clone()).collect(),
                })
                .await
        }
        Route::Relay(_) => {
            client
                .relay_feedback(proto::RelayFeedbackRequest {
                    items: items
                        .iter()
                        .map(|q| proto::RelayedFeedback {
                            origin: origin.to_string(),
                            item: Some(q.item.clone()),
                        })
                        .collect(),
                })
                .await
        }
    };
    let answer = answer
        .map_err(|s| DeliveryError::Status {
            origin: member.id.clone(),
            code: s.code(),
            message: s.message().chars().take(RULE_CHARS).collect(),
        })?
        .into_inner();
    if answer.results.len() != items.len() {
        return Err(DeliveryError::Answer {
            origin: member.id.clone(),
            got: answer.results.len(),
            sent: items.len(),
        });
    }
    let (mut delivered, mut refused) = (0, 0);
    let mut done = Vec::with_capacity(items.len());
    let mut later: Option<(usize, String)> = None;
    for (q, r) in items.into_iter().zip(&answer.results) {
        if r.accepted {
            delivered += 1;
        } else if r.retry_later {
            // Kept: the receiver cannot decide yet.
            let rule: String = r.rule.chars().take(RULE_CHARS).collect();
            let l = later.get_or_insert((0, rule));
            l.0 += 1;
            continue;
        } else {
            refused += 1;
            let field: String = r.field.chars().take(RULE_CHARS).collect();
            let rule: String = r.rule.chars().take(RULE_CHARS).collect();
            tracing::warn!(%origin, to = %member.id, %field, %rule, "feedback item refused; dropped");
        }
        done.push(q.key);
    }
    queue.remove(&done, delivered, refused)?;
    tracing::info!(%origin, to = %member.id, delivered, refused, "feedback delivered");
    // Kept items alone back off; with any decided, the next call goes at
    // once (it starts from the oldest again, kept ones first).
    if let Some((n, rule)) = later.filter(|_| delivered + refused == 0) {
        return Err(DeliveryError::Later {
            to: member.id.clone(),
            n,
            rule,
        });
    }
    Ok(())
}

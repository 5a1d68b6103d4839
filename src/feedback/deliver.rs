//! The sender's delivery task: for each origin with queued feedback, sends
//! its items in queued order (at most [`super::receive::MAX_ITEMS`] per
//! call) to the origin's endpoint on the trust list in force, over the
//! federation's peer dialer (pinned mutual TLS). An item leaves the queue
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

use crate::{federation::PeerDialer, proto, trust::state::TrustState};

use super::{queue::Queue, receive::MAX_ITEMS};

/// The first retry's wait.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest wait between retries.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How long the task sleeps with nothing to retry before looking again.
const IDLE: Duration = Duration::from_secs(60);
/// Most characters of an origin's refusal text that reach the log.
const RULE_CHARS: usize = 200;

/// Why one attempt at an origin failed (its items stay queued).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliveryError {
    #[error("origin {0} has no endpoint on the trust list in force")]
    NoEndpoint(String),
    #[error("connecting to origin {origin}")]
    Connect {
        origin: String,
        #[source]
        source: crate::tls::TlsError,
    },
    #[error("origin {origin} answered {code:?}: {message}")]
    Status {
        origin: String,
        code: tonic::Code,
        message: String,
    },
    #[error("origin {origin} answered {got} results for {sent} items")]
    Answer {
        origin: String,
        got: usize,
        sent: usize,
    },
    #[error("the feedback queue")]
    Queue(#[from] super::queue::QueueOpenError),
}

struct Backoff {
    wait: Duration,
    next: Instant,
}

/// Runs until `stop` is cancelled.
pub(crate) async fn run(
    queue: Arc<Queue>,
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
            match deliver(&queue, &trust, &dialer, origin).await {
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

/// One call to `origin` with its oldest items.
async fn deliver(
    queue: &Queue,
    trust: &TrustState,
    dialer: &PeerDialer,
    origin: &str,
) -> Result<(), DeliveryError> {
    let items = queue.next(origin, MAX_ITEMS)?;
    if items.is_empty() {
        return Ok(());
    }
    let member = trust
        .current()
        .member(origin)
        .filter(|m| !m.endpoint.is_empty())
        .cloned()
        .ok_or_else(|| DeliveryError::NoEndpoint(origin.to_string()))?;
    let mut client = dialer
        .federation(&member)
        .await
        .map_err(|source| DeliveryError::Connect {
            origin: origin.to_string(),
            source,
        })?;
    let req = proto::FeedbackRequest {
        items: items.iter().map(|q| q.item.clone()).collect(),
    };
    let answer = client
        .feedback(req)
        .await
        .map_err(|s| DeliveryError::Status {
            origin: origin.to_string(),
            code: s.code(),
            message: s.message().chars().take(RULE_CHARS).collect(),
        })?
        .into_inner();
    if answer.results.len() != items.len() {
        return Err(DeliveryError::Answer {
            origin: origin.to_string(),
            got: answer.results.len(),
            sent: items.len(),
        });
    }
    let (mut delivered, mut refused) = (0, 0);
    for r in &answer.results {
        if r.accepted {
            delivered += 1;
        } else {
            refused += 1;
            let field: String = r.field.chars().take(RULE_CHARS).collect();
            let rule: String = r.rule.chars().take(RULE_CHARS).collect();
            tracing::warn!(%origin, %field, %rule, "feedback item refused by its origin; dropped");
        }
    }
    let keys: Vec<_> = items.into_iter().map(|q| q.key).collect();
    queue.remove(&keys, delivered, refused)?;
    tracing::info!(%origin, delivered, refused, "feedback delivered");
    Ok(())
}

//! What the node's gRPC health (`grpc.health.v1`) answers, per service, on
//! both listeners: `cix.v1.Screening`, and with it the overall status (the
//! empty service name), serves while a key epoch is valid on the node's
//! clock (without one nothing can match); `cix.v1.Federation` serves while
//! the trust list in force has not expired (replication stops then, as
//! README says; screening goes on). Looked at every second; everything
//! turns NOT_SERVING as the node stops. The index is rebuilt before the
//! listeners open, so a node that answers has its index.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use tonic_health::{server::HealthReporter, ServingStatus};

use crate::{epochs::KeyRing, node::NodeState, trust::state::TrustState};

/// The service names, as health clients ask for them.
pub(crate) const SCREENING: &str = "cix.v1.Screening";
pub(crate) const FEDERATION: &str = "cix.v1.Federation";
/// The overall status: the empty name.
pub(crate) const OVERALL: &str = "";

/// How often the statuses are looked at.
const EVERY: Duration = Duration::from_secs(1);

/// What the statuses are at `now`: Screening (and overall), and Federation
/// when the node federates.
pub(crate) fn statuses(
    now: i64,
    keys: &KeyRing,
    trust: Option<&TrustState>,
) -> (bool, Option<bool>) {
    let screening = keys.valid_at(now).next().is_some();
    let federation = trust.map(|t| !t.current().is_expired(now));
    (screening, federation)
}

fn status(serving: bool) -> ServingStatus {
    if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

/// Sets the statuses: Screening and overall, and Federation when known.
pub(crate) async fn set(reporter: &HealthReporter, screening: bool, federation: Option<bool>) {
    for name in [SCREENING, OVERALL] {
        reporter.set_service_status(name, status(screening)).await;
    }
    if let Some(f) = federation {
        reporter.set_service_status(FEDERATION, status(f)).await;
    }
}

/// Keeps the statuses current until `stop`, then sets them not serving.
pub(crate) async fn run(
    reporter: HealthReporter,
    state: Arc<NodeState>,
    trust: Option<Arc<TrustState>>,
    stop: CancellationToken,
) {
    let mut last = statuses(state.clock.now(), &state.keys.get(), trust.as_deref());
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(EVERY) => {}
        }
        let now = statuses(state.clock.now(), &state.keys.get(), trust.as_deref());
        if now != last {
            let (screening, federation) = now;
            tracing::info!(screening, ?federation, "health changed");
            set(&reporter, screening, federation).await;
            last = now;
        }
    }
    not_serving(&reporter, trust.is_some()).await;
}

/// Every service not serving, as the node stops.
pub(crate) async fn not_serving(reporter: &HealthReporter, federated: bool) {
    set(reporter, false, federated.then_some(false)).await;
}

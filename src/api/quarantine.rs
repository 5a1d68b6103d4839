//! `cix.v1.Quarantine`: the quarantines flood control holds
//! ([`crate::flood`]) and their lift. A lift is written durably, then the
//! alert engine re-scans the index, so the alerts the quarantine paused are
//! raised.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert;
use crate::{
    node::NodeState,
    outcome::IndicatorRef,
    proto::{self, quarantine_server},
    trust::list::check_member_id,
};

pub(crate) struct QuarantineService {
    node: Arc<NodeState>,
}

impl QuarantineService {
    pub(crate) fn new(node: Arc<NodeState>) -> QuarantineService {
        QuarantineService { node }
    }
}

/// The indicator a lift names, checked field by field.
fn indicator(r: &proto::LiftQuarantineRequest) -> Result<IndicatorRef, Status> {
    check_member_id(&r.origin)
        .map_err(|rule| Status::invalid_argument(format!("origin: {rule}")))?;
    if r.seq == 0 {
        return Err(Status::invalid_argument(
            "seq: must be the sequence number of an add entry (1 or more)",
        ));
    }
    Ok(IndicatorRef {
        origin: r.origin.as_str().into(),
        seq: r.seq,
    })
}

#[tonic::async_trait]
impl quarantine_server::Quarantine for QuarantineService {
    async fn list(
        &self,
        _req: Request<proto::ListQuarantinesRequest>,
    ) -> Result<Response<proto::ListQuarantinesResponse>, Status> {
        let now = self.node.clock.now();
        Ok(Response::new(proto::ListQuarantinesResponse {
            quarantined: self
                .node
                .flood
                .list(now)
                .iter()
                .map(convert::quarantined)
                .collect(),
        }))
    }

    async fn lift(
        &self,
        req: Request<proto::LiftQuarantineRequest>,
    ) -> Result<Response<proto::LiftQuarantineResponse>, Status> {
        let about = indicator(req.get_ref())?;
        let (flood, now) = (self.node.flood.clone(), self.node.clock.now());
        tokio::task::spawn_blocking(move || flood.lift(&about, now))
            .await
            .map_err(|_| Status::internal("the lift's thread failed"))??;
        self.node.monitor.rescan();
        Ok(Response::new(proto::LiftQuarantineResponse {}))
    }
}

//! `cix.v1.Figures`: the coalition's outcome figures for a period
//! ([`crate::report::outcomes`]), gathered by the node on a blocking thread
//! (the index and the alert log are read whole).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert;
use crate::{
    node::NodeState,
    outcome::parse_day,
    proto::{self, figures_server},
    report::outcomes::Period,
};

pub(crate) struct FiguresService {
    node: Arc<NodeState>,
}

impl FiguresService {
    pub(crate) fn new(node: Arc<NodeState>) -> FiguresService {
        FiguresService { node }
    }
}

fn day(field: &str, value: &str) -> Result<i64, Status> {
    parse_day(value).map_err(|rule| Status::invalid_argument(format!("{field}: {rule}")))
}

#[tonic::async_trait]
impl figures_server::Figures for FiguresService {
    async fn outcomes(
        &self,
        req: Request<proto::OutcomesRequest>,
    ) -> Result<Response<proto::OutcomesReport>, Status> {
        let req = req.into_inner();
        let period = Period::new(day("from", &req.from)?, day("to", &req.to)?)
            .map_err(|e| Status::invalid_argument(format!("from..to: {e}")))?;
        let node = self.node.clone();
        let figures = tokio::task::spawn_blocking(move || node.outcome_figures(period))
            .await
            .map_err(|_| Status::internal("the figures' thread failed"))??;
        Ok(Response::new(convert::figures(&figures)))
    }
}

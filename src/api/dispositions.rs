//! `cix.v1.Dispositions` (client capability `disposition`): Record and List;
//! `cix.v1.Reports` (capability `admin`): CaseReport. Handlers check the
//! request's words and target, call [`crate::alerts::casework`] and map
//! the outcome; nothing is recorded for a refused request.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::{
    alerts::casework::Casework,
    dispositions::{DispositionError, Filter, Outcome, Target},
    node::NodeState,
    outcome::Disposition,
    proto::{self, dispositions_server, reports_server},
    trust::list::check_member_id,
};

/// List's default and largest page.
const LIST_DEFAULT: u32 = 100;
const LIST_MAX: u32 = 1000;

pub(crate) struct DispositionsService {
    state: Arc<NodeState>,
}

impl DispositionsService {
    pub(crate) fn new(state: Arc<NodeState>) -> DispositionsService {
        DispositionsService { state }
    }
}

pub(crate) struct ReportsService {
    state: Arc<NodeState>,
}

impl ReportsService {
    pub(crate) fn new(state: Arc<NodeState>) -> ReportsService {
        ReportsService { state }
    }
}

fn casework(s: &NodeState) -> Casework<'_> {
    Casework {
        log: &s.alert_log,
        index: &s.index,
        watchlist: s.watchlist.as_deref(),
        dispositions: &s.dispositions,
        feedback: &*s.feedback,
        trust: s.trust.as_deref(),
        node_id: &s.node_id,
    }
}

/// The request's target, checked (a hit's origin under the member-id rule).
fn target(p: Option<&proto::DispositionTarget>) -> Result<Target, Status> {
    if let Some(proto::disposition_target::Target::Hit(h)) = p.and_then(|t| t.target.as_ref()) {
        check_member_id(&h.origin)
            .map_err(|rule| Status::invalid_argument(format!("target.hit.origin: {rule}")))?;
    }
    Ok(Target::from_proto(p)?)
}

#[tonic::async_trait]
impl dispositions_server::Dispositions for DispositionsService {
    async fn record(
        &self,
        req: Request<proto::RecordDispositionRequest>,
    ) -> Result<Response<proto::DispositionRecord>, Status> {
        let req = req.into_inner();
        let outcome = Outcome::parse(&req.disposition, &req.actions, &req.case_system_ref)?;
        let target = target(req.target.as_ref())?;
        let state = self.state.clone();
        let now = state.clock.now();
        let rec =
            tokio::task::spawn_blocking(move || casework(&state).record(target, outcome, now))
                .await
                .map_err(|_| Status::internal("the disposition was not recorded"))??;
        Ok(Response::new(rec.to_proto(true)))
    }

    async fn list(
        &self,
        req: Request<proto::ListDispositionsRequest>,
    ) -> Result<Response<proto::ListDispositionsResponse>, Status> {
        let req = req.into_inner();
        let limit = super::page_limit(req.limit, LIST_DEFAULT, LIST_MAX)?;
        let disposition = match req.disposition.as_str() {
            "" => None,
            d => Some(Disposition::parse(d).ok_or_else(|| {
                Status::invalid_argument(
                    "disposition: must be empty or one of under_review, confirmed, false_positive",
                )
            })?),
        };
        let hit = match (req.hit_origin.as_str(), req.hit_seq) {
            ("", 0) => None,
            ("", _) | (_, 0) => {
                return Err(Status::invalid_argument(
                    "hit_origin, hit_seq: give both or neither",
                ))
            }
            (o, s) => Some((o.to_string(), s)),
        };
        let filter = Filter {
            alert: (req.alert != 0).then_some(req.alert),
            hit,
            disposition,
            in_force_only: req.in_force_only,
        };
        let d = &self.state.dispositions;
        let records = d.list(req.after, limit as usize, &filter)?;
        Ok(Response::new(proto::ListDispositionsResponse {
            records: records.iter().map(|(r, f)| r.to_proto(*f)).collect(),
            newest: d.newest()?,
        }))
    }
}

#[tonic::async_trait]
impl reports_server::Reports for ReportsService {
    async fn case_report(
        &self,
        req: Request<proto::CaseReportRequest>,
    ) -> Result<Response<proto::CaseReportResponse>, Status> {
        let target = target(req.into_inner().target.as_ref())?;
        let state = self.state.clone();
        let now = state.clock.now();
        let json = tokio::task::spawn_blocking(move || casework(&state).case_package(&target, now))
            .await
            .map_err(|_| Status::internal("the case package was not made"))??;
        Ok(Response::new(proto::CaseReportResponse {
            json: json.to_string(),
        }))
    }
}

impl From<DispositionError> for Status {
    fn from(e: DispositionError) -> Status {
        match e {
            DispositionError::Invalid { .. } => Status::invalid_argument(e.to_string()),
            DispositionError::NotFound { .. } => Status::not_found(e.to_string()),
            DispositionError::Db(_) | DispositionError::Corrupt(_) => {
                tracing::error!(error = %crate::telemetry::chain(&e), "dispositions failed");
                Status::internal(
                    "the node could not read or write its dispositions; nothing was recorded",
                )
            }
        }
    }
}

impl From<crate::alerts::casework::CaseworkError> for Status {
    fn from(e: crate::alerts::casework::CaseworkError) -> Status {
        use crate::alerts::casework::CaseworkError as E;
        match e {
            E::Disposition(e) => e.into(),
            E::AlertLog(e) => e.into(),
            E::Watchlist(e) => e.into(),
            E::Feedback(e) => Status::unavailable(format!("{e}; nothing was recorded")),
        }
    }
}

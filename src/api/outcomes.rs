//! `cix.v1.Outcomes` on the member listener (client capability
//! `contribute`): what this node, as an origin, heard back about its own
//! indicators ([`crate::feedback`]), per indicator and per case reference.
//! Thin: checks the filter, asks the domain on a blocking thread, converts.

use std::{collections::BTreeMap, sync::Arc};

use tonic::{Request, Response, Status};

use crate::{
    batch::{is_label, LABEL_RULE},
    feedback::{record::IndicatorOutcomes, OwnOutcome},
    node::NodeState,
    outcome::day_string,
    proto::{self, outcomes_server},
};

pub(crate) struct OutcomesService {
    node: Arc<NodeState>,
}

impl OutcomesService {
    pub(crate) fn new(node: Arc<NodeState>) -> OutcomesService {
        OutcomesService { node }
    }
}

fn counts(o: &IndicatorOutcomes) -> proto::OutcomeCounts {
    proto::OutcomeCounts {
        confirmations: o.confirmations,
        false_positives: o.false_positives,
        blocked: o.blocked,
        closed: o.closed,
        floods: o.floods,
        false_positive_senders: o.false_positive_senders,
        flagged: u64::from(o.flagged),
    }
}

fn add(to: &mut proto::OutcomeCounts, c: &proto::OutcomeCounts) {
    to.confirmations += c.confirmations;
    to.false_positives += c.false_positives;
    to.blocked += c.blocked;
    to.closed += c.closed;
    to.floods += c.floods;
    to.false_positive_senders += c.false_positive_senders;
    to.flagged += c.flagged;
}

fn response(own: Vec<OwnOutcome>) -> proto::ListOutcomesResponse {
    let mut cases: BTreeMap<String, proto::CaseOutcome> = BTreeMap::new();
    let indicators = own
        .into_iter()
        .map(|o| {
            let c = counts(&o.outcomes);
            let case = cases
                .entry(o.case_ref.clone())
                .or_insert_with(|| proto::CaseOutcome {
                    case_ref: o.case_ref.clone(),
                    indicators: 0,
                    counts: Some(proto::OutcomeCounts::default()),
                });
            case.indicators += 1;
            add(case.counts.get_or_insert_with(Default::default), &c);
            proto::IndicatorOutcome {
                seq: o.outcomes.seq,
                case_ref: o.case_ref,
                counts: Some(c),
                first_date: day_string(o.outcomes.first_day),
                last_date: day_string(o.outcomes.last_day),
            }
        })
        .collect();
    proto::ListOutcomesResponse {
        indicators,
        cases: cases.into_values().collect(),
    }
}

#[tonic::async_trait]
impl outcomes_server::Outcomes for OutcomesService {
    async fn list(
        &self,
        req: Request<proto::ListOutcomesRequest>,
    ) -> Result<Response<proto::ListOutcomesResponse>, Status> {
        let case_ref = req.into_inner().case_ref;
        if !case_ref.is_empty() && !is_label(&case_ref) {
            return Err(Status::invalid_argument(format!("case_ref: {LABEL_RULE}")));
        }
        let node = self.node.clone();
        let own = tokio::task::spawn_blocking(move || {
            let filter = (!case_ref.is_empty()).then_some(case_ref.as_str());
            node.feedback_state
                .own_outcomes(&node.store, &node.node_id, filter)
        })
        .await
        .map_err(|_| Status::internal("the node could not list outcomes"))?
        .map_err(|e| {
            tracing::error!(error = %crate::telemetry::chain(&e), "listing outcomes");
            Status::unavailable("the node could not read its feedback record")
        })?;
        Ok(Response::new(response(own)))
    }
}

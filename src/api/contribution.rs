//! `cix.v1.Contribution`: Contribute, Retract, Extend, List, Rekey.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{check_batch, convert};
use crate::{
    auth::clients::Caller,
    contribution::{Contributions, Selector},
    proto::{self, contribution_server},
    time::Clock,
    token::Token,
};

pub(crate) struct ContributionService {
    domain: Arc<Contributions>,
    max_items: usize,
    /// The node's clock: creation times, the epoch in force, expiry.
    clock: Clock,
}

impl ContributionService {
    pub(crate) fn new(
        domain: Arc<Contributions>,
        max_items: usize,
        clock: Clock,
    ) -> ContributionService {
        ContributionService {
            domain,
            max_items,
            clock,
        }
    }
}

fn caller<T>(req: &Request<T>) -> String {
    req.extensions()
        .get::<Caller>()
        .map(|c| c.name.clone())
        .unwrap_or_default()
}

#[tonic::async_trait]
impl contribution_server::Contribution for ContributionService {
    async fn contribute(
        &self,
        req: Request<proto::ContributeRequest>,
    ) -> Result<Response<proto::ContributeResponse>, Status> {
        let who = caller(&req);
        let r = req.get_ref();
        check_batch("items", r.items.len(), self.max_items)?;
        let tier =
            convert::tier(r.tier).ok_or_else(|| Status::invalid_argument("tier: unknown value"))?;
        let items = r.items.iter().map(convert::contribution_item).collect();
        let valid_until = r.valid_until.as_ref().map(convert::secs);
        let w = self
            .domain
            .contribute(items, &r.case_ref, tier, valid_until, self.clock.now())
            .await?;
        tracing::info!(caller = %who, items = r.items.len(), first_seq = w.first_seq, last_seq = w.last_seq, "contribute");
        Ok(Response::new(proto::ContributeResponse {
            results: w.results.iter().map(convert::item_result).collect(),
            first_seq: w.first_seq,
            last_seq: w.last_seq,
        }))
    }

    async fn rekey(
        &self,
        req: Request<proto::RekeyRequest>,
    ) -> Result<Response<proto::RekeyResponse>, Status> {
        let who = caller(&req);
        let r = req.get_ref();
        check_batch("identifiers", r.identifiers.len(), self.max_items)?;
        let items = r.identifiers.iter().map(convert::identifier).collect();
        let c = self.domain.rekey(items, self.clock.now()).await?;
        tracing::info!(caller = %who, items = r.identifiers.len(), rekeyed = c.rekeyed, "rekey");
        Ok(Response::new(proto::RekeyResponse {
            rekeyed: c.rekeyed,
            current: c.current,
            not_held: c.not_held,
            invalid: c.invalid,
            epoch: c.epoch,
        }))
    }

    async fn retract(
        &self,
        req: Request<proto::RetractRequest>,
    ) -> Result<Response<proto::RetractResponse>, Status> {
        let who = caller(&req);
        let r = req.get_ref();
        let selector = match (
            r.tokens.is_empty(),
            r.identifiers.is_empty(),
            r.case_ref.is_empty(),
        ) {
            (false, true, true) => {
                check_batch("tokens", r.tokens.len(), self.max_items)?;
                Selector::Items(r.tokens.iter().map(convert::token_item).collect())
            }
            (true, false, true) => {
                check_batch("identifiers", r.identifiers.len(), self.max_items)?;
                Selector::Items(r.identifiers.iter().map(convert::identifier).collect())
            }
            (true, true, false) => Selector::Case(&r.case_ref),
            _ => {
                return Err(Status::invalid_argument(
                    "selector: give exactly one of tokens, identifiers or case_ref",
                ))
            }
        };
        let w = self
            .domain
            .retract(selector, &r.reason, self.clock.now())
            .await?;
        let retracted = if w.last_seq == 0 {
            0
        } else {
            w.last_seq - w.first_seq + 1
        };
        tracing::info!(caller = %who, retracted, "retract");
        Ok(Response::new(proto::RetractResponse {
            results: w.results.iter().map(convert::item_result).collect(),
            retracted,
        }))
    }

    async fn extend(
        &self,
        req: Request<proto::ExtendRequest>,
    ) -> Result<Response<proto::ExtendResponse>, Status> {
        let who = caller(&req);
        let r = req.get_ref();
        let until = r
            .valid_until
            .as_ref()
            .map(convert::secs)
            .ok_or_else(|| Status::invalid_argument("valid_until: required"))?;
        let selector = match (r.tokens.is_empty(), r.case_ref.is_empty()) {
            (false, true) => {
                check_batch("tokens", r.tokens.len(), self.max_items)?;
                Selector::Items(r.tokens.iter().map(convert::token_item).collect())
            }
            (true, false) => Selector::Case(&r.case_ref),
            _ => {
                return Err(Status::invalid_argument(
                    "selector: give exactly one of tokens or case_ref",
                ))
            }
        };
        let w = self
            .domain
            .extend(selector, until, self.clock.now())
            .await?;
        let extended = if w.last_seq == 0 {
            0
        } else {
            w.last_seq - w.first_seq + 1
        };
        tracing::info!(caller = %who, extended, "extend");
        Ok(Response::new(proto::ExtendResponse {
            results: w.results.iter().map(convert::item_result).collect(),
            extended,
        }))
    }

    async fn list(
        &self,
        req: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListResponse>, Status> {
        let r = req.get_ref();
        let size = match r.page_size {
            0 => 100,
            n @ 1..=1000 => n as usize,
            _ => return Err(Status::invalid_argument("page_size: must be 0 to 1000")),
        };
        let after = if r.page_token.is_empty() {
            None
        } else {
            Some(Token::from_hex(&r.page_token).map_err(|_| {
                Status::invalid_argument("page_token: not a token from a previous page")
            })?)
        };
        let page = self.domain.list(after, size, self.clock.now());
        let next = if page.len() == size {
            page.last().map(|i| i.token.to_hex()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(proto::ListResponse {
            indicators: page.iter().map(convert::indicator).collect(),
            next_page_token: next,
        }))
    }
}

//! `cix.v1.Screening`: Match, MatchStream, MatchTokens, and MatchRemote
//! (screening through a peer's node by prefix queries,
//! [`crate::federation::ask_prefix`]). Every request passes the member
//! listener's optional per-client limits: a unary call once, a stream
//! (`MatchStream`, `MatchTokens`) once per message, so that one stream
//! takes no more than as many calls would. `Match` and `MatchStream` read
//! their requests as [`MatchRequestView`]s ([`super::wire`]). Every hit
//! this node answers (not MatchRemote's, which a peer answered) is counted
//! by flood control ([`crate::flood`]) and marked if its indicator is
//! quarantined.

use std::{pin::Pin, sync::Arc};

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{
    check_batch, convert,
    wire::{screening_server, MatchRequestView},
};
use crate::{
    auth::clients::Caller,
    federation::ask_prefix::{Remote, RemoteError},
    flood::Flood,
    proto,
    ratelimit::CallerLimits,
    screening::{subject, Engine, Outcome},
    time::Clock,
    token::Token,
};

pub(crate) struct ScreeningService {
    engine: Engine,
    max_items: usize,
    limits: Arc<CallerLimits>,
    /// Present on a federated node.
    remote: Option<Arc<Remote>>,
    /// The node's clock: which epochs are valid, what has expired, limits.
    clock: Clock,
    /// Counts this node's hits; marks those of quarantined indicators.
    flood: Arc<Flood>,
}

impl ScreeningService {
    pub(crate) fn new(
        engine: Engine,
        max_items: usize,
        limits: Arc<CallerLimits>,
        remote: Option<Arc<Remote>>,
        clock: Clock,
        flood: Arc<Flood>,
    ) -> ScreeningService {
        ScreeningService {
            engine,
            max_items,
            limits,
            remote,
            clock,
            flood,
        }
    }

    /// The member listener's optional per-client limit on match requests,
    /// taken for one unary call.
    fn admit<T>(&self, req: &Request<T>) -> Result<(), Status> {
        self.admit_each(req)()
    }

    /// The same limit for the messages of a stream: the returned closure
    /// takes one request of the caller of `req` each time it is called.
    fn admit_each<T>(
        &self,
        req: &Request<T>,
    ) -> impl FnMut() -> Result<(), Status> + Send + 'static {
        let who = req
            .extensions()
            .get::<Caller>()
            .map(|c| c.spki_sha256.to_string())
            .unwrap_or_default();
        let (limits, clock) = (self.limits.clone(), self.clock.clone());
        move || {
            limits
                .check(&who, clock.now_f64())
                .map_err(super::exhausted)
        }
    }
}

/// The answer to outcomes this node found: each hit counted by flood
/// control and marked if its indicator is quarantined. A miss never
/// reaches flood control.
fn answer(flood: &Flood, outcomes: &[Outcome], now: i64) -> proto::MatchResponse {
    let mut r = convert::match_response(outcomes);
    for (o, res) in outcomes.iter().zip(&mut r.results) {
        if let Outcome::Match(hits) = o {
            for (i, h) in hits.iter().zip(&mut res.hits) {
                h.quarantined = flood.hit(subject(i), now);
            }
        }
    }
    r
}

fn match_identifiers(
    engine: &Engine,
    flood: &Flood,
    max: usize,
    req: &MatchRequestView,
    now: i64,
) -> Result<proto::MatchResponse, Status> {
    check_batch("identifiers", req.identifiers.len(), max)?;
    Ok(answer(
        flood,
        &engine.match_identifiers(req.items()?, now),
        now,
    ))
}

fn match_tokens(
    engine: &Engine,
    flood: &Flood,
    max: usize,
    req: &proto::MatchTokensRequest,
    now: i64,
) -> Result<proto::MatchResponse, Status> {
    if req.tokens.len() % 32 != 0 {
        return Err(Status::invalid_argument(
            "tokens: must be concatenated 32-byte tokens (length a multiple of 32)",
        ));
    }
    check_batch("tokens", req.tokens.len() / 32, max)?;
    let tokens: Vec<Token> = req
        .tokens
        .chunks_exact(32)
        .map(|c| Token(c.try_into().expect("32-byte chunk")))
        .collect();
    Ok(answer(flood, &engine.match_tokens(&tokens, now), now))
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<proto::MatchResponse, Status>> + Send>>;

/// Messages of one stream answered at once, on the blocking pool: a stream
/// uses every core, and answers still leave in request order.
const IN_FLIGHT: usize = 4;

/// Answers each message of an inbound stream in order; the first refused
/// message ends the stream with its status. Each message first passes
/// `admit` (the caller's limit), in arrival order; after a refusal no
/// further message is admitted or counted. Up to [`IN_FLIGHT`] messages
/// are screened at the same time on the blocking pool (screening is
/// read-only, so a message screened after a refused one changes nothing).
fn answer_each<T, A, F>(inbound: Streaming<T>, mut admit: A, f: F) -> ResponseStream
where
    T: Send + 'static,
    A: FnMut() -> Result<(), Status> + Send + 'static,
    F: Fn(&T) -> Result<proto::MatchResponse, Status> + Send + Sync + 'static,
{
    let f = Arc::new(f);
    let mut failed = false;
    let mut refused = false;
    Box::pin(
        inbound
            .map(move |m| {
                let f = f.clone();
                let admitted = match &m {
                    Ok(_) if refused => {
                        Err(Status::resource_exhausted("an earlier message was refused"))
                    }
                    Ok(_) => admit().inspect_err(|_| refused = true),
                    // Refused for itself below, taking nothing.
                    Err(_) => Ok(()),
                };
                async move {
                    admitted?;
                    let m = m?;
                    tokio::task::spawn_blocking(move || f(&m))
                        .await
                        .unwrap_or_else(|_| Err(Status::internal("screening a message failed")))
                }
            })
            .buffered(IN_FLIGHT)
            .take_while(move |r| {
                let go = !failed;
                failed |= r.is_err();
                futures::future::ready(go)
            }),
    )
}

#[tonic::async_trait]
impl screening_server::Screening for ScreeningService {
    async fn r#match(
        &self,
        req: Request<MatchRequestView>,
    ) -> Result<Response<proto::MatchResponse>, Status> {
        self.admit(&req)?;
        match_identifiers(
            &self.engine,
            &self.flood,
            self.max_items,
            req.get_ref(),
            self.clock.now(),
        )
        .map(Response::new)
    }

    type MatchStreamStream = ResponseStream;

    async fn match_stream(
        &self,
        req: Request<Streaming<MatchRequestView>>,
    ) -> Result<Response<Self::MatchStreamStream>, Status> {
        let admit = self.admit_each(&req);
        let (engine, max, clock) = (self.engine.clone(), self.max_items, self.clock.clone());
        let flood = self.flood.clone();
        Ok(Response::new(answer_each(
            req.into_inner(),
            admit,
            move |m| match_identifiers(&engine, &flood, max, m, clock.now()),
        )))
    }

    type MatchTokensStream = ResponseStream;

    async fn match_tokens(
        &self,
        req: Request<Streaming<proto::MatchTokensRequest>>,
    ) -> Result<Response<Self::MatchTokensStream>, Status> {
        let admit = self.admit_each(&req);
        let (engine, max, clock) = (self.engine.clone(), self.max_items, self.clock.clone());
        let flood = self.flood.clone();
        Ok(Response::new(answer_each(
            req.into_inner(),
            admit,
            move |m| match_tokens(&engine, &flood, max, m, clock.now()),
        )))
    }

    async fn match_remote(
        &self,
        req: Request<proto::MatchRemoteRequest>,
    ) -> Result<Response<proto::MatchResponse>, Status> {
        self.admit(&req)?;
        let r = req.get_ref();
        check_batch("identifiers", r.identifiers.len(), self.max_items)?;
        let remote = self.remote.as_ref().ok_or(RemoteError::NotFederated)?;
        let items = r
            .identifiers
            .iter()
            .map(|i| (convert::kind(i.kind), i.value.as_str()));
        let outcomes = remote.screen(&self.engine, &r.peer, items).await?;
        Ok(Response::new(convert::match_response(&outcomes)))
    }
}

//! `cix.v1.Alerts`: Subscribe (the live stream of the alert log from a
//! cursor, [`crate::alerts::log::AlertLog::follow`]) and List (one page).
//! Client capability `watchlist`. The stream reads the log in pages and
//! holds at most one page for a slow caller; it ends when the node stops.

use std::{pin::Pin, sync::Arc};

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::convert;
use crate::{
    alerts::log::AlertLog,
    proto::{self, alerts_server},
};

/// Events per page read for a subscriber.
const PAGE: usize = 256;
/// List's default and largest page.
const LIST_DEFAULT: u32 = 100;
const LIST_MAX: u32 = 1000;

pub(crate) struct AlertsService {
    log: Arc<AlertLog>,
    stop: CancellationToken,
}

impl AlertsService {
    /// Serves `log`; streams end on `stop`.
    pub(crate) fn new(log: Arc<AlertLog>, stop: CancellationToken) -> AlertsService {
        AlertsService { log, stop }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::AlertEvent, Status>> + Send>>;

#[tonic::async_trait]
impl alerts_server::Alerts for AlertsService {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        req: Request<proto::SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let after = req.into_inner().after;
        let events = self.log.follow(after, PAGE, self.stop.child_token())?;
        let stream = ReceiverStream::new(events)
            .map(|r| r.map(|e| convert::alert_event(&e)).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list(
        &self,
        req: Request<proto::ListAlertsRequest>,
    ) -> Result<Response<proto::ListAlertsResponse>, Status> {
        let req = req.into_inner();
        let limit = super::page_limit(req.limit, LIST_DEFAULT, LIST_MAX)?;
        let events = self.log.read(req.after, limit as usize)?;
        Ok(Response::new(proto::ListAlertsResponse {
            events: events.iter().map(convert::alert_event).collect(),
            oldest: self.log.oldest(),
            newest: self.log.newest(),
        }))
    }
}

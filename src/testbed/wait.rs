//! Bounded waits on a running node over its member API: until it has
//! confirmed its own log's head with a peer (so that it takes
//! contributions), until a value has a given match status (replication
//! arrived), until it holds a trust-list version, until its alert engine
//! is idle. Each polls and gives up
//! with a typed error that names no identifier.

use std::time::{Duration, Instant};

use super::TestbedError;
use crate::{api::convert, client::Clients, ident::Kind, proto};

/// How long a node may take to reach its peers, or a change to replicate.
const WITHIN: Duration = Duration::from_secs(30);

async fn status(c: &mut Clients) -> Result<proto::StatusResponse, TestbedError> {
    Ok(c.admin.status(proto::StatusRequest {}).await?.into_inner())
}

/// Until the node has confirmed its own log's head with a peer; `who` names
/// it in the error.
pub async fn own_log_ready(c: &mut Clients, who: &str) -> Result<(), TestbedError> {
    let start = Instant::now();
    while !status(c).await?.own_log_ready {
        if start.elapsed() > WITHIN {
            return Err(TestbedError::OwnLogNotReady {
                who: who.to_string(),
                seconds: WITHIN.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Until the node's alert engine has no work queued (every batch applied
/// has its alerts, every entry registered is checked) and `done` holds of
/// its Status, within `limit`; that Status. `who` and `what` name the node
/// and the wait in the error.
pub async fn alerts_idle(
    c: &mut Clients,
    who: &str,
    what: &str,
    limit: Duration,
    done: impl Fn(&proto::StatusResponse) -> bool,
) -> Result<proto::StatusResponse, TestbedError> {
    let start = Instant::now();
    loop {
        let s = status(c).await?;
        if s.alert_work_pending == 0 && done(&s) {
            return Ok(s);
        }
        if start.elapsed() > limit {
            return Err(TestbedError::AlertsNotIdle {
                who: who.to_string(),
                what: what.to_string(),
                seconds: limit.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Until `item` has status `want` at the node; returns the time since `since`.
pub async fn match_status(
    c: &mut Clients,
    item: &(Kind, String),
    want: proto::MatchStatus,
    since: Instant,
) -> Result<Duration, TestbedError> {
    loop {
        let r = c
            .screening
            .r#match(proto::MatchRequest {
                identifiers: vec![proto::Identifier {
                    kind: convert::kind_to_proto(item.0),
                    value: item.1.clone(),
                }],
            })
            .await?
            .into_inner();
        if r.results.first().map(|r| r.status) == Some(want as i32) {
            return Ok(since.elapsed());
        }
        if since.elapsed() > WITHIN {
            return Err(TestbedError::MatchStatusNotReached {
                seconds: WITHIN.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Until the node holds trust-list `version`, for at most `within`.
pub async fn trust_version(
    c: &mut Clients,
    version: u64,
    within: Duration,
) -> Result<(), TestbedError> {
    let start = Instant::now();
    while status(c).await?.trust_version != version {
        if start.elapsed() > within {
            return Err(TestbedError::TrustVersionNotReached {
                version,
                seconds: within.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

//! `cix health`: the node's gRPC health, per service, for scripts and an
//! orchestrator's exec probe: exit status 0 while the service serves, 1
//! otherwise. Any client certificate of the member CA will do: health needs
//! no capability.

use anyhow::{anyhow, Result};
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};

use super::conn::{status_error, Conn};

/// `cix health [--service S]`.
pub(super) async fn health(conn: Conn, service: String) -> Result<()> {
    let mut clients = conn.connect().await?;
    let answer = clients
        .health
        .check(HealthCheckRequest {
            service: service.clone(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let shown = if service.is_empty() {
        "the node"
    } else {
        service.as_str()
    };
    match ServingStatus::try_from(answer.status) {
        Ok(ServingStatus::Serving) => {
            println!("{shown}: SERVING");
            Ok(())
        }
        Ok(other) => Err(anyhow!("{shown}: {}", other.as_str_name())),
        Err(_) => Err(anyhow!("{shown}: unknown status {}", answer.status)),
    }
}

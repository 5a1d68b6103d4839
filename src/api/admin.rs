//! `cix.v1.Admin`: the node's status report ([`crate::node::NodeStatus`]),
//! converted to protobuf, and a compaction of the store on request (run on
//! a blocking thread).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{convert, status::compaction_failed};
use crate::{
    federation::receive_batches::Replication,
    node::NodeState,
    proto::{self, admin_server},
};

pub(crate) struct AdminService {
    node: Arc<NodeState>,
    replication: Option<Arc<Replication>>,
}

impl AdminService {
    pub(crate) fn new(node: Arc<NodeState>, replication: Option<Arc<Replication>>) -> AdminService {
        AdminService { node, replication }
    }
}

#[tonic::async_trait]
impl admin_server::Admin for AdminService {
    async fn status(
        &self,
        _req: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        let status = self.node.status(self.replication.as_deref())?;
        Ok(Response::new(convert::status(status)))
    }

    async fn compact(
        &self,
        _req: Request<proto::CompactRequest>,
    ) -> Result<Response<proto::CompactResponse>, Status> {
        let store = self.node.store.clone();
        let store_bytes_before = store.size_on_disk();
        let compacting = store.clone();
        tokio::task::spawn_blocking(move || compacting.compact())
            .await
            .map_err(|_| Status::internal("the compaction's thread failed"))?
            .map_err(compaction_failed)?;
        Ok(Response::new(proto::CompactResponse {
            store_bytes_before,
            store_bytes_after: store.size_on_disk(),
        }))
    }
}

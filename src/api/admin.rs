//! `cix.v1.Admin`: the node's status report ([`crate::node::NodeStatus`]),
//! converted to protobuf.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert;
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
}

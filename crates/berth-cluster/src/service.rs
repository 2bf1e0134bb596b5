//! The gRPC side of a node: Raft RPCs into openraft, and the Cluster service (forwarding,
//! takeover, proposals from followers, operators' session requests, administration).

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use berth_proto::v1 as pb;
use berth_proto::v1::cluster_server::{Cluster, ClusterServer};
use berth_proto::v1::raft_server::{Raft as RaftRpc, RaftServer};
use futures_core::Stream;
use openraft::ChangeMembers;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::node::{ClusterError, ClusterNode};
use crate::types::Node;

/// A boxed future, so that the broker side can be a trait object.
pub type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;
/// The pages of a session being taken over.
pub type TakeoverStream = Pin<Box<dyn Stream<Item = Result<pb::TakeoverChunk, Status>> + Send>>;

/// What the cluster service needs from this node's broker.
pub trait LocalBroker: Send + Sync + std::fmt::Debug + 'static {
    /// Stores forwarded messages for local sessions; answers once they are durable.
    fn forward(&self, batch: pb::ForwardBatch) -> BoxFuture<Result<pb::ForwardAck, Status>>;
    /// Streams a session this node no longer owns to its new owner.
    fn takeover(&self, request: pb::TakeoverRequest) -> BoxFuture<Result<TakeoverStream, Status>>;
    /// Deletes the local copy of a session the new owner has stored.
    fn release(&self, request: pb::ReleaseRequest) -> BoxFuture<Result<(), Status>>;
    /// A node offers a copy of a session this node owns: pull it, unless already pulling.
    fn offer(&self, request: pb::OfferRequest) -> BoxFuture<Result<pb::OfferReply, Status>>;
    /// Publishes a message as the server (a dead owner's will), routed like any other.
    fn publish(&self, message: pb::Message) -> BoxFuture<Result<(), Status>>;
    /// An operator's request about a session this node owns (relayed by the node the admin
    /// API was asked); the broker's answer, or `unavailable` when it gives none in time.
    fn session_admin(
        &self,
        request: pb::SessionAdminRequest,
    ) -> BoxFuture<Result<pb::SessionAdminReply, Status>>;
}

/// The broker, once it runs (the cluster listener starts before it).
pub type BrokerSlot = Arc<OnceLock<Arc<dyn LocalBroker>>>;

fn status_of(error: &ClusterError) -> Status {
    match error {
        ClusterError::Timeout(_) | ClusterError::NoLeader => Status::unavailable(error.to_string()),
        _ => Status::internal(error.to_string()),
    }
}

fn bad(e: convert::Malformed) -> Status {
    Status::invalid_argument(e.to_string())
}

#[derive(Debug, Clone)]
struct RaftService {
    node: ClusterNode,
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesReply>, Status> {
        let rpc = convert::append_request_from_pb(request.into_inner()).map_err(bad)?;
        let reply = self
            .node
            .raft
            .append_entries(rpc)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(convert::append_reply_to_pb(&reply)))
    }

    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteReply>, Status> {
        let rpc = convert::vote_request_from_pb(request.into_inner()).map_err(bad)?;
        let reply = self
            .node
            .raft
            .vote(rpc)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(convert::vote_reply_to_pb(&reply)))
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::InstallSnapshotRequest>,
    ) -> Result<Response<pb::InstallSnapshotReply>, Status> {
        let rpc = convert::snapshot_request_from_pb(request.into_inner()).map_err(bad)?;
        let reply = self
            .node
            .raft
            .install_snapshot(rpc)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(pb::InstallSnapshotReply {
            vote: Some(convert::vote_to_pb(&reply.vote)),
        }))
    }
}

struct ClusterService {
    node: ClusterNode,
    broker: BrokerSlot,
}

impl std::fmt::Debug for ClusterService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterService")
            .field("node", &self.node.id)
            .finish()
    }
}

impl ClusterService {
    fn broker(&self) -> Result<Arc<dyn LocalBroker>, Status> {
        self.broker
            .get()
            .cloned()
            .ok_or_else(|| Status::unavailable("the broker is starting"))
    }

    fn membership_reply(&self) -> pb::MembershipReply {
        let metrics = self.node.raft.metrics().borrow().clone();
        pb::MembershipReply {
            membership: Some(convert::membership_to_pb(
                metrics.membership_config.membership(),
            )),
        }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn forward(
        &self,
        request: Request<pb::ForwardBatch>,
    ) -> Result<Response<pb::ForwardAck>, Status> {
        let broker = self.broker()?;
        broker
            .forward(request.into_inner())
            .await
            .map(Response::new)
    }

    type TakeoverSessionStream = TakeoverStream;

    async fn takeover_session(
        &self,
        request: Request<pb::TakeoverRequest>,
    ) -> Result<Response<TakeoverStream>, Status> {
        let request = request.into_inner();
        // Answer only once this node has applied the claim: from then on it routes nothing
        // more into its copy of the session, so the pages are complete.
        self.node
            .wait_applied(request.claim_log_index, self.node.commit_timeout)
            .await
            .map_err(|e| status_of(&e))?;
        let broker = self.broker()?;
        broker.takeover(request).await.map(Response::new)
    }

    async fn release_session(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseReply>, Status> {
        let broker = self.broker()?;
        broker.release(request.into_inner()).await?;
        Ok(Response::new(pb::ReleaseReply {}))
    }

    async fn offer_session(
        &self,
        request: Request<pb::OfferRequest>,
    ) -> Result<Response<pb::OfferReply>, Status> {
        let broker = self.broker()?;
        broker.offer(request.into_inner()).await.map(Response::new)
    }

    async fn session_admin(
        &self,
        request: Request<pb::SessionAdminRequest>,
    ) -> Result<Response<pb::SessionAdminReply>, Status> {
        let broker = self.broker()?;
        broker
            .session_admin(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn propose(
        &self,
        request: Request<pb::Command>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        // Only the leader commits; a follower answers with an error so the caller retries.
        let result = self
            .node
            .raft
            .client_write(request.into_inner())
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(result.data))
    }

    async fn add_learner(
        &self,
        request: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let node = request
            .into_inner()
            .node
            .ok_or_else(|| Status::invalid_argument("node is missing"))?;
        self.node
            .raft
            .add_learner(node.id, Node::new(node.addr), true)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(self.membership_reply()))
    }

    async fn change_membership(
        &self,
        request: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let voters: BTreeSet<u64> = request.into_inner().voters.into_iter().collect();
        if voters.is_empty() {
            return Err(Status::invalid_argument(
                "a cluster needs at least one voter",
            ));
        }
        self.node
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), false)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(self.membership_reply()))
    }

    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        Ok(Response::new(self.node.status()))
    }

    async fn read_index(
        &self,
        _: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexReply>, Status> {
        // Not forwarded further: the asking follower retries with the leader it learns next.
        match self.node.local_read_index().await {
            Ok(Ok(index)) => Ok(Response::new(pb::ReadIndexReply { index })),
            Ok(Err(_)) => Err(Status::unavailable("not the leader")),
            Err(error) => Err(Status::unavailable(error.to_string())),
        }
    }
}

/// Serves Raft and the Cluster service on `listener` until `shutdown` resolves.
pub async fn serve(
    node: ClusterNode,
    broker: BrokerSlot,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(
            RaftServer::new(RaftService { node: node.clone() })
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
        )
        .add_service(
            ClusterServer::new(ClusterService { node, broker })
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

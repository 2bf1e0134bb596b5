//! openraft's network over tonic: each RPC converts openraft's request to its protobuf message,
//! sends it on the pooled channel to the target, and converts the reply back.

use berth_proto::v1::raft_client::RaftClient;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::convert;
use crate::pool::ChannelPool;
use crate::types::{Node, NodeId, TypeConfig};

/// Creates one [`PeerNetwork`] per target; all share the pool.
#[derive(Debug, Clone)]
pub struct Network {
    pub pool: ChannelPool,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerNetwork;

    async fn new_client(&mut self, _target: NodeId, node: &Node) -> PeerNetwork {
        PeerNetwork {
            addr: node.addr.clone(),
            pool: self.pool.clone(),
        }
    }
}

#[derive(Debug)]
pub struct PeerNetwork {
    addr: String,
    pool: ChannelPool,
}

type RpcError<E = openraft::error::Infallible> = RPCError<NodeId, Node, RaftError<NodeId, E>>;

/// Transport failures: an unreachable peer makes openraft back off; anything else is retried.
fn transport<E: std::error::Error>(
    status: tonic::Status,
) -> RPCError<NodeId, Node, RaftError<NodeId, E>> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            RPCError::Unreachable(Unreachable::new(&status))
        }
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

fn malformed<E: std::error::Error>(
    e: convert::Malformed,
) -> RPCError<NodeId, Node, RaftError<NodeId, E>> {
    RPCError::Network(NetworkError::new(&e))
}

impl PeerNetwork {
    fn client<E: std::error::Error>(
        &self,
        option: &RPCOption,
    ) -> Result<RaftClient<tonic::transport::Channel>, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    {
        let _ = option;
        let channel = self
            .pool
            .get(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        Ok(RaftClient::new(channel).max_decoding_message_size(64 << 20))
    }
}

fn with_deadline<T>(message: T, option: &RPCOption) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(option.hard_ttl());
    request
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        let mut client = self.client(&option)?;
        let request = with_deadline(convert::append_request_to_pb(&rpc), &option);
        let reply = client
            .append_entries(request)
            .await
            .map_err(transport)?
            .into_inner();
        convert::append_reply_from_pb(reply).map_err(malformed)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        let mut client = self.client(&option)?;
        let request = with_deadline(convert::snapshot_request_to_pb(&rpc), &option);
        let reply = client
            .install_snapshot(request)
            .await
            .map_err(transport)?
            .into_inner();
        convert::snapshot_reply_from_pb(reply).map_err(malformed)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcError> {
        let mut client = self.client(&option)?;
        let request = with_deadline(convert::vote_request_to_pb(&rpc), &option);
        let reply = client.vote(request).await.map_err(transport)?.into_inner();
        convert::vote_reply_from_pb(reply).map_err(malformed)
    }
}

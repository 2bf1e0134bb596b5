//! [`ClusterPort`] over the link: claims and commits go through Raft, forwards and registry
//! records through the link's queues.

use std::sync::Arc;

use berth_codec::{Connect, Packet, TopicName};
use berth_core::broker::{OperatorPublish, SubscriptionAnswer, SubscriptionChange};
use berth_core::{
    AdminAnswer, AdminRequest, ClientId, Epoch, Event, Forwarded, NodeId, Replicate, SessionExport,
    UnixMillis,
};
use berth_server::{
    AdminFailure, ClusterMembers, ClusterPort, Grant, NoConsensus, OperatorFailure, PortFuture,
};

use crate::admission;
use crate::cluster_link::ClusterLink;

#[derive(Debug)]
pub(crate) struct RaftPort(pub(crate) Arc<ClusterLink>);

impl ClusterPort for RaftPort {
    fn node_id(&self) -> Option<NodeId> {
        Some(self.0.node_id())
    }

    fn claim<'a>(
        &'a self,
        connect: &'a mut Connect,
        now: UnixMillis,
        sequence: u64,
    ) -> PortFuture<'a, Result<Option<Grant>, NoConsensus>> {
        Box::pin(admission::claim(&self.0, connect, now, sequence))
    }

    fn commit<'a>(
        &'a self,
        grant: &'a Grant,
        packet: &'a Packet,
        now: UnixMillis,
    ) -> PortFuture<'a, Result<(), Packet>> {
        Box::pin(admission::commit(&self.0, grant, packet, now))
    }

    fn forward(&self, node: NodeId, token: Option<u64>, forwarded: Forwarded) {
        self.0.forward(node, token, forwarded);
    }

    fn resume_forwards(&self, node: NodeId) {
        self.0.resume_forwards(node);
    }

    fn probe_node(&self, node: NodeId) {
        self.0.probe_node(node);
    }

    fn record(&self, change: Replicate) {
        self.0.record(change);
    }

    fn adopt(&self, client: ClientId, epoch: Epoch, from: Option<NodeId>, fallback: SessionExport) {
        let link = self.0.clone();
        // Called on the broker thread, which is not a tokio worker: spawn on the node's runtime.
        self.0.spawn(async move {
            tracing::warn!(
                client = client.as_str(),
                epoch = epoch.0,
                "a claim of this node committed after its CONNECT was refused: taking the session over without a connection"
            );
            match from {
                // The claim is applied here, so its log index is at most this node's applied
                // index: the old owner answers only once it has applied that far (else it
                // would not know the claim, answer "nothing here", and the claim would be
                // withdrawn, ending the session: a chaos run's lost session, where a claim
                // refused for want of quorum committed late and was adopted at once).
                Some(from) => {
                    let applied = link
                        .node
                        .state()
                        .read()
                        .ok()
                        .and_then(|s| s.last_applied.map(|id| id.index))
                        .unwrap_or(0);
                    // Nothing there: the claim is withdrawn (`settle_adopted`).
                    link.take_over(&client, from, epoch.0, applied, fallback, false)
                        .await;
                }
                None => {
                    link.call(Event::ImportBegin {
                        client: client.clone(),
                    })
                    .await;
                    link.call(Event::ImportState {
                        client: client.clone(),
                        export: Box::new(fallback),
                    })
                    .await;
                    link.call(Event::ImportDone { client }).await;
                }
            }
        });
    }

    fn with_registry(&self, read: &mut dyn FnMut(&berth_core::Registry)) -> bool {
        match self.0.node.state().read() {
            Ok(state) => {
                read(&state.registry);
                true
            }
            Err(_) => false,
        }
    }

    fn sync_registry(&self) -> PortFuture<'_, Option<Result<(), OperatorFailure>>> {
        Box::pin(async move { Some(crate::admin::sync_registry(&self.0).await) })
    }

    fn session_admin(
        &self,
        client: ClientId,
        request: AdminRequest,
    ) -> PortFuture<'_, Option<Result<AdminAnswer, AdminFailure>>> {
        Box::pin(async move { Some(crate::admin::relay(&self.0, client, request).await) })
    }

    fn session_subscription(
        &self,
        client: ClientId,
        change: SubscriptionChange,
    ) -> PortFuture<'_, Option<Result<SubscriptionAnswer, AdminFailure>>> {
        Box::pin(
            async move { Some(crate::admin::relay_subscription(&self.0, client, change).await) },
        )
    }

    fn operator_retain<'a>(
        &'a self,
        request: &'a OperatorPublish,
        now: UnixMillis,
    ) -> PortFuture<'a, Option<Result<(), OperatorFailure>>> {
        Box::pin(async move { Some(crate::admin::retain(&self.0, request, now).await) })
    }

    fn clear_retained(
        &self,
        topic: TopicName,
    ) -> PortFuture<'_, Option<Result<(), OperatorFailure>>> {
        Box::pin(async move { Some(crate::admin::clear_retained(&self.0, topic).await) })
    }

    fn members(&self) -> PortFuture<'_, Option<ClusterMembers>> {
        Box::pin(async move { Some(crate::admin::members(&self.0).await) })
    }

    fn add_member(
        &self,
        id: NodeId,
        address: String,
    ) -> PortFuture<'_, Option<Result<(), OperatorFailure>>> {
        Box::pin(async move { Some(crate::admin::add_member(&self.0, id, address).await) })
    }

    fn remove_member(&self, id: NodeId) -> PortFuture<'_, Option<Result<(), OperatorFailure>>> {
        Box::pin(async move { Some(crate::admin::remove_member(&self.0, id).await) })
    }

    fn health(&self) -> PortFuture<'_, Option<berth_server::ClusterHealth>> {
        Box::pin(async move {
            let health = self.0.node.health().await;
            Some(berth_server::ClusterHealth {
                leader: health.leader.map(NodeId),
                is_leader: health.is_leader,
                term: health.term,
                last_log_index: health.last_log_index,
                committed_index: health.committed_index,
                applied_index: health.applied_index,
                snapshot_index: health.snapshot_index,
                voters: health.voters,
                follower_lag: health
                    .follower_lag
                    .into_iter()
                    .map(|(node, lag)| (NodeId(node), lag))
                    .collect(),
                memory: health.memory,
            })
        })
    }
}

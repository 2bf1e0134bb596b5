//! Cluster membership for the admin API (`GET /api/v1/cluster`, `POST /api/v1/cluster/members`,
//! `DELETE /api/v1/cluster/members/{id}`): the same calls `berth cluster status|add|remove`
//! makes over the Cluster gRPC service — `AddLearner` then `ChangeMembership` on the leader,
//! which this node names (it forwards to the leader when it is not the leader itself, and
//! asks itself over the same RPC when it is). Every wait is bounded.

use std::collections::BTreeSet;
use std::time::Duration;

use berth_cluster::pb;
use berth_cluster::pb::cluster_client::ClusterClient;
use berth_core::NodeId;
use berth_server::{ClusterMembers, Member, OperatorFailure};
use tonic::transport::Channel;

use crate::cluster_link::ClusterLink;

/// How long a member may take to answer a status probe before it counts as offline.
const PROBE_WAIT: Duration = Duration::from_secs(1);
/// How long a membership change may take (a learner catching up included) before the answer
/// says it did not finish; it may still complete.
const CHANGE_WAIT: Duration = Duration::from_secs(20);

/// The voters of a membership (every configuration of a joint one).
fn voters_of(membership: &pb::Membership) -> BTreeSet<u64> {
    membership
        .configs
        .iter()
        .flat_map(|config| config.ids.iter().copied())
        .collect()
}

/// The voters of the membership being moved to (the last configuration), for a change.
fn target_voters(membership: &pb::Membership) -> BTreeSet<u64> {
    membership
        .configs
        .last()
        .map(|config| config.ids.iter().copied().collect())
        .unwrap_or_default()
}

/// A member's own view, or `None` when it does not answer within [`PROBE_WAIT`].
async fn probe(client: Option<ClusterClient<Channel>>) -> Option<pb::StatusReply> {
    let mut client = client?;
    let mut request = tonic::Request::new(pb::StatusRequest {});
    request.set_timeout(PROBE_WAIT);
    let answered = tokio::time::timeout(PROBE_WAIT, client.status(request)).await;
    answered.ok()?.ok().map(|reply| reply.into_inner())
}

/// The members as this node's membership lists them, each probed (all at once, bounded).
pub(crate) async fn members(link: &ClusterLink) -> ClusterMembers {
    let own = link.node.status();
    let membership = own.membership.clone().unwrap_or_default();
    let voters = voters_of(&membership);
    let mut probes = Vec::new();
    for node in &membership.nodes {
        if node.id == own.node_id {
            continue;
        }
        let client = link.node.client(node.id).ok();
        probes.push((node.id, tokio::spawn(probe(client))));
    }
    let mut answers = Vec::new();
    for (id, probe) in probes {
        answers.push((id, probe.await.ok().flatten()));
    }
    let members = membership
        .nodes
        .iter()
        .map(|node| {
            let status = if node.id == own.node_id {
                Some(own.clone())
            } else {
                answers
                    .iter()
                    .find(|(id, _)| *id == node.id)
                    .and_then(|(_, status)| status.clone())
            };
            Member {
                id: NodeId(node.id),
                address: node.addr.clone(),
                voter: voters.contains(&node.id),
                online: status.is_some(),
                state: status.as_ref().map(|s| s.state.clone()),
                applied_index: status.as_ref().and_then(|s| s.last_applied),
            }
        })
        .collect();
    ClusterMembers {
        members,
        joint: membership.configs.len() > 1,
    }
}

/// A gRPC failure as the operator's: a refused argument is theirs, anything else the
/// cluster's.
fn failure(status: &tonic::Status, doing: &str) -> OperatorFailure {
    let message = format!("{doing}: {}", status.message());
    match status.code() {
        tonic::Code::InvalidArgument => OperatorFailure::Invalid(message),
        _ => OperatorFailure::Unavailable(message),
    }
}

/// A client of the leader's Cluster service (this node's own when it leads).
fn leader(link: &ClusterLink) -> Result<ClusterClient<Channel>, OperatorFailure> {
    let leader = link.node.status().leader_id.ok_or_else(|| {
        OperatorFailure::Unavailable("no Raft leader is known (is a majority up?)".to_owned())
    })?;
    link.node
        .client(leader)
        .map_err(|error| OperatorFailure::Unavailable(format!("the leader {leader}: {error}")))
}

/// Runs `change` within [`CHANGE_WAIT`].
async fn bounded(
    change: impl std::future::Future<Output = Result<(), OperatorFailure>>,
) -> Result<(), OperatorFailure> {
    tokio::time::timeout(CHANGE_WAIT, change)
        .await
        .unwrap_or_else(|_| {
            Err(OperatorFailure::Unavailable(format!(
                "the membership change did not finish within {CHANGE_WAIT:?}; it may still complete"
            )))
        })
}

/// Adds node `id` at cluster address `address`: a learner first (it catches up), then a
/// voter.
pub(crate) async fn add_member(
    link: &ClusterLink,
    id: NodeId,
    address: String,
) -> Result<(), OperatorFailure> {
    bounded(async {
        let mut leader = leader(link)?;
        let request = pb::AddLearnerRequest {
            node: Some(pb::Node {
                id: id.0,
                addr: address,
            }),
        };
        let reply = leader
            .add_learner(request)
            .await
            .map_err(|status| failure(&status, &format!("adding node {} as a learner", id.0)))?
            .into_inner();
        let mut voters = target_voters(&reply.membership.unwrap_or_default());
        voters.insert(id.0);
        let request = pb::ChangeMembershipRequest {
            voters: voters.into_iter().collect(),
        };
        leader
            .change_membership(request)
            .await
            .map_err(|status| failure(&status, &format!("making node {} a voter", id.0)))?;
        Ok(())
    })
    .await
}

/// Removes voter `id` from the cluster (it leaves the membership; its sessions' subscriptions
/// stay in the registry, and clients that reconnect elsewhere take their sessions over).
pub(crate) async fn remove_member(link: &ClusterLink, id: NodeId) -> Result<(), OperatorFailure> {
    bounded(async {
        let mut leader = leader(link)?;
        let status = leader
            .status(pb::StatusRequest {})
            .await
            .map_err(|status| failure(&status, "asking the leader for the membership"))?
            .into_inner();
        let mut voters = target_voters(&status.membership.unwrap_or_default());
        if !voters.remove(&id.0) {
            return Err(OperatorFailure::NotFound(format!(
                "node {} is not a voter of the cluster",
                id.0
            )));
        }
        if voters.is_empty() {
            return Err(OperatorFailure::Invalid(format!(
                "id: node {} is the last voter, and a cluster needs one",
                id.0
            )));
        }
        let request = pb::ChangeMembershipRequest {
            voters: voters.into_iter().collect(),
        };
        leader
            .change_membership(request)
            .await
            .map_err(|status| failure(&status, &format!("removing node {}", id.0)))?;
        Ok(())
    })
    .await
}

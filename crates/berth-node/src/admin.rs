//! The admin API's session operations in a cluster: the node that was asked finds the
//! session's owner in its registry and has it answer — its own broker, or the owner's over the
//! `SessionAdmin` RPC — bounded by `ADMIN_WAIT`, so that an owner down, cut off or stalled is
//! reported, not waited for. The owner's broker decides (`Broker::admin`); nothing here does.

use berth_cluster::convert::{
    admin_reply_from_pb, admin_reply_to_pb, admin_request_from_pb, admin_request_to_pb,
};
use berth_cluster::pb;
use berth_core::{AdminAnswer, AdminError, AdminRequest, ClientId, NodeId};
use berth_server::{ADMIN_WAIT, AdminFailure, BrokerHandle};
use tonic::Status;

use crate::cluster_link::ClusterLink;

/// The owner's own wait for its broker: shorter than the asking node's wait for the RPC, so
/// that a stalled broker is reported with its reason rather than as a silent owner.
fn owner_wait() -> std::time::Duration {
    ADMIN_WAIT.saturating_sub(std::time::Duration::from_millis(500))
}

/// The owner the registry here names for `client`.
fn owner_of(link: &ClusterLink, client: &ClientId) -> Option<NodeId> {
    let state = link.node.state().read().ok()?;
    state.registry.sessions.get(client).map(|entry| entry.owner)
}

/// Has the owner of `client`'s session answer `request`.
pub(crate) async fn relay(
    link: &ClusterLink,
    client: ClientId,
    request: AdminRequest,
) -> Result<AdminAnswer, AdminFailure> {
    let Some(owner) = owner_of(link, &client) else {
        return Err(AdminFailure::Refused(AdminError::NoSession));
    };
    if owner == link.node_id() {
        return link.broker.admin_within(client, request, ADMIN_WAIT).await;
    }
    let unreachable = |reason: String| AdminFailure::Unreachable {
        node: Some(owner),
        reason,
    };
    let mut rpc = link
        .node
        .client(owner.0)
        .map_err(|error| unreachable(error.to_string()))?;
    let call = rpc.session_admin(admin_request_to_pb(&client, &request));
    match tokio::time::timeout(ADMIN_WAIT, call).await {
        Err(_) => Err(unreachable(format!("no answer within {ADMIN_WAIT:?}"))),
        Ok(Err(status)) => Err(unreachable(format!(
            "{:?}: {}",
            status.code(),
            status.message()
        ))),
        Ok(Ok(reply)) => admin_reply_from_pb(reply.into_inner())
            .map_err(|error| unreachable(format!("its answer did not convert: {error}")))?
            .map_err(AdminFailure::Refused),
    }
}

/// The owner's side of `SessionAdmin`: its broker's answer, or `unavailable` when the broker
/// gives none in time (the asking node reports the owner unreachable, with this reason).
pub(crate) async fn answer(
    broker: BrokerHandle,
    request: pb::SessionAdminRequest,
) -> Result<pb::SessionAdminReply, Status> {
    let (client, request) = admin_request_from_pb(request)
        .map_err(|error| Status::invalid_argument(error.to_string()))?;
    match broker.admin_within(client, request, owner_wait()).await {
        Ok(answer) => Ok(admin_reply_to_pb(&Ok(answer))),
        Err(AdminFailure::Refused(error)) => Ok(admin_reply_to_pb(&Err(error))),
        Err(AdminFailure::Unreachable { reason, .. }) => Err(Status::unavailable(reason)),
    }
}

//! The admin API's operations in a cluster.
//!
//! - About one session: the node that was asked finds the session's owner in its registry and
//!   has it answer — its own broker, or the owner's over the `SessionAdmin` RPC — bounded by
//!   `ADMIN_WAIT`, so that an owner down, cut off or stalled is reported, not waited for. The
//!   owner's broker decides (`Broker::admin`); nothing here does.
//! - A subscription of a session, on its owner, as a client's SUBSCRIBE / UNSUBSCRIBE takes
//!   it (`admission::commit`): core plans the registry command (`plan_subscription`, with the
//!   registry's view of the session), Raft commits it (every node routes to the session), then
//!   the owner's broker holds it; bounded by `ADMIN_COMMIT_WAIT`.
//! - A retained message set or cleared by the operator: committed to the registry as a
//!   client's retained PUBLISH is (`OperatorPublish::plan_retained`), or the registry's
//!   `ClearRetained` for `DELETE /api/v1/retained/{topic}`; every node's broker applies it.
//! - Membership ([`membership`]): what `berth cluster status|add|remove` asks, through the
//!   leader.

mod membership;

use std::sync::Arc;

use berth_cluster::convert::{
    SessionAdminCall, admin_call_from_pb, admin_reply_from_pb, admin_reply_to_pb,
    admin_request_to_pb, subscription_reply_from_pb, subscription_reply_to_pb,
    subscription_request_to_pb,
};
use berth_cluster::pb;
use berth_codec::TopicName;
use berth_core::broker::{
    OperatorPublish, SubscriptionAnswer, SubscriptionChange, plan_subscription,
};
use berth_core::{
    AdminAnswer, AdminError, AdminRequest, ClientId, Command, NodeId, Outcome, UnixMillis,
};
use berth_server::{ADMIN_COMMIT_WAIT, ADMIN_WAIT, AdminFailure, OperatorFailure};
use tonic::Status;

use crate::cluster_link::ClusterLink;

pub(crate) use membership::{add_member, members, remove_member};

/// The owner's own wait for its broker: shorter than the asking node's wait for the RPC, so
/// that a stalled broker is reported with its reason rather than as a silent owner.
fn owner_wait() -> std::time::Duration {
    ADMIN_WAIT.saturating_sub(std::time::Duration::from_millis(500))
}

/// The owner's own bound on a subscription change (commit and broker), shorter than the
/// asking node's wait for the RPC for the same reason.
fn owner_commit_wait() -> std::time::Duration {
    ADMIN_COMMIT_WAIT.saturating_sub(std::time::Duration::from_secs(1))
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
    let reply = ask_owner(
        link,
        owner,
        admin_request_to_pb(&client, &request),
        ADMIN_WAIT,
    )
    .await?;
    admin_reply_from_pb(reply)
        .map_err(|error| unconverted(owner, &error))?
        .map_err(AdminFailure::Refused)
}

/// `request` sent to `owner`'s `SessionAdmin`, answered within `wait`.
async fn ask_owner(
    link: &ClusterLink,
    owner: NodeId,
    request: pb::SessionAdminRequest,
    wait: std::time::Duration,
) -> Result<pb::SessionAdminReply, AdminFailure> {
    let unreachable = |reason: String| AdminFailure::Unreachable {
        node: Some(owner),
        reason,
    };
    let mut rpc = link
        .node
        .client(owner.0)
        .map_err(|error| unreachable(error.to_string()))?;
    match tokio::time::timeout(wait, rpc.session_admin(request)).await {
        Err(_) => Err(unreachable(format!("no answer within {wait:?}"))),
        Ok(Err(status)) => Err(unreachable(format!(
            "{:?}: {}",
            status.code(),
            status.message()
        ))),
        Ok(Ok(reply)) => Ok(reply.into_inner()),
    }
}

/// `owner`'s answer did not convert back.
fn unconverted(owner: NodeId, error: &dyn std::fmt::Display) -> AdminFailure {
    AdminFailure::Unreachable {
        node: Some(owner),
        reason: format!("its answer did not convert: {error}"),
    }
}

/// Has the owner of `client`'s session apply `change` (see the module's comment).
pub(crate) async fn relay_subscription(
    link: &ClusterLink,
    client: ClientId,
    change: SubscriptionChange,
) -> Result<SubscriptionAnswer, AdminFailure> {
    let Some(owner) = owner_of(link, &client) else {
        return Err(AdminFailure::Refused(AdminError::NoSession));
    };
    if owner == link.node_id() {
        let here = subscription_here(link, client, change);
        return match tokio::time::timeout(owner_commit_wait(), here).await {
            Ok(answer) => answer,
            Err(_) => Err(AdminFailure::Unreachable {
                node: None,
                reason: format!("no answer within {:?}", owner_commit_wait()),
            }),
        };
    }
    let reply = ask_owner(
        link,
        owner,
        subscription_request_to_pb(&client, &change),
        ADMIN_COMMIT_WAIT,
    )
    .await?;
    subscription_reply_from_pb(reply)
        .map_err(|error| unconverted(owner, &error))?
        .map_err(AdminFailure::Refused)
}

/// The owner's half of a subscription change: the registry first (so that every node routes
/// to the session before its broker holds the subscription), then the broker. A session this
/// node does not own (any more) is moving: the asking node says so.
async fn subscription_here(
    link: &ClusterLink,
    client: ClientId,
    change: SubscriptionChange,
) -> Result<SubscriptionAnswer, AdminFailure> {
    // Read under the state's lock, released before anything is awaited.
    let planned = {
        let state = link.node.state().read();
        let entry = state
            .as_ref()
            .ok()
            .and_then(|state| state.registry.sessions.get(&client));
        match entry {
            None => Err(AdminError::NoSession),
            Some(entry) if entry.owner != link.node_id() => Err(AdminError::Moving),
            Some(entry) => Ok(plan_subscription(
                link.rules(),
                &client,
                entry.epoch,
                &change,
                &entry.subscriptions,
            )),
        }
    };
    let command = match planned {
        Err(error) => return Err(AdminFailure::Refused(error)),
        Ok(Err(refusal)) => return Ok(SubscriptionAnswer::Refused(refusal)),
        Ok(Ok(command)) => command,
    };
    match link.propose(&command).await {
        // The session moved (or started afresh) since the registry was read here.
        Ok(proposed) if matches!(proposed.outcome, Outcome::Fenced { .. }) => {
            return Err(AdminFailure::Refused(AdminError::Moving));
        }
        Ok(_) => {}
        Err(error) => {
            return Err(AdminFailure::Unreachable {
                node: None,
                reason: format!("the registry change did not commit: {error}"),
            });
        }
    }
    link.broker
        .change_subscription_within(client, change, owner_wait())
        .await
}

/// The owner's side of `SessionAdmin`: its broker's answer (a subscription change commits to
/// the registry first), or `unavailable` when none comes in time (the asking node reports the
/// owner unreachable, with this reason).
pub(crate) async fn answer(
    link: Arc<ClusterLink>,
    request: pb::SessionAdminRequest,
) -> Result<pb::SessionAdminReply, Status> {
    let (client, call) =
        admin_call_from_pb(request).map_err(|error| Status::invalid_argument(error.to_string()))?;
    match call {
        SessionAdminCall::Session(request) => {
            match link
                .broker
                .admin_within(client, request, owner_wait())
                .await
            {
                Ok(answer) => Ok(admin_reply_to_pb(&Ok(answer))),
                Err(AdminFailure::Refused(error)) => Ok(admin_reply_to_pb(&Err(error))),
                Err(AdminFailure::Unreachable { reason, .. }) => Err(Status::unavailable(reason)),
            }
        }
        SessionAdminCall::Subscription(change) => {
            let here = subscription_here(&link, client, change);
            match tokio::time::timeout(owner_commit_wait(), here).await {
                Ok(Ok(answer)) => Ok(subscription_reply_to_pb(&Ok(answer))),
                Ok(Err(AdminFailure::Refused(error))) => Ok(subscription_reply_to_pb(&Err(error))),
                Ok(Err(AdminFailure::Unreachable { reason, .. })) => {
                    Err(Status::unavailable(reason))
                }
                Err(_) => Err(Status::unavailable(format!(
                    "the owner did not finish within {:?}",
                    owner_commit_wait()
                ))),
            }
        }
    }
}

/// Commits an operator's retained message to the registry (nothing for one that is not
/// retained), then waits until this node's broker has it.
pub(crate) async fn retain(
    link: &ClusterLink,
    request: &OperatorPublish,
    now: UnixMillis,
) -> Result<(), OperatorFailure> {
    match request.plan_retained(link.rules(), now) {
        Err(refusal) => Err(OperatorFailure::Invalid(refusal.to_string())),
        Ok(None) => Ok(()),
        Ok(Some(command)) => commit(link, &command).await,
    }
}

/// Clears the retained message of `topic` on every node.
pub(crate) async fn clear_retained(
    link: &ClusterLink,
    topic: TopicName,
) -> Result<(), OperatorFailure> {
    commit(link, &Command::ClearRetained(topic)).await
}

/// Waits until this node's registry and broker show every registry change committed
/// anywhere before the call (Raft's read index, then this node's broker caught up to it).
pub(crate) async fn sync_registry(link: &ClusterLink) -> Result<(), OperatorFailure> {
    let index = link.node.read_index().await.map_err(|error| {
        OperatorFailure::Unavailable(format!("the cluster's read index is not known: {error}"))
    })?;
    if !link.broker_caught_up(index).await {
        return Err(OperatorFailure::Unavailable(
            "this node has not applied the registry as far as the leader has committed it"
                .to_owned(),
        ));
    }
    Ok(())
}

/// Commits `command` and waits until this node's broker has been handed it (so that what
/// the operator does next on this node sees it).
async fn commit(link: &ClusterLink, command: &Command) -> Result<(), OperatorFailure> {
    let proposed = link.propose(command).await.map_err(|error| {
        OperatorFailure::Unavailable(format!("the registry change did not commit: {error}"))
    })?;
    if !link.broker_caught_up(proposed.log_index).await {
        return Err(OperatorFailure::Unavailable(
            "committed, but this node's broker has not applied it yet".to_owned(),
        ));
    }
    Ok(())
}

//! How code outside the server (the cluster implementation of the port) reaches the broker
//! thread: one method per request, each answered once the broker has handled it.

use berth_core::broker::{
    OperatorPublish, OperatorPublished, PublishRefusal, SubscriptionAnswer, SubscriptionChange,
};
use berth_core::{
    AdminAnswer, AdminError, AdminRequest, ClientId, Epoch, Event, Forwarded, NodeId, QueueSeq,
};
use tokio::sync::mpsc::Sender;
use tokio::sync::oneshot;

use crate::cluster_port::AdminFailure;
use crate::runtime::Command;
pub use crate::runtime::{ExportPage, Exported, ForwardReply};

/// What became of an operator's PUBLISH ([`BrokerHandle::operator_publish`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Routed, and at QoS 1/2 stored for every matched session, here and on the owner nodes
    /// it was forwarded to (the promise of a PUBACK).
    Stored(OperatorPublished),
    /// An owner node of matched sessions did not store it (its forward failed, as a client's
    /// PUBLISH would have been answered with a failure): some sessions may lack it.
    NotStored(OperatorPublished),
}

/// A handle on the broker thread. Every method returns `None` (or `false`) once the broker is
/// gone (shutdown, or a storage failure stopped it).
#[derive(Debug, Clone)]
pub struct BrokerHandle {
    pub(crate) commands: Sender<Command>,
    /// The node's metrics, for what the cluster side times (Raft commits, forwards).
    pub(crate) metrics: std::sync::Arc<crate::Metrics>,
}

impl BrokerHandle {
    pub fn metrics(&self) -> &crate::Metrics {
        &self.metrics
    }

    /// Hands `event` to the broker; true once its effects are stored (after group commit).
    pub async fn call(&self, event: Event) -> bool {
        let (done, wait) = oneshot::channel();
        let command = Command::Call {
            event,
            done: Some(done),
        };
        self.commands.send(command).await.is_ok() && wait.await.is_ok()
    }

    /// Hands `event` to the broker without waiting for it to be handled. Events sent this way
    /// are handled in the order they were sent (the channel is FIFO).
    pub async fn notify(&self, event: Event) -> bool {
        let command = Command::Call { event, done: None };
        self.commands.send(command).await.is_ok()
    }

    /// Messages another node routed to sessions owned here; the answer (the clients not owned
    /// here) comes once they are stored.
    pub async fn forwarded(&self, messages: Vec<Forwarded>) -> Option<ForwardReply> {
        let (reply, wait) = oneshot::channel();
        let command = Command::Forwarded { messages, reply };
        self.commands.send(command).await.ok()?;
        wait.await.ok()
    }

    /// Takeover, old owner: the state of `client` for the claim at `epoch` with the first page
    /// of its queue; `Exported::Waits` instead if `may_wait` and the export must wait (see
    /// `Broker::export_waits`).
    pub async fn export(&self, client: ClientId, epoch: Epoch, may_wait: bool) -> Option<Exported> {
        let (reply, wait) = oneshot::channel();
        let command = Command::Export {
            client,
            epoch,
            may_wait,
            reply,
        };
        self.commands.send(command).await.ok()?;
        wait.await.ok()
    }

    /// Takeover, old owner: one page of the queue of `client`, from `from` on.
    pub async fn export_queue(
        &self,
        client: ClientId,
        from: Option<QueueSeq>,
    ) -> Option<ExportPage> {
        let (reply, wait) = oneshot::channel();
        let command = Command::ExportQueue {
            client,
            from,
            reply,
        };
        self.commands.send(command).await.ok()?;
        wait.await.ok()
    }

    /// Sessions held here that other nodes have claimed, with their new owner and epoch.
    pub async fn moving(&self) -> Option<Vec<(ClientId, NodeId, Epoch)>> {
        let (reply, wait) = oneshot::channel();
        self.commands.send(Command::Moving { reply }).await.ok()?;
        wait.await.ok()
    }

    /// Whether a late backlog for `client` at `epoch` would be stored here now.
    pub async fn accepts_late(&self, client: ClientId, epoch: Epoch) -> bool {
        let (reply, wait) = oneshot::channel();
        let command = Command::AcceptsLate {
            client,
            epoch,
            reply,
        };
        self.commands.send(command).await.is_ok() && wait.await.unwrap_or(false)
    }

    /// An operator's request about `client`'s session (`Broker::admin`), answered once its
    /// effects are stored (after group commit) and its actions sent (a kicked connection has
    /// its DISCONNECT on the way).
    pub async fn admin(
        &self,
        client: ClientId,
        request: AdminRequest,
    ) -> Option<Result<AdminAnswer, AdminError>> {
        let (reply, wait) = oneshot::channel();
        let command = Command::Admin {
            client,
            request,
            reply,
        };
        self.commands.send(command).await.ok()?;
        wait.await.ok()
    }

    /// [`BrokerHandle::admin`], waiting at most `wait` (a full command channel included): the
    /// admin API answers an operator even when the broker does not.
    pub async fn admin_within(
        &self,
        client: ClientId,
        request: AdminRequest,
        wait: std::time::Duration,
    ) -> Result<AdminAnswer, AdminFailure> {
        within(wait, self.admin(client, request)).await
    }

    /// An operator's PUBLISH (`Broker::operator_publish`), routed as a client's; the answer
    /// comes once it is stored wherever it went (QoS 0: once routed and committed). A message
    /// that goes to other nodes' sessions waits for their owners, which the forwarding bounds.
    pub async fn operator_publish(
        &self,
        request: OperatorPublish,
    ) -> Option<Result<PublishOutcome, PublishRefusal>> {
        let (reply, wait) = oneshot::channel();
        let command = Command::Publish {
            request: Box::new(request),
            reply,
        };
        self.commands.send(command).await.ok()?;
        wait.await.ok()
    }

    /// An operator's change to `client`'s subscriptions (`Broker::change_subscription`),
    /// answered once stored.
    pub async fn change_subscription(
        &self,
        client: ClientId,
        change: SubscriptionChange,
    ) -> Option<Result<SubscriptionAnswer, AdminError>> {
        let (reply, wait) = oneshot::channel();
        let command = Command::Subscription {
            client,
            change,
            reply,
        };
        self.commands.send(command).await.ok()?;
        wait.await.ok()
    }

    /// [`BrokerHandle::change_subscription`], waiting at most `wait`.
    pub async fn change_subscription_within(
        &self,
        client: ClientId,
        change: SubscriptionChange,
        wait: std::time::Duration,
    ) -> Result<SubscriptionAnswer, AdminFailure> {
        within(wait, self.change_subscription(client, change)).await
    }
}

/// An operator's request to the broker thread, answered within `wait` (a full command channel
/// included): the admin API answers even when the broker does not.
async fn within<T>(
    wait: std::time::Duration,
    asked: impl std::future::Future<Output = Option<Result<T, AdminError>>>,
) -> Result<T, AdminFailure> {
    match tokio::time::timeout(wait, asked).await {
        Ok(Some(answer)) => answer.map_err(AdminFailure::Refused),
        Ok(None) => Err(AdminFailure::Unreachable {
            node: None,
            reason: "the broker is not running".to_owned(),
        }),
        Err(_) => Err(AdminFailure::Unreachable {
            node: None,
            reason: format!("the broker did not answer within {wait:?}"),
        }),
    }
}

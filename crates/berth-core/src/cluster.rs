//! What the broker exchanges with the cluster, as plain values (no Raft, no gRPC here).
//!
//! ```text
//!  Raft state machine ─ ClusterEvent ─▶ Broker   (owners, other nodes' subscriptions)
//!  Broker ─ Action::Forward ─▶ other node ─ Event::Forwarded ─▶ its Broker ─ Action::ForwardAccepted
//!  Broker ─ Action::Replicate ─▶ Raft (session detached / ended)
//!  old owner: Broker::export_* ─▶ gRPC pages ─▶ new owner: Event::Import*
//! ```

use std::sync::Arc;

use berth_codec::{PacketId, TopicFilter};

pub use crate::ids::NodeId;
use crate::ids::{ClientId, Epoch};
use crate::message::{Delivery, Message};
use crate::store::{InflightRecord, SessionRecord, SubscriptionRecord};
use crate::time::UnixMillis;

/// A change of the replicated registry, applied by every node's broker in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    /// `client` belongs to `owner` from now on. `kept`: its session goes on (takeover);
    /// otherwise any older copy is discarded.
    Owner {
        client: ClientId,
        owner: NodeId,
        /// The epoch of the claim. A local session at this epoch or later is newer than the
        /// claim (the log is being replayed after a restart) and is left alone.
        epoch: Epoch,
        kept: bool,
        subscriptions: Vec<(TopicFilter, SubscriptionRecord)>,
        /// The copy `owner` took the session over from (`registry::SessionEntry::moved_from`).
        moved_from: Option<crate::store::CopyRef>,
    },
    Subscribed {
        client: ClientId,
        owner: NodeId,
        subscriptions: Vec<(TopicFilter, SubscriptionRecord)>,
    },
    Unsubscribed {
        client: ClientId,
        filters: Vec<TopicFilter>,
    },
    /// The session ended (expiry, or it ended with its connection; or the leader ended it for a
    /// dead owner — then a copy here at `epoch` is stale and goes too).
    Dropped { client: ClientId, epoch: Epoch },
    /// The session's will was published (by the leader, for a dead owner): a copy here at
    /// `epoch` must not publish it again.
    WillFired { client: ClientId, epoch: Epoch },
    /// The leader declared `node` down: its connected sessions count as disconnected in the
    /// registry. When `node` is this one (alive, but stalled or cut off for a while), the
    /// sessions it still serves are asserted again ([`Replicate::Reassert`]).
    NodeDown { node: NodeId },
    /// This node has caught up with the cluster's log after starting: time-driven rules (wills,
    /// expiry) may run, without repeating what the leader did while this node was away.
    CaughtUp,
    /// A retained message was set (or, with an empty payload, cleared) on some node.
    /// (Boxed: a message with all its properties is several times any other event.)
    Retained { message: Box<Message> },
    /// Every session the cluster knows, replacing what the broker knew of other nodes.
    Reset { sessions: Vec<RemoteSession> },
}

/// A session as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSession {
    pub client: ClientId,
    pub owner: NodeId,
    pub epoch: Epoch,
    /// The epoch the session started at (Clean Start, or first connection); later epochs
    /// are takeovers of the same session. 0: unknown (a snapshot from before this was kept).
    pub started: Epoch,
    /// The copy `owner` took the session over from (see `registry::SessionEntry::moved_from`).
    pub moved_from: Option<crate::store::CopyRef>,
    pub subscriptions: Vec<(TopicFilter, SubscriptionRecord)>,
}

/// A message another node routed to some of this node's sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    pub message: Arc<Message>,
    pub clients: Vec<ClientId>,
    pub publisher: Option<ClientId>,
    /// Sent before (its node retried the forward): this node may have stored it already, so
    /// what it delivers of it goes out with DUP = 1, "might be a re-delivery" (§3.3.1.1).
    pub retried: bool,
}

/// What the broker asks the cluster to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replicate {
    /// The session lost its connection; it ends at `expires_at` (`None`: never).
    Detach {
        client: ClientId,
        epoch: Epoch,
        expires_at: Option<UnixMillis>,
        /// When its will is due, if one waits.
        will_due_at: Option<UnixMillis>,
    },
    /// The owner published the session's will.
    WillFired { client: ClientId, epoch: Epoch },
    /// The session ended.
    Drop { client: ClientId, epoch: Epoch },
    /// The session is still connected here at `epoch` (after this node was declared down);
    /// with what the registry needs to record it again if the leader ended it meanwhile.
    Reassert {
        client: ClientId,
        epoch: Epoch,
        protocol: berth_codec::ProtocolVersion,
        expiry: crate::store::SessionExpiry,
        will: Option<Box<crate::store::WillRecord>>,
        subscriptions: Vec<(TopicFilter, SubscriptionRecord)>,
    },
}

/// Why a session could not be exported for a takeover.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The session is still being imported here (a chained takeover whose import did not end
    /// within the export's wait, e.g. two nodes pulling from each other). Half of it is not
    /// handed over: the copy's release would delete what arrives after the export. The puller
    /// goes on without it; the copy here, once complete, is offered as a stranded backlog.
    #[error("the session is still arriving here from its previous owner")]
    StillArriving,
}

/// A session's state without its queue, as the old owner hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionExport {
    pub record: SessionRecord,
    pub subscriptions: Vec<(TopicFilter, SubscriptionRecord)>,
    pub inflight: Vec<(PacketId, InflightRecord)>,
    pub incoming_qos2: Vec<PacketId>,
    /// Messages in its queue, which the pages that follow must add up to.
    pub queued: u64,
    /// The identities of the QoS 2 messages it took last, oldest first (`Session::seen`).
    pub seen: Vec<crate::ids::MessageId>,
    /// The client's QoS 2 PUBLISHes not known to be stored everywhere, with the identity they
    /// were routed under: a re-send is routed again under it (`Session::qos2_retry`).
    pub qos2_retry: Vec<(PacketId, crate::ids::MessageId)>,
    /// The newest claim the exporting copy served (its own epoch; the record's is the
    /// importer's claim). An import recovered late compares it with the copy the session
    /// lacks: a copy older than that one cannot tell what the lacked copy delivered
    /// (`Broker::recover_qos2_state`). `None` from a peer too old to say, or for a fallback.
    pub served: Option<crate::ids::Epoch>,
}

impl SessionExport {
    /// The messages sent but not acknowledged, in send order, as deliveries to queue again
    /// (a PUBREL in flight needs no message: the client has it). A QoS 2 message keeps the
    /// packet id it was sent under (`Delivery::sent_as`): the client may still hold it.
    pub fn unacknowledged(&self) -> QueuePage {
        let mut sent: Vec<(u64, PacketId, &Delivery)> = self
            .inflight
            .iter()
            .filter_map(|(id, record)| match record {
                InflightRecord::Sent { order, delivery } => Some((*order, *id, delivery)),
                InflightRecord::Released { .. } => None,
            })
            .collect();
        sent.sort_by_key(|(order, ..)| *order);
        sent.into_iter()
            .map(|(_, id, d)| Delivery {
                redelivery: d.qos != berth_codec::QoS::AtMostOnce,
                sent_as: (d.qos == berth_codec::QoS::ExactlyOnce).then_some(id),
                ..d.clone()
            })
            .collect()
    }
}

/// One page of a session's queue, oldest first.
pub type QueuePage = Vec<Delivery>;

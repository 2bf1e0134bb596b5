//! What the replicated registry is asked to do, and what it answers, over domain types.
//!
//! Every command names the epoch it acts for (except a claim, which makes one): the registry
//! applies it only while that epoch is the session's, so a node with a stale copy can never
//! change what a newer owner holds.

use berth_codec::{ProtocolVersion, TopicFilter, TopicName};

use crate::cluster::Replicate;
use crate::ids::{ClientId, Epoch, NodeId};
use crate::message::Message;
use crate::store::{SessionExpiry, SubscriptionRecord, WillRecord};
use crate::time::UnixMillis;

/// One entry of the registry's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `node` takes `client`'s session: its epoch goes up by one.
    Claim(Claim),
    /// The session ended (expiry, clean disconnect, or the leader for a dead owner).
    Drop { client: ClientId, epoch: Epoch },
    /// The session's connection ended: it expires at `expires_at` (`None`: never).
    Detach {
        client: ClientId,
        epoch: Epoch,
        expires_at: Option<UnixMillis>,
        /// When its will is due, if one waits.
        will_due_at: Option<UnixMillis>,
    },
    Subscribe {
        client: ClientId,
        epoch: Epoch,
        subscriptions: Vec<(TopicFilter, SubscriptionRecord)>,
    },
    Unsubscribe {
        client: ClientId,
        epoch: Epoch,
        filters: Vec<TopicFilter>,
    },
    /// The leader lost contact with `node`: its connected sessions count as disconnected `at`.
    NodeDown { node: NodeId, at: UnixMillis },
    /// `node`, declared down while alive, still holds `client` connected at `epoch`.
    Reassert(Reassert),
    /// The session's will was published (by its owner, or by the leader for a dead owner).
    WillFired { client: ClientId, epoch: Epoch },
    /// A retained message was set.
    SetRetained(Message),
    /// The retained message of a topic was cleared.
    ClearRetained(TopicName),
}

/// See [`Command::Claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub client: ClientId,
    pub node: NodeId,
    /// MQTT Clean Start / Clean Session: the old session (anywhere) is discarded.
    pub clean_start: bool,
    pub protocol: ProtocolVersion,
    /// The proposer's clock, so that every node decides "expired?" the same way.
    pub now: UnixMillis,
    /// What the leader needs to end the session and publish its will if `node` dies.
    pub expiry: SessionExpiry,
    pub will: Option<WillRecord>,
}

/// See [`Command::Reassert`]: the session is connected again (no expiry, no will due). If the
/// leader already ended it, it is recorded again as it was, unless the client id has been
/// claimed since. A will the leader already published stays published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassert {
    pub client: ClientId,
    pub node: NodeId,
    pub epoch: Epoch,
    pub protocol: ProtocolVersion,
    pub expiry: SessionExpiry,
    pub will: Option<WillRecord>,
    pub subscriptions: Vec<(TopicFilter, SubscriptionRecord)>,
}

impl Command {
    /// The registry command for a session change the broker of `node` asks for.
    pub fn of_replicate(node: NodeId, change: Replicate) -> Command {
        match change {
            Replicate::Detach {
                client,
                epoch,
                expires_at,
                will_due_at,
            } => Command::Detach {
                client,
                epoch,
                expires_at,
                will_due_at,
            },
            Replicate::WillFired { client, epoch } => Command::WillFired { client, epoch },
            Replicate::Drop { client, epoch } => Command::Drop { client, epoch },
            Replicate::Reassert {
                client,
                epoch,
                protocol,
                expiry,
                will,
                subscriptions,
            } => Command::Reassert(Reassert {
                client,
                node,
                epoch,
                protocol,
                expiry,
                will: will.map(|w| *w),
                subscriptions,
            }),
        }
    }
}

/// What applying a command answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Claimed(Claimed),
    /// The command named an epoch that is no longer the session's (0: no session).
    Fenced {
        current: Epoch,
    },
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub epoch: Epoch,
    /// A live session was found and kept (Clean Start = 0): CONNACK Session Present = 1.
    pub session_present: bool,
    /// The node that owned it before, if another one and the session was kept.
    pub previous_owner: Option<NodeId>,
    pub previous_epoch: Epoch,
    /// The copy the previous owner took the session over from, when known (see
    /// `SessionEntry::moved_from`). A takeover that cannot reach the previous owner lacks its
    /// state, and that copy's too: the previous owner's import may never have landed, and then
    /// that copy is what the client last used (`Qos2Doubt::earlier`).
    pub previous_from: Option<crate::store::CopyRef>,
    /// The kept session's subscriptions.
    pub subscriptions: Vec<(TopicFilter, SubscriptionRecord)>,
    /// How long the session outlived its connection before this claim (`After(0)`: it ends with
    /// it; also when there was none).
    pub previous_expiry: SessionExpiry,
}

impl Claimed {
    /// Whether the takeover goes on with the registry's subscriptions when the old owner holds
    /// nothing. A kept session that outlives its connection is then in transit through another
    /// node (claims that overlapped, each pulling from the one before) and arrives later as a
    /// stranded backlog; one that ends with its connection (expiry 0) has ended there, its end
    /// not yet in the registry, and the client starts afresh (Session Present 0).
    pub fn resumes_without_state(&self) -> bool {
        self.session_present && !self.previous_expiry.is_zero()
    }
}

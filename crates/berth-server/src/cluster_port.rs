//! The cluster as the server sees it: a port with a single-node implementation here and the
//! Raft/gRPC one in `berth-node`. The server asks it to claim a session before CONNECT reaches
//! the broker, to commit what a packet changes in the replicated registry before the broker
//! sees it, and executes the broker's `Forward` and `Replicate` actions through it. Nothing
//! here decides a protocol rule: the port's implementation asks core (`BrokerConfig`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use berth_codec::{Connect, Packet, TopicName};
use berth_core::broker::{OperatorPublish, SubscriptionAnswer, SubscriptionChange};
use berth_core::{
    AdminAnswer, AdminError, AdminRequest, ClientId, Epoch, Forwarded, NodeId, Replicate,
    SessionExport, UnixMillis,
};

use crate::broker_handle::BrokerHandle;

/// A boxed future of the port (the trait must be object-safe).
pub type PortFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The session a connection holds in the cluster.
#[derive(Debug, Clone)]
pub struct Grant {
    pub client: ClientId,
    pub epoch: Epoch,
    /// The server chose the client id (MQTT 5 gets it in CONNACK).
    pub assigned: bool,
    /// The session lived on another node, which this claim took it over from.
    pub taken_over: bool,
    /// Who holds it (with its credentials' topic grants), for the ACL of what the connection
    /// replicates (SUBSCRIBE, retained PUBLISH): set by the connection once it knows the client
    /// id the claim settled on.
    /// In an `Arc`: a grant lives as long as its connection, whose task stays small.
    pub principal: std::sync::Arc<berth_core::acl::Principal>,
}

/// A step that needs consensus could not get it (this node is cut off from the majority).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no consensus: this node cannot reach a majority of the cluster")]
pub struct NoConsensus;

/// How long the admin API waits for the answer to an operator's request about a session (the
/// owner's broker, through the cluster when the owner is another node): an unreachable or
/// stalled owner is reported, never waited for.
pub const ADMIN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long the admin API waits for an operator's change that commits through Raft first (a
/// subscription, a retained message): the commit (bounded by `cluster.commit_timeout`), then
/// the owner's broker.
pub const ADMIN_COMMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(12);

/// Why an operator's request about the cluster (a retained message, a member) was not done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorFailure {
    /// The request breaks a rule (a limit of the configuration, a bad node id or address); the
    /// message names the field at fault.
    #[error("{0}")]
    Invalid(String),
    /// What it names does not exist (a node that is not a member).
    #[error("{0}")]
    NotFound(String),
    /// The cluster could not do it in time: no leader, no consensus, a node that did not
    /// answer. It may still take effect.
    #[error("{0}")]
    Unavailable(String),
}

/// One member of the cluster as the node asked sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: NodeId,
    /// Its cluster (gRPC) address.
    pub address: String,
    /// A voter (false: a learner, which replicates but does not vote).
    pub voter: bool,
    /// Whether it answered a status probe just now.
    pub online: bool,
    /// Its Raft state as it reports it (`Leader`, `Follower`, `Learner`, `Candidate`).
    pub state: Option<String>,
    /// The last log index it applied, as it reports it.
    pub applied_index: Option<u64>,
}

/// The membership as the node asked sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMembers {
    pub members: Vec<Member>,
    /// A membership change is under way (two configurations, joint consensus).
    pub joint: bool,
}

/// Why an operator's request about a session got no answer from its owner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminFailure {
    /// The owner (or, for a session it does not list, the registry) answered: no such
    /// session, moving, or a failed read.
    #[error("{0}")]
    Refused(AdminError),
    /// The owner could not be asked or did not answer within [`ADMIN_WAIT`] (`node`: which
    /// one, when another node owns the session). The request may still take effect there.
    #[error("{reason}")]
    Unreachable {
        node: Option<NodeId>,
        reason: String,
    },
}

/// The cluster as this node sees it, for `/ready` and the Raft metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterHealth {
    /// The leader this node knows; `None` during an election or when cut off from the majority.
    pub leader: Option<NodeId>,
    pub is_leader: bool,
    pub term: u64,
    pub last_log_index: u64,
    /// The last entry this node knows to be committed.
    pub committed_index: u64,
    /// The last entry applied to this node's registry.
    pub applied_index: u64,
    pub snapshot_index: u64,
    pub voters: usize,
    /// On the leader: each follower's lag in log entries behind the leader's last one.
    pub follower_lag: Vec<(NodeId, u64)>,
    /// What the cluster's own database (the Raft log and registry) holds in memory for itself.
    pub memory: berth_core::StoreMemory,
}

impl ClusterHealth {
    /// Whether the node may take clients: it knows a leader (a CONNECT's claim can commit)
    /// and has applied everything it knows committed (its registry is current, so a takeover
    /// finds the session where the registry says it is). `Err`: why not, for `/ready`'s body.
    pub fn ready(&self) -> Result<(), String> {
        if self.leader.is_none() {
            return Err("no Raft leader known".to_owned());
        }
        if self.applied_index < self.committed_index {
            return Err(format!(
                "applied {} of {} committed Raft entries",
                self.applied_index, self.committed_index
            ));
        }
        Ok(())
    }
}

/// What the server needs from the cluster.
pub trait ClusterPort: Send + Sync + std::fmt::Debug + 'static {
    /// This node's id when it runs as a cluster node (the broker then joins the cluster).
    fn node_id(&self) -> Option<NodeId>;

    /// Claims `connect`'s session for this node (and takes it over from another node if it
    /// lives there). May fill in an assigned client id. `Ok(None)`: the broker decides alone.
    fn claim<'a>(
        &'a self,
        connect: &'a mut Connect,
        now: UnixMillis,
        sequence: u64,
    ) -> PortFuture<'a, Result<Option<Grant>, NoConsensus>>;

    /// Commits what `packet` changes in the registry (SUBSCRIBE, UNSUBSCRIBE, retained
    /// PUBLISH). `Err(reply)`: it did not commit; `reply` goes to the client instead.
    fn commit<'a>(
        &'a self,
        grant: &'a Grant,
        packet: &'a Packet,
        now: UnixMillis,
    ) -> PortFuture<'a, Result<(), Packet>>;

    /// Executes `Action::Forward`: hands `forwarded` to `node` for its sessions; with a token,
    /// the outcome comes back to the broker as `Event::ForwardDone` (or `Event::HandOff` when
    /// `node` cannot be reached within the handoff bound).
    fn forward(&self, node: NodeId, token: Option<u64>, forwarded: Forwarded);

    /// Executes `Action::ForwardResume`: forwards to `node` go out again after a `HandOff`.
    fn resume_forwards(&self, node: NodeId);

    /// Executes `Action::ProbeNode`: `node`'s forward queue probes it until it answers.
    fn probe_node(&self, node: NodeId);

    /// Executes `Action::Replicate`: records a session change in the registry.
    fn record(&self, change: Replicate);

    /// Executes `Action::Adopt`: runs the takeover of a claim whose connection never came
    /// (`ImportBegin` … `ImportDone` to the broker, as a connection's takeover does).
    fn adopt(&self, client: ClientId, epoch: Epoch, from: Option<NodeId>, fallback: SessionExport);

    /// Calls `read` with the replicated registry as this node has applied it; false (and `read`
    /// not called): not a cluster node. `read` runs under the registry's read lock: keep it short.
    fn with_registry(&self, read: &mut dyn FnMut(&berth_core::Registry)) -> bool {
        let _ = read;
        false
    }

    /// Waits (bounded) until `with_registry` shows every registry change committed anywhere
    /// before the call: what a write through another node made is then seen here (a read of
    /// what this node has applied may lag the leader). `None`: not a cluster node.
    fn sync_registry(&self) -> PortFuture<'_, Option<Result<(), OperatorFailure>>> {
        Box::pin(async { None })
    }

    /// The cluster's health as this node sees it; `None`: not a cluster node.
    fn health(&self) -> PortFuture<'_, Option<ClusterHealth>> {
        Box::pin(async { None })
    }

    /// Has the owner of `client`'s session (the registry names it) answer an operator's
    /// request: this node's broker, or another node's over the cluster, within
    /// [`ADMIN_WAIT`]. A session the registry does not list is `Refused(NoSession)`. `None`:
    /// not a cluster node, the local broker answers.
    fn session_admin(
        &self,
        client: ClientId,
        request: AdminRequest,
    ) -> PortFuture<'_, Option<Result<AdminAnswer, AdminFailure>>> {
        let _ = (client, request);
        Box::pin(async { None })
    }

    /// Has the owner of `client`'s session apply an operator's subscription change: the
    /// registry commits it (vetted by core, `plan_subscription`), then the owner's broker
    /// holds it; bounded by [`ADMIN_COMMIT_WAIT`]. `None`: not a cluster node, the local
    /// broker answers.
    fn session_subscription(
        &self,
        client: ClientId,
        change: SubscriptionChange,
    ) -> PortFuture<'_, Option<Result<SubscriptionAnswer, AdminFailure>>> {
        let _ = (client, change);
        Box::pin(async { None })
    }

    /// Commits an operator's retained message (set, or cleared by an empty payload) to the
    /// registry as a client's retained PUBLISH is, before the broker routes it (vetted by core,
    /// `OperatorPublish::plan_retained`; no ACL), and waits until this node's broker has it.
    /// `Ok` at once for a message that is not retained. `None`: not a cluster node.
    fn operator_retain<'a>(
        &'a self,
        request: &'a OperatorPublish,
        now: UnixMillis,
    ) -> PortFuture<'a, Option<Result<(), OperatorFailure>>> {
        let _ = (request, now);
        Box::pin(async { None })
    }

    /// Clears the retained message of `topic` on every node (the registry's `ClearRetained`,
    /// which a retained PUBLISH with an empty payload commits too), and waits until this
    /// node's broker has it. `None`: not a cluster node.
    fn clear_retained(
        &self,
        topic: TopicName,
    ) -> PortFuture<'_, Option<Result<(), OperatorFailure>>> {
        let _ = topic;
        Box::pin(async { None })
    }

    /// The members, each probed (bounded). `None`: not a cluster node.
    fn members(&self) -> PortFuture<'_, Option<ClusterMembers>> {
        Box::pin(async { None })
    }

    /// Adds node `id` at cluster address `address`: as a learner, then a voter, through the
    /// leader (what `berth cluster add` asks). `None`: not a cluster node.
    fn add_member(
        &self,
        id: NodeId,
        address: String,
    ) -> PortFuture<'_, Option<Result<(), OperatorFailure>>> {
        let _ = (id, address);
        Box::pin(async { None })
    }

    /// Removes voter `id` from the cluster, through the leader (what `berth cluster remove`
    /// asks). `None`: not a cluster node.
    fn remove_member(&self, id: NodeId) -> PortFuture<'_, Option<Result<(), OperatorFailure>>> {
        let _ = id;
        Box::pin(async { None })
    }
}

/// Starts a port once the broker thread can be reached (the cluster side needs the handle).
pub type StartCluster = Box<dyn FnOnce(BrokerHandle) -> Arc<dyn ClusterPort> + Send>;

/// Whether `packet` changes replicated state (and so must commit before the broker sees it).
pub fn needs_commit(packet: &Packet) -> bool {
    match packet {
        Packet::Subscribe(_) | Packet::Unsubscribe(_) => true,
        Packet::Publish(publish) => publish.retain && !publish.topic.is_empty(),
        _ => false,
    }
}

/// One node alone: nothing to claim or commit elsewhere; the broker decides everything.
#[derive(Debug, Default)]
pub struct SingleNode;

impl ClusterPort for SingleNode {
    fn node_id(&self) -> Option<NodeId> {
        None
    }

    fn claim<'a>(
        &'a self,
        _connect: &'a mut Connect,
        _now: UnixMillis,
        _sequence: u64,
    ) -> PortFuture<'a, Result<Option<Grant>, NoConsensus>> {
        Box::pin(async { Ok(None) })
    }

    fn commit<'a>(
        &'a self,
        _grant: &'a Grant,
        _packet: &'a Packet,
        _now: UnixMillis,
    ) -> PortFuture<'a, Result<(), Packet>> {
        Box::pin(async { Ok(()) })
    }

    // A broker that is not a cluster node emits neither action.
    fn forward(&self, _node: NodeId, _token: Option<u64>, _forwarded: Forwarded) {}

    fn resume_forwards(&self, _node: NodeId) {}

    fn probe_node(&self, _node: NodeId) {}

    fn record(&self, _change: Replicate) {}

    fn adopt(&self, _: ClientId, _: Epoch, _: Option<NodeId>, _: SessionExport) {}
}

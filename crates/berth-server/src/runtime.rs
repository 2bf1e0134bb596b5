//! The broker thread: the single owner of `Broker`, fed by connections through one channel.
//!
//! ```text
//!  connection tasks ──Command──▶ std mpsc ──▶ broker thread
//!                                              loop {
//!                                                wait for a command (or the next timer)
//!                                                handle it and every command already waiting
//!                                                send the group's early sends (below)
//!                                                one store write for the group (WAL, kill-safe)
//!                                                storage.sync → one fsync for the whole group
//!                                                send the group's actions to the connections
//!                                              }
//! ```
//! Acknowledgements leave only after the write (and fsync) that made them true: group commit.
//! The one exception are deliveries that depend on nothing in the group's write: sends from
//! queue rows a durable sent mark covers (core's `row_backed.rs`), which go before it.
//! The broker runs on its own OS thread because RocksDB calls block; it never awaits.

mod operator;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_codec::{Connect, Packet};
use berth_core::DropReason;
use berth_core::fast_map::FastMap;
use berth_core::{
    Action, Broker, ClientId, CloseReason, ConnId, Delivery, Event, QueueSeq, SessionExport, Store,
    StoreError, UnixMillis,
};
use tokio::runtime::Handle;
use tokio::sync::mpsc::Receiver;
use tokio::sync::oneshot;

use crate::cluster_port::ClusterPort;
use crate::drain::DrainStep;
use crate::mailbox::Outbox;
use crate::timing::Timing;

use crate::metrics::{Metrics, PacketCounts};

/// Most events handled before the group is committed and its actions sent (a run of PUBACKs
/// counts each of them: `Command::events`).
const GROUP_LIMIT: usize = 4096;
/// Most commands taken from the channel at once. Taking them in chunks returns their channel
/// slots in one step each (one at a time, the slot's return took the channel's lock per
/// command, ~6 % of this thread's time in pairs QoS 2).
const RECV_CHUNK: usize = 256;
/// How often the metrics are refreshed and how long the loop sleeps with no timer due.
const IDLE_WAKE: Duration = Duration::from_millis(500);
/// Packets waiting for one connection's socket beyond which QoS 0 PUBLISHes to it are dropped.
/// QoS 1/2 are already bounded by the send window; this bounds what a slow reader can cost.
pub(crate) const OUTBOUND_QOS0_LIMIT: usize = 10_000;

/// Packets staged for one connection that are handed over at once, before the group's other
/// actions are dispatched. Measured (fan-out QoS 1, 1 → 8, 2 runs each): one at a time (no
/// staging) 787,000–803,000 deliveries/s; 4, 8, 16: 852,000–876,000; 32: 828,000–847,000; the
/// whole group at its end: 752,000–790,000, as the connections then start writing only after
/// the last action of the group.
const STAGE_CHUNK: usize = 8;

/// Actions of one group beyond which their vector's room is given up after the group (a burst,
/// say a retained-message flood to a new subscriber, is not kept as a standing buffer).
const ACTIONS_KEEP: usize = 8192;

/// The broker thread's end of one connection.
#[derive(Debug)]
pub(crate) struct ConnectionHandle {
    outbound: Outbox,
    /// Packets for the connection not yet handed over: a few at a time (`STAGE_CHUNK`), the
    /// rest when the group's actions are all dispatched, so that a connection sent hundreds of
    /// packets a group (a fan-out's subscribers) costs one lock and one wake per few packets,
    /// not per packet.
    staged: Vec<Outbound>,
}

impl ConnectionHandle {
    pub(crate) fn new(outbound: Outbox) -> ConnectionHandle {
        ConnectionHandle {
            outbound,
            staged: Vec::new(),
        }
    }

    /// Packets handed over or staged and not yet written: how far behind the client is.
    fn pending(&self) -> usize {
        self.outbound.pending() + self.staged.len()
    }

    /// Stages `message`, handing the staged packets over once there are `STAGE_CHUNK` of
    /// them; true if the connection has packets staged that were not before (the caller
    /// hands them over at the end of the group).
    fn stage(&mut self, message: Outbound) -> bool {
        self.staged.push(message);
        if self.staged.len() >= STAGE_CHUNK {
            self.hand_over();
            return false;
        }
        self.staged.len() == 1
    }

    /// Hands what is staged to the connection task, keeping the room for more of this group.
    fn hand_over(&mut self) {
        if !self.staged.is_empty() {
            self.outbound.send_all(&mut self.staged);
        }
    }

    /// Hands over the rest of the group and gives the room up: most connections are idle
    /// most of the time, and each would otherwise keep it after its last packet.
    fn end_group(&mut self) {
        self.hand_over();
        self.staged = Vec::new();
    }

    /// Hands over what is staged, then the close.
    fn close(mut self) {
        self.hand_over();
        let _ = self.outbound.send(Outbound::Close);
    }
}

/// From a connection task to the broker thread.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // boxing every packet would cost an allocation per message
pub(crate) enum Command {
    Connect {
        conn: ConnId,
        connect: Box<Connect>,
        handle: ConnectionHandle,
        /// The epoch the cluster granted, and whether the server chose the client id.
        epoch: Option<(berth_core::Epoch, bool)>,
        /// The client's address, for address rules of the ACL.
        source: Option<std::net::IpAddr>,
        /// The topics its credentials grant it (a JWT's `acl` claim), for the ACL.
        grants: Option<std::sync::Arc<berth_core::acl::Grants>>,
        /// The principal built for the cluster's claim (core shares it when it matches).
        principal: Option<std::sync::Arc<berth_core::acl::Principal>>,
        /// When the connection read the CONNECT, and whether the cluster took its session over
        /// from another node (for `berth_connect_duration_seconds`).
        read: Instant,
        taken_over: bool,
    },
    Packet {
        conn: ConnId,
        packet: Packet,
        /// When the connection read it (for `berth_publish_ack_duration_seconds`).
        read: Instant,
    },
    /// Consecutive PUBACKs of one connection, read together (`ack_run`).
    PubAcks {
        conn: ConnId,
        acks: crate::ack_run::AckRun,
    },
    Closed {
        conn: ConnId,
        reason: CloseReason,
    },
    /// Any other broker event; `done` fires once its effects are stored (after group commit).
    Call {
        event: Event,
        done: Option<oneshot::Sender<()>>,
    },
    /// Messages forwarded by another node; `reply` gets the acknowledgement once stored.
    Forwarded {
        messages: Vec<berth_core::Forwarded>,
        reply: oneshot::Sender<ForwardReply>,
    },
    /// Takeover, old owner: the state of a session another node claimed and the first page of
    /// its queue, read together (one trip to the broker thread for a session's usual backlog);
    /// or, where `may_wait` and the export must wait (`Broker::export_waits`), `Waits`.
    Export {
        client: ClientId,
        epoch: berth_core::Epoch,
        may_wait: bool,
        reply: oneshot::Sender<Exported>,
    },
    /// Takeover, old owner: one page of its queue.
    ExportQueue {
        client: ClientId,
        from: Option<QueueSeq>,
        reply: oneshot::Sender<ExportPage>,
    },
    /// Stranded copies: sessions held here that other nodes have claimed.
    Moving {
        reply: oneshot::Sender<Vec<(ClientId, berth_core::NodeId, berth_core::Epoch)>>,
    },
    /// Whether a late backlog for `client` at `epoch` would be stored here.
    AcceptsLate {
        client: ClientId,
        epoch: berth_core::Epoch,
        reply: oneshot::Sender<bool>,
    },
    /// An operator's request about a session (the admin API); the reply comes once the
    /// group's changes are stored and its actions sent.
    Admin {
        client: ClientId,
        request: berth_core::AdminRequest,
        reply: oneshot::Sender<AdminReply>,
    },
    /// An operator's PUBLISH (the admin API); the reply comes once it is stored wherever it
    /// went (`runtime/operator.rs`).
    Publish {
        request: Box<berth_core::broker::OperatorPublish>,
        reply: oneshot::Sender<operator::PublishReply>,
    },
    /// An operator's change to a session's subscriptions; the reply comes once it is stored.
    Subscription {
        client: ClientId,
        change: berth_core::broker::SubscriptionChange,
        reply: oneshot::Sender<operator::SubscriptionReply>,
    },
    /// Draining: close up to `count` connections (`CloseReason::Drained`); the reply comes
    /// once they are closed.
    Drain {
        count: usize,
        reply: oneshot::Sender<DrainStep>,
    },
    Shutdown,
}

/// One page of a session's queue and where the next page starts (`None`: the last page).
pub type ExportPage = Result<(Vec<Delivery>, Option<QueueSeq>), StoreError>;

/// The old owner's answer to a takeover's request for the session (`BrokerHandle::export`).
#[derive(Debug)]
pub enum Exported {
    /// Not yet (`Broker::export_waits`: an import still arriving, QoS 2 PUBLISHes in doubt).
    Waits,
    /// The session's state with the first page of its queue; `None`: no copy here for that
    /// claim.
    Ready(Result<Option<Box<(SessionExport, ExportPage)>>, berth_core::ExportError>),
}

/// The receiving node's answer to a forward: which clients it does not own.
pub type ForwardReply = Vec<ClientId>;

/// The broker's answer to an operator's request about a session.
pub(crate) type AdminReply = Result<berth_core::AdminAnswer, berth_core::AdminError>;

/// Messages per page of a session being taken over.
const EXPORT_PAGE: usize = 1000;

/// From the broker thread to a connection task.
///
/// The packet is inline (104 bytes), not boxed: a box per packet sent was an allocation here
/// and a free on the connection's thread, which this thread then collected (~7 % of it in
/// pairs QoS 2). What a queue of inline packets costs an idle connection is bounded where the
/// queue's room is kept (`connection.rs`, `BATCH_KEEP`): none once a wake-up brings a single
/// packet.
#[derive(Debug)]
pub(crate) enum Outbound {
    Packet(Packet),
    Close,
}

impl Command {
    /// How many broker events this command is: one, or one per PUBACK of a run.
    fn events(&self) -> usize {
        match self {
            Command::PubAcks { acks, .. } => acks.len(),
            _ => 1,
        }
    }
}

// The size the queues' room is reckoned in (`connection.rs`, `BATCH_KEEP`).
const _: () = assert!(std::mem::size_of::<Outbound>() <= 104);
// A run of PUBACKs rides in the room a command carrying a packet takes anyway (`ack_run`).
const _: () = assert!(std::mem::size_of::<Command>() <= 136);

pub(crate) fn now() -> UnixMillis {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    UnixMillis(u64::try_from(millis).unwrap_or(u64::MAX))
}

pub(crate) struct BrokerLoop<S: Store> {
    pub broker: Broker<S>,
    /// Bounded: a full channel makes connection tasks stop reading, so publishers faster than
    /// the broker feel TCP backpressure instead of growing memory.
    pub commands: Receiver<Command>,
    /// The runtime the connection tasks run on, to wait on the channel from this thread.
    pub runtime: Handle,
    pub storage_sync: bool,
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    /// The cluster (`SingleNode` when this server is not a cluster node).
    pub cluster: Arc<dyn ClusterPort>,
}

/// Waiting for the group commit, by the broker thread.
#[derive(Debug, Default)]
struct Replies {
    done: Vec<oneshot::Sender<()>>,
    forwards: HashMap<u64, oneshot::Sender<ForwardReply>>,
    next_token: u64,
    /// Drain steps, answered once their connections are closed.
    drained: Vec<(oneshot::Sender<DrainStep>, usize)>,
    /// Connections a drain step already closed (a connection the broker no longer knows is
    /// not picked again and again).
    drain_asked: std::collections::HashSet<ConnId>,
    /// Clients whose connections a drain closed and whose sessions are still held here.
    drained_clients: Vec<ClientId>,
    /// Operators' requests answered, sent once the group is committed and its actions out.
    admin: Vec<(oneshot::Sender<AdminReply>, AdminReply)>,
    /// Operators' publishes and subscription changes.
    operators: operator::Operators,
}

impl<S: Store> BrokerLoop<S> {
    /// Runs until `Command::Shutdown` or every sender is gone.
    pub(crate) fn run(mut self) -> Result<(), StoreError> {
        let mut connections: FastMap<ConnId, ConnectionHandle> = FastMap::default();
        let mut replies = Replies::default();
        let mut timing = Timing::new(self.metrics.clone());
        let mut packets = PacketCounts::default();
        let mut last_metrics = Instant::now();
        // The group's actions, dispatched; the vector goes back to the broker for the next.
        let mut actions = Vec::new();
        // Commands taken from the channel, a chunk at a time.
        let mut taken = Vec::with_capacity(RECV_CHUNK);
        // The group's sends that go before its write (core's `row_backed.rs`).
        let mut early = Vec::new();
        self.ready.store(true, Ordering::SeqCst);
        let result = loop {
            let timeout = self.time_to_next_deadline();
            let commands = &mut self.commands;
            // The timer must be created inside the runtime's context, hence the async block.
            let waited = self.runtime.block_on(async {
                tokio::time::timeout(timeout, commands.recv_many(&mut taken, RECV_CHUNK)).await
            });
            if let Ok(0) = waited {
                // Every sender is gone.
                taken.push(Command::Shutdown);
            }
            let mut shutdown = false;
            let mut outcome = Ok(());
            let mut handled = 0;
            // QoS 0 PUBLISHes dropped at connections too far behind.
            let mut slow = 0;
            'group: while !taken.is_empty() {
                // Read once per chunk: the clock read per command was ~5 % of this thread's
                // time, and what it dates (expiries, will delays) counts in seconds; a chunk
                // of traffic is well under a millisecond of work.
                let group_now = now();
                for command in taken.drain(..) {
                    if let Command::Shutdown = command {
                        shutdown = true;
                        break 'group;
                    }
                    let events = command.events();
                    outcome = self.apply(
                        command,
                        group_now,
                        &mut connections,
                        &mut replies,
                        &mut timing,
                        &mut packets,
                    );
                    if outcome.is_err() {
                        break 'group;
                    }
                    handled += events;
                }
                if handled < GROUP_LIMIT {
                    take_waiting(&mut self.commands, &mut taken, GROUP_LIMIT - handled);
                }
            }
            // What a shutdown or a failure left untaken is dropped with the loop.
            taken.clear();
            // Deliveries whose rows and sent mark an earlier write made durable go now: their
            // client works on them while this group is written (core's `row_backed.rs`).
            if outcome.is_ok() {
                self.broker.take_early_sends(&mut early);
                if !early.is_empty() {
                    slow += dispatch(
                        &mut early,
                        &mut connections,
                        &mut replies,
                        self.cluster.as_ref(),
                        &mut timing,
                        &mut packets,
                    );
                }
            }
            // One store write for the whole group: nothing of it has been acknowledged yet
            // (its actions, but for the early sends above, are dispatched below, after this
            // write and the optional sync).
            let commit_started = Instant::now();
            if outcome.is_ok() {
                outcome = self.broker.commit_pending();
            }
            if outcome.is_ok() && self.broker.next_deadline().is_some_and(|at| at <= now()) {
                outcome = self.broker.handle(now(), Event::Tick);
            }
            if shutdown && outcome.is_ok() {
                let conns: Vec<ConnId> = connections.keys().copied().collect();
                for conn in conns {
                    let event = Event::Closed {
                        conn,
                        reason: CloseReason::ServerShutdown,
                    };
                    if let Err(error) = self.broker.handle(now(), event) {
                        outcome = Err(error);
                        break;
                    }
                }
            }
            if outcome.is_ok() && self.storage_sync {
                outcome = self.broker.store_mut().sync();
            }
            if handled > 0 {
                self.metrics.observe_group_commit(commit_started.elapsed());
            }
            if let Err(error) = outcome {
                // The promise behind every acknowledgement is gone: send none, stop.
                tracing::error!(%error, "storage failed; the broker stops");
                break Err(error);
            }
            self.broker.writes_durable();
            self.broker.swap_actions(&mut actions);
            slow += dispatch(
                &mut actions,
                &mut connections,
                &mut replies,
                self.cluster.as_ref(),
                &mut timing,
                &mut packets,
            );
            for done in replies.done.drain(..) {
                let _ = done.send(());
            }
            for (reply, answer) in replies.admin.drain(..) {
                let _ = reply.send(answer);
            }
            replies.operators.answer_committed();
            if !replies.drained.is_empty() {
                let broker = &self.broker;
                replies
                    .drained_clients
                    .retain(|client| broker.holds_session(client));
                let held = replies.drained_clients.len();
                for (reply, closed) in replies.drained.drain(..) {
                    let left = connections.len();
                    let _ = reply.send(DrainStep { closed, left, held });
                }
            }
            for _ in 0..slow {
                self.broker.record_drop(DropReason::SlowConsumer);
            }
            if shutdown {
                break Ok(());
            }
            if last_metrics.elapsed() >= IDLE_WAKE {
                self.metrics.observe(self.broker.stats());
                self.metrics.observe_store(self.broker.store().memory());
                self.metrics.add_packets(&mut packets);
                last_metrics = Instant::now();
                timing.forget_stale(last_metrics);
            }
        };
        self.ready.store(false, Ordering::SeqCst);
        self.metrics.observe(self.broker.stats());
        self.metrics.add_packets(&mut packets);
        for (_, handle) in connections.drain() {
            handle.close();
        }
        result
    }

    /// Handles one command; `now` is the clock as read for its chunk.
    fn apply(
        &mut self,
        command: Command,
        now: UnixMillis,
        connections: &mut FastMap<ConnId, ConnectionHandle>,
        replies: &mut Replies,
        timing: &mut Timing,
        packets: &mut PacketCounts,
    ) -> Result<(), StoreError> {
        let event = match command {
            Command::Connect {
                conn,
                connect,
                handle,
                epoch,
                source,
                grants,
                principal,
                read,
                taken_over,
            } => {
                connections.insert(conn, handle);
                timing.connect_read(conn, read, taken_over);
                packets.received(berth_codec::PacketType::Connect);
                match epoch {
                    Some((epoch, assigned)) => Event::ConnectAs {
                        conn,
                        connect,
                        epoch,
                        assigned,
                        source,
                        grants,
                        principal,
                    },
                    None => Event::Connect {
                        conn,
                        connect,
                        source,
                        grants,
                    },
                }
            }
            Command::Packet { conn, packet, read } => {
                timing.packet_read(conn, &packet, read);
                packets.received(packet.packet_type());
                Event::Packet { conn, packet }
            }
            Command::PubAcks { conn, acks } => {
                for id in acks.ids() {
                    packets.received(berth_codec::PacketType::PubAck);
                    let packet = Packet::PubAck(berth_codec::PubAck::new(id));
                    self.broker
                        .handle_deferred(now, Event::Packet { conn, packet })?;
                }
                return Ok(());
            }
            Command::Closed { conn, reason } => {
                timing.closed(conn);
                Event::Closed { conn, reason }
            }
            Command::Call { event, done } => {
                replies.done.extend(done);
                event
            }
            Command::Forwarded { messages, reply } => {
                replies.next_token += 1;
                let token = replies.next_token;
                replies.forwards.insert(token, reply);
                Event::Forwarded { token, messages }
            }
            Command::Export {
                client,
                epoch,
                may_wait,
                reply,
            } => {
                if may_wait && self.broker.export_waits(&client) {
                    let _ = reply.send(Exported::Waits);
                    return Ok(());
                }
                // Exports read the store directly: it must hold the group's changes so far.
                self.broker.commit_pending()?;
                let exported = self.broker.export_session(&client, epoch).map(|found| {
                    found.map(|export| {
                        let first = self.broker.export_queue(&client, None, EXPORT_PAGE);
                        Box::new((export, first))
                    })
                });
                let _ = reply.send(Exported::Ready(exported));
                return Ok(());
            }
            Command::ExportQueue {
                client,
                from,
                reply,
            } => {
                self.broker.commit_pending()?;
                let _ = reply.send(self.broker.export_queue(&client, from, EXPORT_PAGE));
                return Ok(());
            }
            Command::Moving { reply } => {
                let _ = reply.send(self.broker.moving_sessions());
                return Ok(());
            }
            Command::AcceptsLate {
                client,
                epoch,
                reply,
            } => {
                let _ = reply.send(self.broker.accepts_late_backlog(&client, epoch));
                return Ok(());
            }
            Command::Admin {
                client,
                request,
                reply,
            } => {
                // Changes wait for the group's commit like an event's: the answer goes out
                // after it (a purge or a discard answered 200 is stored).
                let answer = self.broker.admin(now, &client, request);
                replies.admin.push((reply, answer));
                return Ok(());
            }
            Command::Publish { request, reply } => {
                replies.operators.publish(&mut self.broker, *request, reply);
                return Ok(());
            }
            Command::Subscription {
                client,
                change,
                reply,
            } => {
                replies
                    .operators
                    .subscription(&mut self.broker, client, change, reply);
                return Ok(());
            }
            Command::Drain { count, reply } => {
                let chosen: Vec<ConnId> = connections
                    .keys()
                    .filter(|conn| !replies.drain_asked.contains(conn))
                    .take(count)
                    .copied()
                    .collect();
                for &conn in &chosen {
                    replies.drain_asked.insert(conn);
                    if let Some(client) = self.broker.client_of(conn) {
                        replies.drained_clients.push(client.clone());
                    }
                    let reason = CloseReason::Drained;
                    self.broker
                        .handle_deferred(now, Event::Closed { conn, reason })?;
                }
                replies.drained.push((reply, chosen.len()));
                return Ok(());
            }
            Command::Shutdown => return Ok(()),
        };
        self.broker.handle_deferred(now, event)
    }

    fn time_to_next_deadline(&self) -> Duration {
        match self.broker.next_deadline() {
            Some(at) => Duration::from_millis(at.0.saturating_sub(now().0)).min(IDLE_WAKE),
            None => IDLE_WAKE,
        }
    }
}

/// Each PUBLISH handed to a connection, at TRACE under `berth::delivery` (off unless asked for,
/// e.g. `--log-level info,berth::delivery=trace`): for following one message through a cluster
/// test's node logs (its packet id, DUP, and the first bytes of its payload; the topic is empty
/// where a topic alias stands for it).
fn trace_publish_out(conn: ConnId, publish: &berth_codec::Publish) {
    if tracing::enabled!(target: "berth::delivery", tracing::Level::TRACE) {
        let shown = &publish.payload[..publish.payload.len().min(24)];
        tracing::trace!(
            target: "berth::delivery",
            conn = conn.0,
            topic = publish.topic.as_str(),
            payload = %String::from_utf8_lossy(shown),
            packet_id = publish.packet_id.map_or(0, |id| id.get()),
            dup = publish.dup,
            qos = publish.qos as u8,
            "publish out"
        );
    }
}

/// Moves the commands already waiting (at most `RECV_CHUNK`, and at most `room`) into
/// `taken`, without waiting.
fn take_waiting(commands: &mut Receiver<Command>, taken: &mut Vec<Command>, room: usize) {
    let mut context = Context::from_waker(Waker::noop());
    // Pending (nothing waiting) leaves the no-op waker registered; the next wait in `run`
    // registers its own before it looks again, so no wake-up is lost.
    let _ = commands.poll_recv_many(&mut context, taken, RECV_CHUNK.min(room));
}

/// Hands actions to the connections; returns how many QoS 0 PUBLISHes were dropped because
/// their connection was too far behind.
fn dispatch(
    actions: &mut Vec<Action>,
    connections: &mut FastMap<ConnId, ConnectionHandle>,
    replies: &mut Replies,
    cluster: &dyn ClusterPort,
    timing: &mut Timing,
    packets: &mut PacketCounts,
) -> u64 {
    let mut slow = 0;
    let now = Instant::now();
    // Connections with packets staged, handed over once every action is dispatched.
    let mut staged = Vec::new();
    for action in actions.drain(..) {
        match action {
            Action::Send { conn, packet } => {
                let Some(handle) = connections.get_mut(&conn) else {
                    // An operator's publish is acknowledged (stored everywhere).
                    replies.operators.settle(conn, true);
                    continue;
                };
                timing.sent(conn, &packet, now);
                let is_qos0_publish =
                    matches!(&packet, Packet::Publish(p) if p.qos == berth_codec::QoS::AtMostOnce);
                if is_qos0_publish && handle.pending() >= OUTBOUND_QOS0_LIMIT {
                    slow += 1;
                    continue;
                }
                if let Packet::Publish(publish) = &packet {
                    trace_publish_out(conn, publish);
                }
                packets.sent(packet.packet_type());
                if handle.stage(Outbound::Packet(packet)) {
                    staged.push(conn);
                }
            }
            Action::Close { conn } => {
                if let Some(handle) = connections.remove(&conn) {
                    handle.close();
                }
                timing.closed(conn);
                replies.drain_asked.remove(&conn);
                // An operator's publish that an owner did not store.
                replies.operators.settle(conn, false);
            }
            Action::ForwardAccepted { token, not_owned } => {
                if let Some(reply) = replies.forwards.remove(&token) {
                    let _ = reply.send(not_owned);
                }
            }
            Action::Forward {
                node,
                token,
                message,
                clients,
                publisher,
                retried,
            } => {
                let forwarded = berth_core::Forwarded {
                    message,
                    clients,
                    publisher,
                    retried,
                };
                cluster.forward(node, token, forwarded);
            }
            Action::ForwardResume { node } => cluster.resume_forwards(node),
            Action::ProbeNode { node } => cluster.probe_node(node),
            Action::Replicate(change) => {
                cluster.record(change);
            }
            Action::Adopt {
                client,
                epoch,
                from,
                fallback,
            } => {
                cluster.adopt(client, epoch, from, *fallback);
            }
        }
    }
    if actions.capacity() > ACTIONS_KEEP {
        *actions = Vec::new();
    }
    for conn in staged {
        // Gone meanwhile: its close handed the staged packets over first.
        if let Some(handle) = connections.get_mut(&conn) {
            handle.end_group();
        }
    }
    slow
}

#[cfg(test)]
mod tests;

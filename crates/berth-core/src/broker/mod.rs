//! The broker state machine: events in, actions out, state changes through the storage port.
//!
//! ```text
//!  Event::Connect / Packet / Closed / Tick ──▶ Broker::handle(now, event)
//!        │                                      ├─ updates sessions, index, retained (memory)
//!        │                                      ├─ Store::write(batch)   one batch per event
//!        │                                      └─ pushes Actions (Send / Close)
//!  server: after a group of events, Store::sync (if configured), then executes the actions
//! ```
//!
//! Every acknowledgement (PUBACK, PUBREC, SUBACK, CONNACK) is an action, and actions leave the
//! broker only after the batch that made them true was written: a PUBACK is a promise that the
//! message is in every matched persistent session's queue. The one exception: a delivery from
//! a queue row that a durable sent mark covers depends on nothing in the batch, and may leave
//! before it is written (`Broker::take_early_sends`, `row_backed.rs`).

mod acks;
mod admin;
mod claims;
mod cluster;
mod connect;
mod delivery;
mod doubt;
mod expiry;
mod fences;
mod forwarding;
mod handoff;
mod identity;
mod late_descent;
mod merge;
mod publish;
mod queue_page;
mod row_backed;
mod session;
mod snapshot;
mod subscribe;
mod takeover;
mod window;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use berth_codec::{DecodeError, DisconnectReasonCode, Packet, TopicName};

use crate::cluster::{ClusterEvent, Forwarded, NodeId, QueuePage, Replicate, SessionExport};
use crate::config::BrokerConfig;
use crate::fast_map::FastMap;
use crate::ids::{ClientId, ConnId, Epoch};
use crate::index::SubscriptionIndex;
use crate::message::Message;
use crate::stats::Stats;
use crate::store::{Batch, Store, StoreError};
use crate::time::UnixMillis;

use connect::Who;
use session::{Queue, Session};

pub use admin::{
    AdminAnswer, AdminError, AdminRequest, Discarded, INSPECT_LIMIT, Kicked, OperatorPublish,
    OperatorPublished, PublishRefusal, Purged, QueuedView, SessionView, SubscriptionAnswer,
    SubscriptionChange, is_operator_conn, operator_conn, plan_subscription,
};

/// Something that happened, reported by the server.
#[derive(Debug)]
pub enum Event {
    /// A connection's first packet: a valid CONNECT.
    Connect {
        conn: ConnId,
        connect: Box<berth_codec::Connect>,
        /// The client's address (the PROXY header's behind a balancer), for address rules.
        source: Option<std::net::IpAddr>,
        /// The topics the client's credentials grant it (a JWT's `acl` claim), if they say.
        grants: Option<Arc<crate::acl::Grants>>,
    },
    /// Any later packet of a connected client.
    Packet { conn: ConnId, packet: Packet },
    /// The connection ended or must end for a reason other than the client's DISCONNECT.
    Closed { conn: ConnId, reason: CloseReason },
    /// Time passed: due wills and session expiries fire.
    Tick,
    /// A CONNECT whose session the cluster has granted this node at `epoch`.
    ConnectAs {
        conn: ConnId,
        connect: Box<berth_codec::Connect>,
        epoch: Epoch,
        /// The server chose the client id (an MQTT 5 client learns it from CONNACK).
        assigned: bool,
        source: Option<std::net::IpAddr>,
        grants: Option<Arc<crate::acl::Grants>>,
        /// The principal the server built for the claim (`Who::principal`).
        principal: Option<Arc<crate::acl::Principal>>,
    },
    /// The replicated registry changed.
    Cluster(ClusterEvent),
    /// Another node routed messages to sessions owned here; answer with `ForwardAccepted`.
    Forwarded {
        token: u64,
        messages: Vec<Forwarded>,
    },
    /// Owner `node` stored (or could not be reached for) the forward with `token`.
    ForwardDone {
        token: u64,
        delivered: bool,
        node: NodeId,
    },
    /// `node` did not answer a forward nor a probe within the handoff bound: what was on its
    /// way there (with the forward tokens, in order) is kept here for its sessions, and what
    /// would go there is kept too until `NodeReachable` (hinted handoff, `broker/handoff.rs`).
    HandOff {
        node: NodeId,
        items: Vec<(Option<u64>, Forwarded)>,
    },
    /// A probe of `node` answered after a `HandOff`: forwards go there again
    /// (`Action::ForwardResume`), and so do the entries kept for its sessions.
    NodeReachable { node: NodeId },
    /// Takeover, new owner: the pull from the old owner starts.
    ImportBegin { client: ClientId },
    /// Takeover, new owner: the session's state from its old owner.
    ImportState {
        client: ClientId,
        export: Box<SessionExport>,
    },
    /// Takeover, new owner: a page of the backlog, in order.
    ImportQueue { client: ClientId, page: QueuePage },
    /// Takeover, new owner: every page came and is stored, and the old owner is about to be
    /// told to release its copy (`ImportDone` follows). `epoch`: the claim the pull came for
    /// (its state's `record.epoch`), which tells overlapping pulls of one session apart.
    ImportComplete { client: ClientId, epoch: Epoch },
    /// Takeover, new owner: nothing more to import.
    ImportDone { client: ClientId },
    /// A backlog recovered late from a node that was unreachable when the session moved here:
    /// appended for the session at `epoch`, if it still runs here at that epoch.
    ImportLate {
        client: ClientId,
        epoch: Epoch,
        /// The node the backlog was recovered from.
        holder: NodeId,
        /// The recovered copy's state: its in-flight window (under the packet ids the client
        /// may still hold), its incoming QoS 2 ids and those in doubt, the identities it took,
        /// and whether it resumed without an older copy's QoS 2 state itself.
        export: Box<SessionExport>,
        /// Its queue, in order.
        page: QueuePage,
    },
    /// Takeover, old owner: the new owner (of the claim at `epoch`) stored the session; delete
    /// the copy here. A release for an older claim than the one the copy now moves to is stale.
    Release { client: ClientId, epoch: Epoch },
    /// Takeover, old owner: the claim at `epoch` asks for the session (before the export is
    /// read, see [`Broker::export_waits`]). A claim of this node that was overtaken before it
    /// pulled anything (a dormant claim) makes this node pull the session now and hand it on.
    ExportWanted { client: ClientId, epoch: Epoch },
    /// A message the server publishes itself (the leader publishing a dead owner's will).
    PublishMessage { message: Box<Message> },
}

/// Why the server reports a connection as closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The socket closed or failed.
    ConnectionLost,
    /// Nothing arrived within 1.5 × the keep alive.
    KeepAliveTimeout,
    /// The client sent bytes that are not a valid packet.
    Malformed(DecodeError),
    /// The server is shutting down.
    ServerShutdown,
    /// The server is draining: it sends its clients to other nodes (MQTT 5: DISCONNECT 0x9C Use
    /// another server). Unlike a shutdown, the connection ends here and now, as any connection
    /// the server closes: the will follows its delay, and the session waits for its client on
    /// whichever node it reconnects to.
    Drained,
    /// An operator closed it (`Broker::kick`, `Broker::discard`; MQTT 5: DISCONNECT 0x98
    /// Administrative action). As any connection the server closes: the will follows its
    /// delay, and a session that outlives its connection waits for its client.
    Kicked,
}

/// What the server must do.
// `Send` is large (a whole `Packet`) and `Close` small; boxing the packet would cost one
// allocation per packet on the hot path, and actions are drained right after each event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send {
        conn: ConnId,
        packet: Packet,
    },
    /// Flush what was sent to this connection, then close it.
    Close {
        conn: ConnId,
    },
    /// Hand `message` to node `node` for its sessions `clients`; with a token, report the
    /// outcome as `Event::ForwardDone`.
    Forward {
        node: NodeId,
        token: Option<u64>,
        message: Arc<Message>,
        clients: Vec<ClientId>,
        publisher: Option<ClientId>,
        /// It may have reached `node` before (a handoff entry whose first forward went
        /// unanswered): delivered with DUP = 1.
        retried: bool,
    },
    /// Forwards to `node` go out again after a `HandOff`: every `Forward` before this one was
    /// made while `node` counted as reachable and must come back as a `HandOff` if it has not
    /// left yet (so that nothing overtakes what was kept here).
    ForwardResume {
        node: NodeId,
    },
    /// `node` counts as unreachable now (a `HandOff` that its own forward queue did not send:
    /// a re-routed forward's owner did not answer): its queue probes it until it answers
    /// (`Event::NodeReachable`).
    ProbeNode {
        node: NodeId,
    },
    /// The forwarded messages of `token` are stored; `not_owned` were not for this node.
    ForwardAccepted {
        token: u64,
        not_owned: Vec<ClientId>,
    },
    /// Record a session change in the cluster.
    Replicate(Replicate),
    /// A claim of this node for `client` was committed but no connection came to run it (its
    /// CONNECT was refused while the claim was still on its way): take the session over from
    /// `from` anyway (as a takeover does: `ImportBegin` … `ImportDone`; `fallback` when `from`
    /// cannot be reached or is unknown), so that its backlog is not left behind. The session
    /// then waits offline here like any other.
    Adopt {
        client: ClientId,
        epoch: Epoch,
        from: Option<NodeId>,
        fallback: Box<SessionExport>,
    },
}

/// Store operations a group's batch is given room for at most up front (see `commit`).
const BATCH_ROOM_KEEP: usize = 4096;

/// `expires_at` of an offline session that never expires.
const NEVER: UnixMillis = UnixMillis(u64::MAX);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Will(ClientId),
    SessionExpiry(ClientId),
    /// The longest wait of a connection's acknowledgements held for flow control.
    AckHold(ConnId),
    /// A claim of this node that no connection has come to run (`Action::Adopt`).
    Unclaimed(ClientId),
    /// The end of a session's wait for an older copy's QoS 2 state (`deliveries_held`).
    DeliveryWait(ClientId),
}

/// The single writer of all session and routing state.
#[derive(Debug)]
pub struct Broker<S: Store> {
    config: BrokerConfig,
    store: S,
    /// Boxed: a `Session` is ~300 bytes, and a map holding it inline pays that for every empty
    /// bucket too (a hash table runs between 44 % and 87 % full).
    sessions: FastMap<ClientId, Box<Session>>,
    conns: FastMap<ConnId, ClientId>,
    index: SubscriptionIndex,
    retained: HashMap<TopicName, Arc<Message>>,
    timers: BTreeSet<(UnixMillis, Timer)>,
    batch: Batch,
    actions: Vec<Action>,
    stats: Stats,
    assigned_ids: u64,
    /// A storage read that failed mid-event; reported by `handle`.
    fault: Option<StoreError>,
    /// Sessions whose full queue refused the message being routed (see `refuse_for_quota`).
    route_quota_drops: u32,
    /// While a client's PUBLISH is routed: the connected sessions it was queued for while
    /// their queues were congested (see `acks`).
    route_congested: Option<Vec<ClientId>>,
    /// Acknowledgements to publishers that wait (see `acks`).
    held: acks::HeldAcks,
    /// Set when the broker runs as a cluster node.
    cluster: Option<Box<cluster::ClusterState>>,
    /// Messages kept for other nodes' sessions whose owner could not be reached.
    handoff: handoff::Handoff,
    /// Where in `batch` each session's `Op::PutSentMark` of this group is (`row_backed`).
    sent_marks: FastMap<ClientId, usize>,
    /// Where in `batch` each session's `Op::DequeueThrough` of this group is (`row_backed`).
    dequeue_marks: FastMap<ClientId, usize>,
    /// Where in `actions` the sends are that may leave before the group's write
    /// ([`Broker::take_early_sends`], `row_backed`).
    early_at: Vec<usize>,
    /// Batches written, and how many of them the caller has said are durable
    /// ([`Broker::writes_durable`]): a sent mark is a lease only once its write is.
    writes: u64,
    durable_writes: u64,
}

impl<S: Store> Broker<S> {
    /// Rebuilds the broker from `store`. Sessions that were connected when the broker stopped
    /// are offline now: their expiry starts counting at `now`.
    pub fn open(
        config: BrokerConfig,
        mut store: S,
        now: UnixMillis,
    ) -> Result<Broker<S>, StoreError> {
        let loaded = store.load()?;
        let mut broker = Broker {
            config,
            store,
            sessions: FastMap::default(),
            conns: FastMap::default(),
            index: SubscriptionIndex::new(),
            retained: HashMap::new(),
            timers: BTreeSet::new(),
            batch: Batch::default(),
            actions: Vec::new(),
            stats: Stats::default(),
            assigned_ids: 0,
            fault: None,
            route_quota_drops: 0,
            route_congested: None,
            held: acks::HeldAcks::default(),
            cluster: None,
            handoff: handoff::Handoff::restore(loaded.handoff),
            sent_marks: FastMap::default(),
            dequeue_marks: FastMap::default(),
            early_at: Vec::new(),
            writes: 0,
            durable_writes: 0,
        };
        for message in loaded.retained {
            broker
                .retained
                .insert(message.topic.clone(), Arc::new(message));
        }
        for stored in loaded.sessions {
            broker.restore_session(stored, now);
        }
        broker.commit()?;
        broker.refresh_levels();
        Ok(broker)
    }

    fn restore_session(&mut self, stored: crate::store::LoadedSession, now: UnixMillis) {
        use crate::store::SessionExpiry;
        let record = stored.record;
        let client = stored.client;
        let mut session = Session::new(record.epoch, record.protocol, record.expiry);
        session.stored = true;
        session.will = record.will.map(Box::new);
        session.will_due_at = record.will_due_at;
        session.incoming_qos2 = stored.incoming_qos2.into_iter().collect();
        session.qos2_state_elsewhere = record.qos2_state_elsewhere;
        session.incoming_qos2_elsewhere = record.incoming_qos2_elsewhere;
        session.sent_mark = stored.sent_mark;
        session.dequeued_through = stored.dequeued_through;
        session.restore_qos2_doubt(record.qos2_doubt);
        session.landed = record.landed.min(record.epoch);
        if !stored.qos2_retry.is_empty() {
            session.qos2_retry = Some(Box::new(stored.qos2_retry.into_iter().collect()));
        }
        if !stored.seen.is_empty() {
            let mut seen = stored.seen;
            seen.sort_by_key(|(slot, _)| *slot);
            session.seen = Some(Box::new(session::Seen::from_rows(seen)));
        }
        session.queue = Queue {
            bounds: stored.queue,
            head: Default::default(),
        };
        // Kept only while a message waits for them (`Session::release_kept_id`).
        if !stored.kept_ids.is_empty() {
            if session.queue.is_empty() {
                self.batch.push(crate::store::Op::PutKeptIds {
                    client: client.clone(),
                    ids: Vec::new(),
                });
            } else {
                session.kept_ids = Some(Box::new(stored.kept_ids.into_iter().collect()));
            }
        }
        session.inflight_loaded = false;
        for (filter, sub) in stored.subscriptions {
            self.index.insert(&client, &filter, sub.clone());
            session.subscriptions.insert(filter, sub);
        }
        if record.expires_at.is_none() {
            // It was connected when the broker stopped: that connection ended abnormally, now.
            session.expires_at = Some(match record.expiry {
                SessionExpiry::After(secs) => now.plus_secs(secs),
                SessionExpiry::Never => NEVER,
            });
            if let Some(will) = &session.will {
                let delay = match record.expiry {
                    SessionExpiry::After(secs) => will.delay_secs.min(secs),
                    SessionExpiry::Never => will.delay_secs,
                };
                session.will_due_at = Some(now.plus_secs(delay));
            }
            self.batch.push(crate::store::Op::PutSession {
                client: client.clone(),
                record: record_of(&session),
            });
        } else {
            session.expires_at = record.expires_at;
        }
        if let Some(at) = session.expires_at.filter(|at| *at != NEVER) {
            self.timers
                .insert((at, Timer::SessionExpiry(client.clone())));
        }
        if let Some(at) = session.will_due_at {
            self.timers.insert((at, Timer::Will(client.clone())));
        }
        self.sessions.insert(client, session);
    }

    /// Handles one event. Its state changes are written to the store before this returns; its
    /// actions wait in [`Broker::take_actions`].
    pub fn handle(&mut self, now: UnixMillis, event: Event) -> Result<(), StoreError> {
        self.process(now, event);
        self.commit()
    }

    /// Handles one event and leaves its state changes pending, to be written together with
    /// those of the events after it by [`Broker::commit_pending`]: a group of events costs one
    /// store write instead of one each. The caller must not act on (or acknowledge) anything
    /// from [`Broker::take_actions`] before that commit has succeeded, but for what
    /// [`Broker::take_early_sends`] hands out. Reads the broker makes
    /// in the meantime see the pending changes (see `read_queue_through`).
    pub fn handle_deferred(&mut self, now: UnixMillis, event: Event) -> Result<(), StoreError> {
        self.process(now, event);
        match self.fault.take() {
            Some(fault) => Err(fault),
            None => Ok(()),
        }
    }

    /// Writes the changes of the events handled with [`Broker::handle_deferred`].
    pub fn commit_pending(&mut self) -> Result<(), StoreError> {
        self.commit()
    }

    pub(super) fn process(&mut self, now: UnixMillis, event: Event) {
        // Due timers first: a session whose deadline has passed is gone before any CONNECT can
        // resume it, however late the server's next Tick would have come.
        if self.next_deadline().is_some_and(|at| at <= now) {
            self.on_tick(now);
        }
        let Some(event) = self.park_event(event) else {
            return;
        };
        match event {
            Event::Connect {
                conn,
                connect,
                source,
                grants,
            } => {
                let who = Who {
                    source,
                    grants,
                    principal: None,
                };
                self.on_connect(now, conn, *connect, None, who)
            }
            Event::ConnectAs {
                conn,
                connect,
                epoch,
                assigned,
                source,
                grants,
                principal,
            } => {
                let client = ClientId::new(connect.client_id.clone());
                if self.import_pending(&client) {
                    // Behind an import of its session still under way here: it waits.
                    let event = Event::ConnectAs {
                        conn,
                        connect,
                        epoch,
                        assigned,
                        source,
                        grants,
                        principal,
                    };
                    self.park_connect(conn, client.clone(), event);
                    if !self.import_started(&client) {
                        // Nothing pulls it yet (a claim replayed from the log after a restart,
                        // whose connection is gone): pull it now rather than at the deadline.
                        self.unclaimed_due(&client);
                    }
                    return;
                }
                let who = Who {
                    source,
                    grants,
                    principal,
                };
                self.on_connect(now, conn, *connect, Some((epoch, assigned)), who)
            }
            Event::Packet { conn, packet } => self.on_packet(now, conn, packet),
            Event::Closed { conn, reason } => self.on_closed(now, conn, reason),
            Event::Tick => {
                self.on_tick(now);
                if self.handoff.pump_due(now) {
                    self.pump_handoff(now);
                }
            }
            event => cluster::handle_cluster_event(self, now, event),
        }
    }

    /// The actions of every event handled since the last call, in order.
    pub fn take_actions(&mut self) -> Vec<Action> {
        self.early_at.clear();
        std::mem::take(&mut self.actions)
    }

    /// [`Broker::take_actions`] into `spare` (emptied first), whose room the next events'
    /// actions then reuse: the server's loop takes a group's actions this way, so that a group
    /// of thousands of actions does not grow a new vector, copy by copy, every time.
    pub fn swap_actions(&mut self, spare: &mut Vec<Action>) {
        spare.clear();
        self.early_at.clear();
        std::mem::swap(&mut self.actions, spare);
    }

    /// When the next will or session expiry is due, for the server's timer.
    pub fn next_deadline(&self) -> Option<UnixMillis> {
        let timer = self.timers.first().map(|(at, _)| *at);
        match (timer, self.handoff.next_pump()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn stats(&mut self) -> &Stats {
        self.refresh_levels();
        &self.stats
    }

    /// Counts a drop decided outside the core (the server's outbound backpressure).
    /// The client connected on `conn`, if it has a session.
    pub fn client_of(&self, conn: ConnId) -> Option<&ClientId> {
        self.conns.get(&conn)
    }

    /// Whether this node holds a session of `client`: its own, or a copy another node claimed
    /// and has not yet confirmed storing (a draining node waits for its clients' sessions to
    /// have moved before it stops).
    pub fn holds_session(&self, client: &ClientId) -> bool {
        self.sessions.contains_key(client)
    }

    pub fn record_drop(&mut self, reason: crate::stats::DropReason) {
        self.stats.count_drop(reason);
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The storage port, for the metrics' [`Store::memory`].
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The storage port, for the server's group-commit `sync`.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    fn refresh_levels(&mut self) {
        self.stats.connections = self.conns.len() as u64;
        self.stats.sessions = self.sessions.len() as u64;
        // One pass over the sessions for the three levels (every 500 ms on the broker thread).
        let (mut queued, mut largest, mut subscriptions) = (0, 0, 0);
        for session in self.sessions.values() {
            queued += session.queue.bounds.count;
            largest = largest.max(session.queue.bounds.count);
            subscriptions += session.subscriptions.len() as u64;
        }
        self.stats.queued_messages = queued;
        self.stats.largest_queue_messages = largest;
        self.stats.subscriptions = subscriptions;
        self.stats.retained_messages = self.retained.len() as u64;
        self.stats.handoff_messages = self.handoff.total();
        self.stats.stranded_messages = self.cluster.as_ref().map_or(0, |c| {
            c.moving
                .keys()
                .filter_map(|client| self.sessions.get(client))
                .map(|s| s.queue.bounds.count)
                .sum()
        });
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        if let Some(fault) = self.fault.take() {
            return Err(fault);
        }
        if self.batch.is_empty() {
            return Ok(());
        }
        // The next group starts with the room this one needed (up to a bound): a busy broker's
        // groups are alike, and growing each from empty copied the ops over and over.
        let room = self.batch.ops.len().min(BATCH_ROOM_KEEP);
        self.writes += 1;
        self.lease_sent_marks();
        self.sent_marks.clear();
        self.dequeue_marks.clear();
        let batch = std::mem::replace(
            &mut self.batch,
            Batch {
                ops: Vec::with_capacity(room),
            },
        );
        self.store.write(batch)
    }

    fn on_packet(&mut self, now: UnixMillis, conn: ConnId, packet: Packet) {
        let Some(client) = self.conns.get(&conn).cloned() else {
            return;
        };
        match packet {
            Packet::Publish(publish) => self.on_publish(now, conn, &client, publish),
            Packet::PubAck(ack) => self.on_puback(now, &client, ack.packet_id),
            Packet::PubRec(rec) => self.on_pubrec(now, &client, rec),
            Packet::PubRel(rel) => self.on_pubrel(conn, &client, rel),
            Packet::PubComp(comp) => self.on_pubcomp(now, &client, comp.packet_id),
            Packet::Subscribe(subscribe) => self.on_subscribe(now, conn, &client, subscribe),
            Packet::Unsubscribe(unsubscribe) => self.on_unsubscribe(conn, &client, unsubscribe),
            Packet::PingReq => self.send(conn, Packet::PingResp),
            Packet::Disconnect(disconnect) => self.on_disconnect(now, conn, &client, disconnect),
            // A second CONNECT, or packets only a server sends, violate the protocol.
            Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp
            | Packet::Auth(_) => {
                self.disconnect_with(now, conn, &client, DisconnectReasonCode::ProtocolError)
            }
        }
    }

    fn send(&mut self, conn: ConnId, packet: Packet) {
        self.actions.push(Action::Send { conn, packet });
    }

    fn next_assigned_id(&mut self, now: UnixMillis) -> String {
        self.assigned_ids += 1;
        format!("berth-{:x}-{}", now.0, self.assigned_ids)
    }

    fn new_epoch(&self, client: &ClientId) -> Epoch {
        self.sessions
            .get(client)
            .map(|s| s.epoch.next())
            .unwrap_or(Epoch(1))
    }
}

/// The stored form of a session's own fields.
fn record_of(session: &Session) -> crate::store::SessionRecord {
    crate::store::SessionRecord {
        epoch: session.epoch,
        protocol: session.protocol,
        expiry: session.expiry,
        expires_at: session.expires_at,
        will: session.will.as_deref().cloned(),
        will_due_at: session.will_due_at,
        qos2_state_elsewhere: session.qos2_state_elsewhere,
        incoming_qos2_elsewhere: session.incoming_qos2_elsewhere,
        qos2_doubt: session.qos2_doubt(),
        landed: session.landed,
    }
}

#[cfg(test)]
mod tests;

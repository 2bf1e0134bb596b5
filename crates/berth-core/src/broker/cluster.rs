//! The broker as one node of a cluster: other nodes' sessions in the index, forwarding to their
//! owners, PUBACKs that wait for those owners, and sessions moving between nodes.
//!
//! Every node's index holds every session's subscriptions. A match on a local session is
//! delivered here; a match on another node's session becomes an [`Action::Forward`] to its
//! owner, which delivers by that session's own subscriptions. A QoS 1/2 PUBLISH is acknowledged
//! only when every owner has stored it, and acknowledgements to one connection keep the order of
//! its PUBLISHes ([MQTT-4.6.0-2]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use berth_codec::{DisconnectReasonCode, Packet, PubAckReasonCode, QoS, TopicFilter};

use super::{Action, Broker, Event};
use crate::cluster::{ClusterEvent, Forwarded, NodeId, Replicate};
use crate::ids::{ClientId, ConnId, Epoch};

use crate::index::Match;
use crate::message::{Delivery, Message};
use crate::store::{Op, Store, SubscriptionRecord, WillRecord};
use crate::time::UnixMillis;

/// Cluster state of a broker that runs as a node.
#[derive(Debug, Default)]
pub(crate) struct ClusterState {
    pub node: NodeId,
    /// Sessions owned by other nodes: owner and the filters they have in the index.
    pub remote: HashMap<ClientId, Remote>,
    /// Local sessions another node has claimed; kept until the new owner has stored them.
    pub moving: HashMap<ClientId, (NodeId, crate::ids::Epoch)>,
    /// Sessions this node claimed and is still receiving from their old owner; forwarded
    /// messages for them wait (unacknowledged) until the backlog is in.
    pub importing: HashSet<ClientId>,
    /// Of those, the ones whose takeover has started pulling (`ImportBegin`).
    pub import_started: HashSet<ClientId>,
    pub deferred: Vec<(u64, Vec<Forwarded>)>,
    /// Messages published here for sessions being imported here: delivered (and their
    /// publishers acknowledged) after the backlog.
    pub deferred_local: Vec<(Option<u64>, Forwarded)>,
    /// Publishes waiting for other nodes, by token.
    pub waiting: HashMap<u64, Waiting>,
    pub next_token: u64,
    /// Other nodes' sessions matched by the message being routed.
    pub route_remote: HashMap<NodeId, Vec<ClientId>>,
    /// Connections granted a session whose state is still arriving here (a newer claim made on
    /// this node while an earlier claim's import runs): their CONNECT and the packets after it
    /// wait, in order, until the import is done (`on_import_done`).
    pub parked: Vec<Parked>,
    /// Claims of this node that wait for a connection to run their takeover (see
    /// `Action::Adopt`).
    pub unclaimed: HashMap<ClientId, Unclaimed>,
    /// Wills wait until this node has caught up with the cluster's log (see `CaughtUp`).
    pub timers_held: bool,
    /// Wills that came due meanwhile: published at `CaughtUp` unless the leader did it.
    pub parked_wills: Vec<(ClientId, crate::ids::Epoch, WillRecord)>,
}

#[derive(Debug, Default)]
pub(crate) struct Remote {
    pub owner: NodeId,
    /// The epoch of the owner's claim, as far as this node has applied the registry: a
    /// connection granted an older epoch here is stale (see `superseded`).
    pub epoch: Epoch,
    pub filters: Vec<TopicFilter>,
}

#[derive(Debug)]
pub(crate) struct Unclaimed {
    pub epoch: Epoch,
    /// The node that held the session before (where its backlog is).
    pub from: Option<NodeId>,
    pub subscriptions: Vec<(TopicFilter, SubscriptionRecord)>,
    /// The takeover runs without a connection (`Action::Adopt` was sent).
    pub adopted: bool,
}

/// How long a claim of this node may wait for its connection to start the takeover before the
/// node runs it alone. The connection starts it as soon as the broker has the claim, so this
/// only passes when the CONNECT was refused (the claim committed after the admission gave up).
pub(crate) const UNCLAIMED_WAIT_MS: u64 = 10_000;

#[derive(Debug)]
pub(crate) struct Parked {
    pub conn: ConnId,
    pub client: ClientId,
    pub events: Vec<Event>,
}

#[derive(Debug)]
pub(crate) struct Waiting {
    conn: ConnId,
    pub(super) remaining: usize,
    failed: bool,
    /// The publisher and packet id of a QoS 2 PUBLISH (see `send_ack`).
    qos2: Option<(ClientId, berth_codec::PacketId)>,
}

impl<S: Store> Broker<S> {
    /// Makes this broker node `node` of a cluster.
    pub fn join_cluster(&mut self, node: NodeId) {
        self.cluster = Some(Box::new(ClusterState {
            node,
            timers_held: true,
            ..Default::default()
        }));
    }

    pub(super) fn on_cluster(&mut self, now: UnixMillis, event: ClusterEvent) {
        let Some(node) = self.cluster.as_ref().map(|c| c.node) else {
            return;
        };
        match event {
            ClusterEvent::Owner {
                client,
                owner,
                epoch,
                kept,
                subscriptions,
            } => {
                if self.sessions.get(&client).is_some_and(|s| s.epoch >= epoch) {
                    // The local session is newer than this claim (a replayed log entry).
                    return;
                }
                if owner != node && self.import_pending(&client) && !self.import_started(&client) {
                    // Nothing is being pulled yet (a claim replayed from the log at start, or
                    // one whose connection never came): nothing to hand on.
                    if let Some(cluster) = self.cluster.as_mut() {
                        cluster.importing.remove(&client);
                        cluster.unclaimed.remove(&client);
                    }
                }
                if owner != node && self.import_pending(&client) {
                    // Claimed elsewhere while its state is still arriving here (a chained
                    // takeover): the import goes on, and what it brings is a copy moving to the
                    // new owner, which pulls it once complete (`export_session` waits for it).
                    // A Clean Start elsewhere ends it: what still arrives is dropped.
                    let here = self.sessions.contains_key(&client);
                    if let Some(cluster) = self.cluster.as_mut() {
                        if !kept {
                            cluster.importing.remove(&client);
                        } else if !here {
                            cluster.moving.insert(client.clone(), (owner, epoch));
                        }
                    }
                }
                if owner == node {
                    // Where the session's newest state is: the node its copy here was moving
                    // to, or its owner so far.
                    let from = self
                        .cluster
                        .as_ref()
                        .and_then(|c| {
                            c.moving
                                .get(&client)
                                .map(|(to, _)| *to)
                                .or_else(|| c.remote.get(&client).map(|r| r.owner))
                        })
                        .filter(|from| *from != node);
                    // A copy here that was moving to another node is an *older* copy of the
                    // session this node now takes back: like a session that is not here at
                    // all, it waits for the state of the current owner.
                    let older_copy = self
                        .cluster
                        .as_mut()
                        .is_some_and(|c| c.moving.remove(&client).is_some());
                    self.forget_remote(&client);
                    let importing = self.import_pending(&client);
                    let arrives = older_copy || !self.sessions.contains_key(&client);
                    if kept && arrives {
                        // Until its state arrives from the old owner, its routes (the registry's
                        // subscriptions) stay and point here; what they match waits for the
                        // backlog (see `importing`) instead of finding no subscriber. (A newer
                        // claim of this node while an older one's import runs keeps waiting for
                        // that import.)
                        self.add_remote(&client, node, Some(epoch), subscriptions.clone());
                        // Unless no node is known to hold it: then only a takeover its
                        // connection starts (`ImportBegin`) makes it wait.
                        if let Some(cluster) = self.cluster.as_mut()
                            && !importing
                            && from.is_some()
                        {
                            cluster.importing.insert(client.clone());
                            cluster.unclaimed.insert(
                                client.clone(),
                                Unclaimed {
                                    epoch,
                                    from,
                                    subscriptions,
                                    adopted: false,
                                },
                            );
                        }
                        let at = UnixMillis(now.0.saturating_add(UNCLAIMED_WAIT_MS));
                        self.timers
                            .insert((at, super::Timer::Unclaimed(client.clone())));
                    }
                    // (Clean Start here: the CONNECT that follows discards an older copy.)
                    return;
                }
                if self.sessions.contains_key(&client) && !self.is_moving(&client) {
                    self.hand_over(now, &client, owner, epoch, kept);
                } else if self.is_moving(&client) {
                    if kept {
                        // Claimed again while still here: the copy goes to the newest owner.
                        if let Some(to) = self
                            .cluster
                            .as_mut()
                            .and_then(|c| c.moving.get_mut(&client))
                        {
                            *to = (owner, epoch);
                        }
                    } else {
                        // Clean Start elsewhere: the session this copy belonged to is over.
                        self.discard_moving_copy(&client);
                    }
                }
                // Routes follow the registry, also for a copy still here (its own
                // subscriptions stay with it for the export).
                self.forget_remote(&client);
                self.add_remote(&client, owner, Some(epoch), subscriptions);
            }
            ClusterEvent::Subscribed {
                client,
                owner,
                subscriptions,
            } => {
                if owner == node
                    || (self.sessions.contains_key(&client) && !self.is_moving(&client))
                {
                    return;
                }
                self.add_remote(&client, owner, None, subscriptions);
            }
            ClusterEvent::Unsubscribed { client, filters } => {
                let Some(cluster) = self.cluster.as_mut() else {
                    return;
                };
                if let Some(remote) = cluster.remote.get_mut(&client) {
                    remote.filters.retain(|f| !filters.contains(f));
                    for filter in &filters {
                        self.index.remove(&client, filter);
                    }
                }
            }
            ClusterEvent::Dropped { client, epoch } => {
                let moved_to_dropped = self
                    .cluster
                    .as_ref()
                    .and_then(|c| c.moving.get(&client))
                    .is_some_and(|(_, moving)| *moving == epoch);
                if moved_to_dropped {
                    // The session this copy was moving to has ended on its owner (a backlog
                    // never pulled from here ends with it, as it would have there).
                    self.discard_moving_copy(&client);
                }
                self.forget_remote(&client);
                let stale = self
                    .sessions
                    .get(&client)
                    .is_some_and(|s| s.epoch == epoch && s.online.is_none());
                if stale && !self.is_moving(&client) {
                    if let Some(session) = self.sessions.get_mut(&client) {
                        session.will = None;
                        session.will_due_at = None;
                    }
                    self.end_session(now, &client);
                }
            }
            ClusterEvent::WillFired { client, epoch } => {
                if let Some(cluster) = self.cluster.as_mut() {
                    cluster
                        .parked_wills
                        .retain(|(c, e, _)| !(*c == client && *e == epoch));
                }
                if let Some(session) = self.sessions.get_mut(&client)
                    && session.epoch == epoch
                    && session.online.is_none()
                {
                    session.will = None;
                    session.will_due_at = None;
                    if session.stored {
                        let op = Op::PutSession {
                            client: client.clone(),
                            record: super::record_of(session),
                        };
                        self.batch.push(op);
                    }
                }
            }
            ClusterEvent::NodeDown { node: down } if down == node => self.reassert_connected(),
            ClusterEvent::NodeDown { .. } => {}
            ClusterEvent::CaughtUp => {
                let parked = match self.cluster.as_mut() {
                    Some(cluster) => {
                        cluster.timers_held = false;
                        std::mem::take(&mut cluster.parked_wills)
                    }
                    None => Vec::new(),
                };
                for (client, epoch, will) in parked {
                    self.publish_parked_will(now, &client, epoch, will);
                }
            }
            ClusterEvent::Retained { message } => self.set_retained_public(&message),
            ClusterEvent::Reset { sessions } => {
                let known: Vec<ClientId> = self
                    .cluster
                    .as_ref()
                    .map(|c| c.remote.keys().cloned().collect())
                    .unwrap_or_default();
                for client in known {
                    self.forget_remote(&client);
                }
                let listed: std::collections::HashSet<ClientId> =
                    sessions.iter().map(|s| s.client.clone()).collect();
                let ended: Vec<ClientId> = self
                    .cluster
                    .as_ref()
                    .map(|c| c.moving.keys())
                    .into_iter()
                    .flatten()
                    .filter(|client| !listed.contains(*client))
                    .cloned()
                    .collect();
                for client in ended {
                    // Moved away, then ended on its new owner while this node was behind: as
                    // `Dropped` would. (A local session the registry never knew — one from
                    // before the cluster — stays.)
                    self.discard_moving_copy(&client);
                }
                for session in sessions {
                    let superseded = self
                        .sessions
                        .get(&session.client)
                        .is_some_and(|local| local.epoch < session.epoch);
                    if session.owner != node && superseded {
                        // Claimed elsewhere while this node was behind (the claim reached it in
                        // a snapshot, not as a log entry): hand the copy over as the entry would
                        // — unless the session started afresh after the copy's epoch.
                        let local = self
                            .sessions
                            .get(&session.client)
                            .map_or(Epoch(0), |s| s.epoch);
                        let event = ClusterEvent::Owner {
                            client: session.client,
                            owner: session.owner,
                            epoch: session.epoch,
                            kept: session.started <= local,
                            subscriptions: session.subscriptions,
                        };
                        self.on_cluster(now, event);
                    } else if session.owner != node && !self.sessions.contains_key(&session.client)
                    {
                        self.add_remote(
                            &session.client,
                            session.owner,
                            Some(session.epoch),
                            session.subscriptions,
                        );
                    }
                }
            }
        }
    }

    /// This node was declared down while it still serves clients: each connected session it
    /// owns is asserted again, so that the leader does not publish its will or end it, and
    /// other nodes keep routing to it.
    fn reassert_connected(&mut self) {
        let mut changes = Vec::new();
        for (client, session) in &self.sessions {
            if session.online.is_none() || self.is_moving(client) {
                continue;
            }
            changes.push(Replicate::Reassert {
                client: client.clone(),
                epoch: session.epoch,
                protocol: session.protocol,
                expiry: session.expiry,
                will: session.will.clone(),
                subscriptions: session
                    .subscriptions
                    .iter()
                    .map(|(f, r)| (f.clone(), r.clone()))
                    .collect(),
            });
        }
        // In a stable order, so that a replay proposes the same sequence.
        changes.sort_by(|a, b| match (a, b) {
            (Replicate::Reassert { client: x, .. }, Replicate::Reassert { client: y, .. }) => {
                x.as_str().cmp(y.as_str())
            }
            _ => std::cmp::Ordering::Equal,
        });
        for change in changes {
            self.replicate(change);
        }
    }

    /// A session another node has claimed and not yet taken: it is theirs to run.
    pub(super) fn is_moving(&self, client: &ClientId) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.moving.contains_key(client))
    }

    /// Routes `client`'s `subscriptions` to `owner` (at `epoch`, when the change says).
    fn add_remote(
        &mut self,
        client: &ClientId,
        owner: NodeId,
        epoch: Option<Epoch>,
        subscriptions: Vec<(TopicFilter, SubscriptionRecord)>,
    ) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let remote = cluster.remote.entry(client.clone()).or_default();
        remote.owner = owner;
        if let Some(epoch) = epoch {
            remote.epoch = remote.epoch.max(epoch);
        }
        for (filter, record) in subscriptions {
            self.index.insert(client, &filter, record);
            if !remote.filters.contains(&filter) {
                remote.filters.push(filter);
            }
        }
    }

    pub(super) fn forget_remote(&mut self, client: &ClientId) {
        let Some(remote) = self.cluster.as_mut().and_then(|c| c.remote.remove(client)) else {
            return;
        };
        // The index is keyed by client and filter: routes of the same client that a session
        // running here holds too (left over from its import) are its own routes now, and keep
        // its own options.
        let own = self
            .sessions
            .get(client)
            .filter(|_| !self.is_moving(client))
            .map(|s| &s.subscriptions);
        let mut restore = Vec::new();
        for filter in &remote.filters {
            match own.and_then(|subs| subs.get(filter)) {
                Some(record) => restore.push((filter.clone(), record.clone())),
                None => {
                    self.index.remove(client, filter);
                }
            }
        }
        for (filter, record) in restore {
            self.index.insert(client, &filter, record);
        }
    }

    /// Another node claimed a session held here: its connection ends (MQTT 5: 0x8E), and the
    /// session either waits for its new owner to take it (`kept`) or ends now.
    fn hand_over(
        &mut self,
        now: UnixMillis,
        client: &ClientId,
        owner: NodeId,
        epoch: crate::ids::Epoch,
        kept: bool,
    ) {
        if let Some(conn) = self.sessions.get(client).and_then(|s| s.conn()) {
            if self
                .sessions
                .get(client)
                .is_some_and(|s| s.protocol.is_v5())
            {
                let disconnect =
                    berth_codec::Disconnect::new(DisconnectReasonCode::SessionTakenOver);
                self.send(conn, Packet::Disconnect(disconnect));
            }
            self.actions.push(Action::Close { conn });
            self.detach(now, client, super::connect::Ending::Abnormal);
        }
        if !kept || !self.sessions.contains_key(client) {
            // Clean Start elsewhere (or a session that ended with its connection).
            self.end_session(now, client);
            return;
        }
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.moving.insert(client.clone(), (owner, epoch));
        }
        // Its subscriptions now route to the new owner: they stay in the index as remote ones.
        if let Some(session) = self.sessions.get(client) {
            let filters: Vec<TopicFilter> = session.subscriptions.keys().cloned().collect();
            if let Some(cluster) = self.cluster.as_mut() {
                cluster.remote.insert(
                    client.clone(),
                    Remote {
                        owner,
                        epoch,
                        filters,
                    },
                );
            }
        }
    }

    /// Whether a connection granted `epoch` for `client` is stale: this node has already
    /// applied a newer claim (by another node, or another connection here). Such a connection
    /// must not start: it would take the session from the newer one, or run a session that
    /// another node owns (the claim's own answer came late: a slow admission, a lagging
    /// broker).
    pub(super) fn superseded(&self, client: &ClientId, epoch: Epoch) -> bool {
        let Some(cluster) = self.cluster.as_ref() else {
            return false;
        };
        let newer_here = self.sessions.get(client).is_some_and(|s| s.epoch > epoch);
        let moved = cluster.moving.get(client).is_some_and(|(_, e)| *e > epoch);
        let newer_elsewhere = cluster.remote.get(client).is_some_and(|r| r.epoch > epoch);
        newer_here || moved || newer_elsewhere
    }

    /// Whether a takeover of `client` is pulling its state to this node now (`ImportBegin`).
    fn import_started(&self, client: &ClientId) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.import_started.contains(client))
    }

    /// Whether the state of `client` is still arriving here from its previous owner: an export
    /// of it must wait until the import is done.
    pub fn import_pending(&self, client: &ClientId) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.importing.contains(client))
    }

    /// A claim of this node still has no connection running its takeover: run it alone.
    pub(super) fn unclaimed_due(&mut self, client: &ClientId) {
        if !self.import_pending(client) {
            return;
        }
        let protocol = berth_codec::ProtocolVersion::V3_1_1;
        let expiry = self.config.session.v3_persistent_expiry;
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let Some(unclaimed) = cluster.unclaimed.get_mut(client).filter(|u| !u.adopted) else {
            return;
        };
        unclaimed.adopted = true;
        // What the registry knows, for an old owner that cannot be reached: its
        // subscriptions. (A client that comes back states its protocol and expiry again.)
        let fallback = crate::cluster::SessionExport {
            record: crate::store::SessionRecord {
                epoch: unclaimed.epoch,
                protocol,
                expiry,
                expires_at: None,
                will: None,
                will_due_at: None,
            },
            subscriptions: unclaimed.subscriptions.clone(),
            inflight: Vec::new(),
            incoming_qos2: Vec::new(),
            queued: 0,
        };
        self.actions.push(Action::Adopt {
            client: client.clone(),
            epoch: unclaimed.epoch,
            from: unclaimed.from,
            fallback: Box::new(fallback),
        });
    }

    /// A connection (or its takeover) has come for a claim of this node.
    pub(super) fn claimed_by_connection(&mut self, client: &ClientId) {
        if let Some(cluster) = self.cluster.as_mut()
            && cluster.unclaimed.get(client).is_some_and(|u| !u.adopted)
        {
            cluster.unclaimed.remove(client);
        }
    }

    /// An adopted session's import is done: it waits offline here like any session whose
    /// client went away (the registry hears so), or, if nothing came, the claim is withdrawn.
    pub(super) fn settle_adopted(&mut self, now: UnixMillis, client: &ClientId) {
        let Some(unclaimed) = self
            .cluster
            .as_mut()
            .and_then(|c| c.unclaimed.remove(client))
        else {
            return;
        };
        if !unclaimed.adopted {
            return;
        }
        let Some(session) = self.sessions.get_mut(client) else {
            self.replicate(Replicate::Drop {
                client: client.clone(),
                epoch: unclaimed.epoch,
            });
            return;
        };
        if session.online.is_some() {
            return;
        }
        // Its CONNECT was refused: that connection's will never counted.
        session.will = None;
        session.will_due_at = None;
        let expires_at = match session.expiry {
            crate::store::SessionExpiry::After(secs) => Some(now.plus_secs(secs)),
            crate::store::SessionExpiry::Never => None,
        };
        session.expires_at = Some(expires_at.unwrap_or(super::NEVER));
        let epoch = session.epoch;
        if let Some(at) = expires_at {
            self.timers
                .insert((at, super::Timer::SessionExpiry(client.clone())));
        }
        if session.stored {
            let op = Op::PutSession {
                client: client.clone(),
                record: super::record_of(session),
            };
            self.batch.push(op);
        }
        self.replicate(Replicate::Detach {
            client: client.clone(),
            epoch,
            expires_at,
            will_due_at: None,
        });
    }

    /// Parks a CONNECT (`ConnectAs` on `conn`) granted `client` while its import runs here.
    pub(super) fn park_connect(&mut self, conn: ConnId, client: ClientId, event: Event) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.parked.push(Parked {
                conn,
                client,
                events: vec![event],
            });
        }
    }

    /// An event for a parked connection waits behind its CONNECT (a close forgets it);
    /// any other event is given back.
    pub(super) fn park_event(&mut self, event: Event) -> Option<Event> {
        let conn = match &event {
            Event::Packet { conn, .. } | Event::Closed { conn, .. } => *conn,
            _ => return Some(event),
        };
        let Some(cluster) = self.cluster.as_mut() else {
            return Some(event);
        };
        let Some(at) = cluster.parked.iter().position(|p| p.conn == conn) else {
            return Some(event);
        };
        if matches!(event, Event::Closed { .. }) {
            // It never started: nothing of the session changes.
            cluster.parked.remove(at);
        } else {
            cluster.parked[at].events.push(event);
        }
        None
    }

    /// Connections whose session's import is done go on, in the order they arrived.
    pub(super) fn unpark(&mut self, now: UnixMillis) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let importing = &cluster.importing;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut cluster.parked)
            .into_iter()
            .partition(|p| !importing.contains(&p.client));
        cluster.parked = waiting;
        for parked in ready {
            for event in parked.events {
                self.process(now, event);
            }
        }
    }

    /// Routing: whether a matched client is another node's, and which.
    pub(super) fn remote_owner(&self, client: &ClientId) -> Option<NodeId> {
        let cluster = self.cluster.as_ref()?;
        if let Some((to, _)) = cluster.moving.get(client) {
            return Some(*to);
        }
        if cluster.importing.contains(client) {
            // Arriving here (also over an older copy still here): matches wait for the backlog
            // with the forwards from other nodes (`forward_matches`, `on_import_done`).
            return Some(cluster.node);
        }
        if self.sessions.contains_key(client) {
            return None;
        }
        // Routes that point here without an import under way find no session.
        cluster
            .remote
            .get(client)
            .map(|r| r.owner)
            .filter(|owner| *owner != cluster.node)
    }

    pub(super) fn note_remote_match(&mut self, owner: NodeId, client: ClientId) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.route_remote.entry(owner).or_default().push(client);
        }
    }

    /// Sends the routed message to the owners of the remote matches; returns how many nodes
    /// must acknowledge it (with `token`).
    pub(super) fn forward_matches(
        &mut self,
        message: &Arc<Message>,
        publisher: Option<&ClientId>,
        token: Option<u64>,
    ) -> usize {
        let Some(cluster) = self.cluster.as_mut() else {
            return 0;
        };
        let mut groups = std::mem::take(&mut cluster.route_remote);
        let nodes = groups.len();
        if let Some(importing) = groups.remove(&cluster.node) {
            // Sessions this node is importing: they wait here, like forwards from elsewhere.
            cluster.deferred_local.push((
                token,
                Forwarded {
                    message: message.clone(),
                    clients: importing,
                    publisher: publisher.cloned(),
                },
            ));
        }
        for (node, clients) in groups {
            self.actions.push(Action::Forward {
                node,
                token,
                message: message.clone(),
                clients,
                publisher: publisher.cloned(),
            });
        }
        nodes
    }

    pub(super) fn new_token(&mut self) -> Option<u64> {
        let cluster = self.cluster.as_mut()?;
        cluster.next_token += 1;
        Some(cluster.next_token)
    }

    /// Registers a publish whose acknowledgement to `conn` waits for `remaining` other nodes
    /// under `token`; false when this broker is not a cluster node.
    pub(super) fn wait_for_nodes(
        &mut self,
        conn: ConnId,
        token: u64,
        remaining: usize,
        qos2: Option<(ClientId, berth_codec::PacketId)>,
    ) -> bool {
        let Some(cluster) = self.cluster.as_mut() else {
            return false;
        };
        cluster.waiting.insert(
            token,
            Waiting {
                conn,
                remaining,
                failed: false,
                qos2,
            },
        );
        true
    }

    /// An owner node stored (or failed to store) a forwarded message.
    pub(super) fn on_forward_done(&mut self, token: u64, delivered: bool) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let Some(waiting) = cluster.waiting.get_mut(&token) else {
            return;
        };
        waiting.remaining = waiting.remaining.saturating_sub(1);
        waiting.failed |= !delivered;
        if waiting.remaining > 0 {
            return;
        }
        let conn = waiting.conn;
        let failed = waiting.failed;
        let qos2 = waiting.qos2.take();
        cluster.waiting.remove(&token);
        if let Some((client, packet_id)) = qos2 {
            if failed {
                // Not stored everywhere: a re-sent PUBLISH must be routed again, on this
                // connection or a later one.
                self.forget_incoming_qos2(&client, packet_id);
            } else {
                // Stored everywhere: from now on a re-send is a duplicate, also after a restart.
                self.store_incoming_qos2(&client, packet_id);
            }
        }
        let v5 = self
            .conns
            .get(&conn)
            .and_then(|client| self.sessions.get(client))
            .is_some_and(|s| s.protocol.is_v5());
        let Some(held) = self.held.queue_mut(conn) else {
            return;
        };
        if let Some(entry) = held.iter_mut().find(|h| h.token == Some(token)) {
            entry.token = None;
            if failed {
                if v5 {
                    set_ack_reason(&mut entry.packet, PubAckReasonCode::UnspecifiedError);
                } else {
                    // 3.1.1 has no failure PUBACK: close without acknowledging, so the client
                    // sends the PUBLISH again when it reconnects — and that PUBLISH must be
                    // routed again, not answered as a duplicate of one that was never stored
                    // (its QoS 2 id is forgotten above).
                    self.held.forget_conn(conn);
                    self.actions.push(Action::Close { conn });
                    return;
                }
            }
        }
        self.flush_acks(conn);
    }

    /// QoS 2 packet ids of `client` whose PUBLISH still waits for other nodes to store it.
    pub(super) fn qos2_in_doubt(&self, client: &ClientId) -> Vec<berth_codec::PacketId> {
        self.cluster.as_ref().map_or_else(Vec::new, |c| {
            c.waiting
                .values()
                .filter_map(|w| w.qos2.as_ref())
                .filter(|(c, _)| c == client)
                .map(|(_, id)| *id)
                .collect()
        })
    }

    /// A QoS 2 PUBLISH re-sent (on a new connection) while the first one still waits for other
    /// nodes: its PUBREC now goes to `conn`, when that wait ends. The token, if it waits.
    pub(super) fn follow_qos2(
        &mut self,
        conn: ConnId,
        client: &ClientId,
        id: berth_codec::PacketId,
    ) -> Option<u64> {
        let cluster = self.cluster.as_mut()?;
        let (token, waiting) = cluster
            .waiting
            .iter_mut()
            .find(|(_, w)| w.qos2.as_ref() == Some(&(client.clone(), id)))?;
        waiting.conn = conn;
        Some(*token)
    }

    /// Writes down that the QoS 2 PUBLISH `id` of `client` was received (see `on_publish`).
    pub(super) fn store_incoming_qos2(&mut self, client: &ClientId, id: berth_codec::PacketId) {
        let Some(session) = self.sessions.get(client) else {
            return;
        };
        if session.stored && session.incoming_qos2.contains(&id) {
            self.batch.push(Op::PutIncomingQos2 {
                client: client.clone(),
                packet_id: id,
            });
        }
    }

    fn forget_incoming_qos2(&mut self, client: &ClientId, id: berth_codec::PacketId) {
        let client = client.clone();
        let Some(session) = self.sessions.get_mut(&client) else {
            return;
        };
        if session.incoming_qos2.remove(&id) && session.stored {
            self.batch.push(Op::DeleteIncomingQos2 {
                client,
                packet_id: id,
            });
        }
    }

    /// Messages other nodes routed to sessions owned here. Acknowledged once stored.
    pub(super) fn on_forwarded(&mut self, now: UnixMillis, token: u64, messages: Vec<Forwarded>) {
        let waits = self.cluster.as_ref().is_some_and(|c| {
            messages
                .iter()
                .any(|m| m.clients.iter().any(|client| c.importing.contains(client)))
        });
        if waits {
            if let Some(cluster) = self.cluster.as_mut() {
                cluster.deferred.push((token, messages));
            }
            return;
        }
        let mut not_owned = Vec::new();
        for forwarded in &messages {
            not_owned.extend(self.deliver_forwarded(now, forwarded));
        }
        self.actions
            .push(Action::ForwardAccepted { token, not_owned });
    }

    /// Delivers a forwarded message to the named local sessions; returns those not owned here.
    pub(super) fn deliver_forwarded(
        &mut self,
        now: UnixMillis,
        forwarded: &Forwarded,
    ) -> Vec<ClientId> {
        let mut not_owned = Vec::new();
        for client in &forwarded.clients {
            if self.remote_owner(client).is_some() || !self.sessions.contains_key(client) {
                not_owned.push(client.clone());
                continue;
            }
            if let Some(delivery) =
                self.delivery_for(client, &forwarded.message, forwarded.publisher.as_ref())
            {
                self.deliver(now, client, delivery);
            }
        }
        not_owned
    }

    /// What `client` gets of `message` by its own subscriptions (merged as the index does).
    fn delivery_for(
        &self,
        client: &ClientId,
        message: &Arc<Message>,
        publisher: Option<&ClientId>,
    ) -> Option<Delivery> {
        let session = self.sessions.get(client)?;
        let mut merged: Option<Match> = None;
        for (filter, record) in &session.subscriptions {
            if !filter.matches(&message.topic)
                || (record.options.no_local && publisher == Some(client))
            {
                continue;
            }
            let m = merged.get_or_insert(Match {
                qos: QoS::AtMostOnce,
                retain_as_published: false,
                subscription_ids: Vec::new(),
            });
            m.qos = m.qos.max(record.options.qos);
            m.retain_as_published |= record.options.retain_as_published;
            m.subscription_ids.extend(record.subscription_id);
        }
        let m = merged?;
        Some(Delivery {
            message: message.clone(),
            qos: message.qos.min(m.qos),
            retain: message.retain && m.retain_as_published,
            subscription_ids: m.subscription_ids,
            redelivery: false,
        })
    }

    pub(super) fn park_will(
        &mut self,
        client: &ClientId,
        epoch: crate::ids::Epoch,
        will: WillRecord,
    ) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.parked_wills.push((client.clone(), epoch, will));
        }
    }

    /// A will that waited for `CaughtUp`: published now, as its session would have.
    fn publish_parked_will(
        &mut self,
        now: UnixMillis,
        client: &ClientId,
        epoch: crate::ids::Epoch,
        will: WillRecord,
    ) {
        if let Some(session) = self.sessions.get(client)
            && session.epoch == epoch
            && session.stored
        {
            let op = Op::PutSession {
                client: client.clone(),
                record: super::record_of(session),
            };
            self.batch.push(op);
        }
        self.route_will(now, client, epoch, will.message);
    }

    /// Whether time-driven rules must wait (see `ClusterEvent::CaughtUp`).
    pub(super) fn timers_held(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.timers_held)
    }

    /// Publishes `message` as the server (a dead owner's will, published by the leader).
    pub(super) fn on_publish_message(&mut self, now: UnixMillis, message: Message) {
        if message.retain {
            self.set_retained_public(&message);
        }
        let message = Arc::new(message);
        self.route(now, None, message.clone());
        self.forward_matches(&message, None, None);
    }

    /// The broker asks the cluster to record a session change (only when it runs as a node).
    pub(super) fn replicate(&mut self, change: Replicate) {
        if self.cluster.is_some() {
            self.actions.push(Action::Replicate(change));
        }
    }
}

/// Changes the reason code of a held PUBACK / PUBREC.
fn set_ack_reason(packet: &mut Packet, reason: PubAckReasonCode) {
    match packet {
        Packet::PubAck(ack) => ack.reason = reason,
        Packet::PubRec(rec) => rec.reason = reason,
        _ => {}
    }
}

/// Events the cluster feeds the broker, for `Broker::handle`.
pub(super) fn handle_cluster_event<S: Store>(
    broker: &mut Broker<S>,
    now: UnixMillis,
    event: Event,
) {
    match event {
        Event::Cluster(change) => broker.on_cluster(now, change),
        Event::Forwarded { token, messages } => broker.on_forwarded(now, token, messages),
        Event::ForwardDone { token, delivered } => broker.on_forward_done(token, delivered),
        Event::ImportState { client, export } => broker.on_import_state(now, &client, *export),
        Event::ImportQueue { client, page } => broker.on_import_queue(now, &client, page),
        Event::ImportBegin { client } => broker.on_import_begin(&client),
        Event::ImportDone { client } => broker.on_import_done(now, &client),
        Event::ImportLate {
            client,
            epoch,
            page,
        } => broker.on_import_late(now, &client, epoch, page),
        Event::Release { client, epoch } => broker.on_release(&client, epoch),
        Event::PublishMessage { message } => broker.on_publish_message(now, *message),
        _ => {}
    }
}

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

use berth_codec::{DisconnectReasonCode, Packet, TopicFilter};

use super::claims::{Parked, UNCLAIMED_WAIT_MS, Unclaimed};
use super::forwarding::Waiting;
use super::{Action, Broker, Event};
use crate::cluster::{ClusterEvent, NodeId, Replicate};
use crate::ids::{ClientId, Epoch};

use crate::message::Message;
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
    pub import_started: HashMap<ClientId, u32>,
    /// Sessions whose import brings an older copy than the one already here: a newer claim's
    /// import landed first (`Broker::import_overtaken`); its pages arrive late.
    pub late_imports: HashSet<ClientId>,
    /// Publishes waiting for other nodes, by token.
    pub waiting: HashMap<u64, Waiting>,
    pub next_token: u64,
    /// The last number this node gave a message identity (`identity::new_message_id`).
    pub last_message_seq: u64,
    /// Identities an imported session's previous owner had taken, folded into the session
    /// once its import is done (before, they would swallow the queue pages still arriving).
    pub import_seen: HashMap<ClientId, Vec<crate::ids::MessageId>>,
    /// The claims whose imported states brought identities into `import_seen` and whose pages
    /// are not all in yet: once none is left, `on_import_complete` settles them, also while
    /// another pull of the session is under way that has brought none.
    pub import_pending: HashMap<ClientId, Vec<crate::ids::Epoch>>,
    /// QoS 2 messages an older copy merged here holds queued that the imported state took
    /// and that its queue pages have not brought (yet): once the import is done, the state
    /// had delivered them, and the copy's are dropped (`Broker::requeue_older_copy`).
    pub taken_by_import: HashMap<ClientId, HashSet<crate::ids::MessageId>>,
    /// Forwarded messages delivered here lately, by session and identity (`RecentForwards`).
    pub recent_forwards: super::forwarding::RecentForwards,
    /// Other nodes' sessions matched by the message being routed.
    /// (Ordered by node, so that a run's actions are a function of its inputs.)
    pub route_remote: std::collections::BTreeMap<NodeId, Vec<ClientId>>,
    /// Fenced sessions matched by the message being routed (see `fences`).
    pub route_fenced: Vec<ClientId>,
    /// Forwards out, per node (see `fences`).
    pub in_flight: super::fences::InFlight,
    /// Sessions whose messages from here wait for the forwards to their old owner.
    pub fences: HashMap<ClientId, super::fences::Fence>,
    /// Connections granted a session whose state is still arriving here (a newer claim made on
    /// this node while an earlier claim's import runs): their CONNECT and the packets after it
    /// wait, in order, until the import is done (`on_import_done`).
    pub parked: Vec<Parked>,
    /// Claims of this node that wait for a connection to run their takeover (see
    /// `Action::Adopt`).
    pub unclaimed: HashMap<ClientId, Unclaimed>,
    /// Claims of this node that the log replayed at start and that were overtaken before this
    /// node pulled anything. The claim that overtook one pulls from here (the registry names
    /// this node): when it asks (`Event::ExportWanted`), this node pulls the session from where
    /// it is and hands it on; if it never asks (history: it pulled long ago), nothing happens.
    pub dormant_claims: HashMap<ClientId, Unclaimed>,
    /// The newest claim of this node per client, while the session here (if any) is older: an
    /// import for an earlier claim lands at it, and a connection granted an older epoch is
    /// stale (`superseded`).
    pub newest_claim: HashMap<ClientId, Epoch>,
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
    /// The newest claim (as far as this node has applied the registry) that started the
    /// session afresh (Clean Start, or the old one had ended): state from before it is void.
    pub started: Epoch,
    /// The copy the owner took the session over from (`registry::SessionEntry::moved_from`).
    /// A claim of this node that cannot reach the owner lacks that copy's state too: the
    /// owner's import may never have landed (`Qos2Doubt::earlier`).
    pub moved_from: Option<crate::store::CopyRef>,
    pub filters: Vec<TopicFilter>,
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
                moved_from,
            } => {
                if self.sessions.get(&client).is_some_and(|s| s.epoch >= epoch) {
                    // The local session is newer than this claim (a replayed log entry).
                    return;
                }
                self.fence_on_move(&client, owner);
                if !kept {
                    // Started afresh: what was kept here for the old session is void.
                    self.discard_handoff_before(&client, epoch);
                }
                let mut abandoned_import = false;
                let unpulled =
                    owner != node && self.import_pending(&client) && !self.import_started(&client);
                if let Some(cluster) = self.cluster.as_mut() {
                    if owner == node || !kept {
                        // A newer claim of this node, or a Clean Start: a dormant claim is void.
                        cluster.dormant_claims.remove(&client);
                    }
                    if owner == node {
                        let newest = cluster.newest_claim.entry(client.clone()).or_default();
                        *newest = (*newest).max(epoch);
                    } else {
                        cluster.newest_claim.remove(&client);
                    }
                }
                if unpulled && (!kept || self.timers_held()) {
                    // A claim replayed from the log at start and overtaken since, or a Clean
                    // Start elsewhere: nothing to pull now. What was published here for it
                    // meanwhile goes to the new owner (below). The replayed claim stays
                    // dormant: the claim that overtook it may be live, and then pulls from
                    // here (`on_export_wanted`).
                    if let Some(cluster) = self.cluster.as_mut() {
                        cluster.importing.remove(&client);
                        if let Some(claim) = cluster.unclaimed.remove(&client)
                            && kept
                        {
                            cluster.dormant_claims.insert(client.clone(), claim);
                        }
                    }
                    abandoned_import = true;
                } else if unpulled {
                    // A claim of this node that no connection ran (its CONNECT was refused), now
                    // overtaken: the new owner pulls from here (the registry names this node),
                    // so this node pulls the session from where it is now and hands it on.
                    self.unclaimed_due(&client);
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
                    // What was kept here for it stays until the import is done, and then
                    // moves on with the copy (`hand_over_kept`).
                }
                if owner == node {
                    // Where the session's newest state is: the node its copy here was moving
                    // to, or its owner so far.
                    // With the copy that owner took it from, where the state is if that owner's
                    // import never landed (none for the copy here, merged at the import).
                    let (from_copy, earlier) = self
                        .cluster
                        .as_ref()
                        .and_then(|c| {
                            c.moving
                                .get(&client)
                                .map(|(to, epoch)| {
                                    let to = crate::store::CopyRef {
                                        node: *to,
                                        epoch: *epoch,
                                    };
                                    (to, None)
                                })
                                .or_else(|| {
                                    c.remote.get(&client).map(|r| {
                                        let owner = crate::store::CopyRef {
                                            node: r.owner,
                                            epoch: r.epoch,
                                        };
                                        (owner, r.moved_from)
                                    })
                                })
                        })
                        .filter(|(from, _)| from.node != node)
                        .unzip();
                    let earlier = earlier.flatten();
                    let from = from_copy.map(|copy| copy.node);
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
                                    from: from_copy,
                                    earlier,
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
                let started = self
                    .cluster
                    .as_ref()
                    .and_then(|c| c.remote.get(&client))
                    .map_or(Epoch(0), |r| r.started);
                self.forget_remote(&client);
                self.add_remote(&client, owner, Some(epoch), subscriptions);
                if let Some(remote) = self
                    .cluster
                    .as_mut()
                    .and_then(|c| c.remote.get_mut(&client))
                {
                    remote.started = if kept { started } else { epoch };
                    remote.moved_from = moved_from;
                }
                if abandoned_import {
                    // What was kept here for it goes to the new owner.
                    self.abandon_kept(now, &client);
                }
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
                if let Some(cluster) = self.cluster.as_mut() {
                    cluster.dormant_claims.remove(&client);
                    cluster.newest_claim.remove(&client);
                }
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
                self.discard_handoff_upto(&client, epoch);
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
                // Handoff entries found at start: their owners are known now.
                self.pump_handoff(now);
            }
            ClusterEvent::Retained { message } => self.set_retained_public(&message),
            ClusterEvent::Reset { sessions } => self.on_reset(now, sessions),
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
    pub(super) fn add_remote(
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

    /// Removes the routes the registry gave `client` (its remote filters) from the index,
    /// keeping what this node knows of its owner and epoch.
    pub(super) fn drop_registry_routes(&mut self, client: &ClientId) {
        let Some(remote) = self.cluster.as_mut().and_then(|c| c.remote.get_mut(client)) else {
            return;
        };
        for filter in std::mem::take(&mut remote.filters) {
            self.index.remove(client, &filter);
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
            self.stats.count_close(crate::stats::CloseCause::TakenOver);
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
                        started: Epoch(0),
                        // (The claim's event sets it next.)
                        moved_from: None,
                        filters,
                    },
                );
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
        self.forward_matches(now, &message, None, None);
    }

    /// The broker asks the cluster to record a session change (only when it runs as a node).
    pub(super) fn replicate(&mut self, change: Replicate) {
        if self.cluster.is_some() {
            self.actions.push(Action::Replicate(change));
        }
    }
}

/// The registry entry of a snapshot as the log entry that made it (`kept`: the session goes on
/// from what this node knew of it).
pub(super) fn owner_event(session: crate::cluster::RemoteSession, kept: bool) -> ClusterEvent {
    ClusterEvent::Owner {
        client: session.client,
        owner: session.owner,
        epoch: session.epoch,
        kept,
        subscriptions: session.subscriptions,
        moved_from: session.moved_from,
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
        // A handoff entry's forward is settled by the guard itself (`handoff.rs`).
        Event::ForwardDone {
            token,
            delivered,
            node,
        } if !broker.on_handoff_forward_done(now, token, delivered) => {
            broker.on_forward_done(now, token, delivered, Some(node));
        }
        Event::HandOff { node, items } => broker.on_hand_off(now, node, items),
        Event::NodeReachable { node } => broker.on_node_reachable(now, node),
        Event::ImportState { client, export } => broker.on_import_state(now, &client, *export),
        Event::ImportQueue { client, page } => broker.on_import_queue(now, &client, page),
        Event::ImportBegin { client } => broker.on_import_begin(&client),
        Event::ImportComplete { client, epoch } => broker.on_import_complete(&client, epoch),
        Event::ImportDone { client } => broker.on_import_done(now, &client),
        Event::ImportLate {
            client,
            epoch,
            holder,
            export,
            page,
        } => broker.on_import_late(now, &client, epoch, holder, *export, page),
        Event::Release { client, epoch } => broker.on_release(&client, epoch),
        Event::ExportWanted { client, epoch } => broker.on_export_wanted(&client, epoch),
        Event::PublishMessage { message } => broker.on_publish_message(now, *message),
        _ => {}
    }
}

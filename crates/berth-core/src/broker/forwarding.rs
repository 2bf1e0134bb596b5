//! Messages to and from other nodes' sessions: forwarding the matches of a PUBLISH to their
//! owners, the publisher's acknowledgement that waits for them (and the QoS 2 ids whose outcome
//! is in doubt meanwhile), and the owner's side that stores what was forwarded.

use std::sync::Arc;

use berth_codec::{Packet, PubAckReasonCode, Publish, QoS};

use super::{Action, Broker};
use crate::cluster::{Forwarded, NodeId};
use crate::ids::{ClientId, ConnId, MessageId};
use crate::index::Match;
use crate::message::{Delivery, Message};
use crate::store::{Op, Store};
use crate::time::UnixMillis;

#[derive(Debug)]
pub(crate) struct Waiting {
    conn: ConnId,
    pub(super) remaining: usize,
    failed: bool,
    /// The publisher and packet id of a QoS 2 PUBLISH (see `send_ack`).
    qos2: Option<(ClientId, berth_codec::PacketId)>,
    /// The identity it was routed under (`name_wait`).
    message_id: Option<MessageId>,
}

impl<S: Store> Broker<S> {
    pub(super) fn note_remote_match(&mut self, owner: NodeId, client: ClientId) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.route_remote.entry(owner).or_default().push(client);
        }
    }

    /// Sends the routed message to the owners of the remote matches (and holds it for fenced
    /// sessions, see `fences`); returns how many acknowledgements `token` must wait for.
    pub(super) fn forward_matches(
        &mut self,
        now: UnixMillis,
        message: &Arc<Message>,
        publisher: Option<&ClientId>,
        token: Option<u64>,
    ) -> usize {
        let Some(cluster) = self.cluster.as_mut() else {
            return 0;
        };
        let mut groups = std::mem::take(&mut cluster.route_remote);
        // `route` already set fenced sessions apart from the owners' groups.
        let fenced = std::mem::take(&mut cluster.route_fenced);
        let node = cluster.node;
        let mut waits = 0;
        for client in fenced {
            waits += usize::from(self.hold_fenced(&client, token, message, publisher));
        }
        if let Some(importing) = groups.remove(&node) {
            // Sessions this node is importing: kept here (durably) and delivered after their
            // backlog, like forwards from elsewhere; the publisher does not wait for the
            // import (its old owner may be unreachable for a while).
            for client in importing {
                self.keep_for_import(&client, message, publisher, false);
            }
        }
        // What goes to other nodes carries an identity, QoS 1 too (a QoS 2 message has one
        // already): a forward's first attempt held up by a partition may arrive after its
        // retry, and the owner then knows the second copy for one (`RecentForwards`: DUP = 1,
        // or dropped while the first is still in the window; simulator seeds 2268, 6557).
        // Local deliveries keep the message without one: no window check on the hot path.
        let forwarded_message = match message.id {
            None if message.qos != QoS::AtMostOnce && !groups.is_empty() => {
                let id = self.new_message_id(now);
                Arc::new(Message {
                    id,
                    ..(**message).clone()
                })
            }
            _ => message.clone(),
        };
        for (node, clients) in groups {
            let forwarded = Forwarded {
                message: forwarded_message.clone(),
                clients,
                publisher: publisher.cloned(),
                retried: false,
            };
            waits += usize::from(self.forward_or_hand_off(node, token, forwarded));
        }
        waits
    }

    /// Sends `forwarded` to its owner `node` (an `Action::Forward`), tracked until it ends.
    pub(super) fn send_forward(&mut self, node: NodeId, token: Option<u64>, forwarded: Forwarded) {
        if let (Some(token), Some(cluster)) = (token, self.cluster.as_mut()) {
            cluster.in_flight.sent(node, token);
        }
        self.actions.push(Action::Forward {
            node,
            token,
            message: forwarded.message,
            clients: forwarded.clients,
            publisher: forwarded.publisher,
            retried: forwarded.retried,
        });
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
                message_id: None,
            },
        );
        true
    }

    /// A forward with `token` to `node` ended: the owner stored it (or failed to). `node` is
    /// `None` for a wait that was not a tracked forward (a fenced message delivered here).
    pub(super) fn on_forward_done(
        &mut self,
        now: UnixMillis,
        token: u64,
        delivered: bool,
        node: Option<NodeId>,
    ) {
        if let (Some(node), Some(cluster)) = (node, self.cluster.as_mut()) {
            cluster.in_flight.ended(node, token);
        }
        self.complete_wait(token, delivered);
        if let Some(node) = node {
            self.release_fences(now, node);
        }
    }

    /// One of the acknowledgements `token` waits for came.
    fn complete_wait(&mut self, token: u64, delivered: bool) {
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
        let message_id = waiting.message_id;
        cluster.waiting.remove(&token);
        if let Some((client, packet_id)) = qos2 {
            if failed {
                // Not stored everywhere: a re-sent PUBLISH must be routed again, on this
                // connection or a later one — under the same identity (some owners may have
                // stored it).
                match message_id {
                    // Its row says so already (`store_qos2_retry`).
                    Some(id) => self.keep_for_retry(&client, packet_id, id),
                    None => self.forget_incoming_qos2(&client, packet_id),
                }
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
                    self.stats
                        .count_close(crate::stats::CloseCause::ForwardFailed);
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

    /// The QoS 2 PUBLISHes of `client` not known to be stored everywhere — still waiting for
    /// other nodes, or kept after a failed wait — with the identity they were routed under
    /// (exported with the session: a re-send elsewhere reuses it).
    pub(super) fn qos2_retry_ids(
        &self,
        client: &ClientId,
    ) -> Vec<(berth_codec::PacketId, MessageId)> {
        let waiting = self.cluster.iter().flat_map(|c| {
            c.waiting
                .values()
                .filter_map(|w| match (&w.qos2, w.message_id) {
                    (Some((c, packet_id)), Some(id)) if c == client => Some((*packet_id, id)),
                    _ => None,
                })
        });
        let kept = self
            .sessions
            .get(client)
            .and_then(|s| s.qos2_retry.as_deref())
            .into_iter()
            .flat_map(|r| r.iter().map(|(p, id)| (*p, *id)));
        // In packet-id order (stable: a waiting one before a kept one): maps iterate in no
        // fixed order, and a replayed simulator seed must run the same.
        let mut ids: Vec<_> = waiting.chain(kept).collect();
        ids.sort_by_key(|(packet_id, _)| *packet_id);
        ids
    }

    /// Notes the identity a QoS 2 PUBLISH was routed under on the wait for its owners
    /// (`waiting_on`, registered by `send_ack`).
    pub(super) fn name_wait(&mut self, waiting_on: Option<(u64, usize)>, id: Option<MessageId>) {
        let (Some((token, _)), Some(id), Some(cluster)) = (waiting_on, id, self.cluster.as_mut())
        else {
            return;
        };
        if let Some(waiting) = cluster.waiting.get_mut(&token) {
            waiting.message_id = Some(id);
        }
    }

    /// A QoS 2 PUBLISH `packet_id` of `client` was routed under `id` and not stored everywhere.
    pub(super) fn keep_for_retry(
        &mut self,
        client: &ClientId,
        packet_id: berth_codec::PacketId,
        id: MessageId,
    ) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        session.incoming_qos2.remove(&packet_id);
        session
            .qos2_retry
            .get_or_insert_with(Default::default)
            .insert(packet_id, id);
        self.store_qos2_retry(client, packet_id, id);
    }

    /// Writes down that the QoS 2 PUBLISH `packet_id` of `client` was routed under `id`, not
    /// yet stored everywhere (in the row its receipt takes later, `store_incoming_qos2`).
    pub(super) fn store_qos2_retry(
        &mut self,
        client: &ClientId,
        packet_id: berth_codec::PacketId,
        id: MessageId,
    ) {
        if self.sessions.get(client).is_some_and(|s| s.stored) {
            self.batch.push(Op::PutQos2Retry {
                client: client.clone(),
                packet_id,
                id,
            });
        }
    }

    /// The identity a PUBLISH re-sends a message under, if its first routing was in doubt: a
    /// re-send (DUP = 1) of a kept packet id. Any PUBLISH with that id ends the entry: one
    /// without DUP is a new message (the client gave the id up after a failure PUBREC).
    pub(super) fn retry_identity(
        &mut self,
        client: &ClientId,
        publish: &Publish,
    ) -> Option<MessageId> {
        let session = self.sessions.get_mut(client)?;
        let retry = session.qos2_retry.as_mut()?;
        let id = retry.remove(&publish.packet_id?);
        if retry.is_empty() {
            session.qos2_retry = None;
        }
        id.filter(|_| publish.dup)
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

    /// Messages other nodes routed to sessions owned here, acknowledged once stored: each
    /// delivered to the sessions it names, except those arriving here (an import) or with
    /// messages kept here before them: for those it is kept (durably, `keep_for_import`) and
    /// delivered after their backlog and those messages. The sender does not wait for an
    /// import, whose old owner may be away for a while.
    pub(super) fn on_forwarded(&mut self, now: UnixMillis, token: u64, messages: Vec<Forwarded>) {
        let mut not_owned = Vec::new();
        for forwarded in messages {
            if !forwarded.clients.iter().any(|c| self.kept_first(c)) {
                // The usual case: delivered as it came.
                not_owned.extend(self.deliver_forwarded(now, &forwarded));
                continue;
            }
            let (later, ready): (Vec<ClientId>, Vec<ClientId>) = forwarded
                .clients
                .iter()
                .cloned()
                .partition(|client| self.kept_first(client));
            if !ready.is_empty() {
                let part = Forwarded {
                    clients: ready,
                    ..forwarded.clone()
                };
                not_owned.extend(self.deliver_forwarded(now, &part));
            }
            for client in &later {
                // Marked as possibly sent before: if this answer is lost, the sender keeps a
                // copy too, which may reach the session first by another way (a chaos run's
                // second delivery with DUP = 0).
                let publisher = forwarded.publisher.as_ref();
                self.keep_for_import(client, &forwarded.message, publisher, true);
            }
        }
        self.actions
            .push(Action::ForwardAccepted { token, not_owned });
    }

    /// Whether a message forwarded for `client` is kept here for later: the session is
    /// arriving here (`import_waits_here`), or runs here with messages kept before it.
    fn kept_first(&self, client: &ClientId) -> bool {
        self.import_waits_here(client)
            || (self.handoff.holds(client)
                && self.remote_owner(client).is_none()
                && self.sessions.contains_key(client))
    }

    /// Whether a message forwarded for `client` waits here for its import: only while this
    /// node owns the session. Claimed elsewhere meanwhile, the import still runs (a chained
    /// takeover) but what it brings moves on, and the message is answered "not owned": its
    /// sender sends it to the new owner, whose own import puts it behind the backlog.
    fn import_waits_here(&self, client: &ClientId) -> bool {
        let node = self.cluster.as_ref().map(|c| c.node);
        self.import_pending(client)
            && self
                .remote_owner(client)
                .is_none_or(|owner| Some(owner) == node)
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
            if let Some(mut delivery) =
                self.delivery_for(client, &forwarded.message, forwarded.publisher.as_ref())
            {
                // A retried forward may be stored here already (its answer was lost): the
                // client may get it twice, so it gets DUP = 1 [MQTT-3.3.1-1]. So does the
                // first attempt arriving after its retry (held up by a partition): the retry's
                // copy may sit unacknowledged in a copy of the session this one resumed
                // without (simulator seed 2268, `5-dup`).
                let again = self.cluster.as_mut().is_some_and(|c| {
                    forwarded
                        .message
                        .id
                        .is_some_and(|id| !c.recent_forwards.insert(client, id))
                });
                delivery.redelivery =
                    (forwarded.retried || again) && delivery.qos != QoS::AtMostOnce;
                self.deliver(now, client, delivery);
            }
        }
        not_owned
    }

    /// What `client` gets of `message` by its own subscriptions (merged as the index does).
    pub(super) fn delivery_for(
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
            sent_as: None,
        })
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

/// The last `RecentForwards::CAPACITY` deliveries of forwarded messages (all carry an
/// identity at QoS 1 and 2) on this node, by session and identity, in memory: a second copy
/// of one (a retry and its first attempt, both delivered) is a possible re-delivery however
/// the session moved meanwhile. One window for the node, so under heavy cross-node traffic it
/// covers less time than a long partition; a restart forgets it (the session's window check,
/// `already_in_flight`, still holds).
#[derive(Debug, Default)]
pub(crate) struct RecentForwards {
    order: std::collections::VecDeque<(ClientId, crate::ids::MessageId)>,
    known: std::collections::HashSet<(ClientId, crate::ids::MessageId)>,
}

impl RecentForwards {
    const CAPACITY: usize = 4_096;

    /// Remembers `id` for `client`; false if it was remembered already.
    pub fn insert(&mut self, client: &ClientId, id: crate::ids::MessageId) -> bool {
        let key = (client.clone(), id);
        if !self.known.insert(key.clone()) {
            return false;
        }
        if self.order.len() == Self::CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.known.remove(&oldest);
        }
        self.order.push_back(key);
        true
    }
}

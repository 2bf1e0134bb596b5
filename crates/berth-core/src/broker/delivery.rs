//! Outbound delivery: the send window, the queue behind it (paged in by `queue_page.rs`), and the PUBLISH
//! a client finally receives (expiry countdown, topic alias, its maximum packet size).

use berth_codec::{Packet, PacketId, PubRel, Publish, QoS, TopicName, encoded_len};

use super::queue_page::read_inflight_through;
use super::session::{Outgoing, Session};
use super::{Action, Broker};
use crate::config::{BrokerConfig, DropPolicy};
use crate::ids::{ClientId, QueueSeq};
use crate::message::Delivery;
use crate::stats::{DropReason, Stats};
use crate::store::{InflightRecord, Op, Store};
use crate::time::UnixMillis;

/// How long a session resumed without an unreachable older copy's QoS 2 state holds its QoS 2
/// deliveries for that copy (`Broker::deliveries_held`).
pub(crate) const QOS2_STATE_WAIT: u64 = 30_000;

impl<S: Store> Broker<S> {
    /// Gives `delivery` to `client`'s session: straight to the connection if the window has room
    /// and nothing waits before it, otherwise to the back of its queue.
    pub(super) fn deliver(&mut self, now: UnixMillis, client: &ClientId, delivery: Delivery) {
        // A message an older copy sent (`sent_as`) does not expire: its delivery has begun
        // (§3.3.2.3.3), and the client may hold its packet id until it comes again.
        if delivery.message.is_expired(now) && delivery.sent_as.is_none() {
            return self.stats.count_drop(DropReason::Expired);
        }
        if !self.take_once(client, &delivery) {
            return;
        }
        let queue_qos0 = self.config.queue.queue_qos0;
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        if session.online.is_some() {
            if delivery.qos == QoS::AtMostOnce {
                self.transmit(now, client, &delivery, None, false);
                return;
            }
            if session.queue.is_empty()
                && session.inflight_loaded
                && session.window_has_room()
                && !(delivery.qos == QoS::ExactlyOnce
                    && session.qos2_state_elsewhere
                    && self.deliveries_held(now, client))
            {
                return self.send_in_window(now, client, delivery, None);
            }
        } else if delivery.qos == QoS::AtMostOnce && !queue_qos0 {
            return self.stats.count_drop(DropReason::Qos0Offline);
        }
        self.enqueue(client, delivery);
        self.note_congestion(client);
    }

    /// Remembers, for the PUBLISH being routed, that `client` is connected and its queue is at
    /// the congestion mark: the publisher's acknowledgement then waits (see `acks`).
    fn note_congestion(&mut self, client: &ClientId) {
        let Some(congested) = self.route_congested.as_mut() else {
            return;
        };
        let mark = self.config.queue.congested_at();
        let backed_up = self
            .sessions
            .get(client)
            .is_some_and(|s| s.online.is_some() && s.queue.bounds.count >= mark);
        if backed_up && !congested.contains(client) {
            congested.push(client.clone());
        }
    }

    /// Messages a connected session's queue takes beyond `queue.max_messages` under publisher
    /// flow control: the publishers' acknowledgements are held once the queue reaches the
    /// congestion mark, but what they sent before that hold reached them is already on its way
    /// (each publisher's window of unacknowledged messages). Without room for it, an ordinary
    /// fan-in (8 publishers with 64 in flight each, one subscriber behind them, default limits)
    /// filled the queue and dropped about 0.1 % of the QoS 1 messages it had acknowledged to
    /// 3.1.1 publishers. One Receive Maximum (the most an MQTT 5 publisher may have in flight)
    /// bounds the extra memory; the byte limit stays exact, and an offline session (nobody
    /// drains it, nobody is held) keeps the plain limit.
    fn flow_control_headroom(&self, session: &Session) -> u64 {
        if session.online.is_some() && self.config.queue.backpressure {
            u64::from(self.config.limits.receive_maximum)
        } else {
            0
        }
    }

    /// The message being routed does not fit a full queue: counted, and remembered so that an
    /// MQTT 5 publisher's PUBACK says Quota Exceeded instead of promising delivery.
    fn refuse_for_quota(&mut self) {
        self.stats.count_drop(DropReason::QueueFull);
        self.route_quota_drops += 1;
    }

    pub(super) fn enqueue(&mut self, client: &ClientId, delivery: Delivery) {
        let size = delivery.size();
        let limits = self.config.queue.clone();
        // A message that cannot fit even in an empty queue is dropped by itself: evicting the
        // whole queue first (drop_oldest) would lose every queued message and still not make room.
        // A QoS 2 message an older copy sent waits here only for its packet id (`sent_as`): it
        // is in flight, as a window entry is, and the queue's limits do not apply to it.
        let in_flight = delivery.sent_as.is_some();
        if !in_flight && !limits.max_bytes.allows(size) {
            return self.refuse_for_quota();
        }
        if !in_flight {
            loop {
                let Some(session) = self.sessions.get(client) else {
                    return;
                };
                let bounds = session.queue.bounds;
                let headroom = self.flow_control_headroom(session);
                if limits
                    .max_messages
                    .allows((bounds.count + 1).saturating_sub(headroom))
                    && limits.max_bytes.allows(bounds.bytes + size)
                {
                    break;
                }
                if limits.drop_policy == DropPolicy::DropNewest || bounds.count == 0 {
                    return self.refuse_for_quota();
                }
                if self.pop_queue(client).is_some() {
                    self.stats.count_drop(DropReason::QueueFull);
                } else {
                    return self.refuse_for_quota();
                }
            }
        }
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        // An offline persistent session keeps its queue on disk only (ARCHITECTURE §2: an
        // offline session costs bytes on disk, not a buffer in memory); it is paged in when the
        // client is back.
        let online = session.online.is_some();
        let newly_kept = delivery
            .sent_as
            .is_some_and(|id| session.keep_id_for_queued(id));
        let queue = &mut session.queue;
        let seq = queue.bounds.next;
        let append_to_head =
            queue.head_is_complete() && (!session.stored || (online && queue.head_has_room(size)));
        if queue.bounds.count == 0 {
            queue.bounds.first = seq;
        }
        queue.bounds.next = seq.next();
        queue.bounds.count += 1;
        queue.bounds.bytes += size;
        if session.stored {
            self.batch.push(Op::Enqueue {
                client: client.clone(),
                seq,
                delivery: delivery.clone(),
            });
        }
        if append_to_head {
            queue.head.push_back((seq, delivery));
        }
        if newly_kept {
            self.write_kept_ids(client);
        }
    }

    /// Moves queued messages into the send window while it has room.
    pub(super) fn pump(&mut self, now: UnixMillis, client: &ClientId) {
        self.pump_window(now, client);
        self.note_drained(client);
    }

    fn pump_window(&mut self, now: UnixMillis, client: &ClientId) {
        // The session is looked up once per message sent (this runs at every acknowledgement):
        // an earlier connection's re-sends, which go first, are looked for in the same lookup.
        let mut resent = false;
        loop {
            let Some(session) = self.sessions.get(client) else {
                return;
            };
            if !resent {
                resent = true;
                if !session.resend.is_empty() {
                    self.resend_inflight(now, client);
                    continue;
                }
            }
            if !session.window_has_room() || session.queue.is_empty() {
                return;
            }
            let stored = session.stored;
            // A QoS 2 message waits at the head, and what is behind it with it (order). The
            // flag first: almost no session has it, and this runs for every message sent.
            if session.qos2_state_elsewhere
                && self.front_qos(client) == Some(QoS::ExactlyOnce)
                && self.deliveries_held(now, client)
            {
                return;
            }
            let Some((seq, delivery)) = self.take_front(client) else {
                return;
            };
            // A QoS 2 message that must go out under the id an older copy sent it under waits
            // at the head while the window uses that id: it is freed when the client
            // acknowledges what holds it, and that acknowledgement pumps again.
            if let Some(id) = delivery.sent_as
                && self
                    .sessions
                    .get(client)
                    .is_some_and(|s| s.uses_packet_id(id))
            {
                self.put_back_front(client, seq, delivery);
                return;
            }
            if delivery.message.is_expired(now) && delivery.sent_as.is_none() {
                self.delete_row(client, seq);
                self.stats.count_drop(DropReason::Expired);
                continue;
            }
            match delivery.qos {
                QoS::AtMostOnce => {
                    self.delete_row(client, seq);
                    self.transmit(now, client, &delivery, None, false);
                }
                // Its queue row stays as its in-flight record (`row_backed`).
                QoS::AtLeastOnce if stored => self.send_in_window(now, client, delivery, Some(seq)),
                _ => {
                    self.delete_row(client, seq);
                    self.send_in_window(now, client, delivery, None);
                }
            }
        }
    }

    /// Whether `client`'s QoS 2 deliveries wait for the QoS 2 state of an older copy of its
    /// session that could not be reached when it resumed here (`qos2_state_elsewhere`). The
    /// client may still hold packet ids that copy sent it QoS 2 messages under (PUBREC sent,
    /// PUBREL not yet): a new QoS 2 PUBLISH under such an id is dropped as a duplicate, and the
    /// copy's own re-send, merged later under another id, is taken a second time (simulator
    /// `6-qos2-id` then `6-qos2`). Only that copy knows the ids, so QoS 2 messages wait for it
    /// (at the head of the queue, with what is behind them) — at most `QOS2_STATE_WAIT` from
    /// the first one held, after which an owner that has not come back is taken as gone
    /// (exactly once is then not promised). QoS 0 and 1 go on: a QoS 1 PUBLISH under an id the
    /// client holds for QoS 2 is still delivered and acknowledged by it, and holding them
    /// would cost every session that resumed after a node crash its messages for that long.
    pub(super) fn deliveries_held(&mut self, now: UnixMillis, client: &ClientId) -> bool {
        let in_doubt = self
            .sessions
            .get(client)
            .is_some_and(|s| s.qos2_state_elsewhere);
        in_doubt && self.qos2_wait_running(now, client)
    }

    /// Whether the re-send of `delivery`, in `client`'s in-flight window from an earlier
    /// connection, waits (with what follows it, in order) for the older copy's QoS 2 state
    /// (`deliveries_held`). A merge that leaves the session without a newer copy's state keeps
    /// this copy's window (`merge_inflight`): that copy may have re-sent such a message under
    /// the same packet id and had it completed, and the client freed the id since — re-sent
    /// at the CONNECT, it reached the application twice (simulator `--scenario lost-release`,
    /// seed 43). When that copy's state comes (`on_import_late`), what it delivered is
    /// released instead (`release_delivered`); when the wait ends, it goes out.
    fn resend_held(&mut self, now: UnixMillis, client: &ClientId, delivery: &Delivery) -> bool {
        delivery.qos == QoS::ExactlyOnce
            && self
                .sessions
                .get(client)
                .is_some_and(|s| s.qos2_state_elsewhere)
            && self.deliveries_held(now, client)
    }

    /// Whether `client`'s re-sent QoS 2 PUBLISHes with an id not known here wait for an older
    /// copy's state: also when only the client's side of it is in doubt
    /// (`incoming_qos2_elsewhere`), on the same clock as the deliveries.
    pub(super) fn resends_held(&mut self, now: UnixMillis, client: &ClientId) -> bool {
        let in_doubt = self
            .sessions
            .get(client)
            .is_some_and(|s| s.qos2_state_elsewhere || s.incoming_qos2_elsewhere);
        in_doubt && self.qos2_wait_running(now, client)
    }

    /// The wait for an older copy's QoS 2 state, started at the first thing that waits:
    /// whether it still runs.
    pub(super) fn qos2_wait_running(&mut self, now: UnixMillis, client: &ClientId) -> bool {
        let Some(session) = self.sessions.get_mut(client) else {
            return false;
        };
        let wait = session.qos2_wait.get_or_insert_with(Default::default);
        let until = *wait.deliveries_wait_until.get_or_insert_with(|| {
            let until = now.plus_millis(QOS2_STATE_WAIT);
            self.timers
                .insert((until, super::Timer::DeliveryWait(client.clone())));
            self.stats.qos2_state_waits_total += 1;
            until
        });
        now < until
    }

    /// Sessions here still in doubt about an older copy's QoS 2 state whose wait for it
    /// (`QOS2_STATE_WAIT`) has not ended yet: what they hold goes out when it ends. For a
    /// harness that waits until the cluster is quiet. (A wait's timer stays after the doubt is
    /// settled, so the timers alone would overstate it.)
    pub fn qos2_waits(&self) -> usize {
        self.timers
            .iter()
            .filter_map(|(_, timer)| match timer {
                super::Timer::DeliveryWait(client) => self.sessions.get(client),
                _ => None,
            })
            .filter(|s| s.qos2_in_doubt())
            .count()
    }

    /// `Timer::DeliveryWait`: the older copy did not come back in time; the queue flows, and
    /// the re-sent PUBLISHes that waited for it are taken as new (routed, unless their id
    /// became known meanwhile).
    pub(super) fn delivery_wait_due(&mut self, now: UnixMillis, client: &ClientId) {
        if self.sessions.get(client).is_some_and(|s| {
            s.qos2_in_doubt()
                && s.qos2_wait
                    .as_ref()
                    .and_then(|w| w.deliveries_wait_until)
                    .is_some_and(|until| until <= now)
        }) {
            self.stats.qos2_state_waits_expired_total += 1;
        }
        let held = self
            .sessions
            .get_mut(client)
            .and_then(|s| s.qos2_wait.as_mut())
            .filter(|w| w.deliveries_wait_until.is_some_and(|until| until <= now))
            .map(|w| std::mem::take(&mut w.held))
            .unwrap_or_default();
        for held in held {
            self.settle_held_qos2(now, client, held);
        }
        if self
            .sessions
            .get(client)
            .is_some_and(|s| s.online.is_some())
        {
            self.pump(now, client);
        }
    }

    /// Sends `delivery` under a free packet id and keeps it in the window. `row`: the queue row
    /// it was taken from, which becomes its in-flight record (`row_backed`); without one an
    /// in-flight row is written.
    fn send_in_window(
        &mut self,
        now: UnixMillis,
        client: &ClientId,
        delivery: Delivery,
        row: Option<QueueSeq>,
    ) {
        let durable_writes = self.durable_writes;
        if let Some(id) = delivery.sent_as {
            let session = self.sessions.get_mut(client);
            // It goes out under its id now: no longer kept.
            if session.is_some_and(|s| !s.uses_packet_id(id) && s.release_kept_id(Some(id))) {
                self.write_kept_ids(client);
            }
        }
        let Some((session, mut outbox)) = self.session_outbox(client) else {
            return;
        };
        let id = match delivery.sent_as {
            // Waits in the queue until the window no longer uses its id (see `pump_window`).
            Some(id) if session.uses_packet_id(id) => None,
            Some(id) => Some(id),
            None => session.allocate_packet_id(),
        };
        let Some(id) = id else {
            if let Some(seq) = row {
                self.delete_row(client, seq);
            }
            return self.enqueue(client, delivery);
        };
        if !outbox.publish(now, session, &delivery, Some(id), false) {
            // Dropped as if delivered (see `Outbox::publish`).
            if let Some(seq) = row {
                self.delete_row(client, seq);
            }
            return;
        }
        let order = session.take_order();
        if row.is_some() || !session.stored {
            // Its row and the mark covering it are durable: it may leave before the group's
            // write (`row_backed.rs`).
            let early = row.is_some_and(|seq| {
                let lease = session.online.as_ref().map(|online| online.lease);
                lease.is_some_and(|lease| lease.covers(seq, durable_writes))
            });
            session
                .inflight
                .push_back((id, Outgoing::Sent { order, delivery }));
            if early {
                debug_assert!(matches!(self.actions.last(), Some(Action::Send { .. })));
                self.early_at.push(self.actions.len() - 1);
            }
            if let Some(seq) = row {
                self.keep_row(client, id, seq);
            }
            return;
        }
        // After a crash, in-flight rows are re-sent before queue rows: older deliveries still
        // backed by their queue row become in-flight rows first, so that the window goes out
        // again in the order it was sent [MQTT-4.6.0-1].
        self.settle_rows(client);
        self.batch
            .push(super::row_backed::sent_row(client, id, order, &delivery));
        if let Some(session) = self.sessions.get_mut(client) {
            session
                .inflight
                .push_back((id, Outgoing::Sent { order, delivery }));
        }
    }

    /// After CONNACK of a resumed session: re-send the in-flight window in its original order
    /// (PUBLISH with DUP = 1 and the same packet identifier, or PUBREL), then the queue.
    pub(super) fn resume_delivery(&mut self, now: UnixMillis, client: &ClientId) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        if !session.inflight_loaded {
            match read_inflight_through(&self.store, &self.batch, client) {
                Ok(window) => {
                    session.next_order = window
                        .iter()
                        .map(|(_, record)| record.order() + 1)
                        .max()
                        .unwrap_or(0);
                    session.inflight = window
                        .into_iter()
                        .map(|(id, record)| match record {
                            InflightRecord::Sent { order, delivery } => {
                                (id, Outgoing::Sent { order, delivery })
                            }
                            InflightRecord::Released { .. } => (id, Outgoing::Released),
                        })
                        .collect();
                    session.inflight_loaded = true;
                }
                Err(error) => {
                    self.fault = Some(error);
                    return;
                }
            }
        }
        let Some(conn) = session.conn() else { return };
        // In the original order; but PUBLISHes only as far as this connection's send window (the
        // client's Receive Maximum) reaches: the rest wait in `resend` for `pump`.
        let window = session
            .online
            .as_ref()
            .map_or(0, |online| online.send_window);
        let entries: Vec<(PacketId, Outgoing)> = session.inflight.iter().cloned().collect();
        session.resend.clear();
        let mut in_air = 0;
        for (id, outgoing) in entries {
            match outgoing {
                Outgoing::Sent { delivery, .. } => {
                    let held = self.resend_held(now, client, &delivery);
                    let Some(session) = self.sessions.get_mut(client) else {
                        return;
                    };
                    if held || !session.resend.is_empty() || in_air >= window {
                        session.resend.push_back(id);
                    } else if self.transmit(now, client, &delivery, Some(id), true) {
                        in_air += 1;
                    } else {
                        // Too large for this connection's Maximum Packet Size: discarded as if
                        // delivered [MQTT-3.1.2-25], so it must not hold a window slot forever.
                        self.forget_inflight(client, id);
                    }
                }
                Outgoing::Released => {
                    in_air += 1;
                    self.send(conn, Packet::PubRel(PubRel::new(id)));
                }
            }
        }
        self.pump(now, client);
    }

    /// Re-sends in-flight PUBLISHes of an earlier connection (DUP = 1, same packet identifier)
    /// while fewer than the send window are unacknowledged on this one.
    fn resend_inflight(&mut self, now: UnixMillis, client: &ClientId) {
        loop {
            let Some(session) = self.sessions.get_mut(client) else {
                return;
            };
            let Some(online) = session.online.as_ref() else {
                return;
            };
            let unacknowledged = session.inflight.len().saturating_sub(session.resend.len());
            if unacknowledged >= online.send_window {
                return;
            }
            let Some(id) = session.resend.pop_front() else {
                return;
            };
            let delivery = session
                .inflight
                .iter()
                .find_map(|(used, outgoing)| match outgoing {
                    Outgoing::Sent { delivery, .. } if *used == id => Some(delivery.clone()),
                    _ => None,
                });
            // Acknowledged before it was re-sent: nothing left to do for it.
            let Some(delivery) = delivery else { continue };
            if self.resend_held(now, client, &delivery) {
                if let Some(session) = self.sessions.get_mut(client) {
                    session.resend.push_front(id);
                }
                return;
            }
            if !self.transmit(now, client, &delivery, Some(id), true) {
                // Too large for this connection's Maximum Packet Size: discarded as if
                // delivered [MQTT-3.1.2-25], so it must not hold a window slot forever.
                self.forget_inflight(client, id);
            }
        }
    }

    /// Removes `id` from the in-flight window, in memory and in the store.
    pub(super) fn forget_inflight(&mut self, client: &ClientId, id: PacketId) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        session.inflight.retain(|(used, _)| *used != id);
        self.delete_inflight_record(client, id);
    }

    /// Sends one PUBLISH to the session's connection (see [`Outbox::publish`]).
    fn transmit(
        &mut self,
        now: UnixMillis,
        client: &ClientId,
        delivery: &Delivery,
        packet_id: Option<PacketId>,
        dup: bool,
    ) -> bool {
        let Some((session, mut outbox)) = self.session_outbox(client) else {
            return false;
        };
        outbox.publish(now, session, delivery, packet_id, dup)
    }

    /// `client`'s session beside what sending it a PUBLISH needs of the broker: one lookup
    /// for both.
    fn session_outbox(&mut self, client: &ClientId) -> Option<(&mut Session, Outbox<'_>)> {
        let session = self.sessions.get_mut(client)?;
        let outbox = Outbox {
            config: &self.config,
            stats: &mut self.stats,
            actions: &mut self.actions,
        };
        Some((session, outbox))
    }
}

/// What sending a PUBLISH to a connected session needs of the broker besides the session
/// itself: borrowed apart from the session map, so that a session found once serves for its
/// packet id, its PUBLISH and its window (the lookups by client id were ~13 % of the broker
/// thread in fan-out, several per delivery).
struct Outbox<'a> {
    config: &'a BrokerConfig,
    stats: &'a mut Stats,
    actions: &'a mut Vec<Action>,
}

impl Outbox<'_> {
    /// Sends one PUBLISH to `session`'s connection. Returns false if it was dropped because
    /// the client's Maximum Packet Size cannot hold it (§3.1.2.11.4: as if delivered), the
    /// ACL keeps the client from its topic (counted, as if delivered too), or the session is
    /// not connected.
    fn publish(
        &mut self,
        now: UnixMillis,
        session: &mut Session,
        delivery: &Delivery,
        packet_id: Option<PacketId>,
        dup: bool,
    ) -> bool {
        let protocol = session.protocol;
        let Some(online) = session.online.as_mut() else {
            return false;
        };
        let message = &delivery.message;
        if !self.config.may_receive(&online.principal, &message.topic) {
            // As if delivered, like a message too large for the client: it never reaches a
            // client the rules (as they are now) keep from its topic.
            self.stats.count_drop(DropReason::NotAuthorized);
            return false;
        }
        // MQTT 3.1.1 carries no properties: none are copied or allocated.
        let properties = if protocol.is_v5() {
            delivered_properties(delivery, now)
        } else {
            berth_codec::SparseProperties::none()
        };
        let mut packet = Packet::Publish(Publish {
            // [MQTT-3.3.1-2]: never on QoS 0.
            dup: (dup || delivery.redelivery) && delivery.qos != QoS::AtMostOnce,
            qos: delivery.qos,
            retain: delivery.retain,
            topic: message.topic.clone(),
            packet_id,
            payload: message.payload.clone(),
            properties,
        });
        // Measured with the full topic, the largest form: a topic alias only shrinks it.
        let fits =
            encoded_len(&packet, protocol).is_ok_and(|len| len <= online.max_packet_size as usize);
        if !fits {
            self.stats.count_drop(DropReason::TooLargeForClient);
            return false;
        }
        if online.alias_maximum > 0
            && let Packet::Publish(publish) = &mut packet
        {
            let aliases = &mut online.aliases.get_or_insert_default().out;
            if let Some(alias) = aliases.get(&message.topic) {
                publish.properties.topic_alias = std::num::NonZeroU16::new(*alias);
                publish.topic = TopicName::empty();
            } else if aliases.len() < usize::from(online.alias_maximum) {
                let alias = aliases.len() as u16 + 1;
                aliases.insert(message.topic.clone(), alias);
                publish.properties.topic_alias = std::num::NonZeroU16::new(alias);
            }
        }
        self.stats.publishes_sent_total += 1;
        self.actions.push(Action::Send {
            conn: online.conn,
            packet,
        });
        true
    }
}

/// The properties an MQTT 5 delivery carries: the message's, with its remaining expiry and the
/// identifiers of the matching subscriptions. Without either, a message with no properties gets
/// no set allocated.
fn delivered_properties(delivery: &Delivery, now: UnixMillis) -> berth_codec::SparseProperties {
    let message = &delivery.message;
    let mut properties = message.properties.clone();
    let expiry = message.expires_at.map(|at| now.secs_until(at).max(1));
    if expiry.is_some() || !delivery.subscription_ids.is_empty() {
        properties.message_expiry_interval = expiry;
        properties.subscription_identifiers = delivery.subscription_ids.clone();
    } else if let Some(set) = properties.get_mut() {
        set.message_expiry_interval = None;
        set.subscription_identifiers = Vec::new();
    }
    properties
}

//! PUBLISH from clients and the acknowledgements of both directions' QoS 1/2 exchanges.

use std::sync::Arc;

use berth_codec::{
    DisconnectReasonCode, Packet, PacketId, PubAck, PubAckReasonCode, PubComp, PubRec, PubRel,
    PubRelReasonCode, Publish, QoS,
};

use super::Broker;
use super::session::Outgoing;
use crate::ids::{ClientId, ConnId};
use crate::message::{Delivery, Message};
use crate::store::{InflightRecord, Op, Store};
use crate::time::UnixMillis;

/// Which copy a state recovered late came from: its node, and the newest claim it served
/// when its exporter says (`SessionExport::served`).
#[derive(Debug, Clone, Copy)]
pub(super) struct LateHolder {
    pub node: crate::cluster::NodeId,
    pub served: Option<crate::ids::Epoch>,
}

impl<S: Store> Broker<S> {
    pub(super) fn on_publish(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        client: &ClientId,
        publish: Publish,
    ) {
        self.stats.publishes_received_total += 1;
        let alias_maximum = self.config.limits.topic_alias_maximum;
        let publish_rate = self.config.limits.publish_rate;
        let publish_rate_bytes = self.config.limits.publish_rate_bytes;
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let Some(online) = session.online.as_mut() else {
            return;
        };
        if !publish_rate.take_credit(&mut online.publish_credit, &mut online.credit_at, now) {
            // Not acknowledged: the client sends its QoS 1/2 messages again when it is back.
            self.stats.publish_rate_exceeded_total += 1;
            return self.disconnect_with(
                now,
                conn,
                client,
                DisconnectReasonCode::MessageRateTooHigh,
            );
        }
        // The bytes it carries: its topic as sent (empty when an alias stands for it) and its
        // payload.
        let bytes = (publish.topic.as_str().len() + publish.payload.len()) as u64;
        if !publish_rate_bytes.take_credits(
            &mut online.bytes_credit,
            &mut online.bytes_credit_at,
            now,
            bytes,
        ) {
            self.stats.publish_bytes_rate_exceeded_total += 1;
            return self.disconnect_with(
                now,
                conn,
                client,
                DisconnectReasonCode::MessageRateTooHigh,
            );
        }

        let topic = match publish.properties.topic_alias {
            Some(alias) if alias.get() > alias_maximum => {
                return self.disconnect_with(
                    now,
                    conn,
                    client,
                    DisconnectReasonCode::TopicAliasInvalid,
                );
            }
            Some(alias) if publish.topic.is_empty() => match online
                .aliases
                .as_ref()
                .and_then(|aliases| aliases.inbound.get(&alias.get()))
            {
                Some(topic) => topic.clone(),
                None => {
                    return self.disconnect_with(
                        now,
                        conn,
                        client,
                        DisconnectReasonCode::ProtocolError,
                    );
                }
            },
            Some(alias) => {
                online
                    .aliases
                    .get_or_insert_default()
                    .inbound
                    .insert(alias.get(), publish.topic.clone());
                publish.topic.clone()
            }
            None => publish.topic.clone(),
        };

        // The topic limits first: they are a property of the packet, whoever sends it.
        if let Some(limit) = self.config.limits.topic_over(topic.as_str()) {
            return self.refuse_publish(now, conn, client, &publish, Refused::Limit(limit));
        }
        if !self.config.may_publish(&online.principal, topic.as_str()) {
            return self.refuse_publish(now, conn, client, &publish, Refused::NotAuthorized);
        }

        if publish.qos == QoS::ExactlyOnce {
            let Some(id) = publish.packet_id else { return };
            if session.incoming_qos2.contains(&id) {
                // A re-sent PUBLISH we already routed: exactly once means acknowledge only —
                // but not before the first one is stored where it went (it may still wait for
                // another node, and fail there).
                if let Some(token) = self.follow_qos2(conn, client, id) {
                    return self.hold_ack(conn, Packet::PubRec(PubRec::new(id)), token);
                }
                return self.send_ack(now, conn, Packet::PubRec(PubRec::new(id)), None, &[]);
            }
            let held = session.qos2_wait.as_ref().map_or(0, |w| w.held.len());
            if session.incoming_qos2.len() + held >= usize::from(self.config.limits.receive_maximum)
            {
                return self.disconnect_with(
                    now,
                    conn,
                    client,
                    DisconnectReasonCode::ReceiveMaximumExceeded,
                );
            }
            if publish.dup
                && (session.qos2_state_elsewhere || session.incoming_qos2_elsewhere)
                && self.resends_held(now, client)
            {
                // Re-sent, and its first send may have reached the older copy this session
                // resumed without: whether it is a duplicate is known once that copy's ids are
                // here (`recover_qos2_state`) — or, if it does not come back within
                // `QOS2_STATE_WAIT`, it is taken as new (`delivery_wait_due`): the publisher
                // never waits on a node that does not come back.
                return self.hold_qos2(conn, client, publish, topic);
            }
            let Some(session) = self.sessions.get_mut(client) else {
                return;
            };
            // Remembered now (a re-send on this connection is a duplicate), stored below:
            // with the deliveries when every match is here, or when the last other owner has
            // stored it (`on_forward_done`). Stored earlier, a crash before those owners
            // confirmed would keep the id, and the client's re-sent PUBLISH would be answered
            // as a duplicate of a message that never got there.
            session.incoming_qos2.insert(id);
        }

        let retry = self.retry_identity(client, &publish);
        if let Some(routed) = self.route_publish(now, client, publish, topic, retry) {
            self.send_ack(now, conn, routed.ack, routed.waiting_on, &routed.congested);
            self.name_wait(routed.waiting_on, routed.message_id);
        }
    }

    /// A PUBLISH the ACL or a topic limit does not allow: dropped and counted (the ACL's in
    /// `berth_messages_dropped_total{reason="not_authorized"}`, a limit's in
    /// `berth_limit_refusals_total`). An MQTT 5 publisher hears why on its PUBACK/PUBREC: 0x87
    /// (Not authorized), or 0x90 (Topic Name invalid: well formed, but not accepted here); a
    /// QoS 0 one hears nothing, as QoS 0 has no acknowledgement. A 3.1.1 publisher, which has no
    /// way to hear it, gets its acknowledgement as usual (its QoS 2 exchange ends at a PUBREL
    /// answered without an id kept): a refusal it cannot act on must not make it send again.
    fn refuse_publish(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        client: &ClientId,
        publish: &Publish,
        refused: Refused,
    ) {
        let refusal = match refused {
            Refused::NotAuthorized => {
                self.stats
                    .count_drop(crate::stats::DropReason::NotAuthorized);
                PubAckReasonCode::NotAuthorized
            }
            Refused::Limit(limit) => {
                self.stats.count_limit(limit);
                PubAckReasonCode::TopicNameInvalid
            }
        };
        let v5 = self
            .sessions
            .get(client)
            .is_some_and(|s| s.protocol.is_v5());
        let reason = if v5 {
            refusal
        } else {
            PubAckReasonCode::Success
        };
        if let Some(ack) = publish_ack(publish.qos, publish.packet_id, reason) {
            self.send_ack(now, conn, ack, None, &[]);
        }
    }

    /// Routes a client's PUBLISH (its QoS 2 id already remembered) and says how to acknowledge
    /// it; `None` for QoS 0.
    fn route_publish(
        &mut self,
        now: UnixMillis,
        client: &ClientId,
        publish: Publish,
        topic: berth_codec::TopicName,
        retry: Option<crate::ids::MessageId>,
    ) -> Option<Routed> {
        let (qos, packet_id) = (publish.qos, publish.packet_id);
        let mut message = Message::published(publish, topic, now);
        if qos == QoS::ExactlyOnce {
            message.id = retry.or_else(|| self.new_message_id(now));
        }
        let message_id = message.id;
        if message.retain {
            self.set_retained(&message);
        }
        self.route_quota_drops = 0;
        let message = Arc::new(message);
        self.route_congested = Some(Vec::new());
        let matched = self.route(now, Some(client), message.clone());
        let congested = self.route_congested.take().unwrap_or_default();
        // Sessions of other nodes: the acknowledgement waits until their owners stored it.
        let token = if qos == QoS::AtMostOnce {
            None
        } else {
            self.new_token()
        };
        let waiting_nodes = self.forward_matches(now, &message, Some(client), token);
        let waiting_on = token
            .filter(|_| waiting_nodes > 0)
            .map(|t| (t, waiting_nodes));
        if qos == QoS::ExactlyOnce
            && let Some(id) = packet_id
        {
            match (waiting_on, message_id) {
                (None, _) => self.store_incoming_qos2(client, id),
                // Written down with its identity until every owner stored it: a re-send after
                // a crash here is routed again under it (`Session::qos2_retry`).
                (Some(_), Some(message_id)) => self.store_qos2_retry(client, id, message_id),
                (Some(_), None) => {}
            }
        }

        // A PUBACK is a promise that the message is queued for every matching session; when a
        // full queue (drop_newest) refused it, MQTT 5 lets us say so. 3.1.1 has no way to.
        let reason = if matched == 0 {
            PubAckReasonCode::NoMatchingSubscribers
        } else if self.route_quota_drops > 0 {
            PubAckReasonCode::QuotaExceeded
        } else {
            PubAckReasonCode::Success
        };
        let ack = publish_ack(qos, packet_id, reason)?;
        Some(Routed {
            ack,
            waiting_on,
            congested,
            message_id,
        })
    }

    /// Holds a re-sent QoS 2 PUBLISH of a session whose older copy's QoS 2 ids are not here
    /// yet (see `Qos2Wait`): its PUBREC keeps its place in the connection's acknowledgements.
    fn hold_qos2(
        &mut self,
        conn: ConnId,
        client: &ClientId,
        mut publish: Publish,
        topic: berth_codec::TopicName,
    ) {
        let Some(id) = publish.packet_id else { return };
        let Some(token) = self.new_token() else {
            return;
        };
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let wait = session.qos2_wait.get_or_insert_with(Default::default);
        // Held PUBLISHes of an earlier connection went with it: the client re-sends them.
        wait.held.retain(|h| h.conn == conn);
        if wait.held.iter().any(|h| h.publish.packet_id == Some(id)) {
            // Sent again on the same connection: it waits already, and gets one PUBREC.
            return;
        }
        publish.topic = topic;
        if let Some(set) = publish.properties.get_mut() {
            set.topic_alias = None;
        }
        publish.properties.compact();
        wait.held.push(super::session::HeldQos2 {
            conn,
            token,
            publish,
        });
        self.hold_ack(conn, Packet::PubRec(PubRec::new(id)), token);
    }

    /// The QoS 2 ids of the older copy a session resumed without are here (`ids`, from its
    /// recovered backlog): they join the session's (less those the client released here since:
    /// they ended), and the re-sent PUBLISHes that waited are settled — a duplicate of one the
    /// older copy received is acknowledged alone, any other is routed now. A copy from another
    /// node than the one the session lacks (`holder`, when known; an older copy whose release
    /// was lost) is not that copy: its ids join, but the client's re-sends it does not know
    /// still wait for the other (simulator seed 5861: its empty state let a re-send be routed
    /// as new, a second time). Deliveries go on as that copy's state allows: holding them for
    /// the other copy as well stalled whole queues behind a QoS 2 message for the full wait
    /// (tried: 126 of 6,000 simulator seeds still held messages at their end).
    pub(super) fn recover_qos2_state(
        &mut self,
        now: UnixMillis,
        client: &ClientId,
        ids: Vec<PacketId>,
        retry: Vec<(PacketId, crate::ids::MessageId)>,
        late: crate::store::SessionRecord,
        holder: Option<LateHolder>,
    ) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        if !session.qos2_state_elsewhere && !session.incoming_qos2_elsewhere {
            // This session's ids are complete: an older copy's could only be stale (the
            // client may have released and reused them since).
            return;
        }
        let mut wait = session.qos2_wait.take().unwrap_or_default();
        let mut restart_wait = false;
        let another_copy = holder.is_some_and(|h| wait.lacking.is_some_and(|l| l.node != h.node));
        let was_in_doubt = session.qos2_in_doubt();
        // A copy that resumed without an older copy's state itself does not complete this
        // session's: the re-sends its ids do not settle keep waiting (simulator seed 152).
        // Which ids the deliveries used was in doubt only if it was here before.
        // Older than the lacked copy, another node's copy cannot tell what that copy delivered:
        // the lacked copy's owner took the session on from it, or from its successors, and may
        // have completed the very QoS 2 messages it brings (simulator `--scenario
        // lost-release`, seed 77: such a copy's window entry re-sent under the id the lacked
        // copy had completed it under). Its deliveries wait for the lacked copy too.
        let older_than_lacked = another_copy
            && holder
                .and_then(|h| h.served)
                .zip(wait.lacking)
                .is_some_and(|(served, lacked)| served < lacked.epoch);
        session.qos2_state_elsewhere =
            session.qos2_state_elsewhere && (late.qos2_state_elsewhere || older_than_lacked);
        session.incoming_qos2_elsewhere = !session.qos2_state_elsewhere
            && (late.qos2_state_elsewhere
                || late.incoming_qos2_elsewhere
                || (another_copy && was_in_doubt));
        if !another_copy {
            // What is still missing is what that copy lacked (the copy it names, if any), and
            // its releases count as the session's. Forgetting the name would make a later
            // merge with that very copy drop its ids as stale (simulator seed 11551).
            restart_wait = wait.now_lacking(late.qos2_doubt.lacking);
            let mut doubt = crate::store::Qos2Doubt {
                lacking: wait.lacking,
                ..Default::default()
            };
            doubt.add_earlier(wait.earlier.iter().chain(&late.qos2_doubt.earlier).copied());
            wait.earlier = doubt.earlier;
        }
        let still_missing = session.qos2_state_elsewhere || session.incoming_qos2_elsewhere;
        wait.released
            .extend(late.qos2_doubt.released.iter().copied());
        let stored = session.stored;
        for id in ids {
            if !wait.released.contains(&id) && session.incoming_qos2.insert(id) && stored {
                self.batch.push(Op::PutIncomingQos2 {
                    client: client.clone(),
                    packet_id: id,
                });
            }
        }
        // Its PUBLISHes in doubt: a re-send that waited goes under the same identity.
        for (packet_id, id) in retry {
            let known = self.sessions.get(client).is_none_or(|s| {
                s.incoming_qos2.contains(&packet_id)
                    || wait.released.contains(&packet_id)
                    || s.qos2_retry
                        .as_ref()
                        .is_some_and(|r| r.contains_key(&packet_id))
            });
            if !known {
                self.keep_for_retry(client, packet_id, id);
            }
        }
        let mut held = std::mem::take(&mut wait.held);
        if still_missing {
            let known = |id: &PacketId| {
                self.sessions
                    .get(client)
                    .is_some_and(|s| s.incoming_qos2.contains(id))
            };
            let waiting;
            (held, waiting) = held
                .into_iter()
                .partition(|h| h.publish.packet_id.as_ref().is_some_and(known));
            wait.held = waiting;
            if let Some(session) = self.sessions.get_mut(client) {
                session.qos2_wait = Some(wait);
            }
            if restart_wait {
                self.qos2_wait_running(now, client);
            }
        }
        if stored && let Some(session) = self.sessions.get(client) {
            self.batch.push(Op::PutSession {
                client: client.clone(),
                record: super::record_of(session),
            });
        }
        for held in held {
            self.settle_held_qos2(now, client, held);
        }
        // Complete now: the deliveries that waited for this state go out (`deliveries_held`).
        if self
            .sessions
            .get(client)
            .is_some_and(|s| !s.qos2_state_elsewhere && s.online.is_some())
        {
            self.pump(now, client);
        }
    }

    pub(super) fn settle_held_qos2(
        &mut self,
        now: UnixMillis,
        client: &ClientId,
        held: super::session::HeldQos2,
    ) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        if session.conn() != Some(held.conn) {
            // Its connection ended, and its acknowledgement with it: the client re-sends it.
            return;
        }
        let Some(id) = held.publish.packet_id else {
            return;
        };
        if !session.incoming_qos2.insert(id) {
            // The older copy received it: a duplicate, acknowledged alone.
            return self.settle_held_ack(held.conn, held.token, None, None);
        }
        let topic = held.publish.topic.clone();
        let retry = self.retry_identity(client, &held.publish);
        match self.route_publish(now, client, held.publish, topic, retry) {
            Some(routed) => {
                self.settle_held_ack(held.conn, held.token, Some(routed.ack), routed.waiting_on);
                self.name_wait(routed.waiting_on, routed.message_id);
            }
            None => self.settle_held_ack(held.conn, held.token, None, None),
        }
    }

    /// Hands `message` to every matching session; returns how many sessions matched.
    pub(super) fn route(
        &mut self,
        now: UnixMillis,
        publisher: Option<&ClientId>,
        message: Arc<Message>,
    ) -> usize {
        let sessions = &self.sessions;
        let matches = self.index.matches(&message.topic, publisher, |client| {
            sessions.get(client).is_some_and(|s| s.online.is_some())
        });
        let count = matches.len();
        for (client, matched) in matches {
            if self.is_fenced(&client) {
                if let Some(cluster) = self.cluster.as_mut() {
                    cluster.route_fenced.push(client);
                }
                continue;
            }
            if let Some(owner) = self.remote_owner(&client) {
                self.note_remote_match(owner, client);
                continue;
            }
            if self.handoff.holds(&client) {
                // Messages kept for it here are not delivered yet (a fence still holds them):
                // this one follows them.
                self.keep_for_import(&client, &message, publisher, false);
                continue;
            }
            let delivery = Delivery {
                message: message.clone(),
                qos: message.qos.min(matched.qos),
                retain: message.retain && matched.retain_as_published,
                subscription_ids: matched.subscription_ids,
                redelivery: false,
                sent_as: None,
            };
            self.deliver(now, &client, delivery);
        }
        count
    }

    /// Retained messages are not session state: they outlive every session (§3.3.1.3).
    pub(super) fn set_retained_public(&mut self, message: &Message) {
        self.set_retained(message);
    }

    fn set_retained(&mut self, message: &Message) {
        if message.payload.is_empty() {
            if self.retained.remove(&message.topic).is_some() {
                self.batch.push(Op::DeleteRetained {
                    topic: message.topic.clone(),
                });
            }
            return;
        }
        // Without its identity: a retained message is sent again to every new subscription,
        // and each of those is a delivery of its own, not a duplicate.
        // Detached: it may be kept for as long as the broker runs.
        let stored = Message {
            retain: true,
            id: None,
            ..message.detached()
        };
        self.batch.push(Op::PutRetained {
            message: stored.clone(),
        });
        self.retained.insert(stored.topic.clone(), Arc::new(stored));
    }

    pub(super) fn on_puback(&mut self, now: UnixMillis, client: &ClientId, id: PacketId) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let position = session.inflight.iter().position(|(pid, out)| {
            *pid == id && matches!(out, Outgoing::Sent { delivery, .. } if delivery.qos == QoS::AtLeastOnce)
        });
        let Some((packet_id, _)) = position.and_then(|at| session.inflight.remove(at)) else {
            return;
        };
        self.outgoing_done(now, client, packet_id);
    }

    pub(super) fn on_pubrec(&mut self, now: UnixMillis, client: &ClientId, rec: PubRec) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let Some(conn) = session.conn() else { return };
        let id = rec.packet_id;
        let Some(position) = session.inflight.iter().position(|(pid, _)| *pid == id) else {
            let mut rel = PubRel::new(id);
            rel.reason = PubRelReasonCode::PacketIdentifierNotFound;
            return self.send(conn, Packet::PubRel(rel));
        };
        let order = match &session.inflight[position].1 {
            Outgoing::Sent { order, delivery } if delivery.qos == QoS::ExactlyOnce => *order,
            // A repeated PUBREC: PUBREL again.
            Outgoing::Released => return self.send(conn, Packet::PubRel(PubRel::new(id))),
            Outgoing::Sent { .. } => return,
        };
        if rec.reason.is_error() {
            // The receiver refused the message: the exchange ends here (§4.3.3).
            return self.complete_outgoing(now, client, position);
        }
        if let Some(outgoing) = session.inflight.outgoing_at_mut(position) {
            *outgoing = Outgoing::Released;
        }
        if session.stored {
            self.batch.push(Op::PutInflight {
                client: client.clone(),
                packet_id: id,
                record: InflightRecord::Released { order },
            });
        }
        self.send(conn, Packet::PubRel(PubRel::new(id)));
    }

    pub(super) fn on_pubcomp(&mut self, now: UnixMillis, client: &ClientId, id: PacketId) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let position = session
            .inflight
            .iter()
            .position(|(pid, out)| *pid == id && matches!(out, Outgoing::Released));
        if let Some(position) = position {
            self.complete_outgoing(now, client, position);
        }
    }

    /// An outgoing QoS 1/2 exchange ended: its window slot frees up for the queue.
    fn complete_outgoing(&mut self, now: UnixMillis, client: &ClientId, position: usize) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let Some((packet_id, _)) = session.inflight.remove(position) else {
            return;
        };
        self.outgoing_done(now, client, packet_id);
    }

    /// The exchange of `packet_id`, taken out of the window already, ended: its record goes,
    /// and the window takes from the queue.
    fn outgoing_done(&mut self, now: UnixMillis, client: &ClientId, packet_id: PacketId) {
        self.delete_inflight_record(client, packet_id);
        self.pump(now, client);
    }

    pub(super) fn on_pubrel(&mut self, conn: ConnId, client: &ClientId, rel: PubRel) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let id = rel.packet_id;
        let mut comp = PubComp::new(id);
        let known = session.incoming_qos2.remove(&id);
        if known && session.stored {
            self.batch.push(Op::DeleteIncomingQos2 {
                client: client.clone(),
                packet_id: id,
            });
        }
        if session.qos2_in_doubt() {
            // Unknown here, it was likely received by the older copy this session resumed
            // without; known, the older copy may hold the id too (from a first send). Either
            // way the exchange ends here, and that copy's id must not count as pending when
            // it is recovered or merged: written down, as the record's `Qos2Doubt::released`.
            let wait = session.qos2_wait.get_or_insert_with(Default::default);
            if wait.released.insert(id) && session.stored {
                let record = super::record_of(session);
                self.batch.push(Op::PutSession {
                    client: client.clone(),
                    record,
                });
            }
        } else if !known {
            comp.reason = PubRelReasonCode::PacketIdentifierNotFound;
        }
        self.send(conn, Packet::PubComp(comp));
    }
}

/// The PUBACK (QoS 1) or PUBREC (QoS 2) of a client's PUBLISH with `reason`; `None` for QoS 0.
pub(super) fn publish_ack(
    qos: QoS,
    packet_id: Option<PacketId>,
    reason: PubAckReasonCode,
) -> Option<Packet> {
    match (qos, packet_id) {
        (QoS::AtLeastOnce, Some(id)) => {
            let mut ack = PubAck::new(id);
            ack.reason = reason;
            Some(Packet::PubAck(ack))
        }
        (QoS::ExactlyOnce, Some(id)) => {
            let mut rec = PubRec::new(id);
            rec.reason = reason;
            Some(Packet::PubRec(rec))
        }
        _ => None,
    }
}

/// Why a client's PUBLISH is refused.
#[derive(Debug, Clone, Copy)]
enum Refused {
    /// The ACL (the rules, or the connection's grants).
    NotAuthorized,
    /// Its topic is over `limits.max_topic_length` or `max_topic_levels`.
    Limit(crate::stats::LimitReason),
}

/// How to acknowledge a routed PUBLISH (see `Broker::send_ack`).
struct Routed {
    ack: Packet,
    /// The forward token and how many owners it waits for.
    waiting_on: Option<(u64, usize)>,
    /// Subscribers whose queues are congested (backpressure).
    congested: Vec<ClientId>,
    /// The identity a QoS 2 message was routed under.
    message_id: Option<crate::ids::MessageId>,
}

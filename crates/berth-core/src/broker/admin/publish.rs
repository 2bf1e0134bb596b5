//! A message the operator publishes (the admin API's `POST /api/v1/publish`, `berth ctl
//! publish`): routed exactly as a client's PUBLISH is — retained, matched against the index,
//! delivered to local sessions (queued for offline ones), forwarded to the owners of other
//! nodes' sessions — and, at QoS 1 or 2, acknowledged with the same promise as a PUBACK: once
//! it is stored for every matched session, here and on every owner it was forwarded to.
//!
//! The operator is not a client: the ACL's publish rules (and a connection's grants) do not
//! apply to it, nor does `limits.publish_rate`; every subscriber's own rules still apply at
//! delivery (`may_receive`). The topic limits and `limits.max_packet_size` do: they are
//! properties of the message, whoever sends it.
//!
//! The acknowledgement rides the path a client's takes (`send_ack`: held until every owner
//! stored the message), addressed to an *operator connection*: a [`ConnId`] from a range no
//! listener hands out ([`operator_conn`]). The server answers the operator when an action
//! for that connection comes out: `Send` (the PUBACK or PUBREC: stored everywhere) or `Close`
//! (an owner did not store it: what a 3.1.1 publisher would get; it is counted with the
//! closes, `reason="forward_failed"`, as a client's would be).

use std::sync::Arc;

use berth_codec::{
    Packet, PacketId, PayloadFormat, ProtocolVersion, PubAckReasonCode, Publish, PublishProperties,
    QoS, TopicName,
};
use bytes::Bytes;

use super::super::Broker;
use crate::config::BrokerConfig;
use crate::ids::ConnId;
use crate::message::Message;
use crate::registry::Command;
use crate::stats::LimitReason;
use crate::store::Store;
use crate::time::UnixMillis;

/// The high bit marks the connections of operators' publishes; listeners count from 1 up.
const OPERATOR_CONN_BIT: u64 = 1 << 63;

/// The operator connection numbered `seq` (the server numbers its publishes).
pub fn operator_conn(seq: u64) -> ConnId {
    ConnId(OPERATOR_CONN_BIT | seq)
}

/// Whether `conn` is an operator connection (see [`operator_conn`]).
pub fn is_operator_conn(conn: ConnId) -> bool {
    conn.0 & OPERATOR_CONN_BIT != 0
}

/// A message an operator publishes: what a client's PUBLISH would carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorPublish {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Message Expiry Interval, Content Type, User Properties and the other properties that
    /// travel with a message (a Topic Alias or Subscription Identifiers are ignored).
    pub properties: PublishProperties,
}

/// Why an operator's message is refused; the message starts with the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefusal {
    /// `limits.max_topic_length` or `limits.max_topic_levels`.
    #[error("topic: over limits.{}", .0.label())]
    TopicLimit(LimitReason),
    /// The PUBLISH it makes is larger than `limits.max_packet_size`.
    #[error(
        "payload: the message would be a {size}-byte PUBLISH, over limits.max_packet_size ({limit})"
    )]
    TooLarge { size: usize, limit: u32 },
    /// Its Payload Format Indicator says UTF-8 and the payload is not.
    #[error("payload: the payload format says UTF-8 and the payload is not valid UTF-8")]
    NotUtf8,
}

impl PublishRefusal {
    /// The request field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            PublishRefusal::TopicLimit(_) => "topic",
            PublishRefusal::TooLarge { .. } | PublishRefusal::NotUtf8 => "payload",
        }
    }
}

/// What became of an operator's message on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperatorPublished {
    /// Sessions it matched, of this node and of other nodes.
    pub matched: usize,
    /// Of those, sessions whose full queue refused it (`queue.drop_policy = drop_newest`).
    pub refused_by_full_queues: u32,
    /// Its acknowledgement (QoS 1/2) comes as an action for its operator connection; false
    /// for QoS 0, which is done once this event's changes are stored.
    pub acknowledged: bool,
}

impl OperatorPublish {
    /// The PUBLISH a client would have sent (`packet_id`: for QoS 1/2).
    fn to_publish(&self, packet_id: Option<PacketId>) -> Publish {
        Publish {
            dup: false,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic.clone(),
            packet_id,
            payload: self.payload.clone(),
            properties: PublishProperties {
                topic_alias: None,
                subscription_identifiers: Vec::new(),
                ..self.properties.clone()
            }
            .into(),
        }
    }

    /// Checks the message against the rules a client's PUBLISH meets that concern the message
    /// itself (not its sender): the topic limits and the largest packet accepted.
    pub fn vet(&self, config: &BrokerConfig) -> Result<(), PublishRefusal> {
        if let Some(limit) = config.limits.topic_over(self.topic.as_str()) {
            return Err(PublishRefusal::TopicLimit(limit));
        }
        if self.properties.payload_format_indicator == Some(PayloadFormat::Utf8)
            && std::str::from_utf8(&self.payload).is_err()
        {
            return Err(PublishRefusal::NotUtf8);
        }
        let limit = config.limits.max_packet_size;
        // A packet id only where the QoS has one: a QoS 0 PUBLISH with one does not encode.
        let packet_id = (self.qos != QoS::AtMostOnce)
            .then(|| PacketId::new(1))
            .flatten();
        let packet = Packet::Publish(self.to_publish(packet_id));
        let size = berth_codec::encoded_len(&packet, ProtocolVersion::V5).unwrap_or(usize::MAX);
        if u64::try_from(size).unwrap_or(u64::MAX) > u64::from(limit) {
            return Err(PublishRefusal::TooLarge { size, limit });
        }
        Ok(())
    }

    /// The message as the broker routes, stores and retains it, published at `now`.
    pub fn message(&self, now: UnixMillis) -> Message {
        Message::published(self.to_publish(None), self.topic.clone(), now)
    }

    /// What a retained message asks of a cluster's registry before the broker routes it, as
    /// for a client's retained PUBLISH (`registry::plan::change`, less the ACL): set it, or
    /// clear the topic when the payload is empty. `Ok(None)`: not retained, nothing to commit.
    pub fn plan_retained(
        &self,
        config: &BrokerConfig,
        now: UnixMillis,
    ) -> Result<Option<Command>, PublishRefusal> {
        self.vet(config)?;
        if !self.retain {
            return Ok(None);
        }
        Ok(Some(if self.payload.is_empty() {
            Command::ClearRetained(self.topic.clone())
        } else {
            Command::SetRetained(self.message(now))
        }))
    }
}

impl<S: Store> Broker<S> {
    /// Publishes an operator's message as the broker does a client's (see the module's
    /// comment); at QoS 1/2 its acknowledgement goes to `conn` (an [`operator_conn`]) once it
    /// is stored everywhere it went. State changes are pending like those of
    /// [`Broker::handle_deferred`].
    pub fn operator_publish(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        request: OperatorPublish,
    ) -> Result<OperatorPublished, PublishRefusal> {
        if self.next_deadline().is_some_and(|at| at <= now) {
            self.on_tick(now);
        }
        if let Err(refusal) = request.vet(&self.config) {
            // Counted as a client's PUBLISH over the same limit is (`berth_limit_refusals_total`).
            if let PublishRefusal::TopicLimit(limit) = refusal {
                self.stats.count_limit(limit);
            }
            return Err(refusal);
        }
        let qos = request.qos;
        // Any id: the acknowledgement goes to the operator's own connection, which has no
        // other message in flight.
        let packet_id = match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce | QoS::ExactlyOnce => PacketId::new(1),
        };
        let mut message = request.message(now);
        if qos == QoS::ExactlyOnce {
            // Its cluster identity, so that an owner that gets it twice keeps one.
            message.id = self.new_message_id(now);
        }
        if message.retain {
            self.set_retained_public(&message);
        }
        self.route_quota_drops = 0;
        let message = Arc::new(message);
        let matched = self.route(now, None, message.clone());
        let token = match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce | QoS::ExactlyOnce => self.new_token(),
        };
        let waiting_nodes = self.forward_matches(now, &message, None, token);
        let waiting_on = token
            .filter(|_| waiting_nodes > 0)
            .map(|token| (token, waiting_nodes));
        let refused_by_full_queues = self.route_quota_drops;
        let reason = if matched == 0 {
            PubAckReasonCode::NoMatchingSubscribers
        } else if refused_by_full_queues > 0 {
            PubAckReasonCode::QuotaExceeded
        } else {
            PubAckReasonCode::Success
        };
        let ack = super::super::publish::publish_ack(qos, packet_id, reason);
        let acknowledged = ack.is_some();
        if let Some(ack) = ack {
            // No congested subscriber holds it: the operator is not flow-controlled.
            self.send_ack(now, conn, ack, waiting_on, &[]);
        }
        Ok(OperatorPublished {
            matched,
            refused_by_full_queues,
            acknowledged,
        })
    }
}

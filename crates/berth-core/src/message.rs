//! Application messages as the broker routes and stores them.

use std::sync::Arc;

use berth_codec::{QoS, SparseProperties, SubscriptionId, TopicName};
use bytes::Bytes;

use crate::ids::MessageId;
use crate::time::UnixMillis;

/// A published message, shared (`Arc`) by every session it is routed to.
///
/// `properties` never carries a Topic Alias or Subscription Identifiers (those belong to one hop)
/// nor the Message Expiry Interval: expiry is kept as the absolute `expires_at` so that it keeps
/// counting down while the message waits in a queue or the broker is down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: TopicName,
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    pub properties: SparseProperties,
    pub expires_at: Option<UnixMillis>,
    /// When the broker received it from its publisher (published it, for a will): what the
    /// admin API's queue view counts a queued message's age from. `None` for a message that
    /// carries no such time (the registry's clearing of a retained topic, a message stored by
    /// a version before this field).
    pub received_at: Option<UnixMillis>,
    /// Its identity in a cluster: for QoS 2 messages from where they are received, for QoS 1
    /// ones only on their way to another node (`Broker::forward_matches`: a second copy of a
    /// forward is known there). `None` on a single node, for QoS 0, for retained messages, and
    /// for the local deliveries of a QoS 1 message.
    pub id: Option<MessageId>,
}

impl Message {
    /// The same message in allocations of its own. A decoded PUBLISH is a slice of the buffer
    /// its connection read it into, shared with every other packet of that read (up to 16 KiB):
    /// what is kept for long (a retained message) must not keep the whole read alive.
    pub fn detached(&self) -> Message {
        Message {
            topic: self.topic.detached(),
            payload: Bytes::copy_from_slice(&self.payload),
            properties: self.properties.detached(),
            qos: self.qos,
            retain: self.retain,
            expires_at: self.expires_at,
            received_at: self.received_at,
            id: self.id,
        }
    }

    /// The application message of `publish` (its topic resolved to `topic`) as the broker
    /// routes, stores and retains it, received at `now`: the properties that travel with it,
    /// and its Message Expiry Interval as a deadline. The one place this is decided (a cluster
    /// node's retained PUBLISH goes to the registry in this form). Takes the PUBLISH by value:
    /// on the publish path its properties move, they are not copied.
    pub fn published(publish: berth_codec::Publish, topic: TopicName, now: UnixMillis) -> Message {
        // What stays with the message: the expiry becomes a deadline, the topic alias and
        // subscription identifiers belong to one hop.
        let mut properties = publish.properties;
        let expiry = properties.message_expiry_interval;
        if let Some(set) = properties.get_mut() {
            set.message_expiry_interval = None;
            set.topic_alias = None;
            set.subscription_identifiers = Vec::new();
        }
        properties.compact();
        Message {
            topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            expires_at: expiry.map(|secs| now.plus_secs(secs)),
            received_at: Some(now),
            properties,
            id: None,
        }
    }

    /// Expired from its deadline on (a Message Expiry Interval of 0 is a lifetime of zero).
    pub fn is_expired(&self, now: UnixMillis) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Bytes this message costs in a queue, for the byte limit.
    pub fn queued_size(&self) -> u64 {
        (self.topic.as_str().len() + self.payload.len()) as u64
    }
}

/// One message on its way to one session: QoS downgraded to the subscription's, RETAIN as the
/// subscription wants it, and the identifiers of every matching subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message: Arc<Message>,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<SubscriptionId>,
    /// Sent to the client before (by an earlier owner, or an older copy of its session) and not
    /// acknowledged: queued again, it goes out with DUP = 1 (§3.3.1.1).
    pub redelivery: bool,
    /// A QoS 2 message an older copy of the session sent under this packet id and whose
    /// exchange it did not see end: the client may still hold the id (PUBREC sent, PUBREL not
    /// yet). It goes out under this id again, where the client recognises it as the same
    /// message, and waits while the send window uses the id; under another id it would reach
    /// the client's application twice (simulator seeds 7482, 11040).
    pub sent_as: Option<berth_codec::PacketId>,
}

impl Delivery {
    pub fn size(&self) -> u64 {
        self.message.queued_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_codec::{MqttString, PublishProperties, UserProperty};

    #[test]
    fn a_detached_message_shares_no_memory_with_the_buffer_it_was_read_from() {
        let read = Bytes::from_static(b"sensors/1hello-worldtext/plainkv");
        let properties = PublishProperties {
            content_type: Some(MqttString::from_bytes(read.slice(25..30)).unwrap()),
            user_properties: vec![UserProperty {
                key: MqttString::from_bytes(read.slice(30..31)).unwrap(),
                value: MqttString::from_bytes(read.slice(31..32)).unwrap(),
            }],
            ..PublishProperties::default()
        };
        let message = Message {
            topic: TopicName::new(MqttString::from_bytes(read.slice(0..9)).unwrap()).unwrap(),
            payload: read.slice(9..20),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: properties.into(),
            expires_at: None,
            received_at: None,
            id: None,
        };
        let detached = message.detached();
        assert_eq!(detached, message, "the same message");
        let inside = |p: *const u8| read.as_ptr_range().contains(&p);
        assert!(!inside(detached.payload.as_ptr()));
        assert!(!inside(detached.topic.as_str().as_ptr()));
        let content_type = detached.properties.content_type.as_ref().unwrap();
        assert!(!inside(content_type.as_str().as_ptr()));
        let user = &detached.properties.user_properties[0];
        assert!(!inside(user.key.as_str().as_ptr()) && !inside(user.value.as_str().as_ptr()));
    }
}

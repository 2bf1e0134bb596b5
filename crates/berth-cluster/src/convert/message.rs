//! Broker values (`berth_core`) ⇄ their protobuf form, for forwarding and takeover.
//!
//! Decoding validates as the MQTT codec would (UTF-8 rules, topic and filter syntax, QoS range):
//! a peer's message is input like any other.

use std::sync::Arc;

use berth_codec::{
    MqttString, PacketId, PayloadFormat, ProtocolVersion, PublishProperties, QoS, RetainHandling,
    SubscriptionId, SubscriptionOptions, TopicFilter, TopicName, UserProperty,
};
use berth_core::{
    Delivery, Message, MessageId, NodeId, SubscriptionRecord, UnixMillis, WillRecord,
};
use berth_proto::v1 as pb;

/// A field of a peer's message is not valid.
#[derive(Debug, thiserror::Error)]
#[error("invalid {field} in a cluster message")]
pub struct Invalid {
    pub field: &'static str,
}

pub(crate) fn invalid(field: &'static str) -> Invalid {
    Invalid { field }
}

/// A packet identifier (1..=65,535) carried as `uint32`.
pub(crate) fn packet_id_from_pb(id: u32) -> Result<PacketId, Invalid> {
    u16::try_from(id)
        .ok()
        .and_then(PacketId::new)
        .ok_or(invalid("packet_id"))
}

fn string(text: &str, field: &'static str) -> Result<MqttString, Invalid> {
    MqttString::new(text).map_err(|_| invalid(field))
}

pub fn qos_from(value: u32) -> Result<QoS, Invalid> {
    u8::try_from(value)
        .ok()
        .and_then(QoS::from_u8)
        .ok_or(invalid("qos"))
}

pub fn protocol_from(level: u32) -> Result<ProtocolVersion, Invalid> {
    ProtocolVersion::ALL
        .into_iter()
        .find(|p| u32::from(p.level()) == level)
        .ok_or(invalid("protocol"))
}

pub fn message_to_pb(m: &Message) -> pb::Message {
    let p = &m.properties;
    pb::Message {
        topic: m.topic.as_str().to_string(),
        payload: m.payload.clone(),
        qos: m.qos as u32,
        retain: m.retain,
        expires_at_ms: m.expires_at.map(|at| at.0),
        received_at_ms: m.received_at.map(|at| at.0),
        payload_format: p.payload_format_indicator.map(|f| f as u32),
        content_type: p.content_type.as_ref().map(|s| s.as_str().to_string()),
        response_topic: p.response_topic.as_ref().map(|t| t.as_str().to_string()),
        correlation_data: p.correlation_data.clone(),
        user_properties: p
            .user_properties
            .iter()
            .map(|u| pb::UserProperty {
                key: u.key.as_str().to_string(),
                value: u.value.as_str().to_string(),
            })
            .collect(),
        id: m.id.map(message_id_to_pb),
    }
}

pub fn message_id_to_pb(id: MessageId) -> pb::MessageId {
    pb::MessageId {
        origin: id.origin.0,
        seq: id.seq,
    }
}

pub fn message_id_from_pb(id: pb::MessageId) -> MessageId {
    MessageId {
        origin: NodeId(id.origin),
        seq: id.seq,
    }
}

pub fn message_from_pb(m: pb::Message) -> Result<Message, Invalid> {
    let topic = TopicName::parse(&m.topic).map_err(|_| invalid("topic"))?;
    let payload_format_indicator = match m.payload_format {
        None => None,
        Some(0) => Some(PayloadFormat::Unspecified),
        Some(1) => Some(PayloadFormat::Utf8),
        Some(_) => return Err(invalid("payload_format")),
    };
    let response_topic = match &m.response_topic {
        Some(t) => Some(TopicName::parse(t).map_err(|_| invalid("response_topic"))?),
        None => None,
    };
    let content_type = match &m.content_type {
        Some(c) => Some(string(c, "content_type")?),
        None => None,
    };
    let user_properties = m
        .user_properties
        .iter()
        .map(|u| {
            Ok(UserProperty {
                key: string(&u.key, "user_property")?,
                value: string(&u.value, "user_property")?,
            })
        })
        .collect::<Result<Vec<_>, Invalid>>()?;
    Ok(Message {
        topic,
        payload: m.payload,
        qos: qos_from(m.qos)?,
        retain: m.retain,
        properties: PublishProperties {
            payload_format_indicator,
            response_topic,
            correlation_data: m.correlation_data,
            user_properties,
            content_type,
            ..Default::default()
        }
        .into(),
        expires_at: m.expires_at_ms.map(UnixMillis),
        received_at: m.received_at_ms.map(UnixMillis),
        id: m.id.map(message_id_from_pb),
    })
}

pub fn delivery_to_pb(d: &Delivery) -> pb::Delivery {
    pb::Delivery {
        message: Some(message_to_pb(&d.message)),
        qos: d.qos as u32,
        retain: d.retain,
        subscription_ids: d.subscription_ids.iter().map(|id| id.get()).collect(),
        redelivery: d.redelivery,
        sent_as: d.sent_as.map(|id| u32::from(id.get())),
    }
}

pub fn delivery_from_pb(d: pb::Delivery) -> Result<Delivery, Invalid> {
    let message = message_from_pb(d.message.ok_or(invalid("delivery.message"))?)?;
    Ok(Delivery {
        message: Arc::new(message),
        qos: qos_from(d.qos)?,
        retain: d.retain,
        subscription_ids: d
            .subscription_ids
            .iter()
            .map(|id| SubscriptionId::new(*id).ok_or(invalid("subscription_id")))
            .collect::<Result<_, _>>()?,
        redelivery: d.redelivery,
        sent_as: d.sent_as.map(packet_id_from_pb).transpose()?,
    })
}

pub fn subscription_to_pb(filter: &TopicFilter, record: &SubscriptionRecord) -> pb::Subscription {
    let o = &record.options;
    pb::Subscription {
        filter: filter.as_str().to_string(),
        qos: o.qos as u32,
        no_local: o.no_local,
        retain_as_published: o.retain_as_published,
        retain_handling: o.retain_handling as u32,
        subscription_id: record.subscription_id.map(|id| id.get()),
    }
}

pub fn subscription_from_pb(
    s: &pb::Subscription,
) -> Result<(TopicFilter, SubscriptionRecord), Invalid> {
    let filter = TopicFilter::parse(&s.filter).map_err(|_| invalid("filter"))?;
    let retain_handling = u8::try_from(s.retain_handling)
        .ok()
        .and_then(RetainHandling::from_u8)
        .ok_or(invalid("retain_handling"))?;
    let subscription_id = match s.subscription_id {
        Some(id) => Some(SubscriptionId::new(id).ok_or(invalid("subscription_id"))?),
        None => None,
    };
    Ok((
        filter,
        SubscriptionRecord {
            options: SubscriptionOptions {
                qos: qos_from(s.qos)?,
                no_local: s.no_local,
                retain_as_published: s.retain_as_published,
                retain_handling,
            },
            subscription_id,
        },
    ))
}

/// A will as the registry and a takeover carry it: the interval of its Message Expiry stays an
/// interval until the will is published (see `WillRecord::of_connect`).
pub fn will_to_pb(will: &WillRecord) -> pb::Will {
    let mut message = will.message.clone();
    let message_expiry_interval = message
        .properties
        .get_mut()
        .and_then(|set| set.message_expiry_interval.take());
    message.properties.compact();
    pb::Will {
        message: Some(message_to_pb(&message)),
        delay_secs: will.delay_secs,
        message_expiry_interval,
    }
}

pub fn will_from_pb(will: pb::Will) -> Result<WillRecord, Invalid> {
    let mut message = message_from_pb(will.message.ok_or(invalid("will.message"))?)?;
    if will.message_expiry_interval.is_some() {
        message.properties.message_expiry_interval = will.message_expiry_interval;
    }
    Ok(WillRecord {
        message,
        delay_secs: will.delay_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn message_round_trips_with_its_properties() {
        let message = Message {
            topic: TopicName::parse("a/b").unwrap(),
            payload: Bytes::from_static(b"hello"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: PublishProperties {
                payload_format_indicator: Some(PayloadFormat::Utf8),
                content_type: Some(MqttString::new("text/plain").unwrap()),
                response_topic: Some(TopicName::parse("r/1").unwrap()),
                correlation_data: Some(Bytes::from_static(b"c")),
                user_properties: vec![UserProperty {
                    key: MqttString::new("k").unwrap(),
                    value: MqttString::new("v").unwrap(),
                }],
                ..Default::default()
            }
            .into(),
            expires_at: Some(UnixMillis(42)),
            received_at: Some(UnixMillis(7)),
            id: None,
        };
        assert_eq!(message_from_pb(message_to_pb(&message)).unwrap(), message);
    }

    #[test]
    fn invalid_peer_values_are_refused_by_field() {
        let mut m = pb::Message {
            topic: "a/+".into(),
            ..Default::default()
        };
        assert_eq!(message_from_pb(m.clone()).unwrap_err().field, "topic");
        m.topic = "a".into();
        m.qos = 3;
        assert_eq!(message_from_pb(m.clone()).unwrap_err().field, "qos");
        m.qos = 1;
        m.payload_format = Some(2);
        assert_eq!(message_from_pb(m).unwrap_err().field, "payload_format");
    }

    #[test]
    fn a_will_keeps_its_message_expiry_interval_through_the_registry() {
        let will = WillRecord {
            message: Message {
                topic: TopicName::parse("dev/1/status").unwrap(),
                payload: bytes::Bytes::from_static(b"offline"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: berth_codec::PublishProperties {
                    message_expiry_interval: Some(30),
                    ..Default::default()
                }
                .into(),
                expires_at: None,
                received_at: None,
                id: None,
            },
            delay_secs: 5,
        };
        let carried = will_to_pb(&will);
        assert_eq!(carried.message_expiry_interval, Some(30));
        let back = will_from_pb(carried).unwrap();
        assert_eq!(back, will);
        let published = WillRecord::published_at(back.message, UnixMillis(1_000));
        assert_eq!(published.expires_at, Some(UnixMillis(31_000)));
        assert_eq!(published.properties.message_expiry_interval, None);
    }
}

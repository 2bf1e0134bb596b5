//! PUBLISH (MQTT 5 §3.3, 3.1.1 §3.3): the hot path. Topic and payload are slices of the frame.

use bytes::{BufMut, Bytes, BytesMut};

use super::{property_block_len, put_property_block, read_packet_id};
use crate::error::{DecodeError, EncodeError};
use crate::property::{PublishProperties, SparseProperties};
use crate::topic::{TopicError, TopicName};
use crate::types::{PacketId, PacketType, ProtocolVersion, QoS};
use crate::wire::{Reader, binary_len, put_string};

/// An application message on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Re-delivery of an earlier attempt; only with QoS 1 or 2.
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Empty only in MQTT 5 when `properties.topic_alias` names the topic.
    pub topic: TopicName,
    /// Present exactly when `qos` is 1 or 2.
    pub packet_id: Option<PacketId>,
    pub payload: Bytes,
    /// MQTT 5 only. Out of line and absent while empty (`SparseProperties`): a `Publish` is
    /// moved by value many times on its way through the broker.
    pub properties: SparseProperties,
}

impl Publish {
    /// A QoS 0 message without properties.
    pub fn at_most_once(topic: TopicName, payload: Bytes) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: None,
            payload,
            properties: SparseProperties::none(),
        }
    }

    pub(crate) fn header_flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | (self.qos.as_u8() << 1) | u8::from(self.retain)
    }

    pub(crate) fn decode(
        r: &mut Reader,
        flags: u8,
        version: ProtocolVersion,
    ) -> Result<Publish, DecodeError> {
        // The fixed header check already refused QoS 3 and DUP on QoS 0.
        let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS {
            packet: PacketType::Publish,
        })?;
        let raw_topic = r.string("topic name")?;
        let packet_id = match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce | QoS::ExactlyOnce => Some(read_packet_id(r)?),
        };
        let properties = if version.is_v5() {
            SparseProperties::from(PublishProperties::decode(r)?)
        } else {
            SparseProperties::none()
        };
        let topic = if raw_topic.is_empty() {
            if !version.is_v5() {
                return Err(DecodeError::InvalidTopicName {
                    packet: PacketType::Publish,
                    source: TopicError::Empty,
                });
            }
            if properties.topic_alias.is_none() {
                return Err(DecodeError::EmptyTopicWithoutAlias);
            }
            TopicName::empty()
        } else {
            TopicName::new(raw_topic).map_err(|source| DecodeError::InvalidTopicName {
                packet: PacketType::Publish,
                source,
            })?
        };
        Ok(Publish {
            dup: flags & 0b1000 != 0,
            qos,
            retain: flags & 1 != 0,
            topic,
            packet_id,
            payload: r.rest(),
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let needs_id = self.qos != QoS::AtMostOnce;
        if needs_id != self.packet_id.is_some() || (self.dup && !needs_id) {
            return Err(EncodeError::PacketIdMismatch {
                qos: self.qos.as_u8(),
                has_packet_id: self.packet_id.is_some(),
            });
        }
        if self.topic.is_empty() && (!version.is_v5() || self.properties.topic_alias.is_none()) {
            return Err(EncodeError::EmptyTopicWithoutAlias);
        }
        let mut len = binary_len(self.topic.as_mqtt_str().as_bytes()) + self.payload.len();
        if needs_id {
            len += 2;
        }
        if version.is_v5() {
            len += property_block_len(&*self.properties, PacketType::Publish)?;
        }
        Ok(len)
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        put_string(out, self.topic.as_mqtt_str());
        if let Some(id) = self.packet_id {
            out.put_u16(id.get());
        }
        if version.is_v5() {
            put_property_block(out, &*self.properties);
        }
        out.put_slice(&self.payload);
    }
}

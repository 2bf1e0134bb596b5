//! SUBSCRIBE and SUBACK (MQTT 5 §3.8–3.9, 3.1.1 §3.8–3.9).

use bytes::{BufMut, BytesMut};

use super::{property_block_len, put_property_block, read_packet_id, read_qos};
use crate::error::{DecodeError, EncodeError};
use crate::property::{AckProperties, SubscribeProperties};
use crate::reason::SubAckReasonCode;
use crate::topic::TopicFilter;
use crate::types::{PacketId, PacketType, ProtocolVersion, QoS, RetainHandling};
use crate::wire::{Reader, binary_len, put_string};

const NO_LOCAL: u8 = 0b0000_0100;
const RETAIN_AS_PUBLISHED: u8 = 0b0000_1000;

/// Subscription options (§3.8.3.1). 3.1/3.1.1 carry only the QoS; the rest keep their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionOptions {
    /// The maximum QoS the subscriber accepts.
    pub qos: QoS,
    /// Do not deliver the subscriber's own messages back to it.
    pub no_local: bool,
    /// Keep the RETAIN flag as published instead of clearing it on normal delivery.
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    pub fn new(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendOnSubscribe,
        }
    }

    fn to_byte(self, version: ProtocolVersion) -> u8 {
        let mut byte = self.qos.as_u8();
        if version.is_v5() {
            if self.no_local {
                byte |= NO_LOCAL;
            }
            if self.retain_as_published {
                byte |= RETAIN_AS_PUBLISHED;
            }
            byte |= (self.retain_handling as u8) << 4;
        }
        byte
    }
}

/// One topic filter with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub filter: TopicFilter,
    pub options: SubscriptionOptions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: PacketId,
    /// At least one.
    pub subscriptions: Vec<Subscription>,
    /// MQTT 5 only.
    pub properties: SubscribeProperties,
}

impl Subscribe {
    pub(crate) fn decode(
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Subscribe, DecodeError> {
        let packet_id = read_packet_id(r)?;
        let properties = if version.is_v5() {
            SubscribeProperties::decode(r)?
        } else {
            Default::default()
        };
        let mut subscriptions = Vec::new();
        while !r.is_empty() {
            let filter = TopicFilter::new(r.string("topic filter")?).map_err(|source| {
                DecodeError::InvalidTopicFilter {
                    packet: PacketType::Subscribe,
                    source,
                }
            })?;
            let byte = r.u8("subscription options")?;
            let options = decode_options(r, byte, version)?;
            if options.no_local && filter.is_shared() {
                return Err(DecodeError::NoLocalOnSharedSubscription {
                    filter: filter.as_str().to_owned(),
                });
            }
            subscriptions.push(Subscription { filter, options });
        }
        if subscriptions.is_empty() {
            return Err(DecodeError::NoTopicFilters {
                packet: PacketType::Subscribe,
            });
        }
        Ok(Subscribe {
            packet_id,
            subscriptions,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.subscriptions.is_empty() {
            return Err(EncodeError::EmptyList {
                packet: PacketType::Subscribe,
                field: "subscriptions",
            });
        }
        let mut len = 2;
        if version.is_v5() {
            len += property_block_len(&self.properties, PacketType::Subscribe)?;
        }
        for sub in &self.subscriptions {
            len += binary_len(sub.filter.as_mqtt_str().as_bytes()) + 1;
        }
        Ok(len)
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if version.is_v5() {
            put_property_block(out, &self.properties);
        }
        for sub in &self.subscriptions {
            put_string(out, sub.filter.as_mqtt_str());
            out.put_u8(sub.options.to_byte(version));
        }
    }
}

fn decode_options(
    r: &Reader,
    byte: u8,
    version: ProtocolVersion,
) -> Result<SubscriptionOptions, DecodeError> {
    let reserved = if version.is_v5() {
        0b1100_0000
    } else {
        0b1111_1100
    };
    if byte & reserved != 0 {
        return Err(DecodeError::InvalidSubscriptionOptions { options: byte });
    }
    let qos = read_qos(r, byte & 0b11)?;
    let retain_handling =
        RetainHandling::from_u8((byte >> 4) & 0b11).ok_or(DecodeError::InvalidRetainHandling)?;
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & NO_LOCAL != 0,
        retain_as_published: byte & RETAIN_AS_PUBLISHED != 0,
        retain_handling,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: PacketId,
    /// One per requested subscription, in order.
    pub reason_codes: Vec<SubAckReasonCode>,
    /// MQTT 5 only.
    pub properties: AckProperties,
}

impl SubAck {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<SubAck, DecodeError> {
        let packet_id = read_packet_id(r)?;
        let properties = if version.is_v5() {
            AckProperties::decode(r)?
        } else {
            Default::default()
        };
        let mut reason_codes = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let code = r.u8("reason code")?;
            let reason = SubAckReasonCode::from_u8(code)
                .filter(|reason| version.is_v5() || reason.is_v3_representable())
                .ok_or(DecodeError::InvalidReasonCode {
                    packet: PacketType::SubAck,
                    code,
                })?;
            reason_codes.push(reason);
        }
        if reason_codes.is_empty() {
            return Err(DecodeError::NoReasonCodes {
                packet: PacketType::SubAck,
            });
        }
        Ok(SubAck {
            packet_id,
            reason_codes,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.reason_codes.is_empty() {
            return Err(EncodeError::EmptyList {
                packet: PacketType::SubAck,
                field: "reason codes",
            });
        }
        let props = if version.is_v5() {
            property_block_len(&self.properties, PacketType::SubAck)?
        } else {
            0
        };
        Ok(2 + props + self.reason_codes.len())
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if version.is_v5() {
            put_property_block(out, &self.properties);
            for reason in &self.reason_codes {
                out.put_u8(reason.code());
            }
        } else {
            for reason in &self.reason_codes {
                out.put_u8(reason.v3_return_code());
            }
        }
    }
}

//! UNSUBSCRIBE and UNSUBACK (MQTT 5 §3.10–3.11, 3.1.1 §3.10–3.11).

use bytes::{BufMut, BytesMut};

use super::{property_block_len, put_property_block, read_packet_id};
use crate::error::{DecodeError, EncodeError};
use crate::property::{AckProperties, UnsubscribeProperties};
use crate::reason::UnsubAckReasonCode;
use crate::topic::TopicFilter;
use crate::types::{PacketId, PacketType, ProtocolVersion};
use crate::wire::{Reader, binary_len, put_string};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: PacketId,
    /// At least one.
    pub filters: Vec<TopicFilter>,
    /// MQTT 5 only.
    pub properties: UnsubscribeProperties,
}

impl Unsubscribe {
    pub(crate) fn decode(
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Unsubscribe, DecodeError> {
        let packet_id = read_packet_id(r)?;
        let properties = if version.is_v5() {
            UnsubscribeProperties::decode(r)?
        } else {
            Default::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter = TopicFilter::new(r.string("topic filter")?).map_err(|source| {
                DecodeError::InvalidTopicFilter {
                    packet: PacketType::Unsubscribe,
                    source,
                }
            })?;
            filters.push(filter);
        }
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilters {
                packet: PacketType::Unsubscribe,
            });
        }
        Ok(Unsubscribe {
            packet_id,
            filters,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::EmptyList {
                packet: PacketType::Unsubscribe,
                field: "filters",
            });
        }
        let mut len = 2;
        if version.is_v5() {
            len += property_block_len(&self.properties, PacketType::Unsubscribe)?;
        }
        for filter in &self.filters {
            len += binary_len(filter.as_mqtt_str().as_bytes());
        }
        Ok(len)
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if version.is_v5() {
            put_property_block(out, &self.properties);
        }
        for filter in &self.filters {
            put_string(out, filter.as_mqtt_str());
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: PacketId,
    /// MQTT 5: one per filter, in order. 3.1/3.1.1 UNSUBACK has none, so this is empty there.
    pub reason_codes: Vec<UnsubAckReasonCode>,
    /// MQTT 5 only.
    pub properties: AckProperties,
}

impl UnsubAck {
    pub(crate) fn decode(
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<UnsubAck, DecodeError> {
        let packet_id = read_packet_id(r)?;
        if !version.is_v5() {
            r.finish()?;
            return Ok(UnsubAck {
                packet_id,
                reason_codes: Vec::new(),
                properties: Default::default(),
            });
        }
        let properties = AckProperties::decode(r)?;
        let mut reason_codes = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let code = r.u8("reason code")?;
            reason_codes.push(UnsubAckReasonCode::from_u8(code).ok_or(
                DecodeError::InvalidReasonCode {
                    packet: PacketType::UnsubAck,
                    code,
                },
            )?);
        }
        if reason_codes.is_empty() {
            return Err(DecodeError::NoReasonCodes {
                packet: PacketType::UnsubAck,
            });
        }
        Ok(UnsubAck {
            packet_id,
            reason_codes,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if !version.is_v5() {
            return Ok(2);
        }
        if self.reason_codes.is_empty() {
            return Err(EncodeError::EmptyList {
                packet: PacketType::UnsubAck,
                field: "reason codes",
            });
        }
        Ok(
            2 + property_block_len(&self.properties, PacketType::UnsubAck)?
                + self.reason_codes.len(),
        )
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if version.is_v5() {
            put_property_block(out, &self.properties);
            for reason in &self.reason_codes {
                out.put_u8(reason.code());
            }
        }
    }
}

//! PUBACK, PUBREC, PUBREL and PUBCOMP: a packet identifier, and in MQTT 5 a reason code and
//! properties that may be left out when they are Success and empty (§3.4.2.1).

use bytes::{BufMut, BytesMut};

use super::{property_block_len, put_property_block, read_packet_id};
use crate::error::{DecodeError, EncodeError};
use crate::property::AckProperties;
use crate::reason::{PubAckReasonCode, PubRelReasonCode};
use crate::types::{PacketId, PacketType, ProtocolVersion};
use crate::wire::Reader;

macro_rules! ack_packet {
    ($(#[$meta:meta])* $name:ident, $reason:ident, $packet:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            pub packet_id: PacketId,
            /// MQTT 5 only; 3.1/3.1.1 always mean Success.
            pub reason: $reason,
            /// MQTT 5 only.
            pub properties: AckProperties,
        }

        impl $name {
            pub fn new(packet_id: PacketId) -> $name {
                $name { packet_id, reason: $reason::Success, properties: AckProperties::default() }
            }

            pub(crate) fn decode(
                r: &mut Reader,
                version: ProtocolVersion,
            ) -> Result<$name, DecodeError> {
                let packet_id = read_packet_id(r)?;
                let mut reason = $reason::Success;
                let mut properties = AckProperties::default();
                if version.is_v5() && !r.is_empty() {
                    let code = r.u8("reason code")?;
                    reason = $reason::from_u8(code)
                        .ok_or(DecodeError::InvalidReasonCode { packet: $packet, code })?;
                    if !r.is_empty() {
                        properties = AckProperties::decode(r)?;
                    }
                }
                r.finish()?;
                Ok($name { packet_id, reason, properties })
            }

            pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
                if !version.is_v5() {
                    return Ok(2);
                }
                if self.properties.is_empty() {
                    return Ok(if self.reason == $reason::Success { 2 } else { 3 });
                }
                Ok(3 + property_block_len(&self.properties, $packet)?)
            }

            pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
                out.put_u16(self.packet_id.get());
                if !version.is_v5() {
                    return;
                }
                if self.properties.is_empty() {
                    if self.reason != $reason::Success {
                        out.put_u8(self.reason.code());
                    }
                    return;
                }
                out.put_u8(self.reason.code());
                put_property_block(out, &self.properties);
            }
        }
    };
}

ack_packet!(
    /// Acknowledges a QoS 1 PUBLISH.
    PubAck,
    PubAckReasonCode,
    PacketType::PubAck
);
ack_packet!(
    /// First acknowledgement of a QoS 2 PUBLISH.
    PubRec,
    PubAckReasonCode,
    PacketType::PubRec
);
ack_packet!(
    /// Releases a QoS 2 message after PUBREC.
    PubRel,
    PubRelReasonCode,
    PacketType::PubRel
);
ack_packet!(
    /// Completes a QoS 2 exchange.
    PubComp,
    PubRelReasonCode,
    PacketType::PubComp
);

//! DISCONNECT (MQTT 5 §3.14, 3.1.1 §3.14). In 3.1/3.1.1 it has no body.

use bytes::{BufMut, BytesMut};

use super::{property_block_len, put_property_block};
use crate::error::{DecodeError, EncodeError};
use crate::property::DisconnectProperties;
use crate::reason::DisconnectReasonCode;
use crate::types::{PacketType, ProtocolVersion};
use crate::wire::Reader;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// MQTT 5 only; 3.1/3.1.1 mean Normal Disconnection.
    pub reason: DisconnectReasonCode,
    /// MQTT 5 only.
    pub properties: DisconnectProperties,
}

impl Disconnect {
    pub fn new(reason: DisconnectReasonCode) -> Disconnect {
        Disconnect {
            reason,
            properties: DisconnectProperties::default(),
        }
    }

    pub(crate) fn decode(
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Disconnect, DecodeError> {
        let mut disconnect = Disconnect::new(DisconnectReasonCode::NormalDisconnection);
        if version.is_v5() && !r.is_empty() {
            let code = r.u8("reason code")?;
            disconnect.reason =
                DisconnectReasonCode::from_u8(code).ok_or(DecodeError::InvalidReasonCode {
                    packet: PacketType::Disconnect,
                    code,
                })?;
            if !r.is_empty() {
                disconnect.properties = DisconnectProperties::decode(r)?;
            }
        }
        r.finish()?;
        Ok(disconnect)
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if !version.is_v5() {
            return Ok(0);
        }
        if self.properties.is_empty() {
            return Ok(usize::from(
                self.reason != DisconnectReasonCode::NormalDisconnection,
            ));
        }
        Ok(1 + property_block_len(&self.properties, PacketType::Disconnect)?)
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        if !version.is_v5() {
            return;
        }
        if self.properties.is_empty() {
            if self.reason != DisconnectReasonCode::NormalDisconnection {
                out.put_u8(self.reason.code());
            }
            return;
        }
        out.put_u8(self.reason.code());
        put_property_block(out, &self.properties);
    }
}

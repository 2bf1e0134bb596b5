//! CONNACK (MQTT 5 §3.2, 3.1.1 §3.2).

use bytes::{BufMut, BytesMut};

use super::{property_block_len, put_property_block};
use crate::error::{DecodeError, EncodeError};
use crate::property::ConnAckProperties;
use crate::reason::ConnectReasonCode;
use crate::types::{PacketType, ProtocolVersion};
use crate::wire::Reader;

/// The server's answer to CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Set exactly when a stored session was resumed; never with a refusal.
    pub session_present: bool,
    /// 3.1/3.1.1 carry a return code, which maps onto these (see
    /// [`ConnectReasonCode::v3_return_code`]).
    pub reason: ConnectReasonCode,
    /// MQTT 5 only.
    pub properties: ConnAckProperties,
}

impl ConnAck {
    pub fn accepted(session_present: bool) -> ConnAck {
        ConnAck {
            session_present,
            reason: ConnectReasonCode::Success,
            properties: ConnAckProperties::default(),
        }
    }

    pub fn refused(reason: ConnectReasonCode) -> ConnAck {
        ConnAck {
            session_present: false,
            reason,
            properties: ConnAckProperties::default(),
        }
    }

    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
        let flags = r.u8("acknowledge flags")?;
        if flags & 0xFE != 0 {
            return Err(DecodeError::InvalidConnAckFlags { flags });
        }
        let code = r.u8("reason code")?;
        let reason = if version.is_v5() {
            ConnectReasonCode::from_u8(code)
        } else {
            ConnectReasonCode::from_v3_return_code(code)
        }
        .ok_or(DecodeError::InvalidReasonCode {
            packet: PacketType::ConnAck,
            code,
        })?;
        let session_present = flags & 1 != 0;
        if session_present && reason.is_error() {
            return Err(DecodeError::SessionPresentOnRefusal);
        }
        let properties = if version.is_v5() {
            ConnAckProperties::decode(r)?
        } else {
            Default::default()
        };
        r.finish()?;
        Ok(ConnAck {
            session_present,
            reason,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        Ok(2 + if version.is_v5() {
            property_block_len(&self.properties, PacketType::ConnAck)?
        } else {
            0
        })
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u8(u8::from(self.session_present && !self.reason.is_error()));
        if version.is_v5() {
            out.put_u8(self.reason.code());
            put_property_block(out, &self.properties);
        } else {
            out.put_u8(self.reason.v3_return_code());
        }
    }
}

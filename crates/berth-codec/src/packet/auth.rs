//! AUTH (MQTT 5 §3.15): extended authentication exchanges. Not part of 3.1/3.1.1.

use bytes::{BufMut, BytesMut};

use super::{property_block_len, put_property_block};
use crate::error::{DecodeError, EncodeError};
use crate::property::AuthProperties;
use crate::reason::AuthReasonCode;
use crate::types::{PacketType, ProtocolVersion};
use crate::wire::Reader;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub reason: AuthReasonCode,
    pub properties: AuthProperties,
}

impl Auth {
    pub(crate) fn decode(r: &mut Reader) -> Result<Auth, DecodeError> {
        let mut auth = Auth {
            reason: AuthReasonCode::Success,
            properties: AuthProperties::default(),
        };
        if !r.is_empty() {
            let code = r.u8("reason code")?;
            auth.reason = AuthReasonCode::from_u8(code).ok_or(DecodeError::InvalidReasonCode {
                packet: PacketType::Auth,
                code,
            })?;
            if !r.is_empty() {
                auth.properties = AuthProperties::decode(r)?;
            }
        }
        r.finish()?;
        // §3.15.2.2.2: "It is a Protocol Error to omit the Authentication Method"; only the
        // short form (§3.15.2.1: Success with no properties) carries none.
        if auth.properties.authentication_method.is_none()
            && (auth.reason != AuthReasonCode::Success || !auth.properties.is_empty())
        {
            return Err(DecodeError::AuthWithoutMethod);
        }
        Ok(auth)
    }

    pub(crate) fn body_len(&self, _version: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.reason == AuthReasonCode::Success && self.properties.is_empty() {
            return Ok(0);
        }
        Ok(1 + property_block_len(&self.properties, PacketType::Auth)?)
    }

    pub(crate) fn write_body(&self, out: &mut BytesMut) {
        if self.reason == AuthReasonCode::Success && self.properties.is_empty() {
            return;
        }
        out.put_u8(self.reason.code());
        put_property_block(out, &self.properties);
    }
}

//! CONNECT (MQTT 5 §3.1, 3.1.1 §3.1, 3.1 §3.1).

use bytes::{BufMut, Bytes, BytesMut};

use super::{property_block_len, put_property_block, read_qos};
use crate::error::{DecodeError, EncodeError};
use crate::property::{ConnectProperties, WillProperties};
use crate::string::MqttString;
use crate::topic::TopicName;
use crate::types::{PacketType, ProtocolVersion, QoS};
use crate::wire::{Reader, binary_len, put_binary, put_string};

const RESERVED: u8 = 0b0000_0001;
const CLEAN_START: u8 = 0b0000_0010;
const WILL: u8 = 0b0000_0100;
const WILL_RETAIN: u8 = 0b0010_0000;
const PASSWORD: u8 = 0b0100_0000;
const USERNAME: u8 = 0b1000_0000;

/// The first packet of every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Read from the protocol name and level; CONNECT is always encoded for this version.
    pub protocol: ProtocolVersion,
    /// Clean Start (5.0) / Clean Session (3.1, 3.1.1).
    pub clean_start: bool,
    /// Seconds; 0 turns the keep-alive mechanism off.
    pub keep_alive: u16,
    /// May be empty (5.0: the server assigns one; 3.1.1: only with Clean Session = 1).
    pub client_id: MqttString,
    pub will: Option<LastWill>,
    pub username: Option<MqttString>,
    pub password: Option<Bytes>,
    /// MQTT 5 only; empty for 3.1/3.1.1.
    pub properties: ConnectProperties,
}

/// The Will Message a server publishes when the connection ends abnormally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5 only.
    pub properties: WillProperties,
}

impl Connect {
    pub(crate) fn decode(r: &mut Reader) -> Result<Connect, DecodeError> {
        let name = r.string("protocol name")?;
        let level = r.u8("protocol level")?;
        let protocol = protocol_version(&name, level)?;
        let flags = r.u8("connect flags")?;
        if flags & RESERVED != 0 {
            return Err(DecodeError::ConnectReservedFlag);
        }
        let will_qos_bits = (flags >> 3) & 0b11;
        if will_qos_bits == 3 {
            return Err(DecodeError::InvalidWillQoS);
        }
        let has_will = flags & WILL != 0;
        if !has_will && (will_qos_bits != 0 || flags & WILL_RETAIN != 0) {
            return Err(DecodeError::WillFlagsWithoutWill);
        }
        if !protocol.is_v5() && flags & PASSWORD != 0 && flags & USERNAME == 0 {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        let keep_alive = r.u16("keep alive")?;
        let properties = if protocol.is_v5() {
            ConnectProperties::decode(r)?
        } else {
            Default::default()
        };
        let client_id = r.string("client identifier")?;
        let will = if has_will {
            let properties = if protocol.is_v5() {
                WillProperties::decode(r)?
            } else {
                Default::default()
            };
            let topic = TopicName::new(r.string("will topic")?).map_err(|source| {
                DecodeError::InvalidTopicName {
                    packet: PacketType::Connect,
                    source,
                }
            })?;
            let payload = r.binary("will payload")?;
            Some(LastWill {
                topic,
                payload,
                qos: read_qos(r, will_qos_bits)?,
                retain: flags & WILL_RETAIN != 0,
                properties,
            })
        } else {
            None
        };
        let username = if flags & USERNAME != 0 {
            Some(r.string("user name")?)
        } else {
            None
        };
        let password = if flags & PASSWORD != 0 {
            Some(r.binary("password")?)
        } else {
            None
        };
        r.finish()?;
        Ok(Connect {
            protocol,
            clean_start: flags & CLEAN_START != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.clean_start {
            flags |= CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= WILL | (will.qos.as_u8() << 3);
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= USERNAME;
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        flags
    }

    pub(crate) fn body_len(&self) -> Result<usize, EncodeError> {
        let v5 = self.protocol.is_v5();
        if !v5 && self.password.is_some() && self.username.is_none() {
            return Err(EncodeError::NotRepresentable {
                packet: PacketType::Connect,
                version: self.protocol,
                field: "a password without a user name",
            });
        }
        let mut len = binary_len(self.protocol.protocol_name().as_bytes()) + 1 + 1 + 2;
        if v5 {
            len += property_block_len(&self.properties, PacketType::Connect)?;
        }
        len += binary_len(self.client_id.as_bytes());
        if let Some(will) = &self.will {
            if v5 {
                len += property_block_len(&will.properties, PacketType::Connect)?;
            }
            len += binary_len(will.topic.as_mqtt_str().as_bytes());
            len += checked_binary_len(&will.payload, "will payload")?;
        }
        if let Some(username) = &self.username {
            len += binary_len(username.as_bytes());
        }
        if let Some(password) = &self.password {
            len += checked_binary_len(password, "password")?;
        }
        Ok(len)
    }

    pub(crate) fn write_body(&self, out: &mut BytesMut) {
        let v5 = self.protocol.is_v5();
        put_binary(out, self.protocol.protocol_name().as_bytes());
        out.put_u8(self.protocol.level());
        out.put_u8(self.flags());
        out.put_u16(self.keep_alive);
        if v5 {
            put_property_block(out, &self.properties);
        }
        put_string(out, &self.client_id);
        if let Some(will) = &self.will {
            if v5 {
                put_property_block(out, &will.properties);
            }
            put_string(out, will.topic.as_mqtt_str());
            put_binary(out, &will.payload);
        }
        if let Some(username) = &self.username {
            put_string(out, username);
        }
        if let Some(password) = &self.password {
            put_binary(out, password);
        }
    }
}

fn protocol_version(name: &MqttString, level: u8) -> Result<ProtocolVersion, DecodeError> {
    match (name.as_str(), level) {
        ("MQTT", 4) => Ok(ProtocolVersion::V3_1_1),
        ("MQTT", 5) => Ok(ProtocolVersion::V5),
        ("MQIsdp", 3) => Ok(ProtocolVersion::V3_1),
        ("MQTT", 3) => Err(DecodeError::ProtocolNameLevelMismatch {
            name: "MQTT",
            level,
        }),
        ("MQIsdp", 4 | 5) => Err(DecodeError::ProtocolNameLevelMismatch {
            name: "MQIsdp",
            level,
        }),
        ("MQTT" | "MQIsdp", _) => Err(DecodeError::UnsupportedProtocolLevel { level }),
        _ => Err(DecodeError::InvalidProtocolName),
    }
}

fn checked_binary_len(bytes: &Bytes, field: &'static str) -> Result<usize, EncodeError> {
    if bytes.len() > u16::MAX as usize {
        return Err(EncodeError::BinaryTooLong {
            packet: PacketType::Connect,
            field,
            len: bytes.len(),
        });
    }
    Ok(binary_len(bytes))
}

//! Typed decode and encode errors, and the single mapping from a decode error to the MQTT 5
//! reason code a server answers with (DISCONNECT, or CONNACK while the connection is new).
//! An MQTT 3.1/3.1.1 server answers every decode error by closing the connection, except an
//! unsupported protocol level, which gets CONNACK return code 0x01 first.

use crate::property::PropertyId;
use crate::reason::{ConnectReasonCode, DisconnectReasonCode};
use crate::string::StringError;
use crate::topic::TopicError;
use crate::types::{PacketType, ProtocolVersion};

/// How the specification classifies a decode failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Cannot be parsed according to the specification (reason code 0x81).
    Malformed,
    /// Parsed, but carries data the protocol does not allow (reason code 0x82).
    ProtocolError,
    /// Larger than the maximum packet size (reason code 0x95).
    PacketTooLarge,
    /// A CONNECT for a protocol level this codec does not speak (0x84; 3.1.1 return code 0x01).
    UnsupportedProtocolVersion,
}

/// Why bytes are not a valid MQTT packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge { size: usize, max: u32 },
    #[error("remaining length continues into a fifth byte")]
    RemainingLengthTooLong,
    #[error("variable byte integer in {packet} continues into a fifth byte")]
    VariableIntegerTooLong { packet: PacketType },
    #[error("packet type {packet_type} is reserved in {version}")]
    ReservedPacketType {
        packet_type: u8,
        version: ProtocolVersion,
    },
    #[error("{packet} has reserved fixed header flags {flags:#06b}")]
    InvalidHeaderFlags { packet: PacketType, flags: u8 },
    #[error("QoS 3 in {packet}")]
    InvalidQoS { packet: PacketType },
    #[error("PUBLISH with QoS 0 has the DUP flag set")]
    DupWithQoS0,
    #[error("{packet} ends before its {field}")]
    UnexpectedEnd {
        packet: PacketType,
        field: &'static str,
    },
    #[error("{packet} has {count} bytes after its last field")]
    TrailingBytes { packet: PacketType, count: usize },
    #[error("{packet} {field} is not a valid MQTT string: {source}")]
    InvalidString {
        packet: PacketType,
        field: &'static str,
        source: StringError,
    },
    #[error("{packet} topic name is invalid: {source}")]
    InvalidTopicName {
        packet: PacketType,
        source: TopicError,
    },
    #[error("{packet} topic filter is invalid: {source}")]
    InvalidTopicFilter {
        packet: PacketType,
        source: TopicError,
    },
    #[error("{packet} has packet identifier 0")]
    ZeroPacketId { packet: PacketType },
    #[error("CONNECT protocol name is not MQTT or MQIsdp")]
    InvalidProtocolName,
    #[error("CONNECT protocol level {level} is not supported")]
    UnsupportedProtocolLevel { level: u8 },
    #[error("CONNECT protocol name {name:?} does not go with level {level}")]
    ProtocolNameLevelMismatch { name: &'static str, level: u8 },
    #[error("CONNECT reserved flag is set")]
    ConnectReservedFlag,
    #[error("CONNECT will QoS/retain set without the will flag")]
    WillFlagsWithoutWill,
    #[error("CONNECT will QoS is 3")]
    InvalidWillQoS,
    #[error("CONNECT has a password flag without a user name flag")]
    PasswordWithoutUsername,
    #[error("CONNACK acknowledge flags {flags:#010b} set reserved bits")]
    InvalidConnAckFlags { flags: u8 },
    #[error("CONNACK with a refusal reports a present session")]
    SessionPresentOnRefusal,
    #[error("{packet} reason code {code:#04x} is not defined for it")]
    InvalidReasonCode { packet: PacketType, code: u8 },
    #[error("{packet} has unknown property identifier {id:#04x}")]
    UnknownProperty { packet: PacketType, id: u32 },
    #[error("{packet} may not carry property {property:?}")]
    PropertyNotAllowed {
        packet: PacketType,
        property: PropertyId,
    },
    #[error("{packet} carries property {property:?} more than once")]
    DuplicateProperty {
        packet: PacketType,
        property: PropertyId,
    },
    #[error("{packet} property {property:?} has the invalid value {value}")]
    InvalidPropertyValue {
        packet: PacketType,
        property: PropertyId,
        value: u32,
    },
    #[error("{packet} has Authentication Data without an Authentication Method")]
    AuthDataWithoutMethod { packet: PacketType },
    #[error("AUTH has no Authentication Method")]
    AuthWithoutMethod,
    #[error("{packet} carries no topic filter")]
    NoTopicFilters { packet: PacketType },
    #[error("{packet} carries no reason code")]
    NoReasonCodes { packet: PacketType },
    #[error("SUBSCRIBE options byte {options:#010b} sets reserved bits")]
    InvalidSubscriptionOptions { options: u8 },
    #[error("SUBSCRIBE Retain Handling is 3")]
    InvalidRetainHandling,
    #[error("SUBSCRIBE sets No Local on shared subscription {filter}")]
    NoLocalOnSharedSubscription { filter: String },
    #[error("PUBLISH has an empty topic name and no Topic Alias")]
    EmptyTopicWithoutAlias,
}

impl DecodeError {
    pub fn kind(&self) -> ErrorKind {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ErrorKind::PacketTooLarge,
            UnsupportedProtocolLevel { .. } | ProtocolNameLevelMismatch { .. } => {
                ErrorKind::UnsupportedProtocolVersion
            }
            // MQTT 5 §2.2.2.2: "It is a Protocol Error to include [it] more than once" and to
            // give it a value outside its range; §3.8.3.1 No Local on a shared subscription,
            // §3.8.3 empty SUBSCRIBE, §3.3.2.3.4 a zero-length topic with no alias; §2.2.1 a
            // zero packet identifier parses but is not allowed.
            DuplicateProperty { .. }
            | InvalidPropertyValue { .. }
            | AuthDataWithoutMethod { .. }
            | AuthWithoutMethod
            | NoTopicFilters { .. }
            | NoReasonCodes { .. }
            | InvalidRetainHandling
            | NoLocalOnSharedSubscription { .. }
            | EmptyTopicWithoutAlias
            | ZeroPacketId { .. }
            | SessionPresentOnRefusal => ErrorKind::ProtocolError,
            _ => ErrorKind::Malformed,
        }
    }

    /// The MQTT 5 DISCONNECT reason code a server sends before closing the connection.
    pub fn disconnect_reason(&self) -> DisconnectReasonCode {
        match self.kind() {
            ErrorKind::Malformed => DisconnectReasonCode::MalformedPacket,
            ErrorKind::ProtocolError | ErrorKind::UnsupportedProtocolVersion => {
                DisconnectReasonCode::ProtocolError
            }
            ErrorKind::PacketTooLarge => DisconnectReasonCode::PacketTooLarge,
        }
    }

    /// The CONNACK reason code for a CONNECT that failed to decode.
    pub fn connack_reason(&self) -> ConnectReasonCode {
        match self.kind() {
            ErrorKind::Malformed => ConnectReasonCode::MalformedPacket,
            ErrorKind::ProtocolError => ConnectReasonCode::ProtocolError,
            ErrorKind::PacketTooLarge => ConnectReasonCode::PacketTooLarge,
            ErrorKind::UnsupportedProtocolVersion => ConnectReasonCode::UnsupportedProtocolVersion,
        }
    }
}

/// Why a packet cannot be encoded for a protocol version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{packet} body of {size} bytes exceeds the maximum remaining length")]
    PacketTooLarge { packet: PacketType, size: usize },
    #[error("{packet} does not exist in {version}")]
    NotInVersion {
        packet: PacketType,
        version: ProtocolVersion,
    },
    #[error(
        "PUBLISH QoS and packet identifier disagree (QoS {qos}, packet id present: {has_packet_id})"
    )]
    PacketIdMismatch { qos: u8, has_packet_id: bool },
    #[error("{packet} {field} of {len} bytes is longer than 65535")]
    BinaryTooLong {
        packet: PacketType,
        field: &'static str,
        len: usize,
    },
    #[error("{packet} needs at least one entry in {field}")]
    EmptyList {
        packet: PacketType,
        field: &'static str,
    },
    #[error("PUBLISH has an empty topic name and no Topic Alias")]
    EmptyTopicWithoutAlias,
    #[error("{packet} in {version} cannot carry {field}")]
    NotRepresentable {
        packet: PacketType,
        version: ProtocolVersion,
        field: &'static str,
    },
}

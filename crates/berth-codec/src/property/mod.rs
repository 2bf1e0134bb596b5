//! MQTT 5 properties (§2.2.2): identifiers, typed values, and the per-packet property sets.
//!
//! Decoding reads each property into the typed [`Property`] enum (checking its value range),
//! then the packet's set accepts only the identifiers the spec allows on that packet
//! (another is malformed) and refuses repeats of a single-valued property (a protocol error).
//! Encoding walks a set once through a [`PropertySink`]: a counter first for the length prefix,
//! then the output buffer, so length and bytes cannot disagree.

mod sets;
mod sparse;

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::string::MqttString;
use crate::topic::TopicName;
use crate::types::{PacketType, QoS, SubscriptionId};
use crate::wire::{Reader, put_binary, put_varint, varint_len};

pub use sets::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubscribeProperties, UnsubscribeProperties, WillProperties,
};
pub use sparse::SparseProperties;

/// Property identifiers (MQTT 5 table 2-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropertyId {
    PayloadFormatIndicator = 0x01,
    MessageExpiryInterval = 0x02,
    ContentType = 0x03,
    ResponseTopic = 0x08,
    CorrelationData = 0x09,
    SubscriptionIdentifier = 0x0B,
    SessionExpiryInterval = 0x11,
    AssignedClientIdentifier = 0x12,
    ServerKeepAlive = 0x13,
    AuthenticationMethod = 0x15,
    AuthenticationData = 0x16,
    RequestProblemInformation = 0x17,
    WillDelayInterval = 0x18,
    RequestResponseInformation = 0x19,
    ResponseInformation = 0x1A,
    ServerReference = 0x1C,
    ReasonString = 0x1F,
    ReceiveMaximum = 0x21,
    TopicAliasMaximum = 0x22,
    TopicAlias = 0x23,
    MaximumQoS = 0x24,
    RetainAvailable = 0x25,
    UserProperty = 0x26,
    MaximumPacketSize = 0x27,
    WildcardSubscriptionAvailable = 0x28,
    SubscriptionIdentifierAvailable = 0x29,
    SharedSubscriptionAvailable = 0x2A,
}

impl PropertyId {
    pub fn from_u32(id: u32) -> Option<PropertyId> {
        use PropertyId::*;
        Some(match id {
            0x01 => PayloadFormatIndicator,
            0x02 => MessageExpiryInterval,
            0x03 => ContentType,
            0x08 => ResponseTopic,
            0x09 => CorrelationData,
            0x0B => SubscriptionIdentifier,
            0x11 => SessionExpiryInterval,
            0x12 => AssignedClientIdentifier,
            0x13 => ServerKeepAlive,
            0x15 => AuthenticationMethod,
            0x16 => AuthenticationData,
            0x17 => RequestProblemInformation,
            0x18 => WillDelayInterval,
            0x19 => RequestResponseInformation,
            0x1A => ResponseInformation,
            0x1C => ServerReference,
            0x1F => ReasonString,
            0x21 => ReceiveMaximum,
            0x22 => TopicAliasMaximum,
            0x23 => TopicAlias,
            0x24 => MaximumQoS,
            0x25 => RetainAvailable,
            0x26 => UserProperty,
            0x27 => MaximumPacketSize,
            0x28 => WildcardSubscriptionAvailable,
            0x29 => SubscriptionIdentifierAvailable,
            0x2A => SharedSubscriptionAvailable,
            _ => return None,
        })
    }
}

/// Payload Format Indicator (§3.3.2.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadFormat {
    /// 0: unspecified bytes.
    Unspecified = 0,
    /// 1: UTF-8 encoded character data.
    Utf8 = 1,
}

/// A User Property: a key/value pair of strings; order and repeats are preserved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserProperty {
    pub key: MqttString,
    pub value: MqttString,
}

impl UserProperty {
    pub fn new(key: MqttString, value: MqttString) -> UserProperty {
        UserProperty { key, value }
    }
}

/// One decoded property with its value already range-checked.
pub(crate) enum Property {
    PayloadFormatIndicator(PayloadFormat),
    MessageExpiryInterval(u32),
    ContentType(MqttString),
    ResponseTopic(TopicName),
    CorrelationData(Bytes),
    SubscriptionIdentifier(SubscriptionId),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(MqttString),
    ServerKeepAlive(u16),
    AuthenticationMethod(MqttString),
    AuthenticationData(Bytes),
    RequestProblemInformation(bool),
    WillDelayInterval(u32),
    RequestResponseInformation(bool),
    ResponseInformation(MqttString),
    ServerReference(MqttString),
    ReasonString(MqttString),
    ReceiveMaximum(NonZeroU16),
    TopicAliasMaximum(u16),
    TopicAlias(NonZeroU16),
    MaximumQoS(QoS),
    RetainAvailable(bool),
    UserProperty(UserProperty),
    MaximumPacketSize(NonZeroU32),
    WildcardSubscriptionAvailable(bool),
    SubscriptionIdentifierAvailable(bool),
    SharedSubscriptionAvailable(bool),
}

impl Property {
    pub(crate) fn id(&self) -> PropertyId {
        use Property as P;
        use PropertyId as I;
        match self {
            P::PayloadFormatIndicator(_) => I::PayloadFormatIndicator,
            P::MessageExpiryInterval(_) => I::MessageExpiryInterval,
            P::ContentType(_) => I::ContentType,
            P::ResponseTopic(_) => I::ResponseTopic,
            P::CorrelationData(_) => I::CorrelationData,
            P::SubscriptionIdentifier(_) => I::SubscriptionIdentifier,
            P::SessionExpiryInterval(_) => I::SessionExpiryInterval,
            P::AssignedClientIdentifier(_) => I::AssignedClientIdentifier,
            P::ServerKeepAlive(_) => I::ServerKeepAlive,
            P::AuthenticationMethod(_) => I::AuthenticationMethod,
            P::AuthenticationData(_) => I::AuthenticationData,
            P::RequestProblemInformation(_) => I::RequestProblemInformation,
            P::WillDelayInterval(_) => I::WillDelayInterval,
            P::RequestResponseInformation(_) => I::RequestResponseInformation,
            P::ResponseInformation(_) => I::ResponseInformation,
            P::ServerReference(_) => I::ServerReference,
            P::ReasonString(_) => I::ReasonString,
            P::ReceiveMaximum(_) => I::ReceiveMaximum,
            P::TopicAliasMaximum(_) => I::TopicAliasMaximum,
            P::TopicAlias(_) => I::TopicAlias,
            P::MaximumQoS(_) => I::MaximumQoS,
            P::RetainAvailable(_) => I::RetainAvailable,
            P::UserProperty(_) => I::UserProperty,
            P::MaximumPacketSize(_) => I::MaximumPacketSize,
            P::WildcardSubscriptionAvailable(_) => I::WildcardSubscriptionAvailable,
            P::SubscriptionIdentifierAvailable(_) => I::SubscriptionIdentifierAvailable,
            P::SharedSubscriptionAvailable(_) => I::SharedSubscriptionAvailable,
        }
    }
}

/// Reads the property length and then every property, handing each to `accept`.
pub(crate) fn read_properties(
    reader: &mut Reader,
    mut accept: impl FnMut(Property) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let len = reader.varint("property length")? as usize;
    let mut block = reader.sub(len, "properties")?;
    while !block.is_empty() {
        accept(read_property(&mut block)?)?;
    }
    Ok(())
}

fn read_property(r: &mut Reader) -> Result<Property, DecodeError> {
    use PropertyId as I;
    let packet = r.packet();
    let raw = r.varint("property identifier")?;
    let id = PropertyId::from_u32(raw).ok_or(DecodeError::UnknownProperty { packet, id: raw })?;
    let invalid = |value: u32| DecodeError::InvalidPropertyValue {
        packet,
        property: id,
        value,
    };
    let flag = |value: u8| match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(invalid(u32::from(other))),
    };
    const FIELD: &str = "property value";
    Ok(match id {
        I::PayloadFormatIndicator => Property::PayloadFormatIndicator(match r.u8(FIELD)? {
            0 => PayloadFormat::Unspecified,
            1 => PayloadFormat::Utf8,
            other => return Err(invalid(u32::from(other))),
        }),
        I::MessageExpiryInterval => Property::MessageExpiryInterval(r.u32(FIELD)?),
        I::ContentType => Property::ContentType(r.string("Content Type")?),
        I::ResponseTopic => {
            let topic = r.string("Response Topic")?;
            Property::ResponseTopic(
                TopicName::new(topic)
                    .map_err(|source| DecodeError::InvalidTopicName { packet, source })?,
            )
        }
        I::CorrelationData => Property::CorrelationData(r.binary(FIELD)?),
        I::SubscriptionIdentifier => {
            let value = r.varint(FIELD)?;
            Property::SubscriptionIdentifier(SubscriptionId::new(value).ok_or(invalid(value))?)
        }
        I::SessionExpiryInterval => Property::SessionExpiryInterval(r.u32(FIELD)?),
        I::AssignedClientIdentifier => {
            Property::AssignedClientIdentifier(r.string("Assigned Client Identifier")?)
        }
        I::ServerKeepAlive => Property::ServerKeepAlive(r.u16(FIELD)?),
        I::AuthenticationMethod => {
            Property::AuthenticationMethod(r.string("Authentication Method")?)
        }
        I::AuthenticationData => Property::AuthenticationData(r.binary(FIELD)?),
        I::RequestProblemInformation => Property::RequestProblemInformation(flag(r.u8(FIELD)?)?),
        I::WillDelayInterval => Property::WillDelayInterval(r.u32(FIELD)?),
        I::RequestResponseInformation => Property::RequestResponseInformation(flag(r.u8(FIELD)?)?),
        I::ResponseInformation => Property::ResponseInformation(r.string("Response Information")?),
        I::ServerReference => Property::ServerReference(r.string("Server Reference")?),
        I::ReasonString => Property::ReasonString(r.string("Reason String")?),
        I::ReceiveMaximum => {
            let value = r.u16(FIELD)?;
            Property::ReceiveMaximum(NonZeroU16::new(value).ok_or(invalid(u32::from(value)))?)
        }
        I::TopicAliasMaximum => Property::TopicAliasMaximum(r.u16(FIELD)?),
        I::TopicAlias => {
            let value = r.u16(FIELD)?;
            Property::TopicAlias(NonZeroU16::new(value).ok_or(invalid(u32::from(value)))?)
        }
        I::MaximumQoS => Property::MaximumQoS(match r.u8(FIELD)? {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            other => return Err(invalid(u32::from(other))),
        }),
        I::RetainAvailable => Property::RetainAvailable(flag(r.u8(FIELD)?)?),
        I::UserProperty => {
            let key = r.string("User Property")?;
            let value = r.string("User Property")?;
            Property::UserProperty(UserProperty { key, value })
        }
        I::MaximumPacketSize => {
            let value = r.u32(FIELD)?;
            Property::MaximumPacketSize(NonZeroU32::new(value).ok_or(invalid(value))?)
        }
        I::WildcardSubscriptionAvailable => {
            Property::WildcardSubscriptionAvailable(flag(r.u8(FIELD)?)?)
        }
        I::SubscriptionIdentifierAvailable => {
            Property::SubscriptionIdentifierAvailable(flag(r.u8(FIELD)?)?)
        }
        I::SharedSubscriptionAvailable => {
            Property::SharedSubscriptionAvailable(flag(r.u8(FIELD)?)?)
        }
    })
}

/// Stores a single-valued property, refusing a second occurrence ([MQTT 5 §2.2.2.2]).
pub(crate) fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    packet: PacketType,
    property: PropertyId,
) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty { packet, property });
    }
    *slot = Some(value);
    Ok(())
}

pub(crate) fn not_allowed(packet: PacketType, property: &Property) -> DecodeError {
    DecodeError::PropertyNotAllowed {
        packet,
        property: property.id(),
    }
}

/// Receives a property set's fields in wire form; see the module docs.
pub(crate) trait PropertySink {
    fn byte(&mut self, id: PropertyId, value: u8);
    fn two(&mut self, id: PropertyId, value: u16);
    fn four(&mut self, id: PropertyId, value: u32);
    fn varint(&mut self, id: PropertyId, value: u32);
    fn binary(&mut self, id: PropertyId, value: &[u8]);
    fn pair(&mut self, id: PropertyId, key: &[u8], value: &[u8]);
}

/// A packet's property set: visits its present properties in a fixed order.
pub(crate) trait PropertySet {
    fn visit<S: PropertySink>(&self, sink: &mut S);
}

/// Counts the encoded length and notes a binary field that is too long to encode.
#[derive(Default)]
pub(crate) struct LengthCounter {
    pub(crate) len: usize,
    pub(crate) oversized: Option<usize>,
}

// Every property identifier is below 128, so it always encodes as one byte.
impl PropertySink for LengthCounter {
    fn byte(&mut self, _: PropertyId, _: u8) {
        self.len += 2;
    }
    fn two(&mut self, _: PropertyId, _: u16) {
        self.len += 3;
    }
    fn four(&mut self, _: PropertyId, _: u32) {
        self.len += 5;
    }
    fn varint(&mut self, _: PropertyId, value: u32) {
        self.len += 1 + varint_len(value as usize);
    }
    fn binary(&mut self, _: PropertyId, value: &[u8]) {
        if value.len() > u16::MAX as usize {
            self.oversized = Some(value.len());
        }
        self.len += 3 + value.len();
    }
    fn pair(&mut self, _: PropertyId, key: &[u8], value: &[u8]) {
        self.len += 5 + key.len() + value.len();
    }
}

impl PropertySink for BytesMut {
    fn byte(&mut self, id: PropertyId, value: u8) {
        self.put_u8(id as u8);
        self.put_u8(value);
    }
    fn two(&mut self, id: PropertyId, value: u16) {
        self.put_u8(id as u8);
        self.put_u16(value);
    }
    fn four(&mut self, id: PropertyId, value: u32) {
        self.put_u8(id as u8);
        self.put_u32(value);
    }
    fn varint(&mut self, id: PropertyId, value: u32) {
        self.put_u8(id as u8);
        put_varint(self, value as usize);
    }
    fn binary(&mut self, id: PropertyId, value: &[u8]) {
        self.put_u8(id as u8);
        put_binary(self, value);
    }
    fn pair(&mut self, id: PropertyId, key: &[u8], value: &[u8]) {
        self.put_u8(id as u8);
        put_binary(self, key);
        put_binary(self, value);
    }
}

/// The length of a property set's contents (without its own length prefix), or the size of a
/// binary property too long to encode.
pub(crate) fn properties_len(set: &impl PropertySet) -> Result<usize, usize> {
    let mut counter = LengthCounter::default();
    set.visit(&mut counter);
    match counter.oversized {
        Some(len) => Err(len),
        None => Ok(counter.len),
    }
}

/// Writes the length prefix and the properties; `len` comes from [`properties_len`].
pub(crate) fn put_properties(out: &mut BytesMut, set: &impl PropertySet, len: usize) {
    put_varint(out, len);
    set.visit(out);
}

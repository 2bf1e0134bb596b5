//! The property set of each packet (MQTT 5 §3.x.2.2), one struct per packet family, with exactly
//! the properties the spec allows there.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;

use super::{
    PayloadFormat, Property, PropertyId as I, PropertySet, PropertySink, UserProperty, not_allowed,
    read_properties, set_once,
};
use crate::error::DecodeError;
use crate::string::MqttString;
use crate::topic::TopicName;
use crate::types::{PacketType, QoS, SubscriptionId};
use crate::wire::Reader;

fn visit_users<S: PropertySink>(sink: &mut S, users: &[UserProperty]) {
    for user in users {
        sink.pair(I::UserProperty, user.key.as_bytes(), user.value.as_bytes());
    }
}

fn visit_string<S: PropertySink>(sink: &mut S, id: I, value: &Option<MqttString>) {
    if let Some(value) = value {
        sink.binary(id, value.as_bytes());
    }
}

fn visit_bytes<S: PropertySink>(sink: &mut S, id: I, value: &Option<Bytes>) {
    if let Some(value) = value {
        sink.binary(id, value);
    }
}

fn visit_flag<S: PropertySink>(sink: &mut S, id: I, value: Option<bool>) {
    if let Some(value) = value {
        sink.byte(id, u8::from(value));
    }
}

fn visit_u32<S: PropertySink>(sink: &mut S, id: I, value: Option<u32>) {
    if let Some(value) = value {
        sink.four(id, value);
    }
}

fn check_auth(
    packet: PacketType,
    method: &Option<MqttString>,
    data: &Option<Bytes>,
) -> Result<(), DecodeError> {
    // §3.1.2.11.10: Authentication Data without an Authentication Method is a Protocol Error.
    if data.is_some() && method.is_none() {
        return Err(DecodeError::AuthDataWithoutMethod { packet });
    }
    Ok(())
}

/// CONNECT properties (§3.1.2.11).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectProperties {
    /// Seconds the session outlives the connection; absent means 0; `u32::MAX` means never.
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<NonZeroU16>,
    pub maximum_packet_size: Option<NonZeroU32>,
    pub topic_alias_maximum: Option<u16>,
    pub request_response_information: Option<bool>,
    pub request_problem_information: Option<bool>,
    pub user_properties: Vec<UserProperty>,
    pub authentication_method: Option<MqttString>,
    pub authentication_data: Option<Bytes>,
}

impl ConnectProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let packet = r.packet();
        let mut p = Self::default();
        read_properties(r, |prop| match prop {
            Property::SessionExpiryInterval(v) => set_once(
                &mut p.session_expiry_interval,
                v,
                packet,
                I::SessionExpiryInterval,
            ),
            Property::ReceiveMaximum(v) => {
                set_once(&mut p.receive_maximum, v, packet, I::ReceiveMaximum)
            }
            Property::MaximumPacketSize(v) => {
                set_once(&mut p.maximum_packet_size, v, packet, I::MaximumPacketSize)
            }
            Property::TopicAliasMaximum(v) => {
                set_once(&mut p.topic_alias_maximum, v, packet, I::TopicAliasMaximum)
            }
            Property::RequestResponseInformation(v) => set_once(
                &mut p.request_response_information,
                v,
                packet,
                I::RequestResponseInformation,
            ),
            Property::RequestProblemInformation(v) => set_once(
                &mut p.request_problem_information,
                v,
                packet,
                I::RequestProblemInformation,
            ),
            Property::UserProperty(v) => {
                p.user_properties.push(v);
                Ok(())
            }
            Property::AuthenticationMethod(v) => set_once(
                &mut p.authentication_method,
                v,
                packet,
                I::AuthenticationMethod,
            ),
            Property::AuthenticationData(v) => {
                set_once(&mut p.authentication_data, v, packet, I::AuthenticationData)
            }
            other => Err(not_allowed(packet, &other)),
        })?;
        check_auth(packet, &p.authentication_method, &p.authentication_data)?;
        Ok(p)
    }
}

impl PropertySet for ConnectProperties {
    fn visit<S: PropertySink>(&self, s: &mut S) {
        visit_u32(s, I::SessionExpiryInterval, self.session_expiry_interval);
        if let Some(v) = self.receive_maximum {
            s.two(I::ReceiveMaximum, v.get());
        }
        if let Some(v) = self.maximum_packet_size {
            s.four(I::MaximumPacketSize, v.get());
        }
        if let Some(v) = self.topic_alias_maximum {
            s.two(I::TopicAliasMaximum, v);
        }
        visit_flag(
            s,
            I::RequestResponseInformation,
            self.request_response_information,
        );
        visit_flag(
            s,
            I::RequestProblemInformation,
            self.request_problem_information,
        );
        visit_users(s, &self.user_properties);
        visit_string(s, I::AuthenticationMethod, &self.authentication_method);
        visit_bytes(s, I::AuthenticationData, &self.authentication_data);
    }
}

/// Will properties inside CONNECT (§3.1.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WillProperties {
    pub will_delay_interval: Option<u32>,
    pub payload_format_indicator: Option<PayloadFormat>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<MqttString>,
    pub response_topic: Option<TopicName>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<UserProperty>,
}

impl WillProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let packet = r.packet();
        let mut p = Self::default();
        read_properties(r, |prop| match prop {
            Property::WillDelayInterval(v) => {
                set_once(&mut p.will_delay_interval, v, packet, I::WillDelayInterval)
            }
            Property::PayloadFormatIndicator(v) => set_once(
                &mut p.payload_format_indicator,
                v,
                packet,
                I::PayloadFormatIndicator,
            ),
            Property::MessageExpiryInterval(v) => set_once(
                &mut p.message_expiry_interval,
                v,
                packet,
                I::MessageExpiryInterval,
            ),
            Property::ContentType(v) => set_once(&mut p.content_type, v, packet, I::ContentType),
            Property::ResponseTopic(v) => {
                set_once(&mut p.response_topic, v, packet, I::ResponseTopic)
            }
            Property::CorrelationData(v) => {
                set_once(&mut p.correlation_data, v, packet, I::CorrelationData)
            }
            Property::UserProperty(v) => {
                p.user_properties.push(v);
                Ok(())
            }
            other => Err(not_allowed(packet, &other)),
        })?;
        Ok(p)
    }
}

impl PropertySet for WillProperties {
    fn visit<S: PropertySink>(&self, s: &mut S) {
        visit_u32(s, I::WillDelayInterval, self.will_delay_interval);
        if let Some(v) = self.payload_format_indicator {
            s.byte(I::PayloadFormatIndicator, v as u8);
        }
        visit_u32(s, I::MessageExpiryInterval, self.message_expiry_interval);
        visit_string(s, I::ContentType, &self.content_type);
        if let Some(v) = &self.response_topic {
            s.binary(I::ResponseTopic, v.as_mqtt_str().as_bytes());
        }
        visit_bytes(s, I::CorrelationData, &self.correlation_data);
        visit_users(s, &self.user_properties);
    }
}

/// CONNACK properties (§3.2.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAckProperties {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<NonZeroU16>,
    /// Only QoS 0 or 1 may be sent; absent means QoS 2 is supported.
    pub maximum_qos: Option<QoS>,
    pub retain_available: Option<bool>,
    pub maximum_packet_size: Option<NonZeroU32>,
    pub assigned_client_identifier: Option<MqttString>,
    pub topic_alias_maximum: Option<u16>,
    pub reason_string: Option<MqttString>,
    pub user_properties: Vec<UserProperty>,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifiers_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
    pub server_keep_alive: Option<u16>,
    pub response_information: Option<MqttString>,
    pub server_reference: Option<MqttString>,
    pub authentication_method: Option<MqttString>,
    pub authentication_data: Option<Bytes>,
}

impl ConnAckProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let packet = r.packet();
        let mut p = Self::default();
        read_properties(r, |prop| match prop {
            Property::SessionExpiryInterval(v) => set_once(
                &mut p.session_expiry_interval,
                v,
                packet,
                I::SessionExpiryInterval,
            ),
            Property::ReceiveMaximum(v) => {
                set_once(&mut p.receive_maximum, v, packet, I::ReceiveMaximum)
            }
            Property::MaximumQoS(v) => set_once(&mut p.maximum_qos, v, packet, I::MaximumQoS),
            Property::RetainAvailable(v) => {
                set_once(&mut p.retain_available, v, packet, I::RetainAvailable)
            }
            Property::MaximumPacketSize(v) => {
                set_once(&mut p.maximum_packet_size, v, packet, I::MaximumPacketSize)
            }
            Property::AssignedClientIdentifier(v) => set_once(
                &mut p.assigned_client_identifier,
                v,
                packet,
                I::AssignedClientIdentifier,
            ),
            Property::TopicAliasMaximum(v) => {
                set_once(&mut p.topic_alias_maximum, v, packet, I::TopicAliasMaximum)
            }
            Property::ReasonString(v) => set_once(&mut p.reason_string, v, packet, I::ReasonString),
            Property::UserProperty(v) => {
                p.user_properties.push(v);
                Ok(())
            }
            Property::WildcardSubscriptionAvailable(v) => set_once(
                &mut p.wildcard_subscription_available,
                v,
                packet,
                I::WildcardSubscriptionAvailable,
            ),
            Property::SubscriptionIdentifierAvailable(v) => set_once(
                &mut p.subscription_identifiers_available,
                v,
                packet,
                I::SubscriptionIdentifierAvailable,
            ),
            Property::SharedSubscriptionAvailable(v) => set_once(
                &mut p.shared_subscription_available,
                v,
                packet,
                I::SharedSubscriptionAvailable,
            ),
            Property::ServerKeepAlive(v) => {
                set_once(&mut p.server_keep_alive, v, packet, I::ServerKeepAlive)
            }
            Property::ResponseInformation(v) => set_once(
                &mut p.response_information,
                v,
                packet,
                I::ResponseInformation,
            ),
            Property::ServerReference(v) => {
                set_once(&mut p.server_reference, v, packet, I::ServerReference)
            }
            Property::AuthenticationMethod(v) => set_once(
                &mut p.authentication_method,
                v,
                packet,
                I::AuthenticationMethod,
            ),
            Property::AuthenticationData(v) => {
                set_once(&mut p.authentication_data, v, packet, I::AuthenticationData)
            }
            other => Err(not_allowed(packet, &other)),
        })?;
        check_auth(packet, &p.authentication_method, &p.authentication_data)?;
        Ok(p)
    }
}

impl PropertySet for ConnAckProperties {
    fn visit<S: PropertySink>(&self, s: &mut S) {
        visit_u32(s, I::SessionExpiryInterval, self.session_expiry_interval);
        if let Some(v) = self.receive_maximum {
            s.two(I::ReceiveMaximum, v.get());
        }
        if let Some(v) = self.maximum_qos {
            s.byte(I::MaximumQoS, v.as_u8());
        }
        visit_flag(s, I::RetainAvailable, self.retain_available);
        if let Some(v) = self.maximum_packet_size {
            s.four(I::MaximumPacketSize, v.get());
        }
        visit_string(
            s,
            I::AssignedClientIdentifier,
            &self.assigned_client_identifier,
        );
        if let Some(v) = self.topic_alias_maximum {
            s.two(I::TopicAliasMaximum, v);
        }
        visit_string(s, I::ReasonString, &self.reason_string);
        visit_users(s, &self.user_properties);
        visit_flag(
            s,
            I::WildcardSubscriptionAvailable,
            self.wildcard_subscription_available,
        );
        visit_flag(
            s,
            I::SubscriptionIdentifierAvailable,
            self.subscription_identifiers_available,
        );
        visit_flag(
            s,
            I::SharedSubscriptionAvailable,
            self.shared_subscription_available,
        );
        if let Some(v) = self.server_keep_alive {
            s.two(I::ServerKeepAlive, v);
        }
        visit_string(s, I::ResponseInformation, &self.response_information);
        visit_string(s, I::ServerReference, &self.server_reference);
        visit_string(s, I::AuthenticationMethod, &self.authentication_method);
        visit_bytes(s, I::AuthenticationData, &self.authentication_data);
    }
}

/// PUBLISH properties (§3.3.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishProperties {
    pub payload_format_indicator: Option<PayloadFormat>,
    pub message_expiry_interval: Option<u32>,
    pub topic_alias: Option<NonZeroU16>,
    pub response_topic: Option<TopicName>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<UserProperty>,
    /// Server to client only: one per matching subscription that had an identifier.
    pub subscription_identifiers: Vec<SubscriptionId>,
    pub content_type: Option<MqttString>,
}

impl PublishProperties {
    /// No properties, as a constant (what an absent [`super::SparseProperties`] reads as).
    pub const EMPTY: PublishProperties = PublishProperties {
        payload_format_indicator: None,
        message_expiry_interval: None,
        topic_alias: None,
        response_topic: None,
        correlation_data: None,
        user_properties: Vec::new(),
        subscription_identifiers: Vec::new(),
        content_type: None,
    };

    /// The same properties in allocations of their own: decoded ones are slices of the packet's
    /// buffer, which a connection shares among every packet of one read.
    pub fn detached(&self) -> PublishProperties {
        PublishProperties {
            response_topic: self.response_topic.as_ref().map(TopicName::detached),
            correlation_data: self
                .correlation_data
                .as_ref()
                .map(|data| Bytes::copy_from_slice(data)),
            user_properties: self
                .user_properties
                .iter()
                .map(|p| UserProperty {
                    key: p.key.detached(),
                    value: p.value.detached(),
                })
                .collect(),
            content_type: self.content_type.as_ref().map(MqttString::detached),
            payload_format_indicator: self.payload_format_indicator,
            message_expiry_interval: self.message_expiry_interval,
            topic_alias: self.topic_alias,
            subscription_identifiers: self.subscription_identifiers.clone(),
        }
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let packet = r.packet();
        let mut p = Self::default();
        read_properties(r, |prop| match prop {
            Property::PayloadFormatIndicator(v) => set_once(
                &mut p.payload_format_indicator,
                v,
                packet,
                I::PayloadFormatIndicator,
            ),
            Property::MessageExpiryInterval(v) => set_once(
                &mut p.message_expiry_interval,
                v,
                packet,
                I::MessageExpiryInterval,
            ),
            Property::TopicAlias(v) => set_once(&mut p.topic_alias, v, packet, I::TopicAlias),
            Property::ResponseTopic(v) => {
                set_once(&mut p.response_topic, v, packet, I::ResponseTopic)
            }
            Property::CorrelationData(v) => {
                set_once(&mut p.correlation_data, v, packet, I::CorrelationData)
            }
            Property::UserProperty(v) => {
                p.user_properties.push(v);
                Ok(())
            }
            Property::SubscriptionIdentifier(v) => {
                p.subscription_identifiers.push(v);
                Ok(())
            }
            Property::ContentType(v) => set_once(&mut p.content_type, v, packet, I::ContentType),
            other => Err(not_allowed(packet, &other)),
        })?;
        Ok(p)
    }

    pub fn is_empty(&self) -> bool {
        self.payload_format_indicator.is_none()
            && self.message_expiry_interval.is_none()
            && self.topic_alias.is_none()
            && self.response_topic.is_none()
            && self.correlation_data.is_none()
            && self.user_properties.is_empty()
            && self.subscription_identifiers.is_empty()
            && self.content_type.is_none()
    }
}

impl PropertySet for PublishProperties {
    fn visit<S: PropertySink>(&self, s: &mut S) {
        if let Some(v) = self.payload_format_indicator {
            s.byte(I::PayloadFormatIndicator, v as u8);
        }
        visit_u32(s, I::MessageExpiryInterval, self.message_expiry_interval);
        if let Some(v) = self.topic_alias {
            s.two(I::TopicAlias, v.get());
        }
        if let Some(v) = &self.response_topic {
            s.binary(I::ResponseTopic, v.as_mqtt_str().as_bytes());
        }
        visit_bytes(s, I::CorrelationData, &self.correlation_data);
        visit_users(s, &self.user_properties);
        for id in &self.subscription_identifiers {
            s.varint(I::SubscriptionIdentifier, id.get());
        }
        visit_string(s, I::ContentType, &self.content_type);
    }
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK: a reason string and user
/// properties, nothing else (§3.4.2.2 and siblings).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AckProperties {
    pub reason_string: Option<MqttString>,
    pub user_properties: Vec<UserProperty>,
}

impl AckProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let packet = r.packet();
        let mut p = Self::default();
        read_properties(r, |prop| match prop {
            Property::ReasonString(v) => set_once(&mut p.reason_string, v, packet, I::ReasonString),
            Property::UserProperty(v) => {
                p.user_properties.push(v);
                Ok(())
            }
            other => Err(not_allowed(packet, &other)),
        })?;
        Ok(p)
    }

    pub fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }
}

impl PropertySet for AckProperties {
    fn visit<S: PropertySink>(&self, s: &mut S) {
        visit_string(s, I::ReasonString, &self.reason_string);
        visit_users(s, &self.user_properties);
    }
}

/// SUBSCRIBE properties (§3.8.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeProperties {
    pub subscription_identifier: Option<SubscriptionId>,
    pub user_properties: Vec<UserProperty>,
}

impl SubscribeProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let packet = r.packet();
        let mut p = Self::default();
        read_properties(r, |prop| match prop {
            Property::SubscriptionIdentifier(v) => set_once(
                &mut p.subscription_identifier,
                v,
                packet,
                I::SubscriptionIdentifier,
            ),
            Property::UserProperty(v) => {
                p.user_properties.push(v);
                Ok(())
            }
            other => Err(not_allowed(packet, &other)),
        })?;
        Ok(p)
    }
}

impl PropertySet for SubscribeProperties {
    fn visit<S: PropertySink>(&self, s: &mut S) {
        if let Some(v) = self.subscription_identifier {
            s.varint(I::SubscriptionIdentifier, v.get());
        }
        visit_users(s, &self.user_properties);
    }
}

/// UNSUBSCRIBE properties (§3.10.2.1): user properties only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnsubscribeProperties {
    pub user_properties: Vec<UserProperty>,
}

impl UnsubscribeProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let packet = r.packet();
        let mut p = Self::default();
        read_properties(r, |prop| match prop {
            Property::UserProperty(v) => {
                p.user_properties.push(v);
                Ok(())
            }
            other => Err(not_allowed(packet, &other)),
        })?;
        Ok(p)
    }
}

impl PropertySet for UnsubscribeProperties {
    fn visit<S: PropertySink>(&self, s: &mut S) {
        visit_users(s, &self.user_properties);
    }
}

/// DISCONNECT properties (§3.14.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisconnectProperties {
    /// Client to server only; may not turn 0 into non-zero (the broker checks that rule).
    pub session_expiry_interval: Option<u32>,
    pub reason_string: Option<MqttString>,
    pub user_properties: Vec<UserProperty>,
    pub server_reference: Option<MqttString>,
}

impl DisconnectProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let packet = r.packet();
        let mut p = Self::default();
        read_properties(r, |prop| match prop {
            Property::SessionExpiryInterval(v) => set_once(
                &mut p.session_expiry_interval,
                v,
                packet,
                I::SessionExpiryInterval,
            ),
            Property::ReasonString(v) => set_once(&mut p.reason_string, v, packet, I::ReasonString),
            Property::UserProperty(v) => {
                p.user_properties.push(v);
                Ok(())
            }
            Property::ServerReference(v) => {
                set_once(&mut p.server_reference, v, packet, I::ServerReference)
            }
            other => Err(not_allowed(packet, &other)),
        })?;
        Ok(p)
    }

    pub fn is_empty(&self) -> bool {
        *self == DisconnectProperties::default()
    }
}

impl PropertySet for DisconnectProperties {
    fn visit<S: PropertySink>(&self, s: &mut S) {
        visit_u32(s, I::SessionExpiryInterval, self.session_expiry_interval);
        visit_string(s, I::ReasonString, &self.reason_string);
        visit_users(s, &self.user_properties);
        visit_string(s, I::ServerReference, &self.server_reference);
    }
}

/// AUTH properties (§3.15.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthProperties {
    pub authentication_method: Option<MqttString>,
    pub authentication_data: Option<Bytes>,
    pub reason_string: Option<MqttString>,
    pub user_properties: Vec<UserProperty>,
}

impl AuthProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let packet = r.packet();
        let mut p = Self::default();
        read_properties(r, |prop| match prop {
            Property::AuthenticationMethod(v) => set_once(
                &mut p.authentication_method,
                v,
                packet,
                I::AuthenticationMethod,
            ),
            Property::AuthenticationData(v) => {
                set_once(&mut p.authentication_data, v, packet, I::AuthenticationData)
            }
            Property::ReasonString(v) => set_once(&mut p.reason_string, v, packet, I::ReasonString),
            Property::UserProperty(v) => {
                p.user_properties.push(v);
                Ok(())
            }
            other => Err(not_allowed(packet, &other)),
        })?;
        check_auth(packet, &p.authentication_method, &p.authentication_data)?;
        Ok(p)
    }

    pub fn is_empty(&self) -> bool {
        *self == AuthProperties::default()
    }
}

impl PropertySet for AuthProperties {
    fn visit<S: PropertySink>(&self, s: &mut S) {
        visit_string(s, I::AuthenticationMethod, &self.authentication_method);
        visit_bytes(s, I::AuthenticationData, &self.authentication_data);
        visit_string(s, I::ReasonString, &self.reason_string);
        visit_users(s, &self.user_properties);
    }
}

//! Proptest strategies for every packet of every protocol version, with arbitrary valid content.
//!
//! `packet(version)` only produces packets that `version` can carry unchanged, so that
//! `decode(encode(p)) == p` must hold for every value. Where the specification forbids a
//! combination the codec refuses or normalizes, the strategy is constrained and says why.

use std::num::{NonZeroU16, NonZeroU32};

use berth_codec::{
    AckProperties, Auth, AuthProperties, AuthReasonCode, ConnAck, ConnAckProperties, Connect,
    ConnectProperties, ConnectReasonCode, Disconnect, DisconnectProperties, DisconnectReasonCode,
    LastWill, MqttString, Packet, PacketId, PayloadFormat, ProtocolVersion, PubAck,
    PubAckReasonCode, PubComp, PubRec, PubRel, PubRelReasonCode, Publish, PublishProperties, QoS,
    RetainHandling, SubAck, SubAckReasonCode, Subscribe, SubscribeProperties, Subscription,
    SubscriptionId, SubscriptionOptions, TopicFilter, TopicName, UnsubAck, UnsubAckReasonCode,
    Unsubscribe, UnsubscribeProperties, UserProperty, WillProperties,
};
use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;

pub fn version() -> impl Strategy<Value = ProtocolVersion> {
    select(&ProtocolVersion::ALL[..])
}

// ---------------------------------------------------------------------------------------------
// Strings, topics, scalars
// ---------------------------------------------------------------------------------------------

/// Any character MQTT allows in a string: everything but U+0000, biased towards ASCII and the
/// UTF-8 length boundaries (1, 2, 3 and 4 bytes) so that multi-byte text is common.
fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::char::range('a', 'z'),
        2 => select(vec![
            '/', ' ', '$', '\u{1}', '\u{7f}', '\u{80}', 'é', '\u{7ff}', '\u{800}', '€',
            '\u{feff}', '\u{fffd}', '\u{ffff}', '\u{10000}', '😀', '\u{10ffff}',
        ]),
        // U+0000 is the one character an MQTT string may not hold ([MQTT-1.5.4-2]).
        3 => any::<char>().prop_map(|c| if c == '\0' { '\u{1}' } else { c }),
    ]
}

fn text(max_chars: usize) -> impl Strategy<Value = String> {
    vec(any_char(), 0..max_chars).prop_map(|chars| chars.into_iter().collect())
}

pub fn mqtt_string() -> impl Strategy<Value = MqttString> {
    text(12).prop_map(|s| MqttString::new(&s).unwrap())
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

/// A PUBLISH or will payload: mostly small, sometimes large enough that the remaining length
/// crosses the one/two and two/three byte boundaries of its variable byte integer.
fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        8 => bytes(64),
        2 => (100usize..160, any::<u8>()).prop_map(|(n, b)| Bytes::from(vec![b; n])),
        1 => (16_300usize..16_450, any::<u8>()).prop_map(|(n, b)| Bytes::from(vec![b; n])),
    ]
}

/// One topic level: no wildcard and no separator.
fn level() -> impl Strategy<Value = String> {
    vec(
        any_char().prop_map(|c| match c {
            '+' | '#' | '/' => '_',
            c => c,
        }),
        0..6,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// A topic name: non-empty, no wildcards, empty levels allowed (`/`, `a//b`, `$SYS/x`).
pub fn topic_name() -> impl Strategy<Value = TopicName> {
    vec(level(), 1..5).prop_map(|levels| {
        let mut name = levels.join("/");
        if name.is_empty() {
            name.push('/');
        }
        TopicName::parse(&name).unwrap()
    })
}

/// A topic filter: `+` as whole levels, `#` as the whole last level, and sometimes a shared
/// subscription `$share/{group}/{filter}`.
pub fn topic_filter() -> impl Strategy<Value = TopicFilter> {
    let filter_level = prop_oneof![3 => level(), 1 => Just("+".to_owned())];
    let group = vec(
        any_char().prop_filter("share names have no '/', '+' or '#'", |c| {
            !matches!(c, '/' | '+' | '#')
        }),
        1..6,
    )
    .prop_map(|chars| chars.into_iter().collect::<String>());
    (
        vec(filter_level, 0..5),
        any::<bool>(),
        option::weighted(0.25, group),
    )
        .prop_map(|(mut levels, multi_level, group)| {
            if multi_level {
                levels.push("#".to_owned());
            }
            let mut filter = levels.join("/");
            if filter.is_empty() {
                filter.push('+');
            }
            // A first level of exactly `$share` would make this a (malformed) shared filter.
            if filter == "$share" || filter.starts_with("$share/") {
                filter.insert(0, 'x');
            }
            if let Some(group) = group {
                filter = format!("$share/{group}/{filter}");
            }
            TopicFilter::parse(&filter).unwrap()
        })
}

pub fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|v| PacketId::new(v).unwrap())
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn non_zero_u16() -> impl Strategy<Value = NonZeroU16> {
    prop_oneof![Just(1u16), Just(u16::MAX), 1..=u16::MAX].prop_map(|v| NonZeroU16::new(v).unwrap())
}

fn non_zero_u32() -> impl Strategy<Value = NonZeroU32> {
    prop_oneof![Just(1u32), Just(u32::MAX), 1..=u32::MAX].prop_map(|v| NonZeroU32::new(v).unwrap())
}

fn four_byte() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), Just(u32::MAX), any::<u32>()]
}

/// 1 ..= 268,435,455, covering every length of its variable byte integer.
fn subscription_id() -> impl Strategy<Value = SubscriptionId> {
    prop_oneof![
        1u32..=127,
        128u32..=16_383,
        16_384u32..=2_097_151,
        2_097_152u32..=SubscriptionId::MAX,
        Just(SubscriptionId::MAX),
    ]
    .prop_map(|v| SubscriptionId::new(v).unwrap())
}

fn payload_format() -> impl Strategy<Value = PayloadFormat> {
    select(vec![PayloadFormat::Unspecified, PayloadFormat::Utf8])
}

// ---------------------------------------------------------------------------------------------
// MQTT 5 property sets
// ---------------------------------------------------------------------------------------------

/// Zero or more user properties; keys repeat often, since order and repeats must be kept.
fn user_properties() -> impl Strategy<Value = Vec<UserProperty>> {
    let key = prop_oneof![
        1 => select(vec!["k", "region", "é"]).prop_map(|k| MqttString::new(k).unwrap()),
        2 => mqtt_string(),
    ];
    vec((key, mqtt_string()), 0..5).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(key, value)| UserProperty::new(key, value))
            .collect()
    })
}

/// Authentication Method and Data: data never without a method (§3.1.2.11.10, a protocol error).
fn authentication() -> impl Strategy<Value = (Option<MqttString>, Option<Bytes>)> {
    option::of((mqtt_string(), option::of(bytes(24)))).prop_map(|auth| match auth {
        Some((method, data)) => (Some(method), data),
        None => (None, None),
    })
}

pub fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        option::of(four_byte()),
        option::of(non_zero_u16()),
        option::of(non_zero_u32()),
        option::of(any::<u16>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        user_properties(),
        authentication(),
    )
        .prop_map(
            |(session_expiry, receive_max, max_packet, alias_max, rri, rpi, users, auth)| {
                ConnectProperties {
                    session_expiry_interval: session_expiry,
                    receive_maximum: receive_max,
                    maximum_packet_size: max_packet,
                    topic_alias_maximum: alias_max,
                    request_response_information: rri,
                    request_problem_information: rpi,
                    user_properties: users,
                    authentication_method: auth.0,
                    authentication_data: auth.1,
                }
            },
        )
}

pub fn will_properties() -> impl Strategy<Value = WillProperties> {
    (
        option::of(four_byte()),
        option::of(payload_format()),
        option::of(four_byte()),
        option::of(mqtt_string()),
        option::of(topic_name()),
        option::of(bytes(24)),
        user_properties(),
    )
        .prop_map(
            |(delay, format, expiry, content_type, response_topic, correlation, users)| {
                WillProperties {
                    will_delay_interval: delay,
                    payload_format_indicator: format,
                    message_expiry_interval: expiry,
                    content_type,
                    response_topic,
                    correlation_data: correlation,
                    user_properties: users,
                }
            },
        )
}

pub fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    let limits = (
        option::of(four_byte()),
        option::of(non_zero_u16()),
        // Maximum QoS is 0 or 1: any other value is a protocol error (§3.2.2.3.4), and absence
        // means QoS 2 is supported.
        option::of(select(vec![QoS::AtMostOnce, QoS::AtLeastOnce])),
        option::of(any::<bool>()),
        option::of(non_zero_u32()),
        option::of(mqtt_string()),
        option::of(any::<u16>()),
    );
    let rest = (
        option::of(mqtt_string()),
        user_properties(),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<u16>()),
        option::of(mqtt_string()),
        option::of(mqtt_string()),
        authentication(),
    );
    (limits, rest).prop_map(
        |(
            (session_expiry, receive_max, max_qos, retain, max_packet, assigned_id, alias_max),
            (reason, users, wildcard, sub_ids, shared, keep_alive, response_info, server_ref, auth),
        )| ConnAckProperties {
            session_expiry_interval: session_expiry,
            receive_maximum: receive_max,
            maximum_qos: max_qos,
            retain_available: retain,
            maximum_packet_size: max_packet,
            assigned_client_identifier: assigned_id,
            topic_alias_maximum: alias_max,
            reason_string: reason,
            user_properties: users,
            wildcard_subscription_available: wildcard,
            subscription_identifiers_available: sub_ids,
            shared_subscription_available: shared,
            server_keep_alive: keep_alive,
            response_information: response_info,
            server_reference: server_ref,
            authentication_method: auth.0,
            authentication_data: auth.1,
        },
    )
}

pub fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        option::of(payload_format()),
        option::of(four_byte()),
        option::of(non_zero_u16()),
        option::of(topic_name()),
        option::of(bytes(24)),
        user_properties(),
        vec(subscription_id(), 0..4),
        option::of(mqtt_string()),
    )
        .prop_map(
            |(format, expiry, alias, response_topic, correlation, users, sub_ids, content_type)| {
                PublishProperties {
                    payload_format_indicator: format,
                    message_expiry_interval: expiry,
                    topic_alias: alias,
                    response_topic,
                    correlation_data: correlation,
                    user_properties: users,
                    subscription_identifiers: sub_ids,
                    content_type,
                }
            },
        )
}

pub fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (option::of(mqtt_string()), user_properties()).prop_map(|(reason_string, user_properties)| {
        AckProperties {
            reason_string,
            user_properties,
        }
    })
}

fn subscribe_properties() -> impl Strategy<Value = SubscribeProperties> {
    (option::of(subscription_id()), user_properties()).prop_map(
        |(subscription_identifier, user_properties)| SubscribeProperties {
            subscription_identifier,
            user_properties,
        },
    )
}

fn unsubscribe_properties() -> impl Strategy<Value = UnsubscribeProperties> {
    user_properties().prop_map(|user_properties| UnsubscribeProperties { user_properties })
}

fn disconnect_properties() -> impl Strategy<Value = DisconnectProperties> {
    (
        option::of(four_byte()),
        option::of(mqtt_string()),
        user_properties(),
        option::of(mqtt_string()),
    )
        .prop_map(
            |(session_expiry, reason_string, user_properties, server_reference)| {
                DisconnectProperties {
                    session_expiry_interval: session_expiry,
                    reason_string,
                    user_properties,
                    server_reference,
                }
            },
        )
}

/// AUTH properties with the Authentication Method that every AUTH but the short form must carry
/// ("It is a Protocol Error to omit the Authentication Method", §3.15.2.2.2).
fn auth_properties() -> impl Strategy<Value = AuthProperties> {
    (
        mqtt_string(),
        option::of(bytes(24)),
        option::of(mqtt_string()),
        user_properties(),
    )
        .prop_map(
            |(method, data, reason_string, user_properties)| AuthProperties {
                authentication_method: Some(method),
                authentication_data: data,
                reason_string,
                user_properties,
            },
        )
}

/// `props` in MQTT 5; the default (empty) set in 3.1/3.1.1, which carry no properties.
fn v5_only<T: Default + Clone + std::fmt::Debug + 'static>(
    version: ProtocolVersion,
    props: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    if version.is_v5() {
        props.boxed()
    } else {
        Just(T::default()).boxed()
    }
}

/// Any reason code of `all` in MQTT 5; only `v3` (what the 3.1/3.1.1 wire can say) otherwise.
fn reason<T: Copy + std::fmt::Debug + 'static>(
    version: ProtocolVersion,
    all: &'static [T],
    v3: impl Fn(&T) -> bool,
) -> BoxedStrategy<T> {
    if version.is_v5() {
        select(all).boxed()
    } else {
        select(all.iter().copied().filter(v3).collect::<Vec<_>>()).boxed()
    }
}

// ---------------------------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------------------------

fn last_will(version: ProtocolVersion) -> impl Strategy<Value = LastWill> {
    (
        topic_name(),
        payload(),
        qos(),
        any::<bool>(),
        v5_only(version, will_properties()),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| LastWill {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

pub fn connect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        any::<u16>(),
        mqtt_string(),
        option::of(last_will(version)),
        option::of(mqtt_string()),
        option::of(bytes(24)),
        v5_only(version, connect_properties()),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                // 3.1/3.1.1 have no password without a user name ([MQTT-3.1.2-22]); MQTT 5 does.
                let password = if version.is_v5() || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    protocol: version,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
}

pub fn connack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        reason(version, ConnectReasonCode::ALL, |r| r.is_v3_representable()),
        v5_only(version, connack_properties()),
    )
        .prop_map(|(session_present, reason, properties)| {
            Packet::ConnAck(Box::new(ConnAck {
                // A refusal never reports a session ([MQTT-3.2.2-6]): the encoder clears the flag
                // and the decoder refuses it, so only accepted connections may set it.
                session_present: session_present && !reason.is_error(),
                reason,
                properties,
            }))
        })
}

pub fn publish(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        packet_id(),
        // MQTT 5 may name the topic by Topic Alias alone, with an empty topic name.
        if version.is_v5() {
            option::weighted(0.8, topic_name()).boxed()
        } else {
            topic_name().prop_map(Some).boxed()
        },
        non_zero_u16(),
        payload(),
        v5_only(version, publish_properties()),
    )
        .prop_map(
            |(qos, dup, retain, id, topic, alias, payload, mut properties)| {
                let topic = topic.unwrap_or_else(|| {
                    properties.topic_alias.get_or_insert(alias);
                    TopicName::empty()
                });
                let at_most_once = qos == QoS::AtMostOnce;
                Packet::Publish(Publish {
                    // QoS 0 has no packet identifier and never the DUP flag ([MQTT-3.3.1-2]).
                    dup: dup && !at_most_once,
                    qos,
                    retain,
                    topic,
                    packet_id: (!at_most_once).then_some(id),
                    payload,
                    properties: properties.into(),
                })
            },
        )
}

fn pub_ack_reason(version: ProtocolVersion) -> BoxedStrategy<PubAckReasonCode> {
    reason(version, PubAckReasonCode::ALL, |r| {
        *r == PubAckReasonCode::Success
    })
}

fn pub_rel_reason(version: ProtocolVersion) -> BoxedStrategy<PubRelReasonCode> {
    reason(version, PubRelReasonCode::ALL, |r| {
        *r == PubRelReasonCode::Success
    })
}

pub fn pub_acks(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let props = || v5_only(version, ack_properties());
    prop_oneof![
        (packet_id(), pub_ack_reason(version), props()).prop_map(
            |(packet_id, reason, properties)| {
                Packet::PubAck(PubAck {
                    packet_id,
                    reason,
                    properties,
                })
            }
        ),
        (packet_id(), pub_ack_reason(version), props()).prop_map(
            |(packet_id, reason, properties)| {
                Packet::PubRec(PubRec {
                    packet_id,
                    reason,
                    properties,
                })
            }
        ),
        (packet_id(), pub_rel_reason(version), props()).prop_map(
            |(packet_id, reason, properties)| {
                Packet::PubRel(PubRel {
                    packet_id,
                    reason,
                    properties,
                })
            }
        ),
        (packet_id(), pub_rel_reason(version), props()).prop_map(
            |(packet_id, reason, properties)| {
                Packet::PubComp(PubComp {
                    packet_id,
                    reason,
                    properties,
                })
            }
        ),
    ]
}

fn subscription(version: ProtocolVersion) -> impl Strategy<Value = Subscription> {
    (
        topic_filter(),
        qos(),
        any::<bool>(),
        any::<bool>(),
        select(vec![
            RetainHandling::SendOnSubscribe,
            RetainHandling::SendIfNewSubscription,
            RetainHandling::DoNotSend,
        ]),
    )
        .prop_map(move |(filter, qos, no_local, rap, retain_handling)| {
            let options = if version.is_v5() {
                SubscriptionOptions {
                    qos,
                    // No Local on a shared subscription is a protocol error ([MQTT-3.8.3-4]).
                    no_local: no_local && !filter.is_shared(),
                    retain_as_published: rap,
                    retain_handling,
                }
            } else {
                // 3.1/3.1.1 options carry the QoS only.
                SubscriptionOptions::new(qos)
            };
            Subscription { filter, options }
        })
}

pub fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        vec(subscription(version), 1..5),
        v5_only(version, subscribe_properties()),
    )
        .prop_map(|(packet_id, subscriptions, properties)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                subscriptions,
                properties,
            })
        })
}

pub fn suback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        vec(
            reason(version, SubAckReasonCode::ALL, |r| r.is_v3_representable()),
            1..6,
        ),
        v5_only(version, ack_properties()),
    )
        .prop_map(|(packet_id, reason_codes, properties)| {
            Packet::SubAck(SubAck {
                packet_id,
                reason_codes,
                properties,
            })
        })
}

pub fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        vec(topic_filter(), 1..5),
        v5_only(version, unsubscribe_properties()),
    )
        .prop_map(|(packet_id, filters, properties)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties,
            })
        })
}

pub fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    // 3.1/3.1.1 UNSUBACK is a bare packet identifier: no reason codes, no properties.
    let reason_codes = if version.is_v5() {
        vec(select(UnsubAckReasonCode::ALL), 1..6).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (
        packet_id(),
        reason_codes,
        v5_only(version, ack_properties()),
    )
        .prop_map(|(packet_id, reason_codes, properties)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                reason_codes,
                properties,
            })
        })
}

pub fn disconnect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        reason(version, DisconnectReasonCode::ALL, |r| {
            *r == DisconnectReasonCode::NormalDisconnection
        }),
        v5_only(version, disconnect_properties()),
    )
        .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
}

/// AUTH exists in MQTT 5 only. It is either the short form (Success, no properties, a body of
/// zero bytes, §3.15.2.1) or carries an Authentication Method (§3.15.2.2.2).
pub fn auth() -> impl Strategy<Value = Packet> {
    prop_oneof![
        1 => Just(Packet::Auth(Box::new(Auth {
            reason: AuthReasonCode::Success,
            properties: AuthProperties::default(),
        }))),
        4 => (select(AuthReasonCode::ALL), auth_properties())
            .prop_map(|(reason, properties)| Packet::Auth(Box::new(Auth { reason, properties }))),
    ]
}

/// Every packet type `version` has, each about equally likely.
pub fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let mut packets = vec![
        connect(version).boxed(),
        connack(version).boxed(),
        publish(version).boxed(),
        pub_acks(version).boxed(),
        pub_acks(version).boxed(),
        pub_acks(version).boxed(),
        pub_acks(version).boxed(),
        subscribe(version).boxed(),
        suback(version).boxed(),
        unsubscribe(version).boxed(),
        unsuback(version).boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(version).boxed(),
    ];
    if version.is_v5() {
        packets.push(auth().boxed());
    }
    Union::new(packets).boxed()
}

/// A version together with a packet it can carry.
pub fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| (Just(v), packet(v)))
}

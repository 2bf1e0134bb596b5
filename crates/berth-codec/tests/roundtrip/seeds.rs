//! The seed corpus of the `decode` fuzz target (`fuzz/seeds/`): a few small, valid packets of
//! each version, so that libFuzzer starts inside every packet decoder instead of at the framing.
//! Each seed file is `{version}-{name}.bin` and holds one or more packets back to back.

use std::num::{NonZeroU16, NonZeroU32};

use berth_codec::{
    AckProperties, Auth, AuthProperties, AuthReasonCode, ConnAck, ConnAckProperties, Connect,
    ConnectProperties, ConnectReasonCode, Disconnect, DisconnectProperties, DisconnectReasonCode,
    LastWill, Packet, PayloadFormat, ProtocolVersion, PubAck, PubAckReasonCode, PubComp, PubRec,
    PubRel, Publish, PublishProperties, QoS, RetainHandling, SubAck, SubAckReasonCode, Subscribe,
    SubscribeProperties, Subscription, SubscriptionId, SubscriptionOptions, TopicName, UnsubAck,
    UnsubAckReasonCode, Unsubscribe, UnsubscribeProperties, UserProperty, WillProperties,
};
use bytes::Bytes;

use crate::support::spec::{filter, pid, s, topic};

pub struct Seed {
    pub file: String,
    pub version: ProtocolVersion,
    pub packets: Vec<Packet>,
}

fn users() -> Vec<UserProperty> {
    vec![
        UserProperty::new(s("k"), s("v")),
        UserProperty::new(s("k"), s("é€😀")),
    ]
}

fn version_tag(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V3_1 => "v3_1",
        ProtocolVersion::V3_1_1 => "v3_1_1",
        ProtocolVersion::V5 => "v5",
    }
}

fn connect(version: ProtocolVersion) -> Packet {
    let v5 = version.is_v5();
    Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        client_id: s("client-1"),
        will: Some(LastWill {
            topic: topic("dev/1/status"),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: if v5 {
                WillProperties {
                    will_delay_interval: Some(5),
                    payload_format_indicator: Some(PayloadFormat::Utf8),
                    message_expiry_interval: Some(3600),
                    content_type: Some(s("text/plain")),
                    response_topic: Some(topic("dev/1/reply")),
                    correlation_data: Some(Bytes::from_static(&[1, 2])),
                    user_properties: users(),
                }
            } else {
                WillProperties::default()
            },
        }),
        username: Some(s("user")),
        password: Some(Bytes::from_static(b"pw")),
        properties: if v5 {
            ConnectProperties {
                session_expiry_interval: Some(120),
                receive_maximum: NonZeroU16::new(20),
                maximum_packet_size: NonZeroU32::new(65_536),
                topic_alias_maximum: Some(10),
                request_response_information: Some(true),
                request_problem_information: Some(false),
                user_properties: users(),
                authentication_method: Some(s("SCRAM-SHA-1")),
                authentication_data: Some(Bytes::from_static(b"n,,")),
            }
        } else {
            ConnectProperties::default()
        },
    }))
}

fn publishes(version: ProtocolVersion) -> Vec<Packet> {
    let mut packets = vec![
        Packet::Publish(Publish::at_most_once(
            topic("a/b"),
            Bytes::from_static(b"hello"),
        )),
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: topic("$SYS/ü/x"),
            packet_id: Some(pid(0x1234)),
            payload: Bytes::from_static(&[0, 0xFF]),
            properties: if version.is_v5() {
                PublishProperties {
                    payload_format_indicator: Some(PayloadFormat::Unspecified),
                    message_expiry_interval: Some(10),
                    topic_alias: NonZeroU16::new(3),
                    response_topic: Some(topic("r")),
                    correlation_data: Some(Bytes::from_static(b"c")),
                    user_properties: users(),
                    subscription_identifiers: vec![
                        SubscriptionId::new(1).unwrap(),
                        SubscriptionId::new(SubscriptionId::MAX).unwrap(),
                    ],
                    content_type: Some(s("json")),
                }
                .into()
            } else {
                Default::default()
            },
        }),
    ];
    if version.is_v5() {
        // A topic named by its alias alone.
        packets.push(Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            packet_id: Some(pid(2)),
            properties: PublishProperties {
                topic_alias: NonZeroU16::new(3),
                ..PublishProperties::default()
            }
            .into(),
            ..Publish::at_most_once(TopicName::empty(), Bytes::from_static(b"x"))
        }));
    }
    packets
}

fn subscribe(version: ProtocolVersion) -> Packet {
    let v5 = version.is_v5();
    let options = |qos, no_local, retain_handling| {
        if v5 {
            SubscriptionOptions {
                qos,
                no_local,
                retain_as_published: true,
                retain_handling,
            }
        } else {
            SubscriptionOptions::new(qos)
        }
    };
    Packet::Subscribe(Subscribe {
        packet_id: pid(10),
        subscriptions: vec![
            Subscription {
                filter: filter("sport/+/player1/#"),
                options: options(QoS::ExactlyOnce, true, RetainHandling::DoNotSend),
            },
            Subscription {
                filter: filter("$share/g1/a/+"),
                options: options(
                    QoS::AtMostOnce,
                    false,
                    RetainHandling::SendIfNewSubscription,
                ),
            },
        ],
        properties: if v5 {
            SubscribeProperties {
                subscription_identifier: SubscriptionId::new(200),
                user_properties: users(),
            }
        } else {
            SubscribeProperties::default()
        },
    })
}

/// Every other packet type of `version`, back to back.
fn stream(version: ProtocolVersion) -> Vec<Packet> {
    let v5 = version.is_v5();
    let ack_props = || {
        if v5 {
            AckProperties {
                reason_string: Some(s("why")),
                user_properties: users(),
            }
        } else {
            AckProperties::default()
        }
    };
    let mut packets = vec![
        Packet::ConnAck(Box::new(ConnAck {
            session_present: true,
            reason: ConnectReasonCode::Success,
            properties: if v5 {
                ConnAckProperties {
                    session_expiry_interval: Some(0),
                    receive_maximum: NonZeroU16::new(100),
                    maximum_qos: Some(QoS::AtLeastOnce),
                    retain_available: Some(true),
                    maximum_packet_size: NonZeroU32::new(1024),
                    assigned_client_identifier: Some(s("auto-1")),
                    topic_alias_maximum: Some(5),
                    reason_string: Some(s("ok")),
                    user_properties: users(),
                    wildcard_subscription_available: Some(true),
                    subscription_identifiers_available: Some(false),
                    shared_subscription_available: Some(true),
                    server_keep_alive: Some(30),
                    response_information: Some(s("resp")),
                    server_reference: Some(s("other:1883")),
                    authentication_method: Some(s("m")),
                    authentication_data: Some(Bytes::from_static(b"d")),
                }
            } else {
                ConnAckProperties::default()
            },
        })),
        Packet::ConnAck(Box::new(ConnAck::refused(ConnectReasonCode::NotAuthorized))),
        Packet::PubAck(PubAck::new(pid(1))),
        Packet::PubRec(PubRec {
            reason: if v5 {
                PubAckReasonCode::NoMatchingSubscribers
            } else {
                PubAckReasonCode::Success
            },
            ..PubRec::new(pid(2))
        }),
        Packet::PubRel(PubRel {
            properties: ack_props(),
            ..PubRel::new(pid(3))
        }),
        Packet::PubComp(PubComp::new(pid(u16::MAX))),
        Packet::SubAck(SubAck {
            packet_id: pid(10),
            reason_codes: vec![
                SubAckReasonCode::GrantedQoS2,
                SubAckReasonCode::UnspecifiedError,
            ],
            properties: ack_props(),
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(11),
            filters: vec![filter("#"), filter("$share/g/+/x")],
            properties: if v5 {
                UnsubscribeProperties {
                    user_properties: users(),
                }
            } else {
                UnsubscribeProperties::default()
            },
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: pid(11),
            reason_codes: if v5 {
                vec![
                    UnsubAckReasonCode::Success,
                    UnsubAckReasonCode::NoSubscriptionExisted,
                ]
            } else {
                Vec::new()
            },
            properties: ack_props(),
        }),
        Packet::PingReq,
        Packet::PingResp,
    ];
    if v5 {
        packets.push(Packet::Auth(Box::new(Auth {
            reason: AuthReasonCode::ContinueAuthentication,
            properties: AuthProperties {
                authentication_method: Some(s("SCRAM-SHA-1")),
                authentication_data: Some(Bytes::from_static(b"r=x")),
                reason_string: None,
                user_properties: Vec::new(),
            },
        })));
        packets.push(Packet::Disconnect(Disconnect {
            reason: DisconnectReasonCode::DisconnectWithWillMessage,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                reason_string: Some(s("bye")),
                user_properties: users(),
                server_reference: None,
            },
        }));
    } else {
        packets.push(Packet::Disconnect(Disconnect::new(
            DisconnectReasonCode::NormalDisconnection,
        )));
    }
    packets
}

pub fn seeds() -> Vec<Seed> {
    let mut seeds = Vec::new();
    for version in ProtocolVersion::ALL {
        let tag = version_tag(version);
        let mut add = |name: &str, packets: Vec<Packet>| {
            seeds.push(Seed {
                file: format!("{tag}-{name}.bin"),
                version,
                packets,
            });
        };
        add("connect", vec![connect(version)]);
        add("publish", publishes(version));
        add("subscribe", vec![subscribe(version)]);
        add("stream", stream(version));
    }
    seeds
}

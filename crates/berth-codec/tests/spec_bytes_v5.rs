//! Byte tables for MQTT 5.0 (level 5), written by hand from the specification's field layouts
//! and non-normative examples. Every entry is checked both ways: the bytes decode to exactly the
//! typed packet and the packet encodes to exactly the bytes. Properties are listed in the order
//! the encoder writes them (the spec allows any order; the decoder accepts any order).
//!
//! Strings are written as `b"\x00\x06client"`: the two-byte length, then the UTF-8 bytes; a
//! string property as `b"\x12\x00\x04auto"`: identifier, length, bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::num::{NonZeroU16, NonZeroU32};

use berth_codec::{
    AckProperties, ConnAck, ConnAckProperties, Connect, ConnectProperties, ConnectReasonCode,
    LastWill, Packet, PayloadFormat, ProtocolVersion, PubAck, PubAckReasonCode, PubComp, PubRec,
    PubRel, PubRelReasonCode, Publish, PublishProperties, QoS, SubscriptionId, TopicName,
    WillProperties, encode,
};
use bytes::{Bytes, BytesMut};

use ProtocolVersion::{V3_1_1, V5};
use support::spec::{assert_wire, decode_packet, pid, publish, s, topic, user, wire};

// ---------------------------------------------------------------------------------------------
// CONNECT
// ---------------------------------------------------------------------------------------------

/// §3.1.2.12 variable header example: level 5, flags 0xCE, keep alive 10, properties
/// 0x05 0x11 0x00 0x00 0x00 0x0A (Session Expiry Interval 10), with the payload the flags call for.
#[test]
fn connect_spec_example() {
    let bytes = wire(&[
        &[0x10, 0x32],                         // CONNECT, remaining length 50
        &[0x00, 0x04, b'M', b'Q', b'T', b'T'], // protocol name "MQTT"
        &[0x05],                               // protocol version 5
        &[0xCE], // user name 1, password 1, will retain 0, will QoS 01, will 1, clean start 1
        &[0x00, 0x0A], // keep alive 10 s
        &[0x05], // property length 5
        &[0x11, 0x00, 0x00, 0x00, 0x0A], // Session Expiry Interval 10
        b"\x00\x06client", // client identifier
        &[0x00], // will property length 0
        b"\x00\x06will/t", // will topic
        b"\x00\x03bye", // will payload
        b"\x00\x04user", // user name
        b"\x00\x04pass", // password
    ]);
    let packet = Packet::Connect(Box::new(Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 10,
        client_id: s("client"),
        will: Some(LastWill {
            topic: topic("will/t"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WillProperties::default(),
        }),
        username: Some(s("user")),
        password: Some(Bytes::from_static(b"pass")),
        properties: ConnectProperties {
            session_expiry_interval: Some(10),
            ..Default::default()
        },
    }));
    assert_wire(V5, &bytes, &packet);
}

#[test]
fn connect_every_property_and_will_property() {
    let bytes = wire(&[
        &[0x10, 0x7B],                         // CONNECT, remaining length 123
        &[0x00, 0x04, b'M', b'Q', b'T', b'T'], // protocol name
        &[0x05],                               // version 5
        &[0xB4], // user name 1, password 0, will retain 1, will QoS 2, will 1, clean start 0
        &[0x00, 0x3C], // keep alive 60 s
        &[0x31], // property length 49
        &[0x11, 0x00, 0x00, 0x0E, 0x10], // Session Expiry Interval 3600
        &[0x21, 0x00, 0x14], // Receive Maximum 20
        &[0x27, 0x00, 0x00, 0x10, 0x00], // Maximum Packet Size 4096
        &[0x22, 0x00, 0x0A], // Topic Alias Maximum 10
        &[0x19, 0x01], // Request Response Information 1
        &[0x17, 0x00], // Request Problem Information 0
        b"\x26\x00\x01k\x00\x01v", // User Property k=v
        b"\x26\x00\x01k\x00\x02v2", // User Property k=v2 (same key again)
        b"\x15\x00\x05SCRAM", // Authentication Method "SCRAM"
        &[0x16, 0x00, 0x03, 0x01, 0x02, 0x03], // Authentication Data 01 02 03
        b"\x00\x02id", // client identifier
        &[0x27], // will property length 39
        &[0x18, 0x00, 0x00, 0x00, 0x05], // Will Delay Interval 5
        &[0x01, 0x01], // Payload Format Indicator: UTF-8
        &[0x02, 0x00, 0x00, 0x00, 0x3C], // Message Expiry Interval 60
        b"\x03\x00\x04text", // Content Type "text"
        b"\x08\x00\x05reply", // Response Topic "reply"
        &[0x09, 0x00, 0x02, 0xAB, 0xCD], // Correlation Data AB CD
        b"\x26\x00\x01a\x00\x01b", // User Property a=b
        b"\x00\x06will/t", // will topic
        b"\x00\x03bye", // will payload
        b"\x00\x04user", // user name; no password
    ]);
    let packet = Packet::Connect(Box::new(Connect {
        protocol: V5,
        clean_start: false,
        keep_alive: 60,
        client_id: s("id"),
        will: Some(LastWill {
            topic: topic("will/t"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(5),
                payload_format_indicator: Some(PayloadFormat::Utf8),
                message_expiry_interval: Some(60),
                content_type: Some(s("text")),
                response_topic: Some(topic("reply")),
                correlation_data: Some(Bytes::from_static(&[0xAB, 0xCD])),
                user_properties: vec![user("a", "b")],
            },
        }),
        username: Some(s("user")),
        password: None,
        properties: ConnectProperties {
            session_expiry_interval: Some(3600),
            receive_maximum: NonZeroU16::new(20),
            maximum_packet_size: NonZeroU32::new(4096),
            topic_alias_maximum: Some(10),
            request_response_information: Some(true),
            request_problem_information: Some(false),
            user_properties: vec![user("k", "v"), user("k", "v2")],
            authentication_method: Some(s("SCRAM")),
            authentication_data: Some(Bytes::from_static(&[1, 2, 3])),
        },
    }));
    assert_wire(V5, &bytes, &packet);
}

#[test]
fn connect_password_without_user_name_is_allowed_in_v5() {
    // §3.1.2.9: MQTT 5 allows a password without a user name (3.1.1 does not).
    let bytes = wire(&[
        &[0x10, 0x11],                         // CONNECT, remaining length 17
        &[0x00, 0x04, b'M', b'Q', b'T', b'T'], // protocol name
        &[0x05],                               // version 5
        &[0x42],                               // password 1, clean start 1
        &[0x00, 0x00],                         // keep alive 0
        &[0x00],                               // property length 0
        &[0x00, 0x00],                         // client identifier "" (server assigns one)
        &[0x00, 0x02, 0xFF, 0x00],             // password: arbitrary binary
    ]);
    let packet = Packet::Connect(Box::new(Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 0,
        client_id: s(""),
        will: None,
        username: None,
        password: Some(Bytes::from_static(&[0xFF, 0x00])),
        properties: ConnectProperties::default(),
    }));
    assert_wire(V5, &bytes, &packet);
}

// ---------------------------------------------------------------------------------------------
// CONNACK
// ---------------------------------------------------------------------------------------------

#[test]
fn connack_minimal_and_session_present() {
    // Acknowledge flags, reason code, property length 0.
    let accepted = |present| Packet::ConnAck(Box::new(ConnAck::accepted(present)));
    assert_wire(V5, &[0x20, 0x03, 0x00, 0x00, 0x00], &accepted(false));
    assert_wire(V5, &[0x20, 0x03, 0x01, 0x00, 0x00], &accepted(true));
}

#[test]
fn connack_every_reason_code() {
    for &reason in ConnectReasonCode::ALL {
        let bytes = [0x20, 0x03, 0x00, reason.code(), 0x00];
        let packet = match reason {
            ConnectReasonCode::Success => ConnAck::accepted(false),
            refusal => ConnAck::refused(refusal),
        };
        assert_wire(V5, &bytes, &Packet::ConnAck(Box::new(packet)));
    }
}

#[test]
fn connack_server_capabilities() {
    let bytes = wire(&[
        &[0x20, 0x3A],                   // CONNACK, remaining length 58
        &[0x00],                         // session present 0
        &[0x00],                         // reason code Success
        &[0x37],                         // property length 55
        &[0x11, 0x00, 0x00, 0x00, 0x78], // Session Expiry Interval 120
        &[0x21, 0x00, 0x0A],             // Receive Maximum 10
        &[0x24, 0x01],                   // Maximum QoS 1
        &[0x25, 0x00],                   // Retain Available 0
        &[0x27, 0x00, 0x01, 0x00, 0x00], // Maximum Packet Size 65536
        b"\x12\x00\x04auto",             // Assigned Client Identifier "auto"
        &[0x22, 0x00, 0x05],             // Topic Alias Maximum 5
        b"\x1F\x00\x02ok",               // Reason String "ok"
        b"\x26\x00\x01k\x00\x01v",       // User Property k=v
        &[0x28, 0x01],                   // Wildcard Subscription Available 1
        &[0x29, 0x00],                   // Subscription Identifiers Available 0
        &[0x2A, 0x01],                   // Shared Subscription Available 1
        &[0x13, 0x00, 0x1E],             // Server Keep Alive 30
        b"\x1A\x00\x04resp",             // Response Information "resp"
    ]);
    let packet = ConnAck {
        properties: ConnAckProperties {
            session_expiry_interval: Some(120),
            receive_maximum: NonZeroU16::new(10),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(false),
            maximum_packet_size: NonZeroU32::new(65536),
            assigned_client_identifier: Some(s("auto")),
            topic_alias_maximum: Some(5),
            reason_string: Some(s("ok")),
            user_properties: vec![user("k", "v")],
            wildcard_subscription_available: Some(true),
            subscription_identifiers_available: Some(false),
            shared_subscription_available: Some(true),
            server_keep_alive: Some(30),
            response_information: Some(s("resp")),
            ..Default::default()
        },
        ..ConnAck::accepted(false)
    };
    assert_wire(V5, &bytes, &Packet::ConnAck(Box::new(packet)));
}

#[test]
fn connack_refusal_with_server_reference_and_auth_continuation() {
    let bytes = wire(&[
        &[0x20, 0x0B],        // CONNACK, remaining length 11
        &[0x00, 0x9C],        // no session, Use another server
        &[0x08],              // property length 8
        b"\x1C\x00\x05other", // Server Reference "other"
    ]);
    let packet = ConnAck {
        properties: ConnAckProperties {
            server_reference: Some(s("other")),
            ..Default::default()
        },
        ..ConnAck::refused(ConnectReasonCode::UseAnotherServer)
    };
    assert_wire(V5, &bytes, &Packet::ConnAck(Box::new(packet)));

    let bytes = wire(&[
        &[0x20, 0x10],                   // CONNACK, remaining length 16
        &[0x00, 0x00],                   // no session, Success
        &[0x0D],                         // property length 13
        b"\x15\x00\x05SCRAM",            // Authentication Method
        &[0x16, 0x00, 0x02, 0x01, 0x02], // Authentication Data
    ]);
    let packet = ConnAck {
        properties: ConnAckProperties {
            authentication_method: Some(s("SCRAM")),
            authentication_data: Some(Bytes::from_static(&[1, 2])),
            ..Default::default()
        },
        ..ConnAck::accepted(false)
    };
    assert_wire(V5, &bytes, &Packet::ConnAck(Box::new(packet)));
}

// ---------------------------------------------------------------------------------------------
// PUBLISH
// ---------------------------------------------------------------------------------------------

#[test]
fn publish_qos0_and_spec_example_qos1() {
    let bytes = wire(&[
        &[0x30, 0x08],  // PUBLISH QoS 0, remaining length 8
        b"\x00\x03a/b", // topic name
        &[0x00],        // property length 0
        b"hi",          // payload
    ]);
    assert_wire(
        V5,
        &bytes,
        &Packet::Publish(publish(QoS::AtMostOnce, None, topic("a/b"), b"hi")),
    );

    // §3.3.2.3 example: topic "a/b", packet identifier 10, no properties.
    let bytes = wire(&[
        &[0x32, 0x0A],  // PUBLISH QoS 1, remaining length 10
        b"\x00\x03a/b", // topic name
        &[0x00, 0x0A],  // packet identifier 10
        &[0x00],        // property length 0
        b"hi",          // payload
    ]);
    let packet = publish(QoS::AtLeastOnce, Some(10), topic("a/b"), b"hi");
    assert_wire(V5, &bytes, &Packet::Publish(packet));
}

#[test]
fn publish_topic_alias_with_and_without_topic_name() {
    let alias = |name: TopicName| {
        Packet::Publish(Publish {
            properties: PublishProperties {
                topic_alias: NonZeroU16::new(5),
                ..Default::default()
            }
            .into(),
            ..publish(QoS::AtMostOnce, None, name, b"x")
        })
    };
    // Establishing the alias: topic name and Topic Alias.
    let bytes = wire(&[
        &[0x30, 0x0A],       // PUBLISH QoS 0, remaining length 10
        b"\x00\x03a/b",      // topic name
        &[0x03],             // property length 3
        &[0x23, 0x00, 0x05], // Topic Alias 5
        b"x",                // payload
    ]);
    assert_wire(V5, &bytes, &alias(topic("a/b")));
    // Using it: zero-length topic name (§3.3.2.3.4).
    let bytes = wire(&[
        &[0x30, 0x07],       // PUBLISH QoS 0, remaining length 7
        &[0x00, 0x00],       // topic name ""
        &[0x03],             // property length 3
        &[0x23, 0x00, 0x05], // Topic Alias 5
        b"x",                // payload
    ]);
    assert_wire(V5, &bytes, &alias(TopicName::empty()));
}

#[test]
fn publish_qos2_retain_with_every_publish_property() {
    let bytes = wire(&[
        &[0x35, 0x4C],                   // PUBLISH, DUP 0, QoS 2, RETAIN 1, length 76
        b"\x00\x03t/1",                  // topic name "t/1"
        &[0x12, 0x34],                   // packet identifier 0x1234
        &[0x3C],                         // property length 60
        &[0x01, 0x01],                   // Payload Format Indicator: UTF-8
        &[0x02, 0x00, 0x00, 0x01, 0x2C], // Message Expiry Interval 300
        b"\x08\x00\x07reply/1",          // Response Topic "reply/1"
        &[0x09, 0x00, 0x04, 0xDE, 0xAD, 0xBE, 0xEF], // Correlation Data
        b"\x26\x00\x01k\x00\x01v",       // User Property k=v
        &[0x0B, 0x01],                   // Subscription Identifier 1
        &[0x0B, 0x80, 0x01],             // Subscription Identifier 128
        &[0x0B, 0xFF, 0xFF, 0xFF, 0x7F], // Subscription Identifier 268,435,455
        b"\x03\x00\x10application/json", // Content Type
        br#"{"t":21}"#,                  // payload
    ]);
    let packet = Publish {
        retain: true,
        properties: PublishProperties {
            payload_format_indicator: Some(PayloadFormat::Utf8),
            message_expiry_interval: Some(300),
            topic_alias: None,
            response_topic: Some(topic("reply/1")),
            correlation_data: Some(Bytes::from_static(&[0xDE, 0xAD, 0xBE, 0xEF])),
            user_properties: vec![user("k", "v")],
            subscription_identifiers: [1, 128, 268_435_455]
                .map(|id| SubscriptionId::new(id).unwrap())
                .to_vec(),
            content_type: Some(s("application/json")),
        }
        .into(),
        ..publish(QoS::ExactlyOnce, Some(0x1234), topic("t/1"), br#"{"t":21}"#)
    };
    assert_wire(V5, &bytes, &Packet::Publish(packet.clone()));

    // The same message sent to a 3.1.1 subscriber loses its properties (PUBLISH 3.1.1 §3.3).
    let v311 = wire(&[
        &[0x35, 0x0F],  // PUBLISH, QoS 2, RETAIN 1, remaining length 15
        b"\x00\x03t/1", // topic name
        &[0x12, 0x34],  // packet identifier
        br#"{"t":21}"#, // payload
    ]);
    let mut out = BytesMut::new();
    encode(&Packet::Publish(packet), V3_1_1, &mut out).unwrap();
    assert_eq!(&out[..], &v311[..]);
}

// ---------------------------------------------------------------------------------------------
// PUBACK, PUBREC, PUBREL, PUBCOMP
// ---------------------------------------------------------------------------------------------

#[test]
fn puback_short_forms_and_reason_string() {
    // §3.4.2.1: reason code and properties omitted when Success and empty (remaining length 2).
    assert_wire(
        V5,
        &[0x40, 0x02, 0x00, 0x0A],
        &Packet::PubAck(PubAck::new(pid(10))),
    );
    // Reason code only, no property length (remaining length 3).
    let no_subscribers = PubAck {
        reason: PubAckReasonCode::NoMatchingSubscribers,
        ..PubAck::new(pid(10))
    };
    assert_wire(
        V5,
        &[0x40, 0x03, 0x00, 0x0A, 0x10],
        &Packet::PubAck(no_subscribers),
    );
    // Reason code and properties.
    let bytes = wire(&[
        &[0x40, 0x0D],         // PUBACK, remaining length 13
        &[0x00, 0x0A],         // packet identifier 10
        &[0x87],               // Not authorized
        &[0x09],               // property length 9
        b"\x1F\x00\x06denied", // Reason String "denied"
    ]);
    let denied = PubAck {
        reason: PubAckReasonCode::NotAuthorized,
        properties: AckProperties {
            reason_string: Some(s("denied")),
            user_properties: Vec::new(),
        },
        ..PubAck::new(pid(10))
    };
    assert_wire(V5, &bytes, &Packet::PubAck(denied));
    // Success with a user property keeps the reason code byte.
    let bytes = wire(&[
        &[0x40, 0x0B],             // PUBACK, remaining length 11
        &[0x00, 0x0A, 0x00, 0x07], // packet identifier 10, Success, property length 7
        b"\x26\x00\x01k\x00\x01v", // User Property
    ]);
    let with_user = PubAck {
        properties: AckProperties {
            reason_string: None,
            user_properties: vec![user("k", "v")],
        },
        ..PubAck::new(pid(10))
    };
    assert_wire(V5, &bytes, &Packet::PubAck(with_user));
}

#[test]
fn puback_long_form_of_success_decodes_like_the_short_form() {
    // Remaining length 4: reason Success and property length 0 spelled out.
    let packet = decode_packet(V5, &[0x40, 0x04, 0x00, 0x0A, 0x00, 0x00]);
    assert_eq!(packet, Packet::PubAck(PubAck::new(pid(10))));
    // Reason code only with Success (remaining length 3).
    assert_eq!(decode_packet(V5, &[0x40, 0x03, 0x00, 0x0A, 0x00]), packet);
}

#[test]
fn puback_and_pubrec_every_reason_code() {
    for &reason in PubAckReasonCode::ALL.iter().skip(1) {
        let puback = PubAck {
            reason,
            ..PubAck::new(pid(1))
        };
        assert_wire(
            V5,
            &wire(&[&[0x40, 0x03, 0x00, 0x01], &[reason.code()]]),
            &Packet::PubAck(puback),
        );
        let pubrec = PubRec {
            reason,
            ..PubRec::new(pid(1))
        };
        assert_wire(
            V5,
            &wire(&[&[0x50, 0x03, 0x00, 0x01], &[reason.code()]]),
            &Packet::PubRec(pubrec),
        );
    }
}

#[test]
fn pubrec_pubrel_pubcomp() {
    assert_wire(
        V5,
        &[0x50, 0x02, 0x00, 0x0B],
        &Packet::PubRec(PubRec::new(pid(11))),
    );
    let quota = PubRec {
        reason: PubAckReasonCode::QuotaExceeded,
        ..PubRec::new(pid(11))
    };
    assert_wire(V5, &[0x50, 0x03, 0x00, 0x0B, 0x97], &Packet::PubRec(quota));

    assert_wire(
        V5,
        &[0x62, 0x02, 0x00, 0x0B],
        &Packet::PubRel(PubRel::new(pid(11))),
    );
    let not_found = PubRel {
        reason: PubRelReasonCode::PacketIdentifierNotFound,
        ..PubRel::new(pid(11))
    };
    assert_wire(
        V5,
        &[0x62, 0x03, 0x00, 0x0B, 0x92],
        &Packet::PubRel(not_found.clone()),
    );
    let bytes = wire(&[
        &[0x62, 0x10],            // PUBREL (flags 0b0010), remaining length 16
        &[0x00, 0x0B],            // packet identifier 11
        &[0x92],                  // Packet Identifier not found
        &[0x0C],                  // property length 12
        b"\x1F\x00\x09not found", // Reason String
    ]);
    let explained = PubRel {
        properties: AckProperties {
            reason_string: Some(s("not found")),
            user_properties: Vec::new(),
        },
        ..not_found
    };
    assert_wire(V5, &bytes, &Packet::PubRel(explained));

    assert_wire(
        V5,
        &[0x70, 0x02, 0x00, 0x0B],
        &Packet::PubComp(PubComp::new(pid(11))),
    );
    let comp_not_found = PubComp {
        reason: PubRelReasonCode::PacketIdentifierNotFound,
        ..PubComp::new(pid(11))
    };
    assert_wire(
        V5,
        &[0x70, 0x03, 0x00, 0x0B, 0x92],
        &Packet::PubComp(comp_not_found),
    );
}

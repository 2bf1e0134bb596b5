//! One test per malformed or protocol-violating CONNECT, SUBSCRIBE/UNSUBSCRIBE payload, CONNACK
//! and SUBACK that the MQTT 3.1, 3.1.1 and 5.0 specifications define (framing, strings, topics
//! and packet identifiers are in `malformed.rs`). Each asserts the exact `DecodeError`, its
//! `kind()` and the reason code a server answers with (`disconnect_reason()`, or
//! `connack_reason()` for a CONNECT).
//!
//! The file ends with the packets `encode` refuses. MQTT 5 properties and reason codes are in
//! `malformed_v5.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use berth_codec::{
    Auth, AuthProperties, AuthReasonCode, Connect, DecodeError, DecodeOptions, EncodeError,
    ErrorKind, LastWill, MqttString, Packet, PacketId, PacketType, ProtocolVersion, Publish,
    PublishProperties, QoS, SubAck, Subscribe, TopicName, decode, encode, encoded_len,
};
use bytes::{Bytes, BytesMut};

use ProtocolVersion::{V3_1, V3_1_1, V5};
use support::frame;
use support::malformed::{
    ALL, connect_refused, connect_v311, decode_err, malformed, protocol_error, subscribe_options,
};

// ---------------------------------------------------------------------------------------------
// CONNECT (3.1.1 §3.1.2, 5.0 §3.1.2)
// ---------------------------------------------------------------------------------------------

#[test]
fn connect_bad_protocol_name() {
    for name in [
        &b"\x00\x04MQTX"[..],
        b"\x00\x04mqtt",
        b"\x00\x00",
        b"\x00\x06MQIsdP",
    ] {
        let bytes = frame(0x10, &[name, &[0x04, 0x02, 0x00, 0x3C], b"\x00\x01c"]);
        connect_refused(
            &bytes,
            DecodeError::InvalidProtocolName,
            ErrorKind::Malformed,
            0x81,
        );
    }
}

#[test]
fn connect_unsupported_protocol_level() {
    for level in [0, 1, 2, 6, 0x84, 0xFF] {
        let bytes = frame(
            0x10,
            &[b"\x00\x04MQTT", &[level, 0x02, 0x00, 0x3C], b"\x00\x01c"],
        );
        let expected = DecodeError::UnsupportedProtocolLevel { level };
        connect_refused(
            &bytes,
            expected.clone(),
            ErrorKind::UnsupportedProtocolVersion,
            0x84,
        );
        let err = decode_err(V3_1_1, &bytes, DecodeOptions::new(V3_1_1));
        // 3.1.1 answers with CONNACK return code 0x01.
        assert_eq!(err.connack_reason().v3_return_code(), 0x01);
    }
}

#[test]
fn connect_protocol_name_and_level_mismatch() {
    let mqtt_3 = frame(
        0x10,
        &[b"\x00\x04MQTT", &[0x03, 0x02, 0x00, 0x3C], b"\x00\x01c"],
    );
    let expected = DecodeError::ProtocolNameLevelMismatch {
        name: "MQTT",
        level: 3,
    };
    connect_refused(
        &mqtt_3,
        expected,
        ErrorKind::UnsupportedProtocolVersion,
        0x84,
    );
    for level in [4, 5] {
        let mqisdp = frame(
            0x10,
            &[b"\x00\x06MQIsdp", &[level, 0x02, 0x00, 0x3C], b"\x00\x01c"],
        );
        let expected = DecodeError::ProtocolNameLevelMismatch {
            name: "MQIsdp",
            level,
        };
        connect_refused(
            &mqisdp,
            expected,
            ErrorKind::UnsupportedProtocolVersion,
            0x84,
        );
    }
}

#[test]
fn connect_reserved_flag_set() {
    // [MQTT-3.1.2-3]: bit 0 of the connect flags is reserved and must be 0.
    let bytes = connect_v311(0x03, &[b"\x00\x01c"]);
    connect_refused(
        &bytes,
        DecodeError::ConnectReservedFlag,
        ErrorKind::Malformed,
        0x81,
    );
    let v5 = frame(
        0x10,
        &[b"\x00\x04MQTT\x05", &[0x01, 0x00, 0x3C, 0x00], b"\x00\x01c"],
    );
    connect_refused(
        &v5,
        DecodeError::ConnectReservedFlag,
        ErrorKind::Malformed,
        0x81,
    );
}

#[test]
fn connect_will_qos_3() {
    // Will flag with both will QoS bits set ([MQTT-3.1.2-14]).
    let bytes = connect_v311(0x1E, &[b"\x00\x01c", b"\x00\x01w", b"\x00\x01m"]);
    connect_refused(
        &bytes,
        DecodeError::InvalidWillQoS,
        ErrorKind::Malformed,
        0x81,
    );
}

#[test]
fn connect_will_qos_or_retain_without_will_flag() {
    // [MQTT-3.1.2-11], [MQTT-3.1.2-13]: will QoS 1, will QoS 2, will retain, without will flag.
    for flags in [0x0A, 0x12, 0x22] {
        let bytes = connect_v311(flags, &[b"\x00\x01c"]);
        connect_refused(
            &bytes,
            DecodeError::WillFlagsWithoutWill,
            ErrorKind::Malformed,
            0x81,
        );
    }
}

#[test]
fn v311_connect_password_without_user_name() {
    // [MQTT-3.1.2-22]: if the user name flag is 0 the password flag must be 0.
    let bytes = connect_v311(0x42, &[b"\x00\x01c", b"\x00\x02pw"]);
    connect_refused(
        &bytes,
        DecodeError::PasswordWithoutUsername,
        ErrorKind::Malformed,
        0x81,
    );
}

#[test]
fn v5_connect_password_without_user_name_is_accepted() {
    // MQTT 5 §3.1.2.9 dropped that rule.
    let bytes = frame(
        0x10,
        &[
            b"\x00\x04MQTT\x05",
            &[0x42, 0x00, 0x3C, 0x00],
            b"\x00\x01c\x00\x02pw",
        ],
    );
    let mut buf = BytesMut::from(&bytes[..]);
    let Some(Packet::Connect(connect)) = decode(&mut buf, &DecodeOptions::new(V5)).unwrap() else {
        panic!("expected CONNECT");
    };
    assert_eq!(connect.username, None);
    assert_eq!(connect.password.as_deref(), Some(&b"pw"[..]));
}

// ---------------------------------------------------------------------------------------------
// SUBSCRIBE and UNSUBSCRIBE payloads
// ---------------------------------------------------------------------------------------------

#[test]
fn subscribe_without_topic_filters() {
    // [MQTT-3.8.3-3]: at least one topic filter / options pair.
    let expected = DecodeError::NoTopicFilters {
        packet: PacketType::Subscribe,
    };
    protocol_error(V3_1_1, &[0x82, 0x02, 0x00, 0x01], expected.clone());
    protocol_error(V5, &[0x82, 0x03, 0x00, 0x01, 0x00], expected);
}

#[test]
fn unsubscribe_without_topic_filters() {
    // [MQTT-3.10.3-2]
    let expected = DecodeError::NoTopicFilters {
        packet: PacketType::Unsubscribe,
    };
    protocol_error(V3_1_1, &[0xA2, 0x02, 0x00, 0x01], expected.clone());
    protocol_error(V5, &[0xA2, 0x03, 0x00, 0x01, 0x00], expected);
}

#[test]
fn v311_subscription_options_upper_six_bits_reserved() {
    // [MQTT-3.8.3-4]: the upper 6 bits of the requested QoS byte are reserved.
    for version in [V3_1, V3_1_1] {
        for options in [0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFD] {
            let expected = DecodeError::InvalidSubscriptionOptions { options };
            malformed(
                version,
                &subscribe_options(version, b"a/b", options),
                expected,
            );
        }
    }
}

#[test]
fn v5_subscription_options_bits_6_and_7_reserved() {
    for options in [0x40, 0x80, 0xC1] {
        let expected = DecodeError::InvalidSubscriptionOptions { options };
        malformed(V5, &subscribe_options(V5, b"a/b", options), expected);
    }
}

#[test]
fn subscription_options_qos_3() {
    for version in ALL {
        let expected = DecodeError::InvalidQoS {
            packet: PacketType::Subscribe,
        };
        malformed(version, &subscribe_options(version, b"a/b", 0x03), expected);
    }
}

#[test]
fn v5_subscription_retain_handling_3() {
    // §3.8.3.1: a Retain Handling value of 3 is a Protocol Error.
    let bytes = subscribe_options(V5, b"a/b", 0x31);
    protocol_error(V5, &bytes, DecodeError::InvalidRetainHandling);
}

#[test]
fn v5_no_local_on_shared_subscription() {
    // [MQTT-3.8.3-4]: No Local on a shared subscription is a Protocol Error.
    let bytes = subscribe_options(V5, b"$share/g/a/b", 0x05);
    let expected = DecodeError::NoLocalOnSharedSubscription {
        filter: "$share/g/a/b".to_owned(),
    };
    protocol_error(V5, &bytes, expected);
}

// ---------------------------------------------------------------------------------------------
// CONNACK acknowledge flags and 3.1.1 return codes, SUBACK return codes
// ---------------------------------------------------------------------------------------------

#[test]
fn connack_reserved_acknowledge_flag_bits() {
    // [MQTT-3.2.2-1]: bits 7-1 of the acknowledge flags are reserved.
    for flags in [0x02, 0x80, 0xFF] {
        let expected = DecodeError::InvalidConnAckFlags { flags };
        malformed(V3_1_1, &[0x20, 0x02, flags, 0x00], expected.clone());
        malformed(V5, &[0x20, 0x03, flags, 0x00, 0x00], expected);
    }
}

#[test]
fn connack_session_present_with_a_refusal() {
    // [MQTT-3.2.2-4] / 5.0 [MQTT-3.2.2-6]: a refusal has Session Present 0.
    protocol_error(
        V3_1_1,
        &[0x20, 0x02, 0x01, 0x05],
        DecodeError::SessionPresentOnRefusal,
    );
    protocol_error(
        V5,
        &[0x20, 0x03, 0x01, 0x87, 0x00],
        DecodeError::SessionPresentOnRefusal,
    );
}

#[test]
fn v311_connack_return_code_6() {
    for code in [0x06, 0x80, 0x87] {
        let expected = DecodeError::InvalidReasonCode {
            packet: PacketType::ConnAck,
            code,
        };
        malformed(V3_1_1, &[0x20, 0x02, 0x00, code], expected);
    }
}

#[test]
fn v311_suback_return_codes_outside_0_1_2_0x80() {
    // 3.1.1 §3.9.3: 0x00, 0x01, 0x02 and 0x80 only; 0x87 exists in MQTT 5 only.
    for code in [0x03, 0x81, 0x87, 0xA2] {
        let expected = DecodeError::InvalidReasonCode {
            packet: PacketType::SubAck,
            code,
        };
        malformed(V3_1_1, &[0x90, 0x03, 0x00, 0x0A, code], expected);
    }
}

// ---------------------------------------------------------------------------------------------
// Packets `encode` refuses (nothing is written, and `encoded_len` agrees)
// ---------------------------------------------------------------------------------------------

#[track_caller]
fn encode_err(packet: &Packet, version: ProtocolVersion) -> EncodeError {
    let mut out = BytesMut::new();
    let err = encode(packet, version, &mut out).expect_err("encode should refuse");
    assert!(
        out.is_empty(),
        "{version}: encode wrote {} bytes",
        out.len()
    );
    assert_eq!(encoded_len(packet, version), Err(err.clone()));
    err
}

fn publish(qos: QoS, packet_id: Option<u16>) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: TopicName::parse("a/b").unwrap(),
        packet_id: packet_id.and_then(PacketId::new),
        payload: Bytes::from_static(b"x"),
        properties: Default::default(),
    }
}

#[test]
fn encode_publish_qos1_without_packet_id() {
    for version in ALL {
        let expected = EncodeError::PacketIdMismatch {
            qos: 1,
            has_packet_id: false,
        };
        let packet = Packet::Publish(publish(QoS::AtLeastOnce, None));
        assert_eq!(encode_err(&packet, version), expected);
        let expected = EncodeError::PacketIdMismatch {
            qos: 2,
            has_packet_id: false,
        };
        let packet = Packet::Publish(publish(QoS::ExactlyOnce, None));
        assert_eq!(encode_err(&packet, version), expected);
    }
}

#[test]
fn encode_publish_qos0_with_packet_id_or_dup() {
    for version in ALL {
        let packet = Packet::Publish(publish(QoS::AtMostOnce, Some(1)));
        let expected = EncodeError::PacketIdMismatch {
            qos: 0,
            has_packet_id: true,
        };
        assert_eq!(encode_err(&packet, version), expected);
        let dup = Packet::Publish(Publish {
            dup: true,
            ..publish(QoS::AtMostOnce, None)
        });
        let expected = EncodeError::PacketIdMismatch {
            qos: 0,
            has_packet_id: false,
        };
        assert_eq!(encode_err(&dup, version), expected);
    }
}

#[test]
fn encode_auth_before_v5() {
    let packet = Packet::Auth(Box::new(Auth {
        reason: AuthReasonCode::Success,
        properties: AuthProperties::default(),
    }));
    for version in [V3_1, V3_1_1] {
        let expected = EncodeError::NotInVersion {
            packet: PacketType::Auth,
            version,
        };
        assert_eq!(encode_err(&packet, version), expected);
    }
}

#[test]
fn encode_binary_field_longer_than_65535_bytes() {
    let connect = |password: usize, will_payload: usize| {
        Packet::Connect(Box::new(Connect {
            protocol: V3_1_1,
            clean_start: true,
            keep_alive: 0,
            client_id: MqttString::new("c").unwrap(),
            will: Some(LastWill {
                topic: TopicName::parse("w").unwrap(),
                payload: Bytes::from(vec![0; will_payload]),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: Default::default(),
            }),
            username: Some(MqttString::new("u").unwrap()),
            password: Some(Bytes::from(vec![0; password])),
            properties: Default::default(),
        }))
    };
    let expected = EncodeError::BinaryTooLong {
        packet: PacketType::Connect,
        field: "password",
        len: 65_536,
    };
    assert_eq!(encode_err(&connect(65_536, 1), V3_1_1), expected);
    let expected = EncodeError::BinaryTooLong {
        packet: PacketType::Connect,
        field: "will payload",
        len: 70_000,
    };
    assert_eq!(encode_err(&connect(1, 70_000), V3_1_1), expected);
    // 65,535 bytes is the largest that fits.
    let fits = connect(65_535, 65_535);
    assert_eq!(
        encoded_len(&fits, V3_1_1),
        Ok(1 + 3 + (10 + 3 + 3 + 65_537 + 3 + 65_537))
    );

    let correlated = Packet::Publish(Publish {
        properties: PublishProperties {
            correlation_data: Some(Bytes::from(vec![0; 65_536])),
            ..Default::default()
        }
        .into(),
        ..publish(QoS::AtMostOnce, None)
    });
    let expected = EncodeError::BinaryTooLong {
        packet: PacketType::Publish,
        field: "binary property",
        len: 65_536,
    };
    assert_eq!(encode_err(&correlated, V5), expected);
}

#[test]
fn encode_empty_topic_without_topic_alias() {
    let mut packet = Publish {
        topic: TopicName::empty(),
        ..publish(QoS::AtMostOnce, None)
    };
    for version in ALL {
        assert_eq!(
            encode_err(&Packet::Publish(packet.clone()), version),
            EncodeError::EmptyTopicWithoutAlias
        );
    }
    // With an alias MQTT 5 can send it; 3.1/3.1.1 have no aliases.
    packet.properties.topic_alias = std::num::NonZeroU16::new(3);
    for version in [V3_1, V3_1_1] {
        assert_eq!(
            encode_err(&Packet::Publish(packet.clone()), version),
            EncodeError::EmptyTopicWithoutAlias
        );
    }
    assert!(encode(&Packet::Publish(packet), V5, &mut BytesMut::new()).is_ok());
}

#[test]
fn encode_subscribe_and_suback_without_entries() {
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        subscriptions: Vec::new(),
        properties: Default::default(),
    });
    let suback = Packet::SubAck(SubAck {
        packet_id: PacketId::new(1).unwrap(),
        reason_codes: Vec::new(),
        properties: Default::default(),
    });
    for version in ALL {
        let expected = EncodeError::EmptyList {
            packet: PacketType::Subscribe,
            field: "subscriptions",
        };
        assert_eq!(encode_err(&subscribe, version), expected);
        let expected = EncodeError::EmptyList {
            packet: PacketType::SubAck,
            field: "reason codes",
        };
        assert_eq!(encode_err(&suback, version), expected);
    }
}

#[test]
fn encode_v311_connect_password_without_user_name() {
    let connect = |protocol| {
        Packet::Connect(Box::new(Connect {
            protocol,
            clean_start: true,
            keep_alive: 0,
            client_id: MqttString::new("c").unwrap(),
            will: None,
            username: None,
            password: Some(Bytes::from_static(b"pw")),
            properties: Default::default(),
        }))
    };
    let expected = EncodeError::NotRepresentable {
        packet: PacketType::Connect,
        version: V3_1_1,
        field: "a password without a user name",
    };
    assert_eq!(encode_err(&connect(V3_1_1), V3_1_1), expected);
    assert!(encode(&connect(V5), V5, &mut BytesMut::new()).is_ok());
}

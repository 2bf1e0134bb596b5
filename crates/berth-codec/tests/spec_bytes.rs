//! Byte tables for MQTT 3.1 ("MQIsdp", level 3) and 3.1.1 (level 4), written by hand from the
//! specifications' field layouts and non-normative examples, plus the variable byte integer table
//! and incremental (streaming) decoding. Every table entry is checked both ways: the bytes decode
//! to exactly the typed packet, and the packet encodes to exactly the bytes.
//!
//! MQTT 5.0 tables are in `spec_bytes_v5.rs` and `spec_bytes_v5_control.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use berth_codec::{
    ConnAck, Connect, ConnectReasonCode, DecodeOptions, Disconnect, DisconnectReasonCode, LastWill,
    Packet, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish, PublishProperties, QoS,
    SubAck, SubAckReasonCode, Subscribe, SubscribeProperties, Subscription, SubscriptionOptions,
    UnsubAck, Unsubscribe, UnsubscribeProperties, UserProperty, decode,
};
use bytes::{Bytes, BytesMut};

use ProtocolVersion::{V3_1, V3_1_1, V5};
use support::spec::{assert_wire, filter, pid, publish, s, topic, wire};

// ---------------------------------------------------------------------------------------------
// CONNECT
// ---------------------------------------------------------------------------------------------

/// The CONNECT of the spec examples below (flags 0xCE, keep alive 10): the same packet in 3.1.1
/// and in 3.1.
fn spec_example_connect(protocol: ProtocolVersion) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol,
        clean_start: true,
        keep_alive: 10,
        client_id: s("client"),
        will: Some(LastWill {
            topic: topic("will/t"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
        }),
        username: Some(s("user")),
        password: Some(Bytes::from_static(b"pass")),
        properties: Default::default(),
    }))
}

/// The 3.1.1 §3.1.2.10 variable header example (flags 0xCE, keep alive 10) with a payload
/// carrying every field those flags announce.
#[test]
fn v311_connect_spec_example() {
    let bytes = wire(&[
        &[0x10, 0x2B],                         // CONNECT, remaining length 43
        &[0x00, 0x04, b'M', b'Q', b'T', b'T'], // protocol name "MQTT"
        &[0x04],                               // protocol level 4
        &[0xCE], // user name 1, password 1, will retain 0, will QoS 01, will 1, clean session 1
        &[0x00, 0x0A], // keep alive 10 s
        b"\x00\x06client", // client identifier
        b"\x00\x06will/t", // will topic
        b"\x00\x03bye", // will message
        b"\x00\x04user", // user name
        b"\x00\x04pass", // password
    ]);
    let packet = spec_example_connect(V3_1_1);
    assert_wire(V3_1_1, &bytes, &packet);
}

/// The 3.1 CONNECT variable header example: "MQIsdp", version 3, flags 0xCE, keep alive 10.
#[test]
fn v31_connect_spec_example() {
    let bytes = wire(&[
        &[0x10, 0x2D],                                     // CONNECT, remaining length 45
        &[0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p'], // protocol name "MQIsdp"
        &[0x03],                                           // protocol version 3
        &[0xCE],                                           // same flags as 3.1.1 example
        &[0x00, 0x0A],                                     // keep alive 10 s
        b"\x00\x06client",                                 // client identifier
        b"\x00\x06will/t",                                 // will topic
        b"\x00\x03bye",                                    // will message
        b"\x00\x04user",                                   // user name
        b"\x00\x04pass",                                   // password
    ]);
    let packet = spec_example_connect(V3_1);
    // A CONNECT is decoded by its own protocol level, whatever the connection's default.
    for version in [V3_1, V3_1_1, V5] {
        let mut buf = BytesMut::from(&bytes[..]);
        let decoded = decode(&mut buf, &DecodeOptions::new(version)).unwrap();
        assert_eq!(decoded.as_ref(), Some(&packet));
    }
    assert_wire(V3_1, &bytes, &packet);
}

/// Clean session with a zero-length client identifier (3.1.1 §3.1.3.1).
fn v311_minimal_connect() -> (Vec<u8>, Packet) {
    let bytes = wire(&[
        &[0x10, 0x0C],                         // CONNECT, remaining length 12
        &[0x00, 0x04, b'M', b'Q', b'T', b'T'], // protocol name
        &[0x04],                               // level 4
        &[0x02],                               // clean session only
        &[0x00, 0x3C],                         // keep alive 60 s
        &[0x00, 0x00],                         // client identifier ""
    ]);
    let packet = Packet::Connect(Box::new(Connect {
        protocol: V3_1_1,
        clean_start: true,
        keep_alive: 60,
        client_id: s(""),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    }));
    (bytes, packet)
}

#[test]
fn v311_connect_minimal_empty_client_id() {
    let (bytes, packet) = v311_minimal_connect();
    assert_wire(V3_1_1, &bytes, &packet);
}

#[test]
fn v311_connect_retained_qos2_will_with_user_name_only() {
    let bytes = wire(&[
        &[0x10, 0x18],                         // CONNECT, remaining length 24
        &[0x00, 0x04, b'M', b'Q', b'T', b'T'], // protocol name
        &[0x04],                               // level 4
        &[0xB4],       // user name 1, password 0, will retain 1, will QoS 10, will 1, clean 0
        &[0x00, 0x00], // keep alive 0: off
        &[0x00, 0x02, b'i', b'd'], // client identifier "id"
        &[0x00, 0x03, b'w', b'/', b'x'], // will topic "w/x"
        &[0x00, 0x00], // empty will message
        &[0x00, 0x01, b'u'], // user name "u"
    ]);
    let packet = Packet::Connect(Box::new(Connect {
        protocol: V3_1_1,
        clean_start: false,
        keep_alive: 0,
        client_id: s("id"),
        will: Some(LastWill {
            topic: topic("w/x"),
            payload: Bytes::new(),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: Default::default(),
        }),
        username: Some(s("u")),
        password: None,
        properties: Default::default(),
    }));
    assert_wire(V3_1_1, &bytes, &packet);
}

// ---------------------------------------------------------------------------------------------
// CONNACK
// ---------------------------------------------------------------------------------------------

#[test]
fn v311_connack_accepted_and_session_present() {
    // 3.1.1 §3.2: acknowledge flags (bit 0 session present), return code.
    assert_wire(
        V3_1_1,
        &[0x20, 0x02, 0x00, 0x00],
        &Packet::ConnAck(Box::new(ConnAck::accepted(false))),
    );
    assert_wire(
        V3_1_1,
        &[0x20, 0x02, 0x01, 0x00],
        &Packet::ConnAck(Box::new(ConnAck::accepted(true))),
    );
}

#[test]
fn v311_connack_every_refusal_return_code() {
    // 3.1.1 table 3.1: return codes 1..=5.
    let table = [
        (0x01, ConnectReasonCode::UnsupportedProtocolVersion),
        (0x02, ConnectReasonCode::ClientIdentifierNotValid),
        (0x03, ConnectReasonCode::ServerUnavailable),
        (0x04, ConnectReasonCode::BadUserNameOrPassword),
        (0x05, ConnectReasonCode::NotAuthorized),
    ];
    for (code, reason) in table {
        let bytes = [0x20, 0x02, 0x00, code]; // CONNACK, no session, return code
        let packet = Packet::ConnAck(Box::new(ConnAck::refused(reason)));
        assert_wire(V3_1_1, &bytes, &packet);
        assert_wire(V3_1, &bytes, &packet);
    }
}

#[test]
fn v31_connack_accepted() {
    // 3.1: the first variable header byte is reserved (topic name compression, unused).
    assert_wire(
        V3_1,
        &[0x20, 0x02, 0x00, 0x00],
        &Packet::ConnAck(Box::new(ConnAck::accepted(false))),
    );
}

// ---------------------------------------------------------------------------------------------
// PUBLISH
// ---------------------------------------------------------------------------------------------

#[test]
fn publish_qos0_both_v3_versions() {
    let bytes = wire(&[
        &[0x30, 0x0A],                   // PUBLISH, DUP 0, QoS 0, RETAIN 0, remaining length 10
        &[0x00, 0x03, b'a', b'/', b'b'], // topic name "a/b"; no packet identifier at QoS 0
        b"hello",                        // payload
    ]);
    let packet = Packet::Publish(publish(QoS::AtMostOnce, None, topic("a/b"), b"hello"));
    assert_wire(V3_1, &bytes, &packet);
    assert_wire(V3_1_1, &bytes, &packet);
}

#[test]
fn publish_qos1_spec_example_both_v3_versions() {
    // 3.1.1 §3.3.2.3 example: topic "a/b", packet identifier 10.
    let bytes = wire(&[
        &[0x32, 0x0C],                   // PUBLISH, QoS 1, remaining length 12
        &[0x00, 0x03, b'a', b'/', b'b'], // topic name
        &[0x00, 0x0A],                   // packet identifier 10
        b"hello",                        // payload
    ]);
    let packet = Packet::Publish(publish(QoS::AtLeastOnce, Some(10), topic("a/b"), b"hello"));
    assert_wire(V3_1, &bytes, &packet);
    assert_wire(V3_1_1, &bytes, &packet);
}

#[test]
fn publish_qos2_dup_retain_empty_payload_both_v3_versions() {
    let bytes = wire(&[
        &[0x3D, 0x07],                   // PUBLISH, DUP 1, QoS 2, RETAIN 1, remaining length 7
        &[0x00, 0x03, b'a', b'/', b'b'], // topic name
        &[0x00, 0x0B],                   // packet identifier 11; zero-length payload
    ]);
    let mut expected = publish(QoS::ExactlyOnce, Some(11), topic("a/b"), b"");
    expected.dup = true;
    expected.retain = true;
    let packet = Packet::Publish(expected);
    assert_wire(V3_1, &bytes, &packet);
    assert_wire(V3_1_1, &bytes, &packet);
}

#[test]
fn publish_topic_with_the_utf8_spec_example() {
    // 3.1.1 §1.5.3 / 5.0 §1.5.4 example: "A\u{2A6D4}" = 0x00 0x05 0x41 0xF0 0xAA 0x9B 0x94.
    let bytes = wire(&[
        &[0x31, 0x08],                               // PUBLISH, QoS 0, RETAIN 1, length 8
        &[0x00, 0x05, 0x41, 0xF0, 0xAA, 0x9B, 0x94], // topic name
        &[0x2A],                                     // payload
    ]);
    let mut expected = publish(QoS::AtMostOnce, None, topic("A\u{2A6D4}"), b"*");
    expected.retain = true;
    for version in [V3_1, V3_1_1] {
        assert_wire(version, &bytes, &Packet::Publish(expected.clone()));
    }
}

// ---------------------------------------------------------------------------------------------
// PUBACK, PUBREC, PUBREL, PUBCOMP
// ---------------------------------------------------------------------------------------------

#[test]
fn publish_acknowledgements_both_v3_versions() {
    // Fixed header, remaining length 2, packet identifier; PUBREL has the 0b0010 flags.
    for version in [V3_1, V3_1_1] {
        assert_wire(
            version,
            &[0x40, 0x02, 0x00, 0x0A],
            &Packet::PubAck(PubAck::new(pid(10))),
        );
        assert_wire(
            version,
            &[0x50, 0x02, 0x00, 0x0B],
            &Packet::PubRec(PubRec::new(pid(11))),
        );
        assert_wire(
            version,
            &[0x62, 0x02, 0x00, 0x0B],
            &Packet::PubRel(PubRel::new(pid(11))),
        );
        assert_wire(
            version,
            &[0x70, 0x02, 0x00, 0x0B],
            &Packet::PubComp(PubComp::new(pid(11))),
        );
        // The largest packet identifier.
        assert_wire(
            version,
            &[0x40, 0x02, 0xFF, 0xFF],
            &Packet::PubAck(PubAck::new(pid(65535))),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK
// ---------------------------------------------------------------------------------------------

#[test]
fn subscribe_spec_example_both_v3_versions() {
    // 3.1.1 §3.8.2 (packet identifier 10) and §3.8.3 payload example ("a/b" QoS 1, "c/d" QoS 2).
    let bytes = wire(&[
        &[0x82, 0x0E],                   // SUBSCRIBE, flags 0b0010, remaining length 14
        &[0x00, 0x0A],                   // packet identifier 10
        &[0x00, 0x03, b'a', b'/', b'b'], // topic filter "a/b"
        &[0x01],                         // requested QoS 1
        &[0x00, 0x03, b'c', b'/', b'd'], // topic filter "c/d"
        &[0x02],                         // requested QoS 2
    ]);
    let packet = Packet::Subscribe(Subscribe {
        packet_id: pid(10),
        subscriptions: vec![
            Subscription {
                filter: filter("a/b"),
                options: SubscriptionOptions::new(QoS::AtLeastOnce),
            },
            Subscription {
                filter: filter("c/d"),
                options: SubscriptionOptions::new(QoS::ExactlyOnce),
            },
        ],
        properties: SubscribeProperties::default(),
    });
    assert_wire(V3_1, &bytes, &packet);
    assert_wire(V3_1_1, &bytes, &packet);
}

#[test]
fn subscribe_wildcard_filters_v311() {
    let bytes = wire(&[
        &[0x82, 0x12],       // SUBSCRIBE, remaining length 18
        &[0x12, 0x34],       // packet identifier 0x1234
        &[0x00, 0x09],       // filter length 9
        b"sport/+/#",        // topic filter with both wildcards
        &[0x00],             // requested QoS 0
        &[0x00, 0x01, b'#'], // multi-level wildcard alone
        &[0x01],             // requested QoS 1
    ]);
    let packet = Packet::Subscribe(Subscribe {
        packet_id: pid(0x1234),
        subscriptions: vec![
            Subscription {
                filter: filter("sport/+/#"),
                options: SubscriptionOptions::new(QoS::AtMostOnce),
            },
            Subscription {
                filter: filter("#"),
                options: SubscriptionOptions::new(QoS::AtLeastOnce),
            },
        ],
        properties: SubscribeProperties::default(),
    });
    assert_wire(V3_1_1, &bytes, &packet);
}

#[test]
fn v311_suback_spec_example() {
    // 3.1.1 §3.9.3 example: success QoS 0, QoS 1, QoS 2, failure 0x80.
    let bytes = wire(&[
        &[0x90, 0x06],             // SUBACK, remaining length 6
        &[0x00, 0x0A],             // packet identifier 10
        &[0x00, 0x01, 0x02, 0x80], // return codes
    ]);
    let packet = Packet::SubAck(SubAck {
        packet_id: pid(10),
        reason_codes: vec![
            SubAckReasonCode::GrantedQoS0,
            SubAckReasonCode::GrantedQoS1,
            SubAckReasonCode::GrantedQoS2,
            SubAckReasonCode::UnspecifiedError,
        ],
        properties: Default::default(),
    });
    assert_wire(V3_1_1, &bytes, &packet);
}

#[test]
fn v31_suback_granted_qos() {
    // 3.1 SUBACK payload: one granted QoS byte per requested topic.
    let bytes = wire(&[
        &[0x90, 0x04], // SUBACK, remaining length 4
        &[0x00, 0x0A], // message identifier 10
        &[0x01, 0x02], // granted QoS 1, granted QoS 2
    ]);
    let packet = Packet::SubAck(SubAck {
        packet_id: pid(10),
        reason_codes: vec![SubAckReasonCode::GrantedQoS1, SubAckReasonCode::GrantedQoS2],
        properties: Default::default(),
    });
    assert_wire(V3_1, &bytes, &packet);
}

#[test]
fn unsubscribe_spec_example_both_v3_versions() {
    // 3.1.1 §3.10.3 example: "a/b", "c/d".
    let bytes = wire(&[
        &[0xA2, 0x0C],                   // UNSUBSCRIBE, flags 0b0010, remaining length 12
        &[0x00, 0x0A],                   // packet identifier 10
        &[0x00, 0x03, b'a', b'/', b'b'], // topic filter "a/b"
        &[0x00, 0x03, b'c', b'/', b'd'], // topic filter "c/d"
    ]);
    let packet = Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(10),
        filters: vec![filter("a/b"), filter("c/d")],
        properties: UnsubscribeProperties::default(),
    });
    assert_wire(V3_1, &bytes, &packet);
    assert_wire(V3_1_1, &bytes, &packet);
}

#[test]
fn unsuback_both_v3_versions() {
    // 3.1.1 §3.11: packet identifier only, no payload.
    let packet = Packet::UnsubAck(UnsubAck {
        packet_id: pid(10),
        reason_codes: Vec::new(),
        properties: Default::default(),
    });
    assert_wire(V3_1, &[0xB0, 0x02, 0x00, 0x0A], &packet);
    assert_wire(V3_1_1, &[0xB0, 0x02, 0x00, 0x0A], &packet);
}

// ---------------------------------------------------------------------------------------------
// PINGREQ, PINGRESP, DISCONNECT
// ---------------------------------------------------------------------------------------------

#[test]
fn ping_and_disconnect_both_v3_versions() {
    for version in [V3_1, V3_1_1] {
        assert_wire(version, &[0xC0, 0x00], &Packet::PingReq); // PINGREQ, remaining length 0
        assert_wire(version, &[0xD0, 0x00], &Packet::PingResp); // PINGRESP, remaining length 0
        let disconnect =
            Packet::Disconnect(Disconnect::new(DisconnectReasonCode::NormalDisconnection));
        assert_wire(version, &[0xE0, 0x00], &disconnect); // DISCONNECT, remaining length 0
    }
}

// ---------------------------------------------------------------------------------------------
// Variable byte integer (remaining length) table: 3.1.1 §2.2.3 table 2.4 / 5.0 §1.5.5 table 1-1
// ---------------------------------------------------------------------------------------------

#[test]
fn remaining_length_table_boundaries() {
    // A QoS 0 PUBLISH to topic "a" has a body of 3 bytes (MQTT 5: 4, with the property length)
    // plus the payload, so the payload size puts the remaining length on each table boundary.
    let table: [(usize, &[u8]); 7] = [
        (4, &[0x04]),
        (127, &[0x7F]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xFF, 0x7F]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xFF, 0xFF, 0x7F]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
    ];
    for (remaining, length_bytes) in table {
        for version in [V3_1_1, V5] {
            let properties: &[u8] = if version == V5 { &[0x00] } else { &[] };
            let payload = vec![0xA5; remaining - 3 - properties.len()];
            let bytes = wire(&[
                &[0x30],             // PUBLISH, QoS 0
                length_bytes,        // remaining length under test
                &[0x00, 0x01, b'a'], // topic name "a"
                properties,          // MQTT 5: property length 0
                &payload,            // payload
            ]);
            let packet = Packet::Publish(Publish {
                payload: Bytes::from(payload),
                ..publish(QoS::AtMostOnce, None, topic("a"), b"")
            });
            assert_wire(version, &bytes, &packet);
        }
    }
}

#[test]
fn remaining_length_zero_and_four_byte_maximum() {
    // 0 (0x00): PINGREQ.
    assert_wire(V3_1_1, &[0xC0, 0x00], &Packet::PingReq);
    // 268,435,455 (0xFF 0xFF 0xFF 0x7F): the header alone is accepted under the default maximum
    // and the decoder waits for the body without error.
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    let opts = DecodeOptions::new(V3_1_1);
    assert_eq!(opts.max_packet_size, 268_435_455 + 5);
    assert_eq!(decode(&mut buf, &opts), Ok(None));
    assert_eq!(&buf[..], &[0x30, 0xFF, 0xFF, 0xFF, 0x7F]);
}

// ---------------------------------------------------------------------------------------------
// Incremental decoding, several packets in one buffer, zero-copy
// ---------------------------------------------------------------------------------------------

fn v5_publish_with_properties() -> (Vec<u8>, Packet) {
    let bytes = wire(&[
        &[0x32, 0x16],                               // PUBLISH, QoS 1, remaining length 22
        &[0x00, 0x03, b'a', b'/', b'b'],             // topic name
        &[0x00, 0x07],                               // packet identifier 7
        &[0x07],                                     // property length 7
        &[0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v'], // user property k=v
        b"payload",                                  // payload
    ]);
    let packet = Packet::Publish(Publish {
        properties: PublishProperties {
            user_properties: vec![UserProperty::new(s("k"), s("v"))],
            ..Default::default()
        }
        .into(),
        ..publish(QoS::AtLeastOnce, Some(7), topic("a/b"), b"payload")
    });
    (bytes, packet)
}

#[test]
fn byte_at_a_time_returns_none_until_complete() {
    let (v5_bytes, v5_packet) = v5_publish_with_properties();
    let (v311_bytes, v311_packet) = v311_minimal_connect();
    let cases = [(V5, v5_bytes, v5_packet), (V3_1_1, v311_bytes, v311_packet)];
    for (version, bytes, packet) in cases {
        let opts = DecodeOptions::new(version);
        let mut buf = BytesMut::new();
        assert_eq!(decode(&mut buf, &opts), Ok(None), "empty buffer");
        for (i, byte) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            if i + 1 < bytes.len() {
                assert_eq!(decode(&mut buf, &opts), Ok(None), "after {} bytes", i + 1);
                assert_eq!(
                    &buf[..],
                    &bytes[..=i],
                    "buffer intact after {} bytes",
                    i + 1
                );
            } else {
                assert_eq!(decode(&mut buf, &opts), Ok(Some(packet.clone())));
                assert!(buf.is_empty());
            }
        }
    }
}

#[test]
fn packets_back_to_back_decode_in_order() {
    let (publish_bytes, publish_packet) = v5_publish_with_properties();
    let mut stream = Vec::new();
    stream.extend_from_slice(&[0xC0, 0x00]); // PINGREQ
    stream.extend_from_slice(&publish_bytes); // PUBLISH
    stream.extend_from_slice(&[0x40, 0x03, 0x00, 0x07, 0x10]); // PUBACK, No matching subscribers
    stream.extend_from_slice(&publish_bytes[..5]); // the start of another PUBLISH
    let mut buf = BytesMut::from(&stream[..]);
    let opts = DecodeOptions::new(V5);
    assert_eq!(decode(&mut buf, &opts), Ok(Some(Packet::PingReq)));
    assert_eq!(decode(&mut buf, &opts), Ok(Some(publish_packet.clone())));
    assert_eq!(
        decode(&mut buf, &opts),
        Ok(Some(Packet::PubAck(PubAck {
            reason: berth_codec::PubAckReasonCode::NoMatchingSubscribers,
            ..PubAck::new(pid(7))
        })))
    );
    // The partial packet is left untouched until the rest arrives.
    assert_eq!(decode(&mut buf, &opts), Ok(None));
    assert_eq!(&buf[..], &publish_bytes[..5]);
    buf.extend_from_slice(&publish_bytes[5..]);
    assert_eq!(decode(&mut buf, &opts), Ok(Some(publish_packet)));
    assert!(buf.is_empty());
    assert_eq!(decode(&mut buf, &opts), Ok(None));
}

#[test]
fn topic_payload_and_properties_borrow_the_frame() {
    let (bytes, _) = v5_publish_with_properties();
    let mut buf = BytesMut::with_capacity(1024);
    buf.extend_from_slice(&bytes);
    let frame = buf.as_ptr() as usize..buf.as_ptr() as usize + bytes.len();
    let Some(Packet::Publish(p)) = decode(&mut buf, &DecodeOptions::new(V5)).unwrap() else {
        panic!("expected a PUBLISH");
    };
    let inside = |ptr: *const u8| frame.contains(&(ptr as usize));
    assert!(
        inside(p.payload.as_ptr()),
        "payload is a slice of the frame"
    );
    assert!(
        inside(p.topic.as_str().as_ptr()),
        "topic is a slice of the frame"
    );
    let user = &p.properties.user_properties[0];
    assert!(inside(user.key.as_ptr()) && inside(user.value.as_ptr()));
    // Exactly where the spec layout puts them.
    assert_eq!(p.payload.as_ptr() as usize, frame.start + bytes.len() - 7);
    assert_eq!(p.topic.as_str().as_ptr() as usize, frame.start + 4);
}

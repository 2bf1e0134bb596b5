//! Byte tables for the MQTT 5.0 (level 5) SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ,
//! PINGRESP, DISCONNECT and AUTH packets, written by hand from the specification's field layouts
//! and non-normative examples (CONNECT, CONNACK and PUBLISH with its acknowledgements are in
//! `spec_bytes_v5.rs`). Every entry is checked both ways: the bytes decode to exactly the
//! typed packet and the packet encodes to exactly the bytes. Properties are listed in the order
//! the encoder writes them (the spec allows any order; the decoder accepts any order).
//!
//! Strings are written as `b"\x00\x06client"`: the two-byte length, then the UTF-8 bytes; a
//! string property as `b"\x12\x00\x04auto"`: identifier, length, bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use berth_codec::{
    AckProperties, Auth, AuthProperties, AuthReasonCode, Disconnect, DisconnectProperties,
    DisconnectReasonCode, Packet, ProtocolVersion, QoS, RetainHandling, SubAck, SubAckReasonCode,
    Subscribe, SubscribeProperties, Subscription, SubscriptionId, SubscriptionOptions, UnsubAck,
    UnsubAckReasonCode, Unsubscribe, UnsubscribeProperties, encode,
};
use bytes::{Bytes, BytesMut};

use ProtocolVersion::{V3_1_1, V5};
use support::spec::{assert_wire, decode_packet, filter, pid, s, user, wire};

// ---------------------------------------------------------------------------------------------
// SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK
// ---------------------------------------------------------------------------------------------

#[test]
fn subscribe_spec_example() {
    // §3.8.2 (packet identifier 10, no properties) and §3.8.3 payload ("a/b" QoS 1, "c/d" QoS 2).
    let bytes = wire(&[
        &[0x82, 0x0F], // SUBSCRIBE, flags 0b0010, remaining length 15
        &[0x00, 0x0A], // packet identifier 10
        &[0x00],       // property length 0
        b"\x00\x03a/b",
        &[0x01], // "a/b", options: QoS 1
        b"\x00\x03c/d",
        &[0x02], // "c/d", options: QoS 2
    ]);
    let packet = Subscribe {
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
    };
    assert_wire(V5, &bytes, &Packet::Subscribe(packet));
}

#[test]
fn subscribe_options_identifier_and_shared_filter() {
    let bytes = wire(&[
        &[0x82, 0x25],             // SUBSCRIBE, remaining length 37
        &[0x01, 0x02],             // packet identifier 0x0102
        &[0x09],                   // property length 9
        &[0x0B, 0x2A],             // Subscription Identifier 42
        b"\x26\x00\x01k\x00\x01v", // User Property
        b"\x00\x03a/+",            // filter "a/+"
        &[0x2D],                   // QoS 1, No Local 1, Retain As Published 1, Retain Handling 2
        b"\x00\x0C$share/g/s/#",   // shared subscription, group "g", filter "s/#"
        &[0x12],                   // QoS 2, Retain Handling 1
        b"\x00\x01#",              // filter "#"
        &[0x00],                   // QoS 0, all options 0
    ]);
    let packet = Subscribe {
        packet_id: pid(0x0102),
        subscriptions: vec![
            Subscription {
                filter: filter("a/+"),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            },
            Subscription {
                filter: filter("$share/g/s/#"),
                options: SubscriptionOptions {
                    retain_handling: RetainHandling::SendIfNewSubscription,
                    ..SubscriptionOptions::new(QoS::ExactlyOnce)
                },
            },
            Subscription {
                filter: filter("#"),
                options: SubscriptionOptions::new(QoS::AtMostOnce),
            },
        ],
        properties: SubscribeProperties {
            subscription_identifier: SubscriptionId::new(42),
            user_properties: vec![user("k", "v")],
        },
    };
    assert_wire(V5, &bytes, &Packet::Subscribe(packet.clone()));
    let Packet::Subscribe(decoded) = decode_packet(V5, &bytes) else {
        unreachable!()
    };
    assert_eq!(decoded.subscriptions[1].filter.share_group(), Some("g"));
    assert_eq!(decoded.subscriptions[1].filter.matching_filter(), "s/#");

    // For 3.1.1 only the QoS bits of each options byte remain, and no properties.
    let v311 = wire(&[
        &[0x82, 0x1B], // SUBSCRIBE, remaining length 27
        &[0x01, 0x02], // packet identifier
        b"\x00\x03a/+",
        &[0x01], // QoS 1
        b"\x00\x0C$share/g/s/#",
        &[0x02], // QoS 2
        b"\x00\x01#",
        &[0x00], // QoS 0
    ]);
    let mut out = BytesMut::new();
    encode(&Packet::Subscribe(packet), V3_1_1, &mut out).unwrap();
    assert_eq!(&out[..], &v311[..]);
}

#[test]
fn suback_granted_and_every_reason_code() {
    let bytes = wire(&[
        &[0x90, 0x07],             // SUBACK, remaining length 7
        &[0x00, 0x0A],             // packet identifier 10
        &[0x00],                   // property length 0
        &[0x00, 0x01, 0x02, 0x80], // Granted QoS 0, 1, 2, Unspecified error
    ]);
    let packet = SubAck {
        packet_id: pid(10),
        reason_codes: SubAckReasonCode::ALL[..4].to_vec(),
        properties: AckProperties::default(),
    };
    assert_wire(V5, &bytes, &Packet::SubAck(packet));

    let bytes = wire(&[
        &[0x90, 0x14],     // SUBACK, remaining length 20
        &[0x00, 0x0A],     // packet identifier 10
        &[0x05],           // property length 5
        b"\x1F\x00\x02no", // Reason String "no"
        &[
            0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
        ], // §3.9.3
    ]);
    let packet = SubAck {
        packet_id: pid(10),
        reason_codes: SubAckReasonCode::ALL.to_vec(),
        properties: AckProperties {
            reason_string: Some(s("no")),
            user_properties: Vec::new(),
        },
    };
    assert_wire(V5, &bytes, &Packet::SubAck(packet));
}

#[test]
fn unsubscribe_spec_example_and_user_property() {
    let bytes = wire(&[
        &[0xA2, 0x0D],  // UNSUBSCRIBE, flags 0b0010, remaining length 13
        &[0x00, 0x0A],  // packet identifier 10
        &[0x00],        // property length 0
        b"\x00\x03a/b", // topic filter "a/b"
        b"\x00\x03c/d", // topic filter "c/d"
    ]);
    let packet = Unsubscribe {
        packet_id: pid(10),
        filters: vec![filter("a/b"), filter("c/d")],
        properties: UnsubscribeProperties::default(),
    };
    assert_wire(V5, &bytes, &Packet::Unsubscribe(packet));

    let bytes = wire(&[
        &[0xA2, 0x0F],             // UNSUBSCRIBE, remaining length 15
        &[0x00, 0x0A],             // packet identifier 10
        &[0x07],                   // property length 7
        b"\x26\x00\x01k\x00\x01v", // User Property
        b"\x00\x03a/b",            // topic filter
    ]);
    let packet = Unsubscribe {
        packet_id: pid(10),
        filters: vec![filter("a/b")],
        properties: UnsubscribeProperties {
            user_properties: vec![user("k", "v")],
        },
    };
    assert_wire(V5, &bytes, &Packet::Unsubscribe(packet));
}

#[test]
fn unsuback_reason_codes() {
    let bytes = wire(&[
        &[0xB0, 0x05], // UNSUBACK, remaining length 5
        &[0x00, 0x0A], // packet identifier 10
        &[0x00],       // property length 0
        &[0x00, 0x11], // Success, No subscription existed
    ]);
    let packet = UnsubAck {
        packet_id: pid(10),
        reason_codes: vec![
            UnsubAckReasonCode::Success,
            UnsubAckReasonCode::NoSubscriptionExisted,
        ],
        properties: AckProperties::default(),
    };
    assert_wire(V5, &bytes, &Packet::UnsubAck(packet));

    let bytes = wire(&[
        &[0xB0, 0x0F],                               // UNSUBACK, remaining length 15
        &[0x00, 0x0A],                               // packet identifier 10
        &[0x05],                                     // property length 5
        b"\x1F\x00\x02no",                           // Reason String
        &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91], // every code of §3.11.3
    ]);
    let packet = UnsubAck {
        packet_id: pid(10),
        reason_codes: UnsubAckReasonCode::ALL.to_vec(),
        properties: AckProperties {
            reason_string: Some(s("no")),
            user_properties: Vec::new(),
        },
    };
    assert_wire(V5, &bytes, &Packet::UnsubAck(packet));
}

// ---------------------------------------------------------------------------------------------
// PINGREQ, PINGRESP, DISCONNECT, AUTH
// ---------------------------------------------------------------------------------------------

#[test]
fn pingreq_pingresp() {
    assert_wire(V5, &[0xC0, 0x00], &Packet::PingReq);
    assert_wire(V5, &[0xD0, 0x00], &Packet::PingResp);
}

#[test]
fn disconnect_short_forms_and_properties() {
    let normal = Disconnect::new(DisconnectReasonCode::NormalDisconnection);
    // §3.14.2.1: remaining length 0 means Normal disconnection, no properties.
    assert_wire(V5, &[0xE0, 0x00], &Packet::Disconnect(normal.clone()));
    // Long forms of the same packet decode identically.
    assert_eq!(
        decode_packet(V5, &[0xE0, 0x01, 0x00]),
        Packet::Disconnect(normal.clone())
    );
    assert_eq!(
        decode_packet(V5, &[0xE0, 0x02, 0x00, 0x00]),
        Packet::Disconnect(normal)
    );
    // Reason code only (remaining length 1), for every code.
    for &reason in DisconnectReasonCode::ALL.iter().skip(1) {
        assert_wire(
            V5,
            &[0xE0, 0x01, reason.code()],
            &Packet::Disconnect(Disconnect::new(reason)),
        );
    }

    let bytes = wire(&[
        &[0xE0, 0x0D],           // DISCONNECT, remaining length 13
        &[0x8B],                 // Server shutting down
        &[0x0B],                 // property length 11
        b"\x1F\x00\x08shutdown", // Reason String
    ]);
    let packet = Disconnect {
        reason: DisconnectReasonCode::ServerShuttingDown,
        properties: DisconnectProperties {
            reason_string: Some(s("shutdown")),
            ..Default::default()
        },
    };
    assert_wire(V5, &bytes, &Packet::Disconnect(packet));

    let bytes = wire(&[
        &[0xE0, 0x07],                   // DISCONNECT, remaining length 7
        &[0x00],                         // Normal disconnection
        &[0x05],                         // property length 5
        &[0x11, 0x00, 0x00, 0x00, 0x3C], // Session Expiry Interval 60
    ]);
    let packet = Disconnect {
        reason: DisconnectReasonCode::NormalDisconnection,
        properties: DisconnectProperties {
            session_expiry_interval: Some(60),
            ..Default::default()
        },
    };
    assert_wire(V5, &bytes, &Packet::Disconnect(packet));

    let bytes = wire(&[
        &[0xE0, 0x11],             // DISCONNECT, remaining length 17
        &[0x9C],                   // Use another server
        &[0x0F],                   // property length 15
        b"\x26\x00\x01k\x00\x01v", // User Property
        b"\x1C\x00\x05other",      // Server Reference
    ]);
    let packet = Disconnect {
        reason: DisconnectReasonCode::UseAnotherServer,
        properties: DisconnectProperties {
            user_properties: vec![user("k", "v")],
            server_reference: Some(s("other")),
            ..Default::default()
        },
    };
    assert_wire(V5, &bytes, &Packet::Disconnect(packet));
}

#[test]
fn auth_short_form_and_exchanges() {
    // §3.15.2.1: remaining length 0 means Success with no properties.
    let success = Auth {
        reason: AuthReasonCode::Success,
        properties: AuthProperties::default(),
    };
    assert_wire(V5, &[0xF0, 0x00], &Packet::Auth(Box::new(success)));

    let bytes = wire(&[
        &[0xF0, 0x11],                               // AUTH, remaining length 17
        &[0x18],                                     // Continue authentication
        &[0x0F],                                     // property length 15
        b"\x15\x00\x05SCRAM",                        // Authentication Method
        &[0x16, 0x00, 0x04, 0x01, 0x02, 0x03, 0x04], // Authentication Data
    ]);
    let packet = Auth {
        reason: AuthReasonCode::ContinueAuthentication,
        properties: AuthProperties {
            authentication_method: Some(s("SCRAM")),
            authentication_data: Some(Bytes::from_static(&[1, 2, 3, 4])),
            ..Default::default()
        },
    };
    assert_wire(V5, &bytes, &Packet::Auth(Box::new(packet)));

    let bytes = wire(&[
        &[0xF0, 0x16],             // AUTH, remaining length 22
        &[0x19],                   // Re-authenticate
        &[0x14],                   // property length 20
        b"\x15\x00\x05SCRAM",      // Authentication Method
        b"\x1F\x00\x02hi",         // Reason String
        b"\x26\x00\x01k\x00\x01v", // User Property
    ]);
    let packet = Auth {
        reason: AuthReasonCode::ReAuthenticate,
        properties: AuthProperties {
            authentication_method: Some(s("SCRAM")),
            authentication_data: None,
            reason_string: Some(s("hi")),
            user_properties: vec![user("k", "v")],
        },
    };
    assert_wire(V5, &bytes, &Packet::Auth(Box::new(packet)));

    // Success that ends a re-authentication, naming the method.
    let bytes = wire(&[
        &[0xF0, 0x0A],        // AUTH, remaining length 10
        &[0x00],              // Success
        &[0x08],              // property length 8
        b"\x15\x00\x05SCRAM", // Authentication Method
    ]);
    let packet = Auth {
        reason: AuthReasonCode::Success,
        properties: AuthProperties {
            authentication_method: Some(s("SCRAM")),
            ..Default::default()
        },
    };
    assert_wire(V5, &bytes, &Packet::Auth(Box::new(packet)));
}

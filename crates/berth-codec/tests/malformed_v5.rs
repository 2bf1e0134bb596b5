//! One test per malformed or protocol-violating MQTT 5.0 property block, property and reason
//! code (§2.2.2, §2.4 and each packet's property and reason code tables). Each asserts the exact
//! `DecodeError`, its `kind()` and the reason code a server answers with (`disconnect_reason()`,
//! or `connack_reason()` for a CONNECT).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use berth_codec::{
    AuthReasonCode, ConnectReasonCode, DecodeError, DecodeOptions, DisconnectReasonCode, ErrorKind,
    Packet, PacketType, PropertyId, ProtocolVersion, PubAckReasonCode, PubRelReasonCode,
    StringError, SubAckReasonCode, TopicError, UnsubAckReasonCode, decode,
};
use bytes::BytesMut;

use ProtocolVersion::{V3_1_1, V5};
use support::frame;
use support::malformed::connect_refused_under;

/// A property block: its length (one byte here), then the properties.
fn props(properties: &[&[u8]]) -> Vec<u8> {
    let properties = properties.concat();
    assert!(properties.len() < 128);
    [&[properties.len() as u8][..], &properties].concat()
}

fn decode_v5(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    decode(&mut BytesMut::from(bytes), &DecodeOptions::new(V5))
}

/// The shared assertions, for a connection of MQTT 5: every packet in this file is one.
#[track_caller]
fn malformed(bytes: &[u8], expected: DecodeError) {
    support::malformed::malformed(V5, bytes, expected);
}

#[track_caller]
fn protocol_error(bytes: &[u8], expected: DecodeError) {
    support::malformed::protocol_error(V5, bytes, expected);
}

/// A CONNECT failure, answered with CONNACK `connack` (0x81 malformed, 0x82 protocol error).
#[track_caller]
fn connect_refused(bytes: &[u8], expected: DecodeError, connack: u8) {
    let kind = if connack == 0x81 {
        ErrorKind::Malformed
    } else {
        ErrorKind::ProtocolError
    };
    connect_refused_under(V5, bytes, expected, kind, connack);
}

/// CONNECT, clean start, keep alive 60, with these CONNECT properties and client id "c".
fn connect(properties: &[&[u8]]) -> Vec<u8> {
    let block = props(properties);
    frame(
        0x10,
        &[
            b"\x00\x04MQTT\x05",
            &[0x02, 0x00, 0x3C],
            &block,
            b"\x00\x01c",
        ],
    )
}

/// CONNECT with a will (QoS 0, topic "w", payload "m") carrying these will properties.
fn connect_with_will(will_properties: &[&[u8]]) -> Vec<u8> {
    let block = props(will_properties);
    let head: &[u8] = b"\x00\x04MQTT\x05";
    frame(
        0x10,
        &[
            head,
            &[0x06, 0x00, 0x3C, 0x00],
            b"\x00\x01c",
            &block,
            b"\x00\x01w\x00\x01m",
        ],
    )
}

/// PUBLISH QoS 0 to "a" with these properties and payload "x".
fn publish(properties: &[&[u8]]) -> Vec<u8> {
    frame(0x30, &[b"\x00\x01a", &props(properties), b"x"])
}

/// CONNACK accepted, with these properties.
fn connack(properties: &[&[u8]]) -> Vec<u8> {
    frame(0x20, &[&[0x00, 0x00], &props(properties)])
}

/// PUBACK for packet identifier 1, Success, with these properties.
fn puback(properties: &[&[u8]]) -> Vec<u8> {
    frame(0x40, &[&[0x00, 0x01, 0x00], &props(properties)])
}

/// SUBSCRIBE (packet identifier 1) to "a" at QoS 0 with these properties.
fn subscribe(properties: &[&[u8]]) -> Vec<u8> {
    frame(
        0x82,
        &[&[0x00, 0x01], &props(properties), b"\x00\x01a", &[0x00]],
    )
}

/// AUTH with a reason code and these properties.
fn auth(reason: u8, properties: &[&[u8]]) -> Vec<u8> {
    frame(0xF0, &[&[reason], &props(properties)])
}

const SCRAM: &[u8] = b"\x15\x00\x05SCRAM"; // Authentication Method "SCRAM"

fn not_allowed(packet: PacketType, property: PropertyId) -> DecodeError {
    DecodeError::PropertyNotAllowed { packet, property }
}

fn duplicate(packet: PacketType, property: PropertyId) -> DecodeError {
    DecodeError::DuplicateProperty { packet, property }
}

fn invalid_value(packet: PacketType, property: PropertyId, value: u32) -> DecodeError {
    DecodeError::InvalidPropertyValue {
        packet,
        property,
        value,
    }
}

// ---------------------------------------------------------------------------------------------
// Property block framing
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_property_identifier() {
    for id in [0x00, 0x04, 0x05, 0x0A, 0x14, 0x1B, 0x20, 0x2B, 0x7F] {
        let expected = DecodeError::UnknownProperty {
            packet: PacketType::Publish,
            id: u32::from(id),
        };
        malformed(&publish(&[&[id, 0x00]]), expected);
    }
}

#[test]
fn unknown_property_identifier_in_connect() {
    let expected = DecodeError::UnknownProperty {
        packet: PacketType::Connect,
        id: 0x30,
    };
    connect_refused(&connect(&[&[0x30, 0x00]]), expected, 0x81);
}

#[test]
fn property_length_with_a_fifth_byte() {
    // PUBACK: packet identifier, reason code, then a five-byte property length.
    let bytes = frame(
        0x40,
        &[&[0x00, 0x01, 0x00], &[0xFF, 0xFF, 0xFF, 0xFF, 0x01]],
    );
    let expected = DecodeError::VariableIntegerTooLong {
        packet: PacketType::PubAck,
    };
    malformed(&bytes, expected);
}

#[test]
fn subscription_identifier_with_a_fifth_byte() {
    let bytes = publish(&[&[0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]]);
    let expected = DecodeError::VariableIntegerTooLong {
        packet: PacketType::Publish,
    };
    malformed(&bytes, expected);
}

#[test]
fn property_length_beyond_the_packet() {
    // PUBACK whose property length (5) runs past its remaining length.
    let expected = DecodeError::UnexpectedEnd {
        packet: PacketType::PubAck,
        field: "properties",
    };
    malformed(&[0x40, 0x04, 0x00, 0x01, 0x00, 0x05], expected);
}

#[test]
fn property_value_cut_short_by_the_property_length() {
    // Message Expiry Interval needs four bytes; the block ends after two.
    let expected = DecodeError::UnexpectedEnd {
        packet: PacketType::Publish,
        field: "property value",
    };
    malformed(&publish(&[&[0x02, 0x00, 0x00]]), expected);
}

#[test]
fn connack_without_property_length() {
    let expected = DecodeError::UnexpectedEnd {
        packet: PacketType::ConnAck,
        field: "property length",
    };
    malformed(&[0x20, 0x02, 0x00, 0x00], expected);
}

#[test]
fn puback_with_bytes_after_its_properties() {
    let expected = DecodeError::TrailingBytes {
        packet: PacketType::PubAck,
        count: 1,
    };
    malformed(&[0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0xFF], expected);
}

// ---------------------------------------------------------------------------------------------
// Properties a packet may not carry
// ---------------------------------------------------------------------------------------------

#[test]
fn topic_alias_in_connect() {
    let expected = not_allowed(PacketType::Connect, PropertyId::TopicAlias);
    connect_refused(&connect(&[&[0x23, 0x00, 0x01]]), expected, 0x81);
}

#[test]
fn will_delay_interval_in_connect_properties() {
    // Will Delay Interval belongs in the will properties, not the CONNECT properties.
    let expected = not_allowed(PacketType::Connect, PropertyId::WillDelayInterval);
    connect_refused(&connect(&[&[0x18, 0, 0, 0, 1]]), expected, 0x81);
}

#[test]
fn session_expiry_interval_in_will_properties() {
    let expected = not_allowed(PacketType::Connect, PropertyId::SessionExpiryInterval);
    connect_refused(&connect_with_will(&[&[0x11, 0, 0, 0, 1]]), expected, 0x81);
}

#[test]
fn session_expiry_interval_in_publish() {
    let expected = not_allowed(PacketType::Publish, PropertyId::SessionExpiryInterval);
    malformed(&publish(&[&[0x11, 0, 0, 0, 1]]), expected);
}

#[test]
fn reason_string_in_subscribe() {
    let expected = not_allowed(PacketType::Subscribe, PropertyId::ReasonString);
    malformed(&subscribe(&[b"\x1F\x00\x01r"]), expected);
}

#[test]
fn subscription_identifier_in_unsubscribe() {
    let bytes = frame(
        0xA2,
        &[&[0x00, 0x01], &props(&[&[0x0B, 0x01]]), b"\x00\x01a"],
    );
    let expected = not_allowed(PacketType::Unsubscribe, PropertyId::SubscriptionIdentifier);
    malformed(&bytes, expected);
}

#[test]
fn authentication_method_in_puback() {
    let expected = not_allowed(PacketType::PubAck, PropertyId::AuthenticationMethod);
    malformed(&puback(&[SCRAM]), expected);
}

#[test]
fn server_keep_alive_in_disconnect() {
    let bytes = frame(0xE0, &[&[0x00], &props(&[&[0x13, 0x00, 0x0A]])]);
    let expected = not_allowed(PacketType::Disconnect, PropertyId::ServerKeepAlive);
    malformed(&bytes, expected);
}

#[test]
fn topic_alias_in_connack() {
    let expected = not_allowed(PacketType::ConnAck, PropertyId::TopicAlias);
    malformed(&connack(&[&[0x23, 0x00, 0x01]]), expected);
}

// ---------------------------------------------------------------------------------------------
// A single-valued property more than once (§2.2.2.2: Protocol Error)
// ---------------------------------------------------------------------------------------------

#[test]
fn session_expiry_interval_twice_in_connect() {
    let twice = connect(&[&[0x11, 0, 0, 0, 1], &[0x11, 0, 0, 0, 2]]);
    let expected = duplicate(PacketType::Connect, PropertyId::SessionExpiryInterval);
    connect_refused(&twice, expected, 0x82);
}

#[test]
fn will_delay_interval_twice() {
    let twice = connect_with_will(&[&[0x18, 0, 0, 0, 1], &[0x18, 0, 0, 0, 1]]);
    let expected = duplicate(PacketType::Connect, PropertyId::WillDelayInterval);
    connect_refused(&twice, expected, 0x82);
}

#[test]
fn topic_alias_twice_in_publish() {
    let twice = publish(&[&[0x23, 0x00, 0x01], &[0x23, 0x00, 0x02]]);
    protocol_error(
        &twice,
        duplicate(PacketType::Publish, PropertyId::TopicAlias),
    );
}

#[test]
fn content_type_twice_in_publish() {
    let twice = publish(&[b"\x03\x00\x01a", b"\x03\x00\x01b"]);
    protocol_error(
        &twice,
        duplicate(PacketType::Publish, PropertyId::ContentType),
    );
}

#[test]
fn reason_string_twice_in_puback() {
    let twice = puback(&[b"\x1F\x00\x01a", b"\x1F\x00\x01a"]);
    protocol_error(
        &twice,
        duplicate(PacketType::PubAck, PropertyId::ReasonString),
    );
}

#[test]
fn subscription_identifier_twice_in_subscribe() {
    // PUBLISH may repeat it (one per matching subscription); SUBSCRIBE may not.
    let twice = subscribe(&[&[0x0B, 0x01], &[0x0B, 0x02]]);
    let expected = duplicate(PacketType::Subscribe, PropertyId::SubscriptionIdentifier);
    protocol_error(&twice, expected);
}

#[test]
fn authentication_method_twice_in_auth() {
    let twice = auth(0x18, &[SCRAM, SCRAM]);
    protocol_error(
        &twice,
        duplicate(PacketType::Auth, PropertyId::AuthenticationMethod),
    );
}

#[test]
fn maximum_qos_twice_in_connack() {
    let twice = connack(&[&[0x24, 0x00], &[0x24, 0x01]]);
    protocol_error(
        &twice,
        duplicate(PacketType::ConnAck, PropertyId::MaximumQoS),
    );
}

// ---------------------------------------------------------------------------------------------
// Property values out of range (Protocol Error)
// ---------------------------------------------------------------------------------------------

#[test]
fn receive_maximum_0() {
    let expected = invalid_value(PacketType::Connect, PropertyId::ReceiveMaximum, 0);
    connect_refused(&connect(&[&[0x21, 0x00, 0x00]]), expected, 0x82);
    let expected = invalid_value(PacketType::ConnAck, PropertyId::ReceiveMaximum, 0);
    protocol_error(&connack(&[&[0x21, 0x00, 0x00]]), expected);
}

#[test]
fn maximum_packet_size_0() {
    let expected = invalid_value(PacketType::Connect, PropertyId::MaximumPacketSize, 0);
    connect_refused(&connect(&[&[0x27, 0, 0, 0, 0]]), expected, 0x82);
    let expected = invalid_value(PacketType::ConnAck, PropertyId::MaximumPacketSize, 0);
    protocol_error(&connack(&[&[0x27, 0, 0, 0, 0]]), expected);
}

#[test]
fn topic_alias_0() {
    let expected = invalid_value(PacketType::Publish, PropertyId::TopicAlias, 0);
    protocol_error(&publish(&[&[0x23, 0x00, 0x00]]), expected);
}

#[test]
fn payload_format_indicator_2() {
    let expected = invalid_value(PacketType::Publish, PropertyId::PayloadFormatIndicator, 2);
    protocol_error(&publish(&[&[0x01, 0x02]]), expected);
    let expected = invalid_value(
        PacketType::Connect,
        PropertyId::PayloadFormatIndicator,
        0xFF,
    );
    connect_refused(&connect_with_will(&[&[0x01, 0xFF]]), expected, 0x82);
}

#[test]
fn request_problem_information_2() {
    let expected = invalid_value(
        PacketType::Connect,
        PropertyId::RequestProblemInformation,
        2,
    );
    connect_refused(&connect(&[&[0x17, 0x02]]), expected, 0x82);
}

#[test]
fn request_response_information_2() {
    let expected = invalid_value(
        PacketType::Connect,
        PropertyId::RequestResponseInformation,
        2,
    );
    connect_refused(&connect(&[&[0x19, 0x02]]), expected, 0x82);
}

#[test]
fn maximum_qos_2() {
    // §3.2.2.3.4: Maximum QoS is 0 or 1; 2 is expressed by leaving it out.
    let expected = invalid_value(PacketType::ConnAck, PropertyId::MaximumQoS, 2);
    protocol_error(&connack(&[&[0x24, 0x02]]), expected);
}

#[test]
fn connack_availability_flags_2() {
    let cases = [
        (0x25, PropertyId::RetainAvailable),
        (0x28, PropertyId::WildcardSubscriptionAvailable),
        (0x29, PropertyId::SubscriptionIdentifierAvailable),
        (0x2A, PropertyId::SharedSubscriptionAvailable),
    ];
    for (id, property) in cases {
        let expected = invalid_value(PacketType::ConnAck, property, 2);
        protocol_error(&connack(&[&[id, 0x02]]), expected);
    }
}

#[test]
fn subscription_identifier_0() {
    let expected = invalid_value(PacketType::Subscribe, PropertyId::SubscriptionIdentifier, 0);
    protocol_error(&subscribe(&[&[0x0B, 0x00]]), expected);
    let expected = invalid_value(PacketType::Publish, PropertyId::SubscriptionIdentifier, 0);
    protocol_error(&publish(&[&[0x0B, 0x00]]), expected);
}

// ---------------------------------------------------------------------------------------------
// Strings and topics inside properties
// ---------------------------------------------------------------------------------------------

#[test]
fn user_property_invalid_utf8_and_null_character() {
    let invalid = |source| DecodeError::InvalidString {
        packet: PacketType::Publish,
        field: "User Property",
        source,
    };
    // Key: an encoded surrogate.
    let bytes = publish(&[&[0x26, 0x00, 0x03, 0xED, 0xA0, 0x80], b"\x00\x01v"]);
    malformed(&bytes, invalid(StringError::InvalidUtf8));
    // Value: U+0000.
    let bytes = publish(&[b"\x26\x00\x01k", b"\x00\x02v\x00"]);
    malformed(&bytes, invalid(StringError::NullCharacter));
}

#[test]
fn reason_string_null_character() {
    let expected = DecodeError::InvalidString {
        packet: PacketType::PubAck,
        field: "Reason String",
        source: StringError::NullCharacter,
    };
    malformed(&puback(&[b"\x1F\x00\x01\x00"]), expected);
}

#[test]
fn response_topic_with_wildcards() {
    // [MQTT-3.3.2-14]: the Response Topic is a topic name.
    let expected = DecodeError::InvalidTopicName {
        packet: PacketType::Publish,
        source: TopicError::WildcardInName,
    };
    malformed(&publish(&[b"\x08\x00\x03r/#"]), expected.clone());
    let expected = DecodeError::InvalidTopicName {
        packet: PacketType::Connect,
        source: TopicError::WildcardInName,
    };
    connect_refused(&connect_with_will(&[b"\x08\x00\x01+"]), expected, 0x81);
}

// ---------------------------------------------------------------------------------------------
// Authentication Method and Data
// ---------------------------------------------------------------------------------------------

#[test]
fn authentication_data_without_method_in_connect() {
    // §3.1.2.11.10: Authentication Data without an Authentication Method is a Protocol Error.
    let expected = DecodeError::AuthDataWithoutMethod {
        packet: PacketType::Connect,
    };
    connect_refused(&connect(&[&[0x16, 0x00, 0x01, 0xAA]]), expected, 0x82);
}

#[test]
fn authentication_data_without_method_in_connack_and_auth() {
    let data: &[u8] = &[0x16, 0x00, 0x01, 0xAA];
    let expected = DecodeError::AuthDataWithoutMethod {
        packet: PacketType::ConnAck,
    };
    protocol_error(&connack(&[data]), expected);
    let expected = DecodeError::AuthDataWithoutMethod {
        packet: PacketType::Auth,
    };
    protocol_error(&auth(0x18, &[data]), expected);
}

#[test]
fn auth_without_authentication_method() {
    // §3.15.2.2.2: "It is a Protocol Error to omit the Authentication Method". Only the short
    // form (remaining length 0: Success, no properties) carries none.
    protocol_error(&auth(0x18, &[]), DecodeError::AuthWithoutMethod);
    protocol_error(
        &auth(0x19, &[b"\x1F\x00\x02hi"]),
        DecodeError::AuthWithoutMethod,
    );
    protocol_error(
        &auth(0x00, &[b"\x26\x00\x01k\x00\x01v"]),
        DecodeError::AuthWithoutMethod,
    );
    protocol_error(&[0xF0, 0x01, 0x18], DecodeError::AuthWithoutMethod);
    // With the method each of them is fine.
    assert!(matches!(
        decode_v5(&auth(0x18, &[SCRAM])),
        Ok(Some(Packet::Auth(_)))
    ));
    assert!(matches!(
        decode_v5(&[0xF0, 0x00]),
        Ok(Some(Packet::Auth(_)))
    ));
}

// ---------------------------------------------------------------------------------------------
// Reason codes a packet does not define (§2.4; Malformed), exhaustively
// ---------------------------------------------------------------------------------------------

/// Every byte value: the defined ones decode, every other one is `InvalidReasonCode`.
#[track_caller]
fn assert_reason_codes(packet: PacketType, defined: &[u8], bytes: impl Fn(u8) -> Vec<u8>) {
    for code in 0..=255u8 {
        if defined.contains(&code) {
            assert!(decode_v5(&bytes(code)).is_ok(), "{packet} code {code:#04x}");
        } else {
            malformed(
                &bytes(code),
                DecodeError::InvalidReasonCode { packet, code },
            );
        }
    }
}

#[test]
fn connack_undefined_reason_codes() {
    let defined: Vec<u8> = ConnectReasonCode::ALL.iter().map(|c| c.code()).collect();
    assert_reason_codes(PacketType::ConnAck, &defined, |code| {
        vec![0x20, 0x03, 0x00, code, 0x00]
    });
}

#[test]
fn puback_and_pubrec_undefined_reason_codes() {
    let defined: Vec<u8> = PubAckReasonCode::ALL.iter().map(|c| c.code()).collect();
    assert!(!defined.contains(&0x92), "0x92 belongs to PUBREL/PUBCOMP");
    assert_reason_codes(PacketType::PubAck, &defined, |code| {
        vec![0x40, 0x03, 0x00, 0x01, code]
    });
    assert_reason_codes(PacketType::PubRec, &defined, |code| {
        vec![0x50, 0x03, 0x00, 0x01, code]
    });
}

#[test]
fn pubrel_and_pubcomp_undefined_reason_codes() {
    let defined: Vec<u8> = PubRelReasonCode::ALL.iter().map(|c| c.code()).collect();
    assert_eq!(defined, [0x00, 0x92]);
    assert_reason_codes(PacketType::PubRel, &defined, |code| {
        vec![0x62, 0x03, 0x00, 0x01, code]
    });
    assert_reason_codes(PacketType::PubComp, &defined, |code| {
        vec![0x70, 0x03, 0x00, 0x01, code]
    });
}

#[test]
fn suback_undefined_reason_codes() {
    let defined: Vec<u8> = SubAckReasonCode::ALL.iter().map(|c| c.code()).collect();
    assert_reason_codes(PacketType::SubAck, &defined, |code| {
        vec![0x90, 0x04, 0x00, 0x01, 0x00, code]
    });
}

#[test]
fn unsuback_undefined_reason_codes() {
    let defined: Vec<u8> = UnsubAckReasonCode::ALL.iter().map(|c| c.code()).collect();
    assert_reason_codes(PacketType::UnsubAck, &defined, |code| {
        vec![0xB0, 0x04, 0x00, 0x01, 0x00, code]
    });
}

#[test]
fn disconnect_undefined_reason_codes() {
    let defined: Vec<u8> = DisconnectReasonCode::ALL.iter().map(|c| c.code()).collect();
    for code in [0x01, 0x84, 0x8C, 0x91] {
        assert!(!defined.contains(&code));
    }
    assert_reason_codes(PacketType::Disconnect, &defined, |code| {
        vec![0xE0, 0x01, code]
    });
}

#[test]
fn auth_undefined_reason_codes() {
    let defined: Vec<u8> = AuthReasonCode::ALL.iter().map(|c| c.code()).collect();
    assert_eq!(defined, [0x00, 0x18, 0x19]);
    assert_reason_codes(PacketType::Auth, &defined, |code| auth(code, &[SCRAM]));
}

// ---------------------------------------------------------------------------------------------
// Acknowledgements without reason codes
// ---------------------------------------------------------------------------------------------

#[test]
fn suback_without_reason_codes() {
    let expected = DecodeError::NoReasonCodes {
        packet: PacketType::SubAck,
    };
    protocol_error(&[0x90, 0x03, 0x00, 0x01, 0x00], expected.clone());
    // 3.1.1 too: one return code per requested filter.
    let err = decode(
        &mut BytesMut::from(&[0x90, 0x02, 0x00, 0x01][..]),
        &DecodeOptions::new(V3_1_1),
    );
    assert_eq!(err, Err(expected));
}

#[test]
fn unsuback_without_reason_codes() {
    let expected = DecodeError::NoReasonCodes {
        packet: PacketType::UnsubAck,
    };
    protocol_error(&[0xB0, 0x03, 0x00, 0x01, 0x00], expected);
}

//! One test per malformed or protocol-violating input that the MQTT 3.1, 3.1.1 and 5.0
//! specifications define for the fixed header, framing, strings, topics and packet identifiers
//! (CONNECT, SUBSCRIBE options, CONNACK and SUBACK are in `malformed_packets.rs`). Each asserts
//! the exact `DecodeError`, its `kind()` and the reason code a server answers with
//! (`disconnect_reason()`, or `connack_reason()` for a CONNECT).
//!
//! MQTT 5 properties and reason codes are in `malformed_v5.rs`; the packets `encode` refuses are
//! at the end of `malformed_packets.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use berth_codec::{
    ConnectReasonCode, DecodeError, DecodeOptions, DisconnectReasonCode, ErrorKind, PacketType,
    ProtocolVersion, StringError, TopicError, decode,
};
use bytes::BytesMut;

use ProtocolVersion::{V3_1, V3_1_1, V5};
use support::frame;
use support::malformed::{
    ALL, connect_refused, connect_v311, decode_err, malformed, protocol_error, subscribe_options,
};

// ---------------------------------------------------------------------------------------------
// Fixed header: packet type and flags (3.1.1 §2.2, 5.0 §2.1.3)
// ---------------------------------------------------------------------------------------------

/// Every flag value but the required one is refused from the first byte alone, before the
/// remaining length arrives.
#[track_caller]
fn assert_reserved_flags(packet: PacketType, versions: &[ProtocolVersion]) {
    let required = match packet {
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
        _ => 0b0000,
    };
    assert_eq!(packet.fixed_flags(), required);
    for &version in versions {
        for flags in (0..16u8).filter(|&f| f != required) {
            let first = ((packet as u8) << 4) | flags;
            let expected = DecodeError::InvalidHeaderFlags { packet, flags };
            malformed(version, &[first], expected.clone());
            malformed(version, &[first, 0x02, 0x00, 0x01], expected);
        }
    }
}

#[test]
fn reserved_flags_connect() {
    assert_reserved_flags(PacketType::Connect, &ALL);
}

#[test]
fn reserved_flags_connack() {
    assert_reserved_flags(PacketType::ConnAck, &ALL);
}

#[test]
fn reserved_flags_puback() {
    assert_reserved_flags(PacketType::PubAck, &ALL);
}

#[test]
fn reserved_flags_pubrec() {
    assert_reserved_flags(PacketType::PubRec, &ALL);
}

#[test]
fn reserved_flags_pubrel_must_be_0010() {
    assert_reserved_flags(PacketType::PubRel, &ALL);
}

#[test]
fn reserved_flags_pubcomp() {
    assert_reserved_flags(PacketType::PubComp, &ALL);
}

#[test]
fn reserved_flags_subscribe_must_be_0010() {
    assert_reserved_flags(PacketType::Subscribe, &ALL);
}

#[test]
fn reserved_flags_suback() {
    assert_reserved_flags(PacketType::SubAck, &ALL);
}

#[test]
fn reserved_flags_unsubscribe_must_be_0010() {
    assert_reserved_flags(PacketType::Unsubscribe, &ALL);
}

#[test]
fn reserved_flags_unsuback() {
    assert_reserved_flags(PacketType::UnsubAck, &ALL);
}

#[test]
fn reserved_flags_pingreq() {
    assert_reserved_flags(PacketType::PingReq, &ALL);
}

#[test]
fn reserved_flags_pingresp() {
    assert_reserved_flags(PacketType::PingResp, &ALL);
}

#[test]
fn reserved_flags_disconnect() {
    assert_reserved_flags(PacketType::Disconnect, &ALL);
}

#[test]
fn reserved_flags_auth() {
    assert_reserved_flags(PacketType::Auth, &[V5]);
}

#[test]
fn packet_type_0_is_reserved() {
    for version in ALL {
        let expected = DecodeError::ReservedPacketType {
            packet_type: 0,
            version,
        };
        malformed(version, &[0x00, 0x00], expected);
    }
}

#[test]
fn auth_packet_type_15_is_reserved_before_v5() {
    for version in [V3_1, V3_1_1] {
        let expected = DecodeError::ReservedPacketType {
            packet_type: 15,
            version,
        };
        malformed(version, &[0xF0, 0x00], expected);
    }
}

#[test]
fn publish_qos_3() {
    // 3.1.1 §3.3.1.2 / 5.0 §3.3.1.2: both QoS bits set is malformed.
    for version in ALL {
        for first in [0x36, 0x37, 0x3E, 0x3F] {
            let expected = DecodeError::InvalidQoS {
                packet: PacketType::Publish,
            };
            malformed(version, &[first, 0x03, 0x00, 0x01, b'a'], expected);
        }
    }
}

#[test]
fn publish_dup_with_qos_0() {
    // [MQTT-3.3.1-2]: DUP must be 0 for QoS 0.
    for version in ALL {
        malformed(
            version,
            &[0x38, 0x03, 0x00, 0x01, b'a'],
            DecodeError::DupWithQoS0,
        );
        malformed(version, &[0x39], DecodeError::DupWithQoS0);
    }
}

// ---------------------------------------------------------------------------------------------
// Remaining length and maximum packet size
// ---------------------------------------------------------------------------------------------

#[test]
fn remaining_length_with_a_fifth_byte() {
    for version in ALL {
        let five = [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
        malformed(version, &five, DecodeError::RemainingLengthTooLong);
        // Refused as soon as the fourth byte says "continue", before a fifth arrives.
        malformed(version, &five[..5], DecodeError::RemainingLengthTooLong);
        malformed(
            version,
            &[0xC0, 0x80, 0x80, 0x80, 0x80],
            DecodeError::RemainingLengthTooLong,
        );
    }
}

#[test]
fn maximum_packet_size_exceeded_from_the_fixed_header_alone() {
    // PUBLISH announcing 1000 bytes of body (0xE8 0x07): 1003 bytes with the fixed header.
    let header = [0x30, 0xE8, 0x07];
    for version in ALL {
        let opts = DecodeOptions::new(version).with_max_packet_size(1002);
        let err = decode_err(version, &header, opts);
        assert_eq!(
            err,
            DecodeError::PacketTooLarge {
                size: 1003,
                max: 1002
            }
        );
        assert_eq!(err.kind(), ErrorKind::PacketTooLarge);
        assert_eq!(
            err.disconnect_reason(),
            DisconnectReasonCode::PacketTooLarge
        );
        assert_eq!(err.disconnect_reason().code(), 0x95);
        // Exactly at the maximum the decoder just waits for the body.
        let mut buf = BytesMut::from(&header[..]);
        let opts = DecodeOptions::new(version).with_max_packet_size(1003);
        assert_eq!(decode(&mut buf, &opts), Ok(None));
        assert_eq!(&buf[..], &header);
    }
}

#[test]
fn maximum_packet_size_exceeded_by_connect() {
    let opts = DecodeOptions::new(V5).with_max_packet_size(100);
    let err = decode_err(V5, &[0x10, 0x80, 0x01], opts);
    assert_eq!(
        err,
        DecodeError::PacketTooLarge {
            size: 131,
            max: 100
        }
    );
    assert_eq!(err.kind(), ErrorKind::PacketTooLarge);
    assert_eq!(err.connack_reason(), ConnectReasonCode::PacketTooLarge);
    assert_eq!(err.connack_reason().code(), 0x95);
}

// ---------------------------------------------------------------------------------------------
// Body shorter than its fields, and bytes after the last field
// ---------------------------------------------------------------------------------------------

fn unexpected_end(packet: PacketType, field: &'static str) -> DecodeError {
    DecodeError::UnexpectedEnd { packet, field }
}

#[test]
fn puback_shorter_than_its_packet_identifier() {
    for version in ALL {
        let expected = unexpected_end(PacketType::PubAck, "packet identifier");
        malformed(version, &[0x40, 0x01, 0x00], expected.clone());
        malformed(version, &[0x40, 0x00], expected);
    }
}

#[test]
fn publish_topic_length_beyond_the_body() {
    // Topic length 10, but the remaining length leaves room for 3 bytes.
    for version in ALL {
        let bytes = [0x30, 0x05, 0x00, 0x0A, b'a', b'b', b'c'];
        malformed(
            version,
            &bytes,
            unexpected_end(PacketType::Publish, "topic name"),
        );
    }
}

#[test]
fn connect_ends_before_keep_alive() {
    let bytes = frame(0x10, &[b"\x00\x04MQTT\x04\x02"]);
    let expected = unexpected_end(PacketType::Connect, "keep alive");
    connect_refused(&bytes, expected, ErrorKind::Malformed, 0x81);
}

#[test]
fn connect_ends_before_its_password() {
    // Flags announce a user name and a password; only the user name is there.
    let bytes = connect_v311(0xC2, &[b"\x00\x01c", b"\x00\x01u"]);
    let expected = unexpected_end(PacketType::Connect, "password");
    connect_refused(&bytes, expected, ErrorKind::Malformed, 0x81);
}

#[test]
fn subscribe_filter_without_its_options_byte() {
    let bytes = frame(0x82, &[&[0x00, 0x01], b"\x00\x03a/b"]);
    let expected = unexpected_end(PacketType::Subscribe, "subscription options");
    malformed(V3_1_1, &bytes, expected);
}

#[test]
fn pingreq_with_a_body() {
    for version in ALL {
        let expected = DecodeError::TrailingBytes {
            packet: PacketType::PingReq,
            count: 1,
        };
        malformed(version, &[0xC0, 0x01, 0x00], expected);
    }
}

#[test]
fn pingresp_with_a_body() {
    for version in ALL {
        let expected = DecodeError::TrailingBytes {
            packet: PacketType::PingResp,
            count: 2,
        };
        malformed(version, &[0xD0, 0x02, 0x00, 0x00], expected);
    }
}

#[test]
fn v311_disconnect_with_a_body() {
    // 3.1.1 §3.14: no variable header, no payload. (MQTT 5 reads the byte as a reason code.)
    for version in [V3_1, V3_1_1] {
        let expected = DecodeError::TrailingBytes {
            packet: PacketType::Disconnect,
            count: 1,
        };
        malformed(version, &[0xE0, 0x01, 0x00], expected);
    }
}

#[test]
fn v311_puback_with_remaining_length_3() {
    for version in [V3_1, V3_1_1] {
        let expected = DecodeError::TrailingBytes {
            packet: PacketType::PubAck,
            count: 1,
        };
        malformed(version, &[0x40, 0x03, 0x00, 0x0A, 0x00], expected);
    }
}

#[test]
fn v311_connack_and_unsuback_with_trailing_bytes() {
    let connack = DecodeError::TrailingBytes {
        packet: PacketType::ConnAck,
        count: 1,
    };
    malformed(V3_1_1, &[0x20, 0x03, 0x00, 0x00, 0x00], connack);
    let unsuback = DecodeError::TrailingBytes {
        packet: PacketType::UnsubAck,
        count: 1,
    };
    malformed(V3_1_1, &[0xB0, 0x03, 0x00, 0x0A, 0x00], unsuback);
}

#[test]
fn connect_with_a_byte_after_the_client_identifier() {
    let bytes = connect_v311(0x02, &[b"\x00\x01c", &[0x00]]);
    let expected = DecodeError::TrailingBytes {
        packet: PacketType::Connect,
        count: 1,
    };
    connect_refused(&bytes, expected, ErrorKind::Malformed, 0x81);
}

// ---------------------------------------------------------------------------------------------
// UTF-8 strings (3.1.1 §1.5.3, 5.0 §1.5.4)
// ---------------------------------------------------------------------------------------------

fn invalid_string(packet: PacketType, field: &'static str, source: StringError) -> DecodeError {
    DecodeError::InvalidString {
        packet,
        field,
        source,
    }
}

/// PUBLISH QoS 0 to `topic` (no properties in MQTT 5) with payload "payload".
fn publish_qos0(version: ProtocolVersion, topic: &[u8]) -> Vec<u8> {
    let properties: &[u8] = if version.is_v5() { &[0x00] } else { &[] };
    let len = (topic.len() as u16).to_be_bytes();
    frame(0x30, &[&len, topic, properties, b"payload"])
}

#[test]
fn topic_name_invalid_utf8() {
    let expected = invalid_string(PacketType::Publish, "topic name", StringError::InvalidUtf8);
    for version in ALL {
        malformed(
            version,
            &publish_qos0(version, &[0xC3, 0x28]),
            expected.clone(),
        ); // bad continuation
        malformed(
            version,
            &publish_qos0(version, &[0xC0, 0xAF]),
            expected.clone(),
        ); // overlong '/'
        malformed(
            version,
            &publish_qos0(version, &[b'a', 0xFF]),
            expected.clone(),
        ); // never valid
    }
}

#[test]
fn topic_name_encoded_surrogate() {
    // U+D800 and U+DFFF encoded as UTF-8 ([MQTT-1.5.4-1]).
    let expected = invalid_string(PacketType::Publish, "topic name", StringError::InvalidUtf8);
    for version in ALL {
        malformed(
            version,
            &publish_qos0(version, &[b'a', 0xED, 0xA0, 0x80]),
            expected.clone(),
        );
        malformed(
            version,
            &publish_qos0(version, &[0xED, 0xBF, 0xBF]),
            expected.clone(),
        );
    }
}

#[test]
fn topic_name_null_character() {
    let expected = invalid_string(
        PacketType::Publish,
        "topic name",
        StringError::NullCharacter,
    );
    for version in ALL {
        malformed(version, &publish_qos0(version, b"a/\0"), expected.clone());
    }
}

#[test]
fn client_identifier_null_character() {
    let bytes = connect_v311(0x02, &[b"\x00\x03a\x00b"]);
    let expected = invalid_string(
        PacketType::Connect,
        "client identifier",
        StringError::NullCharacter,
    );
    connect_refused(&bytes, expected, ErrorKind::Malformed, 0x81);
}

#[test]
fn user_name_invalid_utf8() {
    let bytes = connect_v311(0x82, &[b"\x00\x01c", &[0x00, 0x02, 0xED, 0xB0]]);
    let expected = invalid_string(PacketType::Connect, "user name", StringError::InvalidUtf8);
    connect_refused(&bytes, expected, ErrorKind::Malformed, 0x81);
}

#[test]
fn topic_filter_invalid_utf8() {
    let bytes = frame(0x82, &[&[0x00, 0x01], &[0x00, 0x02, 0xE2, 0x82], &[0x00]]);
    let expected = invalid_string(
        PacketType::Subscribe,
        "topic filter",
        StringError::InvalidUtf8,
    );
    malformed(V3_1_1, &bytes, expected);
}

// ---------------------------------------------------------------------------------------------
// Topic names and filters (3.1.1 §4.7, 5.0 §4.7)
// ---------------------------------------------------------------------------------------------

fn bad_name(packet: PacketType, source: TopicError) -> DecodeError {
    DecodeError::InvalidTopicName { packet, source }
}

#[test]
fn publish_topic_name_with_wildcards() {
    let expected = bad_name(PacketType::Publish, TopicError::WildcardInName);
    for version in ALL {
        for topic in [&b"a/+"[..], b"a/#", b"+", b"#", b"a+b"] {
            malformed(version, &publish_qos0(version, topic), expected.clone());
        }
    }
}

#[test]
fn will_topic_with_wildcards() {
    // Will flag, QoS 0: client id "c", will topic "w/#", will message "m".
    let bytes = connect_v311(0x06, &[b"\x00\x01c", b"\x00\x03w/#", b"\x00\x01m"]);
    let expected = bad_name(PacketType::Connect, TopicError::WildcardInName);
    connect_refused(&bytes, expected.clone(), ErrorKind::Malformed, 0x81);
    let bytes = connect_v311(0x06, &[b"\x00\x01c", b"\x00\x03+/w", b"\x00\x01m"]);
    connect_refused(&bytes, expected, ErrorKind::Malformed, 0x81);
}

#[test]
fn v311_publish_empty_topic_name() {
    // 3.1.1 has no topic aliases: a topic name is at least one character long.
    let expected = bad_name(PacketType::Publish, TopicError::Empty);
    for version in [V3_1, V3_1_1] {
        malformed(version, &publish_qos0(version, b""), expected.clone());
    }
}

#[test]
fn v5_publish_empty_topic_name_without_topic_alias() {
    // §3.3.2.3.4: a zero-length topic name without a Topic Alias is a Protocol Error.
    let bytes = frame(0x30, &[&[0x00, 0x00], &[0x00], b"payload"]);
    protocol_error(V5, &bytes, DecodeError::EmptyTopicWithoutAlias);
}

#[track_caller]
fn assert_bad_filter(filter: &[u8], source: TopicError) {
    for version in ALL {
        let expected = DecodeError::InvalidTopicFilter {
            packet: PacketType::Subscribe,
            source,
        };
        malformed(version, &subscribe_options(version, filter, 0x00), expected);
    }
}

#[test]
fn filter_multi_level_wildcard_not_last() {
    assert_bad_filter(b"a/#/b", TopicError::MisplacedMultiLevelWildcard);
}

#[test]
fn filter_multi_level_wildcard_sharing_a_level() {
    assert_bad_filter(b"a/b#", TopicError::MisplacedMultiLevelWildcard);
}

#[test]
fn filter_single_level_wildcard_sharing_a_level() {
    assert_bad_filter(b"a+", TopicError::MisplacedSingleLevelWildcard);
    assert_bad_filter(b"a/+b/c", TopicError::MisplacedSingleLevelWildcard);
}

#[test]
fn filter_shared_subscription_with_empty_share_name() {
    assert_bad_filter(b"$share//x", TopicError::InvalidShareName);
}

#[test]
fn filter_shared_subscription_without_a_filter() {
    assert_bad_filter(b"$share/g", TopicError::InvalidShareName);
    assert_bad_filter(b"$share/g/", TopicError::EmptySharedFilter);
}

#[test]
fn filter_empty() {
    assert_bad_filter(b"", TopicError::Empty);
}

#[test]
fn unsubscribe_filter_with_misplaced_wildcard() {
    let bytes = frame(0xA2, &[&[0x00, 0x01], b"\x00\x05a/#/b"]);
    let expected = DecodeError::InvalidTopicFilter {
        packet: PacketType::Unsubscribe,
        source: TopicError::MisplacedMultiLevelWildcard,
    };
    malformed(V3_1_1, &bytes, expected);
}

// ---------------------------------------------------------------------------------------------
// Packet identifier 0 ([MQTT-2.2.1-3] / 5.0 §2.2.1)
// ---------------------------------------------------------------------------------------------

#[track_caller]
fn assert_zero_id(packet: PacketType, bytes: &[u8], versions: &[ProtocolVersion]) {
    for &version in versions {
        protocol_error(version, bytes, DecodeError::ZeroPacketId { packet });
    }
}

#[test]
fn zero_packet_id_publish_qos1_and_qos2() {
    assert_zero_id(
        PacketType::Publish,
        &[0x32, 0x05, 0x00, 0x01, b'a', 0x00, 0x00],
        &ALL,
    );
    assert_zero_id(
        PacketType::Publish,
        &[0x34, 0x05, 0x00, 0x01, b'a', 0x00, 0x00],
        &ALL,
    );
}

#[test]
fn zero_packet_id_puback_pubrec_pubrel_pubcomp() {
    assert_zero_id(PacketType::PubAck, &[0x40, 0x02, 0x00, 0x00], &ALL);
    assert_zero_id(PacketType::PubRec, &[0x50, 0x02, 0x00, 0x00], &ALL);
    assert_zero_id(PacketType::PubRel, &[0x62, 0x02, 0x00, 0x00], &ALL);
    assert_zero_id(PacketType::PubComp, &[0x70, 0x02, 0x00, 0x00], &ALL);
}

#[test]
fn zero_packet_id_subscribe() {
    let bytes = [0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00];
    assert_zero_id(PacketType::Subscribe, &bytes, &[V3_1, V3_1_1]);
}

#[test]
fn zero_packet_id_unsubscribe() {
    let bytes = [0xA2, 0x05, 0x00, 0x00, 0x00, 0x01, b'a'];
    assert_zero_id(PacketType::Unsubscribe, &bytes, &[V3_1, V3_1_1]);
}

#[test]
fn zero_packet_id_suback_and_unsuback() {
    assert_zero_id(
        PacketType::SubAck,
        &[0x90, 0x03, 0x00, 0x00, 0x00],
        &[V3_1_1],
    );
    assert_zero_id(PacketType::UnsubAck, &[0xB0, 0x02, 0x00, 0x00], &[V3_1_1]);
}

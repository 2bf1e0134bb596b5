//! Property tests of the codec as a whole:
//!
//! - every packet of every version, with arbitrary valid content, survives `decode(encode(p))`,
//!   `encoded_len` agrees with the bytes written, and decoding consumes exactly those bytes;
//! - arbitrary, framed-garbage, truncated and mutated input never panics, `Ok(None)` means no
//!   complete frame was buffered, the buffer never grows, and whatever does decode re-encodes to
//!   itself;
//! - a valid encoding fed in two pieces (or byte by byte) yields `Ok(None)` and then the packet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "roundtrip/seeds.rs"]
mod seeds;
#[path = "roundtrip/strategies.rs"]
mod strategies;
mod support;

use std::path::Path;

use berth_codec::{
    DecodeOptions, MqttString, Packet, PacketType, ProtocolVersion, Publish, QoS, TopicName,
    decode, encode, encoded_len,
};
use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use strategies::{packet, version, versioned_packet};

const CASES: u32 = 512;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures are reported with their minimal input; no regression files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn encode_to_vec(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    let written = encode(packet, version, &mut out)
        .unwrap_or_else(|e| panic!("{packet:?} does not encode for {version}: {e}"));
    assert_eq!(
        written,
        out.len(),
        "encode's return value is the bytes written"
    );
    assert_eq!(
        encoded_len(packet, version),
        Ok(written),
        "encoded_len disagrees with encode"
    );
    out.to_vec()
}

/// How the fixed header frames `buf`, computed independently of the codec.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// Not enough bytes for the fixed header or the body it announces.
    Incomplete,
    /// A whole packet of this many bytes is buffered.
    Complete(usize),
    /// The remaining length runs into a fifth byte.
    BadLength,
}

fn frame(buf: &[u8]) -> Frame {
    if buf.is_empty() {
        return Frame::Incomplete;
    }
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Frame::Incomplete;
        };
        remaining |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            let total = 2 + i + remaining;
            return if buf.len() >= total {
                Frame::Complete(total)
            } else {
                Frame::Incomplete
            };
        }
    }
    Frame::BadLength
}

/// Asserts `decode(encode(p)) == p` for a packet the decoder produced itself.
fn assert_reencodes(packet: &Packet, version: ProtocolVersion) {
    let bytes = encode_to_vec(packet, version);
    let mut buf = BytesMut::from(&bytes[..]);
    match decode(&mut buf, &DecodeOptions::new(version)) {
        Ok(Some(again)) => {
            assert_eq!(&again, packet, "re-encoded as {bytes:02x?} for {version}");
            assert!(buf.is_empty(), "re-decoding left {} bytes", buf.len());
        }
        other => panic!("{packet:?} re-encoded as {bytes:02x?} for {version} gives {other:?}"),
    }
}

/// Decodes `input` as a stream of packets until the decoder needs more bytes or fails, checking
/// the framing contract at every step. Returns how many packets decoded.
fn decode_stream(input: &[u8], opts: &DecodeOptions) -> usize {
    let mut buf = BytesMut::from(input);
    let mut decoded = 0;
    loop {
        let before = buf.clone();
        let result = decode(&mut buf, opts);
        assert!(buf.len() <= before.len(), "decode grew the buffer");
        match result {
            Ok(Some(packet)) => {
                let Frame::Complete(len) = frame(&before) else {
                    panic!("decoded {packet:?} from {before:02x?}, which frames no whole packet");
                };
                assert!(len <= opts.max_packet_size as usize);
                assert_eq!(
                    &buf[..],
                    &before[len..],
                    "decode consumed other than one frame"
                );
                assert_reencodes(&packet, opts.version);
                decoded += 1;
            }
            Ok(None) => {
                assert_eq!(
                    frame(&before),
                    Frame::Incomplete,
                    "Ok(None) with a whole frame buffered: {before:02x?}"
                );
                assert_eq!(buf, before, "Ok(None) changed the buffer");
                return decoded;
            }
            Err(_) => return decoded,
        }
    }
}

/// The full round-trip check: `decode(encode(p)) == p` consuming exactly the encoded bytes.
fn assert_roundtrip(packet: &Packet, version: ProtocolVersion, trailer: &[u8]) {
    let bytes = encode_to_vec(packet, version);
    assert_eq!(frame(&bytes), Frame::Complete(bytes.len()));
    let mut buf = BytesMut::from(&bytes[..]);
    buf.extend_from_slice(trailer);
    let decoded = decode(&mut buf, &DecodeOptions::new(version))
        .unwrap_or_else(|e| panic!("{packet:?} encoded as {bytes:02x?} fails to decode: {e}"))
        .unwrap_or_else(|| panic!("{packet:?} encoded as {bytes:02x?} decodes as incomplete"));
    assert_eq!(&decoded, packet, "encoded as {bytes:02x?}");
    assert_eq!(
        &buf[..],
        trailer,
        "decode did not consume exactly the packet"
    );
    // An exact maximum packet size admits the packet; one byte less refuses it.
    let exact = DecodeOptions::new(version).with_max_packet_size(bytes.len() as u32);
    assert_eq!(
        decode(&mut BytesMut::from(&bytes[..]), &exact)
            .unwrap()
            .as_ref(),
        Some(packet)
    );
    let smaller = exact.with_max_packet_size(bytes.len() as u32 - 1);
    assert!(decode(&mut BytesMut::from(&bytes[..]), &smaller).is_err());
}

proptest! {
    #![proptest_config(config(CASES * 2))]

    #[test]
    fn roundtrip_v3_1(packet in packet(ProtocolVersion::V3_1), trailer in vec(any::<u8>(), 0..4)) {
        assert_roundtrip(&packet, ProtocolVersion::V3_1, &trailer);
    }

    #[test]
    fn roundtrip_v3_1_1(
        packet in packet(ProtocolVersion::V3_1_1),
        trailer in vec(any::<u8>(), 0..4),
    ) {
        assert_roundtrip(&packet, ProtocolVersion::V3_1_1, &trailer);
    }

    #[test]
    fn roundtrip_v5(packet in packet(ProtocolVersion::V5), trailer in vec(any::<u8>(), 0..4)) {
        assert_roundtrip(&packet, ProtocolVersion::V5, &trailer);
    }

    /// Several packets back to back in one buffer come out one by one, in order.
    #[test]
    fn packet_streams_decode_in_order(
        (version, packets) in version().prop_flat_map(|v| (Just(v), vec(packet(v), 1..6))),
    ) {
        let mut buf = BytesMut::new();
        for p in &packets {
            encode(p, version, &mut buf).unwrap();
        }
        let opts = DecodeOptions::new(version);
        for p in &packets {
            let decoded = decode(&mut buf, &opts).unwrap();
            prop_assert_eq!(decoded.as_ref(), Some(p));
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decode(&mut buf, &opts), Ok(None));
    }
}

/// What a 3.1/3.1.1 peer receives when `packet`, built for MQTT 5, is encoded for `version`:
/// properties and MQTT 5 reason codes are dropped or mapped to the nearest 3.x return code.
/// `None` when the packet cannot be encoded for 3.x at all.
fn downgraded(packet: &Packet, version: ProtocolVersion) -> Option<Packet> {
    use berth_codec::*;
    Some(match packet.clone() {
        // CONNECT is always encoded for its own protocol.
        p @ (Packet::Connect(_) | Packet::PingReq | Packet::PingResp) => p,
        Packet::ConnAck(c) => {
            let reason = ConnectReasonCode::from_v3_return_code(c.reason.v3_return_code())?;
            Packet::ConnAck(Box::new(ConnAck {
                session_present: c.session_present && !reason.is_error(),
                reason,
                properties: Default::default(),
            }))
        }
        Packet::Publish(p) if p.topic.is_empty() => return None,
        Packet::Publish(p) => Packet::Publish(Publish {
            properties: Default::default(),
            ..p
        }),
        Packet::PubAck(a) => Packet::PubAck(PubAck::new(a.packet_id)),
        Packet::PubRec(a) => Packet::PubRec(PubRec::new(a.packet_id)),
        Packet::PubRel(a) => Packet::PubRel(PubRel::new(a.packet_id)),
        Packet::PubComp(a) => Packet::PubComp(PubComp::new(a.packet_id)),
        Packet::Subscribe(s) => Packet::Subscribe(Subscribe {
            packet_id: s.packet_id,
            subscriptions: s
                .subscriptions
                .into_iter()
                .map(|sub| Subscription {
                    options: SubscriptionOptions::new(sub.options.qos),
                    ..sub
                })
                .collect(),
            properties: Default::default(),
        }),
        Packet::SubAck(s) => Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            reason_codes: s
                .reason_codes
                .iter()
                .map(|r| SubAckReasonCode::from_u8(r.v3_return_code()))
                .collect::<Option<_>>()?,
            properties: Default::default(),
        }),
        Packet::Unsubscribe(u) => Packet::Unsubscribe(Unsubscribe {
            properties: Default::default(),
            ..u
        }),
        Packet::UnsubAck(u) => Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            reason_codes: Vec::new(),
            properties: Default::default(),
        }),
        Packet::Disconnect(_) => {
            Packet::Disconnect(Disconnect::new(DisconnectReasonCode::NormalDisconnection))
        }
        Packet::Auth(_) => {
            assert!(!version.is_v5());
            return None;
        }
    })
}

proptest! {
    #![proptest_config(config(CASES))]

    /// An MQTT 5 packet encoded for a 3.1/3.1.1 peer arrives as what that version can say.
    #[test]
    fn v5_packets_downgrade_to_v3(
        packet in packet(ProtocolVersion::V5),
        version in prop_oneof![Just(ProtocolVersion::V3_1), Just(ProtocolVersion::V3_1_1)],
    ) {
        let mut out = BytesMut::new();
        let encoded = encode(&packet, version, &mut out);
        prop_assert_eq!(encoded.is_ok(), encoded_len(&packet, version).is_ok());
        match downgraded(&packet, version) {
            Some(expected) => {
                prop_assert_eq!(encoded, Ok(out.len()));
                let decoded = decode(&mut out, &DecodeOptions::new(version)).unwrap();
                prop_assert_eq!(decoded, Some(expected));
                prop_assert!(out.is_empty());
            }
            None => prop_assert!(encoded.is_err(), "{:?} encoded for {}", packet, version),
        }
    }

    /// Arbitrary bytes, decoded with each version and with a small and the default maximum
    /// packet size.
    #[test]
    fn arbitrary_bytes_never_panic(
        input in vec(any::<u8>(), 0..512),
        max in prop_oneof![Just(u32::MAX), 2u32..600],
    ) {
        for version in ProtocolVersion::ALL {
            decode_stream(&input, &DecodeOptions::new(version));
            decode_stream(&input, &DecodeOptions::new(version).with_max_packet_size(max));
        }
    }

    /// A correct fixed header for any packet type and flags, then an arbitrary body: gets past
    /// the framing into every packet's body decoder.
    #[test]
    fn framed_garbage_never_panics(
        first in any::<u8>(),
        body in vec(any::<u8>(), 0..200),
        tail in vec(any::<u8>(), 0..8),
    ) {
        let mut input = support::frame(first, &[&body]);
        input.extend_from_slice(&tail);
        for version in ProtocolVersion::ALL {
            decode_stream(&input, &DecodeOptions::new(version));
        }
    }

    /// A valid encoding split anywhere: the first part is incomplete and stays buffered, the
    /// whole then decodes to the packet.
    #[test]
    fn split_input_needs_more_then_decodes(
        (version, packet) in versioned_packet(),
        split in any::<Index>(),
    ) {
        let bytes = encode_to_vec(&packet, version);
        let at = split.index(bytes.len());
        let opts = DecodeOptions::new(version);
        let mut buf = BytesMut::from(&bytes[..at]);
        prop_assert_eq!(decode(&mut buf, &opts), Ok(None));
        prop_assert_eq!(&buf[..], &bytes[..at]);
        buf.extend_from_slice(&bytes[at..]);
        prop_assert_eq!(decode(&mut buf, &opts).unwrap(), Some(packet));
        prop_assert!(buf.is_empty());
    }

    /// Truncated encodings (a proper prefix is always incomplete) and encodings with one byte
    /// flipped never panic; what still decodes re-encodes to itself.
    #[test]
    fn mutated_encodings_never_panic(
        (version, packet) in versioned_packet(),
        at in any::<Index>(),
        mask in 1u8..=255,
        cut in any::<Index>(),
        decode_as in version(),
    ) {
        let bytes = encode_to_vec(&packet, version);
        let truncated = &bytes[..cut.index(bytes.len())];
        prop_assert_eq!(decode_stream(truncated, &DecodeOptions::new(version)), 0);
        decode_stream(truncated, &DecodeOptions::new(decode_as));

        let mut flipped = bytes.clone();
        flipped[at.index(bytes.len())] ^= mask;
        for v in [version, decode_as] {
            decode_stream(&flipped, &DecodeOptions::new(v));
            decode_stream(&flipped[..cut.index(bytes.len())], &DecodeOptions::new(v));
        }
    }
}

proptest! {
    #![proptest_config(config(CASES / 4))]

    /// Fed one byte at a time, a packet is incomplete until its last byte.
    #[test]
    fn byte_at_a_time_decodes_at_the_last_byte((version, packet) in versioned_packet()) {
        let bytes = encode_to_vec(&packet, version);
        let opts = DecodeOptions::new(version);
        let mut buf = BytesMut::new();
        // Long payloads are fed in chunks past the header so the test stays quick.
        let step = if bytes.len() > 1024 { 97 } else { 1 };
        let mut fed = 0;
        while fed < bytes.len() - 1 {
            let next = (fed + if fed < 8 { 1 } else { step }).min(bytes.len() - 1);
            buf.extend_from_slice(&bytes[fed..next]);
            fed = next;
            prop_assert_eq!(decode(&mut buf, &opts), Ok(None), "after {} bytes", fed);
        }
        buf.extend_from_slice(&bytes[fed..]);
        prop_assert_eq!(decode(&mut buf, &opts).unwrap(), Some(packet));
        prop_assert!(buf.is_empty());
    }
}

/// The generators reach every packet type of every version (and no AUTH before MQTT 5), so the
/// properties above are not vacuous for any of them.
#[test]
fn generators_cover_every_packet_type() {
    let mut runner = TestRunner::deterministic();
    for version in ProtocolVersion::ALL {
        let strategy = packet(version);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..600 {
            let p = strategy.new_tree(&mut runner).unwrap().current();
            seen.insert(p.packet_type() as u8);
        }
        let expected = if version.is_v5() { 15 } else { 14 };
        assert_eq!(seen.len(), expected, "{version}: saw packet types {seen:?}");
        assert_eq!(
            seen.contains(&(PacketType::Auth as u8)),
            version.is_v5(),
            "{version}"
        );
    }
}

/// Sizes at the edges of the encodings: a 65,535-byte string, and remaining lengths at every
/// boundary of the variable byte integer, up to four bytes.
#[test]
fn boundary_sizes_roundtrip() {
    let longest = MqttString::new(&format!("{}x", "é".repeat(32_767))).unwrap();
    assert_eq!(longest.len(), MqttString::MAX_LEN);
    let topic = TopicName::parse(&format!("{}x", "ü".repeat(32_767))).unwrap();
    assert_eq!(topic.as_str().len(), MqttString::MAX_LEN);
    let header = 2 + topic.as_str().len();
    for version in ProtocolVersion::ALL {
        // PUBLISH QoS 0 with a maximal topic and payloads at the three/four byte boundary.
        let props = if version.is_v5() { 1 } else { 0 };
        for body in [2_097_151usize, 2_097_152, 2_100_000] {
            let payload_len = body - header - props;
            let p = Packet::Publish(Publish::at_most_once(
                topic.clone(),
                Bytes::from(vec![0x5A; payload_len]),
            ));
            let bytes = encode_to_vec(&p, version);
            assert_eq!(bytes.len(), 1 + varint_len(body) + body);
            assert_roundtrip(&p, version, b"");
        }
        // A short topic and a QoS 1 identifier at the one/two and two/three byte boundaries.
        let small = TopicName::parse("t").unwrap();
        for body in [127usize, 128, 16_383, 16_384] {
            let Some(payload_len) = body.checked_sub(3 + 2 + props) else {
                continue;
            };
            let p = Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                packet_id: berth_codec::PacketId::new(7),
                ..Publish::at_most_once(small.clone(), Bytes::from(vec![1; payload_len]))
            });
            assert_eq!(
                encode_to_vec(&p, version).len(),
                1 + varint_len(body) + body
            );
            assert_roundtrip(&p, version, b"");
        }
        // A CONNECT whose client identifier, user name and password are all 65,535 bytes.
        let connect = Packet::Connect(Box::new(berth_codec::Connect {
            protocol: version,
            clean_start: true,
            keep_alive: 60,
            client_id: longest.clone(),
            will: None,
            username: Some(longest.clone()),
            password: Some(Bytes::from(vec![0xFF; MqttString::MAX_LEN])),
            properties: Default::default(),
        }));
        assert_roundtrip(&connect, version, b"");
    }
}

fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// The fuzz target's seed corpus, `fuzz/seeds/`, holds exactly the packets of `seeds.rs`, each
/// file decoding with its version to its packets. After changing `seeds.rs`, rewrite the files:
/// `BERTH_WRITE_FUZZ_SEEDS=1 cargo test -p berth-codec --test roundtrip fuzz_seeds`.
#[test]
fn fuzz_seeds_are_current() {
    // The checkout this test runs in, read at run time: CI builds fresh clones at new paths into
    // one shared target dir, and a binary compiled in an earlier clone may be reused.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf(),
        Into::into,
    );
    let dir = manifest_dir.join("../../fuzz/seeds");
    let write = std::env::var_os("BERTH_WRITE_FUZZ_SEEDS").is_some();
    let seeds = seeds::seeds();
    for seed in &seeds {
        let path = dir.join(&seed.file);
        if write {
            let mut bytes = BytesMut::new();
            for p in &seed.packets {
                encode(p, seed.version, &mut bytes).unwrap();
            }
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (see this test's doc to write it)", path.display())
        });
        let mut buf = BytesMut::from(&on_disk[..]);
        let opts = DecodeOptions::new(seed.version);
        for p in &seed.packets {
            let decoded = decode(&mut buf, &opts).unwrap();
            assert_eq!(decoded.as_ref(), Some(p), "{}", seed.file);
        }
        assert!(buf.is_empty(), "{} has bytes after its packets", seed.file);
    }
    let mut stray: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !seeds.iter().any(|seed| &seed.file == name))
        .collect();
    stray.sort();
    assert!(
        stray.is_empty(),
        "fuzz/seeds has files seeds.rs does not make: {stray:?}"
    );
}

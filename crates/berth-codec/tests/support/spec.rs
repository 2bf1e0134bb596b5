//! Byte tables: every entry is checked both ways, the bytes decode to exactly the typed packet
//! and the packet encodes to exactly the bytes (`assert_wire`); and short constructors for the
//! typed side.

use berth_codec::{
    DecodeOptions, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS, TopicFilter,
    TopicName, UserProperty, decode, encode, encoded_len,
};
use bytes::{Bytes, BytesMut};

/// Concatenates the fields of a packet, so each field can sit on its own commented line.
pub fn wire(fields: &[&[u8]]) -> Vec<u8> {
    fields.concat()
}

pub fn s(text: &str) -> MqttString {
    MqttString::new(text).unwrap()
}

pub fn topic(text: &str) -> TopicName {
    TopicName::parse(text).unwrap()
}

pub fn filter(text: &str) -> TopicFilter {
    TopicFilter::parse(text).unwrap()
}

pub fn pid(id: u16) -> PacketId {
    PacketId::new(id).unwrap()
}

pub fn user(key: &str, value: &str) -> UserProperty {
    UserProperty::new(s(key), s(value))
}

/// A PUBLISH without DUP, RETAIN or properties.
pub fn publish(qos: QoS, id: Option<u16>, name: TopicName, payload: &'static [u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: name,
        packet_id: id.map(pid),
        payload: Bytes::from_static(payload),
        properties: Default::default(),
    }
}

/// `bytes` decode under `version` to one complete packet, which consumes all of them.
#[track_caller]
pub fn decode_packet(version: ProtocolVersion, bytes: &[u8]) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, &DecodeOptions::new(version))
        .unwrap_or_else(|e| panic!("{version}: decode failed: {e:?}"))
        .expect("a complete packet");
    assert!(buf.is_empty(), "{version}: decode left {} bytes", buf.len());
    packet
}

/// `bytes` decode to `packet` (consuming exactly the frame) and `packet` encodes to `bytes`, both
/// under `version`.
#[track_caller]
pub fn assert_wire(version: ProtocolVersion, bytes: &[u8], packet: &Packet) {
    assert_eq!(
        &decode_packet(version, bytes),
        packet,
        "{version}: decoded packet"
    );
    let mut out = BytesMut::new();
    let written = encode(packet, version, &mut out)
        .unwrap_or_else(|e| panic!("{version}: encode failed: {e:?}"));
    assert_eq!(&out[..], bytes, "{version}: encoded bytes");
    assert_eq!(written, bytes.len(), "{version}: encode's returned length");
    assert_eq!(encoded_len(packet, version).unwrap(), bytes.len());
}

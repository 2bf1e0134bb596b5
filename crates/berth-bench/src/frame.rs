//! Wire frames on the hot path without a per-message allocation.
//!
//! A PUBLISH is encoded once by `berth-codec` into a template; each message is then a copy of
//! the template into the batch buffer with its packet identifier and payload stamp patched in
//! place. The packet identifier sits right after the topic, and the payload is the frame's tail
//! in every MQTT version, so the patch offsets are fixed per template.

use anyhow::{Context, bail};
use berth_codec::{
    Packet, PacketId, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish, QoS, TopicName,
    encode,
};
use bytes::{Bytes, BytesMut};

use crate::payload::{STAMP_LEN, Stamp};

/// One encoded PUBLISH to copy and patch.
#[derive(Debug, Clone)]
pub struct PublishTemplate {
    bytes: Vec<u8>,
    /// Offset of the 2-byte packet identifier; `None` for QoS 0.
    packet_id_at: Option<usize>,
    payload_at: usize,
}

impl PublishTemplate {
    pub fn new(
        topic: &TopicName,
        qos: QoS,
        payload_len: usize,
        version: ProtocolVersion,
    ) -> anyhow::Result<PublishTemplate> {
        if payload_len < STAMP_LEN {
            bail!("payload of {payload_len} bytes cannot hold the {STAMP_LEN}-byte stamp");
        }
        let packet_id = match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce | QoS::ExactlyOnce => PacketId::new(1),
        };
        let publish = Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.clone(),
            packet_id,
            payload: Bytes::from(vec![b'.'; payload_len]),
            properties: Default::default(),
        };
        let mut out = BytesMut::new();
        encode(&Packet::Publish(publish), version, &mut out)
            .with_context(|| format!("encoding a PUBLISH to {}", topic.as_str()))?;
        // Fixed header: one type byte, then a 1..4-byte remaining length.
        let varint_len = out[1..]
            .iter()
            .position(|byte| byte & 0x80 == 0)
            .map(|i| i + 1)
            .context("encoded PUBLISH has no remaining length")?;
        let topic_field = 2 + topic.as_mqtt_str().as_bytes().len();
        let packet_id_at = packet_id.map(|_| 1 + varint_len + topic_field);
        Ok(PublishTemplate {
            payload_at: out.len() - payload_len,
            packet_id_at,
            bytes: out.to_vec(),
        })
    }

    /// Bytes of one message on the wire.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends one message. `packet_id` is ignored for QoS 0 templates.
    pub fn append(&self, out: &mut BytesMut, packet_id: Option<PacketId>, stamp: &Stamp) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        let frame = &mut out[start..];
        if let (Some(at), Some(id)) = (self.packet_id_at, packet_id) {
            frame[at..at + 2].copy_from_slice(&id.get().to_be_bytes());
        }
        stamp.write(&mut frame[self.payload_at..]);
    }
}

/// The acknowledgements of the QoS 1 flow (PUBACK) and the QoS 2 flow (PUBREC, PUBREL,
/// PUBCOMP), named as the packets are spelled in the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    Puback,
    Pubrec,
    Pubrel,
    Pubcomp,
}

/// Appends an acknowledgement (Success, no properties: 4 bytes in every version).
pub fn append_ack(out: &mut BytesMut, ack: Ack, id: PacketId, version: ProtocolVersion) {
    let packet = match ack {
        Ack::Puback => Packet::PubAck(PubAck::new(id)),
        Ack::Pubrec => Packet::PubRec(PubRec::new(id)),
        Ack::Pubrel => Packet::PubRel(PubRel::new(id)),
        Ack::Pubcomp => Packet::PubComp(PubComp::new(id)),
    };
    // An acknowledgement without properties always encodes; the result only reports the length.
    let _ = encode(&packet, version, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_codec::{DecodeOptions, decode};

    fn topic(text: &str) -> TopicName {
        TopicName::parse(text).unwrap()
    }

    fn decode_all(buf: &mut BytesMut, version: ProtocolVersion) -> Vec<Packet> {
        let opts = DecodeOptions::new(version);
        let mut packets = Vec::new();
        while let Some(packet) = decode(buf, &opts).unwrap() {
            packets.push(packet);
        }
        assert!(buf.is_empty(), "no trailing bytes");
        packets
    }

    #[test]
    fn patched_frames_decode_to_the_intended_publishes() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
                for payload_len in [STAMP_LEN, 64, 200, 20_000] {
                    let t = topic("bench/run/in/3");
                    let template = PublishTemplate::new(&t, qos, payload_len, version).unwrap();
                    let mut out = BytesMut::new();
                    let ids = [1u16, 258, 65535];
                    for (seq, id) in ids.iter().enumerate() {
                        let stamp = Stamp {
                            stream: 3,
                            seq: seq as u64,
                            sent_ns: 1000 + seq as u64,
                        };
                        template.append(&mut out, PacketId::new(*id), &stamp);
                    }
                    assert_eq!(out.len(), template.len() * ids.len());
                    let packets = decode_all(&mut out, version);
                    assert_eq!(packets.len(), ids.len());
                    for (seq, (packet, id)) in packets.iter().zip(ids).enumerate() {
                        let Packet::Publish(p) = packet else {
                            panic!("not a publish: {packet:?}")
                        };
                        assert_eq!(p.topic, t);
                        assert_eq!(p.qos, qos);
                        assert_eq!(p.payload.len(), payload_len);
                        let expected_id =
                            (qos != QoS::AtMostOnce).then(|| PacketId::new(id).unwrap());
                        assert_eq!(p.packet_id, expected_id, "{version} {qos:?}");
                        let stamp = Stamp::read(&p.payload).unwrap();
                        assert_eq!(stamp.stream, 3);
                        assert_eq!(stamp.seq, seq as u64);
                        assert_eq!(stamp.sent_ns, 1000 + seq as u64);
                    }
                }
            }
        }
    }

    #[test]
    fn template_equals_the_codec_encoding_of_the_same_message() {
        let t = topic("a/b");
        let version = ProtocolVersion::V5;
        let template = PublishTemplate::new(&t, QoS::AtLeastOnce, 32, version).unwrap();
        let stamp = Stamp {
            stream: 1,
            seq: 2,
            sent_ns: 3,
        };
        let mut patched = BytesMut::new();
        template.append(&mut patched, PacketId::new(77), &stamp);

        let mut payload = vec![b'.'; 32];
        stamp.write(&mut payload);
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: t,
            packet_id: PacketId::new(77),
            payload: Bytes::from(payload),
            properties: Default::default(),
        };
        let mut direct = BytesMut::new();
        encode(&Packet::Publish(publish), version, &mut direct).unwrap();
        assert_eq!(patched, direct);
    }

    #[test]
    fn payload_too_short_for_the_stamp_is_refused() {
        let err = PublishTemplate::new(
            &topic("t"),
            QoS::AtMostOnce,
            STAMP_LEN - 1,
            ProtocolVersion::V3_1_1,
        )
        .unwrap_err();
        assert!(err.to_string().contains("stamp"), "{err}");
    }

    #[test]
    fn acks_are_four_bytes_and_decode() {
        let id = PacketId::new(0x1234).unwrap();
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            // PUBREL's fixed header carries the flags 0b0010 ([MQTT-3.6.1-1]).
            for (ack, first) in [
                (Ack::Puback, 0x40u8),
                (Ack::Pubrec, 0x50),
                (Ack::Pubrel, 0x62),
                (Ack::Pubcomp, 0x70),
            ] {
                let mut out = BytesMut::new();
                append_ack(&mut out, ack, id, version);
                assert_eq!(&out[..], &[first, 0x02, 0x12, 0x34], "{ack:?}");
                let packets = decode_all(&mut out, version);
                let decoded_id = match &packets[..] {
                    [Packet::PubAck(a)] if ack == Ack::Puback => a.packet_id,
                    [Packet::PubRec(a)] if ack == Ack::Pubrec => a.packet_id,
                    [Packet::PubRel(a)] if ack == Ack::Pubrel => a.packet_id,
                    [Packet::PubComp(a)] if ack == Ack::Pubcomp => a.packet_id,
                    other => panic!("{ack:?} decoded as {other:?}"),
                };
                assert_eq!(decoded_id, id);
            }
        }
    }
}

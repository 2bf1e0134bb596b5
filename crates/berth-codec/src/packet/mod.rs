//! The packet model and the framing: fixed header, remaining length, dispatch per packet type.

mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
mod publish;
mod subscribe;
mod unsubscribe;

use bytes::{Buf, BufMut, BytesMut};

pub use ack::{PubAck, PubComp, PubRec, PubRel};
pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, LastWill};
pub use disconnect::Disconnect;
pub use publish::Publish;
pub use subscribe::{SubAck, Subscribe, Subscription, SubscriptionOptions};
pub use unsubscribe::{UnsubAck, Unsubscribe};

use crate::error::{DecodeError, EncodeError};
use crate::types::{
    DecodeOptions, MAX_REMAINING_LENGTH, PacketId, PacketType, ProtocolVersion, QoS,
};
use crate::wire::{Reader, put_varint, varint_len};

/// One MQTT control packet. Large, rare packets are boxed to keep the enum small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(Box<ConnAck>),
    Publish(Publish),
    PubAck(PubAck),
    PubRec(PubRec),
    PubRel(PubRel),
    PubComp(PubComp),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    /// Boxed, as CONNECT and CONNACK: rare, and its properties would make every packet larger.
    Auth(Box<Auth>),
}

impl Packet {
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    fn header_flags(&self) -> u8 {
        match self {
            Packet::Publish(publish) => publish.header_flags(),
            other => other.packet_type().fixed_flags(),
        }
    }

    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        match self {
            Packet::Connect(p) => p.body_len(),
            Packet::ConnAck(p) => p.body_len(version),
            Packet::Publish(p) => p.body_len(version),
            Packet::PubAck(p) => p.body_len(version),
            Packet::PubRec(p) => p.body_len(version),
            Packet::PubRel(p) => p.body_len(version),
            Packet::PubComp(p) => p.body_len(version),
            Packet::Subscribe(p) => p.body_len(version),
            Packet::SubAck(p) => p.body_len(version),
            Packet::Unsubscribe(p) => p.body_len(version),
            Packet::UnsubAck(p) => p.body_len(version),
            Packet::PingReq | Packet::PingResp => Ok(0),
            Packet::Disconnect(p) => p.body_len(version),
            Packet::Auth(p) => p.body_len(version),
        }
    }

    fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        match self {
            Packet::Connect(p) => p.write_body(out),
            Packet::ConnAck(p) => p.write_body(version, out),
            Packet::Publish(p) => p.write_body(version, out),
            Packet::PubAck(p) => p.write_body(version, out),
            Packet::PubRec(p) => p.write_body(version, out),
            Packet::PubRel(p) => p.write_body(version, out),
            Packet::PubComp(p) => p.write_body(version, out),
            Packet::Subscribe(p) => p.write_body(version, out),
            Packet::SubAck(p) => p.write_body(version, out),
            Packet::Unsubscribe(p) => p.write_body(version, out),
            Packet::UnsubAck(p) => p.write_body(version, out),
            Packet::PingReq | Packet::PingResp => {}
            Packet::Disconnect(p) => p.write_body(version, out),
            Packet::Auth(p) => p.write_body(out),
        }
    }
}

/// The most a single `decode` call pre-allocates for a packet still arriving.
const RESERVE_STEP: usize = 64 * 1024;

/// Decodes one packet from the front of `buf`.
///
/// Returns `Ok(None)` while the packet is incomplete; the bytes stay in `buf`. The fixed header
/// (type, flags) and the remaining length are validated as soon as they arrive, and a packet
/// larger than `opts.max_packet_size` is refused before its body is buffered. On success the
/// packet's bytes are split off `buf` and its strings and payload are slices of them.
pub fn decode(buf: &mut BytesMut, opts: &DecodeOptions) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let packet_type = check_fixed_header(first, opts.version)?;
    let mut remaining = 0usize;
    let mut header_len = 1;
    loop {
        if header_len > 4 {
            return Err(DecodeError::RemainingLengthTooLong);
        }
        let Some(&byte) = buf.get(header_len) else {
            return Ok(None);
        };
        remaining |= usize::from(byte & 0x7F) << (7 * (header_len - 1));
        header_len += 1;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let total = header_len + remaining;
    if total > opts.max_packet_size as usize {
        return Err(DecodeError::PacketTooLarge {
            size: total,
            max: opts.max_packet_size,
        });
    }
    if buf.len() < total {
        // Grow towards the announced size in bounded steps: a peer that announces a large packet
        // and stalls must not make the broker allocate the whole maximum up front.
        buf.reserve((total - buf.len()).min(RESERVE_STEP));
        return Ok(None);
    }
    let mut frame = buf.split_to(total).freeze();
    frame.advance(header_len);
    let reader = Reader::new(frame, packet_type);
    decode_body(packet_type, first & 0x0F, reader, opts.version).map(Some)
}

/// Checks the first byte: a known packet type for this version with its required flags.
fn check_fixed_header(first: u8, version: ProtocolVersion) -> Result<PacketType, DecodeError> {
    let type_bits = first >> 4;
    let flags = first & 0x0F;
    let packet = match PacketType::from_u8(type_bits) {
        Some(PacketType::Auth) if !version.is_v5() => None,
        other => other,
    }
    .ok_or(DecodeError::ReservedPacketType {
        packet_type: type_bits,
        version,
    })?;
    if packet == PacketType::Publish {
        let qos = (flags >> 1) & 0b11;
        if qos == 3 {
            return Err(DecodeError::InvalidQoS { packet });
        }
        if qos == 0 && flags & 0b1000 != 0 {
            return Err(DecodeError::DupWithQoS0);
        }
    } else if flags != packet.fixed_flags() {
        return Err(DecodeError::InvalidHeaderFlags { packet, flags });
    }
    Ok(packet)
}

fn decode_body(
    packet: PacketType,
    flags: u8,
    mut r: Reader,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    Ok(match packet {
        PacketType::Connect => Packet::Connect(Box::new(Connect::decode(&mut r)?)),
        PacketType::ConnAck => Packet::ConnAck(Box::new(ConnAck::decode(&mut r, version)?)),
        PacketType::Publish => Packet::Publish(Publish::decode(&mut r, flags, version)?),
        PacketType::PubAck => Packet::PubAck(PubAck::decode(&mut r, version)?),
        PacketType::PubRec => Packet::PubRec(PubRec::decode(&mut r, version)?),
        PacketType::PubRel => Packet::PubRel(PubRel::decode(&mut r, version)?),
        PacketType::PubComp => Packet::PubComp(PubComp::decode(&mut r, version)?),
        PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(&mut r, version)?),
        PacketType::SubAck => Packet::SubAck(SubAck::decode(&mut r, version)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(&mut r, version)?),
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(&mut r, version)?),
        PacketType::PingReq => {
            r.finish()?;
            Packet::PingReq
        }
        PacketType::PingResp => {
            r.finish()?;
            Packet::PingResp
        }
        PacketType::Disconnect => Packet::Disconnect(Disconnect::decode(&mut r, version)?),
        PacketType::Auth => Packet::Auth(Box::new(Auth::decode(&mut r)?)),
    })
}

/// Encodes `packet` for a connection speaking `version` and returns the bytes written.
///
/// CONNECT is encoded for its own `protocol`. Fields the version cannot carry (properties, reason
/// codes in 3.1.1) are left out, as a broker forwarding an MQTT 5 message to a 3.1.1 client must.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let body = checked_body_len(packet, version)?;
    let total = 1 + varint_len(body) + body;
    out.reserve(total);
    out.put_u8(((packet.packet_type() as u8) << 4) | packet.header_flags());
    put_varint(out, body);
    packet.write_body(version, out);
    Ok(total)
}

/// The number of bytes [`encode`] would write: what a sender checks against the peer's Maximum
/// Packet Size before sending.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let body = checked_body_len(packet, version)?;
    Ok(1 + varint_len(body) + body)
}

fn checked_body_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    if let Packet::Auth(_) = packet
        && !version.is_v5()
    {
        return Err(EncodeError::NotInVersion {
            packet: PacketType::Auth,
            version,
        });
    }
    let body = packet.body_len(version)?;
    if body > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge {
            packet: packet.packet_type(),
            size: body,
        });
    }
    Ok(body)
}

/// Reads a packet identifier, which must not be zero.
pub(crate) fn read_packet_id(r: &mut Reader) -> Result<PacketId, DecodeError> {
    let value = r.u16("packet identifier")?;
    PacketId::new(value).ok_or(DecodeError::ZeroPacketId { packet: r.packet() })
}

pub(crate) fn read_qos(r: &Reader, bits: u8) -> Result<QoS, DecodeError> {
    QoS::from_u8(bits).ok_or(DecodeError::InvalidQoS { packet: r.packet() })
}

/// Length of a property block with its length prefix, or an error naming the oversized field.
pub(crate) fn property_block_len(
    set: &impl crate::property::PropertySet,
    packet: PacketType,
) -> Result<usize, EncodeError> {
    let len = crate::property::properties_len(set).map_err(|len| EncodeError::BinaryTooLong {
        packet,
        field: "binary property",
        len,
    })?;
    Ok(varint_len(len) + len)
}

/// Writes a property block whose contents were already measured valid by [`property_block_len`].
pub(crate) fn put_property_block(out: &mut BytesMut, set: &impl crate::property::PropertySet) {
    let len = crate::property::properties_len(set).unwrap_or(0);
    crate::property::put_properties(out, set, len);
}

//! Every byte layout of the store: column families, keys and values. Nothing else in the crate
//! builds or parses stored bytes, so a format change is made (and reviewed) here alone.
//!
//! Keys of per-client column families start with the client id **length-prefixed** (u16 BE), so
//! that one client's rows are contiguous and `a`'s rows never interleave with `ab`'s: a
//! session's rows are exactly the range `[prefix, prefix_end(prefix))`, which `DeleteSession`
//! removes with one range tombstone per column family. Numbers are big-endian so that byte
//! order is numeric order (sequence 256 sorts after 255).
//!
//! | column family   | key                                  | value                                  |
//! |-----------------|--------------------------------------|----------------------------------------|
//! | `sessions`      | `len:u16 client`                     | `1 epoch:u64 level:u8 expiry:u32 flags:u8 expires_at:u64 will_due_at:u64 [DOUBT] [delay:u32 MSG]` |
//! | `subscriptions` | `len:u16 client filter`              | `1 options:u8 sub_id:u32` (0 = none)   |
//! | `queues`        | `len:u16 client seq:u64`             | `1 DELIVERY`                           |
//! | `queues`        | `len:u16 client` (sent mark)         | `seq:u64` (`Op::PutSentMark`)          |
//! | `queues`        | `len:u16 client 0:u8` (dequeued-through mark) | `seq:u64` (`Op::DequeueThrough`) |
//! | `inflight`      | `len:u16 client packet_id:u16`       | `1 kind:u8 order:u64 [DELIVERY]` (1 = Sent with DELIVERY, 2 = Released) |
//! | `qos2_in`       | `len:u16 client packet_id:u16`       | empty                                  |
//! | `qos2_seen`     | `len:u16 client slot:u64`            | `1 origin:u64 seq:u64` (a QoS 2 message the session took) |
//! | `retained`      | `topic`                              | `1 MSG`                                |
//!
//! ```text
//! DELIVERY = size:u64 delivery:u8 [sent_as:u16] MSG
//!                                          size = Delivery::size(), read alone at start-up;
//!                                          delivery = QoS (bits 0-1) | RETAIN (bit 2)
//!                                            | re-delivery (bit 3: sent before, DUP = 1 next)
//!                                            | sent_as (bit 4: the packet id an older copy
//!                                              sent this QoS 2 message under follows)
//! MSG      = flags:u8 expires_at:u64 [origin:u64 seq:u64] [received_at:u64] own_sub_ids:u32
//!            PUBLISH
//!            flags bit 0: expires_at present; bit 1: the cluster identity (origin node,
//!            number) follows; bit 2: received_at (when the broker received it) follows; rows
//!            written before that bit existed have it clear and read as unknown.
//!            PUBLISH: one MQTT 5 PUBLISH packet as berth-codec encodes it, with the message's
//!            own QoS and RETAIN, packet id 1 as a placeholder when QoS > 0, the message's
//!            properties, then the delivery's subscription identifiers appended after the
//!            message's own `own_sub_ids` ones.
//! session flags: bit 0 expires_at, bit 1 will_due_at, bit 2 will (absent values are 0), bit 3
//!                the QoS 2 state is on an unrecovered older copy (`qos2_state_elsewhere`), bit 4
//!                only the client's QoS 2 PUBLISHes are (`incoming_qos2_elsewhere`; records
//!                written before that bit existed have it clear), bit 5 the QoS 2 doubt
//!                follows (DOUBT): `lacking_node:u64 lacking_epoch:u64 (node 0: not known)
//!                count:u16 released:u16*count` (absent: none), then with bit 6 the earlier
//!                lacked copies `count:u8 (node:u64 epoch:u64)*count`, before the will, whose
//!                PUBLISH runs to the end of the value. `SessionRecord::landed` is not stored
//!                (read back as `epoch`), so that a row of a session not in doubt stays
//!                readable by binaries from before bit 5.
//! options: the MQTT 5 subscription options byte (QoS, no local, retain as published, handling).
//! ```
//!
//! The leading `1` of every value is the format version: a new layout gets a new number and the
//! decoders keep reading the old one (`qos2_in` rows have no value: the key is the record, and
//! an empty value is version 1). Keys carry no version: a new key layout is a new column family,
//! but for the two marks in `queues`, whose keys sort before the client's rows (so a load meets
//! them first) and whose values are bare sequences. An unknown version, a short value, trailing bytes or an
//! invalid field is [`StoreError::Corrupt`], never a panic.

use berth_codec::{
    DecodeOptions, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS, RetainHandling,
    SubscriptionId, SubscriptionOptions, TopicFilter, TopicName, decode, encode,
};
use berth_core::{
    ClientId, Delivery, Epoch, HandoffRecord, InflightRecord, Message, MessageId, NodeId,
    Qos2Doubt, QueueSeq, SessionExpiry, SessionRecord, StoreError, SubscriptionRecord, UnixMillis,
    WillRecord,
};
use bytes::{BufMut, Bytes, BytesMut};
use std::sync::Arc;

/// Format version written as the first byte of every value.
const FORMAT_V1: u8 = 1;

/// The column families; [`Cf::ALL`] is the set a store opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cf {
    Sessions,
    Subscriptions,
    Queues,
    Inflight,
    Qos2In,
    Qos2Seen,
    Retained,
    Handoff,
}

impl Cf {
    pub(crate) const ALL: [Cf; 8] = [
        Cf::Sessions,
        Cf::Subscriptions,
        Cf::Queues,
        Cf::Inflight,
        Cf::Qos2In,
        Cf::Qos2Seen,
        Cf::Retained,
        Cf::Handoff,
    ];

    /// The column families holding rows of one session, beside its record.
    pub(crate) const SESSION_ROWS: [Cf; 5] = [
        Cf::Subscriptions,
        Cf::Queues,
        Cf::Inflight,
        Cf::Qos2In,
        Cf::Qos2Seen,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Cf::Sessions => "sessions",
            Cf::Subscriptions => "subscriptions",
            Cf::Queues => "queues",
            Cf::Inflight => "inflight",
            Cf::Qos2In => "qos2_in",
            Cf::Qos2Seen => "qos2_seen",
            Cf::Retained => "retained",
            Cf::Handoff => "handoff",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Keys

/// `len:u16 client`: the key of a session record and the prefix of all of its rows.
pub(crate) fn client_prefix(client: &ClientId) -> Vec<u8> {
    let bytes = client.as_bytes();
    let mut key = Vec::with_capacity(2 + bytes.len() + 8);
    // MqttString guarantees at most 65,535 bytes, so the length always fits.
    key.put_u16(u16::try_from(bytes.len()).unwrap_or(u16::MAX));
    key.put_slice(bytes);
    key
}

/// The smallest key greater than every key starting with `prefix` (exclusive upper bound), or
/// `None` when `prefix` is all `0xFF`. A client prefix always has one: UTF-8 never contains
/// `0xFF`, and the empty client's prefix is `00 00`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xFF)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

pub(crate) fn subscription_key(client: &ClientId, filter: &TopicFilter) -> Vec<u8> {
    let mut key = client_prefix(client);
    key.put_slice(filter.as_str().as_bytes());
    key
}

pub(crate) fn queue_key(client: &ClientId, seq: QueueSeq) -> Vec<u8> {
    let mut key = client_prefix(client);
    key.put_u64(seq.0);
    key
}

/// Key of a session's sent mark (`Op::PutSentMark`) in `queues`: the bare client prefix, which
/// sorts before every queue row of the client, so a scan of its rows from a sequence on never
/// meets it. Its value is the sequence, 8 bytes big-endian.
pub(crate) fn sent_mark_key(client: &ClientId) -> Vec<u8> {
    client_prefix(client)
}

/// Key of a session's dequeued-through mark (`Op::DequeueThrough`) in `queues`: the client
/// prefix and one zero byte, which sorts after the sent mark and before every queue row (a
/// row's suffix is 8 bytes), so a load meets it before the rows it hides. Its value is the
/// sequence, 8 bytes big-endian.
pub(crate) fn dequeued_mark_key(client: &ClientId) -> Vec<u8> {
    let mut key = client_prefix(client);
    key.push(0);
    key
}

/// Key of a session's kept packet ids (`Op::PutKeptIds`) in `queues`: the client prefix and two
/// zero bytes, after the dequeued-through mark and before every queue row (a row's suffix is 8
/// bytes, so neither a purge's nor a sweep's range from sequence 0 covers it). Its value is the
/// ids, 2 bytes big-endian each, sorted.
pub(crate) fn kept_ids_key(client: &ClientId) -> Vec<u8> {
    let mut key = client_prefix(client);
    key.extend_from_slice(&[0, 0]);
    key
}

pub(crate) fn encode_kept_ids(ids: &[PacketId]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.get().to_be_bytes()).collect()
}

pub(crate) fn decode_kept_ids(key: &[u8], value: &[u8]) -> Result<Vec<PacketId>, StoreError> {
    if value.is_empty() || !value.len().is_multiple_of(2) {
        return Err(corrupt(
            Cf::Queues,
            key,
            "kept packet ids are not pairs of bytes",
        ));
    }
    value
        .chunks_exact(2)
        .map(|pair| {
            PacketId::new(u16::from_be_bytes([pair[0], pair[1]]))
                .ok_or_else(|| corrupt(Cf::Queues, key, "kept packet identifier 0"))
        })
        .collect()
}

/// The end of the range of `client`'s queue rows at or below `seq`.
pub(crate) fn queue_key_after(client: &ClientId, seq: QueueSeq) -> Option<Vec<u8>> {
    match seq.0.checked_add(1) {
        Some(next) => Some(queue_key(client, QueueSeq(next))),
        None => prefix_end(&client_prefix(client)),
    }
}

pub(crate) fn decode_dequeued_mark(key: &[u8], value: &[u8]) -> Result<QueueSeq, StoreError> {
    let bytes: [u8; 8] = value
        .try_into()
        .map_err(|_| corrupt(Cf::Queues, key, "dequeued-through mark is not 8 bytes"))?;
    Ok(QueueSeq(u64::from_be_bytes(bytes)))
}

pub(crate) fn decode_sent_mark(key: &[u8], value: &[u8]) -> Result<QueueSeq, StoreError> {
    let bytes: [u8; 8] = value
        .try_into()
        .map_err(|_| corrupt(Cf::Queues, key, "sent mark is not 8 bytes"))?;
    Ok(QueueSeq(u64::from_be_bytes(bytes)))
}

/// Key of `inflight` and `qos2_in` rows.
pub(crate) fn packet_key(client: &ClientId, packet_id: PacketId) -> Vec<u8> {
    let mut key = client_prefix(client);
    key.put_u16(packet_id.get());
    key
}

/// Key of `qos2_seen` rows.
pub(crate) fn seen_key(client: &ClientId, slot: u64) -> Vec<u8> {
    let mut key = client_prefix(client);
    key.put_u64(slot);
    key
}

/// `seq:u64`: handoff entries of every session in the order this node kept them (not under the
/// client's prefix: a copy of the same client's session here is deleted on its own).
pub(crate) fn handoff_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub(crate) fn retained_key(topic: &TopicName) -> &[u8] {
    topic.as_str().as_bytes()
}

/// Splits a per-client key into its client prefix (length included) and the rest.
pub(crate) fn split_prefix(cf: Cf, key: &[u8]) -> Result<(&[u8], &[u8]), StoreError> {
    try_split_prefix(key).ok_or_else(|| corrupt(cf, key, "key shorter than its client id"))
}

fn try_split_prefix(key: &[u8]) -> Option<(&[u8], &[u8])> {
    let [hi, lo, ..] = key else { return None };
    let end = 2 + usize::from(u16::from_be_bytes([*hi, *lo]));
    (key.len() >= end).then(|| key.split_at(end))
}

/// The client id of a client prefix returned by [`split_prefix`].
pub(crate) fn prefix_client(cf: Cf, key: &[u8], prefix: &[u8]) -> Result<ClientId, StoreError> {
    let bytes = Bytes::copy_from_slice(prefix.get(2..).unwrap_or_default());
    MqttString::from_bytes(bytes)
        .map(ClientId::new)
        .map_err(|e| corrupt(cf, key, &format!("client id: {e}")))
}

pub(crate) fn filter_from_key(key: &[u8], rest: &[u8]) -> Result<TopicFilter, StoreError> {
    let cf = Cf::Subscriptions;
    let text = MqttString::from_bytes(Bytes::copy_from_slice(rest))
        .map_err(|e| corrupt(cf, key, &format!("topic filter: {e}")))?;
    TopicFilter::new(text).map_err(|e| corrupt(cf, key, &format!("topic filter: {e}")))
}

pub(crate) fn seq_from_key(key: &[u8], rest: &[u8]) -> Result<QueueSeq, StoreError> {
    let bytes: [u8; 8] = rest
        .try_into()
        .map_err(|_| corrupt(Cf::Queues, key, "sequence is not 8 bytes"))?;
    Ok(QueueSeq(u64::from_be_bytes(bytes)))
}

pub(crate) fn slot_from_key(key: &[u8], rest: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = rest
        .try_into()
        .map_err(|_| corrupt(Cf::Qos2Seen, key, "slot is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

pub(crate) fn packet_id_from_key(cf: Cf, key: &[u8], rest: &[u8]) -> Result<PacketId, StoreError> {
    let bytes: [u8; 2] = rest
        .try_into()
        .map_err(|_| corrupt(cf, key, "packet identifier is not 2 bytes"))?;
    PacketId::new(u16::from_be_bytes(bytes)).ok_or_else(|| corrupt(cf, key, "packet identifier 0"))
}

// ---------------------------------------------------------------------------------------------
// Values: encoding

pub(crate) fn encode_session(record: &SessionRecord) -> Result<BytesMut, StoreError> {
    let mut out = BytesMut::with_capacity(40);
    out.put_u8(FORMAT_V1);
    out.put_u64(record.epoch.0);
    out.put_u8(record.protocol.level());
    out.put_u32(record.expiry.as_interval());
    let flags = u8::from(record.expires_at.is_some())
        | u8::from(record.will_due_at.is_some()) << 1
        | u8::from(record.will.is_some()) << 2
        | u8::from(record.qos2_state_elsewhere) << 3
        | u8::from(record.incoming_qos2_elsewhere) << 4
        | u8::from(record.qos2_doubt != Qos2Doubt::default()) << 5
        | u8::from(!record.qos2_doubt.earlier.is_empty()) << 6;
    out.put_u8(flags);
    out.put_u64(record.expires_at.map_or(0, |at| at.0));
    out.put_u64(record.will_due_at.map_or(0, |at| at.0));
    if record.qos2_doubt != Qos2Doubt::default() {
        doubt::put(&mut out, &record.qos2_doubt);
    }
    // Last: the will's PUBLISH runs to the end of the value.
    if let Some(will) = &record.will {
        out.put_u32(will.delay_secs);
        put_message(&mut out, &will.message, &[])?;
    }
    Ok(out)
}

pub(crate) fn encode_subscription(record: &SubscriptionRecord) -> [u8; 6] {
    let o = record.options;
    let options = o.qos.as_u8()
        | u8::from(o.no_local) << 2
        | u8::from(o.retain_as_published) << 3
        | (o.retain_handling as u8) << 4;
    let id = record
        .subscription_id
        .map_or(0, SubscriptionId::get)
        .to_be_bytes();
    [FORMAT_V1, options, id[0], id[1], id[2], id[3]]
}

pub(crate) fn encode_delivery(delivery: &Delivery) -> Result<BytesMut, StoreError> {
    let mut out = BytesMut::new();
    out.put_u8(FORMAT_V1);
    put_delivery(&mut out, delivery)?;
    Ok(out)
}

const INFLIGHT_SENT: u8 = 1;
const INFLIGHT_RELEASED: u8 = 2;

pub(crate) fn encode_inflight(record: &InflightRecord) -> Result<BytesMut, StoreError> {
    let mut out = BytesMut::new();
    out.put_u8(FORMAT_V1);
    match record {
        InflightRecord::Sent { order, delivery } => {
            out.put_u8(INFLIGHT_SENT);
            out.put_u64(*order);
            put_delivery(&mut out, delivery)?;
        }
        InflightRecord::Released { order } => {
            out.put_u8(INFLIGHT_RELEASED);
            out.put_u64(*order);
        }
    }
    Ok(out)
}

/// A QoS 2 message identity as a row value (`qos2_seen`, and an in-doubt `qos2_in` row).
pub(crate) fn encode_message_id(id: MessageId) -> [u8; 17] {
    let mut out = [0u8; 17];
    out[0] = FORMAT_V1;
    out[1..9].copy_from_slice(&id.origin.0.to_be_bytes());
    out[9..].copy_from_slice(&id.seq.to_be_bytes());
    out
}

pub(crate) fn encode_retained(message: &Message) -> Result<BytesMut, StoreError> {
    let mut out = BytesMut::new();
    out.put_u8(FORMAT_V1);
    put_message(&mut out, message, &[])?;
    Ok(out)
}

/// `V1 flags:u8 (bit 0 retried, bit 1 publisher) epoch:u64 len:u16 client [len:u16 publisher]
/// MSG`.
pub(crate) fn encode_handoff(record: &HandoffRecord) -> Result<BytesMut, StoreError> {
    let mut out = BytesMut::new();
    out.put_u8(FORMAT_V1);
    out.put_u8(u8::from(record.retried) | u8::from(record.publisher.is_some()) << 1);
    out.put_u64(record.epoch.0);
    out.put_slice(&client_prefix(&record.client));
    if let Some(publisher) = &record.publisher {
        out.put_slice(&client_prefix(publisher));
    }
    put_message(&mut out, &record.message, &[])?;
    Ok(out)
}

fn put_delivery(out: &mut BytesMut, delivery: &Delivery) -> Result<(), StoreError> {
    out.put_u64(delivery.size());
    out.put_u8(
        delivery.qos.as_u8()
            | u8::from(delivery.retain) << 2
            | u8::from(delivery.redelivery) << 3
            | u8::from(delivery.sent_as.is_some()) << 4,
    );
    if let Some(id) = delivery.sent_as {
        out.put_u16(id.get());
    }
    put_message(out, &delivery.message, &delivery.subscription_ids)
}

fn put_message(
    out: &mut BytesMut,
    message: &Message,
    extra_ids: &[SubscriptionId],
) -> Result<(), StoreError> {
    out.put_u8(
        u8::from(message.expires_at.is_some())
            | u8::from(message.id.is_some()) << 1
            | u8::from(message.received_at.is_some()) << 2,
    );
    out.put_u64(message.expires_at.map_or(0, |at| at.0));
    if let Some(id) = message.id {
        out.put_u64(id.origin.0);
        out.put_u64(id.seq);
    }
    if let Some(at) = message.received_at {
        out.put_u64(at.0);
    }
    let own_ids = message.properties.subscription_identifiers.len();
    out.put_u32(u32::try_from(own_ids).unwrap_or(u32::MAX));
    let mut properties = message.properties.clone();
    if !extra_ids.is_empty() {
        properties
            .subscription_identifiers
            .extend_from_slice(extra_ids);
    }
    let publish = Publish {
        dup: false,
        qos: message.qos,
        retain: message.retain,
        topic: message.topic.clone(),
        // A QoS 1/2 PUBLISH must carry a packet identifier: 1 stands in, ignored when decoding.
        packet_id: if message.qos == QoS::AtMostOnce {
            None
        } else {
            PacketId::new(1)
        },
        payload: message.payload.clone(),
        properties,
    };
    encode(&Packet::Publish(publish), ProtocolVersion::V5, out)
        .map(drop)
        .map_err(|e| StoreError::Io {
            operation: "encode message",
            message: format!("message on {:?}: {e}", message.topic.as_str()),
        })
}

// ---------------------------------------------------------------------------------------------
// Values: decoding

/// Reads fixed-size fields off a value; every failure names what was missing.
struct Reader<'a> {
    cf: Cf,
    key: &'a [u8],
    value: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts after checking the format version byte.
    fn new(cf: Cf, key: &'a [u8], value: &'a [u8]) -> Result<Reader<'a>, StoreError> {
        let mut r = Reader {
            cf,
            key,
            value,
            pos: 0,
        };
        match r.u8("format version")? {
            FORMAT_V1 => Ok(r),
            other => Err(r.corrupt(&format!("unknown format version {other}"))),
        }
    }

    fn corrupt(&self, message: &str) -> StoreError {
        corrupt(self.cf, self.key, message)
    }

    fn take<const N: usize>(&mut self, what: &str) -> Result<[u8; N], StoreError> {
        let bytes = self
            .value
            .get(self.pos..self.pos + N)
            .and_then(|slice| <[u8; N]>::try_from(slice).ok())
            .ok_or_else(|| self.corrupt(&format!("value ends before {what}")))?;
        self.pos += N;
        Ok(bytes)
    }

    fn u8(&mut self, what: &str) -> Result<u8, StoreError> {
        self.take::<1>(what).map(|[b]| b)
    }

    fn u16(&mut self, what: &str) -> Result<u16, StoreError> {
        self.take(what).map(u16::from_be_bytes)
    }

    fn u32(&mut self, what: &str) -> Result<u32, StoreError> {
        self.take(what).map(u32::from_be_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, StoreError> {
        self.take(what).map(u64::from_be_bytes)
    }

    /// `len:u16 bytes`, a client id.
    fn client(&mut self, what: &str) -> Result<ClientId, StoreError> {
        let len = usize::from(u16::from_be_bytes(self.take(what)?));
        let bytes = self
            .value
            .get(self.pos..self.pos + len)
            .ok_or_else(|| self.corrupt(&format!("value ends inside {what}")))?;
        self.pos += len;
        MqttString::from_bytes(Bytes::copy_from_slice(bytes))
            .map(ClientId::new)
            .map_err(|e| self.corrupt(&format!("{what}: {e}")))
    }

    fn qos(&mut self, byte: u8, what: &str) -> Result<QoS, StoreError> {
        QoS::from_u8(byte).ok_or_else(|| self.corrupt(&format!("invalid {what} {byte}")))
    }

    fn finish(&self) -> Result<(), StoreError> {
        if self.pos == self.value.len() {
            Ok(())
        } else {
            Err(self.corrupt(&format!("{} trailing bytes", self.value.len() - self.pos)))
        }
    }

    /// `MSG`: must be the last thing in the value. Returns the message and the subscription
    /// identifiers that belong to the delivery rather than to the message.
    fn message(&mut self) -> Result<(Message, Vec<SubscriptionId>), StoreError> {
        let flags = self.u8("message flags")?;
        if flags & !0b111 != 0 {
            return Err(self.corrupt(&format!("unknown message flags {flags:#04x}")));
        }
        let expires_at = self.u64("message expiry")?;
        let id = if flags & 0b10 != 0 {
            let origin = NodeId(self.u64("message origin")?);
            let seq = self.u64("message number")?;
            Some(MessageId { origin, seq })
        } else {
            None
        };
        let received_at = if flags & 0b100 != 0 {
            Some(UnixMillis(self.u64("message receipt time")?))
        } else {
            None
        };
        let own_ids = self.u32("subscription identifier count")?;
        let mut packet_bytes = BytesMut::from(self.value.get(self.pos..).unwrap_or_default());
        self.pos = self.value.len();
        let options = DecodeOptions::new(ProtocolVersion::V5).with_max_packet_size(u32::MAX);
        let publish = match decode(&mut packet_bytes, &options) {
            Ok(Some(Packet::Publish(publish))) => publish,
            Ok(Some(other)) => {
                return Err(self.corrupt(&format!("{} instead of PUBLISH", other.packet_type())));
            }
            Ok(None) => return Err(self.corrupt("PUBLISH is truncated")),
            Err(e) => return Err(self.corrupt(&format!("PUBLISH: {e}"))),
        };
        if !packet_bytes.is_empty() {
            return Err(self.corrupt(&format!("{} bytes after PUBLISH", packet_bytes.len())));
        }
        let mut properties = publish.properties;
        let own_ids = usize::try_from(own_ids).unwrap_or(usize::MAX);
        if own_ids > properties.subscription_identifiers.len() {
            return Err(self.corrupt("more own subscription identifiers than the PUBLISH carries"));
        }
        let delivery_ids = match properties.get_mut() {
            Some(set) => set.subscription_identifiers.split_off(own_ids),
            None => Vec::new(),
        };
        properties.compact();
        let message = Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties,
            expires_at: (flags & 1 != 0).then_some(UnixMillis(expires_at)),
            received_at,
            id,
        };
        Ok((message, delivery_ids))
    }

    /// `DELIVERY`; checks the stored size against the decoded message.
    fn delivery(&mut self) -> Result<Delivery, StoreError> {
        let size = self.u64("delivery size")?;
        let byte = self.u8("delivery flags")?;
        if byte & !0b1_1111 != 0 {
            return Err(self.corrupt(&format!("unknown delivery flags {byte:#04x}")));
        }
        let qos = self.qos(byte & 0b11, "delivery QoS")?;
        let sent_as = if byte & 0b1_0000 != 0 {
            let id = self.u16("delivery packet id")?;
            Some(PacketId::new(id).ok_or_else(|| self.corrupt("delivery packet id 0"))?)
        } else {
            None
        };
        let (message, subscription_ids) = self.message()?;
        let delivery = Delivery {
            message: Arc::new(message),
            qos,
            retain: byte & 0b100 != 0,
            subscription_ids,
            redelivery: byte & 0b1000 != 0,
            sent_as,
        };
        if delivery.size() != size {
            return Err(self.corrupt(&format!(
                "stored size {size} but message size {}",
                delivery.size()
            )));
        }
        Ok(delivery)
    }
}

pub(crate) fn decode_session(key: &[u8], value: &[u8]) -> Result<SessionRecord, StoreError> {
    let mut r = Reader::new(Cf::Sessions, key, value)?;
    let epoch = Epoch(r.u64("epoch")?);
    let level = r.u8("protocol level")?;
    let protocol = ProtocolVersion::ALL
        .into_iter()
        .find(|version| version.level() == level)
        .ok_or_else(|| r.corrupt(&format!("unknown protocol level {level}")))?;
    let expiry = SessionExpiry::from_interval(r.u32("session expiry")?);
    let flags = r.u8("session flags")?;
    if flags & !0b111_1111 != 0 {
        return Err(r.corrupt(&format!("unknown session flags {flags:#04x}")));
    }
    let expires_at = r.u64("session deadline")?;
    let will_due_at = r.u64("will deadline")?;
    let qos2_doubt = if flags & 0b10_0000 != 0 {
        doubt::read(&mut r, flags & 0b100_0000 != 0)?
    } else {
        Qos2Doubt::default()
    };
    let will = if flags & 0b100 != 0 {
        let delay_secs = r.u32("will delay")?;
        let (message, extra_ids) = r.message()?;
        if !extra_ids.is_empty() {
            return Err(r.corrupt("will message carries delivery subscription identifiers"));
        }
        Some(WillRecord {
            message,
            delay_secs,
        })
    } else {
        None
    };
    r.finish()?;
    Ok(SessionRecord {
        epoch,
        protocol,
        expiry,
        expires_at: (flags & 0b1 != 0).then_some(UnixMillis(expires_at)),
        will,
        will_due_at: (flags & 0b10 != 0).then_some(UnixMillis(will_due_at)),
        qos2_state_elsewhere: flags & 0b1000 != 0,
        incoming_qos2_elsewhere: flags & 0b1_0000 != 0,
        qos2_doubt,
        // Not stored (see `SessionRecord::landed`).
        landed: epoch,
    })
}

pub(crate) fn decode_subscription(
    key: &[u8],
    value: &[u8],
) -> Result<SubscriptionRecord, StoreError> {
    let mut r = Reader::new(Cf::Subscriptions, key, value)?;
    let byte = r.u8("subscription options")?;
    let id = r.u32("subscription identifier")?;
    r.finish()?;
    let qos = r.qos(byte & 0b11, "subscription QoS")?;
    let retain_handling = RetainHandling::from_u8(byte >> 4)
        .ok_or_else(|| r.corrupt(&format!("invalid subscription options {byte:#04x}")))?;
    let subscription_id = match id {
        0 => None,
        id => Some(
            SubscriptionId::new(id)
                .ok_or_else(|| r.corrupt(&format!("subscription identifier {id}")))?,
        ),
    };
    let options = SubscriptionOptions {
        qos,
        no_local: byte & 0b100 != 0,
        retain_as_published: byte & 0b1000 != 0,
        retain_handling,
    };
    Ok(SubscriptionRecord {
        options,
        subscription_id,
    })
}

pub(crate) fn decode_delivery(key: &[u8], value: &[u8]) -> Result<Delivery, StoreError> {
    let mut r = Reader::new(Cf::Queues, key, value)?;
    let delivery = r.delivery()?;
    r.finish()?;
    Ok(delivery)
}

/// [`Delivery::size`] of a `queues` value without decoding the message (for start-up bounds).
pub(crate) fn delivery_size(key: &[u8], value: &[u8]) -> Result<u64, StoreError> {
    Reader::new(Cf::Queues, key, value)?.u64("delivery size")
}

pub(crate) fn decode_inflight(key: &[u8], value: &[u8]) -> Result<InflightRecord, StoreError> {
    let mut r = Reader::new(Cf::Inflight, key, value)?;
    let kind = r.u8("in-flight kind")?;
    let order = r.u64("in-flight order")?;
    let record = match kind {
        INFLIGHT_SENT => InflightRecord::Sent {
            order,
            delivery: r.delivery()?,
        },
        INFLIGHT_RELEASED => InflightRecord::Released { order },
        other => return Err(r.corrupt(&format!("unknown in-flight kind {other}"))),
    };
    r.finish()?;
    Ok(record)
}

pub(crate) fn decode_message_id(cf: Cf, key: &[u8], value: &[u8]) -> Result<MessageId, StoreError> {
    let mut r = Reader::new(cf, key, value)?;
    let origin = NodeId(r.u64("message origin")?);
    let seq = r.u64("message number")?;
    r.finish()?;
    Ok(MessageId { origin, seq })
}

pub(crate) fn decode_handoff(key: &[u8], value: &[u8]) -> Result<HandoffRecord, StoreError> {
    let seq = <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt(Cf::Handoff, key, "key is not a sequence number"))?;
    let mut r = Reader::new(Cf::Handoff, key, value)?;
    let flags = r.u8("handoff flags")?;
    if flags & !0b11 != 0 {
        return Err(r.corrupt(&format!("unknown handoff flags {flags:#04x}")));
    }
    let epoch = Epoch(r.u64("handoff epoch")?);
    let client = r.client("handoff client")?;
    let publisher = if flags & 0b10 != 0 {
        Some(r.client("handoff publisher")?)
    } else {
        None
    };
    let (message, extra_ids) = r.message()?;
    if !extra_ids.is_empty() {
        return Err(r.corrupt("handoff message carries delivery subscription identifiers"));
    }
    Ok(HandoffRecord {
        seq,
        client,
        epoch,
        message,
        publisher,
        retried: flags & 1 != 0,
    })
}

pub(crate) fn decode_retained(key: &[u8], value: &[u8]) -> Result<Message, StoreError> {
    let mut r = Reader::new(Cf::Retained, key, value)?;
    let (message, extra_ids) = r.message()?;
    if !extra_ids.is_empty() {
        return Err(r.corrupt("retained message carries delivery subscription identifiers"));
    }
    if retained_key(&message.topic) != key {
        return Err(r.corrupt(&format!(
            "key does not match the topic {:?}",
            message.topic.as_str()
        )));
    }
    Ok(message)
}

mod doubt;
mod errors;

pub(crate) use errors::corrupt;

#[cfg(test)]
mod tests;

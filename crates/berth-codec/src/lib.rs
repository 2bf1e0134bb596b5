//! MQTT 3.1, 3.1.1 and 5.0 control packets as typed values, decoded and encoded over `bytes`.
//!
//! This crate is pure: no tokio, no tracing, no IO. It turns bytes into [`Packet`]s and back, and
//! it is the one place that decides whether bytes on the wire are a well-formed MQTT packet.
//!
//! ```text
//!  socket bytes ──▶ BytesMut ──decode()──▶ Ok(None)            need more bytes (not an error)
//!                                       ├─▶ Ok(Some(Packet))    zero-copy: strings/payload slice the frame
//!                                       └─▶ Err(DecodeError)    typed; .disconnect_reason() = MQTT 5 reason
//!  Packet ──encode(version)──▶ BytesMut ──▶ socket
//! ```
//!
//! Decoding is incremental: the fixed header and remaining length are read and checked against the
//! configured maximum packet size *before* the body is buffered, so a peer announcing a huge packet
//! is refused without the broker holding its bytes. Every malformed input or protocol violation
//! the specifications define maps to its own [`DecodeError`] variant; [`DecodeError::kind`] tells
//! malformed (0x81) from protocol error (0x82), packet too large (0x95) and unsupported protocol
//! version (0x84 / 3.1.1 return code 1).
//!
//! One packet model serves all three versions: fields that a version lacks (properties, reason
//! codes) are omitted when encoding for it and take their defaults when decoding from it.

mod error;
mod packet;
mod property;
mod reason;
mod string;
mod topic;
mod types;
mod wire;

pub use error::{DecodeError, EncodeError, ErrorKind};
pub use packet::{
    Auth, ConnAck, Connect, Disconnect, LastWill, Packet, PubAck, PubComp, PubRec, PubRel, Publish,
    SubAck, Subscribe, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe, decode, encode,
    encoded_len,
};
pub use property::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PayloadFormat, PropertyId, PublishProperties, SparseProperties, SubscribeProperties,
    UnsubscribeProperties, UserProperty, WillProperties,
};
pub use reason::{
    AuthReasonCode, ConnectReasonCode, DisconnectReasonCode, PubAckReasonCode, PubRelReasonCode,
    SubAckReasonCode, UnsubAckReasonCode,
};
pub use string::{MqttString, StringError};
pub use topic::{TopicError, TopicFilter, TopicName};
pub use types::{
    DecodeOptions, MAX_REMAINING_LENGTH, PacketId, PacketType, ProtocolVersion, QoS,
    RetainHandling, SubscriptionId,
};

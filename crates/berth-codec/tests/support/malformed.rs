//! Input the decoder must refuse: the exact `DecodeError`, its `kind()` and the reason code a
//! server answers with (`disconnect_reason()`, or `connack_reason()` for a CONNECT).

use berth_codec::{
    DecodeError, DecodeOptions, DisconnectReasonCode, ErrorKind, ProtocolVersion, decode,
};
use bytes::BytesMut;

use super::frame;

pub const ALL: [ProtocolVersion; 3] = ProtocolVersion::ALL;

pub fn decode_err(version: ProtocolVersion, bytes: &[u8], opts: DecodeOptions) -> DecodeError {
    let mut buf = BytesMut::from(bytes);
    match decode(&mut buf, &opts) {
        Err(e) => e,
        other => panic!("{version}: expected an error for {bytes:02x?}, got {other:?}"),
    }
}

/// The decode error and its classification, for a non-CONNECT packet.
#[track_caller]
pub fn assert_error(
    version: ProtocolVersion,
    bytes: &[u8],
    expected: DecodeError,
    kind: ErrorKind,
) {
    let err = decode_err(version, bytes, DecodeOptions::new(version));
    assert_eq!(err, expected, "{version}");
    assert_eq!(err.kind(), kind, "{version}: kind of {err}");
    let reason = match kind {
        ErrorKind::Malformed => DisconnectReasonCode::MalformedPacket,
        ErrorKind::PacketTooLarge => DisconnectReasonCode::PacketTooLarge,
        ErrorKind::ProtocolError | ErrorKind::UnsupportedProtocolVersion => {
            DisconnectReasonCode::ProtocolError
        }
    };
    assert_eq!(
        err.disconnect_reason(),
        reason,
        "{version}: DISCONNECT reason"
    );
    let code = match kind {
        ErrorKind::Malformed => 0x81,
        ErrorKind::PacketTooLarge => 0x95,
        _ => 0x82,
    };
    assert_eq!(err.disconnect_reason().code(), code);
}

#[track_caller]
pub fn malformed(version: ProtocolVersion, bytes: &[u8], expected: DecodeError) {
    assert_error(version, bytes, expected, ErrorKind::Malformed);
}

#[track_caller]
pub fn protocol_error(version: ProtocolVersion, bytes: &[u8], expected: DecodeError) {
    assert_error(version, bytes, expected, ErrorKind::ProtocolError);
}

/// A CONNECT is decoded by its own protocol level: the connection's version does not matter, so
/// this decodes it under every version. `connack` is the MQTT 5 CONNACK reason code the server
/// refuses it with.
#[track_caller]
pub fn connect_refused(bytes: &[u8], expected: DecodeError, kind: ErrorKind, connack: u8) {
    for version in ALL {
        connect_refused_under(version, bytes, expected.clone(), kind, connack);
    }
}

/// [`connect_refused`] for a connection of one `version` only.
#[track_caller]
pub fn connect_refused_under(
    version: ProtocolVersion,
    bytes: &[u8],
    expected: DecodeError,
    kind: ErrorKind,
    connack: u8,
) {
    let err = decode_err(version, bytes, DecodeOptions::new(version));
    assert_eq!(err, expected, "decoded under {version}");
    assert_eq!(err.kind(), kind, "kind of {err}");
    assert_eq!(
        err.connack_reason().code(),
        connack,
        "CONNACK reason of {err}"
    );
}

/// A 3.1.1 CONNECT: protocol name "MQTT", level 4, then `flags`, keep alive 60, then `rest`.
pub fn connect_v311(flags: u8, rest: &[&[u8]]) -> Vec<u8> {
    frame(
        0x10,
        &[b"\x00\x04MQTT\x04", &[flags, 0x00, 0x3C], &rest.concat()],
    )
}

/// SUBSCRIBE (packet identifier 1) with one filter and the given options byte.
pub fn subscribe_options(version: ProtocolVersion, filter: &[u8], options: u8) -> Vec<u8> {
    let properties: &[u8] = if version.is_v5() { &[0x00] } else { &[] };
    let len = (filter.len() as u16).to_be_bytes();
    frame(0x82, &[&[0x00, 0x01], properties, &len, filter, &[options]])
}

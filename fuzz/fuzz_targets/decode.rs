//! Decodes arbitrary bytes as a stream of packets for each protocol version and checks that every
//! packet the decoder accepts survives `decode(encode(packet)) == packet`.
#![no_main]

use berth_codec::{DecodeOptions, Packet, ProtocolVersion, decode, encode, encoded_len};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for version in ProtocolVersion::ALL {
        let opts = DecodeOptions::new(version);
        let mut buf = BytesMut::from(data);
        loop {
            let before = buf.len();
            match decode(&mut buf, &opts) {
                Ok(Some(packet)) => {
                    assert!(buf.len() < before, "a decoded packet consumed no bytes");
                    roundtrip(&packet, version);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
                Err(_) => {
                    assert!(buf.len() <= before);
                    break;
                }
            }
        }
    }
});

fn roundtrip(packet: &Packet, version: ProtocolVersion) {
    let mut out = BytesMut::new();
    let written = match encode(packet, version, &mut out) {
        Ok(n) => n,
        Err(err) => panic!("decoded {packet:?} does not encode for {version}: {err}"),
    };
    assert_eq!(written, out.len());
    assert_eq!(encoded_len(packet, version), Ok(written));
    let encoded = out.clone();
    match decode(&mut out, &DecodeOptions::new(version)) {
        Ok(Some(again)) => {
            assert_eq!(
                &again, packet,
                "round trip changed the packet; bytes {encoded:02x?}"
            );
            assert!(out.is_empty(), "re-decoding left {} bytes", out.len());
        }
        other => panic!("re-encoded {packet:?} as {encoded:02x?} for {version}: {other:?}"),
    }
}

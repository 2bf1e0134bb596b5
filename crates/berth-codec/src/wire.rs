//! The data representations of MQTT (§1.5): integers, variable byte integers, strings and binary
//! data. `Reader` walks one packet body that is already fully buffered, so running out of bytes
//! there means the packet lies about its own length: malformed, not "need more".

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::string::MqttString;
use crate::types::PacketType;

/// Cursor over one packet's body, zero-copy: every `Bytes` it returns slices the frame.
pub(crate) struct Reader {
    buf: Bytes,
    packet: PacketType,
}

impl Reader {
    pub(crate) fn new(buf: Bytes, packet: PacketType) -> Reader {
        Reader { buf, packet }
    }

    pub(crate) fn packet(&self) -> PacketType {
        self.packet
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn need(&self, n: usize, field: &'static str) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::UnexpectedEnd {
                packet: self.packet,
                field,
            });
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        self.need(1, field)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.need(2, field)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.need(4, field)?;
        Ok(self.buf.get_u32())
    }

    /// A Variable Byte Integer (§1.5.5): at most four bytes.
    pub(crate) fn varint(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let byte = self.u8(field)?;
            value |= u32::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::VariableIntegerTooLong {
            packet: self.packet,
        })
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        self.need(n, field)?;
        Ok(self.buf.split_to(n))
    }

    /// Binary Data (§1.5.6): two-byte length, then the bytes.
    pub(crate) fn binary(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u16(field)? as usize;
        self.take(len, field)
    }

    /// UTF-8 Encoded String (§1.5.4).
    pub(crate) fn string(&mut self, field: &'static str) -> Result<MqttString, DecodeError> {
        let bytes = self.binary(field)?;
        MqttString::from_bytes(bytes).map_err(|source| DecodeError::InvalidString {
            packet: self.packet,
            field,
            source,
        })
    }

    /// Everything left (a PUBLISH payload, a list of filters).
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// A sub-reader over the next `n` bytes (a property block).
    pub(crate) fn sub(&mut self, n: usize, field: &'static str) -> Result<Reader, DecodeError> {
        Ok(Reader::new(self.take(n, field)?, self.packet))
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if !self.buf.is_empty() {
            return Err(DecodeError::TrailingBytes {
                packet: self.packet,
                count: self.buf.len(),
            });
        }
        Ok(())
    }
}

/// Bytes a Variable Byte Integer takes for `value` (< 2^28).
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub(crate) fn put_varint(out: &mut BytesMut, mut value: usize) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}

/// A string or binary field: callers check the 65,535-byte limit before encoding starts.
pub(crate) fn put_binary(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u16(bytes.len() as u16);
    out.put_slice(bytes);
}

pub(crate) fn put_string(out: &mut BytesMut, text: &MqttString) {
    put_binary(out, text.as_bytes());
}

/// Encoded length of a string or binary field.
pub(crate) fn binary_len(bytes: &[u8]) -> usize {
    2 + bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_boundaries_from_the_spec_table() {
        // MQTT 5 §1.5.5 table 1-1.
        let cases: [(usize, &[u8]); 8] = [
            (0, &[0x00]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ];
        for (value, bytes) in cases {
            let mut out = BytesMut::new();
            put_varint(&mut out, value);
            assert_eq!(&out[..], bytes, "encode {value}");
            assert_eq!(varint_len(value), bytes.len());
            let mut reader = Reader::new(Bytes::copy_from_slice(bytes), PacketType::Publish);
            assert_eq!(
                reader.varint("test").unwrap() as usize,
                value,
                "decode {value}"
            );
        }
        let mut five = Reader::new(
            Bytes::from_static(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            PacketType::Publish,
        );
        assert_eq!(
            five.varint("test"),
            Err(DecodeError::VariableIntegerTooLong {
                packet: PacketType::Publish
            })
        );
    }
}

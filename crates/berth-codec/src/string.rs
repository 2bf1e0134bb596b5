//! MQTT UTF-8 Encoded Strings, validated once and then shared zero-copy.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// Why bytes are not an MQTT UTF-8 string (MQTT 5 §1.5.4, 3.1.1 §1.5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StringError {
    #[error("string of {len} bytes is longer than 65535")]
    TooLong { len: usize },
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    #[error("string contains the null character U+0000")]
    NullCharacter,
}

/// A string as MQTT allows it: valid UTF-8 (no surrogates), no U+0000, at most 65,535 bytes.
///
/// It holds a `Bytes`, usually a slice of the received frame, so cloning is a reference count.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MqttString(Bytes);

impl MqttString {
    pub const MAX_LEN: usize = u16::MAX as usize;

    /// Validates `bytes` without copying them.
    pub fn from_bytes(bytes: Bytes) -> Result<MqttString, StringError> {
        if bytes.len() > Self::MAX_LEN {
            return Err(StringError::TooLong { len: bytes.len() });
        }
        // Rust's UTF-8 validation already rejects encoded surrogates (U+D800..U+DFFF) and
        // overlong forms, which MQTT also forbids ([MQTT-1.5.4-1]).
        let text = std::str::from_utf8(&bytes).map_err(|_| StringError::InvalidUtf8)?;
        if text.as_bytes().contains(&0) {
            return Err(StringError::NullCharacter);
        }
        Ok(MqttString(bytes))
    }

    /// Copies and validates `text`.
    pub fn new(text: &str) -> Result<MqttString, StringError> {
        Self::from_bytes(Bytes::copy_from_slice(text.as_bytes()))
    }

    /// For literals known to be valid; invalid input yields a `StringError` instead of a panic.
    pub fn from_static(text: &'static str) -> Result<MqttString, StringError> {
        Self::from_bytes(Bytes::from_static(text.as_bytes()))
    }

    /// The same text in an allocation of its own. A string decoded from a packet is a slice of
    /// the packet's buffer and keeps all of it alive: whatever is kept for long (a session's
    /// client id, its subscriptions) is detached first.
    pub fn detached(&self) -> MqttString {
        MqttString(Bytes::copy_from_slice(&self.0))
    }

    pub fn as_str(&self) -> &str {
        #[allow(unsafe_code)]
        // SAFETY: every constructor validates the bytes as UTF-8 and `Bytes` is immutable.
        // Re-validating here would cost a scan per topic match on the hot path.
        unsafe {
            std::str::from_utf8_unchecked(&self.0)
        }
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// A sub-slice by byte range; the range must lie on character boundaries of a valid string,
    /// which holds for ranges found by searching for ASCII bytes such as `/`.
    pub(crate) fn slice_ascii_bounded(&self, range: std::ops::Range<usize>) -> MqttString {
        MqttString(self.0.slice(range))
    }
}

impl Deref for MqttString {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for MqttString {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for MqttString {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for MqttString {
    type Error = StringError;
    fn try_from(text: &str) -> Result<Self, StringError> {
        MqttString::new(text)
    }
}

impl TryFrom<String> for MqttString {
    type Error = StringError;
    fn try_from(text: String) -> Result<Self, StringError> {
        MqttString::from_bytes(Bytes::from(text))
    }
}

impl PartialEq<str> for MqttString {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for MqttString {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_null_invalid_utf8_and_overlong() {
        assert_eq!(MqttString::new("a\0b"), Err(StringError::NullCharacter));
        // An encoded surrogate U+D800 (ED A0 80) is not UTF-8.
        assert_eq!(
            MqttString::from_bytes(Bytes::from_static(&[0xED, 0xA0, 0x80])),
            Err(StringError::InvalidUtf8)
        );
        // Overlong encoding of '/' (C0 AF).
        assert_eq!(
            MqttString::from_bytes(Bytes::from_static(&[0xC0, 0xAF])),
            Err(StringError::InvalidUtf8)
        );
        let long = "x".repeat(65_536);
        assert_eq!(
            MqttString::new(&long),
            Err(StringError::TooLong { len: 65_536 })
        );
        assert!(MqttString::new(&long[..65_535]).is_ok());
    }

    #[test]
    fn keeps_non_ascii_text() {
        let s = MqttString::new("A\u{2A6D4}").unwrap();
        assert_eq!(s.as_bytes().as_ref(), &[0x41, 0xF0, 0xAA, 0x9B, 0x94]);
        assert_eq!(s, "A\u{2A6D4}");
    }
}

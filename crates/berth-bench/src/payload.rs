//! What every benchmark message carries at the start of its payload: which publisher stream it
//! belongs to, its sequence number in that stream, and when it was sent.
//!
//! ```text
//!  offset  0        4                12               20           payload
//!          | stream | seq            | sent_ns        | filler ... |
//!            u32 LE   u64 LE           u64 LE
//! ```
//!
//! `sent_ns` counts nanoseconds on a monotonic [`Clock`] shared by the publishers and subscribers
//! of one process, so latencies need no synchronised wall clocks.

use std::time::Instant;

/// Bytes of the stamp; the smallest payload a benchmark message may have.
pub const STAMP_LEN: usize = 20;

/// The identity and send time of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The publisher stream (one per publisher, or one per session topic).
    pub stream: u32,
    /// 0, 1, 2, … within the stream.
    pub seq: u64,
    /// Send time on the process [`Clock`].
    pub sent_ns: u64,
}

impl Stamp {
    /// Writes the stamp over the first [`STAMP_LEN`] bytes of `payload`.
    ///
    /// The caller sized the payload: templates refuse payloads shorter than the stamp.
    pub fn write(&self, payload: &mut [u8]) {
        if let Some(head) = payload.get_mut(..STAMP_LEN) {
            head[0..4].copy_from_slice(&self.stream.to_le_bytes());
            head[4..12].copy_from_slice(&self.seq.to_le_bytes());
            head[12..20].copy_from_slice(&self.sent_ns.to_le_bytes());
        }
    }

    /// Reads the stamp of a received payload; `None` if it is too short to carry one.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let head = payload.get(..STAMP_LEN)?;
        let stream = u32::from_le_bytes(head[0..4].try_into().ok()?);
        let seq = u64::from_le_bytes(head[4..12].try_into().ok()?);
        let sent_ns = u64::from_le_bytes(head[12..20].try_into().ok()?);
        Some(Stamp {
            stream,
            seq,
            sent_ns,
        })
    }
}

/// Monotonic nanoseconds since the start of the run.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    /// Nanoseconds from the clock's origin to `at` (0 for instants before it).
    pub fn ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn now_ns(&self) -> u64 {
        self.ns(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_at_the_start_of_the_payload() {
        let stamp = Stamp {
            stream: 0xDEAD_BEEF,
            seq: u64::MAX - 7,
            sent_ns: 1_234_567_890_123,
        };
        let mut payload = vec![0xAA; 64];
        stamp.write(&mut payload);
        assert_eq!(Stamp::read(&payload), Some(stamp));
        assert!(
            payload[STAMP_LEN..].iter().all(|&b| b == 0xAA),
            "filler kept"
        );
    }

    #[test]
    fn stamp_layout_is_little_endian_and_fixed() {
        let stamp = Stamp {
            stream: 1,
            seq: 2,
            sent_ns: 3,
        };
        let mut payload = [0u8; STAMP_LEN];
        stamp.write(&mut payload);
        assert_eq!(
            payload,
            [1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn short_payloads_carry_no_stamp() {
        assert_eq!(Stamp::read(&[0u8; STAMP_LEN - 1]), None);
        assert_eq!(Stamp::read(&[]), None);
        let mut short = [0u8; 4];
        Stamp {
            stream: 9,
            seq: 9,
            sent_ns: 9,
        }
        .write(&mut short);
        assert_eq!(short, [0u8; 4], "too short: left alone");
    }

    #[test]
    fn clock_is_monotonic_from_its_origin() {
        let clock = Clock::new();
        let a = clock.now_ns();
        let b = clock.now_ns();
        assert!(b >= a);
        assert_eq!(
            clock.ns(clock.origin - std::time::Duration::from_secs(1)),
            0
        );
    }
}

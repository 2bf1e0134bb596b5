//! The QoS 1 and 2 send window of one publisher: which packet identifiers await their PUBACK (or
//! PUBCOMP) and since when. Fixed-size tables (8 KiB bitmap, 512 KiB of send times), allocated
//! once per publisher.

use berth_codec::PacketId;

const IDS: usize = 1 << 16;

#[derive(Debug)]
pub struct InFlight {
    outstanding: Box<[u64]>,
    sent_ns: Box<[u64]>,
    count: u32,
    next: u16,
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight::new()
    }
}

impl InFlight {
    pub fn new() -> InFlight {
        InFlight {
            outstanding: vec![0u64; IDS / 64].into_boxed_slice(),
            sent_ns: vec![0u64; IDS].into_boxed_slice(),
            count: 0,
            next: 0,
        }
    }

    /// Messages awaiting their PUBACK.
    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The next free identifier, marked outstanding since `now_ns`; `None` when all 65,535 are.
    pub fn open(&mut self, now_ns: u64) -> Option<PacketId> {
        if self.count as usize >= IDS - 1 {
            return None;
        }
        loop {
            self.next = self.next.wrapping_add(1);
            let Some(id) = PacketId::new(self.next) else {
                continue; // 0 is not an identifier
            };
            let (word, bit) = slot(id);
            if self.outstanding[word] & bit == 0 {
                self.outstanding[word] |= bit;
                self.sent_ns[usize::from(id.get())] = now_ns;
                self.count += 1;
                return Some(id);
            }
        }
    }

    /// Whether `id` awaits its acknowledgement (a PUBREC for another id is not answered).
    pub fn contains(&self, id: PacketId) -> bool {
        let (word, bit) = slot(id);
        self.outstanding[word] & bit != 0
    }

    /// Closes `id`: its send time, or `None` if it was not outstanding (a PUBACK the broker
    /// should not have sent).
    pub fn close(&mut self, id: PacketId) -> Option<u64> {
        let (word, bit) = slot(id);
        if self.outstanding[word] & bit == 0 {
            return None;
        }
        self.outstanding[word] &= !bit;
        self.count -= 1;
        Some(self.sent_ns[usize::from(id.get())])
    }
}

fn slot(id: PacketId) -> (usize, u64) {
    let n = usize::from(id.get());
    (n / 64, 1u64 << (n % 64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sequential_nonzero_and_closed_once() {
        let mut w = InFlight::new();
        let a = w.open(10).unwrap();
        let b = w.open(20).unwrap();
        assert_eq!((a.get(), b.get(), w.len()), (1, 2, 2));
        assert!(w.contains(b));
        assert_eq!(w.close(b), Some(20));
        assert!(!w.contains(b));
        assert_eq!(w.close(b), None, "second PUBACK for the same id");
        assert_eq!(w.close(a), Some(10));
        assert!(w.is_empty());
    }

    #[test]
    fn wrapping_skips_zero_and_ids_still_outstanding() {
        let mut w = InFlight::new();
        let held = w.open(0).unwrap(); // id 1 stays unacknowledged
        for _ in 0..65_533 {
            let id = w.open(0).unwrap();
            w.close(id).unwrap();
        }
        // next is now 65534; then 65535, then wraps past 0 and past the held 1.
        assert_eq!(w.open(0).unwrap().get(), 65_535);
        let id = w.open(0).unwrap();
        assert_eq!(id.get(), 2);
        assert_ne!(id, held);
    }

    #[test]
    fn full_window_refuses_a_new_id() {
        let mut w = InFlight::new();
        for _ in 0..65_535 {
            assert!(w.open(0).is_some());
        }
        assert_eq!(w.open(0), None);
        w.close(PacketId::new(7).unwrap()).unwrap();
        assert_eq!(w.open(0).unwrap().get(), 7);
    }
}

//! A session's in-flight window: the PUBLISHes (and PUBRELs) sent and not yet acknowledged, in
//! the order they were sent.
//!
//! Every message sent needs a packet identifier the window does not use, and finding one was a
//! scan of the window per message (~7.5 % of the broker thread in fan-out QoS 1: each entry is
//! a whole delivery, so a window of 100 is ~200 cache lines). The window keeps a 128-bit
//! summary (two words) of the identifiers it may hold (bucket `id % 128`), so that a fresh id
//! from the session's counter is almost always known free without the scan. With 128 or more
//! ids in flight every bucket is set and each allocation scans, as before.

use std::collections::VecDeque;
use std::ops::Deref;

use berth_codec::PacketId;

use super::session::Outgoing;

#[derive(Debug, Default)]
pub(crate) struct Window {
    entries: VecDeque<(PacketId, Outgoing)>,
    /// Bit `id % 128` is set for every id in `entries`, and perhaps for ids that have left
    /// (a superset: set on every push, made exact again by each scan that allocation does).
    /// Two words, not a `u128`: that one's 16-byte alignment would pad every session.
    maybe_used: Buckets,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Buckets([u64; 2]);

impl Buckets {
    #[cfg(test)]
    fn of(id: PacketId) -> Buckets {
        let n = usize::from(id.get() % 128);
        let mut bits = [0; 2];
        bits[n / 64] = 1 << (n % 64);
        Buckets(bits)
    }

    fn add(&mut self, id: PacketId) {
        let n = usize::from(id.get() % 128);
        self.0[n / 64] |= 1 << (n % 64);
    }

    fn may_hold(self, id: PacketId) -> bool {
        let n = usize::from(id.get() % 128);
        self.0[n / 64] & (1 << (n % 64)) != 0
    }
}

impl Window {
    pub fn push_back(&mut self, entry: (PacketId, Outgoing)) {
        self.maybe_used.add(entry.0);
        self.entries.push_back(entry);
    }

    pub fn remove(&mut self, position: usize) -> Option<(PacketId, Outgoing)> {
        self.entries.remove(position)
    }

    pub fn retain(&mut self, keep: impl FnMut(&(PacketId, Outgoing)) -> bool) {
        self.entries.retain(keep);
    }

    /// Empties the window and gives its room up.
    pub fn clear(&mut self) {
        self.entries = VecDeque::new();
        self.maybe_used = Buckets::default();
    }

    /// The entries' states, to change in place (the ids stay as they are).
    pub fn outgoing_mut(&mut self) -> impl Iterator<Item = &mut Outgoing> {
        self.entries.iter_mut().map(|(_, outgoing)| outgoing)
    }

    pub fn outgoing_at_mut(&mut self, position: usize) -> Option<&mut Outgoing> {
        self.entries.get_mut(position).map(|(_, outgoing)| outgoing)
    }

    /// Whether `id` is in the window.
    pub fn uses(&self, id: PacketId) -> bool {
        self.maybe_used.may_hold(id) && self.entries.iter().any(|(used, _)| *used == id)
    }

    /// `uses`, for allocation: a scan also clears the buckets of ids that have left, so that
    /// the next ids the counter offers are found free without one.
    pub fn uses_tightening(&mut self, id: PacketId) -> bool {
        if !self.maybe_used.may_hold(id) {
            return false;
        }
        let mut exact = Buckets::default();
        let mut found = false;
        for (used, _) in &self.entries {
            exact.add(*used);
            found |= *used == id;
        }
        self.maybe_used = exact;
        found
    }
}

impl Deref for Window {
    type Target = VecDeque<(PacketId, Outgoing)>;

    fn deref(&self) -> &Self::Target {
        &self.entries
    }
}

impl FromIterator<(PacketId, Outgoing)> for Window {
    fn from_iter<I: IntoIterator<Item = (PacketId, Outgoing)>>(entries: I) -> Window {
        let mut window = Window::default();
        for entry in entries {
            window.push_back(entry);
        }
        window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    fn window(ids: &[u16]) -> Window {
        ids.iter().map(|&n| (id(n), Outgoing::Released)).collect()
    }

    #[test]
    fn an_id_is_used_exactly_while_it_is_in_the_window() {
        let mut w = window(&[1, 129, 300]);
        for n in [1, 129, 300] {
            assert!(w.uses(id(n)) && w.uses_tightening(id(n)), "{n}");
        }
        // Same buckets as ids in the window (1, 129 and 300 are buckets 1, 1 and 44), but
        // not in it; and one whose bucket is empty.
        for n in [257, 44, 2] {
            assert!(!w.uses(id(n)) && !w.uses_tightening(id(n)), "{n}");
        }
        w.retain(|(used, _)| *used != id(129));
        assert!(!w.uses(id(129)) && !w.uses_tightening(id(129)));
        assert!(w.uses(id(1)), "its bucket's other id stays");
        w.remove(0);
        assert!(!w.uses(id(1)));
        w.push_back((id(1), Outgoing::Released));
        assert!(w.uses(id(1)) && w.uses_tightening(id(1)));
        w.clear();
        assert!(!w.uses(id(1)) && !w.uses(id(300)) && w.is_empty());
    }

    #[test]
    fn a_scan_clears_the_buckets_of_ids_that_left() {
        let mut w = window(&[5, 6]);
        w.retain(|(used, _)| *used != id(5));
        assert!(w.maybe_used.may_hold(id(5)), "left set until a scan");
        assert!(!w.uses_tightening(id(133)), "same bucket as 5");
        assert_eq!(w.maybe_used, Buckets::of(id(6)));
    }

    #[test]
    fn the_summary_never_hides_an_id_through_any_sequence_of_changes() {
        let mut w = Window::default();
        let mut state = 0x9e37_79b9_u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for _ in 0..5_000 {
            match next() % 4 {
                0 | 1 => {
                    let n = (next() % 400 + 1) as u16;
                    if !w.uses(id(n)) {
                        w.push_back((id(n), Outgoing::Released));
                    }
                }
                2 if !w.is_empty() => {
                    let at = next() as usize % w.len();
                    w.remove(at);
                }
                _ => {
                    let n = (next() % 400 + 1) as u16;
                    w.retain(|(used, _)| *used != id(n));
                }
            }
            let probe = (next() % 400 + 1) as u16;
            let held = w.iter().any(|(used, _)| *used == id(probe));
            assert_eq!(w.uses(id(probe)), held);
            assert_eq!(w.uses_tightening(id(probe)), held);
        }
    }
}

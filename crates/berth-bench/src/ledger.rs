//! Exact delivery accounting per publisher stream: which sequence numbers arrived, how many
//! twice, how many after a later one.
//!
//! Definitions, per stream and per subscriber:
//! - **unique**: distinct sequence numbers received;
//! - **duplicates**: arrivals of a sequence number already received;
//! - **reordered**: first arrivals of a sequence number lower than the highest seen before it;
//! - **lost**: messages the publisher sent (`0..sent`) that never arrived.
//!
//! Seen sequence numbers are kept in a bitmap that grows by doubling, so recording costs no
//! allocation in the steady state (1 bit per message: 10 million messages take 1.25 MB).

use serde::{Deserialize, Serialize};

/// Sequence numbers at or above this are refused as corrupt rather than grown into (2^32 bits
/// would be a 512 MiB bitmap).
const MAX_TRACKED_SEQ: u64 = 1 << 32;

/// What one subscriber saw of one stream.
#[derive(Debug, Clone, Default)]
pub struct StreamLedger {
    seen: Vec<u64>,
    unique: u64,
    duplicates: u64,
    reordered: u64,
    highest: Option<u64>,
}

/// The outcome of one arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    InOrder,
    Reordered,
    Duplicate,
    /// The sequence number is beyond anything a run can send: a corrupt or foreign payload.
    OutOfRange,
}

impl StreamLedger {
    pub fn record(&mut self, seq: u64) -> Arrival {
        if seq >= MAX_TRACKED_SEQ {
            return Arrival::OutOfRange;
        }
        let word = (seq / 64) as usize;
        let bit = 1u64 << (seq % 64);
        if word >= self.seen.len() {
            let len = (word + 1).next_power_of_two().max(64);
            self.seen.resize(len, 0);
        }
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.seen[word] |= bit;
        self.unique += 1;
        match self.highest {
            Some(highest) if seq < highest => {
                self.reordered += 1;
                Arrival::Reordered
            }
            _ => {
                self.highest = Some(seq);
                Arrival::InOrder
            }
        }
    }

    #[cfg(test)]
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// The counts against a publisher that sent sequence numbers `0..sent`.
    pub fn tally(&self, sent: u64) -> Tally {
        Tally {
            sent,
            unique: self.unique,
            lost: sent.saturating_sub(self.unique_below(sent)),
            duplicates: self.duplicates,
            reordered: self.reordered,
            unexpected: self.unique - self.unique_below(sent),
        }
    }

    /// Distinct sequence numbers received that are below `limit`.
    fn unique_below(&self, limit: u64) -> u64 {
        let full_words = (limit / 64) as usize;
        let mut count: u64 = self
            .seen
            .iter()
            .take(full_words)
            .map(|w| u64::from(w.count_ones()))
            .sum();
        let rest = limit % 64;
        if rest > 0
            && let Some(word) = self.seen.get(full_words)
        {
            count += u64::from((word & ((1u64 << rest) - 1)).count_ones());
        }
        count
    }
}

/// Delivery counts of one stream at one subscriber, or summed over several.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Messages the publisher sent (expected here).
    pub sent: u64,
    /// Distinct messages received.
    pub unique: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Distinct sequence numbers received that the publisher says it never sent.
    pub unexpected: u64,
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.sent += other.sent;
        self.unique += other.unique;
        self.lost += other.lost;
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
        self.unexpected += other.unexpected;
    }
}

/// The ledgers of one subscriber: one per stream it expects.
#[derive(Debug, Clone)]
pub struct Ledger {
    /// Sorted stream ids, parallel to `ledgers`.
    streams: Vec<u32>,
    ledgers: Vec<StreamLedger>,
    unique: u64,
    /// Messages whose payload carried no stamp, or a stream this subscriber does not expect.
    foreign: u64,
}

impl Ledger {
    pub fn new(mut streams: Vec<u32>) -> Ledger {
        streams.sort_unstable();
        streams.dedup();
        let ledgers = vec![StreamLedger::default(); streams.len()];
        Ledger {
            streams,
            ledgers,
            unique: 0,
            foreign: 0,
        }
    }

    pub fn streams(&self) -> &[u32] {
        &self.streams
    }

    pub fn record(&mut self, stream: u32, seq: u64) -> Arrival {
        let Ok(slot) = self.streams.binary_search(&stream) else {
            self.foreign += 1;
            return Arrival::OutOfRange;
        };
        let arrival = self.ledgers[slot].record(seq);
        match arrival {
            Arrival::InOrder | Arrival::Reordered => self.unique += 1,
            Arrival::OutOfRange => self.foreign += 1,
            Arrival::Duplicate => {}
        }
        arrival
    }

    pub fn record_foreign(&mut self) {
        self.foreign += 1;
    }

    /// Distinct messages received over all expected streams.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    pub fn foreign(&self) -> u64 {
        self.foreign
    }

    /// Per-stream tallies, given each stream's sent count (`sent(stream)`).
    pub fn tallies(&self, sent: impl Fn(u32) -> u64) -> Vec<(u32, Tally)> {
        self.streams
            .iter()
            .zip(&self.ledgers)
            .map(|(&stream, ledger)| (stream, ledger.tally(sent(stream))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream_counts_nothing_wrong() {
        let mut l = StreamLedger::default();
        for seq in 0..1000 {
            assert_eq!(l.record(seq), Arrival::InOrder);
        }
        assert_eq!(
            l.tally(1000),
            Tally {
                sent: 1000,
                unique: 1000,
                ..Tally::default()
            }
        );
    }

    #[test]
    fn gaps_are_lost_and_late_arrivals_reordered() {
        let mut l = StreamLedger::default();
        for seq in [0, 1, 3, 2, 5, 9] {
            l.record(seq);
        }
        // Sent 0..10: 4, 6, 7 and 8 never came; 2 came after 3.
        let t = l.tally(10);
        assert_eq!(t.unique, 6);
        assert_eq!(t.lost, 4);
        assert_eq!(t.reordered, 1);
        assert_eq!(t.duplicates, 0);
    }

    #[test]
    fn duplicates_are_counted_once_each_and_not_as_reordered() {
        let mut l = StreamLedger::default();
        assert_eq!(l.record(0), Arrival::InOrder);
        assert_eq!(l.record(1), Arrival::InOrder);
        assert_eq!(l.record(1), Arrival::Duplicate);
        assert_eq!(l.record(0), Arrival::Duplicate);
        assert_eq!(l.record(0), Arrival::Duplicate);
        let t = l.tally(2);
        assert_eq!((t.unique, t.duplicates, t.reordered, t.lost), (2, 3, 0, 0));
    }

    #[test]
    fn a_redelivered_tail_after_reconnect_is_duplicates_only() {
        // A QoS 1 subscriber reconnects and the broker resends 5..8 that were in flight.
        let mut l = StreamLedger::default();
        for seq in (0..8).chain(5..12) {
            l.record(seq);
        }
        let t = l.tally(12);
        assert_eq!((t.unique, t.duplicates, t.reordered, t.lost), (12, 3, 0, 0));
    }

    #[test]
    fn bitmap_grows_across_word_boundaries_and_far_jumps() {
        let mut l = StreamLedger::default();
        for seq in [63, 64, 65, 127, 128, 1_000_000] {
            assert_ne!(l.record(seq), Arrival::Duplicate);
        }
        for seq in [63, 64, 65, 127, 128, 1_000_000] {
            assert_eq!(l.record(seq), Arrival::Duplicate);
        }
        assert_eq!(l.unique(), 6);
        // Sent 0..129: the five low ones arrived; 1_000_000 is unexpected.
        let t = l.tally(129);
        assert_eq!(t.lost, 129 - 5);
        assert_eq!(t.unexpected, 1);
    }

    #[test]
    fn corrupt_sequence_numbers_are_refused_without_allocating() {
        let mut l = StreamLedger::default();
        assert_eq!(l.record(u64::MAX), Arrival::OutOfRange);
        assert_eq!(l.record(MAX_TRACKED_SEQ), Arrival::OutOfRange);
        assert!(l.seen.is_empty());
        assert_eq!(l.unique(), 0);
    }

    #[test]
    fn unique_below_counts_partial_words() {
        let mut l = StreamLedger::default();
        for seq in 0..70 {
            l.record(seq);
        }
        assert_eq!(l.unique_below(0), 0);
        assert_eq!(l.unique_below(1), 1);
        assert_eq!(l.unique_below(64), 64);
        assert_eq!(l.unique_below(65), 65);
        assert_eq!(l.unique_below(1000), 70);
    }

    #[test]
    fn ledger_keeps_streams_apart_and_counts_foreign_ones() {
        let mut ledger = Ledger::new(vec![7, 3, 5, 3]);
        assert_eq!(ledger.streams(), &[3, 5, 7]);
        ledger.record(3, 0);
        ledger.record(3, 1);
        ledger.record(7, 0);
        ledger.record(7, 0);
        ledger.record(4, 0); // not expected here
        ledger.record_foreign();
        assert_eq!(ledger.unique(), 3);
        assert_eq!(ledger.foreign(), 2);
        let tallies = ledger.tallies(|stream| if stream == 3 { 2 } else { 1 });
        assert_eq!(tallies.len(), 3);
        assert_eq!(tallies[0].1.lost, 0);
        assert_eq!(tallies[1].1.lost, 1, "stream 5 sent one that never came");
        assert_eq!(tallies[2].1.duplicates, 1);
        let mut sum = Tally::default();
        for (_, t) in &tallies {
            sum.add(t);
        }
        assert_eq!(
            (sum.sent, sum.unique, sum.lost, sum.duplicates),
            (4, 3, 1, 1)
        );
    }
}

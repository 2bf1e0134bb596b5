//! The one piece of state publishers and subscribers share: how many messages each stream sent
//! in the end. A publisher writes its count once, when it is done; a subscriber reads the counts
//! of its streams after each read batch to know whether everything has arrived. No lock, no
//! channel, nothing per message.

use std::sync::atomic::{AtomicU64, Ordering};

const STILL_SENDING: u64 = u64::MAX;

#[derive(Debug)]
pub struct Board {
    finals: Box<[AtomicU64]>,
}

impl Board {
    /// A board for streams `0..streams`.
    pub fn new(streams: usize) -> Board {
        Board {
            finals: (0..streams)
                .map(|_| AtomicU64::new(STILL_SENDING))
                .collect(),
        }
    }

    /// Records that `stream` sent sequence numbers `0..sent` and will send no more.
    pub fn finish(&self, stream: u32, sent: u64) {
        if let Some(cell) = self.finals.get(stream as usize) {
            cell.store(sent.min(STILL_SENDING - 1), Ordering::Release);
        }
    }

    /// What `stream` sent, once it is done.
    pub fn sent(&self, stream: u32) -> Option<u64> {
        let sent = self.finals.get(stream as usize)?.load(Ordering::Acquire);
        (sent != STILL_SENDING).then_some(sent)
    }

    /// The total the given streams sent, once all of them are done.
    pub fn expected(&self, streams: &[u32]) -> Option<u64> {
        streams.iter().map(|&s| self.sent(s)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_is_known_only_when_every_stream_finished() {
        let board = Board::new(3);
        assert_eq!(board.expected(&[0, 2]), None);
        board.finish(0, 10);
        assert_eq!(board.expected(&[0, 2]), None);
        board.finish(2, 5);
        assert_eq!(board.expected(&[0, 2]), Some(15));
        assert_eq!(board.sent(1), None);
        assert_eq!(board.sent(9), None, "unknown stream");
        assert_eq!(board.expected(&[]), Some(0));
    }
}

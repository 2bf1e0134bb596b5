//! How much room a connection's read buffer gets before each read.
//!
//! A `BytesMut` with no spare room asks the socket for 64 bytes at a time (`BufMut` reserves
//! 64), and decoded packets are split off the front of the buffer, so under steady traffic the
//! room left was mostly that: 16 pairs of QoS 1 clients cost 3.4 million `recvfrom` calls in
//! 10 s, 1.3 packets per call. Room that doubles while reads fill it and halves while they
//! don't keeps a busy connection at a few calls per burst, and a quiet one (an idle device
//! sending a PINGREQ now and then) at the smallest block, so idle connections hold no more
//! memory than before.

use bytes::BytesMut;

/// Room for a few small packets: what a quiet connection reads into.
const MIN_ROOM: usize = 64;
/// At most this much is asked for in one read. Decoded packets share the block they were read
/// into (their payloads are slices of it), so a larger block stays alive longer.
const MAX_ROOM: usize = 16 * 1024;

#[derive(Debug)]
pub(crate) struct ReadSize {
    room: u32,
}

impl Default for ReadSize {
    fn default() -> Self {
        ReadSize {
            room: MIN_ROOM as u32,
        }
    }
}

impl ReadSize {
    /// Makes room in `buf` for the next read; returns the room offered.
    pub(crate) fn prepare(&self, buf: &mut BytesMut) -> usize {
        let room = self.room as usize;
        if buf.capacity() - buf.len() < room {
            buf.reserve(room);
        }
        buf.capacity() - buf.len()
    }

    /// After what was read has been decoded: a buffer left empty is given up, so that a
    /// connection that goes quiet after a burst does not keep its last block (up to
    /// `MAX_ROOM`) while it idles. It costs nothing while traffic flows: the decoded packets
    /// still hold that block, so the next `prepare` would have allocated a new one anyway.
    pub(crate) fn release_drained(buf: &mut BytesMut) {
        if buf.is_empty() && buf.capacity() > MIN_ROOM {
            *buf = BytesMut::new();
        }
    }

    /// After a read of `read` bytes into `offered` bytes of room.
    pub(crate) fn observe(&mut self, read: usize, offered: usize) {
        let room = self.room as usize;
        let room = if read >= offered {
            (room * 2).min(MAX_ROOM)
        } else if read * 4 < room {
            (room / 2).max(MIN_ROOM)
        } else {
            room
        };
        // At most MAX_ROOM: a u32 keeps a parked connection's state within its size class.
        self.room = room as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_grows_while_reads_fill_it_and_shrinks_back_when_they_do_not() {
        let mut size = ReadSize::default();
        let mut buf = BytesMut::new();
        for _ in 0..20 {
            let offered = size.prepare(&mut buf);
            size.observe(offered, offered);
            buf.clear();
        }
        assert_eq!(
            size.room as usize, MAX_ROOM,
            "a full read each time: the room grows to its cap"
        );
        assert!(size.prepare(&mut buf) >= MAX_ROOM);
        for _ in 0..20 {
            let offered = size.prepare(&mut buf);
            size.observe(2, offered);
        }
        assert_eq!(
            size.room as usize, MIN_ROOM,
            "small reads: back to the smallest block"
        );
    }

    #[test]
    fn a_buffer_drained_after_a_burst_is_given_up() {
        let mut size = ReadSize::default();
        let mut buf = BytesMut::new();
        for _ in 0..10 {
            let offered = size.prepare(&mut buf);
            size.observe(offered, offered);
        }
        assert!(
            buf.capacity() >= 1024,
            "a burst grew it: {}",
            buf.capacity()
        );
        buf.extend_from_slice(&[0x30; 100]);
        let _packets = buf.split().freeze(); // decoded: slices of the block, still alive
        ReadSize::release_drained(&mut buf);
        assert_eq!(buf.capacity(), 0, "nothing kept while the connection idles");
        buf.extend_from_slice(b"partial");
        ReadSize::release_drained(&mut buf);
        assert_eq!(&buf[..], b"partial", "a partial packet is kept");
    }

    #[test]
    fn a_quiet_connection_never_grows_its_buffer() {
        let mut size = ReadSize::default();
        let mut buf = BytesMut::new();
        for _ in 0..100 {
            let offered = size.prepare(&mut buf);
            size.observe(2, offered);
            let _ = buf.split_to(0);
        }
        assert!(
            buf.capacity() <= 2 * MIN_ROOM,
            "capacity {}",
            buf.capacity()
        );
    }
}

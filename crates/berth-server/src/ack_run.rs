//! The packet ids of consecutive PUBACKs a connection read together, carried inline in one
//! command to the broker thread.
//!
//! A subscriber acknowledges every QoS 1 message it receives, and it reads many in one go: in
//! fan-out, 8 subscribers sent the broker thread ~1.2 million PUBACKs a second, each a command
//! of its own (a slot in the channel, copied in and out, and its own dispatch). A run is one
//! command for up to [`AckRun::CAPACITY`] of them, without an allocation: it fits in the room
//! a command takes anyway.
//!
//! Only the ids travel: the broker rebuilds each as a plain PUBACK. An MQTT 5 PUBACK's reason
//! code and properties (a reason string, user properties) are dropped on the way, which is
//! what the broker did with them before: ending the exchange needs the id alone.

use berth_codec::PacketId;

/// Packet ids of PUBACKs in the order read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AckRun {
    len: u8,
    ids: [u16; AckRun::CAPACITY],
}

impl AckRun {
    /// As many as fit beside a connection id in the room of a command carrying a packet.
    pub(crate) const CAPACITY: usize = 48;

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub(crate) fn is_full(&self) -> bool {
        usize::from(self.len) == Self::CAPACITY
    }

    /// Adds the PUBACK of `id`; the caller hands a full run over before it adds more.
    pub(crate) fn push(&mut self, id: PacketId) {
        debug_assert!(!self.is_full(), "a full run is handed over first");
        if let Some(slot) = self.ids.get_mut(usize::from(self.len)) {
            *slot = id.get();
            self.len += 1;
        }
    }

    /// The ids, in the order they were read.
    pub(crate) fn ids(&self) -> impl Iterator<Item = PacketId> + '_ {
        self.ids[..usize::from(self.len)]
            .iter()
            .filter_map(|&id| PacketId::new(id))
    }
}

impl Default for AckRun {
    fn default() -> AckRun {
        AckRun {
            len: 0,
            ids: [0; AckRun::CAPACITY],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(value: u16) -> PacketId {
        PacketId::new(value).expect("non-zero")
    }

    #[test]
    fn a_run_keeps_its_ids_in_order_up_to_its_capacity() {
        let mut run = AckRun::default();
        assert!(run.is_empty());
        for value in 1..=AckRun::CAPACITY as u16 {
            assert!(!run.is_full());
            run.push(id(value * 3));
        }
        assert!(run.is_full());
        assert_eq!(run.len(), AckRun::CAPACITY);
        let ids: Vec<u16> = run.ids().map(PacketId::get).collect();
        let expected: Vec<u16> = (1..=AckRun::CAPACITY as u16).map(|v| v * 3).collect();
        assert_eq!(ids, expected);
    }
}

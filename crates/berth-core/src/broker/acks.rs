//! Acknowledgements to publishers (PUBACK, PUBREC) that cannot go out at once, kept in the order
//! of their PUBLISHes per connection ([MQTT-4.6.0-2]). One waits for a reason of its own:
//!
//! - **other nodes** (a cluster): the message matched sessions owned elsewhere, and the promise
//!   of the acknowledgement holds only once every owner has stored it (`token`);
//! - **publisher flow control** (`queue.backpressure`): the message was queued for a connected
//!   session whose queue is backing up. The acknowledgement waits until that queue has drained
//!   to half the congestion mark, or for `ACK_HOLD_MAX_MS` at most, so that a QoS 1/2 publisher
//!   with its window of unacknowledged messages slows to what the subscriber takes instead of
//!   filling the subscriber's queue until its limit drops messages. The message itself is
//!   already queued: holding the acknowledgement changes timing, never what is delivered.
//!   Offline sessions never hold anything up (nobody drains them; their limit protects them).

use std::collections::{HashMap, VecDeque};

use berth_codec::Packet;

use super::{Broker, Timer};
use crate::ids::{ClientId, ConnId};
use crate::store::Store;
use crate::time::UnixMillis;

/// Longest a publisher's acknowledgement waits for a congested subscriber. A subscriber that
/// stopped reading entirely then slows each publisher to one window of messages per this time,
/// rather than stopping it.
pub(crate) const ACK_HOLD_MAX_MS: u64 = 1000;

#[derive(Debug, Default)]
pub(crate) struct HeldAcks {
    /// Per connection, in PUBLISH order; the front goes out once it is ready.
    by_conn: HashMap<ConnId, VecDeque<HeldAck>>,
    /// Congested sessions, and the connections whose acknowledgements wait for them to drain.
    waiters: HashMap<ClientId, Vec<ConnId>>,
}

#[derive(Debug)]
pub(crate) struct HeldAck {
    /// Waits for other nodes to store the message (see `cluster::Waiting`).
    pub token: Option<u64>,
    /// Waits for a congested subscriber until this time at the latest.
    pub congested_until: Option<UnixMillis>,
    pub packet: Packet,
}

impl HeldAck {
    fn ready(&self) -> bool {
        self.token.is_none() && self.congested_until.is_none()
    }
}

impl HeldAcks {
    pub fn queue_mut(&mut self, conn: ConnId) -> Option<&mut VecDeque<HeldAck>> {
        self.by_conn.get_mut(&conn)
    }

    pub fn forget_conn(&mut self, conn: ConnId) {
        self.by_conn.remove(&conn);
    }

    /// Whether anything waits for `client`'s queue to drain.
    pub fn has_waiters(&self, client: &ClientId) -> bool {
        !self.waiters.is_empty() && self.waiters.contains_key(client)
    }

    /// The acknowledgements at the front of `conn`'s queue that are ready, in order.
    fn take_ready(&mut self, conn: ConnId) -> Vec<Packet> {
        let Some(held) = self.by_conn.get_mut(&conn) else {
            return Vec::new();
        };
        let mut ready = Vec::new();
        while held.front().is_some_and(HeldAck::ready) {
            if let Some(ack) = held.pop_front() {
                ready.push(ack.packet);
            }
        }
        if held.is_empty() {
            self.by_conn.remove(&conn);
        }
        ready
    }
}

impl<S: Store> Broker<S> {
    /// Sends a QoS 1/2 acknowledgement to `conn` now, or after the ones held before it; it is
    /// held itself while it waits for other nodes (`waiting_on`: token and how many) or for the
    /// `congested` sessions the message was queued for.
    pub(super) fn send_ack(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        packet: Packet,
        waiting_on: Option<(u64, usize)>,
        congested: &[ClientId],
    ) {
        let token = self.wait_for_owners(conn, &packet, waiting_on);
        let congested_until = if congested.is_empty() || !self.config.queue.backpressure {
            None
        } else {
            for client in congested {
                let waiting = self.held.waiters.entry(client.clone()).or_default();
                if !waiting.contains(&conn) {
                    waiting.push(conn);
                }
            }
            let until = now.plus_millis(ACK_HOLD_MAX_MS);
            if !self.has_congestion_hold(conn) {
                self.timers.insert((until, Timer::AckHold(conn)));
            }
            self.stats.publish_acks_held_total += 1;
            Some(until)
        };
        let ack = HeldAck {
            token,
            congested_until,
            packet,
        };
        match self.held.by_conn.get_mut(&conn) {
            Some(held) => held.push_back(ack),
            None if ack.ready() => self.send(conn, ack.packet),
            None => {
                self.held.by_conn.insert(conn, VecDeque::from([ack]));
            }
        }
    }

    /// Holds `packet` for `conn` until the wait of `token` (registered already) ends.
    pub(super) fn hold_ack(&mut self, conn: ConnId, packet: Packet, token: u64) {
        let ack = HeldAck {
            token: Some(token),
            congested_until: None,
            packet,
        };
        self.held.by_conn.entry(conn).or_default().push_back(ack);
    }

    /// Registers the wait of acknowledgement `packet` to `conn` for the owners its message was
    /// forwarded to (`waiting_on`: token and how many); the token it waits on, if any.
    fn wait_for_owners(
        &mut self,
        conn: ConnId,
        packet: &Packet,
        waiting_on: Option<(u64, usize)>,
    ) -> Option<u64> {
        // A QoS 2 PUBLISH is remembered (by packet id) as received; if an owner then fails to
        // store it, that memory must go even when this connection is gone by then, or the
        // re-sent PUBLISH would be answered as a duplicate of a message never stored.
        let qos2 = match packet {
            Packet::PubRec(rec) => self.conns.get(&conn).map(|c| (c.clone(), rec.packet_id)),
            _ => None,
        };
        waiting_on.and_then(|(token, remaining)| {
            self.wait_for_nodes(conn, token, remaining, qos2)
                .then_some(token)
        })
    }

    /// A held acknowledgement (`token`, see `hold_qos2`) is decided: `packet` replaces it when
    /// given, and it goes out when ready — at once, or when `waiting_on` (the forwards of the
    /// message now routed) ends.
    pub(super) fn settle_held_ack(
        &mut self,
        conn: ConnId,
        token: u64,
        packet: Option<Packet>,
        waiting_on: Option<(u64, usize)>,
    ) {
        let wait = match &packet {
            Some(packet) => self.wait_for_owners(conn, packet, waiting_on),
            None => None,
        };
        let Some(held) = self.held.by_conn.get_mut(&conn) else {
            return;
        };
        let Some(entry) = held.iter_mut().find(|h| h.token == Some(token)) else {
            return;
        };
        if let Some(packet) = packet {
            entry.packet = packet;
        }
        entry.token = wait;
        self.flush_acks(conn);
    }

    fn has_congestion_hold(&self, conn: ConnId) -> bool {
        self.held
            .by_conn
            .get(&conn)
            .is_some_and(|held| held.iter().any(|ack| ack.congested_until.is_some()))
    }

    /// Sends what became ready at the front of `conn`'s queue.
    pub(super) fn flush_acks(&mut self, conn: ConnId) {
        for packet in self.held.take_ready(conn) {
            self.send(conn, packet);
        }
    }

    /// `client`'s queue drained (or it went offline): the acknowledgements waiting for it go.
    /// Waiting on a connection's acknowledgements is tracked per connection, not per message:
    /// one that also waited for another congested session goes too, a bounded imprecision in
    /// what is only a throttle.
    pub(super) fn release_congestion(&mut self, client: &ClientId) {
        let Some(conns) = self.held.waiters.remove(client) else {
            return;
        };
        for conn in conns {
            if let Some(held) = self.held.by_conn.get_mut(&conn) {
                for ack in held.iter_mut() {
                    ack.congested_until = None;
                }
            }
            self.flush_acks(conn);
        }
    }

    /// `client`'s queue shrank: releases its waiters once it is down to half the mark.
    pub(super) fn note_drained(&mut self, client: &ClientId) {
        if !self.held.has_waiters(client) {
            return;
        }
        let low = self.config.queue.congested_at() / 2;
        let drained = self
            .sessions
            .get(client)
            .is_none_or(|s| s.online.is_none() || s.queue.bounds.count <= low);
        if drained {
            self.release_congestion(client);
        }
    }

    /// The longest wait of `conn`'s held acknowledgements is over for those that reached it.
    pub(super) fn ack_hold_due(&mut self, now: UnixMillis, conn: ConnId) {
        let Some(held) = self.held.by_conn.get_mut(&conn) else {
            return;
        };
        let mut next = None;
        for ack in held.iter_mut() {
            match ack.congested_until {
                Some(until) if until <= now => ack.congested_until = None,
                Some(until) => next = Some(next.map_or(until, |at: UnixMillis| at.min(until))),
                None => {}
            }
        }
        if let Some(at) = next {
            self.timers.insert((at, Timer::AckHold(conn)));
        }
        self.flush_acks(conn);
    }
}

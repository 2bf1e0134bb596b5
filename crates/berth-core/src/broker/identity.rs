//! Exactly once across nodes: a QoS 2 message gets an identity where it is first received
//! ([`MessageId`]), and a session takes each identity once, however many copies reach it — a
//! forward retried or re-routed after its answer was lost, the queue of an older copy of the
//! session merged at a takeover back or recovered as a stranded backlog, one backlog pulled
//! twice. Without it the packet id was the only name a QoS 2 message had, and a second copy
//! went to the client under a new packet id: delivered twice.
//!
//! Only deliveries at QoS 2 are remembered: QoS 0/1 promise no more than at least once, and
//! remembering them would cost a write per message on the hot path. A message with an
//! identity taken at QoS 0/1 (a QoS 2 one downgraded by its subscription, or a QoS 1 one
//! forwarded from another node, which gets an identity on its way) is only checked against
//! the send window (`already_in_flight`), so that a second copy does not overtake the first's
//! re-send, and a second copy forwarded to the node goes out with DUP = 1 (`RecentForwards`).

use std::collections::HashSet;

use berth_codec::QoS;

use super::Broker;
use super::session::Seen;
use crate::ids::{ClientId, MessageId};
use crate::message::Delivery;
use crate::stats::DropReason;
use crate::store::{Op, Store};
use crate::time::UnixMillis;

impl<S: Store> Broker<S> {
    /// A new identity for a QoS 2 message received here, or a QoS 1 one forwarded from here;
    /// `None` on a single node. Numbers
    /// start from the clock (1,024 per millisecond) and never go back while the node runs, so
    /// a restarted node does not hand out a number it gave before.
    pub(super) fn new_message_id(&mut self, now: UnixMillis) -> Option<MessageId> {
        let cluster = self.cluster.as_mut()?;
        let seq = (now.0 << 10).max(cluster.last_message_seq + 1);
        cluster.last_message_seq = seq;
        Some(MessageId {
            origin: cluster.node,
            seq,
        })
    }

    /// Whether `client`'s session takes `delivery`: false for a second copy of a QoS 2 message
    /// it took before (counted as a `duplicate` drop). A message it takes is remembered.
    pub(super) fn take_once(&mut self, client: &ClientId, delivery: &Delivery) -> bool {
        match qos2_identity(delivery) {
            Some(id) => self.take_id(client, id),
            None => !self.already_in_flight(client, delivery),
        }
    }

    /// Whether a message with an identity taken at QoS 0/1 (not remembered, see the module's
    /// header) is in `client`'s send window already: a second copy of it (a forward held by a
    /// partition arriving after its retry) would go out under a new packet id with DUP = 0
    /// while the first still waits to be re-sent with DUP = 1 (simulator seeds 2268, 6557).
    /// Only forwarded messages look (local QoS 1 deliveries carry no identity), and the window
    /// is small (`max_inflight`, 32 by default); a copy already acknowledged is
    /// at-least-once's to deliver again.
    fn already_in_flight(&mut self, client: &ClientId, delivery: &Delivery) -> bool {
        let Some(id) = delivery.message.id else {
            return false;
        };
        let Some(session) = self.sessions.get(client) else {
            return false;
        };
        let in_flight = session.inflight.iter().any(|(_, outgoing)| {
            matches!(outgoing, super::session::Outgoing::Sent { delivery, .. } if delivery.message.id == Some(id))
        });
        if in_flight {
            self.stats.count_drop(DropReason::Duplicate);
        }
        in_flight
    }

    /// Whether `client`'s session takes the QoS 2 message `id` (see `take_once`).
    pub(super) fn take_id(&mut self, client: &ClientId, id: MessageId) -> bool {
        let Some(session) = self.sessions.get_mut(client) else {
            return true;
        };
        if session.seen.as_ref().is_some_and(|seen| seen.contains(id)) {
            self.stats.count_drop(DropReason::Duplicate);
            return false;
        }
        let stored = session.stored;
        let (slot, evicted) = session
            .seen
            .get_or_insert_with(Default::default)
            .push_newest(id);
        if stored {
            if let Some(slot) = evicted {
                self.batch.push(Op::DeleteSeen {
                    client: client.clone(),
                    slot,
                });
            }
            self.batch.push(Op::PutSeen {
                client: client.clone(),
                slot,
                id,
            });
        }
        true
    }

    /// Identities an older copy of the session took (`ids`, oldest first) join what it took
    /// here, as older ones, while the window has room: their messages were delivered or are
    /// queued on that copy, and a copy arriving later is a duplicate.
    pub(super) fn fold_seen(&mut self, client: &ClientId, ids: Vec<MessageId>) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let stored = session.stored;
        let seen = session.seen.get_or_insert_with(Default::default);
        for id in ids.into_iter().rev() {
            if seen.contains(id) {
                continue;
            }
            let Some(slot) = seen.push_oldest(id) else {
                break;
            };
            if stored {
                self.batch.push(Op::PutSeen {
                    client: client.clone(),
                    slot,
                    id,
                });
            }
        }
        if session.seen.as_ref().is_some_and(|s| s.is_empty()) {
            session.seen = None;
        }
    }

    /// Which of `among` the copy of `client` here took (`seen`) and holds no more in its
    /// window: sent and received, or completed. Whether its queue still holds one is for the
    /// caller (`requeue_older_copy` tells). An unreadable window counts as holding all.
    pub(super) fn taken_and_sent(
        &mut self,
        client: &ClientId,
        among: &HashSet<MessageId>,
    ) -> HashSet<MessageId> {
        let Some(seen) = self.sessions.get(client).and_then(|s| s.seen.as_deref()) else {
            return HashSet::new();
        };
        let mut taken: HashSet<MessageId> = among
            .iter()
            .copied()
            .filter(|id| seen.contains(*id))
            .collect();
        if taken.is_empty() {
            return taken;
        }
        match self.window_records(client) {
            Ok(window) => {
                for (_, record) in window {
                    if let crate::store::InflightRecord::Sent { delivery, .. } = record
                        && let Some(id) = delivery.message.id
                    {
                        taken.remove(&id);
                    }
                }
                taken
            }
            Err(error) => {
                self.fault = Some(error);
                HashSet::new()
            }
        }
    }

    /// The identities `client`'s session took, oldest first (for its export).
    pub(super) fn seen_ids(&self, client: &ClientId) -> Vec<crate::ids::MessageId> {
        self.sessions
            .get(client)
            .and_then(|s| s.seen.as_deref())
            .map_or_else(Vec::new, |seen: &Seen| seen.ids().collect())
    }
}

/// The identity by which a session takes `delivery` once: its message's, at QoS 2 only.
pub(super) fn qos2_identity(delivery: &Delivery) -> Option<MessageId> {
    delivery
        .message
        .id
        .filter(|_| delivery.qos == QoS::ExactlyOnce)
}

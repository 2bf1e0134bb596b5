//! A connected session's QoS 1 deliveries from its queue keep their queue row as their durable
//! in-flight record, until the PUBACK deletes it.
//!
//! Taking a message off the queue used to cost two store writes (delete the queue row, put an
//! in-flight row with the whole message again) and its PUBACK a third: with the enqueue, four
//! RocksDB operations per message on the durable path, half the broker thread on persistent
//! fan-in. Now the queue row stays and nothing is written when it is sent: two operations per
//! message (enqueue; delete at PUBACK), plus one small `Op::PutSentMark` per session and group.
//!
//! What the row does not hold is the packet id and that the message was sent. Both matter
//! only if the broker dies while the client is connected (any orderly end of the connection,
//! and anything else that reads the session's state from the store, first writes these
//! deliveries as ordinary in-flight rows: [`Broker::settle_rows`]). After such a crash, the
//! rows at or below the sent mark are read back as redeliveries: sent again with DUP = 1, in
//! their order, under new packet ids. For QoS 1 that is the same to a client as its old id: an
//! id carries no state on the receiver's side once it has sent the PUBACK (MQTT 3.1.1 §4.3.2,
//! 5.0 §4.3.2: a PUBLISH with that id is a new publication to it, whatever its DUP flag).
//!
//! QoS 2 deliveries keep their in-flight rows: their packet id is the client's duplicate check.

use berth_codec::PacketId;

use super::Broker;
use super::session::Outgoing;
use crate::ids::{ClientId, QueueSeq};
use crate::message::Delivery;
use crate::store::{InflightRecord, Op, Store};

impl<S: Store> Broker<S> {
    /// `id` went out from the queue row `seq`, which stays as its in-flight record. Called
    /// only after the PUBLISH was handed to the session's connection, so it is connected.
    pub(super) fn keep_row(&mut self, client: &ClientId, id: PacketId, seq: QueueSeq) {
        let Some(online) = self
            .sessions
            .get_mut(client)
            .and_then(|s| s.online.as_mut())
        else {
            return;
        };
        online.row_backed.push((id, seq));
        // Rows are taken in sequence order, so the newest is the mark: this group's mark op
        // for the session is moved up, or the first one written.
        if let Some(&at) = self.sent_marks.get(client)
            && let Some(Op::PutSentMark { seq: mark, .. }) = self.batch.ops.get_mut(at)
        {
            *mark = seq;
            return;
        }
        self.sent_marks.insert(client.clone(), self.batch.ops.len());
        self.batch.push(Op::PutSentMark {
            client: client.clone(),
            seq,
        });
    }

    /// Deletes the durable record of the in-flight `id`: its queue row if it is row-backed,
    /// else its in-flight row.
    pub(super) fn delete_inflight_record(&mut self, client: &ClientId, id: PacketId) {
        // One lookup: this runs at every acknowledgement.
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let row = session.online.as_mut().and_then(|online| {
            let at = online.row_backed.iter().position(|(used, _)| *used == id)?;
            Some(online.row_backed.swap_remove(at).1)
        });
        if !session.stored {
            return;
        }
        let client = client.clone();
        self.batch.push(match row {
            Some(seq) => Op::Dequeue { client, seq },
            None => Op::DeleteInflight {
                client,
                packet_id: id,
            },
        });
    }

    /// Writes `client`'s row-backed deliveries as ordinary in-flight rows (their queue rows
    /// deleted) and drops the sent mark: before the session goes offline, and before anything
    /// reads or rewrites its state wholesale (an export, a merge, a purge), so that the store
    /// then holds what it always held.
    pub(super) fn settle_rows(&mut self, client: &ClientId) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let Some(online) = session.online.as_mut() else {
            return;
        };
        if online.row_backed.is_empty() {
            return;
        }
        let rows = std::mem::take(&mut online.row_backed);
        for (id, seq) in rows {
            self.batch.push(Op::Dequeue {
                client: client.clone(),
                seq,
            });
            let sent = session.inflight.iter().find_map(|(used, out)| match out {
                Outgoing::Sent { order, delivery } if *used == id => Some((*order, delivery)),
                _ => None,
            });
            if let Some((order, delivery)) = sent {
                self.batch.push(sent_row(client, id, order, delivery));
            }
        }
        self.sent_marks.remove(client);
        self.batch.push(Op::DeleteSentMark {
            client: client.clone(),
        });
    }
}

/// The in-flight row of a QoS 1/2 delivery sent under `id`, `order`-th in the window.
pub(super) fn sent_row(client: &ClientId, id: PacketId, order: u64, delivery: &Delivery) -> Op {
    Op::PutInflight {
        client: client.clone(),
        packet_id: id,
        record: InflightRecord::Sent {
            order,
            delivery: delivery.clone(),
        },
    }
}

//! A connected session's QoS 1 deliveries from its queue keep their queue row as their durable
//! in-flight record, until the PUBACK removes it.
//!
//! Taking a message off the queue used to cost two store writes (delete the queue row, put an
//! in-flight row with the whole message again) and its PUBACK a third: with the enqueue, four
//! RocksDB operations per message on the durable path, half the broker thread on persistent
//! fan-in. Now the queue row stays and nothing is written when it is sent: one operation per
//! message (the enqueue), plus two small ones per session and group: `Op::PutSentMark`, and
//! `Op::DequeueThrough` for the rows the group's PUBACKs acknowledged (every row below the
//! oldest still in flight or queued; one acknowledged out of order is deleted by itself). A
//! point delete per PUBACK searched RocksDB's memtable from the top each time: 16 % of the
//! broker thread on persistent fan-in.
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
//!
//! **The mark is a lease, and what it covers leaves before the group's write.** A connected
//! session in lock step with its window (persistent fan-in: the client acknowledges a window,
//! the next group sends the next one) waited for each group's write before the next window went
//! out, though those messages' rows were written long before: only their sent mark was in the
//! write. So the mark is written ahead, when its batch is committed
//! ([`Broker::lease_sent_marks`]): over the QoS 1 rows next in the queue's head in memory, up
//! to a window's worth. Once that write is durable (the server says so:
//! [`Broker::writes_durable`]), sends from rows the mark covers are made *early*: the server
//! takes them ([`Broker::take_early_sends`]) and hands them to their connections before the
//! group's write. A crash before that write loses nothing they depend on: their rows and the
//! mark covering them are durable, and the rows come back as redeliveries (DUP = 1). A row
//! the mark covers that was never sent comes back with DUP = 1 too, which MQTT allows ("might
//! be a re-delivery"); only QoS 1 rows are covered, and no row enqueued after the mark was
//! written, since the mark never reaches past the head in memory. Anything else of the group
//! (the publishers' PUBACKs above all) still waits for the write, and so does an early send
//! behind anything that waits for the same connection: a connection's packets keep the order
//! they were made in.

use berth_codec::PacketId;

use berth_codec::QoS;

use super::session::{Lease, Outgoing};
use super::{Action, Broker};
use crate::fast_map::FastSet;
use crate::ids::{ClientId, ConnId, QueueSeq};
use crate::message::Delivery;
use crate::store::{InflightRecord, Op, Store};

/// Acknowledged rows a session's dequeued-through mark hides are deleted, as one range
/// (`Op::DequeueThrough::sweep`), each time the mark passes a multiple of this: a session
/// keeps fewer hidden rows than that. Hidden rows cost disk, and a load skips them; each range
/// tombstone costs every read of the memtable a re-sort of them all.
const SWEEP_ROWS: u64 = 4096;

impl<S: Store> Broker<S> {
    /// `id` went out from the queue row `seq`, which stays as its in-flight record. Called
    /// only after the PUBLISH was handed to the session's connection, so it is connected.
    pub(super) fn keep_row(&mut self, client: &ClientId, id: PacketId, seq: QueueSeq) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let Some(online) = session.online.as_mut() else {
            return;
        };
        online.row_backed.push((id, seq));
        // Rows are taken in sequence order, so the newest is the mark; but never below the
        // mark stored (a lease, or one read back after a crash): rows under it that are still
        // queued may have reached the client.
        let seq = session.sent_mark.map_or(seq, |stored| stored.max(seq));
        session.sent_mark = Some(seq);
        // This group's mark op for the session is moved up, or the first one written.
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
    /// else its in-flight row. A row below every row still in flight or queued goes with the
    /// session's dequeued-through mark, one op per session and group (see the module's
    /// documentation); one acknowledged out of order is deleted by itself.
    pub(super) fn delete_inflight_record(&mut self, client: &ClientId, id: PacketId) {
        // One lookup: this runs at every acknowledgement.
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let first_queued = session.queue.bounds.first;
        let online = session.online.as_mut();
        let row = online.and_then(|online| {
            let at = online.row_backed.iter().position(|(used, _)| *used == id)?;
            let seq = online.row_backed.swap_remove(at).1;
            // Every row below the oldest still in flight from its row, or still queued, was
            // acknowledged or deleted already: rows taken from the queue either stay
            // row-backed or are deleted as they are taken (`pump_window`).
            let oldest = online.row_backed.iter().map(|(_, seq)| *seq).min();
            Some((seq, oldest.unwrap_or(first_queued).min(first_queued)))
        });
        if !session.stored {
            return;
        }
        let Some((seq, oldest)) = row else {
            self.batch.push(Op::DeleteInflight {
                client: client.clone(),
                packet_id: id,
            });
            return;
        };
        if seq >= oldest {
            self.batch.push(Op::Dequeue {
                client: client.clone(),
                seq,
            });
            return;
        }
        let through = QueueSeq(oldest.0 - 1);
        let previous = session.dequeued_through.replace(through);
        // A range tombstone for the rows behind the mark each time it passes a multiple of
        // `SWEEP_ROWS` (the mark is loaded with the session, so across connections and restarts
        // too): rarely enough that the memtable holds few of them, and no session keeps more
        // than that many hidden rows.
        let sweep = previous.map_or(0, |p| p.0 / SWEEP_ROWS) < through.0 / SWEEP_ROWS;
        if let Some(&at) = self.dequeue_marks.get(client)
            && let Some(Op::DequeueThrough {
                seq: mark,
                sweep: swept,
                ..
            }) = self.batch.ops.get_mut(at)
        {
            *mark = through.max(*mark);
            *swept |= sweep;
            return;
        }
        self.dequeue_marks
            .insert(client.clone(), self.batch.ops.len());
        self.batch.push(Op::DequeueThrough {
            client: client.clone(),
            seq: through,
            sweep,
        });
    }

    /// This group's mark ops of `client` are void (its session is deleted): a new session's
    /// go after the delete.
    pub(super) fn forget_marks(&mut self, client: &ClientId) {
        self.sent_marks.remove(client);
        self.dequeue_marks.remove(client);
    }

    /// Writes `client`'s row-backed deliveries as ordinary in-flight rows (their queue rows
    /// deleted) and ends the lease: before the session goes offline, and before anything
    /// reads or rewrites its state wholesale (an export, a merge, a purge). The sent mark is
    /// dropped unless queued rows at or below it remain: a lease reaches past what was sent,
    /// and after a crash what the client had may be more than a connection re-sends before it
    /// ends; those rows must still read back as redeliveries (DUP = 1), here or in an export.
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
        online.lease = Lease::default();
        self.sent_marks.remove(client);
        let bounds = &session.queue.bounds;
        let covers_queued = session
            .sent_mark
            .is_some_and(|mark| bounds.count > 0 && mark >= bounds.first);
        if !covers_queued {
            session.sent_mark = None;
            self.batch.push(Op::DeleteSentMark {
                client: client.clone(),
            });
        }
    }

    /// Called as the batch numbered `self.writes` is written: each sent mark it holds reaches
    /// on over the QoS 1 rows next in the session's queue head in memory (at most its send
    /// window's worth: what the next group can send), and becomes the session's lease.
    pub(super) fn lease_sent_marks(&mut self) {
        for (client, &at) in &self.sent_marks {
            let Some(session) = self.sessions.get_mut(client) else {
                continue;
            };
            let Some(online) = session.online.as_mut() else {
                continue;
            };
            let Some(Op::PutSentMark { seq: mark, .. }) = self.batch.ops.get_mut(at) else {
                continue;
            };
            // A QoS 0 or QoS 2 row, or one that must wait for its id, ends the reach: it is not
            // sent as a row-backed delivery, and after a crash it must not read back as sent.
            let ahead = session
                .queue
                .head
                .iter()
                .take(online.send_window)
                .take_while(|(_, d)| d.qos == QoS::AtLeastOnce && d.sent_as.is_none())
                .last();
            if let Some(&(seq, _)) = ahead
                && seq > *mark
            {
                *mark = seq;
            }
            session.sent_mark = Some(*mark);
            online.lease = Lease {
                through: *mark,
                write: self.writes,
            };
        }
    }

    /// Every batch written so far is durable (written, and synced if the store syncs): the
    /// leases they hold may be used. The server calls this after each group's write; until
    /// then no send is made early.
    pub fn writes_durable(&mut self) {
        self.durable_writes = self.writes;
    }

    /// Moves the sends that may leave before the group's write into `out` (see the module's
    /// documentation), in the order they were made; the rest of the actions stay for
    /// [`Broker::swap_actions`]. A send behind another action for its connection stays too.
    pub fn take_early_sends(&mut self, out: &mut Vec<Action>) {
        if self.early_at.is_empty() {
            return;
        }
        let early = std::mem::take(&mut self.early_at);
        let actions = std::mem::take(&mut self.actions);
        self.actions.reserve(actions.len() - early.len());
        // Connections with an action that waits for the write, so far in this group.
        let mut waiting: FastSet<ConnId> = FastSet::default();
        let mut next = early.iter().copied().peekable();
        for (at, action) in actions.into_iter().enumerate() {
            let is_early = next.next_if_eq(&at).is_some();
            let conn = match &action {
                Action::Send { conn, .. } | Action::Close { conn } => Some(*conn),
                _ => None,
            };
            match conn {
                Some(conn) if is_early && !waiting.contains(&conn) => out.push(action),
                Some(conn) => {
                    waiting.insert(conn);
                    self.actions.push(action);
                }
                None => self.actions.push(action),
            }
        }
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

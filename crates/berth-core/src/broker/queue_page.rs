//! A session's queue as the broker takes from it: the head in memory (`Queue::head`, see
//! `session::QUEUE_HEAD_MESSAGES`), paged in from storage when used up, and reads of the store
//! that see what the group's pending batch already changed.

use berth_codec::{PacketId, QoS};

use super::Broker;
use super::session::QUEUE_PAGE;
use crate::ids::{ClientId, QueueSeq};
use crate::message::Delivery;
use crate::store::{Batch, InflightRecord, Op, Store, StoreError};

impl<S: Store> Broker<S> {
    /// Pages the next queued messages in from storage when none is in memory.
    pub(super) fn page_in(&mut self, client: &ClientId) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        if session.queue.bounds.count == 0 || !session.queue.head.is_empty() || !session.stored {
            return;
        }
        let from = session.queue.bounds.first;
        // Offline, only drop_oldest pops, one message at a time: page in no more than that.
        let page = if session.online.is_some() {
            QUEUE_PAGE
        } else {
            1
        };
        match read_queue_through(&self.store, &self.batch, client, from, page) {
            Ok(page) => {
                // Known since the restart (`Op::PutKeptIds`), unless the rows were written by
                // a binary that did not store them: then they are known from here on.
                let mut newly_kept = false;
                for id in page.iter().filter_map(|(_, delivery)| delivery.sent_as) {
                    newly_kept |= session.keep_id_for_queued(id);
                }
                session.queue.head.extend(page);
                if newly_kept {
                    self.write_kept_ids(client);
                }
            }
            Err(error) => self.fault = Some(error),
        }
    }

    /// Writes `client`'s kept packet ids down after they changed (`Op::PutKeptIds`), if the
    /// session is stored: after a restart every one is known before any message is given an
    /// id, however far back in the queue its message waits.
    pub(super) fn write_kept_ids(&mut self, client: &ClientId) {
        let Some(session) = self.sessions.get(client).filter(|session| session.stored) else {
            return;
        };
        let ids = session
            .kept_ids
            .as_deref()
            .map(|kept| kept.iter().copied().collect())
            .unwrap_or_default();
        self.batch.push(Op::PutKeptIds {
            client: client.clone(),
            ids,
        });
    }

    /// The QoS of the oldest queued message.
    pub(super) fn front_qos(&mut self, client: &ClientId) -> Option<QoS> {
        self.page_in(client);
        let session = self.sessions.get(client)?;
        session.queue.head.front().map(|(_, delivery)| delivery.qos)
    }

    /// Takes the oldest queued message, paging the next ones in from storage when needed.
    pub(super) fn pop_queue(&mut self, client: &ClientId) -> Option<(QueueSeq, Delivery)> {
        let (seq, delivery) = self.take_front(client)?;
        self.delete_row(client, seq);
        Some((seq, delivery))
    }

    /// [`Broker::pop_queue`] without deleting its row from the store: the caller does, or keeps
    /// it as an in-flight record (`row_backed`).
    pub(super) fn take_front(&mut self, client: &ClientId) -> Option<(QueueSeq, Delivery)> {
        let mut session = self.sessions.get_mut(client)?;
        // One lookup while the head in memory lasts; paging in (and looking up again) only
        // when it is used up.
        if session.queue.head.is_empty() {
            self.page_in(client);
            session = self.sessions.get_mut(client)?;
        }
        if session.queue.bounds.count == 0 {
            return None;
        }
        let (seq, delivery) = session.queue.head.pop_front()?;
        let bounds = &mut session.queue.bounds;
        bounds.count -= 1;
        bounds.bytes = bounds.bytes.saturating_sub(delivery.size());
        bounds.first = if bounds.count == 0 {
            bounds.next
        } else {
            seq.next()
        };
        if session.kept_ids.is_some() && session.release_kept_id(None) {
            self.write_kept_ids(client);
        }
        Some((seq, delivery))
    }

    /// Undoes [`Broker::take_front`]: `delivery` is the oldest queued message again.
    pub(super) fn put_back_front(&mut self, client: &ClientId, seq: QueueSeq, delivery: Delivery) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let bounds = &mut session.queue.bounds;
        bounds.count += 1;
        bounds.bytes += delivery.size();
        bounds.first = seq;
        session.queue.head.push_front((seq, delivery));
    }

    /// Deletes the queue row `seq` of `client` from the store, if the session is stored.
    pub(super) fn delete_row(&mut self, client: &ClientId, seq: QueueSeq) {
        if self.sessions.get(client).is_some_and(|s| s.stored) {
            self.batch.push(Op::Dequeue {
                client: client.clone(),
                seq,
            });
        }
    }
}

/// `Store::read_queue`, plus what this event (and, under `handle_deferred`, the events before it
/// in the group) already changed: those ops are still in the uncommitted `batch` (written
/// together, atomically, at the commit), and a read before the commit must see them. Otherwise a message queued earlier in the
/// same event (say, a will routed to the very session that a CONNECT is resuming) is missing
/// from the page, the queue looks empty while `bounds.count` says otherwise, and it stalls.
pub(super) fn read_queue_through<S: Store>(
    store: &S,
    batch: &Batch,
    client: &ClientId,
    from: QueueSeq,
    limit: usize,
) -> Result<Vec<(QueueSeq, Delivery)>, StoreError> {
    let deleted = batch
        .ops
        .iter()
        .rposition(|op| matches!(op, Op::DeleteSession { client: c } if c == client));
    // A session deleted in this event has nothing in the store any more.
    let pending = match deleted {
        Some(at) => &batch.ops[at + 1..],
        None => &batch.ops[..],
    };
    // What this batch does to each seq, the last op winning: written (a message queued, or
    // one rewritten by a merge) or removed (delivered, or dropped from the middle by a merge,
    // `requeue_older_copy`).
    let mut changed: std::collections::BTreeMap<QueueSeq, Option<&Delivery>> = Default::default();
    // Rows at or below a pending dequeued-through mark are gone (below the queue's first row,
    // so below `from` as the broker reads; kept exact all the same).
    let mut through: Option<QueueSeq> = None;
    for op in pending {
        match op {
            Op::DequeueThrough { client: c, seq, .. } if c == client => {
                through = through.max(Some(*seq));
            }
            Op::Enqueue {
                client: c,
                seq,
                delivery,
            } if c == client && *seq >= from => {
                changed.insert(*seq, Some(delivery));
            }
            Op::Dequeue { client: c, seq } if c == client && *seq >= from => {
                changed.insert(*seq, None);
            }
            _ => {}
        }
    }
    let mut page = match deleted {
        Some(_) => Vec::new(),
        // As many more as this batch removed, so that a full page stays full.
        None => {
            let removed = changed.values().filter(|d| d.is_none()).count();
            store.read_queue(client, from, limit + removed)?
        }
    };
    page.retain(|(seq, _)| !changed.contains_key(seq) && through.is_none_or(|t| *seq > t));
    page.extend(
        changed
            .into_iter()
            .filter_map(|(seq, delivery)| delivery.map(|d| (seq, d.clone()))),
    );
    page.sort_by_key(|(seq, _)| *seq);
    page.truncate(limit);
    Ok(page)
}

/// `Store::read_inflight`, plus the in-flight changes of this event still in `batch` (see
/// [`read_queue_through`]), sorted by send order.
pub(super) fn read_inflight_through<S: Store>(
    store: &S,
    batch: &Batch,
    client: &ClientId,
) -> Result<Vec<(PacketId, InflightRecord)>, StoreError> {
    let mut window = store.read_inflight(client)?;
    for op in &batch.ops {
        match op {
            Op::PutInflight {
                client: c,
                packet_id,
                record,
            } if c == client => {
                window.retain(|(id, _)| id != packet_id);
                window.push((*packet_id, record.clone()));
            }
            Op::DeleteInflight {
                client: c,
                packet_id,
            } if c == client => window.retain(|(id, _)| id != packet_id),
            Op::DeleteSession { client: c } if c == client => window.clear(),
            _ => {}
        }
    }
    window.sort_by_key(|(_, record)| record.order());
    Ok(window)
}

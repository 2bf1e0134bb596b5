//! `MemStore`: the in-memory [`Store`], for unit tests and as the reference the conformance suite
//! holds every other implementation to. Nothing survives the process.

use std::collections::BTreeMap;

use berth_codec::{PacketId, TopicFilter};

use crate::ids::{ClientId, MessageId, QueueSeq};
use crate::message::{Delivery, Message};
use crate::store::{
    Batch, HandoffRecord, InflightRecord, Loaded, LoadedSession, Op, QueueBounds, SessionRecord,
    Store, StoreError, SubscriptionRecord,
};

#[derive(Debug, Default)]
struct MemSession {
    record: Option<SessionRecord>,
    subscriptions: BTreeMap<TopicFilter, SubscriptionRecord>,
    queue: BTreeMap<QueueSeq, Delivery>,
    inflight: BTreeMap<PacketId, InflightRecord>,
    /// `None`: received; `Some`: routed under that identity, in doubt (`Op::PutQos2Retry`).
    incoming_qos2: BTreeMap<PacketId, Option<MessageId>>,
    seen: BTreeMap<u64, MessageId>,
    /// `Op::PutSentMark`.
    sent_mark: Option<QueueSeq>,
    /// `Op::DequeueThrough`: its rows are removed at once; the mark stays for the sequences.
    dequeued_through: Option<QueueSeq>,
    /// `Op::PutKeptIds`.
    kept_ids: Vec<PacketId>,
}

#[derive(Debug, Default)]
pub struct MemStore {
    sessions: BTreeMap<ClientId, MemSession>,
    retained: BTreeMap<String, Message>,
    handoff: BTreeMap<u64, HandoffRecord>,
    /// Counts `sync` calls, so tests can check group commit.
    pub syncs: u64,
    /// Counts `write` calls.
    pub writes: u64,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn session(&mut self, client: &ClientId) -> &mut MemSession {
        self.sessions.entry(client.clone()).or_default()
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::PutSession { client, record } => self.session(&client).record = Some(record),
            Op::DeleteSession { client } => {
                self.sessions.remove(&client);
            }
            Op::PutSubscription {
                client,
                filter,
                record,
            } => {
                self.session(&client).subscriptions.insert(filter, record);
            }
            Op::DeleteSubscription { client, filter } => {
                self.session(&client).subscriptions.remove(&filter);
            }
            Op::Enqueue {
                client,
                seq,
                delivery,
            } => {
                self.session(&client).queue.insert(seq, delivery);
            }
            Op::Dequeue { client, seq } => {
                self.session(&client).queue.remove(&seq);
            }
            Op::DequeueThrough { client, seq, .. } => {
                let session = self.session(&client);
                session.queue = session.queue.split_off(&seq.next());
                session.dequeued_through = Some(seq);
            }
            Op::PurgeQueue { client, before } => {
                let queue = &mut self.session(&client).queue;
                *queue = queue.split_off(&before);
            }
            Op::PutInflight {
                client,
                packet_id,
                record,
            } => {
                self.session(&client).inflight.insert(packet_id, record);
            }
            Op::DeleteInflight { client, packet_id } => {
                self.session(&client).inflight.remove(&packet_id);
            }
            Op::PutSentMark { client, seq } => self.session(&client).sent_mark = Some(seq),
            Op::DeleteSentMark { client } => self.session(&client).sent_mark = None,
            Op::PutKeptIds { client, ids } => self.session(&client).kept_ids = ids,
            Op::PutIncomingQos2 { client, packet_id } => {
                self.session(&client).incoming_qos2.insert(packet_id, None);
            }
            Op::PutQos2Retry {
                client,
                packet_id,
                id,
            } => {
                self.session(&client)
                    .incoming_qos2
                    .insert(packet_id, Some(id));
            }
            Op::DeleteIncomingQos2 { client, packet_id } => {
                self.session(&client).incoming_qos2.remove(&packet_id);
            }
            Op::PutSeen { client, slot, id } => {
                self.session(&client).seen.insert(slot, id);
            }
            Op::DeleteSeen { client, slot } => {
                self.session(&client).seen.remove(&slot);
            }
            Op::PutRetained { message } => {
                self.retained
                    .insert(message.topic.as_str().to_owned(), message);
            }
            Op::DeleteRetained { topic } => {
                self.retained.remove(topic.as_str());
            }
            Op::PutHandoff { record } => {
                self.handoff.insert(record.seq, record);
            }
            Op::DeleteHandoff { seq, .. } => {
                self.handoff.remove(&seq);
            }
        }
    }
}

impl Store for MemStore {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        let sessions = self
            .sessions
            .iter()
            .filter_map(|(client, session)| {
                let mut record = session.record.clone()?;
                // As a real store: `landed` is not kept (see `SessionRecord::landed`).
                record.landed = record.epoch;
                let queue = QueueBounds {
                    first: session.queue.keys().next().copied().unwrap_or_default(),
                    next: session
                        .queue
                        .keys()
                        .next_back()
                        .map(|seq| seq.next())
                        .unwrap_or_default()
                        .max(
                            session
                                .sent_mark
                                .map(|mark| mark.next())
                                .unwrap_or_default(),
                        )
                        .max(
                            session
                                .dequeued_through
                                .map(|mark| mark.next())
                                .unwrap_or_default(),
                        ),
                    count: session.queue.len() as u64,
                    bytes: session.queue.values().map(Delivery::size).sum(),
                };
                Some(LoadedSession {
                    client: client.clone(),
                    sent_mark: session.sent_mark,
                    dequeued_through: session.dequeued_through,
                    record,
                    subscriptions: session
                        .subscriptions
                        .iter()
                        .map(|(filter, record)| (filter.clone(), record.clone()))
                        .collect(),
                    queue,
                    incoming_qos2: session
                        .incoming_qos2
                        .iter()
                        .filter(|(_, retry)| retry.is_none())
                        .map(|(id, _)| *id)
                        .collect(),
                    qos2_retry: session
                        .incoming_qos2
                        .iter()
                        .filter_map(|(packet_id, retry)| Some((*packet_id, (*retry)?)))
                        .collect(),
                    seen: session.seen.iter().map(|(s, id)| (*s, *id)).collect(),
                    kept_ids: session.kept_ids.clone(),
                })
            })
            .collect();
        Ok(Loaded {
            sessions,
            retained: self.retained.values().cloned().collect(),
            handoff: self.handoff.values().cloned().collect(),
        })
    }

    fn write(&mut self, batch: Batch) -> Result<(), StoreError> {
        self.writes += 1;
        for op in batch.ops {
            self.apply(op);
        }
        Ok(())
    }

    fn read_queue(
        &self,
        client: &ClientId,
        from: QueueSeq,
        limit: usize,
    ) -> Result<Vec<(QueueSeq, Delivery)>, StoreError> {
        Ok(self
            .sessions
            .get(client)
            .map(|session| {
                session
                    .queue
                    .range(from..)
                    .take(limit)
                    .map(|(seq, delivery)| {
                        let mut delivery = delivery.clone();
                        if session.sent_mark.is_some_and(|mark| *seq <= mark) {
                            delivery.redelivery = true;
                        }
                        (*seq, delivery)
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn read_inflight(
        &self,
        client: &ClientId,
    ) -> Result<Vec<(PacketId, InflightRecord)>, StoreError> {
        let mut window: Vec<_> = self
            .sessions
            .get(client)
            .map(|session| {
                session
                    .inflight
                    .iter()
                    .map(|(id, r)| (*id, r.clone()))
                    .collect()
            })
            .unwrap_or_default();
        window.sort_by_key(|(_, record)| record.order());
        Ok(window)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.syncs += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::MemStore;

    #[test]
    fn mem_store_passes_the_storage_conformance_suite() {
        crate::conformance::run_all(MemStore::new);
    }
}

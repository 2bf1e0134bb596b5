//! Cases for queues (order, paging, bounds), in-flight windows and QoS 2 receive state.

use super::fixtures::*;
use crate::ids::QueueSeq;
use crate::store::{InflightRecord, Op, QueueBounds, Store};

pub(super) fn queue_reads_in_order_and_pages(store: &mut dyn Store) {
    let who = client("q");
    let other = client("q2");
    // Written out of order and across batches: reads are ordered by sequence.
    enqueue_all(store, &who, [5, 1, 3]);
    enqueue_all(store, &who, [2, 4, 6, 7, 8, 9, 10]);
    enqueue_all(store, &other, [1, 2]);
    let all = queue(store, &who);
    assert_eq!(seqs(&all), (1..=10).collect::<Vec<_>>());
    for (seq, delivery) in &all {
        assert_eq!(delivery, &numbered(seq.0));
    }
    let page = store.read_queue(&who, QueueSeq(4), 3).expect("reads");
    assert_eq!(seqs(&page), vec![4, 5, 6]);
    let tail = store.read_queue(&who, QueueSeq(9), 100).expect("reads");
    assert_eq!(seqs(&tail), vec![9, 10]);
    assert!(
        store
            .read_queue(&who, QueueSeq(11), 100)
            .expect("reads")
            .is_empty()
    );
    assert!(
        store
            .read_queue(&who, QueueSeq(1), 0)
            .expect("reads")
            .is_empty()
    );
    assert!(
        store
            .read_queue(&client("nobody"), QueueSeq(0), 10)
            .expect("reads")
            .is_empty()
    );
    assert_eq!(seqs(&queue(store, &other)), vec![1, 2]);
}

pub(super) fn queue_orders_sequences_numerically(store: &mut dyn Store) {
    let who = client("big");
    let numbers = [u64::MAX - 1, 65_536, 256, 255, 1, 0, 1 << 40];
    enqueue_all(store, &who, numbers);
    let mut sorted = numbers.to_vec();
    sorted.sort_unstable();
    assert_eq!(seqs(&queue(store, &who)), sorted);
    let page = store.read_queue(&who, QueueSeq(256), 2).expect("reads");
    assert_eq!(seqs(&page), vec![256, 65_536]);
}

pub(super) fn dequeue_moves_bounds(store: &mut dyn Store) {
    let who = client("d");
    write(
        store,
        vec![Op::PutSession {
            client: who.clone(),
            record: bare_session(1),
        }],
    );
    assert_eq!(bounds(store, &who).count, 0);
    enqueue_all(store, &who, 10..=14);
    let expected = QueueBounds {
        first: QueueSeq(10),
        next: QueueSeq(15),
        count: 5,
        bytes: size_of(10..=14),
    };
    assert_eq!(bounds(store, &who), expected);

    write(
        store,
        vec![
            Op::Dequeue {
                client: who.clone(),
                seq: QueueSeq(10),
            },
            Op::Dequeue {
                client: who.clone(),
                seq: QueueSeq(11),
            },
        ],
    );
    let expected = QueueBounds {
        first: QueueSeq(12),
        next: QueueSeq(15),
        count: 3,
        bytes: size_of(12..=14),
    };
    assert_eq!(bounds(store, &who), expected);
    assert_eq!(seqs(&queue(store, &who)), vec![12, 13, 14]);

    // A gap in the middle (drop_oldest never makes one, but a store must not assume it).
    write(
        store,
        vec![Op::Dequeue {
            client: who.clone(),
            seq: QueueSeq(13),
        }],
    );
    let expected = QueueBounds {
        first: QueueSeq(12),
        next: QueueSeq(15),
        count: 2,
        bytes: size_of([12, 14]),
    };
    assert_eq!(bounds(store, &who), expected);

    write(
        store,
        vec![
            Op::Dequeue {
                client: who.clone(),
                seq: QueueSeq(12),
            },
            Op::Dequeue {
                client: who.clone(),
                seq: QueueSeq(14),
            },
        ],
    );
    let empty = bounds(store, &who);
    assert_eq!((empty.count, empty.bytes), (0, 0));
    assert!(queue(store, &who).is_empty());
}

pub(super) fn inflight_put_overwrite_delete_sorted(store: &mut dyn Store) {
    let who = client("w");
    let other = client("w2");
    write(
        store,
        vec![
            Op::PutInflight {
                client: who.clone(),
                packet_id: pid(10),
                record: sent(3, numbered(3)),
            },
            Op::PutInflight {
                client: who.clone(),
                packet_id: pid(20),
                record: sent(1, numbered(1)),
            },
            Op::PutInflight {
                client: who.clone(),
                packet_id: pid(5),
                record: InflightRecord::Released { order: 2 },
            },
            Op::PutInflight {
                client: who.clone(),
                packet_id: pid(65_535),
                record: sent(u64::MAX, numbered(9)),
            },
            Op::PutInflight {
                client: other.clone(),
                packet_id: pid(10),
                record: sent(0, numbered(7)),
            },
        ],
    );
    let window = inflight(store, &who);
    assert_eq!(
        window,
        vec![
            (pid(20), sent(1, numbered(1))),
            (pid(5), InflightRecord::Released { order: 2 }),
            (pid(10), sent(3, numbered(3))),
            (pid(65_535), sent(u64::MAX, numbered(9))),
        ]
    );
    // PUBREC arrived for packet 10: Sent becomes Released, keeping its order.
    write(
        store,
        vec![
            Op::PutInflight {
                client: who.clone(),
                packet_id: pid(10),
                record: InflightRecord::Released { order: 3 },
            },
            Op::DeleteInflight {
                client: who.clone(),
                packet_id: pid(20),
            },
        ],
    );
    assert_eq!(
        inflight(store, &who),
        vec![
            (pid(5), InflightRecord::Released { order: 2 }),
            (pid(10), InflightRecord::Released { order: 3 }),
            (pid(65_535), sent(u64::MAX, numbered(9))),
        ]
    );
    assert_eq!(
        inflight(store, &other),
        vec![(pid(10), sent(0, numbered(7)))]
    );
    assert!(inflight(store, &client("nobody")).is_empty());
}

pub(super) fn incoming_qos2_put_delete(store: &mut dyn Store) {
    let who = client("r");
    write(
        store,
        vec![
            Op::PutSession {
                client: who.clone(),
                record: bare_session(1),
            },
            Op::PutIncomingQos2 {
                client: who.clone(),
                packet_id: pid(300),
            },
            Op::PutIncomingQos2 {
                client: who.clone(),
                packet_id: pid(65_535),
            },
            Op::PutIncomingQos2 {
                client: who.clone(),
                packet_id: pid(1),
            },
            Op::PutIncomingQos2 {
                client: who.clone(),
                packet_id: pid(1),
            },
        ],
    );
    let qos2 = |store: &mut dyn Store| {
        load(store)
            .session(&who)
            .expect("loads")
            .incoming_qos2
            .clone()
    };
    assert_eq!(qos2(store), vec![pid(1), pid(300), pid(65_535)]);
    write(
        store,
        vec![Op::DeleteIncomingQos2 {
            client: who.clone(),
            packet_id: pid(300),
        }],
    );
    assert_eq!(qos2(store), vec![pid(1), pid(65_535)]);
}

pub(super) fn qos2_retry_shares_the_received_row(store: &mut dyn Store) {
    use crate::ids::{MessageId, NodeId};
    let who = client("q");
    let id = |seq| MessageId {
        origin: NodeId(9),
        seq,
    };
    write(
        store,
        vec![
            Op::PutSession {
                client: who.clone(),
                record: bare_session(1),
            },
            Op::PutQos2Retry {
                client: who.clone(),
                packet_id: pid(4),
                id: id(40),
            },
            Op::PutQos2Retry {
                client: who.clone(),
                packet_id: pid(5),
                id: id(u64::MAX),
            },
            Op::PutIncomingQos2 {
                client: who.clone(),
                packet_id: pid(6),
            },
        ],
    );
    let state = |store: &mut dyn Store| {
        let loaded = load(store);
        let session = loaded.session(&who).expect("loads");
        (session.incoming_qos2.clone(), session.qos2_retry.clone())
    };
    assert_eq!(
        state(store),
        (vec![pid(6)], vec![(pid(4), id(40)), (pid(5), id(u64::MAX))])
    );
    // Stored everywhere after all: the same row says "received".
    write(
        store,
        vec![
            Op::PutIncomingQos2 {
                client: who.clone(),
                packet_id: pid(4),
            },
            Op::DeleteIncomingQos2 {
                client: who.clone(),
                packet_id: pid(5),
            },
        ],
    );
    assert_eq!(state(store), (vec![pid(4), pid(6)], vec![]));
    write(
        store,
        vec![
            Op::PutQos2Retry {
                client: who.clone(),
                packet_id: pid(7),
                id: id(1),
            },
            Op::DeleteSession {
                client: who.clone(),
            },
        ],
    );
    assert!(load(store).session(&who).is_none());
}

pub(super) fn seen_put_delete_and_go_with_the_session(store: &mut dyn Store) {
    use crate::ids::{MessageId, NodeId};
    let who = client("s");
    let id = |seq| MessageId {
        origin: NodeId(7),
        seq,
    };
    write(
        store,
        vec![
            Op::PutSession {
                client: who.clone(),
                record: bare_session(1),
            },
            Op::PutSeen {
                client: who.clone(),
                slot: 1 << 63,
                id: id(10),
            },
            Op::PutSeen {
                client: who.clone(),
                slot: (1 << 63) - 1,
                id: id(u64::MAX),
            },
            Op::PutSeen {
                client: who.clone(),
                slot: (1 << 63) + 256,
                id: id(11),
            },
        ],
    );
    let seen = |store: &mut dyn Store| {
        let mut rows = load(store)
            .session(&who)
            .map(|s| s.seen.clone())
            .unwrap_or_default();
        rows.sort();
        rows
    };
    assert_eq!(
        seen(store),
        vec![
            ((1 << 63) - 1, id(u64::MAX)),
            (1 << 63, id(10)),
            ((1 << 63) + 256, id(11)),
        ]
    );
    write(
        store,
        vec![Op::DeleteSeen {
            client: who.clone(),
            slot: 1 << 63,
        }],
    );
    assert_eq!(
        seen(store),
        vec![((1 << 63) - 1, id(u64::MAX)), ((1 << 63) + 256, id(11))]
    );
    recreate(store, &who, 2);
    assert!(seen(store).is_empty(), "a session's identities end with it");
}

/// `PurgeQueue` removes every queued message below its bound in one op, whatever the queue's
/// length; what is enqueued after it in the same batch stays, and so do the client's other rows
/// and other clients' queues (one whose id starts with the purged client's).
pub(super) fn purge_removes_the_queue_below_its_bound(store: &mut dyn Store) {
    let who = client("p");
    let longer = client("p2");
    write(
        store,
        vec![
            Op::PutSession {
                client: who.clone(),
                record: bare_session(1),
            },
            Op::PutSession {
                client: longer.clone(),
                record: bare_session(1),
            },
            Op::PutInflight {
                client: who.clone(),
                packet_id: pid(4),
                record: sent(0, numbered(0)),
            },
        ],
    );
    enqueue_all(store, &who, [1, 2, 3, 256, 257]);
    enqueue_all(store, &longer, [1, 2]);
    write(
        store,
        vec![
            Op::PurgeQueue {
                client: who.clone(),
                before: QueueSeq(257),
            },
            Op::Enqueue {
                client: who.clone(),
                seq: QueueSeq(258),
                delivery: numbered(258),
            },
        ],
    );
    assert_eq!(seqs(&queue(store, &who)), vec![257, 258]);
    let expected = QueueBounds {
        first: QueueSeq(257),
        next: QueueSeq(259),
        count: 2,
        bytes: size_of([257, 258]),
    };
    assert_eq!(bounds(store, &who), expected);
    assert_eq!(inflight(store, &who), vec![(pid(4), sent(0, numbered(0)))]);
    assert_eq!(seqs(&queue(store, &longer)), vec![1, 2]);

    // Everything, then a message enqueued behind the purge in the same batch.
    write(
        store,
        vec![
            Op::Enqueue {
                client: who.clone(),
                seq: QueueSeq(259),
                delivery: numbered(259),
            },
            Op::PurgeQueue {
                client: who.clone(),
                before: QueueSeq(260),
            },
            Op::Enqueue {
                client: who.clone(),
                seq: QueueSeq(260),
                delivery: numbered(260),
            },
        ],
    );
    assert_eq!(seqs(&queue(store, &who)), vec![260]);
    // A purge of an empty or missing queue is fine.
    write(
        store,
        vec![
            Op::PurgeQueue {
                client: who.clone(),
                before: QueueSeq(261),
            },
            Op::PurgeQueue {
                client: client("nobody"),
                before: QueueSeq(u64::MAX),
            },
        ],
    );
    let empty = bounds(store, &who);
    assert_eq!((empty.count, empty.bytes), (0, 0));
    assert_eq!(seqs(&queue(store, &longer)), vec![1, 2]);
}

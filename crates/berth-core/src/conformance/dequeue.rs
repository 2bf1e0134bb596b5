//! Cases for taking rows off a queue: many `Dequeue`s amid a batch's other ops (each takes
//! effect in its place), and `DequeueThrough`, the mark a connected session's acknowledged
//! head goes with.

use super::fixtures::*;
use crate::ids::QueueSeq;
use crate::store::{Op, QueueBounds, Store};

/// A bare session record (epoch 1) for each of `clients`, so that loads list them.
fn put_sessions(store: &mut dyn Store, clients: &[&crate::ids::ClientId]) {
    let ops = clients
        .iter()
        .map(|&who| Op::PutSession {
            client: who.clone(),
            record: bare_session(1),
        })
        .collect();
    write(store, ops);
}

fn dequeue(who: &crate::ids::ClientId, seq: u64) -> Op {
    Op::Dequeue {
        client: who.clone(),
        seq: QueueSeq(seq),
    }
}

fn enqueue(who: &crate::ids::ClientId, seq: u64) -> Op {
    Op::Enqueue {
        client: who.clone(),
        seq: QueueSeq(seq),
        delivery: numbered(seq),
    }
}

/// Consecutive dequeues, interleaved with other clients' dequeues (one whose id starts with the
/// first's), with enqueues, with the sent mark, with gaps and missing rows: exactly the rows
/// named are gone.
pub(super) fn dequeues_delete_exactly_their_rows(store: &mut dyn Store) {
    let who = client("d");
    let longer = client("d2");
    put_sessions(store, &[&who, &longer]);
    enqueue_all(store, &who, 1..=10);
    enqueue_all(store, &longer, 1..=5);
    write(
        store,
        vec![
            dequeue(&who, 1),
            dequeue(&who, 2),
            dequeue(&longer, 1),
            dequeue(&who, 3),
            Op::PutSentMark {
                client: who.clone(),
                seq: QueueSeq(6),
            },
            dequeue(&who, 4),
            enqueue(&who, 11),
            dequeue(&who, 5),
            dequeue(&who, 7),
            dequeue(&who, 8),
            dequeue(&longer, 2),
            dequeue(&longer, 3),
            dequeue(&who, 42),
        ],
    );
    assert_eq!(seqs(&queue(store, &who)), vec![6, 9, 10, 11]);
    assert_eq!(seqs(&queue(store, &longer)), vec![4, 5]);
    let expected = QueueBounds {
        first: QueueSeq(6),
        next: QueueSeq(12),
        count: 4,
        bytes: size_of([6, 9, 10, 11]),
    };
    assert_eq!(bounds(store, &who), expected);
    // The sent mark stays, and still marks the rows at or below it.
    assert_eq!(
        load(store).session(&who).unwrap().sent_mark,
        Some(QueueSeq(6))
    );
    let page = store.read_queue(&who, QueueSeq(0), 10).expect("reads");
    let redelivered: Vec<bool> = page.iter().map(|(_, d)| d.redelivery).collect();
    assert_eq!(redelivered, vec![true, false, false, false]);
}

/// A row enqueued after its dequeue in the same batch stays; one enqueued before it goes; a
/// session deleted and re-created in the batch keeps the rows written after the delete, though
/// their sequences were dequeued before it.
pub(super) fn dequeues_keep_the_batch_order(store: &mut dyn Store) {
    let who = client("o");
    put_sessions(store, &[&who]);
    enqueue_all(store, &who, 1..=4);
    write(
        store,
        vec![
            dequeue(&who, 1),
            enqueue(&who, 6),
            dequeue(&who, 2),
            // Written again after its dequeue: it stays.
            enqueue(&who, 2),
            dequeue(&who, 3),
            dequeue(&who, 4),
            dequeue(&who, 5),
            // Written before its dequeue: it goes.
            dequeue(&who, 6),
            enqueue(&who, 7),
        ],
    );
    assert_eq!(seqs(&queue(store, &who)), vec![2, 7]);

    write(
        store,
        vec![
            dequeue(&who, 2),
            dequeue(&who, 3),
            Op::DeleteSession {
                client: who.clone(),
            },
            Op::PutSession {
                client: who.clone(),
                record: bare_session(2),
            },
            enqueue(&who, 1),
            enqueue(&who, 2),
            enqueue(&who, 3),
            dequeue(&who, 1),
        ],
    );
    assert_eq!(seqs(&queue(store, &who)), vec![2, 3]);

    write(
        store,
        vec![
            dequeue(&who, 2),
            dequeue(&who, 3),
            Op::PurgeQueue {
                client: who.clone(),
                before: QueueSeq(4),
            },
            enqueue(&who, 3),
            enqueue(&who, 4),
        ],
    );
    assert_eq!(seqs(&queue(store, &who)), vec![3, 4]);
}

fn dequeue_through(who: &crate::ids::ClientId, seq: u64, sweep: bool) -> Op {
    Op::DequeueThrough {
        client: who.clone(),
        seq: QueueSeq(seq),
        sweep,
    }
}

/// `DequeueThrough` removes the rows at or below it, swept or not, from reads and loads alike;
/// sequences go on above it once every row is gone; other clients (one whose id starts with
/// this one's) keep theirs; a later mark replaces it; the session's delete removes it.
pub(super) fn dequeue_through_removes_the_head(store: &mut dyn Store) {
    let who = client("t");
    let longer = client("t2");
    put_sessions(store, &[&who, &longer]);
    enqueue_all(store, &who, 1..=10);
    enqueue_all(store, &longer, 1..=3);
    write(store, vec![dequeue_through(&who, 4, false)]);
    assert_eq!(seqs(&queue(store, &who)), (5..=10).collect::<Vec<_>>());
    let page = store.read_queue(&who, QueueSeq(2), 2).expect("reads");
    assert_eq!(
        seqs(&page),
        vec![5, 6],
        "a read from below the mark starts above it"
    );
    let expected = QueueBounds {
        first: QueueSeq(5),
        next: QueueSeq(11),
        count: 6,
        bytes: size_of(5..=10),
    };
    assert_eq!(bounds(store, &who), expected);

    // Swept, and a row acknowledged out of order before it: the same to a reader.
    write(
        store,
        vec![dequeue(&who, 8), dequeue_through(&who, 6, true)],
    );
    assert_eq!(seqs(&queue(store, &who)), vec![7, 9, 10]);
    write(store, vec![dequeue_through(&who, 10, false)]);
    assert!(queue(store, &who).is_empty());
    let empty = bounds(store, &who);
    assert_eq!((empty.count, empty.bytes), (0, 0));
    assert_eq!(empty.next, QueueSeq(11), "sequences go on above the mark");
    let loaded = load(store);
    assert_eq!(
        loaded.session(&who).unwrap().dequeued_through,
        Some(QueueSeq(10))
    );
    assert_eq!(loaded.session(&longer).unwrap().dequeued_through, None);
    assert_eq!(seqs(&queue(store, &longer)), vec![1, 2, 3]);
    enqueue_all(store, &who, [11]);
    assert_eq!(seqs(&queue(store, &who)), vec![11]);

    // A new session starts below the old mark: its rows are its own.
    recreate(store, &who, 2);
    assert_eq!(bounds(store, &who), QueueBounds::default());
    assert_eq!(load(store).session(&who).unwrap().dequeued_through, None);
    enqueue_all(store, &who, [1, 2]);
    assert_eq!(seqs(&queue(store, &who)), vec![1, 2]);
}

//! Cases for a session's sent mark (`Op::PutSentMark`): the queue rows of a connected
//! session's QoS 1 deliveries double as their in-flight records, and after a crash the rows at
//! or below the mark must come back as redeliveries (DUP = 1), and no new message may take a
//! sequence at or below it.

use super::fixtures::*;
use crate::ids::QueueSeq;
use crate::store::{Op, Store};

fn mark(who: &crate::ids::ClientId, seq: u64) -> Op {
    Op::PutSentMark {
        client: who.clone(),
        seq: QueueSeq(seq),
    }
}

/// Stores a bare session record for each of `clients`, and `rows` queued for the first.
fn sessions_with_rows(store: &mut dyn Store, clients: &[&crate::ids::ClientId], rows: u64) {
    let records = clients
        .iter()
        .map(|who| Op::PutSession {
            client: (*who).clone(),
            record: bare_session(1),
        })
        .collect();
    write(store, records);
    enqueue_all(store, clients[0], 1..=rows);
}

fn redelivered(store: &dyn Store, who: &crate::ids::ClientId) -> Vec<u64> {
    queue(store, who)
        .into_iter()
        .filter(|(_, delivery)| delivery.redelivery)
        .map(|(seq, _)| seq.0)
        .collect()
}

pub(super) fn rows_at_or_below_the_sent_mark_read_back_as_redeliveries(store: &mut dyn Store) {
    let who = client("m");
    let other = client("m2");
    sessions_with_rows(store, &[&who, &other], 5);
    enqueue_all(store, &other, 1..=5);
    assert!(redelivered(store, &who).is_empty(), "no mark, no flag");
    write(store, vec![mark(&who, 2)]);
    // A later mark replaces it.
    write(store, vec![mark(&who, 3)]);
    assert_eq!(redelivered(store, &who), vec![1, 2, 3]);
    assert!(
        redelivered(store, &other).is_empty(),
        "one session's mark only"
    );
    let page = store.read_queue(&who, QueueSeq(3), 2).expect("reads");
    assert_eq!(seqs(&page), vec![3, 4], "the mark is not a row");
    assert!(page[0].1.redelivery && !page[1].1.redelivery);
    assert_eq!(
        bounds(store, &who).count,
        5,
        "the mark is not a queued message"
    );

    write(
        store,
        vec![Op::DeleteSentMark {
            client: who.clone(),
        }],
    );
    assert!(redelivered(store, &who).is_empty());
}

pub(super) fn sequences_go_on_above_the_sent_mark(store: &mut dyn Store) {
    let who = client("n");
    sessions_with_rows(store, &[&who], 3);
    let dequeued = (1..=3)
        .map(|seq| Op::Dequeue {
            client: who.clone(),
            seq: QueueSeq(seq),
        })
        .collect();
    write(store, vec![mark(&who, 7)]);
    write(store, dequeued);
    let loaded = bounds(store, &who);
    assert_eq!(loaded.count, 0);
    assert_eq!(
        loaded.next,
        QueueSeq(8),
        "every row gone, the mark still counts"
    );
    let session = load(store).session(&who).expect("session loads").clone();
    assert_eq!(
        session.sent_mark,
        Some(QueueSeq(7)),
        "the mark itself loads"
    );
    enqueue_all(store, &who, [9, 10]);
    let loaded = bounds(store, &who);
    assert_eq!((loaded.first, loaded.next), (QueueSeq(9), QueueSeq(11)));
}

pub(super) fn delete_session_removes_the_sent_mark(store: &mut dyn Store) {
    let who = client("o");
    sessions_with_rows(store, &[&who], 3);
    write(store, vec![mark(&who, 3)]);
    write(
        store,
        vec![Op::DeleteSession {
            client: who.clone(),
        }],
    );
    write(
        store,
        vec![Op::PutSession {
            client: who.clone(),
            record: bare_session(2),
        }],
    );
    enqueue_all(store, &who, [1]);
    assert!(redelivered(store, &who).is_empty());
    assert_eq!(bounds(store, &who).next, QueueSeq(2));
}

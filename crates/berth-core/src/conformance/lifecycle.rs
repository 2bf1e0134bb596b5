//! Cases for session deletion (prefix-safe), batch ordering, orphan rows and sync.

use berth_codec::QoS;

use super::fixtures::*;
use crate::ids::{ClientId, QueueSeq};
use crate::message::Delivery;
use crate::store::{Op, QueueBounds, Store};

pub(super) fn delete_session_removes_everything(store: &mut dyn Store) {
    let who = client("gone");
    populate(store, &who, "gone");
    write(
        store,
        vec![Op::PutRetained {
            message: plain("kept/retained", b"r"),
        }],
    );
    write(
        store,
        vec![Op::DeleteSession {
            client: who.clone(),
        }],
    );
    assert_nothing_left(store, &who);
    assert_eq!(
        load(store).retained.len(),
        1,
        "retained messages are not session state"
    );
}

/// `a` is a byte prefix of `ab` (and `""` of both): deleting one must not touch the others.
pub(super) fn delete_session_spares_prefix_clients(store: &mut dyn Store) {
    let ids = ["a", "ab", "", "a/", "b"];
    for id in ids {
        populate(store, &client(id), id);
    }
    let before = load(store);
    let queues: Vec<_> = ids.iter().map(|id| queue(store, &client(id))).collect();
    let windows: Vec<_> = ids.iter().map(|id| inflight(store, &client(id))).collect();

    write(
        store,
        vec![Op::DeleteSession {
            client: client("a"),
        }],
    );
    assert_nothing_left(store, &client("a"));
    let after = load(store);
    for (i, id) in ids.iter().enumerate().filter(|(_, id)| **id != "a") {
        let who = client(id);
        assert_eq!(
            after.session(&who),
            before.session(&who),
            "session {id:?} changed"
        );
        assert_eq!(queue(store, &who), queues[i], "queue of {id:?} changed");
        assert_eq!(
            inflight(store, &who),
            windows[i],
            "in-flight of {id:?} changed"
        );
    }

    write(store, vec![Op::DeleteSession { client: client("") }]);
    assert_nothing_left(store, &client(""));
    write(
        store,
        vec![Op::DeleteSession {
            client: client("ab"),
        }],
    );
    assert_nothing_left(store, &client("ab"));
    let after = load(store);
    for id in ["a/", "b"] {
        assert_eq!(
            after.session(&client(id)),
            before.session(&client(id)),
            "session {id:?} changed"
        );
    }
    assert_eq!(after.sessions.len(), 2);
}

/// Rows of the session written earlier in the batch that deletes it (not in the store yet when
/// the batch is staged) go with it too.
pub(super) fn delete_session_removes_rows_written_in_its_batch(store: &mut dyn Store) {
    let (who, neighbour) = (client("late"), client("late/"));
    let neighbour_queue = populated_beside(store, &who, &neighbour);
    write(
        store,
        vec![
            Op::PutSubscription {
                client: who.clone(),
                filter: filter("late/new"),
                record: subscription(QoS::ExactlyOnce, None),
            },
            Op::Enqueue {
                client: who.clone(),
                seq: QueueSeq(3),
                delivery: numbered(3),
            },
            Op::PutInflight {
                client: who.clone(),
                packet_id: pid(3),
                record: sent(3, numbered(3)),
            },
            Op::PutIncomingQos2 {
                client: who.clone(),
                packet_id: pid(7),
            },
            Op::DeleteSession {
                client: who.clone(),
            },
        ],
    );
    assert_deleted_beside(store, &who, &neighbour, &neighbour_queue);
}

/// A session with many rows of each kind (a long backlog, many subscriptions) goes whole.
pub(super) fn delete_session_removes_a_long_queue(store: &mut dyn Store) {
    let (who, neighbour) = (client("long"), client("longer"));
    let neighbour_queue = populated_beside(store, &who, &neighbour);
    let mut ops = Vec::new();
    for n in 3..503 {
        ops.push(Op::Enqueue {
            client: who.clone(),
            seq: QueueSeq(n),
            delivery: numbered(n),
        });
    }
    for n in 0..200 {
        ops.push(Op::PutSubscription {
            client: who.clone(),
            filter: filter(&format!("long/{n}")),
            record: subscription(QoS::AtLeastOnce, None),
        });
    }
    write(store, ops);
    assert_eq!(queue(store, &who).len(), 502);
    write(
        store,
        vec![Op::DeleteSession {
            client: who.clone(),
        }],
    );
    assert_deleted_beside(store, &who, &neighbour, &neighbour_queue);
}

/// `who` and `neighbour` (an id that `who`'s is a byte prefix of) populated: the neighbour's
/// queue, to compare after `who` is deleted.
fn populated_beside(
    store: &mut dyn Store,
    who: &ClientId,
    neighbour: &ClientId,
) -> Vec<(QueueSeq, Delivery)> {
    populate(store, who, who.as_str());
    populate(store, neighbour, "neighbour");
    queue(store, neighbour)
}

/// Nothing of `who` is left, and its neighbour's queue is as it was.
fn assert_deleted_beside(
    store: &mut dyn Store,
    who: &ClientId,
    neighbour: &ClientId,
    neighbour_queue: &[(QueueSeq, Delivery)],
) {
    assert_nothing_left(store, who);
    assert_eq!(
        queue(store, neighbour),
        neighbour_queue,
        "the queue of {neighbour}"
    );
    let kept = load(store).session(neighbour).map(|s| s.kept_ids.clone());
    assert_eq!(
        kept,
        Some(vec![pid(5)]),
        "the kept packet ids of {neighbour}"
    );
}

pub(super) fn batch_ops_apply_in_order(store: &mut dyn Store) {
    let who = client("ordered");
    populate(store, &who, "old");
    write(
        store,
        vec![
            Op::Enqueue {
                client: who.clone(),
                seq: QueueSeq(3),
                delivery: numbered(3),
            },
            Op::Dequeue {
                client: who.clone(),
                seq: QueueSeq(3),
            },
            Op::PutRetained {
                message: plain("r/1", b"x"),
            },
            Op::DeleteRetained {
                topic: topic("r/1"),
            },
            Op::DeleteRetained {
                topic: topic("r/2"),
            },
            Op::PutRetained {
                message: plain("r/2", b"y"),
            },
        ],
    );
    assert_eq!(seqs(&queue(store, &who)), vec![1, 2]);
    assert_eq!(load(store).retained, vec![plain("r/2", b"y")]);

    // A clean start: the old session goes, a new one with new state is written in the same batch.
    write(
        store,
        vec![
            Op::DeleteSession {
                client: who.clone(),
            },
            Op::PutSession {
                client: who.clone(),
                record: bare_session(8),
            },
            Op::PutSubscription {
                client: who.clone(),
                filter: filter("new/#"),
                record: subscription(QoS::AtLeastOnce, None),
            },
            Op::Enqueue {
                client: who.clone(),
                seq: QueueSeq(0),
                delivery: numbered(0),
            },
            Op::PutIncomingQos2 {
                client: who.clone(),
                packet_id: pid(4),
            },
            Op::PutInflight {
                client: who.clone(),
                packet_id: pid(2),
                record: sent(0, numbered(5)),
            },
        ],
    );
    let snapshot = load(store);
    let session = snapshot.session(&who).expect("new session loads");
    assert_eq!(session.record, bare_session(8));
    assert_eq!(
        session.subscriptions,
        vec![(filter("new/#"), subscription(QoS::AtLeastOnce, None))]
    );
    assert_eq!(session.incoming_qos2, vec![pid(4)]);
    let expected = QueueBounds {
        first: QueueSeq(0),
        next: QueueSeq(1),
        count: 1,
        bytes: size_of([0]),
    };
    assert_eq!(session.queue, expected);
    assert_eq!(seqs(&queue(store, &who)), vec![0]);
    assert_eq!(inflight(store, &who), vec![(pid(2), sent(0, numbered(5)))]);
}

pub(super) fn deleting_missing_rows_is_fine(store: &mut dyn Store) {
    let who = client("missing");
    write(
        store,
        vec![
            Op::DeleteSession {
                client: who.clone(),
            },
            Op::DeleteSubscription {
                client: who.clone(),
                filter: filter("x"),
            },
            Op::Dequeue {
                client: who.clone(),
                seq: QueueSeq(1),
            },
            Op::DeleteInflight {
                client: who.clone(),
                packet_id: pid(1),
            },
            Op::DeleteIncomingQos2 {
                client: who.clone(),
                packet_id: pid(1),
            },
            Op::DeleteRetained { topic: topic("x") },
        ],
    );
    let snapshot = load(store);
    assert!(snapshot.sessions.is_empty());
    assert!(snapshot.retained.is_empty());
}

pub(super) fn rows_without_session_are_not_loaded(store: &mut dyn Store) {
    let who = client("orphan");
    write(
        store,
        vec![
            Op::PutSubscription {
                client: who.clone(),
                filter: filter("x"),
                record: subscription(QoS::AtMostOnce, None),
            },
            Op::Enqueue {
                client: who.clone(),
                seq: QueueSeq(1),
                delivery: numbered(1),
            },
            Op::PutIncomingQos2 {
                client: who.clone(),
                packet_id: pid(1),
            },
        ],
    );
    assert!(load(store).sessions.is_empty());
    // The rows are still readable directly, and attach to a session once it is written.
    assert_eq!(seqs(&queue(store, &who)), vec![1]);
    write(
        store,
        vec![Op::PutSession {
            client: who.clone(),
            record: bare_session(1),
        }],
    );
    let snapshot = load(store);
    let session = snapshot.session(&who).expect("loads");
    assert_eq!(session.subscriptions.len(), 1);
    assert_eq!(session.queue.count, 1);
    assert_eq!(session.incoming_qos2, vec![pid(1)]);
}

pub(super) fn sync_after_writes(store: &mut dyn Store) {
    store.sync().expect("sync of an empty store");
    populate(store, &client("s"), "s");
    store.sync().expect("sync after writes");
    store.sync().expect("sync twice");
    assert_eq!(load(store).sessions.len(), 1);
}

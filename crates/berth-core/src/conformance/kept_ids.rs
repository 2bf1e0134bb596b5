//! Cases for a session's kept packet ids (`Op::PutKeptIds`): the ids its queued QoS 2 messages
//! wait for, which must all be known again after a restart, before any queued row is read.

use super::fixtures::*;
use crate::ids::{ClientId, QueueSeq};
use crate::store::{Op, Store};

fn kept(who: &ClientId, ids: &[u16]) -> Op {
    Op::PutKeptIds {
        client: who.clone(),
        ids: ids.iter().map(|id| pid(*id)).collect(),
    }
}

fn loaded_kept(store: &mut dyn Store, who: &ClientId) -> Vec<u16> {
    let loaded = load(store);
    let session = loaded.session(who).expect("session loads");
    session.kept_ids.iter().map(|id| id.get()).collect()
}

pub(super) fn kept_ids_put_replace_remove_and_go_with_the_session(store: &mut dyn Store) {
    let who = client("k");
    let other = client("k2");
    for client in [&who, &other] {
        write(
            store,
            vec![Op::PutSession {
                client: client.clone(),
                record: bare_session(1),
            }],
        );
    }
    enqueue_all(store, &who, 1..=4);
    write(store, vec![kept(&who, &[3, 70])]);
    assert_eq!(loaded_kept(store, &who), vec![3, 70]);
    assert!(
        loaded_kept(store, &other).is_empty(),
        "one session's ids only"
    );
    // A later put replaces them.
    write(store, vec![kept(&who, &[1, 2, 65_535])]);
    assert_eq!(loaded_kept(store, &who), vec![1, 2, 65_535]);
    assert_eq!(
        bounds(store, &who).count,
        4,
        "the ids are not a queued message"
    );
    let page = store.read_queue(&who, QueueSeq(0), 10).expect("reads");
    assert_eq!(seqs(&page), vec![1, 2, 3, 4], "nor a row a read returns");

    // Dropping queue rows by range leaves them: the broker says when they go.
    write(
        store,
        vec![
            Op::DequeueThrough {
                client: who.clone(),
                seq: QueueSeq(2),
                sweep: true,
            },
            Op::PurgeQueue {
                client: who.clone(),
                before: QueueSeq(4),
            },
        ],
    );
    assert_eq!(loaded_kept(store, &who), vec![1, 2, 65_535]);
    write(store, vec![kept(&who, &[])]);
    assert!(loaded_kept(store, &who).is_empty(), "none removes them");

    write(store, vec![kept(&who, &[9])]);
    recreate(store, &who, 2);
    assert!(
        loaded_kept(store, &who).is_empty(),
        "they go with the session"
    );
}

//! Conformance cases for persistent stores: what was written is what a re-opened store returns.

use berth_codec::QoS;

use super::fixtures::*;
use crate::ids::{ClientId, QueueSeq};
use crate::store::{InflightRecord, Op, QueueBounds, Store};

/// What a store shows of the given clients: loaded state plus their queues and windows.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    snapshot: Snapshot,
    queues: Vec<Vec<(QueueSeq, crate::message::Delivery)>>,
    windows: Vec<Vec<(berth_codec::PacketId, InflightRecord)>>,
}

fn observe(store: &mut dyn Store, clients: &[ClientId]) -> Observed {
    Observed {
        snapshot: load(store),
        queues: clients.iter().map(|who| queue(store, who)).collect(),
        windows: clients.iter().map(|who| inflight(store, who)).collect(),
    }
}

type Case<S> = (&'static str, fn(&mut dyn FnMut() -> S));

/// Runs the persistence cases. `fresh` is called once per case and returns an opener for a new,
/// empty location (a temporary directory); the case calls the opener, writes, drops the store,
/// and calls the opener again to check what survived. The opener may be called several times.
pub fn run_reopen<S: Store, O: FnMut() -> S>(mut fresh: impl FnMut() -> O) {
    let cases: [Case<S>; 4] = [
        ("everything_survives_reopen", everything_survives_reopen),
        ("deletes_survive_reopen", deletes_survive_reopen),
        ("queue_continues_after_reopen", queue_continues_after_reopen),
        ("reopen_of_empty_store", reopen_of_empty_store),
    ];
    for (name, case) in cases {
        eprintln!("storage conformance (reopen): {name}");
        let mut open = fresh();
        case(&mut open);
    }
}

fn everything_survives_reopen<S: Store>(open: &mut dyn FnMut() -> S) {
    let clients = [client("a"), client("ab"), client("客户端")];
    let before = {
        let mut store = open();
        for who in &clients {
            populate(&mut store, who, "tag");
        }
        write(
            &mut store,
            vec![
                Op::PutRetained {
                    message: rich("retained/rich", QoS::ExactlyOnce, true),
                },
                Op::PutRetained {
                    message: plain("retained/plain", b""),
                },
                Op::PutHandoff {
                    record: crate::store::HandoffRecord {
                        seq: 7,
                        client: clients[2].clone(),
                        epoch: crate::ids::Epoch(4),
                        message: rich("handoff/rich", QoS::AtLeastOnce, false),
                        publisher: Some(clients[0].clone()),
                        retried: true,
                    },
                },
                Op::Enqueue {
                    client: clients[2].clone(),
                    seq: QueueSeq(3),
                    delivery: delivery(
                        rich("q/x", QoS::ExactlyOnce, true),
                        QoS::AtLeastOnce,
                        true,
                        &[4, 5],
                    ),
                },
            ],
        );
        observe(&mut store, &clients)
    };
    assert_eq!(before.snapshot.sessions.len(), 3);
    let mut store = open();
    assert_eq!(observe(&mut store, &clients), before);
    drop(store);
    // Opening twice in a row changes nothing either.
    let mut store = open();
    assert_eq!(observe(&mut store, &clients), before);
}

fn deletes_survive_reopen<S: Store>(open: &mut dyn FnMut() -> S) {
    let clients = [client("a"), client("ab"), client("b")];
    let before = {
        let mut store = open();
        for who in &clients {
            populate(&mut store, who, "tag");
        }
        write(
            &mut store,
            vec![Op::PutRetained {
                message: plain("r/1", b"1"),
            }],
        );
        write(
            &mut store,
            vec![Op::PutRetained {
                message: plain("r/2", b"2"),
            }],
        );
        write(
            &mut store,
            vec![
                Op::DeleteSession {
                    client: clients[0].clone(),
                },
                Op::Dequeue {
                    client: clients[1].clone(),
                    seq: QueueSeq(1),
                },
                Op::DeleteInflight {
                    client: clients[1].clone(),
                    packet_id: pid(2),
                },
                Op::DeleteIncomingQos2 {
                    client: clients[1].clone(),
                    packet_id: pid(9),
                },
                Op::DeleteSubscription {
                    client: clients[2].clone(),
                    filter: filter("#"),
                },
                Op::DeleteRetained {
                    topic: topic("r/1"),
                },
            ],
        );
        store.sync().expect("sync");
        observe(&mut store, &clients)
    };
    assert_eq!(before.snapshot.sessions.len(), 2);
    let mut store = open();
    assert_eq!(observe(&mut store, &clients), before);
    assert_nothing_left(&mut store, &clients[0]);
    let ab = store.load().map(normalize).expect("loads");
    let ab = ab.session(&clients[1]).expect("ab loads");
    assert_eq!(
        ab.queue,
        QueueBounds {
            first: QueueSeq(2),
            next: QueueSeq(3),
            count: 1,
            bytes: numbered(2).size()
        }
    );
    assert!(ab.incoming_qos2.is_empty());
}

fn queue_continues_after_reopen<S: Store>(open: &mut dyn FnMut() -> S) {
    let who = client("continues");
    {
        let mut store = open();
        write(
            &mut store,
            vec![Op::PutSession {
                client: who.clone(),
                record: bare_session(1),
            }],
        );
        let ops = (0..100).map(|n| Op::Enqueue {
            client: who.clone(),
            seq: QueueSeq(n),
            delivery: numbered(n),
        });
        write(&mut store, ops.collect());
        let ops = (0..40).map(|n| Op::Dequeue {
            client: who.clone(),
            seq: QueueSeq(n),
        });
        write(&mut store, ops.collect());
    }
    {
        let mut store = open();
        let bounds = load(&mut store).session(&who).expect("loads").queue;
        let bytes = (40..100).map(|n| numbered(n).size()).sum();
        assert_eq!(
            bounds,
            QueueBounds {
                first: QueueSeq(40),
                next: QueueSeq(100),
                count: 60,
                bytes
            }
        );
        let ops = (bounds.next.0..bounds.next.0 + 10).map(|n| Op::Enqueue {
            client: who.clone(),
            seq: QueueSeq(n),
            delivery: numbered(n),
        });
        write(&mut store, ops.collect());
        store.sync().expect("sync");
    }
    let store = open();
    let all = queue(&store, &who);
    assert_eq!(seqs(&all), (40..110).collect::<Vec<_>>());
    for (seq, delivery) in &all {
        assert_eq!(delivery, &numbered(seq.0));
    }
    let page = store.read_queue(&who, QueueSeq(95), 10).expect("reads");
    assert_eq!(seqs(&page), (95..105).collect::<Vec<_>>());
}

fn reopen_of_empty_store<S: Store>(open: &mut dyn FnMut() -> S) {
    drop(open());
    let mut store = open();
    let snapshot = load(&mut store);
    assert!(snapshot.sessions.is_empty());
    assert!(snapshot.retained.is_empty());
}

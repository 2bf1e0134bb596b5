//! Publish order across an owner change: what this node routes to a session that moved while
//! forwards to its old owner were still out waits for them (see `broker/fences.rs`).

use super::*;
use crate::cluster::ClusterEvent;
use crate::ids::{Epoch, NodeId};
use crate::store::SubscriptionRecord;

fn node(id: u64) -> Harness {
    let mut h = Harness::new();
    h.broker.join_cluster(NodeId(id));
    h
}

fn owner(h: &mut Harness, client_id: &str, owner: u64, epoch: u64) -> Out {
    h.event(Event::Cluster(ClusterEvent::Owner {
        client: client(client_id),
        owner: NodeId(owner),
        epoch: Epoch(epoch),
        kept: true,
        moved_from: None,
        subscriptions: vec![(
            filter("t"),
            SubscriptionRecord {
                options: SubscriptionOptions::new(QoS::AtLeastOnce),
                subscription_id: None,
            },
        )],
    }))
}

/// (node, token, payload) of every forward in `out`.
fn forwards(out: &Out) -> Vec<(u64, Option<u64>, String)> {
    super::cluster::forwards(out)
        .into_iter()
        .map(|(node, token, _, payload)| (node, token, payload))
        .collect()
}

fn puback_ids(out: &Out, conn: ConnId) -> Vec<u16> {
    super::cluster::pubacks(out, conn)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

fn done(h: &mut Harness, token: Option<u64>, node: u64) -> Out {
    h.event(Event::ForwardDone {
        token: token.expect("a QoS 1 forward has a token"),
        delivered: true,
        node: NodeId(node),
    })
}

#[test]
fn a_message_for_a_session_that_moved_waits_for_the_forwards_to_its_old_owner() {
    let mut h = node(1);
    owner(&mut h, "dev", 2, 1);
    let publisher = h.connect_ok(v3("pub", true));
    let first = forwards(&h.publish(publisher, publish("t", b"m1", QoS::AtLeastOnce, 1)));
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].0, first[0].2.as_str()), (2, "m1"));

    // Node 2 does not answer; the session moves to node 3.
    owner(&mut h, "dev", 3, 2);
    let out = h.publish(publisher, publish("t", b"m2", QoS::AtLeastOnce, 2));
    assert!(
        forwards(&out).is_empty(),
        "m2 must not reach node 3 before m1's fate at node 2 is known"
    );
    assert!(puback_ids(&out, publisher).is_empty());

    // m1 ends at node 2 (stored there, or re-routed to node 3 and stored): m2 goes on.
    let out = done(&mut h, first[0].1, 2);
    assert_eq!(puback_ids(&out, publisher), vec![1]);
    let second = forwards(&out);
    assert_eq!(second.len(), 1);
    assert_eq!((second[0].0, second[0].2.as_str()), (3, "m2"));

    let out = done(&mut h, second[0].1, 3);
    assert_eq!(puback_ids(&out, publisher), vec![2]);
    // The fence is gone: the next message goes straight to node 3.
    let third = forwards(&h.publish(publisher, publish("t", b"m3", QoS::AtLeastOnce, 3)));
    assert_eq!((third[0].0, third[0].2.as_str()), (3, "m3"));
}

#[test]
fn a_session_moving_with_nothing_out_to_its_old_owner_is_not_held() {
    let mut h = node(1);
    owner(&mut h, "dev", 2, 1);
    let publisher = h.connect_ok(v3("pub", true));
    let first = forwards(&h.publish(publisher, publish("t", b"m1", QoS::AtLeastOnce, 1)));
    let out = done(&mut h, first[0].1, 2);
    assert_eq!(puback_ids(&out, publisher), vec![1]);

    owner(&mut h, "dev", 3, 2);
    let second = forwards(&h.publish(publisher, publish("t", b"m2", QoS::AtLeastOnce, 2)));
    assert_eq!((second[0].0, second[0].2.as_str()), (3, "m2"));
}

#[test]
fn a_held_message_for_a_session_that_moved_here_comes_after_the_backlog() {
    // Node 2 owns `dev` (offline, subscribed to `t`).
    let mut old = node(2);
    let dev = old.connect_ok(v3("x", false));
    old.subscribe(dev, subscribe(1, "t", QoS::AtLeastOnce));
    old.lose(dev);

    let mut h = node(1);
    owner(&mut h, "x", 2, 1);
    let publisher = h.connect_ok(v3("pub", true));
    let first = forwards(&h.publish(publisher, publish("t", b"m1", QoS::AtLeastOnce, 1)));
    assert_eq!(first.len(), 1);
    // Node 2 stores m1, but its answer has not come back yet.
    old.event(Event::Forwarded {
        token: 1,
        messages: vec![crate::cluster::Forwarded {
            message: std::sync::Arc::new(crate::message::Message {
                topic: topic("t"),
                payload: bytes::Bytes::from_static(b"m1"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Default::default(),
                expires_at: None,
                received_at: None,
                id: None,
            }),
            clients: vec![client("x")],
            publisher: Some(client("pub")),
            retried: false,
        }],
    });

    // The device reconnects to this node: it claims the session and starts pulling it.
    owner(&mut h, "x", 1, 2);
    h.event(Event::ImportBegin {
        client: client("x"),
    });
    let out = h.publish(publisher, publish("t", b"m2", QoS::AtLeastOnce, 2));
    assert!(forwards(&out).is_empty());
    assert!(puback_ids(&out, publisher).is_empty());
    let out = done(&mut h, first[0].1, 2);
    assert_eq!(
        puback_ids(&out, publisher),
        vec![1, 2],
        "m2 followed m1 and is kept here for after the import"
    );

    owner(&mut old, "x", 1, 2);
    let (export, page) = super::claims::pull(&mut old, 2);
    super::claims::import(&mut h, export, page);
    h.event(Event::ImportDone {
        client: client("x"),
    });
    let (dev, out) = h.connect(v3("x", false));
    assert!(out.connack(dev).session_present);
    let got: Vec<String> = out
        .publishes(dev)
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect();
    assert_eq!(got, vec!["m1", "m2"]);
}

#[test]
fn a_move_learnt_from_a_snapshot_fences_like_the_log_entry() {
    let mut h = node(1);
    owner(&mut h, "x", 2, 1);
    let publisher = h.connect_ok(v3("pub", true));
    let first = forwards(&h.publish(publisher, publish("t", b"m1", QoS::AtLeastOnce, 1)));

    // This node was behind: the move to node 3 arrives in a snapshot.
    h.event(super::stranded::snapshot(3, 2, 1));
    let out = h.publish(publisher, publish("t", b"m2", QoS::AtLeastOnce, 2));
    assert!(
        forwards(&out).is_empty(),
        "m2 waits for m1's fate at node 2"
    );
    let out = done(&mut h, first[0].1, 2);
    let second = forwards(&out);
    assert_eq!((second[0].0, second[0].2.as_str()), (3, "m2"));
}

/// A node holding an older copy of `x` claims it back (twice) and keeps what it publishes for
/// `x` until the import lands; `x` is then claimed by node 3. A newer message published here
/// must follow the kept ones to node 3, not overtake them (simulator seed 228): it queues
/// behind them, and all join the copy that moves on.
#[test]
fn messages_kept_for_an_import_here_are_not_overtaken_when_the_session_moves_on() {
    let mut h = node(1);
    let x = h.connect_ok(v3("x", false));
    h.subscribe(x, subscribe(1, "t", QoS::AtLeastOnce));
    h.lose(x);
    owner(&mut h, "x", 2, 2); // the copy here is older now, moving to node 2
    owner(&mut h, "x", 1, 3); // claimed back here: the import from node 2 begins
    h.event(Event::ImportBegin {
        client: client("x"),
    });
    owner(&mut h, "x", 1, 4); // a second CONNECT here
    let publisher = h.connect_ok(v3("pub", true));
    let kept = h.publish(publisher, publish("t", b"m1", QoS::AtLeastOnce, 1));
    assert!(forwards(&kept).is_empty(), "m1 waits for the import");
    assert_eq!(puback_ids(&kept, publisher), vec![1], "kept: acknowledged");
    owner(&mut h, "x", 3, 5); // claimed by node 3 while the import runs
    let newer = h.publish(publisher, publish("t", b"m2", QoS::AtLeastOnce, 2));
    assert!(
        forwards(&newer).is_empty(),
        "m2 must not reach node 3 before m1: {:?}",
        forwards(&newer)
    );
    let landed = h.event(Event::ImportDone {
        client: client("x"),
    });
    assert!(forwards(&landed).is_empty());
    assert_eq!(
        h.stored_queue("x"),
        vec!["m1", "m2"],
        "in order, in the copy node 3 pulls"
    );
}

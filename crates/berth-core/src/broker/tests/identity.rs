//! Exactly once across nodes: a QoS 2 message published on a cluster node carries an identity,
//! and a session takes each identity once — a forward retried after its answer was lost, a
//! message re-routed to a session that also gets it back with a stranded copy, a restart in
//! between.

use std::sync::Arc;

use super::stranded::node;
use super::*;
use crate::cluster::{ClusterEvent, Forwarded, SessionExport};
use crate::ids::{Epoch, MessageId, NodeId};
use crate::message::Message;
use crate::stats::DropReason;
use crate::store::SubscriptionRecord;

fn qos2_message(payload: &'static [u8], seq: u64) -> Arc<Message> {
    Arc::new(Message {
        topic: topic("t"),
        payload: Bytes::from_static(payload),
        qos: QoS::ExactlyOnce,
        retain: false,
        properties: Default::default(),
        expires_at: None,
        received_at: None,
        id: Some(MessageId {
            origin: NodeId(1),
            seq,
        }),
    })
}

fn forward(h: &mut Harness, token: u64, message: &Arc<Message>, retried: bool) -> Out {
    h.event(Event::Forwarded {
        token,
        messages: vec![Forwarded {
            message: message.clone(),
            clients: vec![client("x")],
            publisher: None,
            retried,
        }],
    })
}

/// Node 2 owns `x`, subscribed to `t` at QoS 2, connected.
fn owner_with_subscriber() -> (Harness, ConnId) {
    let mut b = node(2);
    let conn = b.connect_ok(v5("x", false, Some(600)));
    b.subscribe(conn, subscribe(1, "t", QoS::ExactlyOnce));
    (b, conn)
}

/// A QoS 2 message gets its identity where it is received; a QoS 1 or QoS 0 one is only
/// given one when it goes to another node (so that a second copy of a forward is known there,
/// simulator seed 6557), QoS 1 only: a QoS 0 message is never sent twice.
#[test]
fn what_a_cluster_node_forwards_at_qos_1_or_2_carries_an_identity() {
    let mut a = node(1);
    far_subscriber(&mut a);
    let publisher = a.connect_ok(v5("pub", true, None));
    let ids = |out: &Out| -> Vec<Option<MessageId>> {
        out.actions
            .iter()
            .filter_map(|a| match a {
                Action::Forward { message, .. } => Some(message.id),
                _ => None,
            })
            .collect()
    };
    let first = ids(&a.publish(publisher, publish("t", b"1", QoS::ExactlyOnce, 1)));
    let second = ids(&a.publish(publisher, publish("t", b"2", QoS::ExactlyOnce, 2)));
    let qos1 = ids(&a.publish(publisher, publish("t", b"3", QoS::AtLeastOnce, 3)));
    let qos0 = ids(&a.publish(publisher, publish("t", b"4", QoS::AtMostOnce, 0)));
    let (Some(first), Some(second), Some(third)) = (first[0], second[0], qos1[0]) else {
        panic!("QoS 1 and 2 forwards carry identities: {first:?} {second:?} {qos1:?}");
    };
    assert_eq!(first.origin, NodeId(1));
    assert!(second.seq > first.seq, "never the same number twice");
    assert!(third.seq > second.seq);
    assert_eq!(qos0, vec![None]);
}

/// Simulator seed 6557: a QoS 1 forward's first attempt, held up by a partition, arrived after
/// its retry, whose copy was still in the session's window: it went out a second time under a
/// new packet id with DUP = 0. With the identity node 1 now gives it on its way, node 2 knows
/// the second copy for the same message.
#[test]
fn the_first_attempt_of_a_qos1_forward_arriving_after_its_retry_is_not_sent_as_new() {
    let mut a = node(1);
    far_subscriber(&mut a);
    let publisher = a.connect_ok(v5("pub", true, None));
    let out = a.publish(publisher, publish("t", b"m1", QoS::AtLeastOnce, 1));
    let m1 = out
        .actions
        .iter()
        .find_map(|a| match a {
            Action::Forward { message, .. } => Some(message.clone()),
            _ => None,
        })
        .expect("m1 goes to node 2");
    let mut b = node(2);
    let far = b.connect_ok(v5("far", false, Some(600)));
    b.subscribe(far, subscribe(1, "t", QoS::AtLeastOnce));
    let forward_far = |b: &mut Harness, token: u64, retried: bool| {
        b.event(Event::Forwarded {
            token,
            messages: vec![Forwarded {
                message: m1.clone(),
                clients: vec![client("far")],
                publisher: None,
                retried,
            }],
        })
    };
    let out = forward_far(&mut b, 1, true);
    assert_eq!(payloads(&out.publishes(far)), vec!["m1"]);
    let out = forward_far(&mut b, 2, false);
    assert!(
        out.publishes(far).is_empty(),
        "still in the window, unacknowledged: re-sent from there, not again as new"
    );
}

#[test]
fn a_retried_forward_of_a_qos2_message_reaches_the_session_once() {
    let (mut b, conn) = owner_with_subscriber();
    let m = qos2_message(b"m1", 10);
    let first = forward(&mut b, 1, &m, false);
    assert_eq!(payloads(&first.publishes(conn)), vec!["m1"]);
    // Its answer was lost; the publisher's node sends it again (or to the session's next
    // owner, which is this node again).
    let again = forward(&mut b, 2, &m, true);
    assert!(again.publishes(conn).is_empty(), "not delivered twice");
    assert!(
        again
            .actions
            .iter()
            .any(|a| matches!(a, Action::ForwardAccepted { token: 2, .. })),
        "the retry is acknowledged: the message is stored here"
    );
    assert_eq!(b.broker.stats().dropped_total(DropReason::Duplicate), 1);
    // Another message, and the same message at QoS 1 (no identity), go through.
    let other = forward(&mut b, 3, &qos2_message(b"m2", 11), false);
    assert_eq!(payloads(&other.publishes(conn)), vec!["m2"]);
}

#[test]
fn a_session_remembers_what_it_took_across_a_restart() {
    let (mut b, conn) = owner_with_subscriber();
    let m = qos2_message(b"m1", 10);
    forward(&mut b, 1, &m, false);
    b.lose(conn);
    b.restart_after(1);
    b.broker.join_cluster(NodeId(2));
    let (conn, _) = b.connect(v5("x", false, Some(600)));
    let again = forward(&mut b, 2, &m, true);
    assert!(again.publishes(conn).is_empty());
    assert_eq!(b.stored_queue("x"), Vec::<String>::new());
}

#[test]
fn a_stranded_copy_holding_a_message_the_session_got_by_another_way_does_not_deliver_it_again() {
    // Node 1 holds x offline with a QoS 2 message queued; x moves to node 2 while node 1 is
    // cut off, and the publisher's node re-routes the same message there.
    let mut a = node(1);
    let old = a.connect_ok(v5("x", false, Some(600)));
    a.subscribe(old, subscribe(1, "t", QoS::ExactlyOnce));
    a.lose(old);
    let publisher = a.connect_ok(v5("pub", true, None));
    a.publish(publisher, publish("t", b"m1", QoS::ExactlyOnce, 1));
    let claim = || {
        Event::Cluster(ClusterEvent::Owner {
            client: client("x"),
            owner: NodeId(2),
            epoch: Epoch(2),
            kept: true,
            moved_from: None,
            subscriptions: vec![(
                filter("t"),
                SubscriptionRecord {
                    options: SubscriptionOptions::new(QoS::ExactlyOnce),
                    subscription_id: None,
                },
            )],
        })
    };
    a.event(claim());
    let mut b = node(2);
    b.event(claim());
    b.event(Event::ImportBegin {
        client: client("x"),
    });
    let full: SessionExport = a
        .broker
        .export_session(&client("x"), Epoch(2))
        .unwrap()
        .unwrap();
    let mut fallback = full.clone();
    fallback.inflight.clear();
    fallback.queued = 0;
    fallback.seen.clear();
    b.event(Event::ImportState {
        client: client("x"),
        export: Box::new(fallback),
    });
    b.event(Event::ImportDone {
        client: client("x"),
    });
    let (conn, out) = b.connect_as(v5("x", false, Some(600)), 2);
    assert!(out.connack(conn).session_present);
    let (page, _) = a.broker.export_queue(&client("x"), None, 10).unwrap();
    assert_eq!(page.len(), 1);
    let rerouted = forward(&mut b, 1, &page[0].message, true);
    assert_eq!(payloads(&rerouted.publishes(conn)), vec!["m1"]);

    // Node 1 is back: its copy arrives as a late backlog.
    let late = b.event(Event::ImportLate {
        client: client("x"),
        epoch: Epoch(2),
        holder: crate::ids::NodeId(1),
        export: late_copy(Vec::new(), Vec::new(), full.seen),
        page,
    });
    assert!(late.publishes(conn).is_empty(), "m1 reached x once");
    assert_eq!(b.broker.stats().dropped_total(DropReason::Duplicate), 1);
}

/// A subscriber on node 2, as node `h` learns it from the registry.
fn far_subscriber(h: &mut Harness) {
    h.event(Event::Cluster(ClusterEvent::Subscribed {
        client: client("far"),
        owner: NodeId(2),
        subscriptions: vec![(
            filter("t"),
            SubscriptionRecord {
                options: SubscriptionOptions::new(QoS::ExactlyOnce),
                subscription_id: None,
            },
        )],
    }));
}

/// The token and identity of the one forward in `out`.
fn forward_of(out: &Out) -> (u64, Option<MessageId>) {
    let forwards: Vec<(u64, Option<MessageId>)> = out
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Forward { token, message, .. } => Some(((*token)?, message.id)),
            _ => None,
        })
        .collect();
    assert_eq!(forwards.len(), 1, "one forward: {:#?}", out.actions);
    forwards[0]
}

fn resent(payload: &'static [u8], id: u16) -> berth_codec::Publish {
    let mut again = publish("t", payload, QoS::ExactlyOnce, id);
    again.dup = true;
    again
}

/// The publisher's node did not hear back from the owner (which may have stored the message or
/// not): the 3.1.1 publisher is closed unacknowledged and sends the PUBLISH again (DUP = 1).
/// The re-send goes under the first identity, so that an owner that did store it drops the
/// copy; a PUBLISH without DUP under that packet id later is a new message.
#[test]
fn a_qos2_publish_resent_after_an_unconfirmed_forward_keeps_its_identity() {
    let mut a = node(1);
    far_subscriber(&mut a);
    let publisher = a.connect_ok(v3("pub", false));
    let (token, first) =
        forward_of(&a.publish(publisher, publish("t", b"m1", QoS::ExactlyOnce, 1)));
    assert!(first.is_some());
    let out = a.event(Event::ForwardDone {
        token,
        delivered: false,
        node: NodeId(2),
    });
    assert!(out.closed(publisher), "3.1.1 has no failure PUBREC");

    let publisher = a.connect_ok(v3("pub", false));
    let (token, second) = forward_of(&a.publish(publisher, resent(b"m1", 1)));
    assert_eq!(second, first, "the same message, under the same identity");
    let done = a.event(Event::ForwardDone {
        token,
        delivered: true,
        node: NodeId(2),
    });
    assert!(matches!(done.only(publisher), Packet::PubRec(_)));
    a.pubrel(publisher, pid(1));

    let (_, third) = forward_of(&a.publish(publisher, publish("t", b"m2", QoS::ExactlyOnce, 1)));
    assert_ne!(third, first, "a new message under a reused packet id");
}

/// The same, with the publisher's session moving to node 3 while the forward is in doubt: the
/// identity goes with the session, and the re-send there is routed under it.
#[test]
fn the_identity_of_a_qos2_publish_in_doubt_moves_with_the_publishers_session() {
    let mut a = node(1);
    far_subscriber(&mut a);
    let publisher = a.connect_ok(v3("pub", false));
    let (_, first) = forward_of(&a.publish(publisher, publish("t", b"m1", QoS::ExactlyOnce, 1)));
    a.lose(publisher);

    let claim = || {
        Event::Cluster(ClusterEvent::Owner {
            client: client("pub"),
            owner: NodeId(3),
            epoch: Epoch(2),
            kept: true,
            moved_from: None,
            subscriptions: vec![],
        })
    };
    a.event(claim());
    let mut c = node(3);
    far_subscriber(&mut c);
    c.event(claim());
    c.event(Event::ImportBegin {
        client: client("pub"),
    });
    let export = a
        .broker
        .export_session(&client("pub"), Epoch(2))
        .unwrap()
        .unwrap();
    assert!(
        export.incoming_qos2.is_empty(),
        "not known to be stored everywhere: a re-send is routed again"
    );
    assert_eq!(export.qos2_retry.len(), 1);
    c.event(Event::ImportState {
        client: client("pub"),
        export: Box::new(export),
    });
    c.event(Event::ImportDone {
        client: client("pub"),
    });
    let (conn, _) = c.connect_as(v3("pub", false), 2);
    let (_, second) = forward_of(&c.publish(conn, resent(b"m1", 1)));
    assert_eq!(second, first);
}

/// The publisher's node restarts while the forward is in doubt: the identity was written down
/// with the packet id, and the re-send after the restart is routed under it.
#[test]
fn the_identity_of_a_qos2_publish_in_doubt_survives_a_restart() {
    let mut a = node(1);
    far_subscriber(&mut a);
    let publisher = a.connect_ok(v3("pub", false));
    let (_, first) = forward_of(&a.publish(publisher, publish("t", b"m1", QoS::ExactlyOnce, 1)));
    a.restart_after(1);
    a.broker.join_cluster(NodeId(1));
    far_subscriber(&mut a);
    let (publisher, out) = a.connect(v3("pub", false));
    assert!(out.connack(publisher).session_present);
    let (_, second) = forward_of(&a.publish(publisher, resent(b"m1", 1)));
    assert_eq!(second, first);
}

/// A QoS 2 message delivered at QoS 1 (a QoS 1 subscription) is not remembered, but a second
/// copy of it (a forward held by a partition arriving after its retry) while the first still
/// waits for its PUBACK is dropped: it would go out under a new packet id with DUP = 0 while
/// the first is re-sent with DUP = 1 (simulator `5-dup`). Once acknowledged, a copy is
/// at-least-once's to deliver again.
#[test]
fn a_second_copy_of_a_message_in_the_window_is_not_sent_beside_it() {
    let mut b = node(2);
    let conn = b.connect_ok(v5("x", false, Some(600)));
    b.subscribe(conn, subscribe(1, "t", QoS::AtLeastOnce));
    let m = qos2_message(b"m1", 10);
    let first = forward(&mut b, 1, &m, false);
    let sent = first.publishes(conn);
    assert_eq!(payloads(&sent), vec!["m1"]);
    assert_eq!(sent[0].qos, QoS::AtLeastOnce);

    let second = forward(&mut b, 2, &m, true);
    assert!(
        second.publishes(conn).is_empty(),
        "still in flight: not again"
    );
    assert_eq!(b.broker.stats().dropped_total(DropReason::Duplicate), 1);

    b.puback(conn, sent[0].packet_id.unwrap());
    let third = forward(&mut b, 3, &m, true);
    assert_eq!(payloads(&third.publishes(conn)), vec!["m1"]);
}

/// Simulator seed 2268: a forward held up by a partition arrived after its retry. The retry's
/// copy had gone out (DUP = 1) and left this session's window (here: acknowledged; in the
/// seed, in a copy of the session on a node that then crashed), so the first attempt went out
/// as new, DUP = 0, to a client that had it. A second copy of a forward with an identity
/// goes out with DUP = 1, however the session moved meanwhile.
#[test]
fn the_first_attempt_of_a_forward_arriving_after_its_retry_is_a_possible_redelivery() {
    let mut b = node(2);
    let x = b.connect_ok(v5("x", false, Some(600)));
    b.subscribe(x, subscribe(1, "t", QoS::AtLeastOnce));
    let m1 = qos2_message(b"m1", 1);
    let out = forward(&mut b, 1, &m1, true);
    let sent = out.publishes(x);
    assert!(sent[0].dup, "a retry might be a re-delivery");
    b.puback(x, sent[0].packet_id.unwrap());
    let out = forward(&mut b, 2, &m1, false);
    let sent = out.publishes(x);
    assert_eq!(payloads(&sent), vec!["m1"], "QoS 1: at least once");
    assert!(sent[0].dup, "the first attempt, late, is a second copy");
}

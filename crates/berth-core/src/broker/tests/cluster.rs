//! The broker as a cluster node: remote subscriptions, forwarding, PUBACK waiting for owners in
//! PUBLISH order, forwarded deliveries by the owner's own subscriptions, and a session moving
//! between two brokers (export → import → release) with its backlog in order.

use std::sync::Arc;

use super::*;
use crate::cluster::{ClusterEvent, Forwarded, SessionExport};
use crate::ids::{Epoch, NodeId};
use crate::message::Message;
use crate::store::SubscriptionRecord;

fn node(id: u64) -> Harness {
    let mut h = Harness::new();
    h.broker.join_cluster(NodeId(id));
    h
}

fn record(qos: QoS) -> SubscriptionRecord {
    SubscriptionRecord {
        options: SubscriptionOptions::new(qos),
        subscription_id: None,
    }
}

fn remote_sub(h: &mut Harness, client_id: &str, owner: u64, filter_text: &str) {
    h.event(Event::Cluster(ClusterEvent::Subscribed {
        client: client(client_id),
        owner: NodeId(owner),
        subscriptions: vec![(filter(filter_text), record(QoS::AtLeastOnce))],
    }));
}

pub(super) fn forwards(out: &Out) -> Vec<(u64, Option<u64>, Vec<String>, String)> {
    out.actions
        .iter()
        .filter_map(|a| match a {
            Action::Forward {
                node,
                token,
                message,
                clients,
                ..
            } => Some((
                node.0,
                *token,
                clients.iter().map(|c| c.as_str().to_string()).collect(),
                String::from_utf8_lossy(&message.payload).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

pub(super) fn pubacks(out: &Out, conn: ConnId) -> Vec<(u16, berth_codec::PubAckReasonCode)> {
    out.to(conn)
        .into_iter()
        .filter_map(|p| match p {
            Packet::PubAck(ack) => Some((ack.packet_id.get(), ack.reason)),
            _ => None,
        })
        .collect()
}

pub(super) fn message(topic_name: &str, payload: &'static [u8]) -> Arc<Message> {
    Arc::new(Message {
        topic: topic(topic_name),
        payload: Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
        expires_at: None,
        received_at: None,
        id: None,
    })
}

#[test]
fn a_match_on_another_nodes_session_is_forwarded_and_the_puback_waits_for_its_owner() {
    let mut h = node(1);
    remote_sub(&mut h, "far", 2, "t/#");
    let publisher = h.connect_ok(v3("pub", true));
    let out = h.publish(publisher, publish("t/1", b"m1", QoS::AtLeastOnce, 7));
    let sent = forwards(&out);
    assert_eq!(sent.len(), 1);
    let (to, token, clients, payload) = &sent[0];
    assert_eq!(
        (*to, clients.clone(), payload.as_str()),
        (2, vec!["far".to_string()], "m1")
    );
    assert!(
        pubacks(&out, publisher).is_empty(),
        "no PUBACK before the owner stored it"
    );

    let out = h.event(Event::ForwardDone {
        token: token.unwrap(),
        delivered: true,
        node: NodeId(2),
    });
    assert_eq!(
        pubacks(&out, publisher),
        vec![(7, berth_codec::PubAckReasonCode::Success)]
    );
}

#[test]
fn pubacks_keep_publish_order_when_an_earlier_one_waits_for_another_node() {
    let mut h = node(1);
    remote_sub(&mut h, "far", 2, "remote/#");
    let publisher = h.connect_ok(v3("pub", true));
    let first = h.publish(publisher, publish("remote/a", b"1", QoS::AtLeastOnce, 1));
    let token = forwards(&first)[0].1.unwrap();
    // Matches nobody elsewhere: would be acknowledged at once, but must not overtake #1.
    let second = h.publish(publisher, publish("local/b", b"2", QoS::AtLeastOnce, 2));
    assert!(pubacks(&second, publisher).is_empty());
    let done = h.event(Event::ForwardDone {
        token,
        delivered: true,
        node: NodeId(2),
    });
    let ids: Vec<u16> = pubacks(&done, publisher)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, vec![1, 2]);
}

#[test]
fn an_unreachable_owner_fails_the_v5_puback_and_closes_a_v3_publisher_unacknowledged() {
    let mut h = node(1);
    remote_sub(&mut h, "far", 2, "t");
    let v5_pub = h.connect_ok(v5("p5", true, None));
    let out = h.publish(v5_pub, publish("t", b"x", QoS::AtLeastOnce, 3));
    let token = forwards(&out)[0].1.unwrap();
    let out = h.event(Event::ForwardDone {
        token,
        delivered: false,
        node: NodeId(2),
    });
    assert_eq!(
        pubacks(&out, v5_pub),
        vec![(3, berth_codec::PubAckReasonCode::UnspecifiedError)]
    );

    let v3_pub = h.connect_ok(v3("p3", true));
    let out = h.publish(v3_pub, publish("t", b"y", QoS::AtLeastOnce, 4));
    let token = forwards(&out)[0].1.unwrap();
    let out = h.event(Event::ForwardDone {
        token,
        delivered: false,
        node: NodeId(2),
    });
    assert!(pubacks(&out, v3_pub).is_empty());
    assert!(out.closed(v3_pub));
}

#[test]
fn qos0_and_local_matches_need_no_owner_acknowledgement() {
    let mut h = node(1);
    remote_sub(&mut h, "far", 2, "t");
    let sub = h.connect_ok(v3("near", true));
    h.subscribe(sub, subscribe(1, "t", QoS::AtLeastOnce));
    let publisher = h.connect_ok(v3("pub", true));
    let out = h.publish(publisher, publish("t", b"q0", QoS::AtMostOnce, 0));
    assert_eq!(forwards(&out)[0].1, None, "QoS 0 forwards carry no token");
    assert_eq!(payloads(&out.publishes(sub)), vec!["q0"]);
}

#[test]
fn a_forwarded_message_is_delivered_by_the_owners_own_subscriptions_and_acknowledged() {
    let mut h = node(2);
    let sub = h.connect_ok(v5("far", false, Some(600)));
    h.subscribe(sub, subscribe(1, "t/+", QoS::AtLeastOnce));
    let out = h.event(Event::Forwarded {
        token: 9,
        messages: vec![
            Forwarded {
                message: message("t/1", b"hello"),
                clients: vec![client("far")],
                publisher: None,
                retried: false,
            },
            Forwarded {
                // The owner's subscriptions no longer match: nothing is delivered.
                message: message("other", b"nope"),
                clients: vec![client("far")],
                publisher: None,
                retried: false,
            },
            Forwarded {
                message: message("t/2", b"lost?"),
                clients: vec![client("unknown")],
                publisher: None,
                retried: false,
            },
        ],
    });
    assert_eq!(payloads(&out.publishes(sub)), vec!["hello"]);
    let accepted: Vec<_> = out
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::ForwardAccepted { token, not_owned } => Some((*token, not_owned.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(accepted, vec![(9, vec![client("unknown")])]);
}

#[test]
fn a_session_claimed_elsewhere_is_disconnected_with_0x8e_and_routes_to_its_new_owner() {
    let mut h = node(1);
    let conn = h.connect_ok(v5("x", false, Some(600)));
    h.subscribe(conn, subscribe(1, "t", QoS::AtLeastOnce));
    let out = h.event(Event::Cluster(ClusterEvent::Owner {
        client: client("x"),
        owner: NodeId(2),
        epoch: Epoch(2),
        kept: true,
        moved_from: None,
        subscriptions: vec![(filter("t"), record(QoS::AtLeastOnce))],
    }));
    assert_eq!(
        out.disconnect_reason(conn),
        Some(DisconnectReasonCode::SessionTakenOver)
    );
    assert!(out.closed(conn));
    let publisher = h.connect_ok(v3("pub", true));
    let out = h.publish(publisher, publish("t", b"after", QoS::AtLeastOnce, 1));
    let sent = forwards(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0, sent[0].2.clone()), (2, vec!["x".to_string()]));
}

#[test]
fn clean_start_on_another_node_ends_the_local_copy() {
    let mut h = node(1);
    let conn = h.connect_ok(v5("x", false, Some(600)));
    h.subscribe(conn, subscribe(1, "t", QoS::AtLeastOnce));
    h.lose(conn);
    h.event(Event::Cluster(ClusterEvent::Owner {
        client: client("x"),
        owner: NodeId(2),
        epoch: Epoch(2),
        kept: false,
        moved_from: None,
        subscriptions: vec![],
    }));
    assert!(h.stored_session("x").is_none());
    let publisher = h.connect_ok(v3("pub", true));
    let out = h.publish(publisher, publish("t", b"m", QoS::AtLeastOnce, 1));
    assert!(
        forwards(&out).is_empty(),
        "the discarded session routes nowhere"
    );
    assert_eq!(
        pubacks(&out, publisher),
        vec![(1, berth_codec::PubAckReasonCode::NoMatchingSubscribers)]
    );
}

/// Old owner A (node 1) → new owner B (node 2): the backlog, the in-flight message and the
/// subscriptions arrive; forwards that reach B during the import wait; A deletes on release.
#[test]
fn a_session_moves_between_nodes_with_its_backlog_in_order() {
    let mut a = node(1);
    let mut b = node(2);
    let conn = a.connect_ok(v3("x", false));
    a.subscribe(conn, subscribe(1, "t", QoS::AtLeastOnce));
    let publisher = a.connect_ok(v3("pub", true));
    a.publish(publisher, publish("t", b"m1", QoS::AtLeastOnce, 1));
    a.lose(conn);
    for (i, payload) in [b"m2", b"m3", b"m4"].iter().enumerate() {
        a.publish(
            publisher,
            publish("t", *payload, QoS::AtLeastOnce, 10 + i as u16),
        );
    }

    // The claim by node 2 commits: every node applies it.
    let owner = ClusterEvent::Owner {
        client: client("x"),
        owner: NodeId(2),
        epoch: Epoch(2),
        kept: true,
        moved_from: None,
        subscriptions: vec![(filter("t"), record(QoS::AtLeastOnce))],
    };
    a.event(Event::Cluster(owner.clone()));
    b.event(Event::Cluster(owner));
    b.event(Event::ImportBegin {
        client: client("x"),
    });

    // A forward reaching B before the import ends is kept there for after the backlog, and
    // acknowledged at once (its sender does not wait for the old owner).
    let early = b.event(Event::Forwarded {
        token: 1,
        messages: vec![Forwarded {
            message: message("t", b"m5"),
            clients: vec![client("x")],
            publisher: None,
            retried: false,
        }],
    });
    assert!(early.actions.iter().any(
        |a| matches!(a, Action::ForwardAccepted { token: 1, not_owned } if not_owned.is_empty())
    ));

    let export: SessionExport = a
        .broker
        .export_session(&client("x"), Epoch(2))
        .unwrap()
        .unwrap();
    assert_eq!(export.inflight.len(), 1, "m1 was in flight");
    let (page, next) = a.broker.export_queue(&client("x"), None, 2).unwrap();
    let (rest, end) = a.broker.export_queue(&client("x"), next, 2).unwrap();
    assert_eq!(end, None);
    let mut export = export;
    export.record.epoch = Epoch(2);
    b.event(Event::ImportState {
        client: client("x"),
        export: Box::new(export),
    });
    b.event(Event::ImportQueue {
        client: client("x"),
        page,
    });
    b.event(Event::ImportQueue {
        client: client("x"),
        page: rest,
    });
    b.event(Event::ImportDone {
        client: client("x"),
    });
    a.event(Event::Release {
        client: client("x"),
        epoch: Epoch(2),
    });
    assert!(
        a.stored_session("x").is_none(),
        "the old owner deleted its copy"
    );

    let (conn, out) = b.connect(v3("x", false));
    assert!(out.connack(conn).session_present);
    let got = out.publishes(conn);
    assert_eq!(payloads(&got), vec!["m1", "m2", "m3", "m4", "m5"]);
    assert!(
        got[4].dup,
        "m5 was kept for the import: had its answer been lost, its sender would have kept a copy too"
    );
    assert!(got[0].dup, "the in-flight message is re-sent with DUP");
}

#[test]
fn a_replayed_older_claim_leaves_a_newer_local_session_alone() {
    let mut h = node(1);
    let conn = h.connect_ok(v3("x", false));
    h.subscribe(conn, subscribe(1, "t", QoS::AtLeastOnce));
    // The local session is at epoch 1 (its first claim); an older claim elsewhere is replayed.
    let out = h.event(Event::Cluster(ClusterEvent::Owner {
        client: client("x"),
        owner: NodeId(2),
        epoch: Epoch(1),
        kept: false,
        moved_from: None,
        subscriptions: vec![],
    }));
    assert!(!out.closed(conn));
    assert!(h.stored_session("x").is_some());
}

/// After a restart, a will that comes due waits until the node has caught up with the log:
/// the leader may have published it while this node was down.
#[test]
fn a_will_due_before_catching_up_waits_and_is_dropped_if_the_leader_published_it() {
    for leader_fired in [true, false] {
        let mut h = node(1);
        let conn = h.connect_ok(with_will(
            v5("x", false, Some(600)),
            will("wills/x", b"bye", Some(5)),
        ));
        h.subscribe(conn, subscribe(1, "unrelated", QoS::AtLeastOnce));
        // The node dies with the client connected and comes back 10 s later.
        h.restart_after(10);
        h.broker.join_cluster(NodeId(1));
        let watcher = h.connect_ok(v3("watcher", true));
        h.subscribe(watcher, subscribe(1, "wills/#", QoS::AtLeastOnce));
        let out = h.tick_after(6);
        assert!(
            out.publishes(watcher).is_empty(),
            "parked while not caught up"
        );
        if leader_fired {
            h.event(Event::Cluster(ClusterEvent::WillFired {
                client: client("x"),
                epoch: Epoch(1),
            }));
        }
        let out = h.event(Event::Cluster(ClusterEvent::CaughtUp));
        let expected: Vec<String> = if leader_fired {
            vec![]
        } else {
            vec!["bye".into()]
        };
        assert_eq!(
            payloads(&out.publishes(watcher)),
            expected,
            "leader fired: {leader_fired}"
        );
    }
}

#[test]
fn an_expired_session_is_gone_at_connect_even_before_catching_up() {
    let mut h = node(1);
    let conn = h.connect_ok(v5("short", false, Some(2)));
    h.lose(conn);
    h.now = UnixMillis(h.now.0 + 3_000);
    let (conn, out) = h.connect(v5("short", false, Some(2)));
    assert!(!out.connack(conn).session_present);
}

/// On the new owner, a message published locally while the session is still being imported
/// is kept (durably) and queued after the backlog; its publisher does not wait for the import.
#[test]
fn a_local_publish_during_an_import_waits_for_the_backlog() {
    let mut b = node(2);
    b.event(Event::Cluster(ClusterEvent::Owner {
        client: client("x"),
        owner: NodeId(2),
        epoch: Epoch(2),
        kept: true,
        moved_from: None,
        subscriptions: vec![(filter("t"), record(QoS::AtLeastOnce))],
    }));
    // The claim's connection starts the takeover.
    b.event(Event::ImportBegin {
        client: client("x"),
    });
    let publisher = b.connect_ok(v3("pub", true));
    let out = b.publish(publisher, publish("t", b"new", QoS::AtLeastOnce, 1));
    assert_eq!(
        pubacks(&out, publisher),
        vec![(1, berth_codec::PubAckReasonCode::Success)],
        "kept here: acknowledged without waiting for the old owner"
    );
    assert_eq!(b.loaded().handoff.len(), 1, "kept on disk");

    let mut a = node(1);
    let conn = a.connect_ok(v3("x", false));
    a.subscribe(conn, subscribe(1, "t", QoS::AtLeastOnce));
    a.lose(conn);
    let p = a.connect_ok(v3("p", true));
    a.publish(p, publish("t", b"old", QoS::AtLeastOnce, 1));
    a.event(Event::Cluster(ClusterEvent::Owner {
        client: client("x"),
        owner: NodeId(2),
        epoch: Epoch(2),
        kept: true,
        moved_from: None,
        subscriptions: vec![(filter("t"), record(QoS::AtLeastOnce))],
    }));
    let mut export = a
        .broker
        .export_session(&client("x"), Epoch(2))
        .unwrap()
        .unwrap();
    assert!(
        a.broker
            .export_session(&client("x"), Epoch(1))
            .unwrap()
            .is_none(),
        "fenced"
    );
    export.record.epoch = Epoch(2);
    let (page, _) = a.broker.export_queue(&client("x"), None, 10).unwrap();
    b.event(Event::ImportState {
        client: client("x"),
        export: Box::new(export),
    });
    b.event(Event::ImportQueue {
        client: client("x"),
        page,
    });
    b.event(Event::ImportDone {
        client: client("x"),
    });
    assert!(b.loaded().handoff.is_empty(), "in the session's queue now");
    let (x, out) = b.connect(v3("x", false));
    assert!(out.connack(x).session_present);
    assert_eq!(payloads(&out.publishes(x)), vec!["old", "new"]);
}

#[test]
fn a_qos2_publish_whose_owner_failed_is_routed_again_when_re_sent() {
    let mut h = node(1);
    remote_sub(&mut h, "far", 2, "t");
    let publisher = h.connect_ok(v5("p5", true, None));
    let out = h.publish(publisher, publish("t", b"x", QoS::ExactlyOnce, 9));
    let token = forwards(&out)[0].1.unwrap();
    let out = h.event(Event::ForwardDone {
        token,
        delivered: false,
        node: NodeId(2),
    });
    let recs: Vec<_> = out
        .to(publisher)
        .into_iter()
        .filter_map(|p| match p {
            Packet::PubRec(rec) => Some(rec.reason),
            _ => None,
        })
        .collect();
    assert_eq!(recs, vec![berth_codec::PubAckReasonCode::UnspecifiedError]);
    // The client tries again with the same packet id: not a duplicate any more.
    let again = h.publish(publisher, publish("t", b"x", QoS::ExactlyOnce, 9));
    assert_eq!(forwards(&again).len(), 1, "routed again");
}

/// A node declared down while it still serves clients (stalled, or cut off for a while)
/// asserts its connected sessions again; offline ones, and other nodes' declarations, change
/// nothing (issue 11).
#[test]
fn a_node_declared_down_while_alive_reasserts_its_connected_sessions() {
    let mut h = node(1);
    h.event(Event::Cluster(ClusterEvent::CaughtUp));
    let conn = h.connect_ok(v5("on", false, Some(60)));
    h.subscribe(conn, subscribe(1, "t/#", QoS::AtLeastOnce));
    let gone = h.connect_ok(v3("off", false));
    h.lose(gone);

    let other = h.event(Event::Cluster(ClusterEvent::NodeDown { node: NodeId(2) }));
    assert!(
        !other
            .actions
            .iter()
            .any(|a| matches!(a, Action::Replicate(_)))
    );

    let out = h.event(Event::Cluster(ClusterEvent::NodeDown { node: NodeId(1) }));
    let reasserted: Vec<_> = out
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Replicate(crate::cluster::Replicate::Reassert {
                client,
                subscriptions,
                expiry,
                ..
            }) => Some((client.as_str().to_string(), subscriptions.len(), *expiry)),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasserted,
        vec![("on".to_string(), 1, crate::store::SessionExpiry::After(60))]
    );
    assert!(!out.closed(conn), "the client stays connected");
}

/// A QoS 2 PUBLISH whose other owner has not confirmed it when this node crashes is not known
/// to be received: after the restart, the client's re-sent PUBLISH is routed again (at worst a
/// duplicate), not answered as a duplicate of a message that never reached that owner.
#[test]
fn a_qos2_publish_in_doubt_at_a_crash_is_routed_again_when_re_sent() {
    let mut h = node(1);
    remote_sub(&mut h, "far", 2, "t");
    let publisher = h.connect_ok(v3("pub", false));
    let mut first = publish("t", b"m", QoS::ExactlyOnce, 1);
    let out = h.publish(publisher, first.clone());
    assert_eq!(forwards(&out).len(), 1);
    assert!(out.to(publisher).is_empty(), "PUBREC waits for node 2");

    h.restart_after(1);
    h.broker.join_cluster(NodeId(1));
    remote_sub(&mut h, "far", 2, "t");
    let publisher = h.connect_ok(v3("pub", false));
    first.dup = true;
    let out = h.publish(publisher, first);
    assert_eq!(
        forwards(&out).len(),
        1,
        "the re-sent PUBLISH goes to node 2 again"
    );
}

/// Session `x` (subscribed to `t`), owned by node 1, is claimed by node 2 (this node), which
/// starts pulling it.
fn claim_and_import_x(b: &mut Harness) {
    b.event(Event::Cluster(ClusterEvent::Owner {
        client: client("x"),
        owner: NodeId(1),
        epoch: Epoch(1),
        kept: false,
        moved_from: None,
        subscriptions: vec![(filter("t"), record(QoS::AtLeastOnce))],
    }));
    b.event(Event::Cluster(ClusterEvent::Owner {
        client: client("x"),
        owner: NodeId(2),
        epoch: Epoch(2),
        kept: true,
        moved_from: None,
        subscriptions: vec![(filter("t"), record(QoS::AtLeastOnce))],
    }));
    b.event(Event::ImportBegin {
        client: client("x"),
    });
}

/// A forward batch naming a session this node imports and one it runs: only the imported
/// session's message is kept for later; the other is delivered at once, so that a later batch
/// for it cannot overtake it (simulator seed 630: a message held behind another session's
/// import was delivered after newer ones). The batch is acknowledged at once.
#[test]
fn only_the_messages_for_a_session_being_imported_wait_in_a_forward_batch() {
    let mut b = node(2);
    let y = b.connect_ok(v3("y", false));
    b.subscribe(y, subscribe(1, "t", QoS::AtLeastOnce));
    claim_and_import_x(&mut b);
    let first = b.event(Event::Forwarded {
        token: 1,
        messages: vec![Forwarded {
            message: message("t", b"m1"),
            clients: vec![client("x"), client("y")],
            publisher: None,
            retried: false,
        }],
    });
    assert_eq!(
        payloads(&first.publishes(y)),
        vec!["m1"],
        "y does not wait for x"
    );
    assert!(
        first.actions.iter().any(
            |a| matches!(a, Action::ForwardAccepted { token: 1, not_owned } if not_owned.is_empty())
        ),
        "x's part is kept here (durably): the batch is stored"
    );
    let second = b.event(Event::Forwarded {
        token: 2,
        messages: vec![Forwarded {
            message: message("t", b"m2"),
            clients: vec![client("y")],
            publisher: None,
            retried: false,
        }],
    });
    assert_eq!(payloads(&second.publishes(y)), vec!["m2"]);
    b.event(Event::ImportState {
        client: client("x"),
        export: Box::new(SessionExport {
            record: crate::store::SessionRecord {
                epoch: Epoch(2),
                protocol: berth_codec::ProtocolVersion::V3_1_1,
                expiry: crate::store::SessionExpiry::After(60),
                expires_at: None,
                will: None,
                will_due_at: None,
                qos2_state_elsewhere: false,
                incoming_qos2_elsewhere: false,
                qos2_doubt: Default::default(),
                landed: Epoch(2),
            },
            subscriptions: vec![(filter("t"), record(QoS::AtLeastOnce))],
            inflight: Vec::new(),
            incoming_qos2: Vec::new(),
            queued: 0,
            seen: Vec::new(),
            qos2_retry: Vec::new(),
            served: None,
        }),
    });
    b.event(Event::ImportDone {
        client: client("x"),
    });
    let (conn, out) = b.connect_as(v3("x", false), 2);
    assert_eq!(payloads(&out.publishes(conn)), vec!["m1"]);
}

/// A forward its node sent again (no answer to the first attempt) may be stored here already:
/// what is delivered of it carries DUP = 1, so that a client that got the first attempt knows
/// this one "might be a re-delivery" [MQTT-3.3.1-1] (simulator seed 739).
#[test]
fn a_retried_forward_is_delivered_with_dup_set() {
    let mut b = node(2);
    let x = b.connect_ok(v3("x", false));
    b.subscribe(x, subscribe(1, "t", QoS::AtLeastOnce));
    let out = b.event(Event::Forwarded {
        token: 1,
        messages: vec![Forwarded {
            message: message("t", b"m1"),
            clients: vec![client("x")],
            publisher: None,
            retried: false,
        }],
    });
    assert!(!out.publishes(x)[0].dup);
    let out = b.event(Event::Forwarded {
        token: 2,
        messages: vec![Forwarded {
            message: message("t", b"m1"),
            clients: vec![client("x")],
            publisher: None,
            retried: true,
        }],
    });
    assert!(
        out.publishes(x)[0].dup,
        "sent again: it might be a re-delivery"
    );
}

/// A forward kept here for a session's import, when another node claims the session: it stays
/// until the import is done and then joins the copy's queue, behind the backlog, and goes with
/// the copy to the new owner (whose own kept messages, newer, follow that backlog there). A
/// forward arriving after the claim is answered "not owned" (its sender sends it to the new
/// owner). Sent on by itself, the kept one arrived behind newer messages that took the direct
/// way (simulator seeds 739, 14).
#[test]
fn a_forward_kept_for_an_import_moves_on_with_the_copy_when_the_session_is_claimed_elsewhere() {
    let mut b = node(2);
    claim_and_import_x(&mut b);
    let forward = |token, payload| Event::Forwarded {
        token,
        messages: vec![Forwarded {
            message: message("t", payload),
            clients: vec![client("x")],
            publisher: None,
            retried: false,
        }],
    };
    let accepted = |out: &Out, token: u64| {
        out.actions.iter().find_map(|a| match a {
            Action::ForwardAccepted {
                token: t,
                not_owned,
            } if *t == token => Some(not_owned.clone()),
            _ => None,
        })
    };
    let early = b.event(forward(1, b"m1"));
    assert_eq!(
        accepted(&early, 1),
        Some(vec![]),
        "kept here for the import"
    );

    let moved = b.event(Event::Cluster(ClusterEvent::Owner {
        client: client("x"),
        owner: NodeId(3),
        epoch: Epoch(3),
        kept: true,
        moved_from: None,
        subscriptions: vec![(filter("t"), record(QoS::AtLeastOnce))],
    }));
    assert!(forwards(&moved).is_empty(), "m1 waits for the backlog here");
    let late = b.event(forward(2, b"m2"));
    assert_eq!(accepted(&late, 2), Some(vec![client("x")]));

    let mut state = super::late_copy(Vec::new(), Vec::new(), Vec::new());
    state.record.epoch = Epoch(2);
    state.subscriptions = vec![(filter("t"), record(QoS::AtLeastOnce))];
    b.event(Event::ImportState {
        client: client("x"),
        export: state,
    });
    let done = b.event(Event::ImportDone {
        client: client("x"),
    });
    assert!(forwards(&done).is_empty(), "not sent on by itself");
    assert_eq!(b.stored_queue("x"), vec!["m1"], "in the copy that moves on");
    assert!(b.loaded().handoff.is_empty());
}

//! A backlog stranded on a node that could not be reached when its session moved: the copy
//! stays there (moving), is appended later to the session running on its new owner, and goes
//! when that session ends; a snapshot showing a newer claim hands a copy over like a log entry.

use super::*;
use crate::cluster::{ClusterEvent, Forwarded, RemoteSession, SessionExport};
use crate::ids::Epoch;
use crate::message::Message;
use crate::store::SubscriptionRecord;
use std::sync::Arc;

fn node(id: u64) -> Harness {
    let mut h = Harness::new();
    h.broker.join_cluster(id);
    h
}

fn record() -> SubscriptionRecord {
    SubscriptionRecord {
        options: SubscriptionOptions::new(QoS::AtLeastOnce),
        subscription_id: None,
    }
}

fn claim(owner: u64, epoch: u64) -> Event {
    Event::Cluster(ClusterEvent::Owner {
        client: client("x"),
        owner,
        epoch: Epoch(epoch),
        kept: true,
        subscriptions: vec![(filter("t"), record())],
    })
}

/// Node 1 holds session `x` (subscribed to `t`) offline with m1 in flight and m2, m3 queued.
fn holder_with_backlog() -> Harness {
    let mut a = node(1);
    let conn = a.connect_ok(v3("x", false));
    a.subscribe(conn, subscribe(1, "t", QoS::AtLeastOnce));
    let publisher = a.connect_ok(v3("pub", true));
    a.publish(publisher, publish("t", b"m1", QoS::AtLeastOnce, 1));
    a.lose(conn);
    a.publish(publisher, publish("t", b"m2", QoS::AtLeastOnce, 2));
    a.publish(publisher, publish("t", b"m3", QoS::AtLeastOnce, 3));
    a
}

/// Node 2 takes `x` over at epoch 2 without reaching node 1: only the registry's state.
fn owner_without_backlog(a: &mut Harness) -> Harness {
    let mut b = node(2);
    a.event(claim(2, 2));
    b.event(claim(2, 2));
    b.event(Event::ImportBegin {
        client: client("x"),
    });
    let mut fallback: SessionExport = a
        .broker
        .export_session(&client("x"), Epoch(2))
        .unwrap()
        .unwrap();
    fallback.record.epoch = Epoch(2);
    fallback.inflight.clear();
    fallback.queued = 0;
    b.event(Event::ImportState {
        client: client("x"),
        export: Box::new(fallback),
    });
    b.event(Event::ImportDone {
        client: client("x"),
    });
    b
}

fn forward(b: &mut Harness, token: u64, payload: &'static [u8]) -> Out {
    b.event(Event::Forwarded {
        token,
        messages: vec![Forwarded {
            message: Arc::new(Message {
                topic: topic("t"),
                payload: Bytes::from_static(payload),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: PublishProperties::default(),
                expires_at: None,
            }),
            clients: vec![client("x")],
            publisher: None,
        }],
    })
}

#[test]
fn a_stranded_backlog_is_appended_to_the_session_on_its_new_owner_and_the_copy_released() {
    let mut a = holder_with_backlog();
    let mut b = owner_without_backlog(&mut a);
    let (conn, out) = b.connect_as(v3("x", false), 2);
    assert!(out.connack(conn).session_present);
    let now = forward(&mut b, 1, b"m4");
    assert_eq!(payloads(&now.publishes(conn)), vec!["m4"]);

    // The holder, back, still has its copy and knows whose it is.
    assert_eq!(a.broker.moving_sessions(), vec![(client("x"), 2, Epoch(2))]);
    assert!(b.broker.accepts_late_backlog(&client("x"), Epoch(2)));
    assert!(!b.broker.accepts_late_backlog(&client("x"), Epoch(3)));

    // The owner pulls it: the unacknowledged message first, then the queue, after m4.
    let export = a
        .broker
        .export_session(&client("x"), Epoch(2))
        .unwrap()
        .unwrap();
    let (page, next) = a.broker.export_queue(&client("x"), None, 10).unwrap();
    assert_eq!(next, None);
    let first = b.event(Event::ImportLate {
        client: client("x"),
        epoch: Epoch(2),
        page: export.unacknowledged(),
    });
    let rest = b.event(Event::ImportLate {
        client: client("x"),
        epoch: Epoch(2),
        page,
    });
    let mut late = payloads(&first.publishes(conn));
    late.extend(payloads(&rest.publishes(conn)));
    assert_eq!(late, vec!["m1", "m2", "m3"]);

    a.event(Event::Release {
        client: client("x"),
    });
    assert!(a.stored_session("x").is_none(), "the copy is deleted");
    assert!(a.broker.moving_sessions().is_empty());
}

#[test]
fn a_late_backlog_for_another_epoch_is_not_stored() {
    let mut a = holder_with_backlog();
    let mut b = owner_without_backlog(&mut a);
    let export = a
        .broker
        .export_session(&client("x"), Epoch(2))
        .unwrap()
        .unwrap();
    b.event(Event::ImportLate {
        client: client("x"),
        epoch: Epoch(1),
        page: export.unacknowledged(),
    });
    assert!(b.stored_queue("x").is_empty());
    b.event(Event::ImportLate {
        client: client("x"),
        epoch: Epoch(2),
        page: export.unacknowledged(),
    });
    assert_eq!(b.stored_queue("x"), vec!["m1"]);
}

#[test]
fn the_owner_does_not_take_a_late_backlog_while_the_session_is_arriving() {
    let mut a = holder_with_backlog();
    let mut b = node(2);
    a.event(claim(2, 2));
    b.event(claim(2, 2));
    b.event(Event::ImportBegin {
        client: client("x"),
    });
    assert!(!b.broker.accepts_late_backlog(&client("x"), Epoch(2)));
}

#[test]
fn a_copy_is_deleted_when_its_session_ends_on_the_new_owner() {
    let mut a = holder_with_backlog();
    a.event(claim(2, 2));
    assert_eq!(a.broker.moving_sessions().len(), 1);
    // An older epoch's end is not this copy's.
    a.event(Event::Cluster(ClusterEvent::Dropped {
        client: client("x"),
        epoch: Epoch(1),
    }));
    assert!(a.stored_session("x").is_some());
    a.event(Event::Cluster(ClusterEvent::Dropped {
        client: client("x"),
        epoch: Epoch(2),
    }));
    assert!(a.stored_session("x").is_none());
    assert!(a.broker.moving_sessions().is_empty());
}

#[test]
fn a_snapshot_with_a_newer_claim_hands_the_local_copy_over() {
    let mut a = holder_with_backlog();
    a.event(Event::Cluster(ClusterEvent::Reset {
        sessions: vec![RemoteSession {
            client: client("x"),
            owner: 2,
            epoch: Epoch(2),
            subscriptions: vec![(filter("t"), record())],
        }],
    }));
    assert_eq!(a.broker.moving_sessions(), vec![(client("x"), 2, Epoch(2))]);
    let export = a.broker.export_session(&client("x"), Epoch(2)).unwrap();
    assert!(export.is_some_and(|e| e.queued == 2 && e.inflight.len() == 1));
}

#[test]
fn a_snapshot_without_the_session_deletes_a_copy_that_was_moving() {
    let mut a = holder_with_backlog();
    a.event(claim(2, 2));
    a.event(Event::Cluster(ClusterEvent::Reset { sessions: vec![] }));
    assert!(a.stored_session("x").is_none());
    // A session the registry never knew (from before the cluster) stays.
    let mut c = holder_with_backlog();
    c.event(Event::Cluster(ClusterEvent::Reset { sessions: vec![] }));
    assert!(c.stored_session("x").is_some());
}

//! What an operator does to a session through the admin API (`Broker::admin`): a kicked
//! connection ends as any connection the server closes (MQTT 5: DISCONNECT 0x98) and its
//! session stays; a discarded session ends as an expired one does; an inspection shows what
//! only the owner knows; a purge empties the queue and nothing else.

use std::num::NonZeroU16;

use berth_codec::QoS;

use super::*;
use crate::broker::{AdminAnswer, AdminError, AdminRequest, SessionView};
use crate::stats::{CloseCause, DropReason};

/// Runs `request` about `id` as the server does (then the group's commit) and returns the
/// answer with the actions it produced.
fn admin(
    h: &mut Harness,
    id: &str,
    request: AdminRequest,
) -> (Result<AdminAnswer, AdminError>, Out) {
    let answer = h.broker.admin(h.now, &client(id), request);
    h.broker.commit_pending().unwrap();
    let out = Out {
        actions: h.broker.take_actions(),
    };
    (answer, out)
}

fn inspect(h: &mut Harness, id: &str, limit: usize) -> SessionView {
    match admin(h, id, AdminRequest::Inspect { limit }).0 {
        Ok(AdminAnswer::Inspected(view)) => view,
        other => panic!("expected a session view, got {other:?}"),
    }
}

/// A persistent MQTT 5 session subscribed to `cmd/{id}` at QoS 1, and a connected sender.
fn device_and_sender(h: &mut Harness, id: &str) -> (ConnId, ConnId) {
    let dev = h.connect_ok(v5(id, false, Some(600)));
    h.subscribe(dev, subscribe(1, &format!("cmd/{id}"), QoS::AtLeastOnce));
    let sender = h.connect_ok(v5("sender", true, None));
    (dev, sender)
}

#[test]
fn a_kicked_v5_client_hears_administrative_action_and_keeps_its_session() {
    let mut h = Harness::new();
    let dev = h.connect_ok(with_will(
        v5("dev", false, Some(600)),
        will("wills/dev", b"gone", Some(30)),
    ));
    h.subscribe(dev, subscribe(1, "cmd/dev", QoS::AtLeastOnce));
    let watcher = h.connect_ok(v5("watcher", true, None));
    h.subscribe(watcher, subscribe(1, "wills/#", QoS::AtLeastOnce));

    let (answer, out) = admin(&mut h, "dev", AdminRequest::Kick);
    match answer {
        Ok(AdminAnswer::Kicked(kicked)) => {
            assert!(kicked.was_connected);
            assert!(kicked.session_kept);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        out.disconnect_reason(dev),
        Some(DisconnectReasonCode::AdministrativeAction)
    );
    assert!(out.closed(dev));
    assert!(
        out.publishes(watcher).is_empty(),
        "the will waits for its delay"
    );
    assert_eq!(h.broker.stats().closed_total(CloseCause::Kicked), 1);
    // The socket closing after the server closed it is not counted again.
    h.lose(dev);
    assert_eq!(h.broker.stats().closed_total(CloseCause::ConnectionLost), 0);

    // Not connected now: a second kick changes nothing.
    let (answer, out) = admin(&mut h, "dev", AdminRequest::Kick);
    assert!(matches!(
        answer,
        Ok(AdminAnswer::Kicked(kicked)) if !kicked.was_connected && kicked.session_kept
    ));
    assert!(out.actions.is_empty(), "{:?}", out.actions);

    let (again, out) = h.connect(v5("dev", false, Some(600)));
    assert!(out.connack(again).session_present);
    // Back within the will delay: no will.
    let out = h.tick_after(60);
    assert!(out.publishes(watcher).is_empty());
}

#[test]
fn a_kicked_v3_client_is_closed_without_a_packet() {
    let mut h = Harness::new();
    let dev = h.connect_ok(v3("dev", false));
    let (_, out) = admin(&mut h, "dev", AdminRequest::Kick);
    assert!(out.closed(dev));
    assert!(
        out.to(dev).is_empty(),
        "3.1.1 has no DISCONNECT from the server"
    );
    assert!(h.stored_session("dev").is_some());
}

#[test]
fn a_session_that_ends_with_its_connection_ends_when_kicked() {
    let mut h = Harness::new();
    let dev = h.connect_ok(v5("dev", true, None));
    let (answer, out) = admin(&mut h, "dev", AdminRequest::Kick);
    assert!(matches!(
        answer,
        Ok(AdminAnswer::Kicked(kicked)) if kicked.was_connected && !kicked.session_kept
    ));
    assert!(out.closed(dev));
    let (answer, _) = admin(&mut h, "dev", AdminRequest::Kick);
    assert_eq!(answer, Err(AdminError::NoSession));
}

#[test]
fn a_discarded_session_ends_as_an_expired_one_does() {
    let mut h = Harness::new();
    let watcher = h.connect_ok(v5("watcher", true, None));
    h.subscribe(watcher, subscribe(1, "wills/#", QoS::AtLeastOnce));
    let (dev, sender) = device_and_sender(&mut h, "dev");
    h.lose(dev);
    for (id, payload) in [(1, b"m1"), (2, b"m2")] {
        h.publish(sender, publish("cmd/dev", payload, QoS::AtLeastOnce, id));
    }
    // Back with a will and a receive maximum of 1: one message in flight, one queued.
    let mut connect = with_will(
        v5("dev", false, Some(600)),
        will("wills/dev", b"gone", Some(30)),
    );
    connect.properties.receive_maximum = NonZeroU16::new(1);
    let (dev, out) = h.connect(connect);
    assert_eq!(payloads(&out.publishes(dev)), ["m1"]);

    let (answer, out) = admin(&mut h, "dev", AdminRequest::Discard);
    assert!(
        matches!(answer, Ok(AdminAnswer::Discarded(d)) if d.was_connected && d.messages == 1),
        "{answer:?}"
    );
    assert_eq!(
        out.disconnect_reason(dev),
        Some(DisconnectReasonCode::AdministrativeAction)
    );
    assert!(out.closed(dev));
    // The will, waiting for its delay when the session ended, goes out now (as at an expiry).
    assert_eq!(payloads(&out.publishes(watcher)), ["gone"]);
    assert_eq!(h.broker.stats().closed_total(CloseCause::Kicked), 1);
    assert!(h.stored_session("dev").is_none());
    assert!(h.stored_queue("dev").is_empty());
    assert!(h.stored_inflight("dev").is_empty());
    // Its subscription went with it: nothing is queued for it any more.
    h.publish(sender, publish("cmd/dev", b"m3", QoS::AtLeastOnce, 3));
    let (answer, _) = admin(&mut h, "dev", AdminRequest::Inspect { limit: 10 });
    assert_eq!(answer, Err(AdminError::NoSession));
    let (again, out) = h.connect(v5("dev", false, Some(600)));
    assert!(!out.connack(again).session_present);
    assert!(out.publishes(again).is_empty());
}

#[test]
fn an_inspection_shows_the_queue_and_what_only_the_owner_knows() {
    let mut h = Harness::new();
    let (dev, sender) = device_and_sender(&mut h, "dev");
    let connected_at = h.now;
    let view = inspect(&mut h, "dev", 10);
    assert_eq!(view.connected_since, Some(connected_at));
    assert_eq!(
        (view.queued, view.in_flight, view.oldest_age_ms),
        (0, 0, None)
    );
    h.lose(dev);

    h.publish(sender, publish("cmd/dev", b"first", QoS::AtLeastOnce, 1));
    h.now = h.now.plus_millis(1_500);
    let mut expiring = publish("cmd/dev", b"second", QoS::AtMostOnce, 0);
    expiring.properties.message_expiry_interval = Some(60);
    h.publish(sender, expiring);
    h.publish(sender, publish("cmd/dev", b"third", QoS::AtLeastOnce, 2));
    h.now = h.now.plus_millis(500);

    let view = inspect(&mut h, "dev", 2);
    assert_eq!(view.queued, 2, "QoS 0 is not queued for an offline session");
    assert_eq!(view.connected_since, None);
    assert_eq!(view.address, None);
    assert_eq!(view.oldest_age_ms, Some(2_000));
    assert_eq!(view.messages.len(), 2);
    let first = &view.messages[0];
    assert_eq!(first.topic.as_str(), "cmd/dev");
    assert_eq!(
        (first.qos, first.retain, first.bytes),
        (QoS::AtLeastOnce, false, 5)
    );
    assert_eq!((first.age_ms, first.expires_in_ms), (Some(2_000), None));
    assert_eq!(view.messages[1].age_ms, Some(500));
    assert_eq!(
        view.queued_bytes,
        ("cmd/dev".len() * 2 + "first".len() + "third".len()) as u64
    );
    let view = inspect(&mut h, "dev", 1);
    assert_eq!(view.messages.len(), 1);
    assert_eq!(view.queued, 2);

    // Back with a receive maximum of 1: one in flight, one queued; offline again, the window
    // is counted from the store.
    let mut connect = v5("dev", false, Some(600));
    connect.properties.receive_maximum = NonZeroU16::new(1);
    let (dev, out) = h.connect(connect);
    assert_eq!(payloads(&out.publishes(dev)), ["first"]);
    h.lose(dev);
    let mut expiring = publish("cmd/dev", b"fourth", QoS::AtLeastOnce, 3);
    expiring.properties.message_expiry_interval = Some(60);
    h.publish(sender, expiring);
    h.now = h.now.plus_millis(10_000);
    let view = inspect(&mut h, "dev", 10);
    assert_eq!((view.queued, view.in_flight), (2, 1));
    assert_eq!(view.messages[1].expires_in_ms, Some(50_000));
}

#[test]
fn a_purge_empties_the_queue_and_keeps_the_session_and_its_subscriptions() {
    let mut h = Harness::new();
    let (dev, sender) = device_and_sender(&mut h, "dev");
    h.lose(dev);
    for (id, payload) in [(1, b"m1"), (2, b"m2"), (3, b"m3")] {
        h.publish(sender, publish("cmd/dev", payload, QoS::AtLeastOnce, id));
    }
    let (answer, _) = admin(&mut h, "dev", AdminRequest::Purge);
    match answer {
        Ok(AdminAnswer::Purged(purged)) => {
            assert_eq!(purged.messages, 3);
            assert_eq!(purged.bytes, 3 * ("cmd/dev".len() + 2) as u64);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.broker.stats().dropped_total(DropReason::Purged), 3);
    assert_eq!(h.broker.stats().queued_messages, 0);
    assert!(h.stored_queue("dev").is_empty());
    let view = inspect(&mut h, "dev", 10);
    assert_eq!((view.queued, view.queued_bytes), (0, 0));

    // Stays purged across a restart; the subscription stays and what comes next arrives.
    h.restart_after(1);
    let sender = h.connect_ok(v5("sender", true, None));
    h.publish(sender, publish("cmd/dev", b"m4", QoS::AtLeastOnce, 4));
    let (dev, out) = h.connect(v5("dev", false, Some(600)));
    assert!(out.connack(dev).session_present);
    assert_eq!(payloads(&out.publishes(dev)), ["m4"]);
    // Purging an empty queue is fine and counts nothing (the restarted broker counts afresh).
    let (answer, _) = admin(&mut h, "dev", AdminRequest::Purge);
    assert!(matches!(answer, Ok(AdminAnswer::Purged(p)) if p.messages == 0));
    assert_eq!(h.broker.stats().dropped_total(DropReason::Purged), 0);
}

#[test]
fn a_purge_leaves_the_messages_in_flight_to_a_connected_client() {
    for (id, expiry) in [("kept", Some(600)), ("fleeting", None)] {
        let mut h = Harness::new();
        let mut connect = v5(id, expiry.is_none(), expiry);
        connect.properties.receive_maximum = NonZeroU16::new(1);
        let dev = h.connect_ok(connect);
        h.subscribe(dev, subscribe(1, &format!("cmd/{id}"), QoS::AtLeastOnce));
        let sender = h.connect_ok(v5("sender", true, None));
        let topic_name = format!("cmd/{id}");
        let mut in_flight = None;
        for (n, payload) in [(1, b"m1"), (2, b"m2"), (3, b"m3")] {
            let mut message = publish("x", payload, QoS::AtLeastOnce, n);
            message.topic = topic(&topic_name);
            let out = h.publish(sender, message);
            in_flight = in_flight.or(out.publishes(dev).first().cloned());
        }
        let in_flight = in_flight.expect("the first message went out");

        let (answer, out) = admin(&mut h, id, AdminRequest::Purge);
        assert!(
            matches!(answer, Ok(AdminAnswer::Purged(p)) if p.messages == 2),
            "{id}"
        );
        assert!(out.silent(dev), "{id}: the client hears nothing of it");
        let view = inspect(&mut h, id, 10);
        assert_eq!((view.queued, view.in_flight), (0, 1), "{id}");

        // The client acknowledges what it holds; nothing purged follows it.
        let out = h.puback(dev, in_flight.packet_id.unwrap());
        assert!(out.publishes(dev).is_empty(), "{id}");
        let mut next = publish("x", b"m4", QoS::AtLeastOnce, 4);
        next.topic = topic(&topic_name);
        let out = h.publish(sender, next);
        assert_eq!(payloads(&out.publishes(dev)), ["m4"], "{id}");
    }
}

#[test]
fn requests_about_an_unknown_session_are_refused() {
    let mut h = Harness::new();
    for request in [
        AdminRequest::Kick,
        AdminRequest::Discard,
        AdminRequest::Inspect { limit: 5 },
        AdminRequest::Purge,
    ] {
        let (answer, out) = admin(&mut h, "nobody", request);
        assert_eq!(answer, Err(AdminError::NoSession), "{request:?}");
        assert!(out.actions.is_empty());
    }
}

//! `Broker::open` on a store that holds sessions: what a restart (crash or shutdown) keeps.

use berth_codec::{Packet, PubRec, PubRel, QoS};

use super::*;
use crate::store::SessionExpiry;

#[test]
fn subscriptions_are_rebuilt_and_queued_messages_delivered_on_reconnect() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", false, Some(3600)));
    h.subscribe(sub, subscribe(1, "t/+", QoS::AtLeastOnce));
    h.lose(sub);
    let publisher = h.connect_ok(v5("pub", true, None));
    h.publish(publisher, publish("t/1", b"before", QoS::AtLeastOnce, 1));

    h.restart_after(10);
    assert_eq!(h.broker.stats().sessions, 1);
    assert_eq!(h.broker.stats().queued_messages, 1);
    // The index was rebuilt: a message published after the restart is queued too.
    let publisher = h.connect_ok(v5("pub", true, None));
    let out = h.publish(publisher, publish("t/2", b"after", QoS::AtLeastOnce, 1));
    assert_eq!(
        out.only(publisher),
        Packet::PubAck(berth_codec::PubAck::new(pid(1)))
    );
    assert_eq!(h.stored_queue("sub"), ["before", "after"]);

    let (sub, out) = h.connect(v5("sub", false, Some(3600)));
    assert!(out.connack(sub).session_present);
    assert_eq!(payloads(&out.publishes(sub)), ["before", "after"]);
}

#[test]
fn an_offline_session_whose_deadline_passed_while_down_expires_on_the_first_tick() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", false, Some(60)));
    h.subscribe(sub, subscribe(1, "t", QoS::AtLeastOnce));
    h.disconnect_normal(sub);
    h.restart_after(100);
    assert_eq!(h.broker.next_deadline(), Some(T0.plus_secs(60)));
    h.tick_after(0);
    assert_eq!(h.broker.stats().sessions_expired_total, 1);
    assert!(h.stored_session("sub").is_none());
    let (sub, out) = h.connect(v5("sub", false, Some(60)));
    assert!(!out.connack(sub).session_present);
}

#[test]
fn an_offline_session_keeps_its_absolute_deadline_across_a_restart() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", false, Some(60)));
    h.disconnect_normal(sub);
    h.restart_after(20);
    h.tick_after(39);
    assert!(h.stored_session("sub").is_some());
    h.tick_after(1);
    assert!(h.stored_session("sub").is_none());
}

#[test]
fn a_session_connected_at_the_crash_counts_as_disconnected_at_the_restart() {
    let mut h = Harness::new();
    let watcher = h.connect_ok(v5("watcher", false, Some(3600)));
    h.subscribe(watcher, subscribe(1, "wills/#", QoS::AtLeastOnce));
    h.connect_ok(with_will(
        v5("dev", false, Some(60)),
        will("wills/dev", b"gone", Some(30)),
    ));
    // Crash: nothing is told about the connections.
    h.restart_after(1000);
    let restarted = h.now;
    let stored = h.stored_session("dev").unwrap();
    assert_eq!(stored.record.expires_at, Some(restarted.plus_secs(60)));
    assert_eq!(stored.record.will_due_at, Some(restarted.plus_secs(30)));

    h.tick_after(29);
    assert_eq!(h.broker.stats().wills_published_total, 0);
    h.tick_after(1);
    assert_eq!(h.broker.stats().wills_published_total, 1);
    // The watcher was connected at the crash too; the will waits in its queue.
    assert_eq!(h.stored_queue("watcher"), ["gone"]);
    let (watcher, out) = h.connect(v5("watcher", false, Some(3600)));
    assert!(out.connack(watcher).session_present);
    assert_eq!(payloads(&out.publishes(watcher)), ["gone"]);

    h.tick_after(30);
    assert!(
        h.stored_session("dev").is_none(),
        "expired 60 s after the restart"
    );
}

#[test]
fn a_will_without_delay_of_a_session_connected_at_the_crash_fires_on_the_first_tick() {
    let mut h = Harness::new();
    let watcher = h.connect_ok(v5("watcher", false, Some(3600)));
    h.subscribe(watcher, subscribe(1, "wills/#", QoS::AtLeastOnce));
    h.connect_ok(with_will(
        v3("dev", false),
        will("wills/dev", b"gone", None),
    ));
    h.restart_after(5);
    assert_eq!(h.broker.next_deadline(), Some(h.now));
    h.tick_after(0);
    assert_eq!(h.stored_queue("watcher"), ["gone"]);
    // The v3 default expiry starts at the restart.
    assert_eq!(
        h.stored_session("dev").unwrap().record.expires_at,
        Some(h.now.plus_secs(7200))
    );
}

#[test]
fn resuming_within_the_will_delay_after_a_restart_cancels_the_will() {
    let mut h = Harness::new();
    let watcher = h.connect_ok(v5("watcher", false, Some(3600)));
    h.subscribe(watcher, subscribe(1, "wills/#", QoS::AtLeastOnce));
    h.connect_ok(with_will(
        v5("dev", false, Some(60)),
        will("wills/dev", b"gone", Some(30)),
    ));
    h.restart_after(1);
    h.tick_after(10);
    let (dev, out) = h.connect(v5("dev", false, Some(60)));
    assert!(out.connack(dev).session_present);
    h.tick_after(30);
    assert_eq!(h.broker.stats().wills_published_total, 0);
    assert!(h.stored_queue("watcher").is_empty());
}

#[test]
fn server_shutdown_leaves_the_session_as_if_it_crashed() {
    let mut h = Harness::new();
    let dev = h.connect_ok(with_will(
        v5("dev", false, Some(60)),
        will("wills/dev", b"gone", Some(30)),
    ));
    let out = h.event(Event::Closed {
        conn: dev,
        reason: CloseReason::ServerShutdown,
    });
    assert_eq!(
        out.disconnect_reason(dev),
        Some(DisconnectReasonCode::ServerShuttingDown)
    );
    assert!(out.closed(dev));
    assert_eq!(h.broker.stats().wills_published_total, 0);
    h.restart_after(5);
    let stored = h.stored_session("dev").unwrap();
    assert_eq!(stored.record.will_due_at, Some(h.now.plus_secs(30)));
}

#[test]
fn the_inflight_window_is_resent_after_a_restart() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", false, Some(3600)));
    h.subscribe(sub, subscribe(1, "t", QoS::ExactlyOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    let a = h
        .publish(publisher, publish("t", b"a", QoS::ExactlyOnce, 1))
        .publish(sub);
    let b = h
        .publish(publisher, publish("t", b"b", QoS::ExactlyOnce, 2))
        .publish(sub);
    let c = h
        .publish(publisher, publish("t", b"c", QoS::AtLeastOnce, 3))
        .publish(sub);
    h.pubrec(sub, a.packet_id.unwrap());

    h.restart_after(3);
    let (sub, out) = h.connect(v5("sub", false, Some(3600)));
    let packets = out.to(sub);
    assert!(matches!(&packets[0], Packet::ConnAck(c) if c.session_present));
    assert_eq!(
        packets[1],
        Packet::PubRel(PubRel::new(a.packet_id.unwrap()))
    );
    let resent: Vec<Publish> = packets[2..]
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => p.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(payloads(&resent), ["b", "c"]);
    assert!(resent.iter().all(|p| p.dup));
    assert_eq!(resent[0].packet_id, b.packet_id);
    assert_eq!(resent[1].packet_id, c.packet_id);

    // New messages get packet ids that do not collide with the resent window.
    let publisher = h.connect_ok(v5("pub", true, None));
    let d = h
        .publish(publisher, publish("t", b"d", QoS::AtLeastOnce, 4))
        .publish(sub);
    assert!(![a.packet_id, b.packet_id, c.packet_id].contains(&d.packet_id));
    // And they come after the resent ones in the stored order.
    h.pubcomp(sub, a.packet_id.unwrap());
    h.pubrec(sub, b.packet_id.unwrap());
    h.pubcomp(sub, b.packet_id.unwrap());
    h.puback(sub, c.packet_id.unwrap());
    assert_eq!(h.stored_inflight("sub"), [d.packet_id.unwrap().get()]);
}

#[test]
fn incoming_qos2_state_survives_a_restart() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", false, Some(3600)));
    h.subscribe(sub, subscribe(1, "t", QoS::AtMostOnce));
    let publisher = h.connect_ok(v5("pub", false, Some(3600)));
    let out = h.publish(publisher, publish("t", b"once", QoS::ExactlyOnce, 7));
    assert_eq!(out.publishes(sub).len(), 1);

    h.restart_after(2);
    let sub = h.connect_ok(v5("sub", false, Some(3600)));
    let publisher = h.connect_ok(v5("pub", false, Some(3600)));
    let mut again = publish("t", b"once", QoS::ExactlyOnce, 7);
    again.dup = true;
    let out = h.publish(publisher, again);
    assert_eq!(out.only(publisher), Packet::PubRec(PubRec::new(pid(7))));
    assert!(out.publishes(sub).is_empty(), "not routed twice");
    let out = h.pubrel(publisher, pid(7));
    assert_eq!(
        out.only(publisher),
        Packet::PubComp(berth_codec::PubComp::new(pid(7)))
    );
}

#[test]
fn a_restarted_session_keeps_its_expiry_setting() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", false, Some(u32::MAX)));
    h.disconnect_normal(sub);
    h.restart_after(100_000);
    assert_eq!(
        h.stored_session("sub").unwrap().record.expiry,
        SessionExpiry::Never
    );
    assert_eq!(h.broker.next_deadline(), None);
    let (sub, out) = h.connect(v5("sub", false, Some(u32::MAX)));
    assert!(out.connack(sub).session_present);
}

#[test]
fn non_persistent_sessions_do_not_survive_a_restart() {
    let mut h = Harness::new();
    let dev = h.connect_ok(v5("dev", false, None));
    h.subscribe(dev, subscribe(1, "t", QoS::AtLeastOnce));
    let v3dev = h.connect_ok(v3("v3dev", true));
    h.subscribe(v3dev, subscribe(1, "t", QoS::AtLeastOnce));
    h.restart_after(1);
    assert_eq!(h.broker.stats().sessions, 0);
    let (dev, out) = h.connect(v5("dev", false, None));
    assert!(!out.connack(dev).session_present);
}

/// The first event after a restart is the subscriber's own CONNECT, and the will of a session
/// that was connected at the crash is due in that same event: it is queued and then delivered
/// right after CONNACK.
#[test]
fn a_will_due_in_the_same_event_as_the_subscribers_reconnect_is_delivered() {
    let mut h = Harness::new();
    let watcher = h.connect_ok(v5("watcher", false, Some(3600)));
    h.subscribe(watcher, subscribe(1, "wills/#", QoS::AtLeastOnce));
    h.connect_ok(with_will(
        v5("dev", false, Some(60)),
        will("wills/dev", b"gone", None),
    ));
    h.restart_after(5);
    let (watcher, out) = h.connect(v5("watcher", false, Some(3600)));
    assert!(out.connack(watcher).session_present);
    assert_eq!(payloads(&out.publishes(watcher)), ["gone"]);
}

#[test]
fn a_session_past_its_deadline_is_not_resumed_even_before_the_first_tick() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", false, Some(60)));
    h.disconnect_normal(sub);
    h.restart_after(61);
    let (sub, out) = h.connect(v5("sub", false, Some(60)));
    assert!(!out.connack(sub).session_present);
    assert_eq!(h.broker.stats().sessions_expired_total, 1);
}

#[test]
fn a_will_waiting_for_its_delay_keeps_its_due_time_across_a_restart() {
    let mut h = Harness::new();
    let watcher = h.connect_ok(v5("watcher", false, Some(3600)));
    h.subscribe(watcher, subscribe(1, "wills/#", QoS::AtLeastOnce));
    h.lose(watcher);
    let dev = h.connect_ok(with_will(
        v5("dev", false, Some(300)),
        will("wills/dev", b"gone", Some(30)),
    ));
    h.lose(dev);
    h.restart_after(10);
    h.tick_after(19);
    assert!(h.stored_queue("watcher").is_empty());
    h.tick_after(1);
    assert_eq!(h.stored_queue("watcher"), ["gone"]);
}

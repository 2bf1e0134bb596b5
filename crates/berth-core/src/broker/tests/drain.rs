//! Draining: the server sends its clients elsewhere (DISCONNECT 0x9C to MQTT 5 clients), each
//! connection ends as any connection the server closes (the will follows its delay), and the
//! session stays for the client to resume; and every ending is counted by its cause.

use berth_codec::QoS;

use super::*;
use crate::stats::CloseCause;

fn drain(h: &mut Harness, conn: ConnId) -> Out {
    h.event(Event::Closed {
        conn,
        reason: CloseReason::Drained,
    })
}

#[test]
fn a_drained_v5_client_hears_use_another_server_and_finds_its_session_again() {
    let mut h = Harness::new();
    let dev = h.connect_ok(with_will(
        v5("dev", false, Some(600)),
        will("wills/dev", b"gone", Some(30)),
    ));
    h.subscribe(dev, subscribe(1, "cmd/dev", QoS::AtLeastOnce));
    let watcher = h.connect_ok(v5("watcher", true, None));
    h.subscribe(watcher, subscribe(1, "wills/#", QoS::AtLeastOnce));
    let out = drain(&mut h, dev);
    assert_eq!(
        out.disconnect_reason(dev),
        Some(DisconnectReasonCode::UseAnotherServer)
    );
    assert!(out.closed(dev));
    assert!(
        out.publishes(watcher).is_empty(),
        "the will waits for its delay"
    );
    assert_eq!(h.broker.stats().closed_total(CloseCause::Drained), 1);

    // Queued while it moves, delivered when it is back (here; elsewhere through a takeover).
    let sender = h.connect_ok(v5("sender", true, None));
    h.publish(sender, publish("cmd/dev", b"m1", QoS::AtLeastOnce, 1));
    let (again, out) = h.connect(v5("dev", false, Some(600)));
    assert!(out.connack(again).session_present);
    assert_eq!(payloads(&out.publishes(again)), ["m1"]);
    // Back within the will delay: no will.
    let out = h.tick_after(60);
    assert!(out.publishes(watcher).is_empty());
    assert_eq!(h.broker.stats().wills_published_total, 0);
}

#[test]
fn a_drained_v3_client_is_closed_without_a_packet_and_keeps_its_session() {
    let mut h = Harness::new();
    let dev = h.connect_ok(v3("dev", false));
    h.subscribe(dev, subscribe(1, "cmd/dev", QoS::AtLeastOnce));
    let out = drain(&mut h, dev);
    assert!(out.closed(dev));
    assert!(
        out.to(dev).is_empty(),
        "3.1.1 has no DISCONNECT from the server"
    );
    assert!(h.stored_session("dev").is_some());
}

#[test]
fn every_ending_is_counted_by_its_cause() {
    let mut h = Harness::new();
    let a = h.connect_ok(v5("a", true, None));
    h.disconnect_normal(a);
    let b = h.connect_ok(v5("b", true, None));
    h.lose(b);
    let c = h.connect_ok(v5("c", true, None));
    h.event(Event::Closed {
        conn: c,
        reason: CloseReason::KeepAliveTimeout,
    });
    h.connect_ok(v5("d", false, Some(60)));
    h.connect_ok(v5("d", false, Some(60)));
    let e = h.connect_ok(v5("e", true, None));
    h.event(Event::Closed {
        conn: e,
        reason: CloseReason::Malformed(berth_codec::DecodeError::RemainingLengthTooLong),
    });
    let stats = h.broker.stats();
    assert_eq!(stats.closed_total(CloseCause::ClientDisconnect), 1);
    assert_eq!(stats.closed_total(CloseCause::ConnectionLost), 1);
    assert_eq!(stats.closed_total(CloseCause::KeepAliveTimeout), 1);
    assert_eq!(stats.closed_total(CloseCause::TakenOver), 1);
    assert_eq!(stats.closed_total(CloseCause::ProtocolError), 1);
    assert_eq!(stats.closed_total(CloseCause::Drained), 0);
    // The socket closing after the server closed it is not counted again.
    h.lose(a);
    assert_eq!(h.broker.stats().closed_total(CloseCause::ConnectionLost), 1);
}

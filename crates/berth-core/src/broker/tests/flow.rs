//! Publisher flow control (`queue.backpressure`): the PUBACK of a message queued for a connected
//! subscriber that is not keeping up waits until that subscriber has drained, or for
//! `ACK_HOLD_MAX_MS` at most; the message itself is queued either way.

use berth_codec::QoS;

use super::*;
use crate::broker::acks::ACK_HOLD_MAX_MS;
use crate::config::Limit;

/// The PUBACKs `conn` got, by packet identifier, in order.
fn pubacks(out: &Out, conn: ConnId) -> Vec<u16> {
    out.to(conn)
        .into_iter()
        .filter_map(|packet| match packet {
            Packet::PubAck(ack) => Some(ack.packet_id.get()),
            _ => None,
        })
        .collect()
}

/// A broker whose queues count as congested at 10 messages (half of 20), with a send window of
/// 2; a connected clean subscriber on `t` that acknowledges nothing yet, and a publisher.
fn congested_setup(backpressure: bool) -> (Harness, ConnId, ConnId) {
    let mut config = BrokerConfig::default();
    config.queue.max_messages = Limit::AtMost(20);
    config.queue.backpressure = backpressure;
    config.limits.max_inflight = 2;
    let mut h = Harness::with_config(config);
    let sub = h.connect_ok(v3("sub", true));
    h.subscribe(sub, subscribe(1, "t", QoS::AtLeastOnce));
    let publisher = h.connect_ok(v3("pub", true));
    (h, sub, publisher)
}

/// Publishes `ids` on `t` at QoS 1; returns the PUBACKs that came back at once and the
/// PUBLISHes the subscriber got.
fn publish_ids(
    h: &mut Harness,
    publisher: ConnId,
    sub: ConnId,
    ids: std::ops::RangeInclusive<u16>,
) -> (Vec<u16>, Vec<Publish>) {
    let (mut acks, mut delivered) = (Vec::new(), Vec::new());
    for id in ids {
        let out = h.publish(publisher, publish("t", b"m", QoS::AtLeastOnce, id));
        acks.extend(pubacks(&out, publisher));
        delivered.extend(out.publishes(sub));
    }
    (acks, delivered)
}

#[test]
fn a_publisher_is_acknowledged_once_the_congested_subscriber_has_drained() {
    let (mut h, sub, publisher) = congested_setup(true);
    // Two go into the window, the rest queue: the 12th makes the queue 10 long.
    let (acks, delivered) = publish_ids(&mut h, publisher, sub, 1..=14);
    assert_eq!(acks, (1..=11).collect::<Vec<_>>());
    assert_eq!(delivered.len(), 2);
    assert_eq!(h.broker.stats().queued_messages, 12);
    assert_eq!(h.broker.stats().publish_acks_held_total, 3);

    // Each PUBACK of the subscriber frees a slot and pulls one message from the queue; the held
    // acknowledgements go, in PUBLISH order, once the queue is down to 5.
    let mut window: Vec<PacketId> = delivered.iter().map(|p| p.packet_id.unwrap()).collect();
    let mut released = Vec::new();
    let mut acked = 0;
    while released.is_empty() {
        let out = h.puback(sub, window.remove(0));
        acked += 1;
        window.extend(out.publishes(sub).iter().map(|p| p.packet_id.unwrap()));
        released = pubacks(&out, publisher);
    }
    assert_eq!(acked, 7, "12 queued, released at 5");
    assert_eq!(h.broker.stats().queued_messages, 5);
    assert_eq!(released, [12, 13, 14]);

    // Nothing was lost: the rest arrives as the subscriber goes on.
    let mut received = 7 + window.len();
    while let Some(id) = window.first().copied() {
        window.remove(0);
        let out = h.puback(sub, id);
        let more: Vec<PacketId> = out
            .publishes(sub)
            .iter()
            .map(|p| p.packet_id.unwrap())
            .collect();
        received += more.len();
        window.extend(more);
    }
    assert_eq!(received, 14);
}

#[test]
fn an_acknowledgement_waits_no_longer_than_the_hold_limit() {
    let (mut h, sub, publisher) = congested_setup(true);
    let (acks, _) = publish_ids(&mut h, publisher, sub, 1..=12);
    assert_eq!(acks.len(), 11);
    assert_eq!(
        h.broker.next_deadline(),
        Some(h.now.plus_millis(ACK_HOLD_MAX_MS))
    );
    let out = h.tick_after_millis(ACK_HOLD_MAX_MS - 1);
    assert!(pubacks(&out, publisher).is_empty());
    let out = h.tick_after_millis(1);
    assert_eq!(pubacks(&out, publisher), [12]);
    // Still congested: the next one waits again.
    let (acks, _) = publish_ids(&mut h, publisher, sub, 13..=13);
    assert!(acks.is_empty());
}

#[test]
fn acknowledgements_keep_publish_order_behind_a_held_one() {
    let (mut h, sub, publisher) = congested_setup(true);
    publish_ids(&mut h, publisher, sub, 1..=12);
    // A message nobody subscribes to needs no subscriber, but its PUBACK may not overtake.
    let out = h.publish(publisher, publish("other", b"m", QoS::AtLeastOnce, 100));
    assert!(pubacks(&out, publisher).is_empty());
    let out = h.tick_after_millis(ACK_HOLD_MAX_MS);
    assert_eq!(pubacks(&out, publisher), [12, 100]);
}

#[test]
fn a_subscriber_going_offline_releases_its_publishers() {
    let (mut h, sub, publisher) = congested_setup(true);
    publish_ids(&mut h, publisher, sub, 1..=13);
    let out = h.lose(sub);
    assert_eq!(pubacks(&out, publisher), [12, 13]);
}

#[test]
fn a_publisher_that_disconnects_leaves_nothing_held() {
    let (mut h, sub, publisher) = congested_setup(true);
    publish_ids(&mut h, publisher, sub, 1..=13);
    h.lose(publisher);
    let out = h.tick_after_millis(ACK_HOLD_MAX_MS);
    assert!(out.to(publisher).is_empty());
    // The subscriber still gets every message.
    assert_eq!(h.broker.stats().queued_messages, 11);
}

#[test]
fn an_offline_session_never_holds_a_publisher_up() {
    let mut config = BrokerConfig::default();
    config.queue.max_messages = Limit::AtMost(20);
    let mut h = Harness::with_config(config);
    let sub = h.connect_ok(v3("sub", false));
    h.subscribe(sub, subscribe(1, "t", QoS::AtLeastOnce));
    h.lose(sub);
    let publisher = h.connect_ok(v3("pub", true));
    let (acks, _) = publish_ids(&mut h, publisher, sub, 1..=15);
    assert_eq!(acks, (1..=15).collect::<Vec<_>>());
    assert_eq!(h.broker.stats().publish_acks_held_total, 0);
}

/// What publishers sent before their acknowledgements were held is already on its way: a
/// connected subscriber's queue takes up to one Receive Maximum beyond its limit for it instead
/// of dropping acknowledged messages, and no more.
#[test]
fn messages_already_sent_when_the_hold_begins_are_queued_not_dropped() {
    let mut config = BrokerConfig::default();
    config.queue.max_messages = Limit::AtMost(20);
    config.limits.max_inflight = 2;
    config.limits.receive_maximum = 5;
    let mut h = Harness::with_config(config);
    let sub = h.connect_ok(v3("sub", true));
    h.subscribe(sub, subscribe(1, "t", QoS::AtLeastOnce));
    let publisher = h.connect_ok(v3("pub", true));
    // 2 in the window, 25 queued: the limit (20) and a Receive Maximum (5) beyond it.
    publish_ids(&mut h, publisher, sub, 1..=27);
    assert_eq!(h.broker.stats().queued_messages, 25);
    assert_eq!(
        h.broker
            .stats()
            .dropped_total(crate::stats::DropReason::QueueFull),
        0
    );
    publish_ids(&mut h, publisher, sub, 28..=28);
    assert_eq!(h.broker.stats().queued_messages, 25);
    assert_eq!(
        h.broker
            .stats()
            .dropped_total(crate::stats::DropReason::QueueFull),
        1
    );

    // Offline, the plain limit holds again for what arrives.
    let mut config = BrokerConfig::default();
    config.queue.max_messages = Limit::AtMost(20);
    config.limits.receive_maximum = 5;
    let mut h = Harness::with_config(config);
    let sub = h.connect_ok(v3("sub", false));
    h.subscribe(sub, subscribe(1, "t", QoS::AtLeastOnce));
    h.lose(sub);
    let publisher = h.connect_ok(v3("pub", true));
    publish_ids(&mut h, publisher, sub, 1..=25);
    assert_eq!(h.broker.stats().queued_messages, 20);
}

#[test]
fn without_backpressure_every_publish_is_acknowledged_at_once() {
    let (mut h, sub, publisher) = congested_setup(false);
    let (acks, _) = publish_ids(&mut h, publisher, sub, 1..=25);
    assert_eq!(acks, (1..=25).collect::<Vec<_>>());
    // The queue limit (20) drops the rest instead.
    assert_eq!(h.broker.stats().queued_messages, 20);
}

#[test]
fn a_qos2_publisher_is_held_at_pubrec() {
    let (mut h, sub, publisher) = congested_setup(true);
    publish_ids(&mut h, publisher, sub, 1..=11);
    let out = h.publish(publisher, publish("t", b"m", QoS::ExactlyOnce, 50));
    assert!(out.to(publisher).is_empty());
    // A re-sent copy is only acknowledged, still behind the first.
    let mut again = publish("t", b"m", QoS::ExactlyOnce, 50);
    again.dup = true;
    let out = h.publish(publisher, again);
    assert!(out.to(publisher).is_empty());
    let out = h.tick_after_millis(ACK_HOLD_MAX_MS);
    let recs: Vec<u16> = out
        .to(publisher)
        .into_iter()
        .filter_map(|p| match p {
            Packet::PubRec(rec) => Some(rec.packet_id.get()),
            _ => None,
        })
        .collect();
    assert_eq!(recs, [50, 50]);
}

//! How much of a connected persistent session's queue stays in memory as it is queued
//! (`session::QUEUE_HEAD_MESSAGES`, `QUEUE_HEAD_BYTES`): within the bound the whole queue is in
//! memory and nothing is read back from the store to send it; past it the tail lives in the
//! store and is paged in, and either way the client gets every message once, in order.

use std::num::NonZeroU16;

use berth_codec::QoS;

use super::*;
use crate::broker::session::{QUEUE_HEAD_BYTES, QUEUE_HEAD_MESSAGES};
use crate::config::Limit;

/// A connected persistent MQTT 5 subscriber to `t` that takes one QoS 1 message at a time, and
/// a publisher; queues unlimited, publishers not held back (this is about the queue alone).
fn one_at_a_time() -> (Harness, ConnId, ConnId) {
    let mut config = BrokerConfig::default();
    config.queue.max_messages = Limit::Unlimited;
    config.queue.max_bytes = Limit::Unlimited;
    config.queue.backpressure = false;
    let mut h = Harness::with_config(config);
    let mut connect = v5("sub", false, Some(3600));
    connect.properties.receive_maximum = NonZeroU16::new(1);
    let sub = h.connect_ok(connect);
    h.subscribe(sub, subscribe(1, "t", QoS::AtLeastOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    (h, sub, publisher)
}

fn publish_numbered(h: &mut Harness, publisher: ConnId, n: usize, payload_len: usize) {
    let mut payload = format!("{n:08}").into_bytes();
    payload.resize(payload_len.max(8), b'.');
    let publish = Publish {
        payload: Bytes::from(payload),
        ..publish("t", b"", QoS::AtLeastOnce, (n % 60_000) as u16 + 1)
    };
    h.publish(publisher, publish);
}

/// (messages in memory, messages queued) for `sub`.
fn head_and_count(h: &Harness) -> (usize, u64) {
    let session = h.broker.sessions.get(&client("sub")).unwrap();
    (session.queue.head.len(), session.queue.bounds.count)
}

/// Acknowledges one message at a time until nothing more comes; the numbers received, in
/// order, the first one (already sent) included.
fn drain_numbers(h: &mut Harness, sub: ConnId, first: u16) -> Vec<usize> {
    let mut received = vec![0];
    let mut id = pid(first);
    loop {
        let out = h.puback(sub, id);
        let publishes = out.publishes(sub);
        let Some(publish) = publishes.first() else {
            return received;
        };
        assert_eq!(publishes.len(), 1, "one at a time");
        received.push(
            String::from_utf8_lossy(&publish.payload[..8])
                .parse()
                .unwrap(),
        );
        id = publish.packet_id.unwrap();
    }
}

#[test]
fn a_connected_sessions_queue_stays_in_memory_up_to_the_bound_and_its_tail_is_paged_in_in_order() {
    let (mut h, sub, publisher) = one_at_a_time();
    let first = {
        publish_numbered(&mut h, publisher, 0, 8);
        let session = h.broker.sessions.get(&client("sub")).unwrap();
        session.inflight.front().map(|(id, _)| id.get()).unwrap()
    };
    let total = QUEUE_HEAD_MESSAGES + 300;
    for n in 1..QUEUE_HEAD_MESSAGES + 1 {
        publish_numbered(&mut h, publisher, n, 8);
    }
    assert_eq!(
        head_and_count(&h),
        (QUEUE_HEAD_MESSAGES, QUEUE_HEAD_MESSAGES as u64),
        "up to the bound, the whole queue is in memory"
    );
    for n in QUEUE_HEAD_MESSAGES + 1..total {
        publish_numbered(&mut h, publisher, n, 8);
    }
    assert_eq!(
        head_and_count(&h),
        (QUEUE_HEAD_MESSAGES, total as u64 - 1),
        "past it, the tail is in the store only"
    );
    assert_eq!(
        h.stored_queue("sub").len(),
        total - 1,
        "every queued message is written"
    );

    let received = drain_numbers(&mut h, sub, first);
    assert_eq!(received, (0..total).collect::<Vec<_>>());
    assert_eq!(head_and_count(&h), (0, 0));
    assert!(h.stored_queue("sub").is_empty());
}

#[test]
fn large_messages_keep_a_short_head() {
    let (mut h, sub, publisher) = one_at_a_time();
    let size = 200 * 1024;
    publish_numbered(&mut h, publisher, 0, size);
    let first = {
        let session = h.broker.sessions.get(&client("sub")).unwrap();
        session.inflight.front().map(|(id, _)| id.get()).unwrap()
    };
    for n in 1..20 {
        publish_numbered(&mut h, publisher, n, size);
    }
    // `Delivery::size` counts the topic ("t") and the payload.
    let fits = (QUEUE_HEAD_BYTES / (size as u64 + 1)) as usize;
    assert_eq!(
        head_and_count(&h),
        (fits, 19),
        "as many as fit in the bytes bound"
    );
    let received = drain_numbers(&mut h, sub, first);
    assert_eq!(received, (0..20).collect::<Vec<_>>());
}

#[test]
fn an_offline_sessions_queue_stays_in_the_store_only() {
    let (mut h, sub, publisher) = one_at_a_time();
    h.lose(sub);
    for n in 0..10 {
        publish_numbered(&mut h, publisher, n, 8);
    }
    assert_eq!(head_and_count(&h), (0, 10));
}

#[test]
fn a_session_that_ends_with_a_long_head_gets_its_whole_queue_in_order_when_it_resumes() {
    let (mut h, sub, publisher) = one_at_a_time();
    for n in 0..1000 {
        publish_numbered(&mut h, publisher, n, 8);
    }
    assert_eq!(
        head_and_count(&h),
        (999, 999),
        "m0 in flight, the rest in memory"
    );
    h.lose(sub);
    assert_eq!(
        head_and_count(&h),
        (0, 999),
        "offline: nothing of it in memory"
    );

    let mut connect = v5("sub", false, Some(3600));
    connect.properties.receive_maximum = NonZeroU16::new(1);
    let (sub, out) = h.connect(connect);
    assert!(out.connack(sub).session_present);
    let resent = out.publish(sub);
    assert!(resent.dup, "m0 was in flight: re-sent with DUP = 1");
    assert_eq!(&resent.payload[..8], b"00000000");
    let received = drain_numbers(&mut h, sub, resent.packet_id.unwrap().get());
    assert_eq!(received, (0..1000).collect::<Vec<_>>());
}

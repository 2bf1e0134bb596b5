//! The offline queue (order, QoS 0, limits, drop policies, message expiry) and the send window
//! (Receive Maximum, `max_inflight`, acks pulling the queue, paging from storage).

use berth_codec::QoS;

use super::*;
use crate::config::{DropPolicy, Limit, QueueConfig};
use crate::stats::DropReason;

/// A persistent MQTT 5 subscriber `sub` on `t` at QoS 2 that is now offline, and a publisher.
fn offline_subscriber(h: &mut Harness) -> ConnId {
    let sub = h.connect_ok(v5("sub", false, Some(3600)));
    h.subscribe(sub, subscribe(1, "t", QoS::ExactlyOnce));
    h.lose(sub);
    h.connect_ok(v5("pub", true, None))
}

fn queue_config(max_messages: Limit, max_bytes: Limit, drop_policy: DropPolicy) -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.queue = QueueConfig {
        max_messages,
        max_bytes,
        drop_policy,
        queue_qos0: false,
        backpressure: true,
    };
    config
}

/// Reconnects `sub` and acknowledges everything until nothing more comes; returns the payloads
/// in the order they arrived.
fn drain(h: &mut Harness, connect: Connect) -> (ConnId, Vec<String>) {
    let (sub, out) = h.connect(connect);
    assert!(out.connack(sub).session_present);
    let mut received = Vec::new();
    let mut pending = out.publishes(sub);
    while !pending.is_empty() {
        let mut next = Vec::new();
        for publish in pending {
            received.push(String::from_utf8_lossy(&publish.payload).into_owned());
            let out = match (publish.qos, publish.packet_id) {
                (QoS::AtLeastOnce, Some(id)) => h.puback(sub, id),
                (QoS::ExactlyOnce, Some(id)) => {
                    h.pubrec(sub, id);
                    h.pubcomp(sub, id)
                }
                _ => continue,
            };
            next.extend(out.publishes(sub));
        }
        pending = next;
    }
    (sub, received)
}

#[test]
fn offline_qos1_and_qos2_are_queued_in_order_and_qos0_is_dropped() {
    let mut h = Harness::new();
    let publisher = offline_subscriber(&mut h);
    h.publish(publisher, publish("t", b"a", QoS::AtLeastOnce, 1));
    h.publish(publisher, publish("t", b"zero", QoS::AtMostOnce, 0));
    h.publish(publisher, publish("t", b"b", QoS::ExactlyOnce, 2));
    h.publish(publisher, publish("t", b"c", QoS::AtLeastOnce, 3));
    assert_eq!(h.stored_queue("sub"), ["a", "b", "c"]);
    assert_eq!(h.broker.stats().queued_messages, 3);
    assert_eq!(h.broker.stats().dropped_total(DropReason::Qos0Offline), 1);

    let (sub, out) = h.connect(v5("sub", false, Some(3600)));
    assert!(out.connack(sub).session_present);
    let delivered = out.publishes(sub);
    assert_eq!(payloads(&delivered), ["a", "b", "c"]);
    let qos: Vec<QoS> = delivered.iter().map(|p| p.qos).collect();
    assert_eq!(qos, [QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::AtLeastOnce]);
    assert!(delivered.iter().all(|p| !p.dup));
    // In flight now. "c" keeps its queue row as its record (`row_backed`); "a" did too until
    // "b", a QoS 2 message, took an in-flight row after it: "a" was written as one first, so
    // that a restart re-sends them in order.
    assert_eq!(h.stored_queue("sub"), ["c"]);
    assert_eq!(h.stored_inflight("sub").len(), 2, "\"a\" and \"b\"");
    assert_eq!(h.broker.stats().queued_messages, 0);
}

#[test]
fn offline_messages_are_queued_at_the_subscription_qos() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", false, Some(3600)));
    h.subscribe(sub, subscribe(1, "t", QoS::AtLeastOnce));
    h.lose(sub);
    let publisher = h.connect_ok(v5("pub", true, None));
    h.publish(publisher, publish("t", b"m", QoS::ExactlyOnce, 1));
    let queued = h
        .store()
        .read_queue(&client("sub"), crate::ids::QueueSeq(0), 10)
        .unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].1.qos, QoS::AtLeastOnce);
    let (sub, out) = h.connect(v5("sub", false, Some(3600)));
    assert_eq!(out.publish(sub).qos, QoS::AtLeastOnce);
}

#[test]
fn qos0_is_queued_when_configured() {
    let mut config = BrokerConfig::default();
    config.queue.queue_qos0 = true;
    let mut h = Harness::with_config(config);
    let publisher = offline_subscriber(&mut h);
    h.publish(publisher, publish("t", b"a", QoS::AtMostOnce, 0));
    h.publish(publisher, publish("t", b"b", QoS::AtLeastOnce, 1));
    h.publish(publisher, publish("t", b"c", QoS::AtMostOnce, 0));
    assert_eq!(h.stored_queue("sub"), ["a", "b", "c"]);
    let (sub, out) = h.connect(v5("sub", false, Some(3600)));
    let delivered = out.publishes(sub);
    assert_eq!(payloads(&delivered), ["a", "b", "c"]);
    assert_eq!(delivered[0].qos, QoS::AtMostOnce);
    assert_eq!(delivered[0].packet_id, None);
    assert_eq!(h.broker.stats().dropped_total(DropReason::Qos0Offline), 0);
}

#[test]
fn count_limit_with_drop_newest_keeps_the_oldest() {
    let mut h = Harness::with_config(queue_config(
        Limit::AtMost(3),
        Limit::Unlimited,
        DropPolicy::DropNewest,
    ));
    let publisher = offline_subscriber(&mut h);
    for (n, payload) in [b"1", b"2", b"3", b"4", b"5"].into_iter().enumerate() {
        h.publish(
            publisher,
            publish("t", payload, QoS::AtLeastOnce, n as u16 + 1),
        );
    }
    assert_eq!(h.stored_queue("sub"), ["1", "2", "3"]);
    assert_eq!(h.broker.stats().dropped_total(DropReason::QueueFull), 2);
    let (_, received) = drain(&mut h, v5("sub", false, Some(3600)));
    assert_eq!(received, ["1", "2", "3"]);
}

#[test]
fn count_limit_with_drop_oldest_keeps_the_newest() {
    let mut h = Harness::with_config(queue_config(
        Limit::AtMost(3),
        Limit::Unlimited,
        DropPolicy::DropOldest,
    ));
    let publisher = offline_subscriber(&mut h);
    for (n, payload) in [b"1", b"2", b"3", b"4", b"5"].into_iter().enumerate() {
        h.publish(
            publisher,
            publish("t", payload, QoS::AtLeastOnce, n as u16 + 1),
        );
    }
    assert_eq!(h.stored_queue("sub"), ["3", "4", "5"]);
    assert_eq!(h.broker.stats().dropped_total(DropReason::QueueFull), 2);
    assert_eq!(h.broker.stats().queued_messages, 3);
    let (_, received) = drain(&mut h, v5("sub", false, Some(3600)));
    assert_eq!(received, ["3", "4", "5"]);
}

#[test]
fn drop_oldest_works_on_a_queue_paged_out_to_storage() {
    // After a restart nothing of the queue is in memory: dropping the oldest reads it back.
    let mut h = Harness::with_config(queue_config(
        Limit::AtMost(3),
        Limit::Unlimited,
        DropPolicy::DropOldest,
    ));
    let publisher = offline_subscriber(&mut h);
    for (n, payload) in [b"1", b"2", b"3"].into_iter().enumerate() {
        h.publish(
            publisher,
            publish("t", payload, QoS::AtLeastOnce, n as u16 + 1),
        );
    }
    h.restart_after(1);
    let publisher = h.connect_ok(v5("pub", true, None));
    h.publish(publisher, publish("t", b"4", QoS::AtLeastOnce, 4));
    assert_eq!(h.stored_queue("sub"), ["2", "3", "4"]);
    let (_, received) = drain(&mut h, v5("sub", false, Some(3600)));
    assert_eq!(received, ["2", "3", "4"]);
}

#[test]
fn byte_limit_counts_topic_and_payload() {
    // Each message costs 1 (topic "t") + 9 (payload) = 10 bytes.
    let mut h = Harness::with_config(queue_config(
        Limit::Unlimited,
        Limit::AtMost(25),
        DropPolicy::DropNewest,
    ));
    let publisher = offline_subscriber(&mut h);
    for (n, payload) in [b"message-1", b"message-2", b"message-3"]
        .into_iter()
        .enumerate()
    {
        h.publish(
            publisher,
            publish("t", payload, QoS::AtLeastOnce, n as u16 + 1),
        );
    }
    assert_eq!(h.stored_queue("sub"), ["message-1", "message-2"]);
    assert_eq!(h.broker.stats().dropped_total(DropReason::QueueFull), 1);
    let stored = h.stored_session("sub").unwrap();
    assert_eq!(stored.queue.bytes, 20);
    assert_eq!(stored.queue.count, 2);
}

#[test]
fn byte_limit_with_drop_oldest_makes_room() {
    let mut h = Harness::with_config(queue_config(
        Limit::Unlimited,
        Limit::AtMost(25),
        DropPolicy::DropOldest,
    ));
    let publisher = offline_subscriber(&mut h);
    for (n, payload) in [b"message-1", b"message-2", b"message-3"]
        .into_iter()
        .enumerate()
    {
        h.publish(
            publisher,
            publish("t", payload, QoS::AtLeastOnce, n as u16 + 1),
        );
    }
    assert_eq!(h.stored_queue("sub"), ["message-2", "message-3"]);
    assert_eq!(h.broker.stats().dropped_total(DropReason::QueueFull), 1);
}

#[test]
fn a_message_larger_than_the_byte_limit_does_not_flush_the_queue() {
    let mut h = Harness::with_config(queue_config(
        Limit::Unlimited,
        Limit::AtMost(25),
        DropPolicy::DropOldest,
    ));
    let publisher = offline_subscriber(&mut h);
    h.publish(publisher, publish("t", b"message-1", QoS::AtLeastOnce, 1));
    h.publish(
        publisher,
        publish(
            "t",
            b"this payload alone is over the limit",
            QoS::AtLeastOnce,
            2,
        ),
    );
    assert_eq!(h.stored_queue("sub"), ["message-1"]);
    assert_eq!(h.broker.stats().dropped_total(DropReason::QueueFull), 1);
}

#[test]
fn message_expiry_counts_down_while_queued() {
    let mut h = Harness::new();
    let publisher = offline_subscriber(&mut h);
    let mut message = publish("t", b"m", QoS::AtLeastOnce, 1);
    message.properties.message_expiry_interval = Some(100);
    h.publish(publisher, message);
    h.tick_after(40);
    let (sub, out) = h.connect(v5("sub", false, Some(3600)));
    let delivered = out.publish(sub);
    assert_eq!(delivered.properties.message_expiry_interval, Some(60));
}

#[test]
fn an_expired_queued_message_is_dropped_and_counted() {
    let mut h = Harness::new();
    let publisher = offline_subscriber(&mut h);
    let mut short = publish("t", b"short", QoS::AtLeastOnce, 1);
    short.properties.message_expiry_interval = Some(10);
    h.publish(publisher, short);
    h.publish(publisher, publish("t", b"forever", QoS::AtLeastOnce, 2));
    h.tick_after(11);
    let (sub, out) = h.connect(v5("sub", false, Some(3600)));
    let delivered = out.publishes(sub);
    assert_eq!(payloads(&delivered), ["forever"]);
    assert_eq!(delivered[0].properties.message_expiry_interval, None);
    assert_eq!(h.broker.stats().dropped_total(DropReason::Expired), 1);
    // Only "forever" is left: in flight, its queue row its record (`row_backed`).
    assert_eq!(h.stored_queue("sub"), ["forever"]);
    assert_eq!(h.broker.stats().queued_messages, 0);
}

#[test]
fn a_message_that_expires_in_the_send_window_queue_is_dropped() {
    // Online but the window is full: the message waits in the queue and expires there.
    let mut h = Harness::new();
    let sub = h.connect_ok(v5_limits("sub", Some(1), None, None));
    h.subscribe(sub, subscribe(1, "t", QoS::AtLeastOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    let first = h
        .publish(publisher, publish("t", b"first", QoS::AtLeastOnce, 1))
        .publish(sub);
    let mut short = publish("t", b"short", QoS::AtLeastOnce, 2);
    short.properties.message_expiry_interval = Some(5);
    let out = h.publish(publisher, short);
    assert!(out.publishes(sub).is_empty());
    h.publish(publisher, publish("t", b"last", QoS::AtLeastOnce, 3));
    h.tick_after(6);
    let out = h.puback(sub, first.packet_id.unwrap());
    assert_eq!(payloads(&out.publishes(sub)), ["last"]);
    assert_eq!(h.broker.stats().dropped_total(DropReason::Expired), 1);
}

#[test]
fn the_send_window_is_the_client_receive_maximum() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5_limits("sub", Some(2), None, None));
    h.subscribe(sub, subscribe(1, "t", QoS::AtLeastOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    let mut delivered = Vec::new();
    for (n, payload) in [b"1", b"2", b"3", b"4", b"5"].into_iter().enumerate() {
        let out = h.publish(
            publisher,
            publish("t", payload, QoS::AtLeastOnce, n as u16 + 1),
        );
        delivered.extend(out.publishes(sub));
    }
    assert_eq!(payloads(&delivered), ["1", "2"]);
    // Each PUBACK pulls the next queued message.
    let out = h.puback(sub, delivered[0].packet_id.unwrap());
    let next = out.publishes(sub);
    assert_eq!(payloads(&next), ["3"]);
    let out = h.puback(sub, delivered[1].packet_id.unwrap());
    let next2 = out.publishes(sub);
    assert_eq!(payloads(&next2), ["4"]);
    let out = h.puback(sub, next[0].packet_id.unwrap());
    assert_eq!(payloads(&out.publishes(sub)), ["5"]);
    // QoS 0 is not limited by the window.
    let out = h.publish(publisher, publish("t", b"zero", QoS::AtMostOnce, 0));
    assert_eq!(payloads(&out.publishes(sub)), ["zero"]);
}

#[test]
fn the_send_window_is_capped_by_max_inflight() {
    let mut config = BrokerConfig::default();
    config.limits.max_inflight = 3;
    let mut h = Harness::with_config(config);
    let sub = h.connect_ok(v5_limits("sub", Some(100), None, None));
    h.subscribe(sub, subscribe(1, "t", QoS::ExactlyOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    let mut delivered = Vec::new();
    for n in 1..=5u16 {
        let out = h.publish(publisher, publish("t", b"m", QoS::ExactlyOnce, n));
        delivered.extend(out.publishes(sub));
    }
    assert_eq!(delivered.len(), 3);
    // A QoS 2 message leaves the window at PUBCOMP, not at PUBREC.
    let id = delivered[0].packet_id.unwrap();
    let out = h.pubrec(sub, id);
    assert!(out.publishes(sub).is_empty());
    let out = h.pubcomp(sub, id);
    assert_eq!(out.publishes(sub).len(), 1);

    // A 3.1.1 client has no Receive Maximum: max_inflight applies.
    let v3_sub = h.connect_ok(v3("v3sub", true));
    h.subscribe(v3_sub, subscribe(1, "u", QoS::AtLeastOnce));
    let mut count = 0;
    for n in 1..=5u16 {
        count += h
            .publish(publisher, publish("u", b"m", QoS::AtLeastOnce, 100 + n))
            .publishes(v3_sub)
            .len();
    }
    assert_eq!(count, 3);
}

fn numbered_payloads(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{i:04}")).collect()
}

fn publish_numbered(h: &mut Harness, publisher: ConnId, n: usize) {
    for (i, text) in numbered_payloads(n).into_iter().enumerate() {
        let mut message = publish("t", b"", QoS::AtLeastOnce, (i % 60_000) as u16 + 1);
        message.payload = Bytes::from(text);
        h.publish(publisher, message);
    }
}

#[test]
fn a_queue_larger_than_a_page_is_delivered_completely_in_order() {
    let mut h = Harness::new();
    let publisher = offline_subscriber(&mut h);
    publish_numbered(&mut h, publisher, 700);
    assert_eq!(h.broker.stats().queued_messages, 700);
    let (_, received) = drain(&mut h, v5("sub", false, Some(3600)));
    assert_eq!(received, numbered_payloads(700));
    assert!(h.stored_queue("sub").is_empty());
    assert_eq!(h.broker.stats().queued_messages, 0);
}

#[test]
fn a_queue_larger_than_a_page_is_delivered_in_order_after_a_restart() {
    // After the restart nothing of the queue is in memory: every page comes from the store.
    let mut h = Harness::new();
    let publisher = offline_subscriber(&mut h);
    publish_numbered(&mut h, publisher, 600);
    h.restart_after(1);
    let (_, received) = drain(&mut h, v5("sub", false, Some(3600)));
    assert_eq!(received, numbered_payloads(600));
}

#[test]
fn a_queue_that_grows_past_a_page_while_online_is_delivered_in_order() {
    let mut h = Harness::new();
    // A persistent session (so the queue pages through the store) with a small window.
    let mut connect = v5_limits("sub", Some(4), None, None);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(3600);
    let sub = h.connect_ok(connect);
    h.subscribe(sub, subscribe(1, "t", QoS::AtLeastOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    let mut window = std::collections::VecDeque::new();
    let mut received = Vec::new();
    for (i, text) in numbered_payloads(600).into_iter().enumerate() {
        let mut message = publish("t", b"", QoS::AtLeastOnce, i as u16 + 1);
        message.payload = Bytes::from(text);
        let arrived = h.publish(publisher, message).publishes(sub);
        received.extend(payloads(&arrived));
        window.extend(arrived);
    }
    assert_eq!(window.len(), 4);
    assert_eq!(h.stored_queue("sub").len(), 596);
    // Acknowledge oldest first; every ack pulls the next message.
    while let Some(oldest) = window.pop_front() {
        let arrived = h.puback(sub, oldest.packet_id.unwrap()).publishes(sub);
        assert!(arrived.len() <= 1);
        received.extend(payloads(&arrived));
        window.extend(arrived);
    }
    assert_eq!(received, numbered_payloads(600));
    assert!(h.stored_queue("sub").is_empty());
}

#[test]
fn an_offline_session_keeps_its_queue_on_disk_not_in_memory() {
    let mut h = Harness::with_config(queue_config(
        Limit::AtMost(5),
        Limit::Unlimited,
        DropPolicy::DropOldest,
    ));
    let publisher = offline_subscriber(&mut h);
    for n in 1..=8u16 {
        h.publish(publisher, publish("t", b"m", QoS::AtLeastOnce, n));
    }
    let session = &h.broker.sessions[&client("sub")];
    assert_eq!(session.queue.bounds.count, 5);
    assert!(session.queue.head.is_empty(), "{:?}", session.queue.head);
    assert_eq!(h.stored_queue("sub").len(), 5);
}

#[test]
fn a_resent_message_carries_its_remaining_expiry() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", false, Some(3600)));
    h.subscribe(sub, subscribe(1, "t", QoS::AtLeastOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    let mut message = publish("t", b"m", QoS::AtLeastOnce, 1);
    message.properties.message_expiry_interval = Some(100);
    let first = h.publish(publisher, message).publish(sub);
    assert_eq!(first.properties.message_expiry_interval, Some(100));
    h.lose(sub);
    h.tick_after(30);
    let (sub, out) = h.connect(v5("sub", false, Some(3600)));
    let resent = out.publish(sub);
    assert!(resent.dup);
    assert_eq!(resent.properties.message_expiry_interval, Some(70));
}

#[test]
fn queued_messages_keep_their_subscription_identifiers() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", false, Some(3600)));
    h.subscribe(
        sub,
        subscribe_opts(
            1,
            "t/#",
            SubscriptionOptions::new(QoS::AtLeastOnce),
            Some(11),
        ),
    );
    h.lose(sub);
    let publisher = h.connect_ok(v5("pub", true, None));
    h.publish(publisher, publish("t/x", b"m", QoS::AtLeastOnce, 1));
    h.restart_after(1);
    let (sub, out) = h.connect(v5("sub", false, Some(3600)));
    assert_eq!(
        out.publish(sub).properties.subscription_identifiers,
        [sub_id(11)]
    );
}

#[test]
fn a_shared_group_with_every_member_offline_queues_for_one_member() {
    let mut h = Harness::new();
    for id in ["w1", "w2"] {
        let conn = h.connect_ok(v5(id, false, Some(3600)));
        h.subscribe(conn, subscribe(1, "$share/g/jobs", QoS::AtLeastOnce));
        h.lose(conn);
    }
    let publisher = h.connect_ok(v5("pub", true, None));
    for n in 1..=4u16 {
        h.publish(publisher, publish("jobs", b"job", QoS::AtLeastOnce, n));
    }
    let (q1, q2) = (h.stored_queue("w1").len(), h.stored_queue("w2").len());
    assert_eq!(q1 + q2, 4);
    assert_eq!((q1, q2), (2, 2));
}

#[test]
fn a_v5_puback_reports_quota_exceeded_when_a_full_queue_refused_the_message() {
    let mut h = Harness::with_config(queue_config(
        Limit::AtMost(1),
        Limit::Unlimited,
        DropPolicy::DropNewest,
    ));
    let publisher = offline_subscriber(&mut h);
    let out = h.publish(publisher, publish("t", b"1", QoS::AtLeastOnce, 1));
    let Packet::PubAck(ack) = out.only(publisher) else {
        panic!("expected PUBACK")
    };
    assert_eq!(
        ack.reason,
        berth_codec::PubAckReasonCode::Success,
        "queued: a promise"
    );
    let out = h.publish(publisher, publish("t", b"2", QoS::AtLeastOnce, 2));
    let Packet::PubAck(ack) = out.only(publisher) else {
        panic!("expected PUBACK")
    };
    assert_eq!(
        ack.reason,
        berth_codec::PubAckReasonCode::QuotaExceeded,
        "dropped: said so"
    );
    let out = h.publish(publisher, publish("nobody", b"3", QoS::AtLeastOnce, 3));
    let Packet::PubAck(ack) = out.only(publisher) else {
        panic!("expected PUBACK")
    };
    assert_eq!(
        ack.reason,
        berth_codec::PubAckReasonCode::NoMatchingSubscribers
    );
}

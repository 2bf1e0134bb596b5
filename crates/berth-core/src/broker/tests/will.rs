//! Will Messages: which endings publish them, Will Delay Interval, cancellation by resume, and
//! the session ending first.

use berth_codec::{PayloadFormat, QoS, UserProperty};

use super::*;

/// A watcher subscribed to `wills/#`, connected with a clean session.
fn watcher(h: &mut Harness) -> ConnId {
    let watcher = h.connect_ok(v5("watcher", true, None));
    h.subscribe(watcher, subscribe(1, "wills/#", QoS::AtLeastOnce));
    watcher
}

fn dev_with_will(h: &mut Harness, expiry: Option<u32>, delay: Option<u32>) -> ConnId {
    h.connect_ok(with_will(
        v5("dev", false, expiry),
        will("wills/dev", b"gone", delay),
    ))
}

#[test]
fn connection_lost_publishes_the_will() {
    let mut h = Harness::new();
    let watcher = watcher(&mut h);
    let dev = dev_with_will(&mut h, Some(60), None);
    let out = h.lose(dev);
    let delivered = out.publish(watcher);
    assert_eq!(delivered.topic.as_str(), "wills/dev");
    assert_eq!(delivered.qos, QoS::AtLeastOnce);
    assert_eq!(payloads(&[delivered]), ["gone"]);
    assert_eq!(h.broker.stats().wills_published_total, 1);
    // Once only.
    let out = h.tick_after(3600);
    assert!(out.publishes(watcher).is_empty());
}

#[test]
fn v3_will_is_published_on_connection_loss() {
    let mut h = Harness::new();
    let watcher = watcher(&mut h);
    let dev = h.connect_ok(with_will(v3("dev", true), will("wills/dev", b"gone", None)));
    let out = h.lose(dev);
    assert_eq!(payloads(&out.publishes(watcher)), ["gone"]);
}

#[test]
fn keep_alive_timeout_publishes_the_will_and_tells_a_v5_client() {
    let mut h = Harness::new();
    let watcher = watcher(&mut h);
    let dev = dev_with_will(&mut h, None, None);
    let out = h.event(Event::Closed {
        conn: dev,
        reason: CloseReason::KeepAliveTimeout,
    });
    assert_eq!(
        out.disconnect_reason(dev),
        Some(DisconnectReasonCode::KeepAliveTimeout)
    );
    assert!(out.closed(dev));
    assert_eq!(payloads(&out.publishes(watcher)), ["gone"]);
}

#[test]
fn normal_disconnect_discards_the_will() {
    let mut h = Harness::new();
    let watcher = watcher(&mut h);
    let dev = dev_with_will(&mut h, Some(60), Some(10));
    let out = h.disconnect_normal(dev);
    assert!(out.closed(dev));
    assert!(out.publishes(watcher).is_empty());
    let out = h.tick_after(10);
    assert!(out.publishes(watcher).is_empty());
    let out = h.tick_after(60);
    assert!(out.publishes(watcher).is_empty());
    assert_eq!(h.broker.stats().wills_published_total, 0);
    assert!(h.stored_session("dev").is_none());
    // The socket closing after DISCONNECT is not a connection loss.
    let out = h.lose(dev);
    assert!(out.actions.is_empty());
}

#[test]
fn disconnect_with_will_message_publishes_the_will() {
    let mut h = Harness::new();
    let watcher = watcher(&mut h);
    let dev = dev_with_will(&mut h, Some(60), None);
    let out = h.disconnect(
        dev,
        Disconnect::new(DisconnectReasonCode::DisconnectWithWillMessage),
    );
    assert!(out.closed(dev));
    assert_eq!(payloads(&out.publishes(watcher)), ["gone"]);
}

#[test]
fn a_server_side_protocol_error_publishes_the_will() {
    let mut h = Harness::new();
    let watcher = watcher(&mut h);
    let dev = dev_with_will(&mut h, Some(60), None);
    let mut bad = publish("x", b"", QoS::AtMostOnce, 0);
    bad.topic = TopicName::empty();
    bad.properties.topic_alias = NonZeroU16::new(3);
    let out = h.publish(dev, bad);
    assert_eq!(
        out.disconnect_reason(dev),
        Some(DisconnectReasonCode::ProtocolError)
    );
    assert_eq!(payloads(&out.publishes(watcher)), ["gone"]);
}

#[test]
fn will_delay_postpones_the_will_until_a_tick_after_the_delay() {
    let mut h = Harness::new();
    let watcher = watcher(&mut h);
    let dev = dev_with_will(&mut h, Some(300), Some(30));
    let out = h.lose(dev);
    assert!(out.publishes(watcher).is_empty());
    assert_eq!(h.broker.next_deadline(), Some(h.now.plus_secs(30)));
    // Scheduled in the store too (it must survive a crash).
    let stored = h.stored_session("dev").unwrap();
    assert_eq!(stored.record.will_due_at, Some(h.now.plus_secs(30)));
    let out = h.tick_after_millis(29_999);
    assert!(out.publishes(watcher).is_empty());
    let out = h.tick_after_millis(1);
    assert_eq!(payloads(&out.publishes(watcher)), ["gone"]);
    let stored = h.stored_session("dev").unwrap();
    assert_eq!(stored.record.will, None);
    assert_eq!(stored.record.will_due_at, None);
    // The session itself lives on.
    assert_eq!(h.broker.next_deadline(), Some(h.now.plus_secs(270)));
}

#[test]
fn will_is_published_when_the_session_ends_before_the_delay() {
    let mut h = Harness::new();
    let watcher = watcher(&mut h);
    let dev = dev_with_will(&mut h, Some(10), Some(60));
    let out = h.lose(dev);
    assert!(out.publishes(watcher).is_empty());
    let out = h.tick_after(9);
    assert!(out.publishes(watcher).is_empty());
    let out = h.tick_after(1);
    assert_eq!(payloads(&out.publishes(watcher)), ["gone"]);
    assert_eq!(h.broker.stats().sessions_expired_total, 1);
    assert_eq!(h.broker.stats().wills_published_total, 1);
}

#[test]
fn will_is_published_at_once_when_the_session_ends_with_the_connection() {
    let mut h = Harness::new();
    let watcher = watcher(&mut h);
    let dev = dev_with_will(&mut h, None, Some(60));
    let out = h.lose(dev);
    assert_eq!(payloads(&out.publishes(watcher)), ["gone"]);
}

#[test]
fn will_is_published_at_once_when_disconnect_sets_expiry_0() {
    let mut h = Harness::new();
    let watcher = watcher(&mut h);
    let dev = dev_with_will(&mut h, Some(300), Some(60));
    let out = h.disconnect(
        dev,
        disconnect(DisconnectReasonCode::DisconnectWithWillMessage, Some(0)),
    );
    assert_eq!(payloads(&out.publishes(watcher)), ["gone"]);
}

#[test]
fn resuming_within_the_will_delay_cancels_the_will() {
    let mut h = Harness::new();
    let watcher = watcher(&mut h);
    let dev = dev_with_will(&mut h, Some(300), Some(30));
    h.lose(dev);
    h.tick_after(10);
    let (dev, out) = h.connect(v5("dev", false, Some(300)));
    assert!(out.connack(dev).session_present);
    let out = h.tick_after(30);
    assert!(out.publishes(watcher).is_empty());
    assert_eq!(h.broker.stats().wills_published_total, 0);
    // The new connection has no will: losing it publishes nothing.
    let out = h.lose(dev);
    assert!(out.publishes(watcher).is_empty());
    let out = h.tick_after(300);
    assert!(out.publishes(watcher).is_empty());
}

#[test]
fn resuming_with_a_new_will_replaces_the_old_one() {
    let mut h = Harness::new();
    let watcher = watcher(&mut h);
    let dev = dev_with_will(&mut h, Some(300), Some(30));
    h.lose(dev);
    let dev = h.connect_ok(with_will(
        v5("dev", false, Some(300)),
        will("wills/dev", b"second", Some(5)),
    ));
    h.lose(dev);
    let out = h.tick_after(5);
    assert_eq!(payloads(&out.publishes(watcher)), ["second"]);
    let out = h.tick_after(30);
    assert!(out.publishes(watcher).is_empty());
}

#[test]
fn resuming_with_clean_start_after_the_loss_publishes_the_waiting_will() {
    let mut h = Harness::new();
    let watcher = watcher(&mut h);
    let dev = dev_with_will(&mut h, Some(300), Some(30));
    h.lose(dev);
    let (dev, out) = h.connect(v5("dev", true, Some(300)));
    assert!(!out.connack(dev).session_present);
    assert_eq!(payloads(&out.publishes(watcher)), ["gone"]);
}

#[test]
fn will_properties_qos_and_retain_are_published_as_given() {
    let mut h = Harness::new();
    let watcher = h.connect_ok(v5("watcher", true, None));
    h.subscribe(
        watcher,
        subscribe_opts(
            1,
            "wills/#",
            SubscriptionOptions {
                retain_as_published: true,
                ..SubscriptionOptions::new(QoS::ExactlyOnce)
            },
            None,
        ),
    );
    let mut last_will = will("wills/dev", b"{\"gone\":true}", None);
    last_will.qos = QoS::ExactlyOnce;
    last_will.retain = true;
    last_will.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
    last_will.properties.content_type = Some(mqtt("application/json"));
    last_will.properties.response_topic = Some(topic("replies/dev"));
    last_will.properties.correlation_data = Some(Bytes::from_static(b"\x01\x02"));
    last_will.properties.user_properties = vec![
        UserProperty::new(mqtt("k"), mqtt("v1")),
        UserProperty::new(mqtt("k"), mqtt("v2")),
    ];
    let dev = h.connect_ok(with_will(v5("dev", true, None), last_will.clone()));
    let out = h.lose(dev);
    let delivered = out.publish(watcher);
    assert_eq!(delivered.qos, QoS::ExactlyOnce);
    assert!(delivered.retain);
    let p = &delivered.properties;
    assert_eq!(p.payload_format_indicator, Some(PayloadFormat::Utf8));
    assert_eq!(p.content_type, last_will.properties.content_type);
    assert_eq!(p.response_topic, last_will.properties.response_topic);
    assert_eq!(p.correlation_data, last_will.properties.correlation_data);
    assert_eq!(p.user_properties, last_will.properties.user_properties);
    // A retained will is the retained message of its topic afterwards.
    let late = h.connect_ok(v5("late", true, None));
    let out = h.subscribe(late, subscribe(1, "wills/dev", QoS::AtLeastOnce));
    assert_eq!(payloads(&out.publishes(late)), ["{\"gone\":true}"]);
}

/// MQTT 5 §3.1.3.2.4: the will's Message Expiry Interval is its lifetime from when the server
/// publishes it, not from CONNECT.
#[test]
fn will_message_expiry_starts_when_the_will_is_published() {
    let mut h = Harness::new();
    let watcher = watcher(&mut h);
    let mut last_will = will("wills/dev", b"gone", Some(20));
    last_will.properties.message_expiry_interval = Some(10);
    let dev = h.connect_ok(with_will(v5("dev", false, Some(300)), last_will));
    // Connected much longer than the will's lifetime.
    h.tick_after(3600);
    h.lose(dev);
    let out = h.tick_after(20);
    let delivered = out.publish(watcher);
    assert_eq!(delivered.properties.message_expiry_interval, Some(10));
}

#[test]
fn will_of_a_persistent_session_is_stored_while_connected() {
    let mut h = Harness::new();
    dev_with_will(&mut h, Some(60), Some(5));
    let stored = h.stored_session("dev").unwrap();
    let stored_will = stored.record.will.expect("will stored");
    assert_eq!(stored_will.delay_secs, 5);
    assert_eq!(stored_will.message.topic.as_str(), "wills/dev");
    assert_eq!(stored.record.will_due_at, None);
}

#[test]
fn will_to_an_offline_persistent_subscriber_is_queued() {
    let mut h = Harness::new();
    let watcher = h.connect_ok(v5("watcher", false, Some(600)));
    h.subscribe(watcher, subscribe(1, "wills/#", QoS::AtLeastOnce));
    h.lose(watcher);
    let dev = dev_with_will(&mut h, Some(60), Some(30));
    h.lose(dev);
    h.tick_after(30);
    assert_eq!(h.stored_queue("watcher"), ["gone"]);
}

/// A client subscribed to its own will topic, taken over by its own reconnect: the will is
/// queued for the session during the CONNECT and delivered right after CONNACK.
#[test]
fn a_will_routed_to_the_session_being_resumed_is_delivered() {
    let mut h = Harness::new();
    let dev = h.connect_ok(with_will(
        v5("dev", false, Some(300)),
        will("wills/dev", b"gone", None),
    ));
    h.subscribe(dev, subscribe(1, "wills/#", QoS::AtLeastOnce));
    let (dev2, out) = h.connect(v5("dev", false, Some(300)));
    assert!(out.connack(dev2).session_present);
    assert_eq!(payloads(&out.publishes(dev2)), ["gone"]);
    assert_eq!(h.broker.stats().queued_messages, 0);
}

/// A will that came due while nobody ticked fires before the CONNECT that resumes the session
/// (the delay had ended: resuming can no longer cancel it).
#[test]
fn a_will_already_due_at_reconnect_is_published_not_cancelled() {
    let mut h = Harness::new();
    let watcher = watcher(&mut h);
    let dev = dev_with_will(&mut h, Some(300), Some(30));
    h.lose(dev);
    h.now = h.now.plus_secs(40);
    let (dev, out) = h.connect(v5("dev", false, Some(300)));
    assert!(out.connack(dev).session_present);
    assert_eq!(payloads(&out.publishes(watcher)), ["gone"]);
}

#[test]
fn keep_alive_timeout_of_a_v3_client_just_closes_and_publishes_the_will() {
    let mut h = Harness::new();
    let watcher = watcher(&mut h);
    let dev = h.connect_ok(with_will(
        v3("dev", false),
        will("wills/dev", b"gone", None),
    ));
    let out = h.event(Event::Closed {
        conn: dev,
        reason: CloseReason::KeepAliveTimeout,
    });
    assert_eq!(out.to(dev), [], "3.1.1 has no server DISCONNECT");
    assert!(out.closed(dev));
    assert_eq!(payloads(&out.publishes(watcher)), ["gone"]);
}

/// The will comes due in the same event as the watcher's takeover: it is sent on the old
/// connection (still attached when timers fire), and must then be in the window that the new
/// connection re-sends.
#[test]
fn a_will_sent_on_a_connection_being_taken_over_is_resent_on_the_new_one() {
    let mut h = Harness::new();
    let old = h.connect_ok(v5("watcher", false, Some(600)));
    h.subscribe(old, subscribe(1, "wills/#", QoS::AtLeastOnce));
    let dev = dev_with_will(&mut h, Some(300), Some(10));
    h.lose(dev);
    h.now = h.now.plus_secs(10);
    let (new, out) = h.connect(v5("watcher", false, Some(600)));
    assert!(out.closed(old));
    let resent = out.publish(new);
    assert_eq!(payloads(std::slice::from_ref(&resent)), ["gone"]);
    assert!(resent.dup);
    h.puback(new, resent.packet_id.unwrap());
    assert!(h.stored_inflight("watcher").is_empty());
}

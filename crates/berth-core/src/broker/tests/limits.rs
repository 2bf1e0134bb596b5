//! MQTT 5 limits in both directions (Receive Maximum, Topic Alias, Maximum Packet Size, Keep
//! Alive) and the properties a message carries from publisher to subscriber unchanged.

use berth_codec::{PayloadFormat, QoS, UserProperty};

use super::*;
use crate::stats::DropReason;

#[test]
fn connack_announces_the_server_limits() {
    let mut config = BrokerConfig::default();
    config.limits.receive_maximum = 10;
    config.limits.max_packet_size = 4096;
    config.limits.topic_alias_maximum = 5;
    let mut h = Harness::with_config(config);
    let (conn, out) = h.connect(v5("dev", true, None));
    let props = out.connack(conn).properties;
    assert_eq!(props.receive_maximum, NonZeroU16::new(10));
    assert_eq!(props.maximum_packet_size, NonZeroU32::new(4096));
    assert_eq!(props.topic_alias_maximum, Some(5));
    assert_eq!(props.server_keep_alive, None);
    assert_eq!(props.session_expiry_interval, None);
    assert_eq!(props.assigned_client_identifier, None);
}

#[test]
fn client_exceeding_our_receive_maximum_with_qos2_is_disconnected_0x93() {
    let mut config = BrokerConfig::default();
    config.limits.receive_maximum = 2;
    let mut h = Harness::with_config(config);
    let conn = h.connect_ok(v5("dev", true, None));
    for id in 1..=2 {
        let out = h.publish(conn, publish("t", b"m", QoS::ExactlyOnce, id));
        assert!(!out.closed(conn));
    }
    let out = h.publish(conn, publish("t", b"m", QoS::ExactlyOnce, 3));
    assert_eq!(
        out.disconnect_reason(conn),
        Some(DisconnectReasonCode::ReceiveMaximumExceeded)
    );
    assert!(out.closed(conn));
}

#[test]
fn released_qos2_messages_free_the_receive_window() {
    let mut config = BrokerConfig::default();
    config.limits.receive_maximum = 1;
    let mut h = Harness::with_config(config);
    let conn = h.connect_ok(v5("dev", true, None));
    for id in 1..=5 {
        let out = h.publish(conn, publish("t", b"m", QoS::ExactlyOnce, id));
        assert!(!out.closed(conn));
        h.pubrel(conn, pid(id));
    }
}

#[test]
fn inbound_topic_alias_above_our_maximum_is_disconnected_0x94() {
    let mut config = BrokerConfig::default();
    config.limits.topic_alias_maximum = 4;
    let mut h = Harness::with_config(config);
    let conn = h.connect_ok(v5("dev", true, None));
    let mut message = publish("t", b"m", QoS::AtMostOnce, 0);
    message.properties.topic_alias = NonZeroU16::new(5);
    let out = h.publish(conn, message);
    assert_eq!(
        out.disconnect_reason(conn),
        Some(DisconnectReasonCode::TopicAliasInvalid)
    );
    assert!(out.closed(conn));
}

#[test]
fn inbound_topic_alias_is_remembered_per_connection() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", true, None));
    h.subscribe(sub, subscribe(1, "#", QoS::AtMostOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    let mut first = publish("long/topic/name", b"1", QoS::AtMostOnce, 0);
    first.properties.topic_alias = NonZeroU16::new(1);
    let out = h.publish(publisher, first);
    assert_eq!(out.publish(sub).topic.as_str(), "long/topic/name");
    let mut second = publish("x", b"2", QoS::AtMostOnce, 0);
    second.topic = TopicName::empty();
    second.properties.topic_alias = NonZeroU16::new(1);
    let out = h.publish(publisher, second);
    let delivered = out.publish(sub);
    assert_eq!(delivered.topic.as_str(), "long/topic/name");
    assert_eq!(
        delivered.properties.topic_alias, None,
        "aliases are per hop"
    );
    // An alias can be re-mapped.
    let mut remap = publish("other", b"3", QoS::AtMostOnce, 0);
    remap.properties.topic_alias = NonZeroU16::new(1);
    h.publish(publisher, remap);
    let mut alias_only = publish("x", b"4", QoS::AtMostOnce, 0);
    alias_only.topic = TopicName::empty();
    alias_only.properties.topic_alias = NonZeroU16::new(1);
    let out = h.publish(publisher, alias_only);
    assert_eq!(out.publish(sub).topic.as_str(), "other");
}

#[test]
fn alias_only_publish_with_an_unknown_alias_is_a_protocol_error() {
    let mut h = Harness::new();
    let conn = h.connect_ok(v5("dev", true, None));
    let mut message = publish("x", b"m", QoS::AtLeastOnce, 1);
    message.topic = TopicName::empty();
    message.properties.topic_alias = NonZeroU16::new(2);
    let out = h.publish(conn, message);
    assert_eq!(
        out.disconnect_reason(conn),
        Some(DisconnectReasonCode::ProtocolError)
    );
    assert!(out.closed(conn));
    assert!(
        !out.to(conn).iter().any(|p| matches!(p, Packet::PubAck(_))),
        "never acknowledged"
    );
}

#[test]
fn outbound_topic_aliases_are_assigned_when_the_client_allows_them() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5_limits("sub", None, None, Some(2)));
    h.subscribe(sub, subscribe(1, "#", QoS::AtMostOnce));
    let plain = h.connect_ok(v5("plain", true, None));
    h.subscribe(plain, subscribe(1, "#", QoS::AtMostOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    let mut seen = Vec::new();
    for name in ["t1", "t1", "t2", "t3", "t2", "t3"] {
        let out = h.publish(publisher, publish(name, b"m", QoS::AtMostOnce, 0));
        let delivered = out.publish(sub);
        seen.push((
            delivered.topic.as_str().to_owned(),
            delivered.properties.topic_alias.map(|a| a.get()),
        ));
        // A client that allows no aliases never gets one.
        let to_plain = out.publish(plain);
        assert_eq!(to_plain.topic.as_str(), name);
        assert_eq!(to_plain.properties.topic_alias, None);
    }
    assert_eq!(
        seen,
        [
            ("t1".to_owned(), Some(1)),
            (String::new(), Some(1)),
            ("t2".to_owned(), Some(2)),
            ("t3".to_owned(), None), // both aliases are taken
            (String::new(), Some(2)),
            ("t3".to_owned(), None),
        ]
    );
}

#[test]
fn outbound_aliases_start_over_on_a_new_connection() {
    let mut h = Harness::new();
    let mut connect = v5_limits("sub", None, None, Some(2));
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(60);
    let sub = h.connect_ok(connect.clone());
    h.subscribe(sub, subscribe(1, "#", QoS::AtMostOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    h.publish(publisher, publish("t1", b"m", QoS::AtMostOnce, 0));
    h.lose(sub);
    let sub = h.connect_ok(connect);
    let out = h.publish(publisher, publish("t1", b"m", QoS::AtMostOnce, 0));
    let delivered = out.publish(sub);
    assert_eq!(
        delivered.topic.as_str(),
        "t1",
        "topic sent again with its alias"
    );
    assert_eq!(delivered.properties.topic_alias, NonZeroU16::new(1));
}

#[test]
fn messages_larger_than_the_clients_maximum_packet_size_are_not_sent() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5_limits("sub", Some(1), Some(64), None));
    h.subscribe(sub, subscribe(1, "t", QoS::AtLeastOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    let big: &'static [u8] = &[b'x'; 100];
    let out = h.publish(publisher, publish("t", big, QoS::AtLeastOnce, 1));
    assert!(out.publishes(sub).is_empty());
    assert_eq!(
        h.broker
            .stats()
            .dropped_total(DropReason::TooLargeForClient),
        1
    );
    // The dropped message does not hold the (single-slot) window.
    let out = h.publish(publisher, publish("t", b"small", QoS::AtLeastOnce, 2));
    assert_eq!(payloads(&out.publishes(sub)), ["small"]);
    let out = h.publish(publisher, publish("t", big, QoS::AtMostOnce, 0));
    assert!(out.publishes(sub).is_empty());
    assert_eq!(
        h.broker
            .stats()
            .dropped_total(DropReason::TooLargeForClient),
        2
    );
}

#[test]
fn server_keep_alive_is_sent_when_the_client_asks_for_more_than_the_maximum() {
    let mut config = BrokerConfig::default();
    config.limits.max_keep_alive = 30;
    let mut h = Harness::with_config(config);
    let mut connect = v5("a", true, None);
    connect.keep_alive = 60;
    let (conn, out) = h.connect(connect);
    assert_eq!(out.connack(conn).properties.server_keep_alive, Some(30));
    let mut connect = v5("b", true, None);
    connect.keep_alive = 20;
    let (conn, out) = h.connect(connect);
    assert_eq!(out.connack(conn).properties.server_keep_alive, None);
    let mut connect = v5("c", true, None);
    connect.keep_alive = 30;
    let (conn, out) = h.connect(connect);
    assert_eq!(out.connack(conn).properties.server_keep_alive, None);
}

#[test]
fn message_properties_are_forwarded_unchanged() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", true, None));
    h.subscribe(sub, subscribe(1, "req", QoS::AtLeastOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    let mut message = publish("req", b"{}", QoS::AtLeastOnce, 1);
    let user_properties = vec![
        UserProperty::new(mqtt("z"), mqtt("1")),
        UserProperty::new(mqtt("a"), mqtt("2")),
        UserProperty::new(mqtt("z"), mqtt("3")),
    ];
    message.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
    message.properties.content_type = Some(mqtt("application/json"));
    message.properties.response_topic = Some(topic("resp/pub"));
    message.properties.correlation_data = Some(Bytes::from_static(b"\x00\xffid"));
    message.properties.user_properties = user_properties.clone();
    let out = h.publish(publisher, message.clone());
    let delivered = out.publish(sub);
    assert_eq!(delivered.payload, message.payload);
    let p = &delivered.properties;
    assert_eq!(p.payload_format_indicator, Some(PayloadFormat::Utf8));
    assert_eq!(p.content_type, message.properties.content_type);
    assert_eq!(p.response_topic, message.properties.response_topic);
    assert_eq!(p.correlation_data, message.properties.correlation_data);
    assert_eq!(p.user_properties, user_properties);
    assert_eq!(p.message_expiry_interval, None);
}

#[test]
fn message_properties_survive_the_offline_queue() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", false, Some(60)));
    h.subscribe(sub, subscribe(1, "req", QoS::AtLeastOnce));
    h.lose(sub);
    let publisher = h.connect_ok(v5("pub", true, None));
    let mut message = publish("req", b"{}", QoS::AtLeastOnce, 1);
    message.properties.content_type = Some(mqtt("application/json"));
    message.properties.correlation_data = Some(Bytes::from_static(b"c"));
    message.properties.user_properties = vec![UserProperty::new(mqtt("k"), mqtt("v"))];
    h.publish(publisher, message.clone());
    let (sub, out) = h.connect(v5("sub", false, Some(60)));
    let delivered = out.publish(sub);
    assert_eq!(
        delivered.properties.content_type,
        message.properties.content_type
    );
    assert_eq!(
        delivered.properties.correlation_data,
        message.properties.correlation_data
    );
    assert_eq!(
        delivered.properties.user_properties,
        message.properties.user_properties
    );
}

/// [MQTT-3.1.2-25]: a message too large for the client is discarded "as if delivered", also
/// when it is an un-acknowledged message to re-send on resume: it must not hold a window slot.
#[test]
fn an_inflight_message_too_large_for_the_resumed_connection_is_discarded() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", false, Some(60)));
    h.subscribe(sub, subscribe(1, "t", QoS::AtLeastOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    let big: &'static [u8] = &[b'x'; 100];
    let out = h.publish(publisher, publish("t", big, QoS::AtLeastOnce, 1));
    assert_eq!(out.publishes(sub).len(), 1);
    h.lose(sub);

    let mut connect = v5_limits("sub", Some(1), Some(64), None);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(60);
    let (sub, out) = h.connect(connect);
    assert!(out.connack(sub).session_present);
    assert!(out.publishes(sub).is_empty());
    assert_eq!(
        h.broker
            .stats()
            .dropped_total(DropReason::TooLargeForClient),
        1
    );
    assert!(h.stored_inflight("sub").is_empty());
    let out = h.publish(publisher, publish("t", b"small", QoS::AtLeastOnce, 2));
    assert_eq!(payloads(&out.publishes(sub)), ["small"]);
}

#[test]
fn a_connection_publishing_faster_than_the_publish_rate_is_closed_with_0x96() {
    let mut config = BrokerConfig::default();
    config.limits.publish_rate = crate::Limit::AtMost(5);
    let mut h = Harness::with_config(config);
    let fast = h.connect_ok(v5("fast", true, None));
    // A second's worth at once.
    for id in 1..=5 {
        let out = h.publish(fast, publish("t", b"m", QoS::AtLeastOnce, id));
        assert!(!out.closed(fast), "publish {id} is within the burst");
    }
    let out = h.publish(fast, publish("t", b"m", QoS::AtLeastOnce, 6));
    assert_closed_over_the_rate(&out, fast, 6);
    assert_eq!(h.broker.stats().publish_rate_exceeded_total, 1);

    // At the rate, a publisher goes on for as long as it likes.
    let steady = h.connect_ok(v3("steady", true));
    for id in 1..=20 {
        h.tick_after_millis(200);
        let out = h.publish(steady, publish("t", b"m", QoS::AtLeastOnce, id));
        assert!(!out.closed(steady), "publish {id} at 5/s");
    }
}

#[test]
fn a_connection_publishing_more_bytes_than_the_byte_rate_is_closed_with_0x96() {
    let mut config = BrokerConfig::default();
    // Ten PUBLISHes of topic "t" (1 byte) and 9 bytes of payload per second.
    config.limits.publish_rate_bytes = crate::Limit::AtMost(100);
    let mut h = Harness::with_config(config);
    let fast = h.connect_ok(v5("fast", true, None));
    // A second's worth at once.
    for id in 1..=10 {
        let out = h.publish(fast, publish("t", b"123456789", QoS::AtLeastOnce, id));
        assert!(!out.closed(fast), "publish {id} is within the burst");
    }
    let out = h.publish(fast, publish("t", b"123456789", QoS::AtLeastOnce, 11));
    assert_closed_over_the_rate(&out, fast, 11);
    let stats = h.broker.stats();
    assert_eq!(stats.publish_bytes_rate_exceeded_total, 1);
    assert_eq!(
        stats.publish_rate_exceeded_total, 0,
        "the message rate is not"
    );
    assert_eq!(stats.closed_total(crate::stats::CloseCause::RateLimited), 1);

    // At the rate, a publisher goes on for as long as it likes; 3.1.1 is closed without a word.
    let steady = h.connect_ok(v3("steady", true));
    for id in 1..=20 {
        h.tick_after_millis(100);
        let out = h.publish(steady, publish("t", b"123456789", QoS::AtLeastOnce, id));
        assert!(!out.closed(steady), "publish {id} at 100 B/s");
    }
    let big = h.publish(steady, publish("t", &[b'x'; 100], QoS::AtLeastOnce, 21));
    assert!(
        big.closed(steady),
        "101 bytes are more than a second's worth"
    );
    assert_eq!(
        big.disconnect_reason(steady),
        None,
        "3.1.1 has no DISCONNECT"
    );
    assert_eq!(h.broker.stats().publish_bytes_rate_exceeded_total, 2);
}

/// The connection of `fast` was closed with 0x96 (Message rate too high), and the PUBLISH with
/// id `refused` was not acknowledged: it comes again after a reconnect.
fn assert_closed_over_the_rate(out: &Out, fast: ConnId, refused: u16) {
    assert_eq!(
        out.disconnect_reason(fast),
        Some(DisconnectReasonCode::MessageRateTooHigh)
    );
    assert!(out.closed(fast));
    assert!(
        !out.to(fast)
            .iter()
            .any(|p| matches!(p, Packet::PubAck(ack) if ack.packet_id == pid(refused))),
        "the refused PUBLISH is not acknowledged: it comes again after a reconnect"
    );
}

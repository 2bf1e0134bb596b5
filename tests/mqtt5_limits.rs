//! MQTT 5 limits and properties: Receive Maximum both ways, Topic Alias both ways, Maximum Packet
//! Size both ways, Server Keep Alive, and application properties forwarded unchanged.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

use std::num::{NonZeroU16, NonZeroU32};
use std::time::{Duration, Instant};

use berth_codec::{
    DisconnectReasonCode, MqttString, Packet, PacketId, PayloadFormat, ProtocolVersion, PubRel,
    Publish, QoS, TopicName, UserProperty, encoded_len,
};
use berth_core::BrokerConfig;
use berth_e2e::client::{TestClient, connect_v5, message, text, topic};
use berth_e2e::metrics::{self, dropped};
use berth_e2e::server::TestServer;
use bytes::Bytes;

const QUIET: Duration = Duration::from_millis(300);

fn config(edit: impl FnOnce(&mut BrokerConfig)) -> BrokerConfig {
    let mut config = BrokerConfig::default();
    edit(&mut config);
    config
}

fn with_id(mut publish: Publish, n: u16) -> Publish {
    publish.packet_id = PacketId::new(n);
    publish
}

fn aliased(topic_text: &str, alias: u16, payload: &[u8]) -> Publish {
    let mut publish = message("x", payload, QoS::AtMostOnce);
    publish.topic = if topic_text.is_empty() {
        TopicName::empty()
    } else {
        topic(topic_text)
    };
    publish.properties.topic_alias = NonZeroU16::new(alias);
    publish
}

#[tokio::test]
async fn client_exceeding_our_receive_maximum_gets_0x93() {
    let server = TestServer::with_config(config(|c| c.limits.receive_maximum = 2)).await;
    let (mut client, connack) = TestClient::connect_v5(server.mqtt, "greedy", true, None).await;
    assert_eq!(connack.properties.receive_maximum, NonZeroU16::new(2));

    // Two QoS 2 exchanges left open (no PUBREL) use up the quota; releasing one frees a slot.
    for n in 1..=2 {
        client
            .send(Packet::Publish(with_id(
                message("rm/t", b"x", QoS::ExactlyOnce),
                n,
            )))
            .await;
        assert!(matches!(client.recv().await, Packet::PubRec(_)));
    }
    client
        .send(Packet::PubRel(PubRel::new(PacketId::new(1).unwrap())))
        .await;
    assert!(matches!(client.recv().await, Packet::PubComp(_)));
    client
        .send(Packet::Publish(with_id(
            message("rm/t", b"x", QoS::ExactlyOnce),
            3,
        )))
        .await;
    assert!(matches!(client.recv().await, Packet::PubRec(_)));
    // Now 2 and 3 are open: a third one is over the limit.
    client
        .send(Packet::Publish(with_id(
            message("rm/t", b"x", QoS::ExactlyOnce),
            4,
        )))
        .await;
    client
        .expect_disconnect(DisconnectReasonCode::ReceiveMaximumExceeded)
        .await;
    server.stop().await;
}

#[tokio::test]
async fn we_respect_the_clients_receive_maximum() {
    let server = TestServer::start_default().await;
    let mut connect = connect_v5("slow", true, None);
    connect.properties.receive_maximum = NonZeroU16::new(1);
    let (mut sub, _) = TestClient::connect_with(server.mqtt, connect).await;
    sub.subscribe("slow/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = TestClient::connect_v5(server.mqtt, "fast", true, None).await;
    for n in 1..=3 {
        publisher
            .publish("slow/t", format!("m{n}").as_bytes(), QoS::AtLeastOnce)
            .await;
    }
    for n in 1..=3 {
        let got = sub.recv_publish().await;
        assert_eq!(text(&got), format!("m{n}"));
        sub.expect_nothing(QUIET).await; // one unacknowledged at a time
        sub.ack(&got).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn max_inflight_caps_the_send_window() {
    let server = TestServer::with_config(config(|c| c.limits.max_inflight = 2)).await;
    let (mut sub, _) = TestClient::connect_v5(server.mqtt, "window", true, None).await;
    sub.subscribe("win/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = TestClient::connect_v5(server.mqtt, "win-pub", true, None).await;
    for n in 1..=3 {
        publisher
            .publish("win/t", format!("m{n}").as_bytes(), QoS::AtLeastOnce)
            .await;
    }
    let first = sub.recv_publish().await;
    let second = sub.recv_publish().await;
    sub.expect_nothing(QUIET).await;
    sub.ack(&first).await;
    assert_eq!(text(&sub.recv_publish_and_ack().await), "m3");
    sub.ack(&second).await;
    server.stop().await;
}

#[tokio::test]
async fn topic_alias_from_the_client() {
    let server = TestServer::start_default().await;
    let (mut sub, _) = TestClient::connect_v5(server.mqtt, "ta-sub", true, None).await;
    sub.subscribe("ta/#", QoS::AtMostOnce).await;
    let (mut publisher, connack) = TestClient::connect_v5(server.mqtt, "ta-pub", true, None).await;
    assert_eq!(connack.properties.topic_alias_maximum, Some(64));

    publisher.publish_with(aliased("ta/x", 1, b"set")).await;
    publisher.publish_with(aliased("", 1, b"use")).await;
    publisher.publish_with(aliased("ta/y", 1, b"remap")).await;
    publisher.publish_with(aliased("", 1, b"use again")).await;
    let got: Vec<(String, String)> = sub
        .drain_publishes(QUIET)
        .await
        .iter()
        .map(|p| (p.topic.as_str().to_owned(), text(p)))
        .collect();
    let expected = [
        ("ta/x", "set"),
        ("ta/x", "use"),
        ("ta/y", "remap"),
        ("ta/y", "use again"),
    ];
    assert_eq!(got, expected.map(|(t, p)| (t.to_owned(), p.to_owned())));
    server.stop().await;
}

#[tokio::test]
async fn topic_alias_above_our_maximum_gets_0x94() {
    let server = TestServer::with_config(config(|c| c.limits.topic_alias_maximum = 2)).await;
    let (mut client, connack) = TestClient::connect_v5(server.mqtt, "ta-big", true, None).await;
    assert_eq!(connack.properties.topic_alias_maximum, Some(2));
    client.send(Packet::Publish(aliased("ta/x", 3, b"x"))).await;
    client
        .expect_disconnect(DisconnectReasonCode::TopicAliasInvalid)
        .await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_topic_alias_is_a_protocol_error_and_aliases_end_with_the_connection() {
    let server = TestServer::start_default().await;
    let (mut client, _) = TestClient::connect_v5(server.mqtt, "ta-lost", false, Some(60)).await;
    client.publish_with(aliased("ta/x", 1, b"set")).await;
    client.disconnect().await;
    // Aliases are per connection, even when the session is resumed.
    let (mut client, connack) =
        TestClient::connect_v5(server.mqtt, "ta-lost", false, Some(60)).await;
    assert!(connack.session_present);
    client.send(Packet::Publish(aliased("", 1, b"use"))).await;
    client
        .expect_disconnect(DisconnectReasonCode::ProtocolError)
        .await;
    server.stop().await;
}

#[tokio::test]
async fn topic_alias_to_a_client_that_accepts_them() {
    let server = TestServer::start_default().await;
    let mut connect = connect_v5("ta-rx", true, None);
    connect.properties.topic_alias_maximum = Some(2);
    let (mut sub, _) = TestClient::connect_with(server.mqtt, connect).await;
    sub.subscribe("al/#", QoS::AtLeastOnce).await;
    let (mut plain, _) = TestClient::connect_v5(server.mqtt, "ta-plain", true, None).await;
    plain.subscribe("al/#", QoS::AtLeastOnce).await;
    let (mut publisher, _) = TestClient::connect_v5(server.mqtt, "ta-tx", true, None).await;
    let sequence = ["al/a", "al/a", "al/b", "al/c", "al/a", "al/b", "al/c"];
    for t in sequence {
        publisher.publish(t, t.as_bytes(), QoS::AtLeastOnce).await;
    }

    let mut aliases: std::collections::HashMap<u16, String> = Default::default();
    let mut resolved = Vec::new();
    let mut used_alias = 0;
    for publish in sub.drain_publishes(QUIET).await {
        let alias = publish.properties.topic_alias.map(NonZeroU16::get);
        let name = match alias {
            Some(a) => {
                assert!(a <= 2, "alias {a} above the client's Topic Alias Maximum");
                if publish.topic.is_empty() {
                    used_alias += 1;
                    aliases
                        .get(&a)
                        .cloned()
                        .expect("an alias the server set before")
                } else {
                    aliases.insert(a, publish.topic.as_str().to_owned());
                    publish.topic.as_str().to_owned()
                }
            }
            None => publish.topic.as_str().to_owned(),
        };
        assert_eq!(
            name,
            text(&publish),
            "the alias resolves to the published topic"
        );
        resolved.push(name);
    }
    assert_eq!(resolved, sequence);
    assert!(
        used_alias >= 3,
        "repeated topics are sent as aliases ({used_alias})"
    );
    // A client that did not ask for aliases never gets one.
    for publish in plain.drain_publishes(QUIET).await {
        assert_eq!(publish.properties.topic_alias, None);
        assert!(!publish.topic.is_empty());
    }
    server.stop().await;
}

#[tokio::test]
async fn client_packet_above_our_maximum_packet_size_gets_0x95() {
    let server = TestServer::with_config(config(|c| c.limits.max_packet_size = 128)).await;
    let (mut client, connack) = TestClient::connect_v5(server.mqtt, "big-talker", true, None).await;
    assert_eq!(connack.properties.maximum_packet_size, NonZeroU32::new(128));
    // Fits: a 100-byte payload.
    client
        .publish("mps/t", &[b'a'; 100], QoS::AtLeastOnce)
        .await;
    client
        .send(Packet::Publish(with_id(
            message("mps/t", &[b'b'; 200], QoS::AtLeastOnce),
            9,
        )))
        .await;
    client
        .expect_disconnect(DisconnectReasonCode::PacketTooLarge)
        .await;

    // Only that client pays for it.
    let (mut other, _) = TestClient::connect_v5(server.mqtt, "bystander", true, None).await;
    other.subscribe("mps/t", QoS::AtLeastOnce).await;
    other.publish("mps/t", b"fine", QoS::AtLeastOnce).await;
    assert_eq!(text(&other.recv_publish_and_ack().await), "fine");
    server.stop().await;
}

#[tokio::test]
async fn never_send_a_client_more_than_its_maximum_packet_size() {
    let server = TestServer::start_default().await;
    let mut connect = connect_v5("tiny", true, None);
    connect.properties.maximum_packet_size = NonZeroU32::new(64);
    let (mut sub, _) = TestClient::connect_with(server.mqtt, connect).await;
    sub.subscribe("tiny/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = TestClient::connect_v5(server.mqtt, "tiny-pub", true, None).await;
    publisher
        .publish("tiny/t", &[b'x'; 100], QoS::AtLeastOnce)
        .await;
    publisher
        .publish("tiny/t", &[b'y'; 100], QoS::AtMostOnce)
        .await;
    publisher
        .publish("tiny/t", b"small", QoS::AtLeastOnce)
        .await;
    let got = sub.drain_publishes(QUIET).await;
    assert_eq!(got.iter().map(text).collect::<Vec<_>>(), ["small"]);
    for publish in &got {
        let len = encoded_len(&Packet::Publish(publish.clone()), ProtocolVersion::V5).unwrap();
        assert!(len <= 64, "{len} bytes sent to a client that allows 64");
    }
    metrics::wait_for(server.http, &dropped("too_large_for_client"), 2).await;
    server.stop().await;
}

#[tokio::test]
async fn server_keep_alive_lowers_a_long_keep_alive_and_is_enforced() {
    let server = TestServer::with_config(config(|c| c.limits.max_keep_alive = 1)).await;
    let mut connect = connect_v5("sleepy", true, None);
    connect.keep_alive = 600;
    let (mut client, connack) = TestClient::connect_with(server.mqtt, connect).await;
    assert_eq!(connack.properties.server_keep_alive, Some(1));
    let connected = Instant::now();
    client
        .expect_disconnect(DisconnectReasonCode::KeepAliveTimeout)
        .await;
    let waited = connected.elapsed();
    assert!(
        (Duration::from_millis(1400)..Duration::from_millis(2500)).contains(&waited),
        "{waited:?}"
    );

    // Keep alive 0 ("no keep alive") is also more than this server allows.
    let mut connect = connect_v5("no-ka", true, None);
    connect.keep_alive = 0;
    let (_client, connack) = TestClient::connect_with(server.mqtt, connect).await;
    assert_eq!(connack.properties.server_keep_alive, Some(1));
    server.stop().await;
}

#[tokio::test]
async fn keep_alive_within_the_limit_is_accepted_as_is() {
    let server = TestServer::with_config(config(|c| c.limits.max_keep_alive = 30)).await;
    let mut connect = connect_v5("ok-ka", true, None);
    connect.keep_alive = 30;
    let (_client, connack) = TestClient::connect_with(server.mqtt, connect).await;
    assert_eq!(connack.properties.server_keep_alive, None);
    server.stop().await;
}

#[tokio::test]
async fn application_properties_are_forwarded_unchanged() {
    let server = TestServer::start_default().await;
    let (mut sub, _) = TestClient::connect_v5(server.mqtt, "props-sub", true, None).await;
    sub.subscribe("props/t", QoS::AtLeastOnce).await;
    let (mut v3, _) =
        TestClient::connect(server.mqtt, ProtocolVersion::V3_1_1, "props-311", true).await;
    v3.subscribe("props/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = TestClient::connect_v5(server.mqtt, "props-pub", true, None).await;

    let s = |text: &str| MqttString::new(text).unwrap();
    let mut publish = message("props/t", "{\"t\":21}".as_bytes(), QoS::AtLeastOnce);
    publish.properties.user_properties = vec![
        UserProperty::new(s("k"), s("first")),
        UserProperty::new(s("k"), s("second")),
        UserProperty::new(s("trace"), s("abc")),
    ];
    publish.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
    publish.properties.content_type = Some(s("application/json"));
    publish.properties.response_topic = Some(topic("props/reply"));
    publish.properties.correlation_data = Some(Bytes::from_static(b"\x00\xffreq-1"));
    publish.properties.topic_alias = NonZeroU16::new(5); // one hop only: not forwarded
    publisher.publish_with(publish.clone()).await;

    let got = sub.recv_publish_and_ack().await;
    let mut expected = publish.properties.clone();
    expected.topic_alias = None;
    assert_eq!(got.properties, expected);
    assert_eq!(got.payload, publish.payload);
    assert_eq!(got.topic.as_str(), "props/t");
    let got = v3.recv_publish_and_ack().await;
    assert_eq!(
        got.payload, publish.payload,
        "3.1.1 subscribers get the payload"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unacked_message_too_large_for_the_resumed_connection_is_discarded_not_stuck() {
    let server = TestServer::start_default().await;
    let (mut sub, _) = TestClient::connect_v5(server.mqtt, "shrinking", false, Some(60)).await;
    sub.subscribe("shrink/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = TestClient::connect_v5(server.mqtt, "shrink-pub", true, None).await;
    publisher
        .publish("shrink/t", &[b'x'; 100], QoS::AtLeastOnce)
        .await;
    let big = sub.recv_publish().await;
    assert_eq!(big.payload.len(), 100);
    sub.abort(); // not acknowledged

    // Back with a Maximum Packet Size the unacknowledged message does not fit, and room for one.
    let mut connect = connect_v5("shrinking", false, Some(60));
    connect.properties.maximum_packet_size = NonZeroU32::new(64);
    connect.properties.receive_maximum = NonZeroU16::new(1);
    let (mut sub, connack) = TestClient::connect_with(server.mqtt, connect).await;
    assert!(connack.session_present);
    publisher
        .publish("shrink/t", b"small", QoS::AtLeastOnce)
        .await;
    // §3.1.2.11.4: discarded as if delivered, so it does not hold the window.
    let got = sub.drain_publishes(QUIET).await;
    assert_eq!(got.iter().map(text).collect::<Vec<_>>(), ["small"]);
    server.stop().await;
}

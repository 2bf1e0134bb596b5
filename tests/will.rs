//! Will Messages: published on an abnormal close (socket dropped, keep-alive timeout, DISCONNECT
//! 0x04), not on a normal DISCONNECT; the MQTT 5 Will Delay Interval, its cancellation by a resume,
//! and the will going out early when the session ends first.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use berth_codec::{
    Connect, Disconnect, DisconnectReasonCode, MqttString, Packet, PayloadFormat, ProtocolVersion,
    QoS, UserProperty,
};
use berth_e2e::client::{TestClient, connect_packet, connect_v5, text, will};
use berth_e2e::server::TestServer;

const QUIET: Duration = Duration::from_millis(400);

async fn observer(addr: SocketAddr) -> TestClient {
    let (mut observer, _) = TestClient::connect_v5(addr, "observer", true, None).await;
    observer.subscribe("wills/#", QoS::ExactlyOnce).await;
    observer
}

/// A v5 CONNECT for `id` with a will on `wills/{id}` after `delay` seconds.
fn with_will(id: &str, session_expiry: Option<u32>, delay: u32) -> Connect {
    let mut connect = connect_v5(id, false, session_expiry);
    let mut last_will = will(
        &format!("wills/{id}"),
        &format!("{id} is gone"),
        QoS::AtLeastOnce,
    );
    last_will.properties.will_delay_interval = (delay > 0).then_some(delay);
    connect.will = Some(last_will);
    connect
}

async fn connect(addr: SocketAddr, connect: Connect) -> TestClient {
    let (client, connack) = TestClient::connect_with(addr, connect).await;
    assert!(!connack.reason.is_error());
    client
}

#[tokio::test]
async fn dropping_the_socket_publishes_the_will_v311() {
    let server = TestServer::start_default().await;
    let mut observer = observer(server.mqtt).await;
    let mut connect_311 = connect_packet(ProtocolVersion::V3_1_1, "dev311", true);
    connect_311.will = Some(will("wills/dev311", "dev311 is gone", QoS::ExactlyOnce));
    connect(server.mqtt, connect_311).await.abort();
    let got = observer.recv_publish_and_ack().await;
    assert_eq!(
        (got.topic.as_str(), text(&got).as_str()),
        ("wills/dev311", "dev311 is gone")
    );
    assert_eq!(got.qos, QoS::ExactlyOnce);
    assert!(!got.retain);
    observer.expect_nothing(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn dropping_the_socket_publishes_the_will_v5_with_its_properties() {
    let server = TestServer::start_default().await;
    let mut observer = observer(server.mqtt).await;
    let mut connect_5 = with_will("dev5", None, 0);
    let props = &mut connect_5.will.as_mut().unwrap().properties;
    props.content_type = Some(MqttString::new("text/plain").unwrap());
    props.payload_format_indicator = Some(PayloadFormat::Utf8);
    props.user_properties = vec![UserProperty::new(
        MqttString::new("site").unwrap(),
        MqttString::new("b7").unwrap(),
    )];
    props.correlation_data = Some(bytes::Bytes::from_static(b"\x00\x01"));
    props.response_topic = Some(berth_e2e::client::topic("replies/dev5"));
    connect(server.mqtt, connect_5).await.abort();

    let got = observer.recv_publish_and_ack().await;
    assert_eq!(
        (got.topic.as_str(), text(&got).as_str()),
        ("wills/dev5", "dev5 is gone")
    );
    assert_eq!(
        got.properties.content_type.as_ref().map(MqttString::as_str),
        Some("text/plain")
    );
    assert_eq!(
        got.properties.payload_format_indicator,
        Some(PayloadFormat::Utf8)
    );
    assert_eq!(got.properties.user_properties.len(), 1);
    assert_eq!(got.properties.user_properties[0].value.as_str(), "b7");
    assert_eq!(
        got.properties.correlation_data.as_deref(),
        Some(&b"\x00\x01"[..])
    );
    assert_eq!(
        got.properties.response_topic.as_ref().map(|t| t.as_str()),
        Some("replies/dev5")
    );
    server.stop().await;
}

#[tokio::test]
async fn normal_disconnect_discards_the_will() {
    let server = TestServer::start_default().await;
    let mut observer = observer(server.mqtt).await;
    connect(server.mqtt, with_will("polite5", Some(60), 0))
        .await
        .disconnect()
        .await;
    let mut connect_311 = connect_packet(ProtocolVersion::V3_1_1, "polite311", true);
    connect_311.will = Some(will("wills/polite311", "gone", QoS::AtLeastOnce));
    connect(server.mqtt, connect_311).await.disconnect().await;
    observer.expect_nothing(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn disconnect_with_will_message_publishes_it() {
    let server = TestServer::start_default().await;
    let mut observer = observer(server.mqtt).await;
    let client = connect(server.mqtt, with_will("leaving", None, 0)).await;
    client
        .disconnect_with(Disconnect::new(
            DisconnectReasonCode::DisconnectWithWillMessage,
        ))
        .await;
    assert_eq!(
        text(&observer.recv_publish_and_ack().await),
        "leaving is gone"
    );
    server.stop().await;
}

#[tokio::test]
async fn will_delay_is_respected() {
    let server = TestServer::start_default().await;
    let mut observer = observer(server.mqtt).await;
    let client = connect(server.mqtt, with_will("delayed", Some(60), 2)).await;
    let gone = Instant::now();
    client.abort();
    observer.expect_nothing(Duration::from_millis(1600)).await;
    let got = observer.recv_publish_and_ack().await;
    let waited = gone.elapsed();
    assert_eq!(text(&got), "delayed is gone");
    assert!(
        waited >= Duration::from_millis(1900),
        "published after {waited:?}, before the 2 s delay"
    );
    assert!(
        waited < Duration::from_secs(4),
        "published only after {waited:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn resuming_within_the_will_delay_cancels_the_will() {
    let server = TestServer::start_default().await;
    let mut observer = observer(server.mqtt).await;
    connect(server.mqtt, with_will("flaky", Some(60), 1))
        .await
        .abort();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Back before the delay ends, this time with a will without delay.
    let mut resume = with_will("flaky", Some(60), 0);
    resume.will.as_mut().unwrap().payload = bytes::Bytes::from_static(b"second will");
    let (client, connack) = TestClient::connect_with(server.mqtt, resume).await;
    assert!(connack.session_present);
    observer.expect_nothing(Duration::from_millis(1500)).await;
    // The will of the new connection is the one that counts now.
    client.abort();
    assert_eq!(text(&observer.recv_publish_and_ack().await), "second will");
    observer.expect_nothing(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn will_is_published_when_the_session_ends_before_the_delay() {
    let server = TestServer::start_default().await;
    let mut observer = observer(server.mqtt).await;

    // Session Expiry 0: the session ends with the connection, so the will goes out at once.
    connect(server.mqtt, with_will("no-session", None, 60))
        .await
        .abort();
    let got = tokio::time::timeout(Duration::from_secs(1), observer.recv_publish_and_ack())
        .await
        .expect("published when the session ends, not after 60 s");
    assert_eq!(text(&got), "no-session is gone");

    // Session Expiry 1 s, Will Delay 60 s: the will goes out when the session expires.
    let client = connect(server.mqtt, with_will("short-session", Some(1), 60)).await;
    let gone = Instant::now();
    client.abort();
    let got = observer.recv_publish_and_ack().await;
    let waited = gone.elapsed();
    assert_eq!(text(&got), "short-session is gone");
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    server.stop().await;
}

#[tokio::test]
async fn keep_alive_timeout_closes_with_0x8d_and_fires_the_will() {
    let server = TestServer::start_default().await;
    let mut observer = observer(server.mqtt).await;
    let mut silent = with_will("silent", None, 0);
    silent.keep_alive = 1;
    let mut client = connect(server.mqtt, silent).await;
    let connected = Instant::now();
    client
        .expect_disconnect(DisconnectReasonCode::KeepAliveTimeout)
        .await;
    let waited = connected.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "closed after {waited:?}, before 1.5 × keep alive"
    );
    assert!(
        waited < Duration::from_millis(2500),
        "closed only after {waited:?}"
    );
    assert_eq!(
        text(&observer.recv_publish_and_ack().await),
        "silent is gone"
    );
    server.stop().await;
}

#[tokio::test]
async fn keep_alive_timeout_v311_closes_and_fires_the_will() {
    let server = TestServer::start_default().await;
    let mut observer = observer(server.mqtt).await;
    let mut silent = connect_packet(ProtocolVersion::V3_1_1, "silent311", true);
    silent.keep_alive = 1;
    silent.will = Some(will(
        "wills/silent311",
        "silent311 is gone",
        QoS::AtMostOnce,
    ));
    let mut client = connect(server.mqtt, silent).await;
    let connected = Instant::now();
    assert!(
        client.expect_closed().await.is_empty(),
        "3.1.1 has no DISCONNECT from the server"
    );
    let waited = connected.elapsed();
    assert!(
        (Duration::from_millis(1400)..Duration::from_millis(2500)).contains(&waited),
        "{waited:?}"
    );
    assert_eq!(
        text(&observer.recv_publish_and_ack().await),
        "silent311 is gone"
    );
    server.stop().await;
}

#[tokio::test]
async fn pingreq_keeps_the_connection_alive() {
    let server = TestServer::start_default().await;
    let mut observer = observer(server.mqtt).await;
    let mut pinging = with_will("pinging", None, 0);
    pinging.keep_alive = 1;
    let mut client = connect(server.mqtt, pinging).await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        client.send(Packet::PingReq).await;
        assert_eq!(client.recv().await, Packet::PingResp);
    }
    observer.expect_nothing(Duration::from_millis(100)).await;
    client.disconnect().await;
    server.stop().await;
}

#[tokio::test]
async fn a_retained_will_becomes_the_retained_message() {
    let server = TestServer::start_default().await;
    let mut status = with_will("sensor", None, 0);
    status.will.as_mut().unwrap().retain = true;
    connect(server.mqtt, status).await.abort();
    berth_e2e::metrics::wait_for(server.http, "berth_wills_published_total", 1).await;

    let mut observer = observer(server.mqtt).await; // subscribes after the will went out
    let got = observer.recv_publish_and_ack().await;
    assert_eq!((text(&got).as_str(), got.retain), ("sensor is gone", true));
    server.stop().await;
}

#[tokio::test]
async fn will_message_expiry_counts_from_publication_not_from_connect() {
    let server = TestServer::start_default().await;
    let mut observer = observer(server.mqtt).await;
    let mut connect_5 = with_will("long-lived", None, 0);
    connect_5
        .will
        .as_mut()
        .unwrap()
        .properties
        .message_expiry_interval = Some(1);
    let client = connect(server.mqtt, connect_5).await;
    // Connected for longer than the will's Message Expiry Interval.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    client.abort();
    let got = observer.recv_publish_and_ack().await;
    assert_eq!(text(&got), "long-lived is gone");
    assert_eq!(
        got.properties.message_expiry_interval,
        Some(1),
        "the lifetime starts when it is published"
    );
    server.stop().await;
}

#[tokio::test]
async fn disconnect_with_will_and_no_session_sends_a_delayed_will_at_once() {
    let server = TestServer::start_default().await;
    let mut observer = observer(server.mqtt).await;
    // Will Delay 60 s, Session Expiry 0: the session ends with this DISCONNECT, and the will then.
    let client = connect(server.mqtt, with_will("quitter", None, 60)).await;
    client
        .disconnect_with(Disconnect::new(
            DisconnectReasonCode::DisconnectWithWillMessage,
        ))
        .await;
    let got = tokio::time::timeout(Duration::from_secs(1), observer.recv_publish_and_ack())
        .await
        .expect("published when the session ends");
    assert_eq!(text(&got), "quitter is gone");
    server.stop().await;
}

#[tokio::test]
async fn clean_start_on_an_offline_session_sends_its_pending_will_at_once() {
    let server = TestServer::start_default().await;
    let mut observer = observer(server.mqtt).await;
    connect(server.mqtt, with_will("restarted", Some(60), 30))
        .await
        .abort();
    observer.expect_nothing(Duration::from_millis(200)).await; // waiting for its delay
    // The device comes back with a clean start: the old session ends, and with it the delay.
    let (_client, connack) = TestClient::connect_v5(server.mqtt, "restarted", true, Some(60)).await;
    assert!(!connack.session_present);
    let got = tokio::time::timeout(Duration::from_secs(1), observer.recv_publish_and_ack())
        .await
        .expect("published when the old session ends");
    assert_eq!(text(&got), "restarted is gone");
    server.stop().await;
}

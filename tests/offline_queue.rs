//! The offline queue of a persistent session: order, QoS downgrade, QoS 0 only when configured,
//! count and byte limits with both drop policies, Message Expiry counting down while queued, and
//! the drops showing up in `/metrics`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

use std::time::Duration;

use berth_codec::{Publish, QoS};
use berth_core::{BrokerConfig, DropPolicy, Limit};
use berth_e2e::client::{TestClient, message, text};
use berth_e2e::metrics::{self, dropped};
use berth_e2e::server::TestServer;

const QUIET: Duration = Duration::from_millis(300);
const TOPIC: &str = "oq/t";

/// Creates the persistent session `oq-sub` subscribed to [`TOPIC`] at `qos`, offline.
async fn offline_subscriber(server: &TestServer, qos: QoS) {
    let (mut sub, _) = TestClient::connect_v5(server.mqtt, "oq-sub", false, Some(300)).await;
    sub.subscribe(TOPIC, qos).await;
    sub.disconnect().await;
}

async fn publisher(server: &TestServer) -> TestClient {
    TestClient::connect_v5(server.mqtt, "oq-pub", true, None)
        .await
        .0
}

/// Resumes `oq-sub` and takes everything it is sent (acknowledging each).
async fn resume_and_drain(server: &TestServer) -> Vec<Publish> {
    let (mut sub, connack) = TestClient::connect_v5(server.mqtt, "oq-sub", false, Some(300)).await;
    assert!(connack.session_present);
    sub.drain_publishes(QUIET).await
}

fn texts(publishes: &[Publish]) -> Vec<String> {
    publishes.iter().map(text).collect()
}

fn with_policy(max_messages: Limit, max_bytes: Limit, drop_policy: DropPolicy) -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.queue.max_messages = max_messages;
    config.queue.max_bytes = max_bytes;
    config.queue.drop_policy = drop_policy;
    config
}

#[tokio::test]
async fn qos1_and_qos2_are_queued_in_order_and_downgraded_qos0_is_not() {
    let server = TestServer::start_default().await;
    offline_subscriber(&server, QoS::AtLeastOnce).await;
    let mut publisher = publisher(&server).await;
    let sent = [
        ("a", QoS::ExactlyOnce),
        ("b", QoS::AtLeastOnce),
        ("c", QoS::ExactlyOnce),
        ("d", QoS::AtMostOnce),
        ("e", QoS::AtLeastOnce),
    ];
    for (payload, qos) in sent {
        publisher.publish(TOPIC, payload.as_bytes(), qos).await;
    }
    metrics::wait_for(server.http, "berth_queued_messages", 4).await;
    metrics::wait_for(server.http, &dropped("qos0_offline"), 1).await;

    let got = resume_and_drain(&server).await;
    assert_eq!(
        texts(&got),
        ["a", "b", "c", "e"],
        "QoS 1/2 in order; QoS 0 not queued"
    );
    assert!(
        got.iter().all(|p| p.qos == QoS::AtLeastOnce),
        "downgraded to the subscription's QoS 1"
    );
    server.stop().await;
}

#[tokio::test]
async fn queued_messages_are_not_upgraded() {
    let server = TestServer::start_default().await;
    offline_subscriber(&server, QoS::ExactlyOnce).await;
    let mut publisher = publisher(&server).await;
    publisher.publish(TOPIC, b"one", QoS::AtLeastOnce).await;
    publisher.publish(TOPIC, b"two", QoS::ExactlyOnce).await;
    let got = resume_and_drain(&server).await;
    let qos: Vec<QoS> = got.iter().map(|p| p.qos).collect();
    assert_eq!(qos, [QoS::AtLeastOnce, QoS::ExactlyOnce]);
    server.stop().await;
}

#[tokio::test]
async fn qos0_is_queued_when_configured() {
    let mut config = BrokerConfig::default();
    config.queue.queue_qos0 = true;
    let server = TestServer::with_config(config).await;
    offline_subscriber(&server, QoS::AtLeastOnce).await;
    let mut publisher = publisher(&server).await;
    publisher.publish(TOPIC, b"q1", QoS::AtLeastOnce).await;
    publisher.publish(TOPIC, b"q0", QoS::AtMostOnce).await;
    publisher
        .publish(TOPIC, b"q1 again", QoS::AtLeastOnce)
        .await;
    metrics::wait_for(server.http, "berth_queued_messages", 3).await;

    let got = resume_and_drain(&server).await;
    assert_eq!(texts(&got), ["q1", "q0", "q1 again"]);
    assert_eq!(got[1].qos, QoS::AtMostOnce);
    let text = metrics::scrape(server.http).await;
    assert_eq!(metrics::value(&text, &dropped("qos0_offline")), Some(0));
    server.stop().await;
}

async fn publish_numbered(server: &TestServer, count: usize) {
    let mut publisher = publisher(server).await;
    for n in 1..=count {
        publisher
            .publish(TOPIC, format!("m{n}").as_bytes(), QoS::AtLeastOnce)
            .await;
    }
}

#[tokio::test]
async fn count_limit_with_drop_newest_keeps_the_oldest() {
    let server = TestServer::with_config(with_policy(
        Limit::AtMost(3),
        Limit::Unlimited,
        DropPolicy::DropNewest,
    ))
    .await;
    offline_subscriber(&server, QoS::AtLeastOnce).await;
    publish_numbered(&server, 5).await;
    assert_eq!(
        metrics::wait_for(server.http, &dropped("queue_full"), 2).await,
        2
    );
    assert_eq!(texts(&resume_and_drain(&server).await), ["m1", "m2", "m3"]);
    server.stop().await;
}

#[tokio::test]
async fn count_limit_with_drop_oldest_keeps_the_newest() {
    let server = TestServer::with_config(with_policy(
        Limit::AtMost(3),
        Limit::Unlimited,
        DropPolicy::DropOldest,
    ))
    .await;
    offline_subscriber(&server, QoS::AtLeastOnce).await;
    publish_numbered(&server, 5).await;
    assert_eq!(
        metrics::wait_for(server.http, &dropped("queue_full"), 2).await,
        2
    );
    assert_eq!(texts(&resume_and_drain(&server).await), ["m3", "m4", "m5"]);
    server.stop().await;
}

/// Each message costs topic + payload bytes: "oq/t" (4) + "mN" (2) = 6; 13 bytes hold two.
#[tokio::test]
async fn byte_limit_with_drop_newest() {
    let server = TestServer::with_config(with_policy(
        Limit::Unlimited,
        Limit::AtMost(13),
        DropPolicy::DropNewest,
    ))
    .await;
    offline_subscriber(&server, QoS::AtLeastOnce).await;
    publish_numbered(&server, 4).await;
    assert_eq!(
        metrics::wait_for(server.http, &dropped("queue_full"), 2).await,
        2
    );
    assert_eq!(texts(&resume_and_drain(&server).await), ["m1", "m2"]);
    server.stop().await;
}

#[tokio::test]
async fn byte_limit_with_drop_oldest() {
    let server = TestServer::with_config(with_policy(
        Limit::Unlimited,
        Limit::AtMost(13),
        DropPolicy::DropOldest,
    ))
    .await;
    offline_subscriber(&server, QoS::AtLeastOnce).await;
    publish_numbered(&server, 4).await;
    // One message larger than the whole limit is dropped itself, not the queue in front of it.
    let mut publisher = publisher(&server).await;
    publisher
        .publish(TOPIC, &[b'x'; 64], QoS::AtLeastOnce)
        .await;
    assert_eq!(
        metrics::wait_for(server.http, &dropped("queue_full"), 3).await,
        3
    );
    assert_eq!(texts(&resume_and_drain(&server).await), ["m3", "m4"]);
    server.stop().await;
}

#[tokio::test]
async fn the_queue_accepts_again_once_drained() {
    let server = TestServer::with_config(with_policy(
        Limit::AtMost(2),
        Limit::Unlimited,
        DropPolicy::DropNewest,
    ))
    .await;
    offline_subscriber(&server, QoS::AtLeastOnce).await;
    publish_numbered(&server, 3).await;
    assert_eq!(texts(&resume_and_drain(&server).await), ["m1", "m2"]);
    // resume_and_drain left the session offline again (its connection was dropped).
    publish_numbered(&server, 2).await;
    assert_eq!(texts(&resume_and_drain(&server).await), ["m1", "m2"]);
    server.stop().await;
}

#[tokio::test]
async fn message_expiry_counts_down_while_queued_and_expired_messages_are_dropped() {
    let server = TestServer::start_default().await;
    offline_subscriber(&server, QoS::AtLeastOnce).await;
    let mut publisher = publisher(&server).await;
    let mut short = message(TOPIC, b"short", QoS::AtLeastOnce);
    short.properties.message_expiry_interval = Some(1);
    let mut long = message(TOPIC, b"long", QoS::AtLeastOnce);
    long.properties.message_expiry_interval = Some(30);
    publisher.publish_with(short).await;
    publisher.publish_with(long).await;
    publisher.publish(TOPIC, b"forever", QoS::AtLeastOnce).await;

    // Long enough for the 1 s message to expire and the 30 s one to lose a second.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let got = resume_and_drain(&server).await;
    assert_eq!(texts(&got), ["long", "forever"]);
    let left = got[0]
        .properties
        .message_expiry_interval
        .expect("the expiry is forwarded");
    assert!(
        (25..=29).contains(&left),
        "30 s minus the time spent queued, got {left}"
    );
    assert_eq!(got[1].properties.message_expiry_interval, None);
    metrics::wait_for(server.http, &dropped("expired"), 1).await;
    server.stop().await;
}

#[tokio::test]
async fn message_expiry_is_forwarded_to_online_subscribers() {
    let server = TestServer::start_default().await;
    let (mut sub, _) = TestClient::connect_v5(server.mqtt, "live-sub", true, None).await;
    sub.subscribe(TOPIC, QoS::AtLeastOnce).await;
    let mut publisher = publisher(&server).await;
    let mut expiring = message(TOPIC, b"soon", QoS::AtLeastOnce);
    expiring.properties.message_expiry_interval = Some(30);
    publisher.publish_with(expiring).await;
    let got = sub.recv_publish_and_ack().await;
    let left = got.properties.message_expiry_interval.expect("forwarded");
    assert!((29..=30).contains(&left), "{left}");
    server.stop().await;
}

//! Retained messages: set, replace, delete with an empty payload; Retain Handling 0/1/2; Retain As
//! Published; retained messages outliving their publisher's session; expiry.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

use std::net::SocketAddr;
use std::time::Duration;

use berth_codec::{
    ProtocolVersion, Publish, QoS, RetainHandling, SubAckReasonCode, SubscriptionOptions,
};
use berth_e2e::client::{TestClient, message, options, text};
use berth_e2e::metrics;
use berth_e2e::server::TestServer;

const QUIET: Duration = Duration::from_millis(300);

fn retained(topic: &str, payload: &[u8], qos: QoS) -> Publish {
    Publish {
        retain: true,
        ..message(topic, payload, qos)
    }
}

/// A fresh subscriber's view: everything it receives right after subscribing to `filter`.
async fn fresh_view(addr: SocketAddr, filter: &str) -> Vec<Publish> {
    let (mut sub, _) = TestClient::connect_v5(addr, "fresh", true, None).await;
    sub.subscribe(filter, QoS::AtLeastOnce).await;
    let got = sub.drain_publishes(QUIET).await;
    sub.disconnect().await;
    got
}

#[tokio::test]
async fn set_replace_and_delete() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut live, _) = TestClient::connect_v5(addr, "live", true, None).await;
    live.subscribe("r/a", QoS::AtLeastOnce).await;
    let (mut publisher, _) = TestClient::connect_v5(addr, "r-pub", true, None).await;

    publisher
        .publish_with(retained("r/a", b"v1", QoS::AtLeastOnce))
        .await;
    let got = fresh_view(addr, "r/a").await;
    assert_eq!(got.len(), 1);
    assert_eq!((text(&got[0]).as_str(), got[0].retain), ("v1", true));
    // A current subscriber gets it as a normal message (Retain As Published is off).
    let now = live.recv_publish_and_ack().await;
    assert_eq!((text(&now).as_str(), now.retain), ("v1", false));

    publisher
        .publish_with(retained("r/a", b"v2", QoS::AtLeastOnce))
        .await;
    let got = fresh_view(addr, "r/a").await;
    assert_eq!(
        got.iter().map(text).collect::<Vec<_>>(),
        ["v2"],
        "replaced, not added"
    );
    assert_eq!(text(&live.recv_publish_and_ack().await), "v2");
    metrics::wait_until(server.http, "berth_retained_messages", |n| n == 1).await;

    // An empty retained payload deletes it, and still reaches current subscribers.
    publisher
        .publish_with(retained("r/a", b"", QoS::AtLeastOnce))
        .await;
    let now = live.recv_publish_and_ack().await;
    assert!(now.payload.is_empty());
    assert!(fresh_view(addr, "r/a").await.is_empty(), "deleted");
    metrics::wait_until(server.http, "berth_retained_messages", |n| n == 0).await;
    server.stop().await;
}

#[tokio::test]
async fn retained_messages_for_wildcards_at_the_subscription_qos() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut publisher, _) =
        TestClient::connect(addr, ProtocolVersion::V3_1_1, "r-pub", true).await;
    publisher
        .publish_with(retained("house/1/temp", b"21", QoS::ExactlyOnce))
        .await;
    publisher
        .publish_with(retained("house/2/temp", b"19", QoS::AtMostOnce))
        .await;
    publisher
        .publish_with(retained("house/2/hum", b"40", QoS::AtLeastOnce))
        .await;

    let (mut sub, _) = TestClient::connect(addr, ProtocolVersion::V3_1_1, "r-sub", true).await;
    sub.subscribe("house/+/temp", QoS::AtLeastOnce).await;
    let mut got: Vec<(String, String, QoS, bool)> = sub
        .drain_publishes(QUIET)
        .await
        .iter()
        .map(|p| (p.topic.as_str().to_owned(), text(p), p.qos, p.retain))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("house/1/temp".into(), "21".into(), QoS::AtLeastOnce, true),
            ("house/2/temp".into(), "19".into(), QoS::AtMostOnce, true),
        ]
    );
    server.stop().await;
}

fn handling(rh: RetainHandling) -> SubscriptionOptions {
    SubscriptionOptions {
        retain_handling: rh,
        ..options(QoS::AtLeastOnce)
    }
}

#[tokio::test]
async fn retain_handling_0_1_2() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut publisher, _) = TestClient::connect_v5(addr, "r-pub", true, None).await;
    publisher
        .publish_with(retained("rh/t", b"state", QoS::AtLeastOnce))
        .await;
    let (mut sub, _) = TestClient::connect_v5(addr, "rh-sub", true, None).await;

    // 0: on every SUBSCRIBE, new or not.
    for _ in 0..2 {
        let suback = sub
            .subscribe_with(&[("rh/t", handling(RetainHandling::SendOnSubscribe))], None)
            .await;
        assert_eq!(suback.reason_codes, [SubAckReasonCode::GrantedQoS1]);
        assert_eq!(text(&sub.recv_publish_and_ack().await), "state");
        sub.expect_nothing(QUIET).await;
    }
    // 1: only when the subscription is new.
    sub.subscribe_with(
        &[("rh/+", handling(RetainHandling::SendIfNewSubscription))],
        None,
    )
    .await;
    assert_eq!(text(&sub.recv_publish_and_ack().await), "state");
    sub.subscribe_with(
        &[("rh/+", handling(RetainHandling::SendIfNewSubscription))],
        None,
    )
    .await;
    sub.expect_nothing(QUIET).await;
    // 2: never.
    sub.subscribe_with(&[("rh/#", handling(RetainHandling::DoNotSend))], None)
        .await;
    sub.expect_nothing(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn retain_as_published() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut keeps, _) = TestClient::connect_v5(addr, "rap-1", true, None).await;
    let rap = SubscriptionOptions {
        retain_as_published: true,
        ..options(QoS::AtLeastOnce)
    };
    keeps.subscribe_with(&[("rap/t", rap)], None).await;
    let (mut clears, _) = TestClient::connect_v5(addr, "rap-0", true, None).await;
    clears.subscribe("rap/t", QoS::AtLeastOnce).await;

    let (mut publisher, _) = TestClient::connect_v5(addr, "rap-pub", true, None).await;
    publisher
        .publish_with(retained("rap/t", b"flagged", QoS::AtLeastOnce))
        .await;
    publisher.publish("rap/t", b"plain", QoS::AtLeastOnce).await;

    let kept: Vec<bool> = [
        keeps.recv_publish_and_ack().await,
        keeps.recv_publish_and_ack().await,
    ]
    .iter()
    .map(|p| p.retain)
    .collect();
    assert_eq!(kept, [true, false], "RETAIN as published");
    let cleared: Vec<bool> = [
        clears.recv_publish_and_ack().await,
        clears.recv_publish_and_ack().await,
    ]
    .iter()
    .map(|p| p.retain)
    .collect();
    assert_eq!(cleared, [false, false], "RETAIN cleared on normal delivery");
    server.stop().await;
}

#[tokio::test]
async fn retained_messages_survive_the_publishers_session() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    // A session that ends with its connection, and one that expires after a second.
    let (mut gone, _) = TestClient::connect_v5(addr, "transient", true, None).await;
    gone.publish_with(retained("keep/a", b"from transient", QoS::AtLeastOnce))
        .await;
    gone.disconnect().await;
    let (mut expiring, _) = TestClient::connect_v5(addr, "expiring", true, Some(1)).await;
    expiring
        .publish_with(retained("keep/b", b"from expiring", QoS::AtLeastOnce))
        .await;
    expiring.abort();
    metrics::wait_for(server.http, "berth_sessions_expired_total", 1).await;

    let mut got: Vec<String> = fresh_view(addr, "keep/#").await.iter().map(text).collect();
    got.sort();
    assert_eq!(got, ["from expiring", "from transient"]);
    server.stop().await;
}

#[tokio::test]
async fn retained_message_expiry() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut publisher, _) = TestClient::connect_v5(addr, "exp-pub", true, None).await;
    let mut short = retained("rexp/short", b"short", QoS::AtLeastOnce);
    short.properties.message_expiry_interval = Some(1);
    let mut long = retained("rexp/long", b"long", QoS::AtLeastOnce);
    long.properties.message_expiry_interval = Some(30);
    publisher.publish_with(short).await;
    publisher.publish_with(long).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let got = fresh_view(addr, "rexp/#").await;
    assert_eq!(
        got.iter().map(text).collect::<Vec<_>>(),
        ["long"],
        "the expired one is not sent"
    );
    let left = got[0].properties.message_expiry_interval.unwrap();
    assert!(
        (25..=29).contains(&left),
        "the interval counts down while retained: {left}"
    );
    server.stop().await;
}

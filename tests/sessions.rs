//! Sessions end to end: Clean Session (3.1, 3.1.1), Clean Start + Session Expiry Interval (5.0),
//! Session Present, client identifiers, takeover and expiry. A real server on 127.0.0.1:0,
//! clients speaking raw MQTT.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

use std::time::{Duration, Instant};

use berth_codec::{
    ConnectReasonCode, Disconnect, DisconnectProperties, DisconnectReasonCode, Packet,
    ProtocolVersion, QoS,
};
use berth_core::{BrokerConfig, SessionExpiry};
use berth_e2e::client::{TestClient, connect_packet, connect_v5, text, will};
use berth_e2e::metrics;
use berth_e2e::server::TestServer;

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn v311_persistent_session_keeps_subscription_and_queues_qos1() {
    let server = TestServer::start_default().await;
    let (mut sub, connack) =
        TestClient::connect(server.mqtt, ProtocolVersion::V3_1_1, "device-1", false).await;
    assert!(!connack.session_present, "a new session is not present");
    sub.subscribe("fleet/+/cmd", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let (mut publisher, _) =
        TestClient::connect(server.mqtt, ProtocolVersion::V3_1_1, "ops", true).await;
    publisher
        .publish("fleet/1/cmd", b"first", QoS::AtLeastOnce)
        .await;
    publisher
        .publish("fleet/1/cmd", b"second", QoS::AtLeastOnce)
        .await;

    let (mut sub, connack) =
        TestClient::connect(server.mqtt, ProtocolVersion::V3_1_1, "device-1", false).await;
    assert!(connack.session_present, "the stored session is resumed");
    let first = sub.recv_publish_and_ack().await;
    let second = sub.recv_publish_and_ack().await;
    assert_eq!(
        (&first.payload[..], &second.payload[..]),
        (&b"first"[..], &b"second"[..])
    );
    assert_eq!(first.qos, QoS::AtLeastOnce);
    sub.disconnect().await;
    publisher.disconnect().await;
    server.stop().await;
}

#[tokio::test]
async fn v311_clean_session_1_discards_the_stored_session_and_keeps_none() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut sub, _) = TestClient::connect(addr, ProtocolVersion::V3_1_1, "c1", false).await;
    sub.subscribe("s/a", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    // Clean Session = 1: the stored session is discarded, and the new one ends with the connection.
    let (sub, connack) = TestClient::connect(addr, ProtocolVersion::V3_1_1, "c1", true).await;
    assert!(!connack.session_present);
    sub.disconnect().await;

    let (mut publisher, _) = TestClient::connect(addr, ProtocolVersion::V3_1_1, "pub", true).await;
    publisher.publish("s/a", b"lost", QoS::AtLeastOnce).await;

    let (mut sub, connack) = TestClient::connect(addr, ProtocolVersion::V3_1_1, "c1", false).await;
    assert!(!connack.session_present, "nothing was kept for c1");
    sub.expect_nothing(QUIET).await;
    publisher.publish("s/a", b"after", QoS::AtLeastOnce).await;
    sub.expect_nothing(QUIET).await; // the old subscription is gone too
    server.stop().await;
}

#[tokio::test]
async fn v31_clean_session_0_keeps_subscriptions_and_queues() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut sub, _) = TestClient::connect(addr, ProtocolVersion::V3_1, "legacy-1", false).await;
    sub.subscribe("legacy/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let (mut publisher, _) =
        TestClient::connect(addr, ProtocolVersion::V3_1, "legacy-pub", true).await;
    publisher
        .publish("legacy/x", b"kept", QoS::AtLeastOnce)
        .await;

    let (mut sub, _) = TestClient::connect(addr, ProtocolVersion::V3_1, "legacy-1", false).await;
    let got = sub.recv_publish_and_ack().await;
    assert_eq!(
        (got.topic.as_str(), text(&got).as_str()),
        ("legacy/x", "kept")
    );
    sub.disconnect().await;

    // Clean Session = 1 in 3.1: the session (and its subscription) is gone.
    let (sub, _) = TestClient::connect(addr, ProtocolVersion::V3_1, "legacy-1", true).await;
    sub.disconnect().await;
    publisher
        .publish("legacy/x", b"dropped", QoS::AtLeastOnce)
        .await;
    let (mut sub, _) = TestClient::connect(addr, ProtocolVersion::V3_1, "legacy-1", false).await;
    sub.expect_nothing(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn v5_clean_start_and_session_expiry_interval() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut sub, connack) = TestClient::connect_v5(addr, "d5", true, Some(300)).await;
    assert!(!connack.session_present);
    assert_eq!(
        connack.properties.session_expiry_interval, None,
        "300 s is granted as asked"
    );
    sub.subscribe("d5/in", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let (mut publisher, _) = TestClient::connect_v5(addr, "d5-pub", true, None).await;
    publisher
        .publish("d5/in", b"while away", QoS::AtLeastOnce)
        .await;

    // Clean Start = 0 resumes the session kept for 300 s.
    let (mut sub, connack) = TestClient::connect_v5(addr, "d5", false, Some(300)).await;
    assert!(connack.session_present);
    assert_eq!(text(&sub.recv_publish_and_ack().await), "while away");
    sub.disconnect().await;

    // Clean Start = 1 discards it: no Session Present, no subscription.
    let (mut sub, connack) = TestClient::connect_v5(addr, "d5", true, Some(300)).await;
    assert!(!connack.session_present);
    publisher
        .publish("d5/in", b"nobody", QoS::AtLeastOnce)
        .await;
    sub.expect_nothing(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn v5_without_session_expiry_the_session_ends_with_the_connection() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    for expiry in [None, Some(0)] {
        let (mut sub, _) = TestClient::connect_v5(addr, "short", false, expiry).await;
        sub.subscribe("short/t", QoS::AtLeastOnce).await;
        sub.disconnect().await;
        let (mut sub, connack) = TestClient::connect_v5(addr, "short", false, expiry).await;
        assert!(
            !connack.session_present,
            "expiry {expiry:?}: the session ended with the connection"
        );
        let (mut publisher, _) = TestClient::connect_v5(addr, "short-pub", true, None).await;
        publisher.publish("short/t", b"x", QoS::AtLeastOnce).await;
        sub.expect_nothing(QUIET).await;
        sub.disconnect().await;
        publisher.disconnect().await;
    }
    server.stop().await;
}

fn disconnect_setting_expiry(secs: u32) -> Disconnect {
    Disconnect {
        reason: DisconnectReasonCode::NormalDisconnection,
        properties: DisconnectProperties {
            session_expiry_interval: Some(secs),
            ..Default::default()
        },
    }
}

#[tokio::test]
async fn disconnect_may_not_raise_session_expiry_from_zero() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut client, _) = TestClient::connect_v5(addr, "zero", false, None).await;
    client.subscribe("zero/t", QoS::AtLeastOnce).await;
    client
        .send(Packet::Disconnect(disconnect_setting_expiry(60)))
        .await;
    client
        .expect_disconnect(DisconnectReasonCode::ProtocolError)
        .await;

    let (_client, connack) = TestClient::connect_v5(addr, "zero", false, None).await;
    assert!(
        !connack.session_present,
        "a session with expiry 0 cannot outlive its connection"
    );
    server.stop().await;
}

#[tokio::test]
async fn disconnect_may_lower_session_expiry_to_zero() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut client, _) = TestClient::connect_v5(addr, "lower", false, Some(300)).await;
    client.subscribe("lower/t", QoS::AtLeastOnce).await;
    client.disconnect_with(disconnect_setting_expiry(0)).await;

    let (_client, connack) = TestClient::connect_v5(addr, "lower", false, Some(300)).await;
    assert!(
        !connack.session_present,
        "DISCONNECT set the expiry to 0: the session ended"
    );
    server.stop().await;
}

#[tokio::test]
async fn disconnect_may_change_a_nonzero_session_expiry() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (client, _) = TestClient::connect_v5(addr, "change", false, Some(300)).await;
    let gone = Instant::now();
    client.disconnect_with(disconnect_setting_expiry(1)).await;
    metrics::wait_for(server.http, "berth_sessions_expired_total", 1).await;
    assert!(
        gone.elapsed() >= Duration::from_millis(900),
        "expired after {:?}",
        gone.elapsed()
    );
    let (_client, connack) = TestClient::connect_v5(addr, "change", false, Some(300)).await;
    assert!(!connack.session_present);
    server.stop().await;
}

#[tokio::test]
async fn v5_empty_client_id_gets_an_assigned_client_identifier() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (_a, connack_a) = TestClient::connect_v5(addr, "", true, None).await;
    let (_b, connack_b) = TestClient::connect_v5(addr, "", true, None).await;
    let id_a = connack_a
        .properties
        .assigned_client_identifier
        .expect("assigned id");
    let id_b = connack_b
        .properties
        .assigned_client_identifier
        .expect("assigned id");
    assert!(!id_a.is_empty());
    assert_ne!(id_a, id_b, "every connection gets its own identifier");

    // The assigned identifier names a real session that can be resumed.
    let (mut c, connack) = TestClient::connect_v5(addr, "", false, Some(60)).await;
    let assigned = connack
        .properties
        .assigned_client_identifier
        .expect("assigned id");
    c.subscribe("assigned/t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let (mut publisher, _) = TestClient::connect_v5(addr, "assigned-pub", true, None).await;
    publisher
        .publish("assigned/t", b"for you", QoS::AtLeastOnce)
        .await;
    let (mut c, connack) = TestClient::connect_v5(addr, assigned.as_str(), false, Some(60)).await;
    assert!(connack.session_present);
    assert_eq!(
        connack.properties.assigned_client_identifier, None,
        "only assigned for an empty id"
    );
    assert_eq!(text(&c.recv_publish_and_ack().await), "for you");
    server.stop().await;
}

#[tokio::test]
async fn v311_empty_client_id_needs_clean_session() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut refused, connack) =
        TestClient::connect_with(addr, connect_packet(ProtocolVersion::V3_1_1, "", false)).await;
    // 3.1.1 §3.1.3.1: CONNACK return code 0x02 (identifier rejected), then close.
    assert_eq!(connack.reason, ConnectReasonCode::ClientIdentifierNotValid);
    assert_eq!(connack.reason.v3_return_code(), 0x02);
    assert!(!connack.session_present);
    assert!(refused.expect_closed().await.is_empty());

    let (accepted, connack) = TestClient::connect(addr, ProtocolVersion::V3_1_1, "", true).await;
    assert!(!connack.session_present);
    accepted.disconnect().await;
    server.stop().await;
}

#[tokio::test]
async fn v311_refusal_is_exactly_the_spec_bytes() {
    let server = TestServer::start_default().await;
    let mut raw = TestClient::open(server.mqtt, ProtocolVersion::V3_1_1).await;
    raw.send(Packet::Connect(Box::new(connect_packet(
        ProtocolVersion::V3_1_1,
        "",
        false,
    ))))
    .await;
    // CONNACK, remaining length 2, Session Present 0, return code 0x02; then the close.
    assert_eq!(raw.raw_until_closed().await, [0x20, 0x02, 0x00, 0x02]);
    server.stop().await;
}

#[tokio::test]
async fn v5_takeover_sends_0x8e_and_publishes_the_old_connections_will() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut observer, _) = TestClient::connect_v5(addr, "observer", true, None).await;
    observer.subscribe("wills/#", QoS::AtLeastOnce).await;

    let mut first = connect_v5("dev", false, Some(60));
    first.will = Some(will("wills/dev", "dev vanished", QoS::AtLeastOnce));
    let (mut old, _) = TestClient::connect_with(addr, first).await;
    old.subscribe("dev/cmd", QoS::AtLeastOnce).await;

    let (_new, connack) = TestClient::connect_v5(addr, "dev", false, Some(60)).await;
    assert!(
        connack.session_present,
        "the new connection resumes the session"
    );
    old.expect_disconnect(DisconnectReasonCode::SessionTakenOver)
        .await;
    // Will Delay Interval 0: the will of the old connection is published when it is closed.
    let got = observer.recv_publish_and_ack().await;
    assert_eq!(
        (got.topic.as_str(), text(&got).as_str()),
        ("wills/dev", "dev vanished")
    );
    observer.expect_nothing(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn v5_takeover_resuming_within_the_will_delay_cancels_the_will() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut observer, _) = TestClient::connect_v5(addr, "observer", true, None).await;
    observer.subscribe("wills/#", QoS::AtLeastOnce).await;

    let mut first = connect_v5("dev", false, Some(60));
    let mut delayed = will("wills/dev", "dev vanished", QoS::AtLeastOnce);
    delayed.properties.will_delay_interval = Some(1);
    first.will = Some(delayed);
    let (mut old, _) = TestClient::connect_with(addr, first).await;

    let (new, connack) = TestClient::connect_v5(addr, "dev", false, Some(60)).await;
    assert!(connack.session_present);
    old.expect_disconnect(DisconnectReasonCode::SessionTakenOver)
        .await;
    observer.expect_nothing(Duration::from_millis(1800)).await;
    new.disconnect().await;
    server.stop().await;
}

#[tokio::test]
async fn v5_takeover_with_clean_start_ends_the_session_and_publishes_the_will_at_once() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut observer, _) = TestClient::connect_v5(addr, "observer", true, None).await;
    observer.subscribe("wills/#", QoS::AtLeastOnce).await;

    let mut first = connect_v5("dev", false, Some(60));
    let mut delayed = will("wills/dev", "dev vanished", QoS::AtLeastOnce);
    delayed.properties.will_delay_interval = Some(30);
    first.will = Some(delayed);
    let (mut old, _) = TestClient::connect_with(addr, first).await;

    let (_new, connack) = TestClient::connect_v5(addr, "dev", true, Some(60)).await;
    assert!(!connack.session_present);
    old.expect_disconnect(DisconnectReasonCode::SessionTakenOver)
        .await;
    // The old session ended before its will delay: the will is sent then.
    let got = tokio::time::timeout(Duration::from_secs(1), observer.recv_publish_and_ack())
        .await
        .expect("the will is published when the session ends");
    assert_eq!(text(&got), "dev vanished");
    server.stop().await;
}

#[tokio::test]
async fn v311_takeover_closes_the_old_connection_and_resumes() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut old, _) = TestClient::connect(addr, ProtocolVersion::V3_1_1, "dup-id", false).await;
    old.subscribe("dup/t", QoS::AtLeastOnce).await;
    let (mut new, connack) =
        TestClient::connect(addr, ProtocolVersion::V3_1_1, "dup-id", false).await;
    assert!(connack.session_present);
    // 3.1.1 has no DISCONNECT from the server: the old connection is just closed.
    assert!(old.expect_closed().await.is_empty());
    let (mut publisher, _) =
        TestClient::connect(addr, ProtocolVersion::V3_1_1, "dup-pub", true).await;
    publisher
        .publish("dup/t", b"to the new one", QoS::AtLeastOnce)
        .await;
    assert_eq!(text(&new.recv_publish_and_ack().await), "to the new one");
    server.stop().await;
}

#[tokio::test]
async fn session_expires_after_its_interval() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut short, _) = TestClient::connect_v5(addr, "short-lived", false, Some(1)).await;
    short.subscribe("exp/t", QoS::AtLeastOnce).await;
    let (mut long, _) = TestClient::connect_v5(addr, "long-lived", false, Some(60)).await;
    long.subscribe("exp/t", QoS::AtLeastOnce).await;
    let gone = Instant::now();
    short.abort();
    long.disconnect().await;

    metrics::wait_for(server.http, "berth_sessions_expired_total", 1).await;
    let waited = gone.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "expired too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(4),
        "expired too late: {waited:?}"
    );

    let (mut publisher, _) = TestClient::connect_v5(addr, "exp-pub", true, None).await;
    publisher
        .publish("exp/t", b"after expiry", QoS::AtLeastOnce)
        .await;
    let (mut short, connack) = TestClient::connect_v5(addr, "short-lived", false, Some(1)).await;
    assert!(!connack.session_present, "the 1 s session expired");
    short.expect_nothing(QUIET).await;
    let (mut long, connack) = TestClient::connect_v5(addr, "long-lived", false, Some(60)).await;
    assert!(connack.session_present, "the 60 s session did not");
    assert_eq!(text(&long.recv_publish_and_ack().await), "after expiry");
    server.stop().await;
}

#[tokio::test]
async fn v3_default_expiry_applies_and_max_expiry_clamps_what_connack_reports() {
    let mut config = BrokerConfig::default();
    config.session.v3_persistent_expiry = SessionExpiry::After(1);
    config.session.max_expiry = SessionExpiry::After(1);
    let server = TestServer::with_config(config).await;
    let addr = server.mqtt;

    let (hour, connack) = TestClient::connect_v5(addr, "asks-hour", false, Some(3600)).await;
    assert_eq!(
        connack.properties.session_expiry_interval,
        Some(1),
        "clamped to the maximum"
    );
    let (never, connack) = TestClient::connect_v5(addr, "asks-never", false, Some(u32::MAX)).await;
    assert_eq!(
        connack.properties.session_expiry_interval,
        Some(1),
        "never is clamped too"
    );
    let (one, connack) = TestClient::connect_v5(addr, "asks-one", false, Some(1)).await;
    assert_eq!(
        connack.properties.session_expiry_interval, None,
        "granted as asked: not stated"
    );
    never.abort();
    one.abort();

    let (mut v3, _) = TestClient::connect(addr, ProtocolVersion::V3_1_1, "v3-device", false).await;
    v3.subscribe("v3/t", QoS::AtLeastOnce).await;
    let gone = Instant::now();
    v3.disconnect().await;
    hour.abort();

    // asks-never, asks-one, v3-device and asks-hour all end after about a second.
    metrics::wait_for(server.http, "berth_sessions_expired_total", 4).await;
    assert!(gone.elapsed() >= Duration::from_millis(900));
    let (_v3, connack) =
        TestClient::connect(addr, ProtocolVersion::V3_1_1, "v3-device", false).await;
    assert!(
        !connack.session_present,
        "the v3 default expiry (1 s) ended the session"
    );
    let (_hour, connack) = TestClient::connect_v5(addr, "asks-hour", false, Some(3600)).await;
    assert!(
        !connack.session_present,
        "the clamped expiry (1 s) ended the session"
    );
    server.stop().await;
}

#[tokio::test]
async fn v31_requires_a_client_identifier() {
    let server = TestServer::start_default().await;
    // 3.1 §3.1: the identifier must be 1 to 23 characters; an empty one is rejected (0x02).
    let (mut refused, connack) =
        TestClient::connect_with(server.mqtt, connect_packet(ProtocolVersion::V3_1, "", true))
            .await;
    assert_eq!(connack.reason, ConnectReasonCode::ClientIdentifierNotValid);
    assert!(!connack.session_present);
    assert!(refused.expect_closed().await.is_empty());
    server.stop().await;
}

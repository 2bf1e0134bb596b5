//! Parked connections: after a quiet spell a connection gives up its task
//! (`berth_connections_parked`), and whatever concerns it must still reach it: a message
//! published to it, its own packets, its keep alive running out, a takeover, its socket
//! closing, the server stopping.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

use std::time::{Duration, Instant};

use berth_codec::{DisconnectReasonCode, Packet, ProtocolVersion, QoS};
use berth_e2e::client::{TestClient, connect_packet, connect_v5, text, will};
use berth_e2e::metrics;
use berth_e2e::server::TestServer;

const PARKED: &str = "berth_connections_parked";

#[tokio::test]
async fn a_parked_subscriber_receives_what_is_published_and_answers_a_ping() {
    let server = TestServer::start_default().await;
    // One without a keep alive (no timer while parked), one with a long one.
    let mut no_keep_alive = connect_packet(ProtocolVersion::V3_1_1, "park-sub-0", true);
    no_keep_alive.keep_alive = 0;
    let (mut sub0, _) = TestClient::connect_with(server.mqtt, no_keep_alive).await;
    sub0.subscribe("park/a", QoS::AtLeastOnce).await;
    let (mut sub1, _) = TestClient::connect_v5(server.mqtt, "park-sub-1", true, None).await;
    sub1.subscribe("park/a", QoS::ExactlyOnce).await;
    metrics::wait_for(server.http, PARKED, 2).await;

    let (mut publisher, _) = TestClient::connect_v5(server.mqtt, "park-pub", true, None).await;
    publisher.publish("park/a", b"one", QoS::ExactlyOnce).await;
    for sub in [&mut sub0, &mut sub1] {
        let got = sub.recv_publish_and_ack().await;
        assert_eq!((got.topic.as_str(), text(&got).as_str()), ("park/a", "one"));
    }

    // All three quiet again: parked; then each wakes for its own packet.
    metrics::wait_for(server.http, PARKED, 3).await;
    for client in [&mut sub0, &mut sub1, &mut publisher] {
        client.send(Packet::PingReq).await;
        client
            .wait_for_packet("PINGRESP", |p| matches!(p, Packet::PingResp))
            .await;
    }
    // Woken by the publisher's own packet and the broker's answer, twice over.
    publisher.publish("park/a", b"two", QoS::AtLeastOnce).await;
    for sub in [&mut sub0, &mut sub1] {
        let got = sub.recv_publish_and_ack().await;
        assert_eq!(text(&got), "two");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_parked_connection_still_closes_when_its_keep_alive_runs_out() {
    let server = TestServer::start_default().await;
    let mut connect = connect_v5("park-ka", true, None);
    // Long enough to park first: 1–2 s after the CONNACK, the close due at 6 s.
    connect.keep_alive = 4;
    let connected = Instant::now();
    let (mut client, _) = TestClient::connect_with(server.mqtt, connect).await;
    metrics::wait_for(server.http, PARKED, 1).await;
    client
        .expect_disconnect(DisconnectReasonCode::KeepAliveTimeout)
        .await;
    // One and a half times the keep alive ([MQTT-3.1.2-24]), not sooner.
    let waited = connected.elapsed();
    assert!(
        (Duration::from_millis(5900)..Duration::from_millis(7500)).contains(&waited),
        "{waited:?}"
    );
    metrics::wait_until(server.http, PARKED, |parked| parked == 0).await;
    server.stop().await;
}

#[tokio::test]
async fn a_parked_connection_is_taken_over_and_its_dropped_socket_publishes_its_will() {
    let server = TestServer::start_default().await;
    let (mut observer, _) = TestClient::connect_v5(server.mqtt, "park-observer", true, None).await;
    observer.subscribe("wills/#", QoS::AtLeastOnce).await;
    let (mut first, _) = TestClient::connect_v5(server.mqtt, "park-twice", true, None).await;
    let mut with_will = connect_packet(ProtocolVersion::V3_1_1, "park-will", true);
    with_will.will = Some(will("wills/park-will", "gone", QoS::AtLeastOnce));
    let (dropped, _) = TestClient::connect_with(server.mqtt, with_will).await;
    metrics::wait_for(server.http, PARKED, 3).await;

    // The broker closes a parked connection: a second CONNECT takes its session over.
    let (mut second, _) = TestClient::connect_v5(server.mqtt, "park-twice", false, None).await;
    first
        .expect_disconnect(DisconnectReasonCode::SessionTakenOver)
        .await;
    second.send(Packet::PingReq).await;
    second
        .wait_for_packet("PINGRESP", |p| matches!(p, Packet::PingResp))
        .await;

    // The client closes a parked connection: the broker sees it, and publishes the will.
    dropped.abort();
    let got = observer.recv_publish_and_ack().await;
    assert_eq!(
        (got.topic.as_str(), text(&got).as_str()),
        ("wills/park-will", "gone")
    );
    server.stop().await;
}

#[tokio::test]
async fn stopping_the_server_closes_parked_connections() {
    let server = TestServer::start_default().await;
    let mut clients = Vec::new();
    for i in 0..4 {
        let id = format!("park-stop-{i}");
        let (client, _) = TestClient::connect_v5(server.mqtt, &id, true, None).await;
        clients.push(client);
    }
    metrics::wait_for(server.http, PARKED, 4).await;
    server.stop().await;
    for client in &mut clients {
        // Bounded: each sees its connection end (with the server's DISCONNECT, if any).
        let _ = client.expect_closed().await;
    }
}

#[tokio::test]
async fn parked_connections_hold_no_task() {
    let server = TestServer::start_default().await;
    let (_first, _) = TestClient::connect_v5(server.mqtt, "park-task-0", true, None).await;
    metrics::wait_for(server.http, PARKED, 1).await;
    // The server runs in this test's runtime: its tasks are counted here.
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = tasks();
    let mut clients = Vec::new();
    for i in 1..=40 {
        let id = format!("park-task-{i}");
        clients.push(TestClient::connect_v5(server.mqtt, &id, true, None).await.0);
    }
    metrics::wait_for(server.http, PARKED, 41).await;
    let after = tasks();
    // The server's own tasks come and go (metrics, Raft); 40 connections with a task each
    // would be 40 more.
    assert!(
        after < before + 10,
        "40 parked connections: {before} tasks before, {after} after"
    );
    server.stop().await;
}

//! Malformed input costs the sender its connection, never the broker: MQTT 5 clients are told
//! why (DISCONNECT 0x81 / 0x82), everyone else keeps being served.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

use std::time::Duration;

use berth_codec::{DisconnectReasonCode, Packet, ProtocolVersion, QoS};
use berth_e2e::client::{TestClient, connect_packet, text, will};
use berth_e2e::metrics;
use berth_e2e::server::TestServer;

/// Reserved packet type 0, then bytes that are no packet at all.
const GARBAGE: &[u8] = &[0x00, 0x02, 0xde, 0xad, 0xbe, 0xef];

#[tokio::test]
async fn garbage_after_connect_gets_0x81_and_the_server_keeps_serving() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut bystander, _) = TestClient::connect_v5(addr, "bystander", true, None).await;
    bystander.subscribe("ok/t", QoS::AtLeastOnce).await;

    let (mut bad, _) = TestClient::connect_v5(addr, "bad", true, None).await;
    bad.send_raw(GARBAGE).await;
    bad.expect_disconnect(DisconnectReasonCode::MalformedPacket)
        .await;
    metrics::wait_for(server.http, "berth_protocol_errors_total", 1).await;

    // The connected client is unaffected, and new clients are served.
    let (mut publisher, _) = TestClient::connect_v5(addr, "after", true, None).await;
    publisher
        .publish("ok/t", b"still serving", QoS::AtLeastOnce)
        .await;
    assert_eq!(
        text(&bystander.recv_publish_and_ack().await),
        "still serving"
    );
    bystander.send(Packet::PingReq).await;
    assert_eq!(bystander.recv().await, Packet::PingResp);
    server.stop().await;
}

#[tokio::test]
async fn malformed_remaining_length_gets_0x81() {
    let server = TestServer::start_default().await;
    let (mut bad, _) = TestClient::connect_v5(server.mqtt, "bad-length", true, None).await;
    // PUBLISH whose remaining length runs into a fifth byte.
    bad.send_raw(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).await;
    bad.expect_disconnect(DisconnectReasonCode::MalformedPacket)
        .await;
    server.stop().await;
}

#[tokio::test]
async fn garbage_from_a_v311_client_closes_it_and_fires_its_will() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut observer, _) = TestClient::connect_v5(addr, "observer", true, None).await;
    observer.subscribe("wills/#", QoS::AtLeastOnce).await;
    let mut connect = connect_packet(ProtocolVersion::V3_1_1, "bad311", true);
    connect.will = Some(will("wills/bad311", "bad311 broke", QoS::AtLeastOnce));
    let (mut bad, _) = TestClient::connect_with(addr, connect).await;
    bad.send_raw(GARBAGE).await;
    assert!(
        bad.expect_closed().await.is_empty(),
        "3.1.1: closed without a packet"
    );
    assert_eq!(text(&observer.recv_publish_and_ack().await), "bad311 broke");
    server.stop().await;
}

#[tokio::test]
async fn a_second_connect_is_a_protocol_error() {
    let server = TestServer::start_default().await;
    let (mut client, _) = TestClient::connect_v5(server.mqtt, "twice", true, None).await;
    client
        .send(Packet::Connect(Box::new(connect_packet(
            ProtocolVersion::V5,
            "twice",
            true,
        ))))
        .await;
    client
        .expect_disconnect(DisconnectReasonCode::ProtocolError)
        .await;
    server.stop().await;
}

#[tokio::test]
async fn a_first_packet_that_is_not_connect_is_closed() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    // PINGREQ, SUBSCRIBE (3.1.1 bytes), and garbage: no CONNACK, just the close.
    let firsts: [&[u8]; 3] = [
        &[0xc0, 0x00],
        &[0x82, 0x08, 0x00, 0x01, 0x00, 0x03, b'a', b'/', b'b', 0x01],
        GARBAGE,
    ];
    for first in firsts {
        let mut client = TestClient::open(addr, ProtocolVersion::V3_1_1).await;
        client.send_raw(first).await;
        assert_eq!(
            client.raw_until_closed().await,
            Vec::<u8>::new(),
            "after {first:?}"
        );
    }
    // The server is fine.
    let (client, _) = TestClient::connect_v5(addr, "fine", true, None).await;
    client.disconnect().await;
    server.stop().await;
}

#[tokio::test]
async fn unsupported_protocol_level_gets_return_code_1() {
    let server = TestServer::start_default().await;
    let mut client = TestClient::open(server.mqtt, ProtocolVersion::V3_1_1).await;
    // CONNECT "MQTT" level 9, clean session, keep alive 60, client id "x".
    let connect = [
        0x10, 0x0d, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x09, 0x02, 0x00, 0x3c, 0x00, 0x01, b'x',
    ];
    client.send_raw(&connect).await;
    assert_eq!(client.raw_until_closed().await, [0x20, 0x02, 0x00, 0x01]);
    server.stop().await;
}

#[tokio::test]
async fn a_half_sent_packet_then_close_is_just_a_lost_connection() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut observer, _) = TestClient::connect_v5(addr, "observer", true, None).await;
    observer.subscribe("half/#", QoS::AtLeastOnce).await;
    let (mut client, _) = TestClient::connect_v5(addr, "half", true, None).await;
    // The start of a PUBLISH that never completes: nothing must be delivered.
    client
        .send_raw(&[0x30, 0x20, 0x00, 0x06, b'h', b'a', b'l', b'f'])
        .await;
    client.abort();
    observer.expect_nothing(Duration::from_millis(300)).await;
    let (client, _) = TestClient::connect_v5(addr, "half", true, None).await;
    client.disconnect().await;
    server.stop().await;
}

#[tokio::test]
async fn a_malformed_v5_connect_gets_connack_0x81_and_a_v311_one_is_just_closed() {
    let server = TestServer::start_default().await;
    // CONNECT "MQTT" level 5 with the reserved connect flag (bit 0) set: malformed.
    let v5 = [
        0x10, 0x0e, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x03, 0x00, 0x3c, 0x00, 0x00, 0x01,
        b'x',
    ];
    let mut client = TestClient::open(server.mqtt, ProtocolVersion::V5).await;
    client.send_raw(&v5).await;
    let packets = client.expect_closed().await;
    let [Packet::ConnAck(connack)] = &packets[..] else {
        panic!("expected one CONNACK, got {packets:?}")
    };
    assert_eq!(
        connack.reason,
        berth_codec::ConnectReasonCode::MalformedPacket
    );
    assert!(!connack.session_present);

    // The same fault in 3.1.1: no CONNACK exists for it, the connection just closes.
    let v311 = [
        0x10, 0x0d, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x03, 0x00, 0x3c, 0x00, 0x01, b'x',
    ];
    let mut client = TestClient::open(server.mqtt, ProtocolVersion::V3_1_1).await;
    client.send_raw(&v311).await;
    assert!(client.raw_until_closed().await.is_empty());
    server.stop().await;
}

//! A client that stops reading costs bounded memory: QoS 0 messages beyond its outbound limit
//! are dropped and counted (`reason="slow_consumer"`), and everyone else keeps being served.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

use berth_codec::{Packet, ProtocolVersion, Publish, QoS};
use berth_e2e::client::{TestClient, topic};
use berth_e2e::metrics;
use berth_e2e::server::TestServer;
use bytes::Bytes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos0_to_a_client_that_does_not_read_is_dropped_and_counted() {
    let server = TestServer::start_default().await;
    // Subscribes, then never reads again.
    let (mut stalled, _) =
        TestClient::connect(server.mqtt, ProtocolVersion::V3_1_1, "stalled", true).await;
    stalled.subscribe("firehose", QoS::AtMostOnce).await;

    let (mut publisher, _) =
        TestClient::connect(server.mqtt, ProtocolVersion::V3_1_1, "publisher", true).await;
    let payload = Bytes::from(vec![0x42; 1024]);
    // 40,000 × 1 KiB: far more than socket buffers plus the 10,000-packet outbound limit.
    for _ in 0..40_000 {
        publisher
            .send(Packet::Publish(Publish::at_most_once(
                topic("firehose"),
                payload.clone(),
            )))
            .await;
    }
    let dropped = metrics::wait_for(server.http, &metrics::dropped("slow_consumer"), 1).await;
    assert!(dropped > 0);

    // The broker still answers others promptly.
    let (mut other, _) =
        TestClient::connect(server.mqtt, ProtocolVersion::V3_1_1, "other", true).await;
    other.subscribe("ping", QoS::AtLeastOnce).await;
    publisher.publish("ping", b"pong", QoS::AtLeastOnce).await;
    assert_eq!(&other.recv_publish_and_ack().await.payload[..], b"pong");
    drop(stalled);
    server.stop().await;
}

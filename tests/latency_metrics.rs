//! What the operator's histograms and counters say about a client's life, against what ships:
//! CONNECT → CONNACK by outcome (new, resumed, refused), PUBLISH → PUBACK, the group commit, a
//! refusal by its reason code, a connection's end by its reason, and packets and bytes.

use berth_codec::{ProtocolVersion, QoS};
use berth_e2e::client::{TestClient, connect_packet};
use berth_e2e::metrics::{self, scrape, value};
use berth_e2e::server::TestServer;

#[tokio::test]
async fn connects_publishes_refusals_and_endings_are_measured() {
    let server = TestServer::start_default().await;
    let (client, connack) = TestClient::connect_v5(server.mqtt, "dev", false, Some(600)).await;
    assert!(!connack.session_present);
    client.disconnect().await;
    let (mut client, connack) = TestClient::connect_v5(server.mqtt, "dev", false, Some(600)).await;
    assert!(connack.session_present);
    for i in 0..5 {
        client
            .publish(&format!("t/{i}"), b"payload", QoS::AtLeastOnce)
            .await;
    }
    // 3.1.1 with an empty client id and Clean Session 0: refused (0x85, return code 2).
    let (_, refused) = TestClient::connect_with(
        server.mqtt,
        connect_packet(ProtocolVersion::V3_1_1, "", false),
    )
    .await;
    assert!(refused.reason.is_error());

    let count =
        |outcome: &str| format!("berth_connect_duration_seconds_count{{outcome=\"{outcome}\"}}");
    metrics::wait_for(server.http, &count("new"), 1).await;
    metrics::wait_for(server.http, &count("resumed"), 1).await;
    metrics::wait_for(server.http, &count("refused"), 1).await;
    metrics::wait_for(server.http, "berth_publish_ack_duration_seconds_count", 5).await;
    metrics::wait_for(
        server.http,
        "berth_connects_refused_total{code=\"0x85\"}",
        1,
    )
    .await;
    metrics::wait_for(
        server.http,
        "berth_connections_closed_total{reason=\"client_disconnect\"}",
        1,
    )
    .await;
    // Packets by type (flushed by the broker thread every 500 ms) and bytes both ways.
    metrics::wait_for(
        server.http,
        "berth_packets_received_total{type=\"publish\"}",
        5,
    )
    .await;
    metrics::wait_for(server.http, "berth_packets_sent_total{type=\"puback\"}", 5).await;
    metrics::wait_for(
        server.http,
        "berth_packets_received_total{type=\"connect\"}",
        3,
    )
    .await;
    metrics::wait_for(server.http, "berth_packets_sent_total{type=\"connack\"}", 3).await;
    // 5 PUBLISHes of at least 14 bytes each came in; at least 5 PUBACKs of 4 bytes went out.
    metrics::wait_for(server.http, "berth_bytes_received_total", 5 * 14).await;
    metrics::wait_for(server.http, "berth_bytes_sent_total", 5 * 4).await;
    let body = scrape(server.http).await;
    assert!(
        value(&body, "berth_group_commit_duration_seconds_count").is_some_and(|n| n >= 1),
        "{body}"
    );
    // The histogram is consistent: every observation is in its last bucket.
    assert_eq!(
        value(
            &body,
            "berth_publish_ack_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        value(&body, "berth_publish_ack_duration_seconds_count")
    );
    assert_eq!(value(&body, "berth_draining"), Some(0));
    assert_eq!(value(&body, "berth_ready"), Some(1));
    server.stop().await;
}

//! Connection limits against the real binary: `limits.max_connections` and
//! `limits.connection_rate` close excess connections as soon as they are accepted (before a
//! byte is read), counted by reason, and leave the admitted ones alone.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use berth_codec::ProtocolVersion;
use berth_e2e::client::{TestClient, connect_packet};
use berth_e2e::metrics;
use support::{Berth, Options};
use tokio::io::AsyncReadExt as _;

fn node_with(dir: &std::path::Path, env: &[(&str, &str)]) -> Berth {
    Berth::start(
        &dir.join("data"),
        &Options {
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Options::default()
        },
    )
}

/// Whether the node closes a fresh TCP connection without a word (within 5 s).
async fn closed_at_once(addr: SocketAddr) -> bool {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_a_connection_is_closed_until_one_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with(dir.path(), &[("BERTH_LIMITS_MAX_CONNECTIONS", "2")]);
    let (first, _) = TestClient::connect(node.mqtt, ProtocolVersion::V5, "one", true).await;
    let (mut second, _) = TestClient::connect(node.mqtt, ProtocolVersion::V5, "two", true).await;
    assert!(closed_at_once(node.mqtt).await, "a third is closed");
    metrics::wait_for(
        node.http,
        "berth_connections_refused_total{reason=\"max_connections\"}",
        1,
    )
    .await;
    // The admitted ones are untouched.
    second
        .subscribe("still/here", berth_codec::QoS::AtMostOnce)
        .await;
    // One leaves: its place is free again (once its task has ended).
    first.disconnect().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = tokio::spawn(TestClient::connect_with(
            node.mqtt,
            connect_packet(ProtocolVersion::V5, "three", true),
        ));
        if let Ok(Ok((_, connack))) = tokio::time::timeout(Duration::from_secs(5), attempt).await
            && !connack.reason.is_error()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was never given again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_rate_new_connections_are_closed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // One per second: the first is admitted, one right after it is not.
    let node = node_with(dir.path(), &[("BERTH_LIMITS_CONNECTION_RATE", "1")]);
    let (_first, _) = TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "a", true).await;
    assert!(closed_at_once(node.mqtt).await);
    metrics::wait_for(
        node.http,
        "berth_connections_refused_total{reason=\"connection_rate\"}",
        1,
    )
    .await;
    // A second later there is room again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_later, connack) =
        TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "b", true).await;
    assert!(!connack.reason.is_error());
}

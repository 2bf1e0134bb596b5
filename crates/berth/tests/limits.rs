//! Connection limits against the real binary: `limits.max_connections` and
//! `limits.connection_rate` close excess connections as soon as they are accepted (before a
//! byte is read), counted by reason, and leave the admitted ones alone. Per-client limits:
//! `limits.max_topic_levels` / `max_topic_length` refuse a PUBLISH (0x90; 3.1.1 acknowledged
//! and dropped) or a SUBSCRIBE filter (0x8F; 3.1.1 0x80), `limits.max_subscriptions` a filter
//! one more than the session may hold (0x97; 3.1.1 0x80), each counted by its limit.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use berth_codec::{ProtocolVersion, PubAckReasonCode, QoS, SubAckReasonCode};
use berth_e2e::client::{TestClient, connect_packet, options, text};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_limits_and_the_subscription_quota_refuse_per_filter_and_per_publish() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with(
        dir.path(),
        &[
            ("BERTH_LIMITS_MAX_TOPIC_LEVELS", "3"),
            ("BERTH_LIMITS_MAX_SUBSCRIPTIONS", "2"),
            ("BERTH_LIMITS_MAX_TOPIC_LENGTH", "32"),
        ],
    );
    use SubAckReasonCode::{
        GrantedQoS0, GrantedQoS1, QuotaExceeded, TopicFilterInvalid, UnspecifiedError,
    };

    let (mut watcher, _) =
        TestClient::connect(node.mqtt, ProtocolVersion::V5, "watcher", true).await;
    let ack = watcher.subscribe("#", QoS::AtLeastOnce).await;
    assert_eq!(ack.reason_codes, [GrantedQoS1], "# is one level");

    // MQTT 5: a topic over a limit is 0x90 and goes nowhere; within them, as usual.
    let (mut v5, _) = TestClient::connect(node.mqtt, ProtocolVersion::V5, "v5", true).await;
    assert_eq!(
        v5.publish_reason("a/b/c/d", b"four levels").await,
        PubAckReasonCode::TopicNameInvalid
    );
    // One level, 34 bytes.
    assert_eq!(
        v5.publish_reason("a-single-level-topic-over-32-bytes", b"too long")
            .await,
        PubAckReasonCode::TopicNameInvalid
    );
    assert_eq!(
        v5.publish_reason("a/b/c", b"three levels").await,
        PubAckReasonCode::Success
    );
    // The first (and only) message "#" hears is the one within the limits.
    let got = watcher.recv_publish_and_ack().await;
    assert_eq!(text(&got), "three levels");
    watcher.expect_nothing(Duration::from_millis(300)).await;

    // SUBSCRIBE: a filter over the levels is 0x8F and takes no place; the quota counts the
    // filters granted before each one; a filter already held is a replacement.
    let ack = v5.subscribe("x/y/z/w", QoS::AtLeastOnce).await;
    assert_eq!(ack.reason_codes, [TopicFilterInvalid]);
    let ack = v5
        .subscribe_with(
            &[
                ("s/1", options(QoS::AtMostOnce)),
                ("s/2", options(QoS::AtMostOnce)),
                ("s/3", options(QoS::AtMostOnce)),
            ],
            None,
        )
        .await;
    assert_eq!(ack.reason_codes, [GrantedQoS0, GrantedQoS0, QuotaExceeded]);
    let ack = v5.subscribe("s/1", QoS::AtLeastOnce).await;
    assert_eq!(ack.reason_codes, [GrantedQoS1], "a replacement is granted");
    let ack = v5
        .subscribe_with(
            &[
                ("s/4", options(QoS::AtMostOnce)),
                ("s/2", options(QoS::AtLeastOnce)),
            ],
            None,
        )
        .await;
    assert_eq!(ack.reason_codes, [QuotaExceeded, GrantedQoS1]);

    // 3.1.1: the over-level PUBLISH is acknowledged (no way to say no) and dropped.
    let (mut v3, _) = TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "v3", true).await;
    assert_eq!(
        v3.publish_reason("a/b/c/d", b"dropped").await,
        PubAckReasonCode::Success
    );
    assert_eq!(
        v3.publish_reason("a/b", b"after").await,
        PubAckReasonCode::Success
    );
    let got = watcher.recv_publish_and_ack().await;
    assert_eq!(text(&got), "after", "the over-level one was not delivered");
    watcher.expect_nothing(Duration::from_millis(300)).await;
    // Its SUBSCRIBE refusals are all 0x80.
    let ack = v3.subscribe("x/y/z/w", QoS::AtLeastOnce).await;
    assert_eq!(ack.reason_codes, [UnspecifiedError], "over the levels");
    let ack = v3
        .subscribe_with(
            &[
                ("t/1", options(QoS::AtLeastOnce)),
                ("t/2", options(QoS::AtLeastOnce)),
                ("t/3", options(QoS::AtLeastOnce)),
            ],
            None,
        )
        .await;
    assert_eq!(
        ack.reason_codes,
        [GrantedQoS1, GrantedQoS1, UnspecifiedError],
        "over the quota"
    );

    // Each refusal counted under its limit's key: levels 2 PUBLISH + 2 SUBSCRIBE, quota 3,
    // length 1.
    for (reason, count) in [
        ("max_topic_levels", 4),
        ("max_subscriptions", 3),
        ("max_topic_length", 1),
    ] {
        let series = format!("berth_limit_refusals_total{{reason=\"{reason}\"}}");
        let seen = metrics::wait_until(node.http, &series, |v| v >= count).await;
        assert_eq!(seen, count, "{series}");
    }
}

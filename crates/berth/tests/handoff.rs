//! Hinted handoff with three real `berth` processes: a publisher on one node is acknowledged
//! without waiting while the owner of the sessions it publishes to is dead, and every message
//! reaches the session in order once it can — from the restarted owner, or from the node the
//! session moved to meanwhile.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

mod support;

use std::time::{Duration, Instant};

use berth_codec::{Packet, ProtocolVersion, QoS};
use berth_e2e::client::{TestClient, connect_packet};
use support::cluster::*;

const MESSAGES: usize = 1000;
/// Far above the handoff bound (100 ms, plus a probe): a publisher that waited for the dead
/// owner would wait for the forward deadline (10 s) and then be disconnected unacknowledged.
const NOT_STALLED: Duration = Duration::from_secs(2);
/// How long the restarted owner, or the session's new owner, may take to get every message.
const DELIVERY_WAIT: Duration = Duration::from_secs(60);

/// Publishes `count` QoS 1 messages one at a time and returns the slowest PUBACK.
async fn publish_timed(client: &mut TestClient, topic_name: &str, count: usize) -> Duration {
    let mut slowest = Duration::ZERO;
    for i in 0..count {
        let id = client.next_packet_id();
        let sent = Instant::now();
        client
            .send(qos1(topic_name, id.get(), format!("cmd-{i}")))
            .await;
        let ack = client
            .try_recv(Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("no PUBACK for cmd-{i} within 30 s"));
        match ack {
            Packet::PubAck(ack) => assert!(!ack.reason.is_error(), "cmd-{i}: {ack:?}"),
            other => panic!("expected a PUBACK for cmd-{i}, got {other:?}"),
        }
        slowest = slowest.max(sent.elapsed());
    }
    slowest
}

/// Receives until every `cmd-i` arrived (duplicates, re-sent with DUP = 1, are allowed: the
/// first forward of a kept message may have arrived); returns the first arrivals in order.
async fn receive_all(client: &mut TestClient, count: usize) -> Vec<String> {
    let deadline = Instant::now() + DELIVERY_WAIT;
    let mut first = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(packet) = client.try_recv(left).await else {
            panic!(
                "only {} of {count} messages arrived within {DELIVERY_WAIT:?}",
                seen.len()
            );
        };
        let Packet::Publish(publish) = packet else {
            continue;
        };
        if let Some(id) = publish.packet_id {
            client
                .send(Packet::PubAck(berth_codec::PubAck::new(id)))
                .await;
        }
        let payload = berth_e2e::client::text(&publish);
        if seen.insert(payload.clone()) {
            first.push(payload);
        } else {
            assert!(publish.dup, "a second copy of {payload} without DUP = 1");
        }
    }
    first
}

/// A persistent session on node 3 subscribed to `fleet/7/cmd`, offline; node 3 then killed.
async fn owner_dead(cluster: &mut Cluster) {
    let (mut device, _) =
        TestClient::connect(cluster.mqtt(3), ProtocolVersion::V3_1_1, "truck-7", false).await;
    device.subscribe("fleet/7/cmd", QoS::AtLeastOnce).await;
    device.disconnect().await;
    cluster.kill9(3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_owner_does_not_stall_publishers_and_gets_everything_in_order_when_back() {
    let mut cluster = Cluster::start(3).await;
    cluster.wait_voters(3).await;
    owner_dead(&mut cluster).await;

    let (mut publisher, _) =
        TestClient::connect(cluster.mqtt(2), ProtocolVersion::V3_1_1, "dispatch", true).await;
    let started = Instant::now();
    let slowest = publish_timed(&mut publisher, "fleet/7/cmd", MESSAGES).await;
    eprintln!(
        "{MESSAGES} QoS 1 to a dead owner's session: all acknowledged in {:?}, slowest PUBACK {slowest:?}",
        started.elapsed()
    );
    assert!(
        slowest < NOT_STALLED,
        "a PUBACK waited {slowest:?} for a dead owner"
    );

    cluster.restart(3);
    device_gets_everything(&cluster, 3).await;
}

/// The device resumes its session through `node` (Session Present 1) and gets every message,
/// in publish order.
async fn device_gets_everything(cluster: &Cluster, node: u64) -> TestClient {
    let (mut device, connack) = connect_waiting(
        cluster.mqtt(node),
        connect_packet(ProtocolVersion::V3_1_1, "truck-7", false),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        matches!(&connack, Packet::ConnAck(c) if c.session_present),
        "{connack:?}"
    );
    let got = receive_all(&mut device, MESSAGES).await;
    assert_eq!(
        got,
        names("cmd", MESSAGES),
        "every message, in publish order"
    );
    device
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_moved_while_its_owner_was_dead_gets_the_kept_messages_there() {
    let mut cluster = Cluster::start(3).await;
    cluster.wait_voters(3).await;
    owner_dead(&mut cluster).await;

    let (mut publisher, _) =
        TestClient::connect(cluster.mqtt(2), ProtocolVersion::V3_1_1, "dispatch", true).await;
    let slowest = publish_timed(&mut publisher, "fleet/7/cmd", MESSAGES).await;
    assert!(
        slowest < NOT_STALLED,
        "a PUBACK waited {slowest:?} for a dead owner"
    );

    // The device comes back through node 1 while node 3 is still dead: the takeover goes on
    // without node 3, and the kept messages follow the session there.
    let mut device = device_gets_everything(&cluster, 1).await;

    // The old owner's return changes nothing for the device.
    cluster.restart(3);
    device.expect_nothing(Duration::from_secs(2)).await;
}

//! The durability contract, measured with the real binary: a PUBACK is a promise. After
//! `kill -9` and a restart on the same data directory, every QoS 1 message the broker
//! acknowledged for a persistent session is delivered, the session is present with its
//! subscriptions, and expiry deadlines keep counting while the broker is down.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

use std::path::Path;
use std::time::Duration;

use berth_codec::{ConnectProperties, Packet, ProtocolVersion, PubAck, Publish, QoS};
use berth_e2e::client::{TestClient, connect_packet, topic};
use bytes::Bytes;
use support::{Berth, Options};

mod support;

/// A `berth` process on 127.0.0.1:0 with its data in `data_dir`.
struct Node;

impl Node {
    fn start(data_dir: &Path) -> Berth {
        Berth::start(
            data_dir,
            &Options {
                // The default queue limit (1000, drop newest) would drop part of the stream below.
                env: vec![("BERTH_QUEUE_MAX_MESSAGES".into(), "unlimited".into())],
                ..Options::default()
            },
        )
    }
}

async fn publish_acked(publisher: &mut TestClient, payload: String) -> bool {
    let id = publisher.next_packet_id();
    publisher
        .send(Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: topic("fleet/7/cmd"),
            packet_id: Some(id),
            payload: Bytes::from(payload),
            properties: Default::default(),
        }))
        .await;
    matches!(publisher.recv().await, Packet::PubAck(ack) if ack.packet_id == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_qos1_messages_survive_kill_9_repeatedly() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut node = Node::start(data.path());
    let (mut device, _) =
        TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "device-7", false).await;
    device.subscribe("fleet/7/#", QoS::AtLeastOnce).await;
    device.disconnect().await;

    let mut next = 0u32;
    for round in 0..3 {
        // Publish a batch; every PUBACKed message is a promise.
        let (mut publisher, _) =
            TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "ops", true).await;
        let first = next;
        for _ in 0..200 {
            assert!(
                publish_acked(&mut publisher, format!("m{next}")).await,
                "PUBACK in round {round}"
            );
            next += 1;
        }
        node.kill9();
        node = Node::start(data.path());

        let (mut device, connack) =
            TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "device-7", false).await;
        assert!(
            connack.session_present,
            "round {round}: session survives kill -9"
        );
        for expected in first..next {
            let publish = device.recv_publish_and_ack().await;
            assert_eq!(
                std::str::from_utf8(&publish.payload).unwrap(),
                format!("m{expected}"),
                "round {round}: every acknowledged message, in order"
            );
        }
        device.expect_nothing(Duration::from_millis(300)).await;
        device.disconnect().await;
    }
    node.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_inflight_message_is_redelivered_with_dup_after_kill_9() {
    let data = tempfile::tempdir().expect("temp dir");
    let node = Node::start(data.path());
    let (mut device, _) =
        TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "device-8", false).await;
    device.subscribe("fleet/8/#", QoS::AtLeastOnce).await;
    let (mut publisher, _) =
        TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "ops", true).await;
    publisher
        .publish("fleet/8/cmd", b"hold-me", QoS::AtLeastOnce)
        .await;
    // Received but never acknowledged.
    let Packet::Publish(first) = device.recv().await else {
        panic!("expected PUBLISH")
    };
    node.kill9();

    let node = Node::start(data.path());
    let (mut device, connack) =
        TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "device-8", false).await;
    assert!(connack.session_present);
    let Packet::Publish(again) = device.recv().await else {
        panic!("expected the re-sent PUBLISH")
    };
    assert!(again.dup, "re-sent with DUP = 1");
    assert_eq!(
        again.packet_id, first.packet_id,
        "with the same packet identifier"
    );
    assert_eq!(again.payload, first.payload);
    device
        .send(Packet::PubAck(PubAck::new(again.packet_id.unwrap())))
        .await;
    device.expect_nothing(Duration::from_millis(300)).await;
    node.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_keeps_counting_while_the_broker_is_down() {
    let data = tempfile::tempdir().expect("temp dir");
    let node = Node::start(data.path());
    let connect = |id: &str, expiry: u32| {
        let mut connect = connect_packet(ProtocolVersion::V5, id, false);
        connect.properties = ConnectProperties {
            session_expiry_interval: Some(expiry),
            ..Default::default()
        };
        connect
    };
    let (short, _) = TestClient::connect_with(node.mqtt, connect("short-lived", 2)).await;
    let (long, _) = TestClient::connect_with(node.mqtt, connect("long-lived", 3600)).await;
    short.disconnect().await;
    long.disconnect().await;
    node.kill9();
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let node = Node::start(data.path());
    let (_, connack) = TestClient::connect_with(node.mqtt, connect("short-lived", 2)).await;
    assert!(
        !connack.session_present,
        "expired while the broker was down"
    );
    let (_, connack) = TestClient::connect_with(node.mqtt, connect("long-lived", 3600)).await;
    assert!(
        connack.session_present,
        "a session with time left is still there"
    );
    node.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_a_publish_stream_loses_no_acknowledged_message() {
    let data = tempfile::tempdir().expect("temp dir");
    let node = Node::start(data.path());
    let (mut device, _) =
        TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "device-9", false).await;
    device.subscribe("fleet/9/#", QoS::AtLeastOnce).await;
    device.disconnect().await;

    // Publish as fast as PUBACKs come back; the node dies under the stream.
    let (mut publisher, _) =
        TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "ops", true).await;
    let stream = tokio::spawn(async move {
        let mut acked = 0u32;
        for n in 0..100_000u32 {
            let id = publisher.next_packet_id();
            publisher
                .send(Packet::Publish(Publish {
                    dup: false,
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    topic: topic("fleet/9/cmd"),
                    packet_id: Some(id),
                    payload: Bytes::from(n.to_string()),
                    properties: Default::default(),
                }))
                .await;
            match publisher.try_recv(Duration::from_secs(5)).await {
                Some(Packet::PubAck(ack)) if ack.packet_id == id => acked = n + 1,
                _ => break,
            }
        }
        acked
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    node.kill9();
    let acked = tokio::time::timeout(Duration::from_secs(10), stream)
        .await
        .expect("publisher notices the dead node")
        .expect("publisher task");
    assert!(acked > 0, "some messages were acknowledged before the kill");

    let node = Node::start(data.path());
    let (mut device, connack) =
        TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "device-9", false).await;
    assert!(connack.session_present);
    // Every acknowledged message, in order; the one in flight at the kill may or may not be there.
    eprintln!("acked before the kill: {acked}");
    for expected in 0..acked {
        let Some(Packet::Publish(publish)) = device.try_recv(Duration::from_secs(10)).await else {
            panic!("message {expected} of {acked} acknowledged ones never arrived");
        };
        if let Some(id) = publish.packet_id {
            device.send(Packet::PubAck(PubAck::new(id))).await;
        }
        assert_eq!(
            std::str::from_utf8(&publish.payload).unwrap(),
            expected.to_string()
        );
    }
    if let Some(Packet::Publish(extra)) = device.try_recv(Duration::from_millis(300)).await {
        assert_eq!(
            std::str::from_utf8(&extra.payload).unwrap(),
            acked.to_string()
        );
    }
    drop(node);
}

/// A data directory from before the cluster (no `raft/` inside) keeps its sessions: the node
/// starts a one-member cluster and the stored sessions resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_without_raft_state_keeps_its_sessions() {
    let data = tempfile::tempdir().expect("temp dir");
    let node = Node::start(data.path());
    let (mut device, _) =
        TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "legacy", false).await;
    device.subscribe("fleet/#", QoS::AtLeastOnce).await;
    device.disconnect().await;
    let (mut publisher, _) =
        TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "ops", true).await;
    assert!(publish_acked(&mut publisher, "kept".into()).await);
    node.kill9();
    std::fs::remove_dir_all(data.path().join("raft")).expect("remove the raft state");

    let node = Node::start(data.path());
    let (mut device, connack) =
        TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "legacy", false).await;
    assert!(connack.session_present);
    let publish = device.recv_publish_and_ack().await;
    assert_eq!(&publish.payload[..], b"kept");
    node.kill9();
}

/// A connected persistent session draining a backlog gets its messages from their queue rows,
/// some of them before the write of the group that sends them (covered by a sent mark written
/// earlier: core's `row_backed.rs`). Killed in the middle, the broker loses none of the
/// messages it acknowledged, and every message the device had already got comes again with
/// DUP = 1, also on the connection after one that ended before it had everything again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_a_connected_session_drains_its_backlog_loses_nothing_and_resends_with_dup() {
    let data = tempfile::tempdir().expect("temp dir");
    let node = Node::start(data.path());
    let (mut device, _) =
        TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "device-10", false).await;
    device.subscribe("fleet/10/#", QoS::AtLeastOnce).await;
    let (mut publisher, _) =
        TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "ops", true).await;
    // 64 PUBLISHes at a time, then their PUBACKs: faster than the device's window of 32 drains.
    let stream = tokio::spawn(async move {
        let mut acked = 0u32;
        'stream: for round in 0..4_000u32 {
            let mut ids = Vec::new();
            for n in round * 64..(round + 1) * 64 {
                let id = publisher.next_packet_id();
                ids.push(id);
                let sent = publisher
                    .try_send(Packet::Publish(Publish {
                        dup: false,
                        qos: QoS::AtLeastOnce,
                        retain: false,
                        topic: topic("fleet/10/cmd"),
                        packet_id: Some(id),
                        payload: Bytes::from(n.to_string()),
                        properties: Default::default(),
                    }))
                    .await;
                if !sent {
                    break;
                }
            }
            for id in ids {
                match publisher.try_recv(Duration::from_secs(5)).await {
                    Some(Packet::PubAck(ack)) if ack.packet_id == id => acked += 1,
                    _ => break 'stream,
                }
            }
        }
        acked
    });
    // The device takes and acknowledges what comes, until the node is gone.
    let draining = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(Packet::Publish(publish)) = device.try_recv(Duration::from_secs(5)).await {
            got.push(
                std::str::from_utf8(&publish.payload)
                    .unwrap()
                    .parse::<u32>()
                    .unwrap(),
            );
            if let Some(id) = publish.packet_id
                && !device.try_send(Packet::PubAck(PubAck::new(id))).await
            {
                break;
            }
        }
        got
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    node.kill9();
    let acked = tokio::time::timeout(Duration::from_secs(10), stream)
        .await
        .expect("the publisher notices the dead node")
        .expect("publisher task");
    let before = tokio::time::timeout(Duration::from_secs(10), draining)
        .await
        .expect("the device notices the dead node")
        .expect("device task");
    eprintln!("acked {acked}, delivered before the kill {}", before.len());
    assert!(
        before.len() < acked as usize,
        "a backlog was draining when the node died"
    );

    let node = Node::start(data.path());
    // Everything the device got on an earlier connection must come again with DUP = 1. The
    // first connection after the restart takes a few messages without acknowledging them and
    // ends: what the lease covered beyond them must still read back as sent on the next.
    let mut had: std::collections::HashSet<u32> = before.iter().copied().collect();
    let mut seen = had.clone();
    let (mut device, connack) =
        TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "device-10", false).await;
    assert!(connack.session_present);
    let mut taken = Vec::new();
    while taken.len() < 5 {
        let Some(Packet::Publish(publish)) = device.try_recv(Duration::from_secs(5)).await else {
            break;
        };
        let n: u32 = std::str::from_utf8(&publish.payload)
            .unwrap()
            .parse()
            .unwrap();
        if had.contains(&n) {
            assert!(
                publish.dup,
                "message {n} reached the device before: DUP = 1"
            );
        }
        taken.push(n);
    }
    device.disconnect().await;
    had.extend(&taken);
    seen.extend(&taken);

    let (mut device, connack) =
        TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "device-10", false).await;
    assert!(connack.session_present);
    let mut last = None;
    while let Some(Packet::Publish(publish)) = device.try_recv(Duration::from_secs(2)).await {
        let n: u32 = std::str::from_utf8(&publish.payload)
            .unwrap()
            .parse()
            .unwrap();
        if let Some(id) = publish.packet_id {
            device.send(Packet::PubAck(PubAck::new(id))).await;
        }
        assert!(last < Some(n), "in order: {n} after {last:?}");
        last = Some(n);
        if had.contains(&n) {
            assert!(
                publish.dup,
                "message {n} reached the device before: DUP = 1"
            );
        }
        seen.insert(n);
        if (0..acked).all(|n| seen.contains(&n)) {
            break;
        }
    }
    let missing: Vec<u32> = (0..acked).filter(|n| !seen.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged, never delivered: {missing:?}"
    );
    node.kill9();
}

//! The cluster, with three real `berth` processes on loopback: routing across nodes, takeover
//! of a persistent session with its backlog, one owner per client id, Clean Start elsewhere,
//! retained messages, and a node cut off from the majority refusing what needs consensus.
//!
//! Clusters are formed with `--join` so that every listener is on port 0.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use berth_codec::{ConnectReasonCode, DisconnectReasonCode, Packet, ProtocolVersion, Publish, QoS};
use berth_e2e::client::{TestClient, connect_packet, text};
use support::cluster::*;
use support::{Berth, Options};
use tempfile::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_on_one_node_receives_publishes_from_every_node() {
    let cluster = Cluster::start(3).await;
    let (mut sub, _) =
        TestClient::connect(cluster.mqtt(2), ProtocolVersion::V3_1_1, "watcher", false).await;
    sub.subscribe("fleet/+/temp", QoS::AtLeastOnce).await;

    for node in [1, 3, 2] {
        let (mut publisher, _) = TestClient::connect(
            cluster.mqtt(node),
            ProtocolVersion::V3_1_1,
            &format!("pub-{node}"),
            true,
        )
        .await;
        // The PUBACK comes only once node 2 (the owner) has stored the message.
        publish_all(
            &mut publisher,
            &format!("fleet/{node}/temp"),
            &format!("n{node}"),
            20,
        )
        .await;
    }
    let got = receive(&mut sub, 60).await;
    for node in [1, 3, 2] {
        let from_node: Vec<String> = got
            .iter()
            .map(|(p, _)| p.clone())
            .filter(|p| p.starts_with(&format!("n{node}-")))
            .collect();
        let expected: Vec<String> = (0..20).map(|i| format!("n{node}-{i}")).collect();
        assert_eq!(from_node, expected, "messages from node {node}, in order");
    }
    sub.expect_nothing(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_on_a_third_node_delivers_the_whole_backlog_in_order() {
    const BACKLOG: usize = 2_100;
    let cluster = Cluster::start(3).await;
    // Created on node 1, then offline.
    let (mut x, connack) =
        TestClient::connect(cluster.mqtt(1), ProtocolVersion::V3_1_1, "truck-7", false).await;
    assert!(!connack.session_present);
    x.subscribe("fleet/7/cmd", QoS::AtLeastOnce).await;
    x.disconnect().await;

    // QoS 1 messages through node 2, every one acknowledged: three pages of a takeover (the old
    // owner sends its queue 1,000 messages at a time), the last one short.
    let (mut publisher, _) =
        TestClient::connect(cluster.mqtt(2), ProtocolVersion::V3_1_1, "dispatch", true).await;
    publish_all(&mut publisher, "fleet/7/cmd", "cmd", BACKLOG).await;

    // Resumed on node 3.
    let started = Instant::now();
    let (mut x, connack) =
        TestClient::connect(cluster.mqtt(3), ProtocolVersion::V3_1_1, "truck-7", false).await;
    let takeover = started.elapsed();
    assert!(
        connack.session_present,
        "the session moved with Session Present = 1"
    );
    let got = receive(&mut x, BACKLOG).await;
    let payloads: Vec<String> = got.iter().map(|(p, _)| p.clone()).collect();
    let expected: Vec<String> = (0..BACKLOG).map(|i| format!("cmd-{i}")).collect();
    assert_eq!(payloads, expected, "all {BACKLOG}, in order, no duplicates");
    x.expect_nothing(Duration::from_millis(300)).await;
    eprintln!(
        "takeover with {BACKLOG} queued: CONNECT→CONNACK {takeover:?}, drained in {:?}",
        started.elapsed()
    );

    // Node 1 deleted its copy: a new message reaches the client only once, from node 3.
    publish_all(&mut publisher, "fleet/7/cmd", "late", 1).await;
    let late = receive(&mut x, 1).await;
    assert_eq!(late[0].0, "late-0");
    x.expect_nothing(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_client_id_on_two_nodes_ends_with_one_owner() {
    let cluster = Cluster::start(3).await;
    let (mut first, _) = TestClient::connect_v5(cluster.mqtt(1), "dup", false, Some(600)).await;
    first.subscribe("d/#", QoS::AtLeastOnce).await;
    let (mut second, connack) =
        TestClient::connect_v5(cluster.mqtt(2), "dup", false, Some(600)).await;
    assert!(connack.session_present);
    first
        .expect_disconnect(DisconnectReasonCode::SessionTakenOver)
        .await;

    // The survivor owns the session: messages published anywhere reach it.
    let (mut publisher, _) =
        TestClient::connect(cluster.mqtt(3), ProtocolVersion::V3_1_1, "p", true).await;
    publish_all(&mut publisher, "d/1", "m", 3).await;
    let got = receive(&mut second, 3).await;
    assert_eq!(
        got.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        ["m-0", "m-1", "m-2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_start_on_another_node_discards_the_session_everywhere() {
    let cluster = Cluster::start(3).await;
    let (mut x, _) =
        TestClient::connect(cluster.mqtt(1), ProtocolVersion::V3_1_1, "gone", false).await;
    x.subscribe("g/#", QoS::AtLeastOnce).await;
    x.disconnect().await;
    let (publisher_addr, other) = (cluster.mqtt(3), cluster.mqtt(2));
    let (mut publisher, _) =
        TestClient::connect(publisher_addr, ProtocolVersion::V3_1_1, "p", true).await;
    publish_all(&mut publisher, "g/1", "old", 5).await;

    let (fresh, connack) = TestClient::connect(other, ProtocolVersion::V3_1_1, "gone", true).await;
    assert!(!connack.session_present);
    fresh.disconnect().await;
    // Back with Clean Session = 0 on the first node: nothing of the old session is left.
    let (mut again, connack) =
        TestClient::connect(cluster.mqtt(1), ProtocolVersion::V3_1_1, "gone", false).await;
    assert!(!connack.session_present);
    again.expect_nothing(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_message_set_on_one_node_is_seen_by_subscribers_on_the_others() {
    let cluster = Cluster::start(3).await;
    let (mut publisher, _) =
        TestClient::connect(cluster.mqtt(1), ProtocolVersion::V3_1_1, "p", true).await;
    let id = publisher.next_packet_id();
    publisher
        .send(Packet::Publish(Publish {
            retain: true,
            ..match qos1("status/door", id.get(), "open".into()) {
                Packet::Publish(p) => p,
                _ => unreachable!(),
            }
        }))
        .await;
    assert!(matches!(publisher.recv().await, Packet::PubAck(_)));
    for node in [2, 3] {
        let (mut sub, _) = TestClient::connect(
            cluster.mqtt(node),
            ProtocolVersion::V3_1_1,
            &format!("s{node}"),
            true,
        )
        .await;
        sub.subscribe("status/#", QoS::AtLeastOnce).await;
        let publish = sub.recv_publish_and_ack().await;
        assert_eq!((text(&publish).as_str(), publish.retain), ("open", true));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_majority_refuses_connect_then_recovers() {
    let mut cluster = Cluster::start(3).await;
    cluster.kill9(2);
    cluster.kill9(3);
    let lone = cluster.mqtt(1);
    let started = Instant::now();
    let (_client, connack) =
        TestClient::connect_with(lone, connect_packet(ProtocolVersion::V3_1_1, "late", false))
            .await;
    assert_eq!(
        connack.reason,
        ConnectReasonCode::ServerUnavailable,
        "3.1.1 return code 3"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused after a bounded wait"
    );

    // The others come back on their data: the cluster has a majority again.
    cluster.restart(2);
    cluster.restart(3);
    cluster.wait_voters(3).await;
    let (client, connack) = TestClient::connect(lone, ProtocolVersion::V3_1_1, "late", false).await;
    assert!(!connack.session_present);
    client.disconnect().await;
    let members: BTreeSet<u64> = status(cluster.node(1).cluster.unwrap())
        .await
        .and_then(|s| s.membership)
        .and_then(|m| m.configs.last().map(|c| c.ids.iter().copied().collect()))
        .unwrap_or_default();
    assert_eq!(members, BTreeSet::from([1, 2, 3]));
}

/// Publishes `m-N` messages one at a time until `count` have been acknowledged.
async fn publish_until(publisher: &mut TestClient, acked: &mut Vec<String>, count: usize) {
    while acked.len() < count {
        let payload = format!("m-{}", acked.len());
        assert!(
            publish_one(publisher, "load/x", payload.clone()).await,
            "PUBACK missing for {payload}"
        );
        acked.push(payload);
    }
}

/// Publishes `payload` as QoS 1 on `client`; true once PUBACKed (false if the connection ended
/// without one, e.g. a 3.1.1 publisher whose message could not reach an owner).
async fn publish_one(client: &mut TestClient, topic_name: &str, payload: String) -> bool {
    let id = client.next_packet_id();
    client.send(qos1(topic_name, id.get(), payload)).await;
    loop {
        match client.try_recv(Duration::from_secs(30)).await {
            Some(Packet::PubAck(ack)) if ack.packet_id == id => return !ack.reason.is_error(),
            Some(_) => continue,
            None => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader_and_of_an_owner_under_qos1_load_loses_no_acknowledged_message() {
    let mut cluster = Cluster::start(3).await;
    // Two offline persistent sessions: one owned by node 2, one by node 3.
    for (node, id) in [(2, "on-2"), (3, "on-3")] {
        let (mut s, _) =
            TestClient::connect(cluster.mqtt(node), ProtocolVersion::V3_1_1, id, false).await;
        s.subscribe("load/#", QoS::AtLeastOnce).await;
        s.disconnect().await;
    }
    let publisher_node = 2;
    let (mut publisher, _) = TestClient::connect(
        cluster.mqtt(publisher_node),
        ProtocolVersion::V3_1_1,
        "loader",
        true,
    )
    .await;
    let mut acked = Vec::new();
    publish_until(&mut publisher, &mut acked, 100).await;
    // The leader (node 1, which formed the cluster) dies mid-stream; forwarding between the
    // owners does not need it, and the others elect a new leader.
    cluster.kill9(1);
    publish_until(&mut publisher, &mut acked, 200).await;
    cluster.restart(1);
    cluster.wait_voters(3).await;
    publish_until(&mut publisher, &mut acked, 300).await;
    // An owner dies: messages for its session wait (unacknowledged) until it is back.
    cluster.kill9(3);
    cluster.restart(3);
    publish_until(&mut publisher, &mut acked, 400).await;

    for (node, id) in [(2, "on-2"), (3, "on-3")] {
        let (mut s, connack) =
            TestClient::connect(cluster.mqtt(node), ProtocolVersion::V3_1_1, id, false).await;
        assert!(connack.session_present, "{id}");
        let got: Vec<String> = receive(&mut s, acked.len())
            .await
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(got, acked, "{id}: every acknowledged message, in order");
    }
}

/// A port the OS just gave out and took back (for `--peers`, which must name every address
/// before the nodes start).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_peers_form_the_cluster_once_a_majority_is_up() {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, port)| format!("{}=127.0.0.1:{port}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let dirs: Vec<TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let start = |i: usize| {
        Berth::start(
            dirs[i].path(),
            &Options {
                node_id: Some(i as u64 + 1),
                cluster_addr: Some(SocketAddr::from(([127, 0, 0, 1], ports[i]))),
                env: vec![("BERTH_CLUSTER_PEERS".into(), peers.clone())],
                ..Options::default()
            },
        )
    };
    // Two of three: a majority, so the cluster serves.
    let first = start(0);
    let second = start(1);
    wait_accepting(first.mqtt).await;
    let (mut sub, _) =
        TestClient::connect(second.mqtt, ProtocolVersion::V3_1_1, "static-sub", false).await;
    sub.subscribe("s/#", QoS::AtLeastOnce).await;
    // The third joins late and routes like the others.
    let third = start(2);
    let cluster = Cluster::of(vec![first, second, third], dirs);
    cluster.wait_voters(3).await;
    let (mut publisher, _) =
        TestClient::connect(cluster.mqtt(3), ProtocolVersion::V3_1_1, "static-pub", true).await;
    publish_all(&mut publisher, "s/1", "x", 5).await;
    let got = receive(&mut sub, 5).await;
    assert_eq!(got.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_an_owner_dies_the_leader_publishes_its_clients_wills_and_expires_their_sessions() {
    let mut cluster = Cluster::start(3).await;
    let (mut watcher, _) =
        TestClient::connect(cluster.mqtt(2), ProtocolVersion::V3_1_1, "watcher", true).await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    // Connected to node 3 with a will (1 s delay) and a 3 s session expiry.
    let mut connect = berth_e2e::client::connect_v5("doomed", true, Some(3));
    let mut will = berth_e2e::client::will("wills/doomed", "doomed is gone", QoS::AtLeastOnce);
    will.properties.will_delay_interval = Some(1);
    connect.will = Some(will);
    let (_doomed, connack) = TestClient::connect_with(cluster.mqtt(3), connect).await;
    assert!(!connack.reason.is_error());

    let killed = Instant::now();
    cluster.kill9(3);
    // The leader notices within its owner timeout (3 s), then the will delay runs.
    let will = watcher.recv_publish_and_ack().await;
    assert_eq!(text(&will), "doomed is gone");
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "will after {:?}",
        killed.elapsed()
    );
    watcher.expect_nothing(Duration::from_millis(500)).await;

    // Past the session expiry the leader has ended the session: nothing to resume elsewhere.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_again, connack) = TestClient::connect_with(
        cluster.mqtt(1),
        berth_e2e::client::connect_v5("doomed", false, Some(60)),
    )
    .await;
    assert!(!connack.reason.is_error());
    assert!(
        !connack.session_present,
        "the leader expired the dead owner's session"
    );
}

/// `berth cluster ...` against a running cluster; returns its stdout.
fn admin(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("cluster")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run berth cluster");
    assert!(
        output.status.success(),
        "berth cluster {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_commands_shrink_and_grow_the_cluster() {
    let cluster = Cluster::start(3).await;
    let at = cluster.node(1).cluster.unwrap().to_string();
    let third = cluster.node(3).cluster.unwrap().to_string();
    let status = admin(&["status", "--at", &at]);
    assert_eq!(status.matches(" voter").count(), 3, "{status}");

    let after = admin(&["remove", "--at", &at, "--node", "3"]);
    assert!(!after.contains(&third), "node 3 is gone: {after}");
    assert_eq!(after.matches(" voter").count(), 2, "{after}");
    // Two voters still form a majority: the cluster keeps serving.
    wait_accepting(cluster.mqtt(2)).await;

    let grown = admin(&["add", "--at", &at, "--node", "3", "--addr", &third]);
    assert_eq!(grown.matches(" voter").count(), 3, "{grown}");
    cluster.wait_voters(3).await;
    let (mut sub, _) =
        TestClient::connect(cluster.mqtt(3), ProtocolVersion::V3_1_1, "back", false).await;
    sub.subscribe("b/#", QoS::AtLeastOnce).await;
    let (mut publisher, _) =
        TestClient::connect(cluster.mqtt(1), ProtocolVersion::V3_1_1, "p", true).await;
    publish_all(&mut publisher, "b/1", "r", 3).await;
    assert_eq!(receive(&mut sub, 3).await.len(), 3);
}

/// A shared subscription with members on two nodes: every message published on a third node
/// reaches exactly one member of the group, and both members get some.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_group_across_nodes_gets_each_message_once() {
    let cluster = Cluster::start(3).await;
    let (mut a, _) =
        TestClient::connect(cluster.mqtt(1), ProtocolVersion::V3_1_1, "worker-a", true).await;
    a.subscribe("$share/workers/jobs/#", QoS::AtLeastOnce).await;
    let (mut b, _) =
        TestClient::connect(cluster.mqtt(2), ProtocolVersion::V3_1_1, "worker-b", true).await;
    b.subscribe("$share/workers/jobs/#", QoS::AtLeastOnce).await;
    let (mut publisher, _) =
        TestClient::connect(cluster.mqtt(3), ProtocolVersion::V3_1_1, "dispatcher", true).await;
    publish_all(&mut publisher, "jobs/new", "job", 100).await;

    let mut seen = Vec::new();
    let mut per_member = [0usize; 2];
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 100 && Instant::now() < deadline {
        for (i, member) in [&mut a, &mut b].into_iter().enumerate() {
            while let Some(packet) = member.try_recv(Duration::from_millis(50)).await {
                let Packet::Publish(publish) = packet else {
                    panic!("expected PUBLISH, got {packet:?}");
                };
                member.ack(&publish).await;
                seen.push(text(&publish));
                per_member[i] += 1;
            }
        }
    }
    seen.sort_by_key(|p| p.trim_start_matches("job-").parse::<u32>().unwrap());
    let expected: Vec<String> = (0..100).map(|i| format!("job-{i}")).collect();
    assert_eq!(seen, expected, "each job exactly once across the group");
    assert!(
        per_member.iter().all(|n| *n > 0),
        "both members got jobs: {per_member:?}"
    );
    a.expect_nothing(Duration::from_millis(300)).await;
    b.expect_nothing(Duration::from_millis(300)).await;
}

//! The ACL rules file against the real binary: PUBLISH and SUBSCRIBE refusals as a client sees
//! them in both protocol versions, wildcard delivery, a rules change by SIGHUP that applies to
//! an existing subscription, and the same decision across a 3-node cluster (a subscription
//! replicated on one node, the session taken over on another).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

mod support;

use std::path::Path;
use std::time::Duration;

use berth_codec::{ProtocolVersion, PubAckReasonCode, QoS, SubAckReasonCode};
use berth_e2e::client::{TestClient, message, text};
use support::cluster::Cluster;
use support::{Berth, Options};

const RULES: &str = r##"
default = "deny"

[[rule]]                # each device under its own prefix
permission = "allow"
action = "both"
topic = "devices/%c/#"

[[rule]]                # the plant's readings, but not its secrets
permission = "deny"
action = "subscribe"
topic = "plant/secret/#"

[[rule]]
permission = "allow"
action = "both"
topic = "plant/#"
source = "127.0.0.0/8"
"##;

/// The rules with the plant's readings closed to subscribers.
const CLOSED: &str = r##"
default = "deny"

[[rule]]
permission = "allow"
action = "both"
topic = "devices/%c/#"

[[rule]]
permission = "allow"
action = "publish"
topic = "plant/#"
"##;

fn node_with_rules(dir: &Path, rules: &Path) -> Berth {
    Berth::start(
        &dir.join("data"),
        &Options {
            env: vec![("BERTH_ACL_FILE".into(), rules.display().to_string())],
            ..Options::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_file_decides_publish_subscribe_and_delivery_and_sighup_changes_it() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("acl.toml");
    std::fs::write(&rules, RULES).unwrap();
    let node = node_with_rules(dir.path(), &rules);

    let (mut watcher, _) =
        TestClient::connect(node.mqtt, ProtocolVersion::V5, "watcher", true).await;
    let ack = watcher.subscribe("#", QoS::AtLeastOnce).await;
    assert_eq!(
        ack.reason_codes,
        [SubAckReasonCode::GrantedQoS1],
        "# under allowed topics"
    );
    let ack = watcher.subscribe("plant/secret/#", QoS::AtLeastOnce).await;
    assert_eq!(ack.reason_codes, [SubAckReasonCode::NotAuthorized]);
    let (mut v3, _) =
        TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "old-device", true).await;
    let ack = v3.subscribe("other/x", QoS::AtLeastOnce).await;
    assert_eq!(
        ack.reason_codes,
        [SubAckReasonCode::UnspecifiedError],
        "0x80 in 3.1.1"
    );

    let (mut device, _) = TestClient::connect(node.mqtt, ProtocolVersion::V5, "d1", true).await;
    assert_eq!(
        device.publish_reason("elsewhere/x", b"no").await,
        PubAckReasonCode::NotAuthorized
    );
    assert_eq!(
        device.publish_reason("devices/d2/t", b"not mine").await,
        PubAckReasonCode::NotAuthorized
    );
    // 3.1.1 cannot hear a refusal: acknowledged, dropped.
    assert_eq!(
        v3.publish_reason("elsewhere/x", b"no").await,
        PubAckReasonCode::Success
    );
    device
        .publish("plant/secret/code", b"1234", QoS::AtLeastOnce)
        .await;
    device
        .publish("plant/line/temp", b"21", QoS::AtLeastOnce)
        .await;
    // Only the reading reaches "#": the secret is published (allowed) but not delivered.
    let got = watcher.recv_publish_and_ack().await;
    assert_eq!(text(&got), "21");
    watcher.expect_nothing(Duration::from_millis(300)).await;
    berth_e2e::metrics::wait_for(
        node.http,
        "berth_messages_dropped_total{reason=\"not_authorized\"}",
        4,
    )
    .await;

    // Closed by SIGHUP: the existing "#" subscription stops delivering the plant's readings.
    std::fs::write(&rules, CLOSED).unwrap();
    node.hangup();
    node.wait_for_log("ACL rules reloaded", Duration::from_secs(10));
    device
        .publish("plant/line/temp", b"22", QoS::AtLeastOnce)
        .await;
    watcher.expect_nothing(Duration::from_millis(300)).await;

    // A rules file broken by hand keeps the rules in force.
    std::fs::write(&rules, "default = \"maybe\"\n").unwrap();
    node.hangup();
    let line = node.wait_for_log("ACL rules not reloaded", Duration::from_secs(10));
    assert!(line.contains("default"), "names what is wrong: {line}");
    assert_eq!(
        device.publish_reason("elsewhere/x", b"still no").await,
        PubAckReasonCode::NotAuthorized
    );
}

#[test]
fn a_bad_rules_file_stops_the_node_naming_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("acl.toml");
    std::fs::write(
        &rules,
        "default = \"deny\"\n[[rule]]\npermission = \"allow\"\naction = \"jump\"\ntopic = \"#\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("BERTH_ACL_FILE", &rules)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("acl.file") && stderr.contains("rule 1"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_of_a_cluster_applies_the_same_rules_to_a_session_taken_over() {
    let rules_dir = tempfile::tempdir().unwrap();
    let rules = rules_dir.path().join("acl.toml");
    std::fs::write(&rules, RULES).unwrap();
    let rules_path = rules.display().to_string();
    let cluster = Cluster::start_with(3, move |id, join| {
        let mut options = support::cluster::options(id, join);
        options
            .env
            .push(("BERTH_ACL_FILE".into(), rules_path.clone()));
        options
    })
    .await;

    // On node 1: a persistent session whose refused filter never reaches the registry.
    let (mut watcher, _) =
        TestClient::connect(cluster.mqtt(1), ProtocolVersion::V3_1_1, "watcher", false).await;
    let ack = watcher.subscribe("#", QoS::AtLeastOnce).await;
    assert_eq!(ack.reason_codes, [SubAckReasonCode::GrantedQoS1]);
    let ack = watcher.subscribe("plant/secret/#", QoS::AtLeastOnce).await;
    assert_eq!(
        ack.reason_codes,
        [SubAckReasonCode::UnspecifiedError],
        "0x80"
    );
    watcher.disconnect().await;

    // Published through node 2 while it is offline; a retained secret too.
    let (mut device, _) =
        TestClient::connect(cluster.mqtt(2), ProtocolVersion::V5, "d1", true).await;
    let mut secret = message("plant/secret/code", b"1234", QoS::AtLeastOnce);
    secret.retain = true;
    device.publish_with(secret).await;
    for payload in ["r1", "r2"] {
        device
            .publish("plant/line/temp", payload.as_bytes(), QoS::AtLeastOnce)
            .await;
    }
    assert_eq!(
        device.publish_reason("devices/other/t", b"no").await,
        PubAckReasonCode::NotAuthorized
    );

    // Resumed on node 3: the backlog of what it may read, in order, and nothing else.
    let (mut watcher, connack) =
        TestClient::connect(cluster.mqtt(3), ProtocolVersion::V3_1_1, "watcher", false).await;
    assert!(connack.session_present);
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(text(&watcher.recv_publish_and_ack().await));
    }
    assert_eq!(got, ["r1", "r2"]);
    watcher.expect_nothing(Duration::from_millis(500)).await;
    // A fresh wildcard subscriber on node 3 is not sent the retained secret either.
    let (mut late, _) =
        TestClient::connect(cluster.mqtt(3), ProtocolVersion::V5, "late", true).await;
    late.subscribe("plant/#", QoS::AtLeastOnce).await;
    late.expect_nothing(Duration::from_millis(500)).await;
}

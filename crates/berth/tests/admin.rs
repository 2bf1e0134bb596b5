//! The admin API, as an operator meets it. Cluster-wide reads: any node lists every session of
//! the cluster (owner, state, protocol, subscriptions) with filters and paging, shows one
//! session with its subscriptions and will, and lists retained messages; `berth ctl sessions`
//! prints them; after one node's clients all drop at once, another node lists its persistent
//! sessions as offline and its clean ones as gone. A bad parameter is a 400 naming it. Session
//! operations, answered by the session's owner whichever node is asked: peek at a queue, purge
//! it (the session and its subscriptions stay), kick a client (DISCONNECT 0x98), discard a
//! session; an owner that is down is reported as such, quickly.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use berth_codec::{DisconnectReasonCode, ProtocolVersion, QoS};
use berth_e2e::client::{TestClient, will};
use berth_e2e::metrics::{dropped, wait_for};
use serde_json::Value;
use support::cluster::Cluster;
use support::{Berth, Options, ctl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path`: the status and the JSON body.
async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    call(addr, "GET", path).await
}

/// `method path`: the status and the JSON body.
async fn call(addr: SocketAddr, method: &str, path: &str) -> (u16, Value) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the admin API answers in time")
}

fn ids(page: &Value) -> Vec<String> {
    page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["client_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_lists_and_shows_the_sessions_and_retained_messages_of_the_cluster() {
    let cluster = Cluster::start(3).await;
    let (n1, n2, http3) = (cluster.mqtt(1), cluster.mqtt(2), cluster.node(3).http);
    let mut connect = berth_e2e::client::connect_v5("dev-a", false, Some(600));
    connect.will = Some(will("wills/dev-a", "gone", QoS::AtLeastOnce));
    let (mut a, _) = TestClient::connect_with(n1, connect).await;
    a.subscribe("cmd/dev-a/#", QoS::AtLeastOnce).await;
    let (mut b, _) = TestClient::connect(n2, ProtocolVersion::V3_1_1, "dev-b", false).await;
    b.subscribe("cmd/dev-b", QoS::ExactlyOnce).await;
    b.abort();
    let (mut c, _) = TestClient::connect_v5(n2, "other-c", false, Some(60)).await;
    c.publish_with(berth_codec::Publish {
        retain: true,
        ..berth_e2e::client::message("status/c", b"online", QoS::AtLeastOnce)
    })
    .await;

    // Node 3 holds none of them and answers for all, once its registry has applied them.
    let deadline = Instant::now() + Duration::from_secs(20);
    let all = loop {
        let (status, page) = get(http3, "/api/v1/sessions").await;
        assert_eq!(status, 200, "{page}");
        let b_offline = page["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["client_id"] == "dev-b" && s["connected"] == false);
        if ids(&page) == ["dev-a", "dev-b", "other-c"] && b_offline {
            break page;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 never listed the three: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let a_summary = &all["sessions"][0];
    assert_eq!(a_summary["node"], 1);
    assert_eq!(a_summary["connected"], true);
    assert_eq!(a_summary["protocol"], "5.0");
    assert_eq!(a_summary["session_expiry"], 600);
    assert_eq!(a_summary["subscriptions"], 1);
    assert_eq!(a_summary["will"], true);
    assert_eq!(all["sessions"][1]["node"], 2);
    assert_eq!(all["sessions"][1]["protocol"], "3.1.1");
    assert_eq!(all["next"], Value::Null);

    // Filters and paging.
    let (_, page) = get(http3, "/api/v1/sessions?prefix=dev-").await;
    assert_eq!(ids(&page), ["dev-a", "dev-b"]);
    let (_, page) = get(http3, "/api/v1/sessions?node=2").await;
    assert_eq!(ids(&page), ["dev-b", "other-c"]);
    let (_, page) = get(http3, "/api/v1/sessions?connected=false").await;
    assert_eq!(ids(&page), ["dev-b"]);
    let (_, page) = get(http3, "/api/v1/sessions?protocol=5.0").await;
    assert_eq!(ids(&page), ["dev-a", "other-c"]);
    let (_, first) = get(http3, "/api/v1/sessions?limit=2").await;
    assert_eq!(ids(&first), ["dev-a", "dev-b"]);
    assert_eq!(first["next"], "dev-b");
    let (_, second) = get(http3, "/api/v1/sessions?limit=2&after=dev-b").await;
    assert_eq!(ids(&second), ["other-c"]);
    assert_eq!(second["next"], Value::Null);
    let (status, refused) = get(http3, "/api/v1/sessions?connected=maybe").await;
    assert_eq!(status, 400);
    assert!(
        refused["error"].as_str().unwrap().contains("connected"),
        "{refused}"
    );
    let (status, _) = get(http3, "/api/v1/sessions?limit=0").await;
    assert_eq!(status, 400);

    // One session in detail.
    let (status, detail) = get(http3, "/api/v1/sessions/dev-a").await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["subscription_list"][0]["filter"], "cmd/dev-a/#");
    assert_eq!(detail["subscription_list"][0]["qos"], 1);
    assert_eq!(detail["will_message"]["topic"], "wills/dev-a");
    let (status, _) = get(http3, "/api/v1/sessions/nobody").await;
    assert_eq!(status, 404);

    // Retained messages.
    let (status, retained) = get(http3, "/api/v1/retained").await;
    assert_eq!(status, 200);
    assert_eq!(retained["retained"][0]["topic"], "status/c");
    assert_eq!(retained["retained"][0]["bytes"], 6);

    // The same list from the command line.
    let http = http3.to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["ctl", "--at", &http, "sessions", "--prefix", "dev-"])
            .env_clear()
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{table}");
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows[0].starts_with("dev-a") && rows[0].contains("connected"),
        "{table}"
    );
    assert!(
        rows[1].starts_with("dev-b") && rows[1].contains("offline"),
        "{table}"
    );
    drop(a);
    drop(c);
}

/// A node's connections all dropped at once (a load balancer failing): every session that ended
/// leaves the registry and every one that outlives its connection shows as offline there, seen
/// from another node. The owner records these changes through one task, not one task each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_a_mass_disconnect_ends_or_detaches_reaches_the_registry() {
    const CLIENTS: usize = 300;
    let cluster = Cluster::start(3).await;
    let (n1, http2) = (cluster.mqtt(1), cluster.node(2).http);
    let name = |i: usize| format!("mass-{i:03}");
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        // Even: persistent (MQTT 5, expiry 600 s); odd: clean (MQTT 3.1.1).
        let (client, _) = if i % 2 == 0 {
            TestClient::connect_v5(n1, &name(i), false, Some(600)).await
        } else {
            TestClient::connect(n1, ProtocolVersion::V3_1_1, &name(i), true).await
        };
        clients.push(client);
    }
    // Node 2's view: (listed, of them connected, of them owned by node 1).
    let view = async || {
        let (status, page) = get(http2, "/api/v1/sessions?prefix=mass-&limit=1000").await;
        assert_eq!(status, 200, "{page}");
        let sessions = page["sessions"].as_array().unwrap().clone();
        let count = |key: &str, value: Value| sessions.iter().filter(|s| s[key] == value).count();
        (
            ids(&page),
            count("connected", true.into()),
            count("node", 1.into()),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while view().await.1 < CLIENTS {
        assert!(
            Instant::now() < deadline,
            "node 2 never listed all {CLIENTS} as connected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    clients.into_iter().for_each(TestClient::abort);
    let persistent: Vec<String> = (0..CLIENTS).step_by(2).map(name).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (listed, connected, on_node_1) = view().await;
        if listed == persistent && connected == 0 {
            assert_eq!(
                on_node_1,
                persistent.len(),
                "the detached sessions stay node 1's"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the mass disconnect node 2 lists {} sessions ({} persistent expected), {connected} of them connected",
            listed.len(),
            persistent.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `GET path` at `http` until `done` holds for its answer (bounded); returns it.
async fn wait_answer(
    http: SocketAddr,
    path: &str,
    done: impl Fn(u16, &Value) -> bool,
) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(http, path).await;
        if done(status, &body) {
            return (status, body);
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} never gave the expected answer (last {status} {body})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Three QoS 1 messages for `dev`, published while it is offline.
async fn queue_three(mqtt: SocketAddr, dev_mqtt: SocketAddr) {
    let (mut dev, _) = TestClient::connect_v5(dev_mqtt, "dev", false, Some(600)).await;
    dev.subscribe("cmd/dev", QoS::AtLeastOnce).await;
    // A clean DISCONNECT: the broker has the session offline before anything is published.
    dev.disconnect().await;
    let (mut sender, _) = TestClient::connect_v5(mqtt, "sender", true, None).await;
    for n in 1..=3 {
        sender
            .publish("cmd/dev", format!("m-{n}").as_bytes(), QoS::AtLeastOnce)
            .await;
    }
    sender.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_peeks_purges_kicks_and_discards_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let node = Berth::start(dir.path(), &Options::default());
    support::cluster::wait_accepting(node.mqtt).await;
    let http = node.http;
    queue_three(node.mqtt, node.mqtt).await;

    // Peek.
    let (status, queue) = get(http, "/api/v1/sessions/dev/queue?limit=2").await;
    assert_eq!(status, 200, "{queue}");
    assert_eq!(queue["queued_messages"], 3);
    assert_eq!(queue["in_flight"], 0);
    assert_eq!(queue["connected_since_ms"], Value::Null);
    assert!(queue["oldest_message_age_ms"].is_u64(), "{queue}");
    let listed = queue["messages"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["topic"], "cmd/dev");
    assert_eq!(listed[0]["qos"], 1);
    assert_eq!(listed[0]["bytes"], 3);
    let (status, detail) = get(http, "/api/v1/sessions/dev").await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["owner_unreachable"], false);
    assert_eq!(detail["queued_messages"], 3);
    assert_eq!(detail["subscriptions"], 1);
    let table = ctl(http, &["queue", "dev"]).await;
    assert!(table.contains("queued: 3 messages"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.starts_with("cmd/dev")).count(),
        3,
        "{table}"
    );

    // Purge: the session and its subscription stay, the messages do not.
    let said = ctl(http, &["purge", "dev"]).await;
    assert!(said.contains("purged 3 messages"), "{said}");
    wait_for(http, &dropped("purged"), 3).await;
    let (mut dev, connack) = TestClient::connect_v5(node.mqtt, "dev", false, Some(600)).await;
    assert!(connack.session_present);
    dev.expect_nothing(Duration::from_millis(500)).await;
    let (mut sender, _) = TestClient::connect_v5(node.mqtt, "sender", true, None).await;
    sender.publish("cmd/dev", b"after", QoS::AtLeastOnce).await;
    let publish = dev.recv_publish_and_ack().await;
    assert_eq!(&publish.payload[..], b"after");
    let (_, queue) = get(http, "/api/v1/sessions/dev/queue").await;
    assert!(queue["connected_since_ms"].is_u64(), "{queue}");
    assert_eq!(queue["client_address"], "127.0.0.1");

    // Kick: DISCONNECT 0x98, the session stays.
    let said = ctl(http, &["kick", "dev"]).await;
    assert!(said.contains("kicked dev; its session stays"), "{said}");
    dev.expect_disconnect(DisconnectReasonCode::AdministrativeAction)
        .await;
    wait_for(http, "berth_connections_closed_total{reason=\"kicked\"}", 1).await;
    let (mut dev, connack) = TestClient::connect_v5(node.mqtt, "dev", false, Some(600)).await;
    assert!(connack.session_present);

    // Discard: closed again, and the session is gone everywhere.
    let said = ctl(http, &["discard", "dev"]).await;
    assert!(said.contains("discarded the session of dev"), "{said}");
    dev.expect_disconnect(DisconnectReasonCode::AdministrativeAction)
        .await;
    // The registry forgets it once the end has committed.
    wait_answer(http, "/api/v1/sessions/dev", |status, _| status == 404).await;
    let (status, _) = call(http, "DELETE", "/api/v1/sessions/dev/queue").await;
    assert_eq!(status, 404);
    let (status, _) = call(http, "POST", "/api/v1/sessions/nobody/kick").await;
    assert_eq!(status, 404);
    let (_, connack) = TestClient::connect_v5(node.mqtt, "dev", false, Some(600)).await;
    assert!(!connack.session_present);
    drop(sender);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_2_acts_on_a_session_owned_by_node_1_and_reports_it_gone_when_node_1_is() {
    let mut cluster = Cluster::start(2).await;
    let (n1, n2, http2) = (cluster.mqtt(1), cluster.mqtt(2), cluster.node(2).http);
    // Owned by node 1, published through node 2 (forwarded, stored on node 1).
    queue_three(n2, n1).await;

    let (_, queue) = wait_answer(http2, "/api/v1/sessions/dev/queue", |status, body| {
        status == 200 && body["queued_messages"] == 3
    })
    .await;
    assert_eq!(queue["messages"].as_array().unwrap().len(), 3);
    let (status, detail) = get(http2, "/api/v1/sessions/dev").await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["node"], 1);
    assert_eq!(detail["owner_unreachable"], false);
    assert_eq!(detail["queued_messages"], 3);

    let (status, purged) = call(http2, "DELETE", "/api/v1/sessions/dev/queue").await;
    assert_eq!(status, 200, "{purged}");
    assert_eq!(purged["purged_messages"], 3);
    let (mut dev, connack) = TestClient::connect_v5(n1, "dev", false, Some(600)).await;
    assert!(connack.session_present);
    dev.expect_nothing(Duration::from_millis(500)).await;
    let (status, kicked) = call(http2, "POST", "/api/v1/sessions/dev/kick").await;
    assert_eq!(status, 200, "{kicked}");
    assert_eq!(kicked["was_connected"], true);
    dev.expect_disconnect(DisconnectReasonCode::AdministrativeAction)
        .await;

    // Node 1 down: node 2 still lists the session and says its owner does not answer, at once
    // (bounded), rather than hanging.
    cluster.kill9(1);
    let started = Instant::now();
    let (status, detail) = get(http2, "/api/v1/sessions/dev").await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["owner_unreachable"], true, "{detail}");
    assert!(detail["owner_error"].is_string(), "{detail}");
    let (status, refused) = call(http2, "POST", "/api/v1/sessions/dev/kick").await;
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["owner"], 1);
    assert_eq!(refused["owner_unreachable"], true);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
}

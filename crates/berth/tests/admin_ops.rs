//! The admin API's changes, as an operator makes them against the binary: a message published
//! by the operator reaches subscribers and offline queues as a client's would (QoS 1 answered
//! once stored), a retained one can be read and deleted everywhere; a subscription added to an
//! offline session collects what is published while it is away, until it is removed; and from
//! any node of a cluster, the same relayed to the session's owner, plus the membership shown,
//! shrunk and grown. `berth ctl` drives some of each.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use berth_codec::QoS;
use berth_e2e::client::{TestClient, text};
use serde_json::{Value, json};
use support::cluster::{Cluster, wait_accepting};
use support::{Berth, Options, ctl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `method path` with an optional JSON body: the status and the JSON answer.
async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    };
    // Longer than the API's own bounds (a membership change may take 20 s).
    tokio::time::timeout(Duration::from_secs(40), exchange)
        .await
        .expect("the admin API answers in time")
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    call(addr, "GET", path, None).await
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

/// The `error` of a refusal, asserting its status.
fn refusal(answer: (u16, Value), status: u16) -> String {
    assert_eq!(answer.0, status, "{}", answer.1);
    answer.1["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_publishes_and_reads_and_deletes_retained_messages() {
    let dir = tempfile::tempdir().unwrap();
    let node = Berth::start(dir.path(), &Options::default());
    wait_accepting(node.mqtt).await;
    let http = node.http;
    let (mut watcher, _) = TestClient::connect_v5(node.mqtt, "watcher", true, None).await;
    watcher.subscribe("ops/#", QoS::AtLeastOnce).await;

    // QoS 1: answered once stored, delivered as a client's PUBLISH.
    let (status, answer) = call(
        http,
        "POST",
        "/api/v1/publish",
        Some(json!({ "topic": "ops/cmd", "payload": "hello", "qos": 1 })),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["matched"], 1);
    assert_eq!(answer["stored"], true);
    let got = watcher.recv_publish_and_ack().await;
    assert_eq!(text(&got), "hello");
    assert_eq!(got.qos, QoS::AtLeastOnce);

    // A retained one with bytes and properties.
    let (status, answer) = call(
        http,
        "POST",
        "/api/v1/publish",
        Some(json!({
            "topic": "ops/status",
            "payload": "AAEC/w==",
            "payload_encoding": "base64",
            "qos": 1,
            "retain": true,
            "content_type": "application/octet-stream",
            "user_properties": [{ "key": "by", "value": "ops" }],
        })),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let got = watcher.recv_publish_and_ack().await;
    assert_eq!(&got.payload[..], [0, 1, 2, 255]);
    assert_eq!(
        got.properties.user_properties[0].value.as_str(),
        "ops",
        "its properties travel with it"
    );
    let (status, retained) = get(http, "/api/v1/retained/ops%2Fstatus").await;
    assert_eq!(status, 200, "{retained}");
    assert_eq!(retained["payload"], "AAEC/w==");
    assert_eq!(retained["payload_encoding"], "base64");
    assert_eq!(retained["qos"], 1);
    assert_eq!(retained["bytes"], 4);
    assert_eq!(retained["content_type"], "application/octet-stream");
    assert_eq!(retained["user_properties"][0]["key"], "by");
    let shown = ctl(http, &["retained", "get", "ops/status"]).await;
    assert!(shown.starts_with("ops/status: QoS 1, 4 bytes"), "{shown}");
    let listed = ctl(http, &["retained", "list"]).await;
    assert!(
        listed.lines().any(|l| l.starts_with("ops/status")),
        "{listed}"
    );
    let (mut late, _) = TestClient::connect_v5(node.mqtt, "late", true, None).await;
    late.subscribe("ops/status", QoS::AtLeastOnce).await;
    let got = late.recv_publish_and_ack().await;
    assert!(got.retain);
    assert_eq!(&got.payload[..], [0, 1, 2, 255]);

    // Deleted: gone for new subscribers, and nothing delivered to the current ones.
    let said = ctl(http, &["retained", "delete", "ops/status"]).await;
    assert!(
        said.contains("deleted the retained message of ops/status"),
        "{said}"
    );
    let (status, _) = get(http, "/api/v1/retained/ops%2Fstatus").await;
    assert_eq!(status, 404);
    let (mut later, _) = TestClient::connect_v5(node.mqtt, "later", true, None).await;
    later.subscribe("ops/#", QoS::AtLeastOnce).await;
    later.expect_nothing(Duration::from_millis(500)).await;
    watcher.expect_nothing(Duration::from_millis(200)).await;
    let (status, _) = call(http, "DELETE", "/api/v1/retained/ops%2Fstatus", None).await;
    assert_eq!(status, 404);

    // From the command line.
    let said = ctl(http, &["publish", "ops/cmd", "-m", "via ctl", "--qos", "1"]).await;
    assert!(
        said.contains("published to ops/cmd at QoS 1: 2 matching sessions"),
        "{said}"
    );
    assert_eq!(text(&watcher.recv_publish_and_ack().await), "via ctl");
    assert_eq!(text(&later.recv_publish_and_ack().await), "via ctl");

    // What a client could not publish, named.
    for (body, field) in [
        (json!({ "topic": "ops/+" }), "topic"),
        (json!({ "topic": "ops/a", "qos": 5 }), "qos"),
        (
            json!({ "topic": "ops/a", "payload": "%%", "payload_encoding": "base64" }),
            "payload",
        ),
        (json!({ "topic": "ops/a", "colour": "red" }), "colour"),
    ] {
        let error = refusal(call(http, "POST", "/api/v1/publish", Some(body)).await, 400);
        assert!(error.starts_with(&format!("{field}: ")), "{error}");
    }
    watcher.expect_nothing(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_added_to_an_offline_session_collects_messages_until_removed() {
    let dir = tempfile::tempdir().unwrap();
    let node = Berth::start(dir.path(), &Options::default());
    wait_accepting(node.mqtt).await;
    let http = node.http;
    let (dev, _) = TestClient::connect_v5(node.mqtt, "dev", false, Some(600)).await;
    dev.disconnect().await;
    // A retained message that matches the filter to come: it is not sent for it.
    let (status, _) = call(
        http,
        "POST",
        "/api/v1/publish",
        Some(json!({ "topic": "cmd/dev/state", "payload": "on", "qos": 1, "retain": true })),
    )
    .await;
    assert_eq!(status, 200);

    let said = ctl(http, &["subscribe", "dev", "cmd/dev/#", "--qos", "1"]).await;
    assert!(
        said.contains("subscribed dev to cmd/dev/# at QoS 1"),
        "{said}"
    );
    let (_, detail) = get(http, "/api/v1/sessions/dev").await;
    assert_eq!(
        detail["subscription_list"][0]["filter"], "cmd/dev/#",
        "{detail}"
    );
    assert_eq!(detail["connected"], false);

    // Published while it is away, by a client and by the operator: queued.
    let (mut sender, _) = TestClient::connect_v5(node.mqtt, "sender", true, None).await;
    sender
        .publish("cmd/dev/reboot", b"r1", QoS::AtLeastOnce)
        .await;
    let (status, answer) = call(
        http,
        "POST",
        "/api/v1/publish",
        Some(json!({ "topic": "cmd/dev/x", "payload": "r2", "qos": 1 })),
    )
    .await;
    assert_eq!(
        (status, answer["matched"].clone()),
        (200, json!(1)),
        "{answer}"
    );
    let (_, queue) = get(http, "/api/v1/sessions/dev/queue").await;
    assert_eq!(queue["queued_messages"], 2, "{queue}");

    let (mut dev, connack) = TestClient::connect_v5(node.mqtt, "dev", false, Some(600)).await;
    assert!(connack.session_present);
    assert_eq!(text(&dev.recv_publish_and_ack().await), "r1");
    assert_eq!(text(&dev.recv_publish_and_ack().await), "r2");
    dev.expect_nothing(Duration::from_millis(500)).await;
    dev.disconnect().await;

    // Removed: nothing more is queued for it.
    let (status, answer) = call(
        http,
        "DELETE",
        "/api/v1/sessions/dev/subscriptions/cmd%2Fdev%2F%23",
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    sender
        .publish("cmd/dev/reboot", b"r3", QoS::AtLeastOnce)
        .await;
    let (_, queue) = get(http, "/api/v1/sessions/dev/queue").await;
    assert_eq!(queue["queued_messages"], 0, "{queue}");
    let (mut dev, connack) = TestClient::connect_v5(node.mqtt, "dev", false, Some(600)).await;
    assert!(connack.session_present);
    dev.expect_nothing(Duration::from_millis(500)).await;

    // Refusals.
    let path = "/api/v1/sessions/dev/subscriptions/cmd%2Fdev%2F%23";
    assert_eq!(call(http, "DELETE", path, None).await.0, 404);
    let (status, _) = call(
        http,
        "PUT",
        "/api/v1/sessions/nobody/subscriptions/a",
        Some(json!({ "qos": 1 })),
    )
    .await;
    assert_eq!(status, 404);
    let error = refusal(
        call(
            http,
            "PUT",
            "/api/v1/sessions/dev/subscriptions/a%2F%23%2Fb",
            None,
        )
        .await,
        400,
    );
    assert!(error.starts_with("filter: "), "{error}");
    let error = refusal(
        call(
            http,
            "PUT",
            "/api/v1/sessions/dev/subscriptions/a",
            Some(json!({ "qos": 3 })),
        )
        .await,
        400,
    );
    assert!(error.starts_with("qos: "), "{error}");
    drop(sender);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_publishes_subscribes_and_changes_the_membership() {
    let cluster = Cluster::start(3).await;
    let (n1, http1) = (cluster.mqtt(1), cluster.node(1).http);
    let (http2, http3) = (cluster.node(2).http, cluster.node(3).http);
    let (dev, _) = TestClient::connect_v5(n1, "dev", false, Some(600)).await;
    dev.disconnect().await;
    wait_answer(http2, "/api/v1/sessions/dev", |status, body| {
        status == 200 && body["connected"] == false
    })
    .await;

    // Node 2 subscribes node 1's offline session; node 3 publishes to it.
    let (status, answer) = call(
        http2,
        "PUT",
        "/api/v1/sessions/dev/subscriptions/cmd%2Fdev",
        Some(json!({ "qos": 1 })),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    wait_answer(http3, "/api/v1/sessions/dev", |_, body| {
        body["subscription_list"][0]["filter"] == "cmd/dev"
    })
    .await;
    // Node 3's broker routes by the registry it applied: publish until the route is there
    // (a message that matched nothing went nowhere).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, answer) = call(
            http3,
            "POST",
            "/api/v1/publish",
            Some(json!({ "topic": "cmd/dev", "payload": "from-3", "qos": 1 })),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        if answer["matched"] == 1 {
            assert_eq!(answer["stored"], true);
            break;
        }
        assert!(Instant::now() < deadline, "node 3 never routed to dev");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, queue) = get(http2, "/api/v1/sessions/dev/queue").await;
    assert_eq!(
        queue["queued_messages"], 1,
        "stored on the owner when answered: {queue}"
    );

    // A retained message published on node 3 is read on node 1, deleted from node 2, and gone
    // everywhere.
    let (status, _) = call(
        http3,
        "POST",
        "/api/v1/publish",
        Some(json!({ "topic": "fleet/config", "payload": "v1", "qos": 1, "retain": true })),
    )
    .await;
    assert_eq!(status, 200);
    let (_, retained) = wait_answer(http1, "/api/v1/retained/fleet%2Fconfig", |status, _| {
        status == 200
    })
    .await;
    assert_eq!(retained["payload"], "v1");
    assert_eq!(retained["payload_encoding"], "utf8");
    // Set through one node and deleted through another at once, round the nodes: the deleting
    // node catches up with the cluster before it looks (a follower that had not applied the
    // message yet answered 404). The last round leaves `fleet/config` deleted through node 2.
    let nodes = [http1, http2, http3];
    for round in 0..30 {
        let (setter, deleter) = (nodes[(round + 2) % 3], nodes[(round + 1) % 3]);
        let payload = format!("version-{round}");
        let (status, _) = call(
            setter,
            "POST",
            "/api/v1/publish",
            Some(json!({ "topic": "fleet/config", "payload": payload, "qos": 1, "retain": true })),
        )
        .await;
        assert_eq!(status, 200);
        let (status, deleted) =
            call(deleter, "DELETE", "/api/v1/retained/fleet%2Fconfig", None).await;
        assert_eq!(status, 200, "round {round}: {deleted}");
        assert_eq!(deleted["bytes"], payload.len(), "round {round}: {deleted}");
    }
    for http in [http1, http3] {
        wait_answer(http, "/api/v1/retained/fleet%2Fconfig", |status, _| {
            status == 404
        })
        .await;
    }

    let (mut dev, connack) = TestClient::connect_v5(n1, "dev", false, Some(600)).await;
    assert!(connack.session_present);
    assert_eq!(text(&dev.recv_publish_and_ack().await), "from-3");
    dev.expect_nothing(Duration::from_millis(500)).await;

    // Membership, from node 2 (whichever node leads).
    let (status, view) = get(http2, "/api/v1/cluster").await;
    assert_eq!(status, 200, "{view}");
    let members = view["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{view}");
    assert!(
        members
            .iter()
            .all(|m| m["voter"] == true && m["online"] == true),
        "{view}"
    );
    assert!(view["leader"].is_u64(), "{view}");
    let third = cluster.node(3).cluster.unwrap().to_string();
    assert!(
        members.iter().any(|m| m["address"] == third.as_str()),
        "{view}"
    );

    let (status, view) = call(http2, "DELETE", "/api/v1/cluster/members/3", None).await;
    assert_eq!(status, 200, "{view}");
    // Node 2 learns the new membership from the leader's log.
    wait_answer(http2, "/api/v1/cluster", |status, view| {
        status == 200
            && view["members"]
                .as_array()
                .is_some_and(|m| m.len() == 2 && m.iter().all(|m| m["id"] != 3))
    })
    .await;
    wait_accepting(cluster.mqtt(2)).await;
    let (status, _) = call(http2, "DELETE", "/api/v1/cluster/members/3", None).await;
    assert_eq!(status, 404, "no longer a voter");

    let (status, view) = call(
        http2,
        "POST",
        "/api/v1/cluster/members",
        Some(json!({ "id": 3, "address": third })),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    cluster.wait_voters(3).await;
    let table = ctl(http1, &["cluster"]).await;
    assert_eq!(table.matches(" voter ").count(), 3, "{table}");
    let (status, _) = call(
        http1,
        "POST",
        "/api/v1/cluster/members",
        Some(json!({ "id": 4, "address": "no port" })),
    )
    .await;
    assert_eq!(status, 400);
}

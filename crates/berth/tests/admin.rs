//! The admin API's cluster-wide reads, as an operator meets them: any node lists every session
//! of the cluster (owner, state, protocol, subscriptions) with filters and paging, shows one
//! session with its subscriptions and will, and lists retained messages; `berth ctl sessions`
//! prints them. A bad parameter is a 400 naming it.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use berth_codec::{ProtocolVersion, QoS};
use berth_e2e::client::{TestClient, will};
use serde_json::Value;
use support::cluster::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path`: the status and the JSON body.
async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
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

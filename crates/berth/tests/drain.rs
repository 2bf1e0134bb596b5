//! Draining, as an operator meets it: SIGTERM (what `docker stop` and Kubernetes send) or
//! `berth ctl drain` turns `/ready` to 503, refuses new CONNECTs (MQTT 5: CONNACK 0x9C Use
//! another server; 3.1.1: code 3), disconnects the connected clients at `drain.rate` per second
//! (MQTT 5: DISCONNECT 0x9C) and stops once none is left; a cluster's clients take their
//! sessions to the nodes they reconnect to, with every acknowledged message.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use berth_codec::{ConnectReasonCode, DisconnectReasonCode, ProtocolVersion, QoS};
use berth_e2e::client::{TestClient, connect_packet, connect_v5};
use berth_e2e::metrics::{scrape, value};
use support::cluster::{Cluster, options, publish_all, receive_payloads};
use support::{Berth, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(20);

/// One HTTP/1.1 request: the status and the body.
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (head, body) = raw.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or((0, String::new()))
}

/// Waits (bounded) until `GET /ready` answers `status`; returns its body.
async fn wait_ready_status(addr: SocketAddr, status: u16) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (got, body) = http(addr, "GET", "/ready").await;
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/ready never answered {status} (last {got} {body:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn drain_env(grace: &str, rate: &str) -> Vec<(String, String)> {
    vec![
        ("BERTH_DRAIN_GRACE".into(), grace.into()),
        ("BERTH_DRAIN_RATE".into(), rate.into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_clients_at_the_configured_pace_then_stops() {
    const V5: usize = 30;
    const V3: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        env: drain_env("30s", "20"),
        ..Options::default()
    };
    let mut node = Berth::start(dir.path(), &options);
    assert_eq!(wait_ready_status(node.http, 200).await, "ready\n");
    let mut v5 = Vec::new();
    for i in 0..V5 {
        let (client, _) =
            TestClient::connect_v5(node.mqtt, &format!("v5-{i}"), false, Some(600)).await;
        v5.push(client);
    }
    let mut v3 = Vec::new();
    for i in 0..V3 {
        let (client, _) = TestClient::connect(
            node.mqtt,
            ProtocolVersion::V3_1_1,
            &format!("v3-{i}"),
            false,
        )
        .await;
        v3.push(client);
    }

    node.term();
    let signalled = Instant::now();
    assert_eq!(wait_ready_status(node.http, 503).await, "draining\n");
    // A client the balancer still sends here is told to go elsewhere.
    let (_, refused) = TestClient::connect_with(node.mqtt, connect_v5("late-v5", true, None)).await;
    assert_eq!(refused.reason, ConnectReasonCode::UseAnotherServer);
    let (_, refused) = TestClient::connect_with(
        node.mqtt,
        connect_packet(ProtocolVersion::V3_1_1, "late-v3", true),
    )
    .await;
    assert_eq!(refused.reason, ConnectReasonCode::ServerUnavailable);

    // Every MQTT 5 client hears 0x9C; 3.1.1 clients are closed without a packet.
    let mut last_closed = Duration::ZERO;
    for client in &mut v5 {
        client
            .expect_disconnect(DisconnectReasonCode::UseAnotherServer)
            .await;
        last_closed = last_closed.max(signalled.elapsed());
    }
    for client in &mut v3 {
        let packets = client.expect_closed().await;
        assert!(
            packets.is_empty(),
            "3.1.1 has no server DISCONNECT: {packets:?}"
        );
        last_closed = last_closed.max(signalled.elapsed());
    }
    tokio::task::block_in_place(|| node.wait_exit(WAIT));
    let exited = signalled.elapsed();
    println!(
        "drain: {} clients closed within {:.2} s of SIGTERM at 20/s; exited after {:.2} s",
        V5 + V3,
        last_closed.as_secs_f64(),
        exited.as_secs_f64()
    );
    // 40 clients at 20 per second: paced over about two seconds, not all at once, and well
    // before the 30 s grace period.
    assert!(
        last_closed >= Duration::from_millis(1500),
        "the clients were closed at once ({last_closed:?}), not at 20 per second"
    );
    assert!(
        exited < Duration::from_secs(15),
        "the node took {exited:?} to stop"
    );
    assert!(
        node.log_lines()
            .iter()
            .any(|line| line.contains("drained: no connection left")),
        "the node says it drained"
    );
    drop(node);

    // The sessions are all still there for their clients.
    let node = Berth::start(dir.path(), &Options::default());
    for i in [0, V5 - 1] {
        let (_, connack) =
            TestClient::connect_v5(node.mqtt, &format!("v5-{i}"), false, Some(600)).await;
        assert!(connack.session_present, "v5-{i} resumes its session");
    }
    let (_, connack) = TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "v3-0", false).await;
    assert!(connack.session_present);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_ctl_drain_sends_devices_with_their_sessions_to_the_other_nodes() {
    const DEVICES: usize = 6;
    const BEFORE: usize = 50;
    const DURING: usize = 50;
    let mut cluster = Cluster::start_with(3, |id, join| {
        let mut options = options(id, join);
        options.env.extend(drain_env("30s", "50"));
        options
    })
    .await;
    let (n1, n2) = (cluster.node(1).mqtt, cluster.node(2).mqtt);
    let http1 = cluster.node(1).http;
    // Persistent devices on node 1, their backlog waiting there while they are offline.
    for d in 0..DEVICES {
        let (mut device, _) =
            TestClient::connect_v5(n1, &format!("dev-{d}"), false, Some(3600)).await;
        device
            .subscribe(&format!("cmd/dev-{d}"), QoS::AtLeastOnce)
            .await;
        device.abort();
    }
    let (mut publisher, _) = TestClient::connect_v5(n2, "publisher", true, None).await;
    for d in 0..DEVICES {
        publish_all(&mut publisher, &format!("cmd/dev-{d}"), "before", BEFORE).await;
    }
    // Three of them come back to node 1 and are online when it drains.
    let mut online = Vec::new();
    for d in 0..DEVICES / 2 {
        let (device, connack) =
            TestClient::connect_v5(n1, &format!("dev-{d}"), false, Some(3600)).await;
        assert!(connack.session_present);
        online.push((d, device));
    }
    for (_, device) in &mut online {
        let got = receive_payloads(device, BEFORE).await;
        assert_eq!(got, support::cluster::names("before", BEFORE));
    }

    let asked = Instant::now();
    let ctl = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["ctl", "--at", &http1.to_string(), "drain"])
            .env_clear()
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&ctl.stdout);
    assert!(
        ctl.status.success(),
        "berth ctl drain: {stdout} {}",
        String::from_utf8_lossy(&ctl.stderr)
    );
    assert!(stdout.contains("is draining"), "{stdout}");
    for (_, device) in &mut online {
        device
            .expect_disconnect(DisconnectReasonCode::UseAnotherServer)
            .await;
    }
    // They reconnect elsewhere at once, as clients told to use another server do: each
    // takeover pulls the session from node 1, which waits for that before it stops.
    let mut moved = Vec::new();
    for (d, _) in online {
        let (device, connack) =
            TestClient::connect_v5(n2, &format!("dev-{d}"), false, Some(3600)).await;
        assert!(
            connack.session_present,
            "dev-{d} finds its session on node 2"
        );
        moved.push((d, device));
    }
    tokio::task::block_in_place(|| {
        let mut node = cluster.nodes[0].take().unwrap();
        node.wait_exit(WAIT);
    });
    let took = asked.elapsed();
    println!(
        "ctl drain: node 1 exited {:.2} s after the request",
        took.as_secs_f64()
    );

    // Messages published once node 1 is gone reach the moved devices, every one, in order.
    for (d, _) in &moved {
        publish_all(&mut publisher, &format!("cmd/dev-{d}"), "during", DURING).await;
    }
    for (d, device) in &mut moved {
        let got = receive_payloads(device, DURING).await;
        assert_eq!(got, support::cluster::names("during", DURING), "dev-{d}");
        device.expect_nothing(Duration::from_millis(300)).await;
    }
    let body = scrape(cluster.node(2).http).await;
    let taken_over = value(
        &body,
        "berth_connect_duration_seconds_count{outcome=\"taken_over\"}",
    )
    .unwrap_or(0);
    assert!(
        taken_over >= (DEVICES / 2) as u64,
        "node 2 counted {taken_over} takeovers in its CONNECT histogram"
    );
    // The cluster without node 1 still has a majority and a leader: node 2 is ready.
    assert_eq!(
        wait_ready_status(cluster.node(2).http, 200).await,
        "ready\n"
    );
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["ctl", "--at", &cluster.node(2).http.to_string(), "status"])
        .env_clear()
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("node 2: ready"), "{status}");
    assert!(status.contains("voters 3"), "{status}");
}

//! Several MQTT listeners of one node, against the real binary: `[[listeners]]` in the file
//! beside the `--listen` shorthand, two more TCP listeners and a WebSocket one, every one bound
//! to port 0 and reported in the start-up log with its name and kind. A client on each works
//! and a message crosses from one listener to subscribers on the others; a listener's own
//! `max_connections` closes one connection too many there, at accept, counted by listener in
//! `berth_listener_refusals_total`, while the other listeners go on accepting. A burst of
//! clients larger than tokio's default listen backlog, arriving while the node cannot accept,
//! is queued by the kernel rather than dropped.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_codec::{Packet, ProtocolVersion, QoS};
use berth_e2e::client::{TestClient, WAIT, connect_packet, text};
use berth_e2e::{metrics, ws};
use support::{Berth, Options};
use tokio::io::AsyncReadExt as _;

/// Beside `--listen 127.0.0.1:0` (the listener named `tcp`), which `Berth::start` passes.
const LISTENERS: &str = r#"
[[listeners]]
name = "second"
kind = "tcp"
bind = "127.0.0.1:0"

[[listeners]]
name = "web"
kind = "ws"
bind = "127.0.0.1:0"

[[listeners]]
name = "single"
kind = "tcp"
bind = "127.0.0.1:0"
max_connections = 1
"#;

fn node(dir: &Path) -> Berth {
    let file = dir.join("berth.toml");
    std::fs::write(&file, LISTENERS).unwrap();
    Berth::start(
        &dir.join("data"),
        &Options {
            env: vec![("BERTH_CONFIG".to_owned(), file.display().to_string())],
            ..Options::default()
        },
    )
}

/// An MQTT client over a WebSocket to `addr`, connected as `id`.
async fn ws_client(addr: SocketAddr, id: &str) -> TestClient {
    let upgraded = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let local = tcp.local_addr().unwrap();
        let (stream, chosen) = ws::upgrade(tcp, &format!("ws://{addr}/mqtt"), Some("mqtt"))
            .await
            .expect("WebSocket upgrade");
        assert_eq!(chosen.as_deref(), Some("mqtt"));
        TestClient::over(Box::new(stream), local, ProtocolVersion::V5)
    };
    let mut client = tokio::time::timeout(WAIT, upgraded)
        .await
        .expect("WebSocket upgrade in time");
    client
        .send(Packet::Connect(Box::new(connect_packet(
            ProtocolVersion::V5,
            id,
            true,
        ))))
        .await;
    match client.recv().await {
        Packet::ConnAck(connack) => assert!(!connack.reason.is_error(), "{connack:?}"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    client
}

/// Whether the node closes a fresh TCP connection to `addr` without a word (within 5 s).
async fn closed_at_once(addr: SocketAddr) -> bool {
    let mut stream = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .unwrap();
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_is_reported_and_serves_and_messages_cross_between_them() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path());
    let reported: Vec<(&str, &str)> = node
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.kind.as_str()))
        .collect();
    assert_eq!(
        reported,
        [
            ("tcp", "tcp"),
            ("second", "tcp"),
            ("web", "ws"),
            ("single", "tcp")
        ],
        "the shorthand's first, then the list, in order"
    );
    for listener in &node.listeners {
        assert_ne!(
            listener.addr.port(),
            0,
            "{listener:?} reports its bound port"
        );
    }
    let ports: std::collections::BTreeSet<u16> =
        node.listeners.iter().map(|l| l.addr.port()).collect();
    assert_eq!(ports.len(), 4, "a port each");
    assert_eq!(node.listener("tcp"), node.mqtt, "the start-up line's mqtt=");
    assert_eq!(
        Some(node.listener("web")),
        node.ws,
        "the start-up line's ws="
    );

    // One subscriber on the second TCP listener, one over the WebSocket listener.
    let (mut on_second, _) = TestClient::connect(
        node.listener("second"),
        ProtocolVersion::V3_1_1,
        "on-second",
        true,
    )
    .await;
    on_second.subscribe("room/+", QoS::AtLeastOnce).await;
    let mut on_web = ws_client(node.listener("web"), "on-web").await;
    on_web.subscribe("room/+", QoS::AtLeastOnce).await;

    // Published on the shorthand listener, heard on both others.
    let (mut on_tcp, _) = TestClient::connect(node.mqtt, ProtocolVersion::V5, "on-tcp", true).await;
    on_tcp
        .publish("room/1", b"from tcp", QoS::AtLeastOnce)
        .await;
    assert_eq!(text(&on_second.recv_publish_and_ack().await), "from tcp");
    assert_eq!(text(&on_web.recv_publish_and_ack().await), "from tcp");

    // Published over the WebSocket, heard over TCP; and the other way round.
    on_web
        .publish("room/2", b"from web", QoS::AtLeastOnce)
        .await;
    assert_eq!(text(&on_second.recv_publish_and_ack().await), "from web");
    assert_eq!(text(&on_web.recv_publish_and_ack().await), "from web");
    on_second
        .publish("room/3", b"from second", QoS::AtLeastOnce)
        .await;
    assert_eq!(text(&on_web.recv_publish_and_ack().await), "from second");
    assert_eq!(text(&on_second.recv_publish_and_ack().await), "from second");

    // The listener with a limit of one serves its one client like any other.
    let (mut on_single, _) = TestClient::connect(
        node.listener("single"),
        ProtocolVersion::V5,
        "on-single",
        true,
    )
    .await;
    on_single
        .publish("room/4", b"from single", QoS::AtLeastOnce)
        .await;
    assert_eq!(text(&on_web.recv_publish_and_ack().await), "from single");
    assert_eq!(text(&on_second.recv_publish_and_ack().await), "from single");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_s_own_limit_refuses_there_while_the_others_accept() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path());
    let single = node.listener("single");
    let refused = "berth_listener_refusals_total{listener=\"single\",reason=\"max_connections\"}";
    // Every listener's series exists from the start, at 0.
    let body = metrics::scrape(node.http).await;
    for name in ["tcp", "second", "web", "single"] {
        let series = format!(
            "berth_listener_refusals_total{{listener=\"{name}\",reason=\"max_connections\"}}"
        );
        assert_eq!(
            metrics::value(&body, &series),
            Some(0),
            "{series} in:\n{body}"
        );
    }

    let (mut first, _) = TestClient::connect(single, ProtocolVersion::V5, "first", true).await;
    assert!(closed_at_once(single).await, "a second one there is closed");
    assert_eq!(metrics::wait_for(node.http, refused, 1).await, 1);
    // The node's own limit had nothing to do with it.
    let body = metrics::scrape(node.http).await;
    assert_eq!(
        metrics::value(
            &body,
            "berth_connections_refused_total{reason=\"max_connections\"}"
        ),
        Some(0),
        "{body}"
    );

    // The other listeners still accept, several clients each.
    let mut others = Vec::new();
    for (n, name) in ["tcp", "second", "tcp", "second"].into_iter().enumerate() {
        let (client, _) = TestClient::connect(
            node.listener(name),
            ProtocolVersion::V3_1_1,
            &format!("other-{n}"),
            true,
        )
        .await;
        others.push(client);
    }
    let mut on_web = ws_client(node.listener("web"), "on-web").await;
    on_web.subscribe("still/here", QoS::AtMostOnce).await;
    // The admitted one on the limited listener is untouched.
    first.subscribe("still/here", QoS::AtMostOnce).await;

    // It leaves: its place is free again (once its task has ended).
    first.disconnect().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = tokio::spawn(TestClient::connect_with(
            single,
            connect_packet(ProtocolVersion::V5, "next", true),
        ));
        if let Ok(Ok((_, connack))) = tokio::time::timeout(Duration::from_secs(5), attempt).await
            && !connack.reason.is_error()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place on the limited listener was never given again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clients in one burst, above tokio's default listen backlog (1,024) and below the node's
/// (4,096, or the kernel's `net.core.somaxconn` if lower).
const BURST: usize = 1_500;

/// Sends `signal` (`-STOP`, `-CONT`) to `pid`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// A reconnect storm's first instant: more clients arrive than tokio's default listen backlog
/// holds while the node cannot accept (here it is paused, `SIGSTOP`). The kernel completes every
/// handshake and queues it, so each client is connected at once and gets its CONNACK when the
/// node resumes. With a backlog of 1,024 the kernel drops the handshakes beyond it, and those
/// clients come back only after their SYN retry a second later (then three, then seven).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_tokio_s_listen_backlog_is_queued_while_the_node_cannot_accept() {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let open_files: usize = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(usize::MAX);
    assert!(
        open_files > BURST + 200,
        "this test holds {BURST} connections: raise the open-files limit (`ulimit -n`; scripts/test.sh does), now {open_files}"
    );
    let dir = tempfile::tempdir().unwrap();
    let node = Berth::start(&dir.path().join("data"), &Options::default());

    signal(node.pid(), "-STOP");
    // Shorter than the first SYN retry (one second): a dropped handshake fails here.
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..BURST {
        attempts.spawn(tokio::time::timeout(
            Duration::from_millis(800),
            tokio::net::TcpStream::connect(node.mqtt),
        ));
    }
    let mut streams = Vec::new();
    while let Some(attempt) = attempts.join_next().await {
        if let Ok(Ok(stream)) = attempt.unwrap() {
            streams.push(stream);
        }
    }
    signal(node.pid(), "-CONT");
    assert_eq!(
        streams.len(),
        BURST,
        "handshakes completed while the node was paused"
    );

    // Every one of them is served once the node is back.
    let mut handshakes = tokio::task::JoinSet::new();
    for (n, stream) in streams.into_iter().enumerate() {
        handshakes.spawn(async move {
            let local = stream.local_addr().unwrap();
            let mut client = TestClient::over(Box::new(stream), local, ProtocolVersion::V3_1_1);
            client
                .send(Packet::Connect(Box::new(connect_packet(
                    ProtocolVersion::V3_1_1,
                    &format!("burst-{n}"),
                    true,
                ))))
                .await;
            match client.recv().await {
                Packet::ConnAck(connack) => !connack.reason.is_error(),
                _ => false,
            }
        });
    }
    let mut accepted = 0;
    while let Some(handshake) = handshakes.join_next().await {
        accepted += usize::from(handshake.unwrap());
    }
    assert_eq!(
        accepted, BURST,
        "clients of the burst answered with an accepting CONNACK"
    );
}

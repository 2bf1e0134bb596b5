//! The PROXY protocol behind a real load balancer: Debian's `haproxy` with `send-proxy-v2` in
//! front of a `berth` whose listener requires the header. Clients work through the balancer,
//! the node logs the client's own address (not haproxy's), and a connection that skips the
//! balancer (no header) is closed before MQTT, counted by reason.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

mod support;

use std::time::{Duration, Instant};

use berth_codec::{ProtocolVersion, QoS};
use berth_e2e::client::{TestClient, connect_packet, text};
use berth_e2e::metrics;
use support::chaos::haproxy::{self, Backend, HaProxy};
use support::{Berth, Options};

/// The haproxy program, `None` (after a SKIP line) where it clearly cannot be installed.
fn haproxy_or_skip() -> Option<std::path::PathBuf> {
    if let Some(program) = haproxy::find() {
        return Some(program);
    }
    if let Some(why) = haproxy::cannot_install() {
        println!(
            "SKIP proxy_protocol: haproxy is not installed and cannot be installed here ({why})"
        );
        return None;
    }
    panic!("haproxy is not installed: run scripts/setup.sh (it installs Debian's haproxy)");
}

fn node_requiring_proxy(dir: &std::path::Path) -> Berth {
    Berth::start(
        dir,
        &Options {
            env: vec![
                ("BERTH_PROXY_PROTOCOL".into(), "required".into()),
                ("BERTH_PROXY_HEADER_TIMEOUT".into(), "2s".into()),
                (
                    "BERTH_LOG_LEVEL".into(),
                    "info,berth_server::connection=debug".into(),
                ),
            ],
            ..Options::default()
        },
    )
}

/// Waits (bounded) until haproxy counts the node up: its first health checks pass.
async fn connect_through(lb: std::net::SocketAddr, id: &str) -> TestClient {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // In a task: an attempt that haproxy closes (no node up yet) panics there, not here.
        let attempt = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::spawn(TestClient::connect_with(
                lb,
                connect_packet(ProtocolVersion::V5, id, true),
            )),
        )
        .await;
        match attempt {
            Ok(Ok((client, connack))) if !connack.reason.is_error() => return client,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Ok(Ok((_, connack))) => panic!("refused through haproxy: {connack:?}"),
            _ => panic!("no MQTT session through haproxy within 20 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_haproxy_send_proxy_v2_are_seen_with_their_own_address() {
    let Some(program) = haproxy_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = node_requiring_proxy(dir.path());
    let lb = HaProxy::start_with(
        &program,
        &[Backend {
            id: 1,
            mqtt: node.mqtt,
            http: node.http,
        }],
        true,
    )
    .expect("haproxy starts");

    let mut subscriber = connect_through(lb.addr, "sub").await;
    subscriber.subscribe("plant/+/temp", QoS::AtLeastOnce).await;
    let mut publisher = connect_through(lb.addr, "pub").await;
    publisher
        .publish("plant/7/temp", b"21.5", QoS::AtLeastOnce)
        .await;
    let got = subscriber.recv_publish_and_ack().await;
    assert_eq!(text(&got), "21.5");

    // The node names the client by the address haproxy saw (this process's port), and
    // haproxy's own address as the hop.
    let port = subscriber.local_addr().port();
    let client = format!("client=127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let lines = node.log_lines();
        if let Some(line) = lines.iter().find(|l| l.contains(&client)) {
            break line.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {client} in:\n{}",
            lines.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(line.contains("via=127.0.0.1:"), "{line}");
    assert!(
        !line.contains(&format!("via=127.0.0.1:{port}")),
        "the hop is haproxy, not the client: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_the_required_header_is_closed_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_requiring_proxy(dir.path());
    // Straight to the node: an MQTT CONNECT where the header should be.
    let mut stream = tokio::net::TcpStream::connect(node.mqtt).await.unwrap();
    let mut connect = bytes::BytesMut::new();
    berth_codec::encode(
        &berth_codec::Packet::Connect(Box::new(connect_packet(
            ProtocolVersion::V3_1_1,
            "direct",
            true,
        ))),
        ProtocolVersion::V3_1_1,
        &mut connect,
    )
    .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(&connect).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("the node closes the connection in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed without a CONNACK, got {read:?} {buf:?}"
    );
    metrics::wait_for(
        node.http,
        "berth_proxy_headers_refused_total{reason=\"missing\"}",
        1,
    )
    .await;
}

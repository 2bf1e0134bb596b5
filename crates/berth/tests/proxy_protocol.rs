//! The PROXY protocol behind a real load balancer: Debian's `haproxy` with `send-proxy-v2` in
//! front of a `berth` whose listener requires the header. Clients work through the balancer,
//! the node logs the client's own address (not haproxy's), and a connection that skips the
//! balancer (no header) is closed before MQTT, counted by reason. An ACL rule by source network
//! matches the address in the header: clients from 127.0.0.1 and 127.0.0.2 reach the node through
//! the same haproxy (so over the same hop address), and only the rule for 127.0.0.2 refuses.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use berth_codec::{ConnAck, Packet, ProtocolVersion, PubAckReasonCode, QoS, SubAckReasonCode};
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

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// A second loopback address: Linux routes all of 127.0.0.0/8 to `lo`, so a client socket can
/// bind it without any set-up.
const SECOND_LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn node_requiring_proxy(data_dir: &std::path::Path, extra: &[(&str, String)]) -> Berth {
    let mut env = vec![
        ("BERTH_PROXY_PROTOCOL".to_owned(), "required".to_owned()),
        ("BERTH_PROXY_HEADER_TIMEOUT".to_owned(), "2s".to_owned()),
        (
            "BERTH_LOG_LEVEL".to_owned(),
            "info,berth_server::connection=debug".to_owned(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    Berth::start(
        data_dir,
        &Options {
            env,
            ..Options::default()
        },
    )
}

/// HAProxy in front of `node` alone, sending a PROXY v2 header on every connection.
fn haproxy_sending_proxy_v2(program: &std::path::Path, node: &Berth) -> HaProxy {
    HaProxy::start_with(
        program,
        &[Backend {
            id: 1,
            mqtt: node.mqtt,
            http: node.http,
        }],
        true,
    )
    .expect("haproxy starts")
}

/// A TCP connection to `to` from `source` (any port).
async fn open_from(source: IpAddr, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = match source {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(to).await
}

/// CONNECT (5.0) from `source` to `to`, and the CONNACK.
async fn connect_from(
    source: IpAddr,
    to: SocketAddr,
    id: String,
) -> std::io::Result<(TestClient, ConnAck)> {
    let stream = open_from(source, to).await?;
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?;
    let mut client = TestClient::over(Box::new(stream), local, ProtocolVersion::V5);
    let connect = connect_packet(ProtocolVersion::V5, &id, true);
    client.send(Packet::Connect(Box::new(connect))).await;
    match client.recv().await {
        Packet::ConnAck(connack) => Ok((client, *connack)),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// Waits (bounded) until haproxy counts the node up: its first health checks pass.
async fn connect_through(lb: SocketAddr, id: &str) -> TestClient {
    connect_through_from(LOCALHOST, lb, id).await
}

/// [`connect_through`] from the client address `source`.
async fn connect_through_from(source: IpAddr, lb: SocketAddr, id: &str) -> TestClient {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // In a task: an attempt that haproxy closes (no node up yet) panics there, not here.
        let attempt = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::spawn(connect_from(source, lb, id.to_owned())),
        )
        .await;
        match attempt {
            Ok(Ok(Ok((client, connack)))) if !connack.reason.is_error() => return client,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Ok(Ok(Ok((_, connack)))) => panic!("refused through haproxy: {connack:?}"),
            Ok(Ok(Err(error))) => panic!("cannot connect from {source} to haproxy: {error}"),
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
    let node = node_requiring_proxy(dir.path(), &[]);
    let lb = haproxy_sending_proxy_v2(&program, &node);

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
    let node = node_requiring_proxy(dir.path(), &[]);
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

/// Refuses everything to clients from 127.0.0.2 alone; everyone else is allowed.
const DENY_SECOND_LOOPBACK: &str = r##"
default = "allow"

[[rule]]
permission = "deny"
action = "both"
topic = "#"
source = "127.0.0.2/32"
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_rule_by_source_network_matches_the_address_in_the_proxy_header() {
    let Some(program) = haproxy_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("acl.toml");
    std::fs::write(&rules, DENY_SECOND_LOOPBACK).unwrap();
    let node = node_requiring_proxy(
        &dir.path().join("data"),
        &[("BERTH_ACL_FILE", rules.display().to_string())],
    );
    let lb = haproxy_sending_proxy_v2(&program, &node);

    // Both clients reach the node from haproxy's address, 127.0.0.1: only the header differs.
    let mut allowed = connect_through(lb.addr, "from-first").await;
    let mut denied = connect_through_from(SECOND_LOOPBACK, lb.addr, "from-second").await;
    assert_eq!(denied.local_addr().ip(), SECOND_LOOPBACK);

    let ack = denied.subscribe("plant/#", QoS::AtLeastOnce).await;
    assert_eq!(
        ack.reason_codes,
        [SubAckReasonCode::NotAuthorized],
        "SUBSCRIBE from 127.0.0.2"
    );
    let ack = allowed.subscribe("plant/#", QoS::AtLeastOnce).await;
    assert_eq!(
        ack.reason_codes,
        [SubAckReasonCode::GrantedQoS1],
        "SUBSCRIBE from 127.0.0.1"
    );

    assert_eq!(
        denied.publish_reason("plant/7/temp", b"from-second").await,
        PubAckReasonCode::NotAuthorized,
        "PUBLISH from 127.0.0.2"
    );
    assert_eq!(
        allowed.publish_reason("plant/7/temp", b"from-first").await,
        PubAckReasonCode::Success,
        "PUBLISH from 127.0.0.1"
    );
    // The refused message was not routed: the first one delivered is the allowed one, sent
    // after the refusal was acknowledged.
    assert_eq!(text(&allowed.recv_publish_and_ack().await), "from-first");
    metrics::wait_for(
        node.http,
        "berth_messages_dropped_total{reason=\"not_authorized\"}",
        1,
    )
    .await;
}

//! MQTT over WebSocket against the real binary: the seed walk-through (a persistent session,
//! messages while offline, resume) over WebSocket; WebSocket over TLS; Eclipse Paho's Python
//! client with `transport="websockets"`; and the refusals (wrong path, another subprotocol, a
//! text message), each costing that connection only.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

mod support;

use std::net::SocketAddr;
use std::path::Path;

use berth_codec::{Packet, ProtocolVersion, QoS};
use berth_e2e::client::{TestClient, connect_packet, text};
use berth_e2e::ws;
use support::pki::{self, Ca, Pair};
use support::{Berth, Options};

fn node_with_ws(dir: &Path, server: Option<&Pair>) -> Berth {
    let mut env = vec![("BERTH_WS_LISTEN".to_owned(), "127.0.0.1:0".to_owned())];
    if let Some(server) = server {
        env.extend([
            ("BERTH_WS_TLS_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
            (
                "BERTH_TLS_CERT".to_owned(),
                server.cert.display().to_string(),
            ),
            ("BERTH_TLS_KEY".to_owned(), server.key.display().to_string()),
        ]);
    }
    let node = Berth::start(
        &dir.join("data"),
        &Options {
            env,
            ..Options::default()
        },
    );
    assert!(node.ws.is_some(), "the node logs its WebSocket listener");
    node
}

/// An MQTT client over a WebSocket to `addr` (plain TCP underneath).
async fn ws_client(addr: SocketAddr, version: ProtocolVersion) -> TestClient {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let (stream, chosen) = ws::upgrade(tcp, &format!("ws://{addr}/mqtt"), Some("mqtt"))
        .await
        .expect("WebSocket upgrade");
    assert_eq!(
        chosen.as_deref(),
        Some("mqtt"),
        "the server answers with mqtt"
    );
    TestClient::over(Box::new(stream), local, version)
}

async fn connect_over(client: &mut TestClient, id: &str, clean: bool) -> berth_codec::ConnAck {
    client
        .send(Packet::Connect(Box::new(connect_packet(
            client.version,
            id,
            clean,
        ))))
        .await;
    match client.recv().await {
        Packet::ConnAck(connack) => *connack,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_over_websocket_gets_what_was_sent_while_it_was_away() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_ws(dir.path(), None);
    let ws_addr = node.ws.unwrap();

    let mut phone = ws_client(ws_addr, ProtocolVersion::V3_1_1).await;
    let connack = connect_over(&mut phone, "phone", false).await;
    assert!(!connack.session_present);
    phone.subscribe("home/+/temp", QoS::AtLeastOnce).await;
    phone.disconnect().await;

    // Three readings over plain TCP while the phone is away.
    let (mut sensor, _) = TestClient::connect(node.mqtt, ProtocolVersion::V5, "sensor", true).await;
    for reading in ["19.5", "20.0", "20.5"] {
        sensor
            .publish("home/kitchen/temp", reading.as_bytes(), QoS::AtLeastOnce)
            .await;
    }

    let mut phone = ws_client(ws_addr, ProtocolVersion::V3_1_1).await;
    let connack = connect_over(&mut phone, "phone", false).await;
    assert!(connack.session_present, "the session waited for it");
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(text(&phone.recv_publish_and_ack().await));
    }
    assert_eq!(got, ["19.5", "20.0", "20.5"], "every reading, in order");
    // And live traffic flows both ways over the WebSocket.
    phone
        .publish("home/phone/ack", b"seen", QoS::AtLeastOnce)
        .await;
    sensor
        .publish("home/kitchen/temp", b"21.0", QoS::AtLeastOnce)
        .await;
    assert_eq!(text(&phone.recv_publish_and_ack().await), "21.0");
    // Both quiet: parked without a task (over WebSocket too), and woken by the next message.
    berth_e2e::metrics::wait_for(node.http, "berth_connections_parked", 2).await;
    sensor
        .publish("home/kitchen/temp", b"21.5", QoS::AtLeastOnce)
        .await;
    assert_eq!(text(&phone.recv_publish_and_ack().await), "21.5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_tls_serves_mqtt_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let server = ca.server("server");
    let node = node_with_ws(dir.path(), Some(&server));
    let wss_addr = node
        .wss
        .expect("the node logs its WebSocket over TLS listener");

    let tcp = tokio::net::TcpStream::connect(wss_addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let connector = tokio_rustls::TlsConnector::from(pki::client_config(&ca.pair.cert, None));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let port = wss_addr.port();
    let (stream, chosen) = ws::upgrade(tls, &format!("wss://localhost:{port}/mqtt"), Some("mqtt"))
        .await
        .expect("WebSocket upgrade over TLS");
    assert_eq!(chosen.as_deref(), Some("mqtt"));
    let mut client = TestClient::over(Box::new(stream), local, ProtocolVersion::V5);
    let connack = connect_over(&mut client, "secure-ws", true).await;
    assert!(!connack.reason.is_error());
    client.subscribe("t", QoS::ExactlyOnce).await;
    let (mut publisher, _) = TestClient::connect(node.mqtt, ProtocolVersion::V5, "p", true).await;
    publisher.publish("t", b"over wss", QoS::ExactlyOnce).await;
    assert_eq!(text(&client.recv_publish_and_ack().await), "over wss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_path_another_subprotocol_or_a_text_message_costs_that_connection_only() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_ws(dir.path(), None);
    let ws_addr = node.ws.unwrap();

    for (path, subprotocol) in [("/other", Some("mqtt")), ("/mqtt", Some("xmpp"))] {
        let tcp = tokio::net::TcpStream::connect(ws_addr).await.unwrap();
        let refused = ws::upgrade(tcp, &format!("ws://{ws_addr}{path}"), subprotocol).await;
        assert!(refused.is_err(), "{path} {subprotocol:?} must be refused");
    }
    berth_e2e::metrics::wait_for(node.http, "berth_ws_upgrades_failed_total", 2).await;

    // No subprotocol offered: accepted (some embedded clients offer none).
    let tcp = tokio::net::TcpStream::connect(ws_addr).await.unwrap();
    let (_bare, chosen) = ws::upgrade(tcp, &format!("ws://{ws_addr}/mqtt"), None)
        .await
        .expect("accepted without a subprotocol");
    assert_eq!(chosen, None);

    // A text message (MQTT §6: binary only) closes that connection, before or after CONNECT.
    let tcp = tokio::net::TcpStream::connect(ws_addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let (mut stream, _) = ws::upgrade(tcp, &format!("ws://{ws_addr}/mqtt"), Some("mqtt"))
        .await
        .unwrap();
    stream.send_text("hello").await;
    let mut texter = TestClient::over(Box::new(stream), local, ProtocolVersion::V5);
    assert!(texter.expect_closed().await.is_empty());

    // Others are not disturbed.
    let mut fine = ws_client(ws_addr, ProtocolVersion::V5).await;
    assert!(
        !connect_over(&mut fine, "fine", true)
            .await
            .reason
            .is_error()
    );
}

/// Eclipse Paho's Python client over WebSocket: subscribes, publishes to itself, prints what it
/// received, exits 0; anything else exits non-zero.
const PAHO: &str = r#"
import sys, threading
import paho.mqtt.client as mqtt
host, port = sys.argv[1], int(sys.argv[2])
got = threading.Event()
received = []
def on_connect(client, userdata, flags, reason_code, properties):
    client.subscribe("paho/echo", qos=1)
def on_subscribe(client, userdata, mid, reason_codes, properties):
    client.publish("paho/echo", b"hello from paho", qos=1)
def on_message(client, userdata, message):
    received.append(message.payload.decode())
    got.set()
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-ws",
                     transport="websockets", protocol=mqtt.MQTTv5)
client.ws_set_options(path="/mqtt")
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.connect(host, port, keepalive=30)
client.loop_start()
ok = got.wait(10)
client.disconnect()
client.loop_stop()
print(received)
sys.exit(0 if ok and received == ["hello from paho"] else 1)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eclipse_paho_speaks_mqtt_over_websocket_to_berth() {
    let importable = std::process::Command::new("python3")
        .args(["-c", "import paho.mqtt"])
        .status()
        .is_ok_and(|s| s.success());
    if !importable {
        assert!(
            std::env::var_os("CI").is_none(),
            "paho-mqtt is missing: scripts/setup.sh installs it"
        );
        println!("SKIP paho over WebSocket: python3 with paho-mqtt is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_ws(dir.path(), None);
    let ws_addr = node.ws.unwrap();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", PAHO, "127.0.0.1", &ws_addr.port().to_string()])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        output.status.success(),
        "paho over WebSocket: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

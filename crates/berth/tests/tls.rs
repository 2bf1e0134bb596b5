//! MQTT over TLS against the real binary: the configured certificate is what clients see and
//! verify, MQTT flows over it (our client and Mosquitto's), a client that does not trust the
//! certificate or speaks plain MQTT to the TLS port is closed and counted, client certificates
//! are required and identify the client where configured, and SIGHUP swaps the certificate
//! (a bad new one keeps the old).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_codec::{ConnectReasonCode, ProtocolVersion, QoS};
use berth_e2e::client::{TestClient, connect_packet, text};
use berth_e2e::metrics;
use support::pki::{self, Ca, Pair};
use support::{Berth, Options};

/// A node with plain TCP and TLS listeners on 127.0.0.1:0, `server` as its certificate, and
/// the given extra settings.
fn node_with_tls(dir: &Path, server: &Pair, extra: &[(&str, String)]) -> Berth {
    let mut env = vec![
        ("BERTH_TLS_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        (
            "BERTH_TLS_CERT".to_owned(),
            server.cert.display().to_string(),
        ),
        ("BERTH_TLS_KEY".to_owned(), server.key.display().to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let node = Berth::start(
        &dir.join("data"),
        &Options {
            env,
            ..Options::default()
        },
    );
    assert!(node.tls.is_some(), "the node logs its TLS listener");
    node
}

async fn connect_tls(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    version: ProtocolVersion,
    id: &str,
) -> (TestClient, berth_codec::ConnAck) {
    let mut client = TestClient::open_tls(addr, version, config, "localhost")
        .await
        .expect("TLS handshake");
    client
        .send(berth_codec::Packet::Connect(Box::new(connect_packet(
            version, id, true,
        ))))
        .await;
    match client.recv().await {
        berth_codec::Packet::ConnAck(connack) => (client, *connack),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// The certificate a TLS server presents to a client trusting `ca`.
async fn presented_certificate(addr: SocketAddr, ca: &Path) -> Vec<u8> {
    let connector = tokio_rustls::TlsConnector::from(pki::client_config(ca, None));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake");
    tls.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_flows_over_tls_and_untrusting_or_plain_clients_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let server = ca.server("server");
    let node = node_with_tls(dir.path(), &server, &[]);
    let tls_addr = node.tls.unwrap();
    let trusting = pki::client_config(&ca.pair.cert, None);

    assert_eq!(
        presented_certificate(tls_addr, &ca.pair.cert).await,
        server.der()
    );
    let (mut subscriber, connack) =
        connect_tls(tls_addr, trusting.clone(), ProtocolVersion::V5, "sub").await;
    assert_eq!(connack.reason, ConnectReasonCode::Success);
    subscriber.subscribe("plant/+/temp", QoS::AtLeastOnce).await;
    // A publisher on the plain listener reaches the TLS subscriber: one broker behind both.
    let (mut publisher, _) =
        TestClient::connect(node.mqtt, ProtocolVersion::V3_1_1, "pub", true).await;
    publisher
        .publish("plant/7/temp", b"21.5", QoS::AtLeastOnce)
        .await;
    assert_eq!(text(&subscriber.recv_publish_and_ack().await), "21.5");

    // Mosquitto's client, verifying the certificate against the CA and the host name.
    let output = tokio::task::spawn_blocking({
        let ca = ca.pair.cert.clone();
        move || {
            std::process::Command::new("mosquitto_pub")
                .args(["-h", "localhost", "-p", &tls_addr.port().to_string()])
                .arg("--cafile")
                .arg(&ca)
                .args(["-q", "1", "-t", "plant/9/temp", "-m", "19.0", "-i", "mosq"])
                .output()
        }
    })
    .await
    .unwrap();
    match output {
        Ok(output) => {
            assert!(
                output.status.success(),
                "mosquitto_pub over TLS: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert_eq!(text(&subscriber.recv_publish_and_ack().await), "19.0");
        }
        Err(error) if std::env::var_os("CI").is_none() => {
            println!("SKIP the mosquitto_pub part: {error} (scripts/setup.sh installs it)");
        }
        Err(error) => panic!("mosquitto_pub: {error}"),
    }

    // A client that trusts another CA refuses the server; the server counts the failure.
    let other = Ca::new(dir.path(), "other");
    let refused = TestClient::open_tls(
        tls_addr,
        ProtocolVersion::V5,
        pki::client_config(&other.pair.cert, None),
        "localhost",
    )
    .await;
    assert!(refused.is_err(), "a client of another CA must not accept");
    metrics::wait_for(node.http, "berth_tls_handshakes_failed_total", 1).await;

    // Plain MQTT to the TLS port: no CONNACK, closed, counted.
    let mut plain = TestClient::open(tls_addr, ProtocolVersion::V3_1_1).await;
    plain
        .send(berth_codec::Packet::Connect(Box::new(connect_packet(
            ProtocolVersion::V3_1_1,
            "plain",
            true,
        ))))
        .await;
    assert!(plain.expect_closed().await.is_empty());
    metrics::wait_for(node.http, "berth_tls_handshakes_failed_total", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_and_their_common_name_identifies_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let server = ca.server("server");
    let device = ca.client("device", "sensor-17");
    let stranger_ca = Ca::new(dir.path(), "stranger-ca");
    let stranger = stranger_ca.client("stranger", "sensor-17");
    let node = node_with_tls(
        dir.path(),
        &server,
        &[
            ("BERTH_TLS_CLIENT_CA", ca.pair.cert.display().to_string()),
            ("BERTH_TLS_IDENTITY_FROM_CERT", "true".to_owned()),
            ("BERTH_AUTH_ALLOW_ANONYMOUS", "false".to_owned()),
        ],
    );
    let tls_addr = node.tls.unwrap();

    // The certificate is the credential: no username, no password, accepted.
    let with_cert = pki::client_config(&ca.pair.cert, Some(&device));
    let (_device, connack) =
        connect_tls(tls_addr, with_cert, ProtocolVersion::V3_1_1, "sensor-17").await;
    assert_eq!(connack.reason, ConnectReasonCode::Success);

    // The same client without credentials on the plain listener: not authorized.
    let (_, connack) = TestClient::connect_with(
        node.mqtt,
        connect_packet(ProtocolVersion::V5, "sensor-17-plain", true),
    )
    .await;
    assert_eq!(connack.reason, ConnectReasonCode::NotAuthorized);

    // No certificate, or one from another CA: the handshake fails (under TLS 1.3 the client
    // learns it at its first read), no CONNACK.
    for (what, identity) in [("no certificate", None), ("another CA's", Some(&stranger))] {
        let config = pki::client_config(&ca.pair.cert, identity);
        let Ok(mut client) =
            TestClient::open_tls(tls_addr, ProtocolVersion::V5, config, "localhost").await
        else {
            continue;
        };
        client
            .send(berth_codec::Packet::Connect(Box::new(connect_packet(
                ProtocolVersion::V5,
                "intruder",
                true,
            ))))
            .await;
        assert!(
            client.expect_closed().await.is_empty(),
            "{what}: closed without CONNACK"
        );
    }
    metrics::wait_for(node.http, "berth_tls_handshakes_failed_total", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_certificate_and_a_bad_one_keeps_the_previous() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let first = ca.server("first");
    let second = ca.server("second");
    // The node reads these two paths; the test replaces what is in them.
    let live = Pair {
        cert: dir.path().join("live.crt"),
        key: dir.path().join("live.key"),
    };
    let install = |pair: &Pair| {
        std::fs::copy(&pair.cert, &live.cert).unwrap();
        std::fs::copy(&pair.key, &live.key).unwrap();
    };
    install(&first);
    let node = node_with_tls(dir.path(), &live, &[]);
    let tls_addr = node.tls.unwrap();
    assert_eq!(
        presented_certificate(tls_addr, &ca.pair.cert).await,
        first.der()
    );
    // A connection opened before the reload keeps working after it.
    let (mut before, _) = connect_tls(
        tls_addr,
        pki::client_config(&ca.pair.cert, None),
        ProtocolVersion::V5,
        "before",
    )
    .await;

    install(&second);
    node.hangup();
    node.wait_for_log("TLS certificate reloaded", Duration::from_secs(10));
    assert_eq!(
        presented_certificate(tls_addr, &ca.pair.cert).await,
        second.der()
    );
    before.subscribe("still/here", QoS::AtMostOnce).await;

    // A renewal gone wrong: the certificate file is not PEM. The node says so and keeps serving
    // the previous certificate.
    std::fs::write(&live.cert, "not a certificate\n").unwrap();
    node.hangup();
    let line = node.wait_for_log("TLS certificate not reloaded", Duration::from_secs(10));
    assert!(line.contains("tls.cert"), "the error names the key: {line}");
    assert_eq!(
        presented_certificate(tls_addr, &ca.pair.cert).await,
        second.der()
    );
    // A key that does not belong to the certificate is refused too.
    std::fs::copy(&first.cert, &live.cert).unwrap();
    std::fs::copy(&second.key, &live.key).unwrap();
    let refusals_before = count_lines(&node, "TLS certificate not reloaded");
    node.hangup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_lines(&node, "TLS certificate not reloaded") == refusals_before {
        assert!(
            Instant::now() < deadline,
            "the mismatched pair was not refused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        presented_certificate(tls_addr, &ca.pair.cert).await,
        second.der()
    );
}

fn count_lines(node: &Berth, text: &str) -> usize {
    node.log_lines().iter().filter(|l| l.contains(text)).count()
}

#[test]
fn a_missing_certificate_file_stops_the_node_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--tls-listen", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(dir.path().join("missing.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("missing.key"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("tls.cert") && stderr.contains("missing.crt"),
        "{stderr}"
    );
}

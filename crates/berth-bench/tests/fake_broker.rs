//! berth-bench, the real binary, against a tiny in-test broker on 127.0.0.1:0 that can drop or
//! duplicate chosen messages: the loss and duplicate counts must come out exact. The same broker
//! behind TLS (a certificate made with `openssl`, as bench/compare makes it) checks `--tls-ca`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use berth_codec::{
    ConnAck, DecodeOptions, Packet, PacketId, ProtocolVersion, PubAck, Publish, QoS, SubAck,
    SubAckReasonCode, TopicFilter, decode, encode,
};
use bytes::{Bytes, BytesMut};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

/// Which routed messages (counted from 1 over the whole broker) to tamper with.
#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    drop_every: Option<u64>,
    duplicate_every: Option<u64>,
}

#[derive(Debug)]
struct Route {
    filter: TopicFilter,
    qos: QoS,
    version: ProtocolVersion,
    out: mpsc::UnboundedSender<Bytes>,
}

#[derive(Debug, Default)]
struct Broker {
    routes: Mutex<Vec<Route>>,
    published: AtomicU64,
    next_id: AtomicU16,
    faults: Faults,
}

impl Broker {
    async fn start(faults: Faults) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let broker = Arc::new(Broker {
            faults,
            ..Broker::default()
        });
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(broker.clone().serve(stream));
            }
        });
        addr
    }

    /// An honest broker speaking MQTT over TLS with `acceptor`'s certificate.
    async fn start_tls(acceptor: TlsAcceptor) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let broker = Arc::new(Broker::default());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (broker, acceptor) = (broker.clone(), acceptor.clone());
                tokio::spawn(async move {
                    // A client that refuses the certificate ends here: nothing to serve.
                    if let Ok(tls) = acceptor.accept(stream).await {
                        broker.serve(tls).await;
                    }
                });
            }
        });
        addr
    }

    fn packet_id(&self) -> PacketId {
        loop {
            if let Some(id) = PacketId::new(self.next_id.fetch_add(1, Ordering::Relaxed)) {
                return id;
            }
        }
    }

    fn route(&self, publish: &Publish) {
        let n = self.published.fetch_add(1, Ordering::Relaxed) + 1;
        if self.faults.drop_every.is_some_and(|k| n.is_multiple_of(k)) {
            return;
        }
        let copies = if self
            .faults
            .duplicate_every
            .is_some_and(|k| n.is_multiple_of(k))
        {
            2
        } else {
            1
        };
        for route in self.routes.lock().unwrap().iter() {
            if !route.filter.matches(&publish.topic) {
                continue;
            }
            for _ in 0..copies {
                let mut out = publish.clone();
                out.qos = publish.qos.min(route.qos);
                out.packet_id = (out.qos != QoS::AtMostOnce).then(|| self.packet_id());
                let mut frame = BytesMut::new();
                encode(&Packet::Publish(out), route.version, &mut frame).unwrap();
                let _ = route.out.send(frame.freeze());
            }
        }
    }

    async fn serve<S>(self: Arc<Self>, stream: S)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                // The flush sends what TLS may still hold of the frame (a no-op on TCP).
                if wr.write_all(&frame).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
            }
        });
        let mut version = ProtocolVersion::V3_1_1;
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let reply = |packet: Packet, version| {
            let mut frame = BytesMut::new();
            encode(&packet, version, &mut frame).unwrap();
            let _ = tx.send(frame.freeze());
        };
        loop {
            while let Ok(Some(packet)) = decode(&mut buf, &DecodeOptions::new(version)) {
                match packet {
                    Packet::Connect(connect) => {
                        version = connect.protocol;
                        reply(Packet::ConnAck(Box::new(ConnAck::accepted(false))), version);
                    }
                    Packet::Subscribe(subscribe) => {
                        let mut codes = Vec::new();
                        for s in subscribe.subscriptions {
                            codes.push(SubAckReasonCode::granted(s.options.qos));
                            self.routes.lock().unwrap().push(Route {
                                filter: s.filter,
                                qos: s.options.qos,
                                version,
                                out: tx.clone(),
                            });
                        }
                        let ack = SubAck {
                            packet_id: subscribe.packet_id,
                            reason_codes: codes,
                            properties: Default::default(),
                        };
                        reply(Packet::SubAck(ack), version);
                    }
                    Packet::Publish(publish) => {
                        self.route(&publish);
                        if let Some(id) = publish.packet_id {
                            reply(Packet::PubAck(PubAck::new(id)), version);
                        }
                    }
                    Packet::PingReq => reply(Packet::PingResp, version),
                    Packet::Disconnect(_) => {
                        // Forget this connection's routes so that its writer ends and the socket
                        // closes, as a broker does after DISCONNECT.
                        self.routes
                            .lock()
                            .unwrap()
                            .retain(|r| !r.out.same_channel(&tx));
                        return;
                    }
                    _ => {}
                }
            }
            match rd.read_buf(&mut buf).await {
                Ok(n) if n > 0 => {}
                _ => return,
            }
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (scripts/setup.sh installs it)");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// In `dir`, a CA and a server certificate for localhost and 127.0.0.1 signed by it, as
/// bench/compare makes them: the CA certificate's path, and an acceptor presenting the server's.
fn pki(dir: &Path) -> (PathBuf, TlsAcceptor) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=berth-bench test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
    let certs = CertificateDer::pem_file_iter(dir.join("server.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    (dir.join("ca.crt"), TlsAcceptor::from(Arc::new(config)))
}

/// Runs berth-bench with `args` against `addr` and returns its JSON report.
fn bench(addr: SocketAddr, args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_berth-bench"))
        .args(args)
        .args([
            "--port",
            &addr.port().to_string(),
            "--json",
            "--drain-timeout",
            "1s",
        ])
        .output()
        .expect("run berth-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON from berth-bench ({e}): stdout {stdout:?}, stderr {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn delivery(report: &Value, field: &str) -> u64 {
    report["delivery"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no delivery.{field} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_qos1_through_an_honest_broker_loses_nothing() {
    let addr = Broker::start(Faults::default()).await;
    let report = tokio::task::spawn_blocking(move || {
        bench(
            addr,
            &[
                "fan-in",
                "--publishers",
                "3",
                "--qos",
                "1",
                "--messages",
                "2000",
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(report["errors"], Value::Array(vec![]), "{report}");
    assert_eq!(delivery(&report, "sent"), 6000);
    assert_eq!(delivery(&report, "unique"), 6000);
    assert_eq!(delivery(&report, "lost"), 0);
    assert_eq!(delivery(&report, "duplicates"), 0);
    assert_eq!(report["metrics"]["acked"].as_f64(), Some(6000.0));
    assert!(report["metrics"]["recv_msg_s"].as_f64().unwrap() > 0.0);
    assert!(report["latency"]["count"].as_u64().unwrap() == 6000);
    assert_eq!(
        report["streams"].as_array().unwrap().len(),
        3,
        "one tally per publisher"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_and_duplicated_messages_are_counted_exactly() {
    let faults = Faults {
        drop_every: Some(100),
        duplicate_every: Some(250),
    };
    let addr = Broker::start(faults).await;
    let report = tokio::task::spawn_blocking(move || {
        bench(
            addr,
            &[
                "pairs",
                "--pairs",
                "2",
                "--qos",
                "1",
                "--messages",
                "1000",
                "--version",
                "5",
            ],
        )
    })
    .await
    .unwrap();
    // 2000 messages routed: every 100th dropped (20), every 250th duplicated (8, of which the
    // 500th, 1000th, 1500th and 2000th were also dropped: 4 duplicates arrive).
    assert_eq!(delivery(&report, "sent"), 2000, "{report}");
    assert_eq!(delivery(&report, "lost"), 20, "{report}");
    assert_eq!(delivery(&report, "duplicates"), 4, "{report}");
    assert_eq!(delivery(&report, "unique"), 1980);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_latency_run_keeps_its_rate() {
    let addr = Broker::start(Faults::default()).await;
    let report = tokio::task::spawn_blocking(move || {
        bench(
            addr,
            &[
                "latency",
                "--rate",
                "2000",
                "--duration",
                "1s",
                "--warmup",
                "0s",
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(report["errors"], Value::Array(vec![]), "{report}");
    let sent = delivery(&report, "sent");
    assert!(
        (1600..=2010).contains(&sent),
        "about 2000 in 1 s at 2000 msg/s, sent {sent}"
    );
    assert_eq!(delivery(&report, "lost"), 0);
    let p50 = report["latency"]["p50_us"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 < 1_000_000.0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_over_tls_lose_nothing_and_name_the_tls_they_had() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, acceptor) = pki(dir.path());
    let addr = Broker::start_tls(acceptor).await;
    let ca = ca.to_string_lossy().into_owned();
    let report = tokio::task::spawn_blocking(move || {
        bench(
            addr,
            &[
                "pairs",
                "--pairs",
                "2",
                "--qos",
                "1",
                "--messages",
                "2000",
                "--tls-ca",
                ca.as_str(),
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(report["errors"], Value::Array(vec![]), "{report}");
    assert_eq!(delivery(&report, "sent"), 4000);
    assert_eq!(delivery(&report, "unique"), 4000);
    assert_eq!(delivery(&report, "lost"), 0);
    let params = report["params"].as_str().unwrap();
    assert!(params.contains(", TLS (TLSv1_3, "), "{params}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_check_the_broker_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, acceptor) = pki(dir.path());
    let other_dir = tempfile::tempdir().unwrap();
    let (other_ca, _) = pki(other_dir.path());
    let addr = Broker::start_tls(acceptor).await;
    let ca = ca.to_string_lossy().into_owned();
    let other_ca = other_ca.to_string_lossy().into_owned();
    let conns = move |ca: &str, name: &str| {
        let args = [
            "conns",
            "--connections",
            "20",
            "--tls-ca",
            ca,
            "--tls-server-name",
            name,
        ];
        bench(addr, &args)
    };
    let (trusted, other_issuer, other_name) = tokio::task::spawn_blocking(move || {
        (
            conns(ca.as_str(), "localhost"),
            conns(other_ca.as_str(), "localhost"),
            conns(ca.as_str(), "broker.example"),
        )
    })
    .await
    .unwrap();
    assert_eq!(trusted["errors"], Value::Array(vec![]), "{trusted}");
    assert_eq!(
        trusted["metrics"]["connections"].as_f64(),
        Some(20.0),
        "{trusted}"
    );
    for refused in [other_issuer, other_name] {
        let errors = refused["errors"].to_string();
        assert!(
            errors.contains("TLS handshake") && errors.contains("certificate"),
            "a certificate the client must not accept: {refused}"
        );
    }
}

//! berth-bench, the real binary, against a tiny in-test broker on 127.0.0.1:0 that can drop or
//! duplicate chosen messages: the loss and duplicate counts must come out exact.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use berth_codec::{
    ConnAck, DecodeOptions, Packet, PacketId, ProtocolVersion, PubAck, Publish, QoS, SubAck,
    SubAckReasonCode, TopicFilter, decode, encode,
};
use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

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

    async fn serve(self: Arc<Self>, stream: TcpStream) {
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if wr.write_all(&frame).await.is_err() {
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

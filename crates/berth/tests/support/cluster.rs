//! A cluster of real `berth` processes for the binary's tests, and the MQTT steps the cluster
//! tests share.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use berth_cluster::pb;
use berth_codec::{Connect, ConnectReasonCode, Packet, ProtocolVersion, Publish, QoS};
use berth_e2e::client::{TestClient, connect_packet, text, topic};
use bytes::Bytes;
use tempfile::TempDir;

use super::{Berth, Options};

pub const FORM_WAIT: Duration = Duration::from_secs(60);

pub struct Cluster {
    pub nodes: Vec<Option<Berth>>,
    pub dirs: Vec<TempDir>,
    pub cluster_addrs: Vec<SocketAddr>,
    /// How each node is started (id, address to join).
    options: Box<dyn Fn(u64, Option<SocketAddr>) -> Options + Send + Sync>,
}

impl Cluster {
    /// Node 1 forms a one-member cluster; nodes 2..=n join through it and become voters.
    pub async fn start(n: u64) -> Cluster {
        Cluster::start_with(n, options).await
    }

    /// As `start`, each node started with `options(id, join)`.
    pub async fn start_with(
        n: u64,
        options: impl Fn(u64, Option<SocketAddr>) -> Options + Send + Sync + 'static,
    ) -> Cluster {
        let mut dirs = Vec::new();
        let mut nodes = Vec::new();
        for id in 1..=n {
            let dir = tempfile::tempdir().expect("temp dir");
            let join = nodes
                .first()
                .and_then(|first: &Option<Berth>| first.as_ref())
                .and_then(|first| first.cluster);
            let node = Berth::start(dir.path(), &options(id, join));
            if id == 1 {
                wait_accepting(node.mqtt).await;
            }
            nodes.push(Some(node));
            dirs.push(dir);
        }
        let cluster_addrs = nodes
            .iter()
            .flatten()
            .map(|n: &Berth| n.cluster.expect("cluster listener"))
            .collect();
        let cluster = Cluster {
            nodes,
            dirs,
            cluster_addrs,
            options: Box::new(options),
        };
        cluster.wait_voters(n as usize).await;
        cluster
    }

    /// Nodes started by the test itself (restarting them is not supported).
    pub fn of(nodes: Vec<Berth>, dirs: Vec<TempDir>) -> Cluster {
        Cluster {
            nodes: nodes.into_iter().map(Some).collect(),
            dirs,
            cluster_addrs: Vec::new(),
            options: Box::new(options),
        }
    }

    pub fn node(&self, id: u64) -> &Berth {
        self.nodes[(id - 1) as usize]
            .as_ref()
            .expect("node is running")
    }

    pub fn mqtt(&self, id: u64) -> SocketAddr {
        self.node(id).mqtt
    }

    pub fn kill9(&mut self, id: u64) {
        if let Some(node) = self.nodes[(id - 1) as usize].take() {
            node.kill9();
        }
    }

    /// SIGTERM to node `id`: it drains and stops; returns how long that took (bounded).
    pub fn terminate(&mut self, id: u64, wait: Duration) -> Duration {
        let node = self.nodes[(id - 1) as usize]
            .take()
            .expect("node is running");
        node.terminate(wait)
    }

    /// Restarts a killed node on its data directory (it rejoins by itself).
    pub fn restart(&mut self, id: u64) {
        let dir = self.dirs[(id - 1) as usize].path().to_owned();
        let addr = self.cluster_addrs[(id - 1) as usize];
        let node = Berth::start(
            &dir,
            &Options {
                cluster_addr: Some(addr),
                ..(self.options)(id, None)
            },
        );
        self.nodes[(id - 1) as usize] = Some(node);
    }

    /// Restarts a killed node on its data directory and on the MQTT and HTTP addresses it had
    /// (a load balancer in front of the cluster knows them).
    pub fn restart_on(&mut self, id: u64, mqtt: SocketAddr, http: SocketAddr) {
        let dir = self.dirs[(id - 1) as usize].path().to_owned();
        let addr = self.cluster_addrs[(id - 1) as usize];
        let node = Berth::start(
            &dir,
            &Options {
                cluster_addr: Some(addr),
                mqtt_addr: Some(mqtt),
                http_addr: Some(http),
                ..(self.options)(id, None)
            },
        );
        self.nodes[(id - 1) as usize] = Some(node);
    }

    /// Waits until every running node reports `voters` voters and agrees on one leader.
    pub async fn wait_voters(&self, voters: usize) {
        let deadline = Instant::now() + FORM_WAIT;
        loop {
            let mut ok = true;
            for node in self.nodes.iter().flatten() {
                match status(node.cluster.expect("cluster listener")).await {
                    Some(s) => {
                        let members = s
                            .membership
                            .as_ref()
                            .and_then(|m| m.configs.last())
                            .map_or(0, |c| c.ids.len());
                        let joint = s.membership.as_ref().is_some_and(|m| m.configs.len() > 1);
                        ok &= members == voters && !joint && s.leader_id.is_some();
                    }
                    None => ok = false,
                }
            }
            if ok {
                return;
            }
            if Instant::now() >= deadline {
                for node in self.nodes.iter().flatten() {
                    eprintln!(
                        "node {}: {:?}",
                        node.node_id,
                        status(node.cluster.unwrap()).await
                    );
                }
                panic!("the cluster did not form within {FORM_WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

pub fn options(id: u64, join: Option<SocketAddr>) -> Options {
    Options {
        node_id: Some(id),
        cluster: true,
        join,
        env: vec![
            ("BERTH_QUEUE_MAX_MESSAGES".into(), "unlimited".into()),
            ("BERTH_CLUSTER_COMMIT_TIMEOUT".into(), "3s".into()),
        ],
        ..Options::default()
    }
}

pub async fn status(addr: SocketAddr) -> Option<pb::StatusReply> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2));
    let channel = endpoint.connect().await.ok()?;
    let mut client = pb::cluster_client::ClusterClient::new(channel);
    client
        .status(pb::StatusRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// Waits until a clean 3.1.1 CONNECT to `addr` is accepted (the node has a leader).
pub async fn wait_accepting(addr: SocketAddr) {
    let deadline = Instant::now() + FORM_WAIT;
    loop {
        let (client, connack) =
            TestClient::connect_with(addr, connect_packet(ProtocolVersion::V3_1_1, "probe", true))
                .await;
        if !connack.reason.is_error() {
            client.disconnect().await;
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node at {addr} never accepted a CONNECT"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn qos1(topic_name: &str, id: u16, payload: String) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: topic(topic_name),
        packet_id: Some(berth_codec::PacketId::new(id).unwrap()),
        payload: Bytes::from(payload),
        properties: Default::default(),
    })
}

/// Publishes `count` QoS 1 messages `prefix-i` and waits for every PUBACK (a window of 32).
pub async fn publish_all(client: &mut TestClient, topic_name: &str, prefix: &str, count: usize) {
    let mut in_flight = 0;
    let mut acked = 0;
    for i in 0..count {
        let id = client.next_packet_id();
        client
            .send(qos1(topic_name, id.get(), format!("{prefix}-{i}")))
            .await;
        in_flight += 1;
        if in_flight == 32 {
            match client.recv().await {
                Packet::PubAck(ack) => assert!(!ack.reason.is_error(), "{ack:?}"),
                other => panic!("expected PUBACK, got {other:?}"),
            }
            in_flight -= 1;
            acked += 1;
        }
    }
    while acked < count {
        match client.recv().await {
            Packet::PubAck(ack) => assert!(!ack.reason.is_error(), "{ack:?}"),
            other => panic!("expected PUBACK, got {other:?}"),
        }
        acked += 1;
    }
}

/// `prefix-0` .. `prefix-{count-1}`, as `publish_all` numbers them.
pub fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// Receives (and acknowledges) `count` PUBLISHes; returns their payloads.
pub async fn receive_payloads(client: &mut TestClient, count: usize) -> Vec<String> {
    receive(client, count)
        .await
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

/// Receives (and acknowledges) `count` PUBLISHes; returns their payloads and DUP flags.
pub async fn receive(client: &mut TestClient, count: usize) -> Vec<(String, bool)> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        let publish = client.recv_publish_and_ack().await;
        got.push((text(&publish), publish.dup));
    }
    got
}

/// Connects with a long wait for the CONNACK (a takeover whose old owner is unreachable waits
/// for it before going on).
pub async fn connect_waiting(
    addr: SocketAddr,
    connect: Connect,
    wait: Duration,
) -> (TestClient, Packet) {
    let mut client = TestClient::open(addr, connect.protocol).await;
    client.send(Packet::Connect(Box::new(connect))).await;
    let packet = client
        .try_recv(wait)
        .await
        .unwrap_or_else(|| panic!("no CONNACK within {wait:?}"));
    (client, packet)
}

pub fn connack_reason(packet: &Packet) -> ConnectReasonCode {
    match packet {
        Packet::ConnAck(connack) => connack.reason,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

//! The session operations of the admin API on a server that is not a cluster node (its broker
//! owns every session): a real server on 127.0.0.1:0 with MQTT clients speaking the wire, so
//! that what a client sees (DISCONNECT 0x98, Session Present, the messages left) is checked
//! along with the JSON.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use berth_codec::{
    ConnAck, Connect, ConnectProperties, DecodeOptions, Disconnect, DisconnectReasonCode,
    MqttString, Packet, PacketId, ProtocolVersion, PubAck, Publish, QoS, Subscribe, Subscription,
    SubscriptionOptions, TopicFilter, TopicName, decode, encode,
};
use berth_core::MemStore;
use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::http::tests::request;

const WAIT: Duration = Duration::from_secs(10);

/// A server with an MQTT and an HTTP listener, on a `MemStore`.
struct Node {
    mqtt: SocketAddr,
    http: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), crate::ServerError>>,
}

async fn start() -> Node {
    let mqtt = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (mqtt_addr, http_addr) = (mqtt.local_addr().unwrap(), http.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let listeners = crate::Listeners {
        mqtt: Some(mqtt),
        http: Some(http),
        ..crate::Listeners::default()
    };
    let task = tokio::spawn(crate::serve_node(
        crate::ServerOptions::default(),
        MemStore::new(),
        listeners,
        None,
        async move {
            let _ = stopped.await;
        },
    ));
    Node {
        mqtt: mqtt_addr,
        http: http_addr,
        stop,
        task,
    }
}

impl Node {
    async fn shut_down(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("stops in time")
            .unwrap()
            .unwrap();
    }

    /// `method path` on the admin API: the status and the JSON body.
    async fn api(&self, method: &str, path: &str) -> (u16, Value) {
        let response = request(self.http, method, path, None).await;
        let body = serde_json::from_str(&response.body).unwrap_or(Value::Null);
        (response.status, body)
    }

    /// `method path` on the admin API with a JSON `body`: the status and the JSON answer.
    async fn api_with(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let exchange = async {
            let mut stream = TcpStream::connect(self.http).await.unwrap();
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await.unwrap();
            String::from_utf8(raw).unwrap()
        };
        let raw = tokio::time::timeout(WAIT * 2, exchange).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// Waits (bounded) until `/metrics` has `series` at `value` or more.
    async fn wait_metric(&self, series: &str, value: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let body = request(self.http, "GET", "/metrics", None).await.body;
            let found = body
                .lines()
                .find_map(|line| line.strip_prefix(series))
                .and_then(|rest| rest.trim().parse::<u64>().ok());
            if found.is_some_and(|found| found >= value) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series} never reached {value} (last {found:?})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A minimal MQTT client: the packets it is told to send, the packets the server sent.
struct Client {
    stream: TcpStream,
    buf: BytesMut,
    version: ProtocolVersion,
}

impl Client {
    async fn connect(
        addr: SocketAddr,
        version: ProtocolVersion,
        id: &str,
        clean_start: bool,
    ) -> (Client, ConnAck) {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut client = Client {
            stream,
            buf: BytesMut::new(),
            version,
        };
        let connect = Connect {
            protocol: version,
            clean_start,
            keep_alive: 60,
            client_id: MqttString::new(id).unwrap(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties {
                session_expiry_interval: (version == ProtocolVersion::V5).then_some(600),
                ..ConnectProperties::default()
            },
        };
        client.send(Packet::Connect(Box::new(connect))).await;
        match client.recv().await {
            Some(Packet::ConnAck(connack)) => {
                assert!(!connack.reason.is_error(), "{connack:?}");
                (client, *connack)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        encode(&packet, self.version, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next packet within `wait`; `None` on timeout or when the server closed.
    async fn recv_within(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let options = DecodeOptions::new(self.version);
            if let Some(packet) = decode(&mut self.buf, &options).unwrap() {
                return Some(packet);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    async fn recv(&mut self) -> Option<Packet> {
        self.recv_within(WAIT).await
    }

    async fn subscribe(&mut self, filter: &str) {
        self.send(Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            subscriptions: vec![Subscription {
                filter: TopicFilter::parse(filter).unwrap(),
                options: SubscriptionOptions::new(QoS::AtLeastOnce),
            }],
            properties: Default::default(),
        }))
        .await;
        assert!(matches!(self.recv().await, Some(Packet::SubAck(_))));
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    async fn publish(&mut self, topic: &str, payload: &'static [u8], id: u16) {
        self.send(Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: TopicName::parse(topic).unwrap(),
            packet_id: PacketId::new(id),
            payload: Bytes::from_static(payload),
            properties: Default::default(),
        }))
        .await;
        assert!(matches!(self.recv().await, Some(Packet::PubAck(_))));
    }

    /// What the server sent until it closed the connection (bounded).
    async fn until_closed(&mut self) -> Vec<Packet> {
        let mut packets = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while let Some(packet) = self
            .recv_within(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            packets.push(packet);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not close the connection; got {packets:?}"
        );
        packets
    }
}

/// Whether the last packet before the close was DISCONNECT 0x98 Administrative action.
fn administrative_close(packets: &[Packet]) -> bool {
    match packets.last() {
        Some(Packet::Disconnect(disconnect)) => {
            disconnect.reason == DisconnectReasonCode::AdministrativeAction
        }
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_kicks_peeks_purges_and_discards_a_session() {
    let node = start().await;
    let (mut dev, _) = Client::connect(node.mqtt, ProtocolVersion::V5, "dev", false).await;
    dev.subscribe("cmd/dev").await;

    // Kick: DISCONNECT 0x98, the session stays.
    let (status, kicked) = node.api("POST", "/api/v1/sessions/dev/kick").await;
    assert_eq!(status, 200, "{kicked}");
    assert_eq!(kicked["was_connected"], true);
    assert_eq!(kicked["session_kept"], true);
    let packets = dev.until_closed().await;
    assert!(administrative_close(&packets), "{packets:?}");
    node.wait_metric("berth_connections_closed_total{reason=\"kicked\"}", 1)
        .await;

    // Three messages queue while it is away.
    let (mut sender, _) = Client::connect(node.mqtt, ProtocolVersion::V5, "sender", true).await;
    for (id, payload) in [(1, b"m-1"), (2, b"m-2"), (3, b"m-3")] {
        sender.publish("cmd/dev", payload, id).await;
    }
    let (status, queue) = node.api("GET", "/api/v1/sessions/dev/queue?limit=2").await;
    assert_eq!(status, 200, "{queue}");
    assert_eq!(queue["client_id"], "dev");
    assert_eq!(queue["queued_messages"], 3);
    assert_eq!(queue["in_flight"], 0);
    assert_eq!(queue["connected_since_ms"], Value::Null);
    assert!(queue["oldest_message_age_ms"].is_u64(), "{queue}");
    let messages = queue["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{queue}");
    assert_eq!(messages[0]["topic"], "cmd/dev");
    assert_eq!(messages[0]["qos"], 1);
    assert_eq!(messages[0]["bytes"], 3);
    assert_eq!(messages[0]["retain"], false);
    assert_eq!(messages[0]["expires_in_ms"], Value::Null);
    assert!(messages[0]["age_ms"].is_u64(), "{queue}");
    let (status, detail) = node.api("GET", "/api/v1/sessions/dev").await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["queued_messages"], 3);
    assert_eq!(detail["owner_unreachable"], false);

    // Purge: the queue empties, the session and its subscription stay.
    let (status, purged) = node.api("DELETE", "/api/v1/sessions/dev/queue").await;
    assert_eq!(status, 200, "{purged}");
    assert_eq!(purged["purged_messages"], 3);
    assert_eq!(purged["purged_bytes"], 3 * ("cmd/dev".len() + 3));
    node.wait_metric("berth_messages_dropped_total{reason=\"purged\"}", 3)
        .await;
    let (mut dev, connack) = Client::connect(node.mqtt, ProtocolVersion::V5, "dev", false).await;
    assert!(connack.session_present);
    assert!(
        dev.recv_within(Duration::from_millis(300)).await.is_none(),
        "the purged messages are gone"
    );
    sender.publish("cmd/dev", b"m-4", 4).await;
    match dev.recv().await {
        Some(Packet::Publish(publish)) => {
            assert_eq!(&publish.payload[..], b"m-4");
            dev.send(Packet::PubAck(PubAck::new(publish.packet_id.unwrap())))
                .await;
        }
        other => panic!("expected the new message, got {other:?}"),
    }
    let (_, queue) = node.api("GET", "/api/v1/sessions/dev/queue").await;
    assert!(queue["connected_since_ms"].is_u64(), "{queue}");
    assert_eq!(queue["client_address"], "127.0.0.1");

    // Discard: the connection ends with 0x98 and the session with it.
    let (status, discarded) = node.api("DELETE", "/api/v1/sessions/dev").await;
    assert_eq!(status, 200, "{discarded}");
    assert_eq!(discarded["was_connected"], true);
    let packets = dev.until_closed().await;
    assert!(administrative_close(&packets), "{packets:?}");
    for (method, path) in [
        ("GET", "/api/v1/sessions/dev"),
        ("GET", "/api/v1/sessions/dev/queue"),
        ("DELETE", "/api/v1/sessions/dev/queue"),
        ("POST", "/api/v1/sessions/dev/kick"),
        ("DELETE", "/api/v1/sessions/dev"),
    ] {
        let (status, body) = node.api(method, path).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(body["error"], "no such session");
    }
    let (_, connack) = Client::connect(node.mqtt, ProtocolVersion::V5, "dev", false).await;
    assert!(!connack.session_present, "the session was discarded");
    node.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kicked_v3_client_is_closed_without_a_packet() {
    let node = start().await;
    let (mut old, _) = Client::connect(node.mqtt, ProtocolVersion::V3_1_1, "old", false).await;
    let (status, kicked) = node.api("POST", "/api/v1/sessions/old/kick").await;
    assert_eq!(status, 200, "{kicked}");
    assert!(old.until_closed().await.is_empty());
    // Kicking a client that is not connected changes nothing and says so.
    let (status, again) = node.api("POST", "/api/v1/sessions/old/kick").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["was_connected"], false);
    assert_eq!(again["session_kept"], true);
    let (status, refused) = node.api("GET", "/api/v1/sessions/old/queue?limit=0").await;
    assert_eq!(status, 400, "{refused}");
    node.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_subscribes_an_offline_session_and_publishes_to_it() {
    let node = start().await;
    let (mut dev, _) = Client::connect(node.mqtt, ProtocolVersion::V5, "dev", false).await;
    let bye = Disconnect::new(DisconnectReasonCode::NormalDisconnection);
    dev.send(Packet::Disconnect(bye)).await;
    dev.until_closed().await;

    let path = "/api/v1/sessions/dev/subscriptions/cmd%2Fdev";
    let (status, subscribed) = node.api_with("PUT", path, r#"{"qos": 1}"#).await;
    assert_eq!(status, 200, "{subscribed}");
    assert_eq!(subscribed["replaced"], false);
    assert_eq!(subscribed["filter"], "cmd/dev");
    let publish = r#"{"topic": "cmd/dev", "payload": "from the operator", "qos": 1}"#;
    let (status, published) = node.api_with("POST", "/api/v1/publish", publish).await;
    assert_eq!(status, 200, "{published}");
    assert_eq!(published["matched"], 1);
    assert_eq!(published["stored"], true);
    let (_, queue) = node.api("GET", "/api/v1/sessions/dev/queue").await;
    assert_eq!(queue["queued_messages"], 1, "{queue}");

    let (mut dev, connack) = Client::connect(node.mqtt, ProtocolVersion::V5, "dev", false).await;
    assert!(connack.session_present);
    match dev.recv().await {
        Some(Packet::Publish(publish)) => {
            assert_eq!(&publish.payload[..], b"from the operator");
            assert_eq!(publish.qos, QoS::AtLeastOnce);
        }
        other => panic!("expected the operator's message, got {other:?}"),
    }

    let (status, _) = node.api("DELETE", path).await;
    assert_eq!(status, 200);
    let (status, published) = node.api_with("POST", "/api/v1/publish", publish).await;
    assert_eq!(status, 200, "{published}");
    assert_eq!(published["matched"], 0, "unsubscribed");
    let (status, _) = node.api("DELETE", path).await;
    assert_eq!(status, 404, "nothing left to remove");
    let (status, _) = node
        .api_with("PUT", "/api/v1/sessions/nobody/subscriptions/a", "")
        .await;
    assert_eq!(status, 404);
    // This server keeps no registry: retained messages are not listed here.
    let (status, _) = node.api("GET", "/api/v1/retained/cmd%2Fdev").await;
    assert_eq!(status, 404);
    node.shut_down().await;
}

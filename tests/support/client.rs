//! A small MQTT test client on `berth-codec` and tokio: it sends exactly the packets a test asks
//! for and hands back exactly what the server sent, so tests can assert on the wire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::collections::VecDeque;

use berth_codec::{
    ConnAck, Connect, ConnectProperties, DecodeOptions, Disconnect, DisconnectReasonCode, LastWill,
    MqttString, Packet, PacketId, ProtocolVersion, PubAck, PubAckReasonCode, PubComp, PubRec,
    PubRel, Publish, QoS, SubAck, Subscribe, SubscribeProperties, Subscription, SubscriptionId,
    SubscriptionOptions, TopicFilter, TopicName, UnsubAck, Unsubscribe, decode, encode,
};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a test client talks over: plain TCP or TLS.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Transport for T {}

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct TestClient {
    stream: Box<dyn Transport>,
    /// This end's address.
    local: SocketAddr,
    buf: BytesMut,
    /// Packets read while waiting for a specific one (e.g. a PUBREL), handed out first by `recv`.
    pending: VecDeque<Packet>,
    pub version: ProtocolVersion,
    next_id: u16,
}

/// A CONNECT with the common fields; adjust the rest with struct update syntax.
pub fn connect_packet(version: ProtocolVersion, client_id: &str, clean_start: bool) -> Connect {
    Connect {
        protocol: version,
        clean_start,
        keep_alive: 60,
        client_id: MqttString::new(client_id).expect("client id"),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

pub fn topic(text: &str) -> TopicName {
    TopicName::parse(text).expect("topic name")
}

pub fn filter(text: &str) -> TopicFilter {
    TopicFilter::parse(text).expect("topic filter")
}

pub fn will(topic_name: &str, payload: &str, qos: QoS) -> LastWill {
    LastWill {
        topic: topic(topic_name),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain: false,
        properties: Default::default(),
    }
}

impl TestClient {
    /// Opens a TCP connection without sending anything.
    pub async fn open(addr: SocketAddr, version: ProtocolVersion) -> TestClient {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        TestClient {
            local: stream.local_addr().expect("a connected socket"),
            stream: Box::new(stream),
            buf: BytesMut::new(),
            pending: VecDeque::new(),
            version,
            next_id: 0,
        }
    }

    /// Opens a TLS connection (the handshake done, as far as the client sees it) without
    /// sending MQTT. Under TLS 1.3 a server that refuses the client's certificate says so only
    /// after this returns: the first read then fails.
    pub async fn open_tls(
        addr: SocketAddr,
        version: ProtocolVersion,
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> std::io::Result<TestClient> {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::other("TCP connect timed out"))??;
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
            .map_err(std::io::Error::other)?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let stream = tokio::time::timeout(WAIT, connector.connect(name, stream))
            .await
            .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
        Ok(TestClient {
            stream: Box::new(stream),
            local,
            buf: BytesMut::new(),
            pending: VecDeque::new(),
            version,
            next_id: 0,
        })
    }

    /// A client over an already set-up transport (a WebSocket, say); `local` is its TCP end.
    pub fn over(
        stream: Box<dyn Transport>,
        local: SocketAddr,
        version: ProtocolVersion,
    ) -> TestClient {
        TestClient {
            stream,
            local,
            buf: BytesMut::new(),
            pending: VecDeque::new(),
            version,
            next_id: 0,
        }
    }

    /// Connects and returns the CONNACK, whatever it says.
    pub async fn connect_with(addr: SocketAddr, connect: Connect) -> (TestClient, ConnAck) {
        let mut client = TestClient::open(addr, connect.protocol).await;
        client.send(Packet::Connect(Box::new(connect))).await;
        match client.recv().await {
            Packet::ConnAck(connack) => (client, *connack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects and asserts the connection was accepted.
    pub async fn connect(
        addr: SocketAddr,
        version: ProtocolVersion,
        id: &str,
        clean: bool,
    ) -> (TestClient, ConnAck) {
        let (client, connack) =
            TestClient::connect_with(addr, connect_packet(version, id, clean)).await;
        assert!(
            !connack.reason.is_error(),
            "connection refused: {connack:?}"
        );
        (client, connack)
    }

    /// This end's address (what a load balancer in between sees as the client).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        encode(&packet, self.version, &mut out).expect("encodable");
        self.stream.write_all(&out).await.expect("write");
    }

    /// [`TestClient::send`] to a server that may be gone: whether the write went through.
    pub async fn try_send(&mut self, packet: Packet) -> bool {
        let mut out = BytesMut::new();
        encode(&packet, self.version, &mut out).expect("encodable");
        self.stream.write_all(&out).await.is_ok()
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next packet from the server; panics after [`WAIT`] or if the connection closes.
    pub async fn recv(&mut self) -> Packet {
        match self.try_recv(WAIT).await {
            Some(packet) => packet,
            None => panic!("no packet from the server within {WAIT:?} (or connection closed)"),
        }
    }

    /// The next packet within `wait`, or `None` on timeout or close.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<Packet> {
        if let Some(packet) = self.pending.pop_front() {
            return Some(packet);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let opts = DecodeOptions::new(self.version);
            if let Some(packet) = decode(&mut self.buf, &opts).expect("server sends valid packets")
            {
                return Some(packet);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// Asserts the server closes the connection within [`WAIT`], returning what it sent first.
    pub async fn expect_closed(&mut self) -> Vec<Packet> {
        let mut packets: Vec<Packet> = self.pending.drain(..).collect();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let opts = DecodeOptions::new(self.version);
            while let Ok(Some(packet)) = decode(&mut self.buf, &opts) {
                packets.push(packet);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return packets,
                Ok(Ok(_)) => {}
                Err(_) => {
                    panic!("server did not close the connection within {WAIT:?}; got {packets:?}")
                }
            }
        }
    }

    /// Every byte the server sends until it closes the connection (bounded by [`WAIT`]).
    pub async fn raw_until_closed(&mut self) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut bytes = self.buf.split().to_vec();
        let mut chunk = [0u8; 1024];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return bytes,
                Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
                Err(_) => {
                    panic!("server did not close the connection within {WAIT:?}; got {bytes:?}")
                }
            }
        }
    }

    /// Asserts nothing arrives for `quiet`.
    pub async fn expect_nothing(&mut self, quiet: Duration) {
        if let Some(packet) = self.try_recv(quiet).await {
            panic!("expected no packet, got {packet:?}");
        }
    }

    pub fn next_packet_id(&mut self) -> PacketId {
        self.next_id = self.next_id % u16::MAX + 1;
        PacketId::new(self.next_id).expect("non-zero")
    }

    pub async fn subscribe(&mut self, filter_text: &str, qos: QoS) -> SubAck {
        let packet_id = self.next_packet_id();
        self.send(Packet::Subscribe(Subscribe {
            packet_id,
            subscriptions: vec![Subscription {
                filter: filter(filter_text),
                options: SubscriptionOptions::new(qos),
            }],
            properties: Default::default(),
        }))
        .await;
        match self.recv().await {
            Packet::SubAck(suback) => {
                assert_eq!(suback.packet_id, packet_id);
                suback
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes and, for QoS 1, waits for the PUBACK (QoS 2: PUBREC, PUBREL, PUBCOMP).
    pub async fn publish(&mut self, topic_name: &str, payload: &[u8], qos: QoS) {
        self.publish_with(message(topic_name, payload, qos)).await;
    }

    /// Publishes at QoS 1 and returns the PUBACK's reason code (3.1.1: always Success); other
    /// packets read meanwhile stay queued for `recv`.
    pub async fn publish_reason(&mut self, topic_name: &str, payload: &[u8]) -> PubAckReasonCode {
        let mut publish = message(topic_name, payload, QoS::AtLeastOnce);
        let id = self.next_packet_id();
        publish.packet_id = Some(id);
        self.send(Packet::Publish(publish)).await;
        let ack = self
            .wait_for_packet(
                "PUBACK",
                |p| matches!(p, Packet::PubAck(ack) if ack.packet_id == id),
            )
            .await;
        let Packet::PubAck(ack) = ack else {
            unreachable!()
        };
        ack.reason
    }

    /// Receives a PUBLISH (panics on anything else) and acknowledges it (QoS 1: PUBACK; QoS 2:
    /// PUBREC, PUBREL from the server, PUBCOMP).
    pub async fn recv_publish_and_ack(&mut self) -> Publish {
        let publish = self.recv_publish().await;
        self.ack(&publish).await;
        publish
    }

    /// Receives a PUBLISH (panics on anything else) without acknowledging it.
    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(publish) => publish,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Acknowledges a received PUBLISH as its QoS asks; for QoS 2 the whole exchange.
    pub async fn ack(&mut self, publish: &Publish) {
        let Some(id) = publish.packet_id else { return };
        match publish.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(Packet::PubAck(PubAck::new(id))).await,
            QoS::ExactlyOnce => {
                self.send(Packet::PubRec(PubRec::new(id))).await;
                self.expect_pubrel(id).await;
                self.send(Packet::PubComp(PubComp::new(id))).await;
            }
        }
    }

    /// Waits for the PUBREL of `id`; other packets read meanwhile stay queued for `recv`.
    pub async fn expect_pubrel(&mut self, id: PacketId) -> PubRel {
        let packet = self
            .wait_for_packet(
                "PUBREL",
                |p| matches!(p, Packet::PubRel(rel) if rel.packet_id == id),
            )
            .await;
        let Packet::PubRel(rel) = packet else {
            unreachable!()
        };
        rel
    }

    /// Waits for the first packet that `wanted` accepts; the packets read before it (e.g.
    /// PUBLISHes to a client that also subscribes) stay queued for `recv`.
    pub async fn wait_for_packet(
        &mut self,
        what: &str,
        wanted: impl Fn(&Packet) -> bool,
    ) -> Packet {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut skipped = VecDeque::new();
        let found = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.try_recv(left).await {
                Some(packet) if wanted(&packet) => break packet,
                Some(other) => skipped.push_back(other),
                None => panic!("no {what} within {WAIT:?}; got {skipped:?}"),
            }
        };
        skipped.append(&mut self.pending);
        self.pending = skipped;
        found
    }

    /// Subscribes to several filters with full options and an optional Subscription Identifier.
    pub async fn subscribe_with(
        &mut self,
        subscriptions: &[(&str, SubscriptionOptions)],
        id: Option<u32>,
    ) -> SubAck {
        let packet_id = self.next_packet_id();
        let subscriptions = subscriptions
            .iter()
            .map(|(text, options)| Subscription {
                filter: filter(text),
                options: *options,
            })
            .collect();
        let properties = SubscribeProperties {
            subscription_identifier: id
                .map(|id| SubscriptionId::new(id).expect("valid subscription id")),
            ..Default::default()
        };
        self.send(Packet::Subscribe(Subscribe {
            packet_id,
            subscriptions,
            properties,
        }))
        .await;
        match self.recv().await {
            Packet::SubAck(suback) => {
                assert_eq!(suback.packet_id, packet_id);
                suback
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    pub async fn unsubscribe(&mut self, filters: &[&str]) -> UnsubAck {
        let packet_id = self.next_packet_id();
        let filters = filters.iter().map(|text| filter(text)).collect();
        self.send(Packet::Unsubscribe(Unsubscribe {
            packet_id,
            filters,
            properties: Default::default(),
        }))
        .await;
        match self.recv().await {
            Packet::UnsubAck(unsuback) => {
                assert_eq!(unsuback.packet_id, packet_id);
                unsuback
            }
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }

    /// Publishes `publish` (a packet identifier is assigned if QoS > 0 and none is set) and
    /// completes its acknowledgement exchange.
    pub async fn publish_with(&mut self, mut publish: Publish) {
        if publish.qos != QoS::AtMostOnce && publish.packet_id.is_none() {
            publish.packet_id = Some(self.next_packet_id());
        }
        let (qos, packet_id) = (publish.qos, publish.packet_id);
        self.send(Packet::Publish(publish)).await;
        let Some(id) = packet_id else { return };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.wait_for_packet(
                    "PUBACK",
                    |p| matches!(p, Packet::PubAck(ack) if ack.packet_id == id),
                )
                .await;
            }
            QoS::ExactlyOnce => {
                self.wait_for_packet(
                    "PUBREC",
                    |p| matches!(p, Packet::PubRec(rec) if rec.packet_id == id),
                )
                .await;
                self.send(Packet::PubRel(PubRel::new(id))).await;
                self.wait_for_packet(
                    "PUBCOMP",
                    |p| matches!(p, Packet::PubComp(comp) if comp.packet_id == id),
                )
                .await;
            }
        }
    }

    /// Asserts the server sends DISCONNECT with `reason` (MQTT 5) and closes the connection.
    pub async fn expect_disconnect(&mut self, reason: DisconnectReasonCode) {
        let packets = self.expect_closed().await;
        match packets.last() {
            Some(Packet::Disconnect(disconnect)) => {
                assert_eq!(
                    disconnect.reason, reason,
                    "DISCONNECT reason; packets: {packets:?}"
                )
            }
            _ => panic!("expected DISCONNECT {reason:?} before the close, got {packets:?}"),
        }
    }

    /// Sends DISCONNECT with `disconnect` as given and waits for the close.
    pub async fn disconnect_with(mut self, disconnect: Disconnect) {
        self.send(Packet::Disconnect(disconnect)).await;
        let _ = self.expect_closed().await;
    }

    /// Closes the TCP connection without DISCONNECT: to the broker, an abnormal close.
    pub fn abort(self) {
        drop(self);
    }

    pub async fn disconnect(mut self) {
        self.send(Packet::Disconnect(berth_codec::Disconnect::new(
            berth_codec::DisconnectReasonCode::NormalDisconnection,
        )))
        .await;
        let _ = self.expect_closed().await;
    }
}

/// A CONNECT for MQTT 5 with Clean Start and, if given, a Session Expiry Interval.
pub fn connect_v5(client_id: &str, clean_start: bool, session_expiry: Option<u32>) -> Connect {
    let mut connect = connect_packet(ProtocolVersion::V5, client_id, clean_start);
    connect.properties.session_expiry_interval = session_expiry;
    connect
}

/// A PUBLISH without packet identifier (`publish_with` assigns one) or properties.
pub fn message(topic_name: &str, payload: &[u8], qos: QoS) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic(topic_name),
        packet_id: None,
        payload: Bytes::copy_from_slice(payload),
        properties: Default::default(),
    }
}

/// Subscription options with the QoS and everything else at its default.
pub fn options(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions::new(qos)
}

impl TestClient {
    /// Connects with an MQTT 5 CONNECT and asserts it was accepted.
    pub async fn connect_v5(
        addr: SocketAddr,
        id: &str,
        clean_start: bool,
        session_expiry: Option<u32>,
    ) -> (TestClient, ConnAck) {
        let (client, connack) =
            TestClient::connect_with(addr, connect_v5(id, clean_start, session_expiry)).await;
        assert!(
            !connack.reason.is_error(),
            "connection refused: {connack:?}"
        );
        (client, connack)
    }

    /// Collects PUBLISHes (acknowledging each) until none arrives for `quiet`.
    pub async fn drain_publishes(&mut self, quiet: Duration) -> Vec<Publish> {
        let mut got = Vec::new();
        while let Some(packet) = self.try_recv(quiet).await {
            match packet {
                Packet::Publish(publish) => {
                    self.ack(&publish).await;
                    got.push(publish);
                }
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }
        got
    }
}

/// The payload as text, for readable assertions.
pub fn text(publish: &Publish) -> String {
    String::from_utf8_lossy(&publish.payload).into_owned()
}

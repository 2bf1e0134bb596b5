//! One MQTT client connection: the handshake steps (CONNECT, SUBSCRIBE, DISCONNECT), each bounded
//! in time, and the socket (TCP, or TLS over it: see `transport`) plus read buffer that the hot
//! loops drive directly.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use berth_codec::{
    Connect, ConnectProperties, DecodeOptions, Disconnect, DisconnectReasonCode, MqttString,
    Packet, PacketId, ProtocolVersion, QoS, Subscribe, Subscription, SubscriptionOptions,
    TopicFilter, decode, encode,
};
use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::transport::{BrokerStream, TlsClient};

/// Read buffer of a connection that carries traffic; reads fill it in one system call.
pub const HOT_READ_BUF: usize = 256 * 1024;
/// Read buffer while handshaking.
const SMALL_READ_BUF: usize = 512;

/// Whether the broker keeps the session after the connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// Clean Session = 1 (3.1.1); Clean Start = 1 and no expiry (5.0).
    Clean,
    /// Clean Session = 0 (3.1.1); Clean Start = `fresh` and a long Session Expiry (5.0).
    Persistent { fresh: bool },
}

/// Session Expiry Interval asked for by MQTT 5 persistent sessions: 2 hours, as Berth's default
/// for 3.1.1 persistent sessions.
const PERSISTENT_EXPIRY_SECS: u32 = 7200;

/// What CONNECT says.
#[derive(Debug, Clone)]
pub struct ConnectSpec {
    pub version: ProtocolVersion,
    pub client_id: String,
    pub session: SessionKind,
    pub keep_alive: u16,
    /// TLS over the TCP connection (`--tls-ca`); `None`: plain TCP.
    pub tls: Option<TlsClient>,
}

#[derive(Debug)]
pub struct Conn {
    pub stream: BrokerStream,
    pub rbuf: BytesMut,
    pub version: ProtocolVersion,
    pub opts: DecodeOptions,
    /// How many QoS 1 PUBLISHes the broker accepts in flight (CONNACK Receive Maximum; 65,535
    /// when it does not say, as in 3.1.1).
    pub receive_maximum: u16,
    pub session_present: bool,
    wbuf: BytesMut,
}

impl Conn {
    /// TCP connect (and the TLS handshake, with `spec.tls`), CONNECT, and an accepting CONNACK,
    /// within `limit`.
    pub async fn connect(
        addr: SocketAddr,
        spec: &ConnectSpec,
        limit: Duration,
    ) -> anyhow::Result<Conn> {
        timeout(limit, Conn::connect_unbounded(addr, spec))
            .await
            .map_err(|_| anyhow!("{}: no CONNACK within {limit:?}", spec.client_id))?
    }

    async fn connect_unbounded(addr: SocketAddr, spec: &ConnectSpec) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("TCP connect to {addr}"))?;
        tcp.set_nodelay(true).context("TCP_NODELAY")?;
        let stream = match &spec.tls {
            None => BrokerStream::Tcp(tcp),
            Some(tls) => tls
                .handshake(tcp)
                .await
                .with_context(|| format!("TLS handshake with {addr}"))?,
        };
        let mut conn = Conn {
            stream,
            rbuf: BytesMut::with_capacity(SMALL_READ_BUF),
            version: spec.version,
            opts: DecodeOptions::new(spec.version),
            receive_maximum: u16::MAX,
            session_present: false,
            wbuf: BytesMut::with_capacity(SMALL_READ_BUF),
        };
        let (clean_start, session_expiry_interval) = match spec.session {
            SessionKind::Clean => (true, None),
            SessionKind::Persistent { fresh } => (
                fresh && spec.version.is_v5(),
                spec.version.is_v5().then_some(PERSISTENT_EXPIRY_SECS),
            ),
        };
        let connect = Connect {
            protocol: spec.version,
            clean_start,
            keep_alive: spec.keep_alive,
            client_id: MqttString::new(&spec.client_id)
                .map_err(|e| anyhow!("client id {:?}: {e}", spec.client_id))?,
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties {
                session_expiry_interval,
                ..ConnectProperties::default()
            },
        };
        conn.send(&Packet::Connect(Box::new(connect))).await?;
        match conn.recv_unbounded().await? {
            Packet::ConnAck(ack) if !ack.reason.is_error() => {
                conn.session_present = ack.session_present;
                if let Some(max) = ack.properties.receive_maximum {
                    conn.receive_maximum = max.get();
                }
                Ok(conn)
            }
            Packet::ConnAck(ack) => {
                bail!("{}: connection refused: {:?}", spec.client_id, ack.reason)
            }
            other => bail!("{}: expected CONNACK, got {other:?}", spec.client_id),
        }
    }

    /// Subscribes to `filters` at `qos` and checks that every one was granted at that QoS.
    pub async fn subscribe(
        &mut self,
        filters: &[TopicFilter],
        qos: QoS,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let packet_id = PacketId::new(1).context("packet id")?;
        let subscribe = Subscribe {
            packet_id,
            subscriptions: filters
                .iter()
                .map(|filter| Subscription {
                    filter: filter.clone(),
                    options: SubscriptionOptions::new(qos),
                })
                .collect(),
            properties: Default::default(),
        };
        self.send(&Packet::Subscribe(subscribe)).await?;
        let reply = timeout(limit, self.recv_unbounded())
            .await
            .map_err(|_| anyhow!("no SUBACK within {limit:?}"))??;
        match reply {
            Packet::SubAck(ack) if ack.packet_id == packet_id => {
                if let Some(code) = ack.reason_codes.iter().find(|code| code.is_error()) {
                    bail!("subscription refused: {code:?}");
                }
                // A broker may grant less than asked; the run would then measure another flow
                // (e.g. QoS 1 in a QoS 2 case) under the QoS it claims.
                if let Some(code) = ack.reason_codes.iter().find(|c| c.code() < qos.as_u8()) {
                    bail!(
                        "subscription granted at QoS {}, not the QoS {} asked for",
                        code.code(),
                        qos.as_u8()
                    );
                }
                if ack.reason_codes.len() != filters.len() {
                    bail!(
                        "SUBACK answers {} of {} filters",
                        ack.reason_codes.len(),
                        filters.len()
                    );
                }
                Ok(())
            }
            other => bail!("expected SUBACK, got {other:?}"),
        }
    }

    /// Sends DISCONNECT and waits (within `limit`) for the broker to close the socket first, so
    /// that the broker's side, not ours, holds the TIME_WAIT and our ports are free for reuse.
    pub async fn disconnect(mut self, limit: Duration) -> anyhow::Result<()> {
        self.send(&Packet::Disconnect(Disconnect::new(
            DisconnectReasonCode::NormalDisconnection,
        )))
        .await?;
        let _ = timeout(limit, async {
            let mut sink = [0u8; 1024];
            while let Ok(n) = self.stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        Ok(())
    }

    pub async fn send(&mut self, packet: &Packet) -> anyhow::Result<()> {
        self.wbuf.clear();
        encode(packet, self.version, &mut self.wbuf).context("encoding")?;
        self.stream
            .write_all_flushed(&self.wbuf)
            .await
            .context("write")?;
        Ok(())
    }

    /// The next packet; an error if the connection closes or sends something malformed.
    pub async fn recv_unbounded(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(packet) =
                decode(&mut self.rbuf, &self.opts).context("decoding from the broker")?
            {
                return Ok(packet);
            }
            if self.rbuf.capacity() - self.rbuf.len() < SMALL_READ_BUF {
                self.rbuf.reserve(SMALL_READ_BUF);
            }
            let n = self.stream.read_buf(&mut self.rbuf).await.context("read")?;
            if n == 0 {
                bail!("the broker closed the connection");
            }
        }
    }

    /// Grows the read buffer for traffic.
    pub fn make_hot(&mut self) {
        if self.rbuf.capacity() < HOT_READ_BUF {
            self.rbuf.reserve(HOT_READ_BUF - self.rbuf.len());
        }
    }

    /// The socket alone (with its TLS session, if any), for connections that are only held open.
    pub fn into_stream(self) -> BrokerStream {
        self.stream
    }
}

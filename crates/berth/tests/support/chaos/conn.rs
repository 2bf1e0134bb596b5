//! An MQTT connection for the chaos test that never panics: every failure the nemesis causes
//! (refused, reset, a node that stopped answering, a load balancer closing the connection) is an
//! `Err` or a timeout the caller handles by reconnecting. `TestClient` panics on those, which is
//! what a scripted test wants and what a device hopping through failures cannot use.

use std::net::SocketAddr;
use std::time::Duration;

use berth_codec::{ConnAck, Connect, DecodeOptions, Packet, ProtocolVersion, decode, encode};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A write that cannot complete within this is a dead connection (a stopped node whose buffers
/// are full).
const WRITE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    version: ProtocolVersion,
    /// This end's port: the load balancer's log names the node it chose for it.
    pub local_port: u16,
    /// Unique in the run: tells whether two deliveries came on one connection.
    pub serial: u64,
    next_id: u16,
}

static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Conn {
    /// Opens a TCP connection, sends `connect` and waits up to `wait` for the CONNACK.
    pub async fn connect(
        addr: SocketAddr,
        connect: Connect,
        wait: Duration,
    ) -> Result<(Conn, ConnAck), String> {
        let mut conn = Conn::open(addr, connect.protocol, wait).await?;
        let connack = conn.handshake(connect, wait).await?;
        Ok((conn, connack))
    }

    /// Opens a TCP connection (nothing sent yet).
    pub async fn open(
        addr: SocketAddr,
        version: ProtocolVersion,
        wait: Duration,
    ) -> Result<Conn, String> {
        let stream = tokio::time::timeout(wait, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("TCP connect to {addr} timed out"))?
            .map_err(|e| format!("TCP connect to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let local_port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
        Ok(Conn {
            stream,
            buf: BytesMut::new(),
            version,
            local_port,
            serial: SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            next_id: 0,
        })
    }

    /// Sends `connect` and waits up to `wait` for the CONNACK.
    pub async fn handshake(&mut self, connect: Connect, wait: Duration) -> Result<ConnAck, String> {
        self.send(&Packet::Connect(Box::new(connect))).await?;
        match self.recv(wait).await? {
            Some(Packet::ConnAck(connack)) => Ok(*connack),
            Some(other) => Err(format!("expected CONNACK, got {other:?}")),
            None => Err(format!("no CONNACK within {wait:?}")),
        }
    }

    pub fn next_packet_id(&mut self) -> berth_codec::PacketId {
        self.next_id = self.next_id % u16::MAX + 1;
        berth_codec::PacketId::new(self.next_id).expect("non-zero")
    }

    pub async fn send(&mut self, packet: &Packet) -> Result<(), String> {
        let mut out = BytesMut::new();
        encode(packet, self.version, &mut out).map_err(|e| format!("encode: {e:?}"))?;
        tokio::time::timeout(WRITE_WAIT, self.stream.write_all(&out))
            .await
            .map_err(|_| "write timed out".to_string())?
            .map_err(|e| format!("write: {e}"))
    }

    /// The next packet within `wait` (`Ok(None)`: nothing yet); `Err` once the connection is
    /// closed or sends something undecodable.
    pub async fn recv(&mut self, wait: Duration) -> Result<Option<Packet>, String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let opts = DecodeOptions::new(self.version);
            if let Some(packet) =
                decode(&mut self.buf, &opts).map_err(|e| format!("decode: {e:?}"))?
            {
                return Ok(Some(packet));
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) => return Err("closed by the server".into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("read: {e}")),
                Err(_) => return Ok(None),
            }
        }
    }
}

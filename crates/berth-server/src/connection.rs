//! One task per network connection: decode what the client sends into commands for the broker
//! thread, encode what the broker sends back, and watch the keep alive.
//!
//! The connection owns no session state. Its buffers start empty and grow with the traffic; the
//! write buffer is released again when a burst has been written.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_codec::{DecodeError, DecodeOptions, Packet, ProtocolVersion, decode, encode};
use berth_core::{CloseReason, ConnId};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{Sender, UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::{Instant, sleep_until, timeout};

use crate::admission;
use crate::cluster_link::ClusterLink;
use crate::runtime::{Command, ConnectionHandle, Outbound};

/// How long a new connection may take to send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the broker's goodbye after reporting the connection closed.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Write buffers larger than this are released after use.
const WRITE_BUFFER_KEEP: usize = 64 * 1024;

pub(crate) struct Connection {
    pub conn: ConnId,
    pub stream: TcpStream,
    pub commands: Sender<Command>,
    pub max_packet_size: u32,
    /// Set on a cluster node: CONNECT, SUBSCRIBE and retained PUBLISHes commit through Raft.
    pub cluster: Option<Arc<ClusterLink>>,
}

impl Connection {
    pub(crate) async fn run(self) {
        let Connection {
            conn,
            stream,
            commands,
            max_packet_size,
            cluster,
        } = self;
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let mut read_buf = BytesMut::new();

        // CONNECT first ([MQTT-3.1.0-1]); anything else, or nothing in time, closes the socket.
        let opts = DecodeOptions::new(ProtocolVersion::V5).with_max_packet_size(max_packet_size);
        let connect = match timeout(
            CONNECT_TIMEOUT,
            read_connect(&mut reader, &mut read_buf, &opts),
        )
        .await
        {
            Ok(Ok(connect)) => connect,
            Ok(Err(ConnectFailure::UnsupportedLevel)) => {
                // 3.1.1 §3.1.2.2: CONNACK return code 0x01, then close.
                let _ = writer.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
                return;
            }
            Ok(Err(ConnectFailure::Refused(reason))) => {
                let mut out = BytesMut::new();
                let connack = Packet::ConnAck(Box::new(berth_codec::ConnAck::refused(reason)));
                if encode(&connack, ProtocolVersion::V5, &mut out).is_ok() {
                    let _ = writer.write_all(&out).await;
                }
                let _ = writer.shutdown().await;
                return;
            }
            Ok(Err(ConnectFailure::Closed)) | Err(_) => return,
        };
        let mut connect = connect;
        let mut grant = None;
        if let Some(link) = &cluster {
            match admission::claim(link, &mut connect, crate::runtime::now(), conn.0).await {
                Ok(granted) => grant = granted,
                Err(()) => {
                    // No consensus: a clear refusal, never a silent success (3.1.1: code 3).
                    let refused = berth_codec::ConnAck::refused(
                        berth_codec::ConnectReasonCode::ServerUnavailable,
                    );
                    let mut out = BytesMut::new();
                    if encode(
                        &Packet::ConnAck(Box::new(refused)),
                        connect.protocol,
                        &mut out,
                    )
                    .is_ok()
                    {
                        let _ = writer.write_all(&out).await;
                    }
                    let _ = writer.shutdown().await;
                    return;
                }
            }
        }
        let version = connect.protocol;
        let mut keep_alive = connect.keep_alive;
        let (outbound_tx, mut outbound) = unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let handle = ConnectionHandle {
            outbound: outbound_tx.clone(),
            pending: pending.clone(),
        };
        let command = Command::Connect {
            conn,
            connect: Box::new(connect),
            handle,
            epoch: grant.as_ref().map(|g| (g.epoch, g.assigned)),
        };
        let replicated = cluster.zip(grant).map(|(link, grant)| Replicated {
            link,
            grant,
            replies: outbound_tx,
            pending: pending.clone(),
        });
        if commands.send(command).await.is_err() {
            return;
        }

        let opts = DecodeOptions::new(version).with_max_packet_size(max_packet_size);
        let mut write_buf = BytesMut::new();
        let mut last_read = Instant::now();
        let mut reading = true;
        loop {
            let keep_alive_deadline = (keep_alive > 0 && reading)
                .then(|| last_read + Duration::from_millis(u64::from(keep_alive) * 1500));
            tokio::select! {
                read = reader.read_buf(&mut read_buf), if reading => {
                    match read {
                        Ok(0) | Err(_) => {
                            let _ = commands.send(Command::Closed { conn, reason: CloseReason::ConnectionLost }).await;
                            break;
                        }
                        Ok(_) => {
                            last_read = Instant::now();
                            if let Err(error) = forward_packets(conn, &mut read_buf, &opts, &commands, replicated.as_ref()).await {
                                reading = false;
                                let _ = commands.send(Command::Closed { conn, reason: CloseReason::Malformed(error) }).await;
                            }
                        }
                    }
                }
                () = sleep_until(keep_alive_deadline.unwrap_or_else(Instant::now)), if keep_alive_deadline.is_some() => {
                    reading = false;
                    let _ = commands.send(Command::Closed { conn, reason: CloseReason::KeepAliveTimeout }).await;
                }
                message = outbound.recv() => {
                    let Some(message) = message else { break };
                    let mut close = false;
                    let mut written = 0usize;
                    let mut next = Some(message);
                    // Write everything already waiting in one go.
                    while let Some(message) = next.take() {
                        match message {
                            Outbound::Packet(packet) => {
                                if let Packet::ConnAck(connack) = packet.as_ref()
                                    && let Some(server_keep_alive) = connack.properties.server_keep_alive
                                {
                                    keep_alive = server_keep_alive;
                                }
                                written += 1;
                                if encode(&packet, version, &mut write_buf).is_err() {
                                    tracing::warn!(?conn, "dropping a packet that cannot be encoded");
                                }
                            }
                            Outbound::Close => {
                                close = true;
                                break;
                            }
                        }
                        // Bounded batches: a backlog is written in pieces, not copied whole.
                        next = if write_buf.len() < WRITE_BUFFER_KEEP { outbound.try_recv().ok() } else { None };
                    }
                    if writer.write_all(&write_buf).await.is_err() {
                        if reading {
                            let _ = commands.send(Command::Closed { conn, reason: CloseReason::ConnectionLost }).await;
                        }
                        break;
                    }
                    pending.fetch_sub(written, Ordering::Relaxed);
                    write_buf.clear();
                    if write_buf.capacity() > 2 * WRITE_BUFFER_KEEP {
                        write_buf = BytesMut::new();
                    }
                    if close {
                        let _ = writer.shutdown().await;
                        return;
                    }
                }
            }
            if !reading {
                // Reported closed: wait (bounded) for the broker's last packets and Close.
                let deadline = Instant::now() + CLOSE_GRACE;
                while let Ok(Some(message)) =
                    tokio::time::timeout_at(deadline, outbound.recv()).await
                {
                    match message {
                        Outbound::Packet(packet) => {
                            let _ = encode(&packet, version, &mut write_buf);
                        }
                        Outbound::Close => break,
                    }
                }
                let _ = writer.write_all(&write_buf).await;
                let _ = writer.shutdown().await;
                return;
            }
        }
        drain_until_close(&mut outbound).await;
    }
}

/// After the socket is gone: let the broker's remaining packets for it fall away.
async fn drain_until_close(outbound: &mut UnboundedReceiver<Outbound>) {
    let deadline = Instant::now() + CLOSE_GRACE;
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, outbound.recv()).await {
        if let Outbound::Close = message {
            return;
        }
    }
}

/// A cluster connection's way to replicate packets and answer those that did not commit.
struct Replicated {
    link: Arc<ClusterLink>,
    grant: admission::Grant,
    replies: UnboundedSender<Outbound>,
    pending: Arc<AtomicUsize>,
}

async fn forward_packets(
    conn: ConnId,
    read_buf: &mut BytesMut,
    opts: &DecodeOptions,
    commands: &Sender<Command>,
    replicated: Option<&Replicated>,
) -> Result<(), DecodeError> {
    while let Some(packet) = decode(read_buf, opts)? {
        if let Some(r) = replicated
            && let Err(reply) =
                admission::replicate(&r.link, &r.grant, &packet, crate::runtime::now()).await
        {
            r.pending.fetch_add(1, Ordering::Relaxed);
            let _ = r.replies.send(Outbound::Packet(Box::new(reply)));
            continue;
        }
        if commands
            .send(Command::Packet { conn, packet })
            .await
            .is_err()
        {
            return Ok(());
        }
    }
    Ok(())
}

enum ConnectFailure {
    UnsupportedLevel,
    /// An MQTT 5 CONNECT that failed to decode: CONNACK with this reason, then close.
    Refused(berth_codec::ConnectReasonCode),
    Closed,
}

/// Whether the buffered bytes start a CONNECT with protocol name `MQTT` and level 5.
fn announces_v5(buf: &[u8]) -> bool {
    if buf.first() != Some(&0x10) {
        return false;
    }
    // Skip the remaining length (1..=4 bytes), then expect 00 04 'M' 'Q' 'T' 'T' 05.
    let Some(length_bytes) = buf.iter().skip(1).take(4).position(|b| b & 0x80 == 0) else {
        return false;
    };
    let start = 2 + length_bytes;
    buf.get(start..start + 7) == Some(&[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05][..])
}

async fn read_connect(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
    opts: &DecodeOptions,
) -> Result<berth_codec::Connect, ConnectFailure> {
    loop {
        // Checked before decoding, which takes a complete packet out of the buffer.
        let from_v5_client = announces_v5(buf);
        match decode(buf, opts) {
            Ok(Some(Packet::Connect(connect))) => return Ok(*connect),
            Ok(Some(_)) => return Err(ConnectFailure::Closed),
            Ok(None) => {}
            Err(
                DecodeError::UnsupportedProtocolLevel { .. }
                | DecodeError::ProtocolNameLevelMismatch { .. },
            ) => {
                return Err(ConnectFailure::UnsupportedLevel);
            }
            // MQTT 5 §3.1.4: a bad CONNECT from an MQTT 5 client may be answered with a CONNACK
            // carrying the reason; 3.1/3.1.1 clients only see the connection close.
            Err(error) if from_v5_client => {
                return Err(ConnectFailure::Refused(error.connack_reason()));
            }
            Err(_) => return Err(ConnectFailure::Closed),
        }
        match reader.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(ConnectFailure::Closed),
            Ok(_) => {}
        }
    }
}

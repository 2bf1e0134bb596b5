//! One task per network connection: decode what the client sends into commands for the broker
//! thread, encode what the broker sends back, and watch the keep alive.
//!
//! The connection owns no session state. Its buffers start empty and grow with the traffic; the
//! write buffer is released again when a burst has been written.

use std::sync::Arc;
use std::time::Duration;

use berth_codec::{
    ConnectReasonCode, DecodeError, DecodeOptions, Packet, ProtocolVersion, decode, encode,
};
use berth_core::ConnId;
use bytes::BytesMut;
use futures_util::future::Either;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc::Sender;
use tokio::time::timeout;

use crate::auth::{Authenticator, Credentials, Refusal};
use crate::cluster_port::ClusterPort;
use crate::drain::DrainState;
use crate::mailbox::mailbox;
use crate::proxy_protocol::{Prefixed, read_header};
use crate::runtime::{Command, ConnectionHandle};
use crate::tls::TlsFiles;
use forward::Replicated;
use serve::{Accepted, serve};

/// How long a new connection may take to send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the broker's goodbye after reporting the connection closed.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Write buffers larger than this are released after use.
const WRITE_BUFFER_KEEP: usize = 64 * 1024;
/// Capacity (in packets, 104 bytes each) of the taken batch kept between bursts; more is
/// released once written. The mailbox holds the other of the two queues that take turns, so a
/// busy connection keeps up to twice this, until a wake-up brings a single packet. A steady
/// trickle of single packets then allocates a small queue per packet (as the box per packet
/// did before packets went inline).
const BATCH_KEEP: usize = 32;

pub(crate) struct Connection {
    /// Its place under the node's connection limits, released when the task ends.
    pub permit: Option<crate::gate::Permit>,
    pub conn: ConnId,
    pub stream: TcpStream,
    /// Boxed: only the handshake needs it, and every idle connection's task keeps its size.
    pub edge: Box<Edge>,
    pub commands: Sender<Command>,
    pub max_packet_size: u32,
}

/// Where a connection came from, for the handshake.
pub(crate) struct Edge {
    /// The listener that accepted it, by name: in the handshake's log lines.
    pub listener: Arc<str>,
    /// The TCP peer: the client, or the load balancer in front of it (then the PROXY header,
    /// when the listener expects one, names the client).
    pub peer: std::net::SocketAddr,
    pub proxy: crate::ProxySettings,
    /// On a TLS listener: its certificate and client-certificate rules, current at accept.
    pub tls: Option<Arc<TlsFiles>>,
    /// On a WebSocket listener (over TLS when `tls` is set too): the path MQTT is served on.
    pub ws_path: Option<Arc<str>>,
    pub auth: Arc<Authenticator>,
    pub metrics: Arc<crate::Metrics>,
    /// On a cluster node, CONNECT, SUBSCRIBE and retained PUBLISHes commit through it.
    pub cluster: Arc<dyn ClusterPort>,
    /// While the node drains, new CONNECTs are sent elsewhere.
    pub drain: Arc<DrainState>,
}

/// What the MQTT handshake needs once the transport is set up.
struct Handshake {
    /// The connection's place under the node's limits, handed on to the connected phase.
    permit: Option<crate::gate::Permit>,
    conn: ConnId,
    commands: Sender<Command>,
    max_packet_size: u32,
    /// The client, as the PROXY header or the socket names it.
    client_addr: std::net::SocketAddr,
    /// A verified client certificate's Common Name, where the listener uses it as username.
    cert_identity: Option<String>,
    auth: Arc<Authenticator>,
    metrics: Arc<crate::Metrics>,
    cluster: Arc<dyn ClusterPort>,
    drain: Arc<DrainState>,
}

/// The read half of a layered transport (TLS, WebSocket, both).
type DynReader = Box<dyn AsyncRead + Send + Unpin>;
type DynWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// A connection whose CONNECT the broker has: over plain TCP (the common case, without
/// indirection), or over a layered transport behind one boxed reader and writer (their
/// framing costs far more than a virtual call). Boxed: the task's own future keeps room for
/// this value while the connection is served, and every idle connection pays for that room.
enum Opened {
    Plain(Box<Accepted<OwnedReadHalf, OwnedWriteHalf>>),
    Layered(Box<Accepted<DynReader, DynWriter>>),
}

impl Connection {
    /// The connection's task. Not an `async fn`, which would keep `self` twice for the life of
    /// the connection (its parameter and the local it is moved into): the block captures the
    /// handshake's part boxed, and what the connected phase needs by value.
    pub(crate) fn run(self) -> impl Future<Output = ()> + Send {
        // Its place under the node's connection limits travels with the connection (parked or
        // served by a task) and is released when the connection ends.
        let opening = Box::new(self);
        async move {
            // Boxed: the handshake (reading CONNECT, the cluster's claim, refusals) has large
            // futures that live only until CONNACK; inline they would stay part of every idle
            // connection's task for as long as it is open.
            if let Some(opened) = Box::pin(opening.open()).await {
                serve_opened(opened).await;
            }
        }
    }

    /// Reads the PROXY header, sets up TLS where the listener has it, then the MQTT handshake.
    /// `None`: the connection ended (refused, closed, timed out). Its span gives the events of
    /// the handshake (the claim and a takeover included) the client id once CONNECT names it;
    /// the connected phase keeps none (a span per idle connection would cost memory).
    #[tracing::instrument(
        name = "connection",
        skip_all,
        fields(listener = %self.edge.listener, client_id = tracing::field::Empty)
    )]
    async fn open(self: Box<Self>) -> Option<Opened> {
        let Connection {
            permit,
            conn,
            mut stream,
            edge,
            commands,
            max_packet_size,
        } = *self;
        let Edge {
            listener: _,
            peer,
            proxy,
            tls,
            ws_path,
            auth,
            metrics,
            cluster,
            drain,
        } = *edge;
        let _ = stream.set_nodelay(true);
        // A PROXY header comes before the first MQTT (or TLS) byte; what was read past it is
        // the client's.
        let (client_addr, leftover) =
            match read_header(&mut stream, proxy.mode, proxy.header_timeout).await {
                Ok(header) => (header.source.unwrap_or(peer), header.leftover),
                Err(error) => {
                    metrics.count_proxy_refused(error.reason());
                    tracing::debug!(?conn, %peer, %error, "closing: PROXY protocol header");
                    return None;
                }
            };
        tracing::debug!(?conn, client = %client_addr, via = %peer, tls = tls.is_some(), ws = ws_path.is_some(), "connection");
        let mut handshake = Handshake {
            permit,
            conn,
            commands,
            max_packet_size,
            client_addr,
            cert_identity: None,
            auth,
            metrics,
            cluster,
            drain,
        };
        let Some(tls) = tls else {
            if let Some(path) = ws_path {
                let ws = handshake
                    .websocket(Prefixed::new(leftover, stream), &path)
                    .await?;
                return handshake.layered(ws).await;
            }
            let (reader, writer) = stream.into_split();
            let read_buf = BytesMut::from(&leftover[..]);
            return handshake
                .mqtt(reader, writer, read_buf)
                .await
                .map(|accepted| Opened::Plain(Box::new(accepted)));
        };
        let accepting = tls.acceptor().accept(Prefixed::new(leftover, stream));
        let stream = match timeout(CONNECT_TIMEOUT, accepting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                handshake.metrics.count_tls_refused();
                tracing::debug!(?conn, client = %client_addr, %error, "closing: TLS handshake failed");
                return None;
            }
            Err(_elapsed) => {
                handshake.metrics.count_tls_refused();
                tracing::debug!(?conn, client = %client_addr, "closing: TLS handshake timed out");
                return None;
            }
        };
        if tls.identity_from_cert() {
            handshake.cert_identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| crate::tls::common_name(leaf));
        }
        match ws_path {
            Some(path) => {
                let ws = handshake.websocket(stream, &path).await?;
                handshake.layered(ws).await
            }
            None => handshake.layered(stream).await,
        }
    }
}

/// The connected phase over either transport, as one future. A plain function on purpose:
/// `opened` is moved in whole before anything is awaited, so the task keeps no room for it (a
/// `match` on it inside the task would keep its tag alive for the life of the connection).
fn serve_opened(opened: Opened) -> Either<impl Future<Output = ()>, impl Future<Output = ()>> {
    match opened {
        Opened::Plain(accepted) => Either::Left(serve(*accepted)),
        Opened::Layered(accepted) => Either::Right(serve(*accepted)),
    }
}

impl Handshake {
    /// The WebSocket upgrade on `path`, bounded like the rest of the handshake.
    async fn websocket<S>(&self, stream: S, path: &str) -> Option<crate::ws::WsIo<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let upgrading = crate::ws::accept(stream, path, self.max_packet_size as usize);
        match timeout(CONNECT_TIMEOUT, upgrading).await {
            Ok(Ok(ws)) => Some(ws),
            Ok(Err(error)) => {
                self.metrics.count_ws_refused();
                tracing::debug!(conn = ?self.conn, client = %self.client_addr, %error, "closing: WebSocket upgrade failed");
                None
            }
            Err(_elapsed) => {
                self.metrics.count_ws_refused();
                tracing::debug!(conn = ?self.conn, client = %self.client_addr, "closing: WebSocket upgrade timed out");
                None
            }
        }
    }

    /// The MQTT handshake over a layered transport (TLS, WebSocket, both).
    async fn layered<S>(self, stream: S) -> Option<Opened>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (reader, writer) = tokio::io::split(stream);
        let reader: DynReader = Box::new(reader);
        let writer: DynWriter = Box::new(writer);
        self.mqtt(reader, writer, BytesMut::new())
            .await
            .map(|accepted| Opened::Layered(Box::new(accepted)))
    }

    /// Reads the CONNECT, checks the client's credentials, has the cluster grant the session,
    /// hands the CONNECT to the broker.
    async fn mqtt<R, W>(
        self,
        mut reader: R,
        mut writer: W,
        mut read_buf: BytesMut,
    ) -> Option<Accepted<R, W>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let Handshake {
            permit,
            conn,
            commands,
            max_packet_size,
            client_addr,
            cert_identity,
            auth,
            metrics,
            cluster,
            drain,
        } = self;
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
                let _ = write_out(&mut writer, &[0x20, 0x02, 0x00, 0x01]).await;
                let _ = writer.shutdown().await;
                return None;
            }
            Ok(Err(ConnectFailure::Refused(reason))) => {
                refuse(&metrics, &mut writer, ProtocolVersion::V5, reason).await;
                return None;
            }
            Ok(Err(ConnectFailure::Closed)) | Err(_) => return None,
        };
        let read = std::time::Instant::now();
        if !connect.client_id.as_str().is_empty() {
            tracing::Span::current().record("client_id", connect.client_id.as_str());
        }
        if drain.is_draining() {
            // The load balancer has not yet seen /ready fail: this client belongs elsewhere.
            let reason = ConnectReasonCode::UseAnotherServer;
            refuse(&metrics, &mut writer, connect.protocol, reason).await;
            return None;
        }
        let mut connect = connect;
        let checked = auth
            .authenticate(Credentials {
                username: connect.username.as_deref(),
                password: connect.password.as_deref(),
                cert_identity: cert_identity.as_deref(),
                addr: client_addr.ip(),
            })
            .await;
        let authenticated = match checked {
            Ok(authenticated) => authenticated,
            Err(refusal) => {
                metrics.count_auth_refused(refusal.reason());
                tracing::info!(?conn, client = %client_addr, reason = refusal.reason(), "refused: authentication");
                refuse(
                    &metrics,
                    &mut writer,
                    connect.protocol,
                    refusal_code(refusal),
                )
                .await;
                return None;
            }
        };
        // The certificate, or a JWT's `sub`, names the client: whatever username it sent is
        // replaced (a `sub` has already matched the CONNECT's username, if it had one).
        if let Some(name) = cert_identity.or(authenticated.username) {
            match berth_codec::MqttString::try_from(name) {
                Ok(username) => connect.username = Some(username),
                Err(_) => {
                    let reason = ConnectReasonCode::BadUserNameOrPassword;
                    refuse(&metrics, &mut writer, connect.protocol, reason).await;
                    return None;
                }
            }
        }
        let grant = match cluster
            .claim(&mut connect, crate::runtime::now(), conn.0)
            .await
        {
            Ok(Some(mut grant)) => {
                tracing::Span::current().record("client_id", grant.client.as_str());
                grant.principal = Arc::new(berth_core::acl::Principal {
                    username: connect.username.as_ref().map(|u| u.as_str().to_owned()),
                    client_id: grant.client.as_str().to_owned(),
                    source: Some(client_addr.ip()),
                    grants: authenticated.grants.clone(),
                });
                Some(grant)
            }
            Ok(None) => None,
            Err(crate::cluster_port::NoConsensus) => {
                // No consensus: a clear refusal, never a silent success (3.1.1: code 3).
                let reason = ConnectReasonCode::ServerUnavailable;
                refuse(&metrics, &mut writer, connect.protocol, reason).await;
                return None;
            }
        };
        let version = connect.protocol;
        let keep_alive = connect.keep_alive;
        let (outbox, inbox) = mailbox();
        let handle = ConnectionHandle::new(outbox.clone());
        let command = Command::Connect {
            conn,
            connect: Box::new(connect),
            handle,
            epoch: grant.as_ref().map(|g| (g.epoch, g.assigned)),
            source: Some(client_addr.ip()),
            grants: authenticated.grants,
            principal: grant.as_ref().map(|g| g.principal.clone()),
            read,
            taken_over: grant.as_ref().is_some_and(|g| g.taken_over),
        };
        let replicated = grant.map(|grant| {
            Box::new(Replicated {
                port: cluster,
                grant,
                replies: outbox,
            })
        });
        if !to_broker(&commands, move || command).await {
            return None;
        }
        Some(Accepted {
            _permit: permit,
            conn,
            commands,
            max_packet_size,
            reader,
            writer,
            read_buf,
            version,
            keep_alive,
            inbox,
            replicated,
            metrics,
        })
    }
}

/// The CONNACK reason for an authentication refusal (3.1.1 return codes follow from it).
fn refusal_code(refusal: Refusal) -> ConnectReasonCode {
    match refusal {
        Refusal::BadCredentials => ConnectReasonCode::BadUserNameOrPassword,
        Refusal::NotAuthorized => ConnectReasonCode::NotAuthorized,
        Refusal::RateLimited => ConnectReasonCode::ConnectionRateExceeded,
    }
}

/// Answers a CONNECT with a refusal (counted by its reason code), then closes.
async fn refuse<W: AsyncWrite + Unpin>(
    metrics: &crate::Metrics,
    writer: &mut W,
    version: ProtocolVersion,
    reason: ConnectReasonCode,
) {
    metrics.count_connect_refused(reason.code());
    let mut out = BytesMut::new();
    let connack = Packet::ConnAck(Box::new(berth_codec::ConnAck::refused(reason)));
    if encode(&connack, version, &mut out).is_ok() {
        let _ = write_out(writer, &out).await;
    }
    let _ = writer.shutdown().await;
}

/// Writes `bytes` and flushes them: a no-op for TCP, what makes TLS records and WebSocket
/// messages leave now rather than wait in their layer's buffer.
async fn write_out<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

/// Hands a command to the broker thread; false once the broker is gone. The channel's slot is
/// reserved before the command is built, so a task waiting for room does not also hold the
/// command inside its send future: every connection's task is as large as its largest wait.
async fn to_broker(commands: &Sender<Command>, command: impl FnOnce() -> Command) -> bool {
    match commands.reserve().await {
        Ok(permit) => {
            permit.send(command());
            true
        }
        Err(_) => false,
    }
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

async fn read_connect<R: AsyncRead + Unpin>(
    reader: &mut R,
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

mod forward;
mod park;
mod read_size;
mod serve;
#[cfg(test)]
mod tests;

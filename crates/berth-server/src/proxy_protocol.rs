//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, versions 1 and 2) on the MQTT listener.
//!
//! Behind an L4 load balancer (HAProxy, an AWS NLB, a Kubernetes `LoadBalancer` Service) the TCP
//! peer is the balancer, yet logs, per-address limits and ACLs need the client. The balancer
//! names it in a header sent before the first MQTT byte (before a TLS `ClientHello`, too).
//!
//! ```text
//!  client ─▶ balancer ─[PROXY header][MQTT…]─▶ read_header ─▶ Accepted { source, leftover }
//!                                   Prefixed { leftover, socket } ─▶ MQTT codec
//! ```
//!
//! [`parse`] is sans-IO: given the bytes so far it answers `Incomplete`, `NotProxy` or
//! `Header { source, len }`; [`read_header`] only reads and asks again. It may read past the
//! header: those bytes come back as `leftover` and [`Prefixed`] replays them, so none is lost.
//!
//! Rules:
//! - **Modes.** `off` never reads; `required` refuses a connection without a header
//!   ([`ProxyError::Missing`]); `optional` takes a header if there is one, else hands back every
//!   byte read. Optional lets anyone who reaches the port directly claim any source address:
//!   it is for migrations and for listeners only the balancer can reach.
//! - **Deciding early.** A header starts with `P` (v1) or `0x0D` (v2); MQTT starts with `0x10`,
//!   TLS with `0x16`, so the first byte settles most connections. Then any byte that disagrees
//!   with `"PROXY "` or the v2 signature means `NotProxy`; a prefix of either is `Incomplete`.
//! - **v1**: `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n`, single spaces, at most 107
//!   bytes with the CRLF. Addresses match the family; ports are decimal `0..=65535` without
//!   leading zeros. In `PROXY UNKNOWN…\r\n` whatever follows `UNKNOWN` is ignored, as the spec
//!   says. A byte that is not printable ASCII, or LF without CR, fails at once.
//! - **v2**: signature, version/command (`0x20` LOCAL, `0x21` PROXY; anything else fails),
//!   family/protocol, big-endian length, then addresses and TLVs (skipped). Only the spec's seven
//!   family/protocol bytes pass (`0x00`, `0x11`, `0x12`, `0x21`, `0x22`, `0x31`, `0x32`), the
//!   length must cover that family's addresses, and it is capped at [`V2_MAX_PAYLOAD`].
//! - **No source** for LOCAL (the balancer's own health checks: family ignored, length still
//!   skipped), v1 UNKNOWN and v2 UNSPEC, UDP or UNIX: the caller uses the socket's peer address.
//! - **End of stream** before any byte: `optional` returns an empty `leftover` (MQTT then sees
//!   the close it would have seen anyway); `required` returns `Missing`, which is also what an
//!   NLB's plain TCP health check produces, so log it quietly. Inside a header: `Malformed`.
//! - **Time.** One timeout bounds the whole read ([`ProxyError::Timeout`]), so a peer cannot
//!   hold a connection open by trickling bytes.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The longest v1 line the spec allows, CRLF included (`PROXY UNKNOWN` with two full IPv6
/// addresses and two 5-digit ports).
pub const V1_MAX_LEN: usize = 107;
/// Largest v2 address-and-TLV block we accept. Real balancers send a few hundred bytes at most
/// (AWS adds a VPC endpoint TLV, HAProxy optional SSL TLVs); the spec's 64 KiB would let any
/// peer pin that much memory before saying anything.
pub const V2_MAX_PAYLOAD: usize = 2048;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// Signature, version/command, family/protocol, 2-byte length.
const V2_FIXED_LEN: usize = 16;
/// Room reserved before each read: a v1 line or a typical v2 header fits in one.
const READ_CHUNK: usize = 256;

/// Whether a listener expects a PROXY header in front of MQTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyMode {
    #[default]
    Off,
    Optional,
    Required,
}

/// A configuration value that is not a [`ProxyMode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown PROXY protocol mode {given:?}: expected \"off\", \"optional\" or \"required\"")]
pub struct UnknownProxyMode {
    pub given: String,
}

impl ProxyMode {
    /// The configuration spelling, as [`FromStr`] reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyMode::Off => "off",
            ProxyMode::Optional => "optional",
            ProxyMode::Required => "required",
        }
    }
}

impl FromStr for ProxyMode {
    type Err = UnknownProxyMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(ProxyMode::Off),
            "optional" => Ok(ProxyMode::Optional),
            "required" => Ok(ProxyMode::Required),
            other => Err(UnknownProxyMode {
                given: other.to_owned(),
            }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A header that breaks the spec; the reason names the field.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    /// Required, but the connection started with something else (or closed at once).
    #[error("a PROXY protocol header is required but the connection started without one")]
    Missing,
    #[error("timed out waiting for the PROXY protocol header")]
    Timeout,
    #[error("I/O error while reading the PROXY protocol header: {0}")]
    Io(#[from] io::Error),
    /// Over [`V1_MAX_LEN`] or [`V2_MAX_PAYLOAD`].
    #[error(
        "PROXY protocol header too long (limits: v1 {V1_MAX_LEN}, v2 16 + {V2_MAX_PAYLOAD} bytes)"
    )]
    TooLong,
}

impl ProxyError {
    /// Every [`ProxyError::reason`], for metrics exported from the start.
    pub const REASONS: [&'static str; 5] = ["malformed", "missing", "timeout", "io", "too_long"];

    /// The metric label (`berth_proxy_headers_refused_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::Malformed(_) => "malformed",
            ProxyError::Missing => "missing",
            ProxyError::Timeout => "timeout",
            ProxyError::Io(_) => "io",
            ProxyError::TooLong => "too_long",
        }
    }
}

fn malformed(reason: impl Into<String>) -> ProxyError {
    ProxyError::Malformed(reason.into())
}

/// What the bytes received so far are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A prefix of a header: read more.
    Incomplete,
    /// These bytes cannot start a PROXY header.
    NotProxy,
    /// A complete header of `len` bytes; the stream's own bytes start at `buf[len]`.
    Header {
        source: Option<SocketAddr>,
        len: usize,
    },
}

/// Classifies the start of a connection. Never looks past the header, so any bytes after it
/// are irrelevant to the answer.
pub fn parse(buf: &[u8]) -> Result<Parse, ProxyError> {
    match buf.first() {
        None => Ok(Parse::Incomplete),
        Some(&b'P') => parse_v1(buf),
        Some(&0x0D) => parse_v2(buf),
        Some(_) => Ok(Parse::NotProxy),
    }
}

/// Whether `buf` and `expected` agree on the bytes both have.
fn agrees_with(buf: &[u8], expected: &[u8]) -> bool {
    let n = buf.len().min(expected.len());
    buf[..n] == expected[..n]
}

fn parse_v1(buf: &[u8]) -> Result<Parse, ProxyError> {
    if !agrees_with(buf, V1_PREFIX) {
        return Ok(Parse::NotProxy);
    }
    // The prefix has no CR, LF or control byte, so scanning from 0 is the same as scanning the
    // part after it.
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    for (i, &byte) in window.iter().enumerate() {
        match byte {
            b'\r' => return finish_v1(buf, i),
            b'\n' => return Err(malformed("v1 line ends in LF without CR")),
            0x20..=0x7E => {}
            other => {
                return Err(malformed(format!(
                    "v1 line contains byte 0x{other:02x}, which is not printable ASCII"
                )));
            }
        }
    }
    if buf.len() >= V1_MAX_LEN {
        Err(ProxyError::TooLong)
    } else {
        Ok(Parse::Incomplete)
    }
}

/// `cr` is the index of the first CR in a line that is printable ASCII up to it.
fn finish_v1(buf: &[u8], cr: usize) -> Result<Parse, ProxyError> {
    let len = cr + 2;
    if len > V1_MAX_LEN {
        return Err(ProxyError::TooLong);
    }
    match buf.get(cr + 1) {
        None => return Ok(Parse::Incomplete),
        Some(&b'\n') => {}
        Some(_) => return Err(malformed("v1 line has a CR not followed by LF")),
    }
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..cr])
        .map_err(|_| malformed("v1 line is not ASCII"))?;
    let source = parse_v1_fields(line)?;
    Ok(Parse::Header { source, len })
}

#[derive(Clone, Copy)]
enum V1Family {
    Tcp4,
    Tcp6,
}

/// `line` is what follows `"PROXY "`, without the CRLF.
fn parse_v1_fields(line: &str) -> Result<Option<SocketAddr>, ProxyError> {
    let (protocol, rest) = line.split_once(' ').unwrap_or((line, ""));
    let family = match protocol {
        "UNKNOWN" => return Ok(None),
        "TCP4" => V1Family::Tcp4,
        "TCP6" => V1Family::Tcp6,
        other => {
            return Err(malformed(format!(
                "v1 protocol {other:?} is not TCP4, TCP6 or UNKNOWN"
            )));
        }
    };
    // `split(' ')` keeps empty fields, so a doubled space shows up as a wrong count.
    let fields: Vec<&str> = rest.split(' ').collect();
    let &[src, dst, sport, dport] = fields.as_slice() else {
        return Err(malformed(format!(
            "v1 {protocol} line needs exactly: source address, destination address, \
             source port, destination port, separated by single spaces; got {rest:?}"
        )));
    };
    let src_ip = parse_v1_ip(family, src, "source")?;
    parse_v1_ip(family, dst, "destination")?;
    let src_port = parse_v1_port(sport, "source")?;
    parse_v1_port(dport, "destination")?;
    Ok(Some(SocketAddr::new(src_ip, src_port)))
}

fn parse_v1_ip(family: V1Family, text: &str, role: &str) -> Result<IpAddr, ProxyError> {
    let (parsed, expected) = match family {
        V1Family::Tcp4 => (text.parse::<Ipv4Addr>().map(IpAddr::V4), "IPv4"),
        V1Family::Tcp6 => (text.parse::<Ipv6Addr>().map(IpAddr::V6), "IPv6"),
    };
    parsed.map_err(|_| {
        malformed(format!(
            "v1 {role} address {text:?} is not an {expected} address"
        ))
    })
}

/// The spec forbids leading zeros (octal confusion) and `u16::from_str` would accept `+80`.
fn parse_v1_port(text: &str, role: &str) -> Result<u16, ProxyError> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    match text.parse::<u16>() {
        Ok(port) if canonical => Ok(port),
        _ => Err(malformed(format!(
            "v1 {role} port {text:?} is not a decimal in 0..=65535 without leading zeros"
        ))),
    }
}

fn parse_v2(buf: &[u8]) -> Result<Parse, ProxyError> {
    if !agrees_with(buf, &V2_SIGNATURE) {
        return Ok(Parse::NotProxy);
    }
    let Some(&version_command) = buf.get(12) else {
        return Ok(Parse::Incomplete);
    };
    let version = version_command >> 4;
    if version != 2 {
        return Err(malformed(format!(
            "v2 version {version} (byte 0x{version_command:02x}); only version 2 exists"
        )));
    }
    let local = match version_command & 0x0F {
        0x0 => true,
        0x1 => false,
        command => {
            return Err(malformed(format!(
                "v2 command {command} is neither LOCAL (0) nor PROXY (1)"
            )));
        }
    };
    let Some(&family_protocol) = buf.get(13) else {
        return Ok(Parse::Incomplete);
    };
    // LOCAL's family is ignored by the spec; checking it would fail valid health checks.
    let address_len = if local {
        0
    } else {
        v2_address_len(family_protocol)?
    };
    let (Some(&hi), Some(&lo)) = (buf.get(14), buf.get(15)) else {
        return Ok(Parse::Incomplete);
    };
    let payload_len = usize::from(u16::from_be_bytes([hi, lo]));
    if payload_len > V2_MAX_PAYLOAD {
        return Err(ProxyError::TooLong);
    }
    if payload_len < address_len {
        return Err(malformed(format!(
            "v2 length {payload_len} is shorter than the {address_len}-byte address block \
             of family/protocol 0x{family_protocol:02x}"
        )));
    }
    let len = V2_FIXED_LEN + payload_len;
    if buf.len() < len {
        return Ok(Parse::Incomplete);
    }
    let block = &buf[V2_FIXED_LEN..len];
    let source = if local {
        None
    } else {
        v2_tcp_source(family_protocol, block)
    };
    Ok(Parse::Header { source, len })
}

/// Size of the address block the family/protocol byte announces. Only the spec's seven
/// combinations are defined, and it tells receivers to drop anything else.
fn v2_address_len(family_protocol: u8) -> Result<usize, ProxyError> {
    match family_protocol {
        0x00 => Ok(0),
        0x11 | 0x12 => Ok(12),
        0x21 | 0x22 => Ok(36),
        0x31 | 0x32 => Ok(216),
        other => Err(malformed(format!(
            "v2 family/protocol byte 0x{other:02x} is not one the spec defines"
        ))),
    }
}

/// `block` has been checked to hold the family's whole address block. Only TCP sources are
/// reported: an MQTT connection relayed from UDP or a UNIX socket has no client IP to use.
fn v2_tcp_source(family_protocol: u8, block: &[u8]) -> Option<SocketAddr> {
    match family_protocol {
        // src 4, dst 4, src port 2, dst port 2
        0x11 => {
            let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
            let port = u16::from_be_bytes([block[8], block[9]]);
            Some(SocketAddr::new(IpAddr::V4(ip), port))
        }
        // src 16, dst 16, src port 2, dst port 2
        0x21 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&block[..16]);
            let port = u16::from_be_bytes([block[32], block[33]]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        _ => None,
    }
}

/// The outcome of reading the start of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The client as the balancer saw it; `None` means use the socket's peer address.
    pub source: Option<SocketAddr>,
    /// Bytes read past the header (or all bytes read, when there was no header): the first
    /// bytes of the MQTT stream. Replay them with [`Prefixed`].
    pub leftover: Bytes,
}

/// Reads the PROXY header `mode` calls for, bounded by `timeout` as a whole.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    mode: ProxyMode,
    timeout: Duration,
) -> Result<Accepted, ProxyError> {
    if mode == ProxyMode::Off {
        return Ok(Accepted {
            source: None,
            leftover: Bytes::new(),
        });
    }
    match tokio::time::timeout(timeout, read_until_decided(stream, mode)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(ProxyError::Timeout),
    }
}

async fn read_until_decided<S: AsyncRead + Unpin>(
    stream: &mut S,
    mode: ProxyMode,
) -> Result<Accepted, ProxyError> {
    let mut buf = BytesMut::new();
    loop {
        match parse(&buf)? {
            Parse::Header { source, len } => {
                tracing::trace!(?source, header_len = len, "PROXY protocol header read");
                let leftover = buf.split_off(len).freeze();
                return Ok(Accepted { source, leftover });
            }
            Parse::NotProxy => {
                return match mode {
                    ProxyMode::Required => Err(ProxyError::Missing),
                    ProxyMode::Optional | ProxyMode::Off => Ok(Accepted {
                        source: None,
                        leftover: buf.freeze(),
                    }),
                };
            }
            Parse::Incomplete => {}
        }
        // `parse` fails once a header outgrows its bound, so the buffer stays under
        // that bound plus one chunk.
        buf.reserve(READ_CHUNK);
        if stream.read_buf(&mut buf).await? == 0 {
            return match (buf.is_empty(), mode) {
                (true, ProxyMode::Required) => Err(ProxyError::Missing),
                (true, ProxyMode::Optional | ProxyMode::Off) => Ok(Accepted {
                    source: None,
                    leftover: Bytes::new(),
                }),
                (false, _) => Err(malformed("connection closed inside the header")),
            };
        }
    }
}

/// A stream whose first bytes are `leftover`, then `inner`'s: what the MQTT side reads after
/// [`read_header`]. Writes go straight to `inner`.
#[derive(Debug)]
pub struct Prefixed<S> {
    leftover: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(leftover: Bytes, inner: S) -> Self {
        Prefixed { leftover, inner }
    }

    /// The underlying stream, e.g. for its peer address.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

// `S: Unpin` makes `Prefixed<S>` Unpin (`Bytes` is), so plain `get_mut` is the projection.
impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.leftover.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = this.leftover.len().min(buf.remaining());
        buf.put_slice(&this.leftover[..n]);
        this.leftover.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;

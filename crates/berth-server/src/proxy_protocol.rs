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
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// MQTT 3.1.1 CONNECT, client id "b", keep alive 60 s.
    const CONNECT: &[u8] = &[
        0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x01, b'b',
    ];
    const V1_TCP4: &[u8] = b"PROXY TCP4 192.0.2.1 198.51.100.2 51000 1883\r\n";
    const V1_TCP6: &[u8] = b"PROXY TCP6 2001:db8::1 2001:db8::2 51000 1883\r\n";
    const SRC4: &str = "192.0.2.1:51000";
    const SRC6: &str = "[2001:db8::1]:51000";
    const SECOND: Duration = Duration::from_secs(1);
    const SHORT: Duration = Duration::from_millis(50);

    fn v2(version_command: u8, family_protocol: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.extend_from_slice(&[version_command, family_protocol]);
        out.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Source and destination addresses, then ports 51000 and 1883.
    fn block(src: &str, dst: &str) -> Vec<u8> {
        let octets = |ip: &str| match ip.parse::<IpAddr>().unwrap() {
            IpAddr::V4(ip) => ip.octets().to_vec(),
            IpAddr::V6(ip) => ip.octets().to_vec(),
        };
        [octets(src), octets(dst), vec![0xC7, 0x38, 0x07, 0x5B]].concat()
    }

    fn tcp4() -> Vec<u8> {
        block("192.0.2.1", "198.51.100.2")
    }

    fn with_connect(head: &[u8]) -> Vec<u8> {
        [head, CONNECT].concat()
    }

    /// `head` followed by MQTT bytes parses as a header of `len` bytes.
    fn check(head: &[u8], source: Option<&str>, len: usize) {
        let source = source.map(|s| s.parse().unwrap());
        let parsed = parse(&with_connect(head)).unwrap();
        assert_eq!(parsed, Parse::Header { source, len });
    }

    fn check_malformed(buf: &[u8], needle: &str) {
        match parse(buf) {
            Err(ProxyError::Malformed(reason)) => assert!(reason.contains(needle), "{reason}"),
            other => panic!("{needle}: expected Malformed, got {other:?}"),
        }
    }

    async fn read<S: AsyncRead + Unpin>(stream: &mut S, mode: ProxyMode) -> Accepted {
        read_header(stream, mode, SECOND).await.unwrap()
    }

    /// Everything the MQTT side would read after the header.
    async fn mqtt_bytes<S: AsyncRead + Unpin>(leftover: Bytes, inner: S) -> Vec<u8> {
        let mut out = Vec::new();
        let mut stream = Prefixed::new(leftover, inner);
        stream.read_to_end(&mut out).await.unwrap();
        out
    }

    /// Yields one byte per read, and counts reads.
    #[derive(Default)]
    struct OneByteAtATime {
        data: Vec<u8>,
        pos: usize,
        reads: usize,
    }

    impl AsyncRead for OneByteAtATime {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.reads += 1;
            if buf.remaining() > 0 && this.pos < this.data.len() {
                buf.put_slice(&this.data[this.pos..=this.pos]);
                this.pos += 1;
            }
            Poll::Ready(Ok(()))
        }
    }

    fn trickle(data: Vec<u8>) -> OneByteAtATime {
        OneByteAtATime {
            data,
            ..Default::default()
        }
    }

    #[test]
    fn v1_tcp4_and_tcp6_give_the_source_and_where_mqtt_starts() {
        check(V1_TCP4, Some(SRC4), V1_TCP4.len());
        check(V1_TCP6, Some(SRC6), V1_TCP6.len());
    }

    #[test]
    fn v1_unknown_has_no_source_and_ignores_the_rest_of_its_line() {
        check(b"PROXY UNKNOWN\r\n", None, 15);
        check(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", None, 35);
    }

    #[test]
    fn v1_is_at_most_107_bytes_with_its_crlf() {
        let line = |pad: usize| {
            let mut line = b"PROXY UNKNOWN ".to_vec();
            line.resize(line.len() + pad, b'f');
            line.extend_from_slice(b"\r\n");
            line
        };
        check(&line(91), None, 107);
        assert!(matches!(parse(&line(92)), Err(ProxyError::TooLong)));
        let mut unterminated = b"PROXY TCP4 ".to_vec();
        unterminated.resize(131, b'1');
        assert_eq!(parse(&unterminated[..106]).unwrap(), Parse::Incomplete);
        assert!(matches!(parse(&unterminated), Err(ProxyError::TooLong)));
    }

    #[test]
    fn v1_malformed_lines_are_rejected_with_a_reason() {
        for (rest, needle) in [
            ("TCP4 10.0.0.1 10.0.0.2 65536 1\r\n", "source port"),
            ("TCP4 10.0.0.1 10.0.0.2 1 01\r\n", "destination port"),
            ("TCP4 10.0.0.1 10.0.0.2 +1 1\r\n", "source port"),
            ("TCP4 10.0.0.1 10.0.0.2 1 1\n", "LF without CR"),
            ("TCP4 10.0.0.1 10.0.0.2 1 1\rX", "CR not followed"),
            ("TCP4 10.0.0.256 10.0.0.2 1 1\r\n", "source address"),
            ("TCP4 ::1 10.0.0.2 1 1\r\n", "IPv4"),
            ("TCP6 ::1 10.0.0.2 1 1\r\n", "destination address"),
            ("TCP4 10.0.0.1  10.0.0.2 1 1\r\n", "single spaces"),
            ("TCP4 10.0.0.1 10.0.0.2 1\r\n", "single spaces"),
            ("TCP5 10.0.0.1 10.0.0.2 1 1\r\n", "TCP5"),
            ("TCP4 10.0.0.1\0", "0x00"),
        ] {
            check_malformed(format!("PROXY {rest}").as_bytes(), needle);
        }
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete() {
        let v2_tcp4 = v2(0x21, 0x11, &tcp4());
        for full in [V1_TCP4, V1_TCP6, &v2_tcp4[..]] {
            for end in 0..full.len() {
                assert_eq!(parse(&full[..end]).unwrap(), Parse::Incomplete, "{end}");
            }
        }
    }

    #[test]
    fn anything_else_is_not_proxy_from_the_first_differing_byte() {
        let starts: [&[u8]; 5] = [&CONNECT[..1], &[0x16], b"PRX", b"PROXY\t", b"\r\n\r\nX"];
        for start in starts {
            assert_eq!(parse(start).unwrap(), Parse::NotProxy, "{start:?}");
        }
    }

    #[test]
    fn v2_proxy_over_tcp_gives_the_source_with_or_without_tlvs() {
        check(&v2(0x21, 0x11, &tcp4()), Some(SRC4), 28);
        let tcp6 = block("2001:db8::1", "2001:db8::2");
        check(&v2(0x21, 0x21, &tcp6), Some(SRC6), 52);
        // An AWS VPC endpoint TLV (type 0xEA, 23 bytes) and a NOOP TLV (type 0x04, 3 bytes).
        let tlvs: [&[u8]; 4] = [
            &tcp4(),
            &[0xEA, 0, 23, 0x01],
            b"vpce-0123456789abcdef0",
            &[4, 0, 3, 0, 0, 0],
        ];
        check(&v2(0x21, 0x11, &tlvs.concat()), Some(SRC4), 28 + 32);
    }

    #[test]
    fn v2_local_and_addressless_families_have_no_source_but_are_skipped_whole() {
        check(&v2(0x20, 0x00, &[]), None, 16);
        // LOCAL ignores the family, even an undefined one, but still skips the length.
        check(&v2(0x20, 0xFF, &tcp4()), None, 28);
        check(&v2(0x21, 0x00, &[1, 2, 3]), None, 19);
        check(&v2(0x21, 0x12, &tcp4()), None, 28);
        check(&v2(0x21, 0x31, &[0; 216]), None, 232);
    }

    #[test]
    fn v2_bad_headers_are_rejected_as_early_as_possible() {
        check_malformed(&v2(0x11, 0x11, &tcp4())[..13], "version 1");
        check_malformed(&v2(0x22, 0x11, &tcp4())[..13], "command 2");
        check_malformed(&v2(0x21, 0x41, &tcp4())[..14], "0x41");
        check_malformed(&v2(0x21, 0x13, &tcp4())[..14], "0x13");
        check_malformed(&v2(0x21, 0x11, &[0; 4])[..16], "shorter than the 12-byte");
        check_malformed(&v2(0x21, 0x21, &tcp4())[..16], "shorter than the 36-byte");
        let mut huge = v2(0x21, 0x11, &[]);
        huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(matches!(parse(&huge), Err(ProxyError::TooLong)));
        let at_bound = v2(0x21, 0x11, &vec![0; V2_MAX_PAYLOAD]);
        assert!(matches!(parse(&at_bound), Ok(Parse::Header { .. })));
    }

    #[tokio::test]
    async fn read_header_returns_the_bytes_after_the_header() {
        let bytes = with_connect(V1_TCP4);
        let mut stream = &bytes[..];
        let accepted = read(&mut stream, ProxyMode::Required).await;
        assert_eq!(accepted.source, Some(SRC4.parse().unwrap()));
        assert_eq!(mqtt_bytes(accepted.leftover, stream).await, CONNECT);
    }

    #[tokio::test]
    async fn a_header_split_into_one_byte_reads_is_reassembled() {
        for head in [V1_TCP6.to_vec(), v2(0x21, 0x11, &tcp4())] {
            let mut reader = trickle(with_connect(&head));
            let accepted = read(&mut reader, ProxyMode::Optional).await;
            assert!(accepted.source.is_some());
            assert_eq!(reader.pos, head.len(), "stops once the header is decided");
            assert_eq!(mqtt_bytes(accepted.leftover, reader).await, CONNECT);
        }
    }

    #[tokio::test]
    async fn optional_mode_hands_plain_mqtt_back_untouched() {
        let mut stream = CONNECT;
        let accepted = read(&mut stream, ProxyMode::Optional).await;
        assert_eq!(accepted.source, None);
        assert_eq!(accepted.leftover, CONNECT, "all of it came in one read");
        assert_eq!(mqtt_bytes(accepted.leftover, stream).await, CONNECT);

        let mut reader = trickle(CONNECT.to_vec());
        let accepted = read(&mut reader, ProxyMode::Optional).await;
        assert_eq!(
            accepted.leftover,
            &CONNECT[..1],
            "decided on the first byte"
        );
        assert_eq!(mqtt_bytes(accepted.leftover, reader).await, CONNECT);
    }

    #[tokio::test]
    async fn required_mode_refuses_plain_mqtt() {
        let mut stream = CONNECT;
        let result = read_header(&mut stream, ProxyMode::Required, SECOND).await;
        assert!(matches!(result, Err(ProxyError::Missing)), "{result:?}");
    }

    #[tokio::test]
    async fn off_mode_reads_nothing() {
        let mut reader = trickle(with_connect(V1_TCP4));
        let accepted = read(&mut reader, ProxyMode::Off).await;
        assert_eq!((accepted.source, accepted.leftover.len()), (None, 0));
        assert_eq!(reader.reads, 0);
    }

    #[tokio::test]
    async fn end_of_stream_before_a_decision() {
        let mut empty: &[u8] = &[];
        let optional = read(&mut empty, ProxyMode::Optional).await;
        assert!(optional.leftover.is_empty());
        let required = read_header(&mut empty, ProxyMode::Required, SECOND).await;
        assert!(matches!(required, Err(ProxyError::Missing)), "{required:?}");
        let mut cut = &V1_TCP4[..20];
        match read_header(&mut cut, ProxyMode::Optional, SECOND).await {
            Err(ProxyError::Malformed(reason)) => assert!(reason.contains("closed"), "{reason}"),
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_silent_or_stalled_peer_times_out() {
        let (mut server, mut client) = tokio::io::duplex(64);
        let silent = read_header(&mut server, ProxyMode::Required, SHORT);
        let result = tokio::time::timeout(SECOND * 5, silent).await.unwrap();
        assert!(matches!(result, Err(ProxyError::Timeout)), "{result:?}");

        client.write_all(&V1_TCP4[..10]).await.unwrap();
        let stalled = read_header(&mut server, ProxyMode::Optional, SHORT);
        let result = tokio::time::timeout(SECOND * 5, stalled).await.unwrap();
        assert!(matches!(result, Err(ProxyError::Timeout)), "{result:?}");
    }

    #[tokio::test]
    async fn prefixed_reads_leftover_then_inner_and_writes_to_inner() {
        let (server, mut client) = tokio::io::duplex(64);
        let mut prefixed = Prefixed::new(Bytes::from_static(b"abc"), server);
        client.write_all(b"def").await.unwrap();
        let mut small = [0u8; 2];
        prefixed.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"ab", "a short buffer takes part of the leftover");
        let mut rest = [0u8; 4];
        prefixed.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"cdef");

        prefixed.write_all(b"ack").await.unwrap();
        prefixed.flush().await.unwrap();
        let mut written = [0u8; 3];
        client.read_exact(&mut written).await.unwrap();
        assert_eq!(&written, b"ack");
    }

    #[test]
    fn modes_parse_from_configuration_words() {
        let modes = ["off", "optional", "required"].map(|s| s.parse::<ProxyMode>().unwrap());
        assert_eq!(
            modes,
            [ProxyMode::Off, ProxyMode::Optional, ProxyMode::Required]
        );
        let message = "Required".parse::<ProxyMode>().unwrap_err().to_string();
        assert!(
            message.contains(r#""off", "optional" or "required""#),
            "{message}"
        );
    }
}

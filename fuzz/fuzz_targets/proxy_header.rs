//! Feeds arbitrary bytes to the PROXY protocol parser (`berth_server::proxy_protocol`) as the
//! start of a connection and checks what its documentation promises: `parse` never panics, a
//! header never claims more bytes than it was given nor more than the spec's bounds, the answer
//! for a prefix never contradicts the answer for the whole (what `read_header` relies on when it
//! stops at the first decision), and bytes after a header do not change it. Then `read_header`
//! reads the same bytes from memory, in one piece and one byte at a time, in each mode, and must
//! agree with `parse`: the header's length plus the leftover is what it consumed.
#![no_main]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use berth_server::proxy_protocol::{
    Accepted, Parse, ProxyError, ProxyMode, V1_MAX_LEN, V2_MAX_PAYLOAD, parse, read_header,
};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::runtime::Runtime;

/// From the spec (`proxy-protocol.txt`), not from the parser.
const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
const V2_FIXED_LEN: usize = 16;
/// Never reached: the readers below are always ready, so the timer never fires.
const TIMEOUT: Duration = Duration::from_secs(3600);

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        // `read_header` bounds itself with `tokio::time::timeout`, which needs the time driver.
        match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => panic!("cannot build the fuzz target's runtime: {error}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    check_whole(data, &whole);
    check_prefixes(data, &whole);
    for mode in [ProxyMode::Off, ProxyMode::Optional, ProxyMode::Required] {
        check_read_header(data, &whole, mode, Reader::Whole);
        check_read_header(data, &whole, mode, Reader::OneByte);
    }
});

/// Whether `buf` and `expected` agree on the bytes both have.
fn agrees_with(buf: &[u8], expected: &[u8]) -> bool {
    let n = buf.len().min(expected.len());
    buf[..n] == expected[..n]
}

fn v2_declared_len(data: &[u8]) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes([
        *data.get(14)?,
        *data.get(15)?,
    ])))
}

/// What the answer for all of `data` says about `data`.
fn check_whole(data: &[u8], whole: &Result<Parse, ProxyError>) {
    match whole {
        Ok(Parse::Header { source, len }) => {
            let len = *len;
            assert!(
                len <= data.len(),
                "a {len}-byte header in {} bytes",
                data.len()
            );
            assert_eq!(
                parse(&data[..len]).ok(),
                Some(Parse::Header {
                    source: *source,
                    len
                }),
                "the header alone parses differently"
            );
            if data[0] == b'P' {
                check_v1_header(&data[..len], *source);
            } else {
                check_v2_header(&data[..len], *source);
            }
        }
        Ok(Parse::Incomplete) => {
            assert!(
                agrees_with(data, V1_PREFIX) || agrees_with(data, &V2_SIGNATURE),
                "Incomplete for bytes that cannot start a header"
            );
            let bound = if data.first() == Some(&b'P') {
                V1_MAX_LEN
            } else {
                V2_FIXED_LEN + V2_MAX_PAYLOAD
            };
            // What keeps `read_header`'s buffer bounded.
            assert!(data.len() < bound, "Incomplete after {} bytes", data.len());
        }
        Ok(Parse::NotProxy) => {
            assert!(!data.is_empty(), "no bytes cannot be NotProxy");
            assert!(
                !agrees_with(data, V1_PREFIX) && !agrees_with(data, &V2_SIGNATURE),
                "NotProxy for bytes that agree with a signature"
            );
        }
        Err(ProxyError::TooLong) => {
            if data[0] == b'P' {
                assert!(
                    data.len() >= V1_MAX_LEN,
                    "v1 TooLong in {} bytes",
                    data.len()
                );
            } else {
                let declared = v2_declared_len(data);
                assert!(
                    declared.is_some_and(|n| n > V2_MAX_PAYLOAD),
                    "v2 TooLong with a declared length of {declared:?}"
                );
            }
        }
        Err(ProxyError::Malformed(_)) => {
            assert!(
                agrees_with(data, V1_PREFIX) || agrees_with(data, &V2_SIGNATURE),
                "Malformed for bytes that cannot start a header"
            );
        }
        Err(other) => panic!("parse cannot fail with {other:?}: it does no IO"),
    }
}

fn check_v1_header(header: &[u8], source: Option<SocketAddr>) {
    assert!(header.starts_with(V1_PREFIX));
    assert!(header.ends_with(b"\r\n"), "a v1 header without its CRLF");
    assert!(
        header.len() <= V1_MAX_LEN,
        "a {}-byte v1 header",
        header.len()
    );
    match source {
        Some(SocketAddr::V4(_)) => assert!(header.starts_with(b"PROXY TCP4 ")),
        Some(SocketAddr::V6(_)) => assert!(header.starts_with(b"PROXY TCP6 ")),
        None => assert!(header.starts_with(b"PROXY UNKNOWN")),
    }
}

fn check_v2_header(header: &[u8], source: Option<SocketAddr>) {
    assert!(header.starts_with(&V2_SIGNATURE));
    assert!(
        header.len() >= V2_FIXED_LEN,
        "a {}-byte v2 header",
        header.len()
    );
    assert_eq!(
        v2_declared_len(header).map(|n| V2_FIXED_LEN + n),
        Some(header.len()),
        "a v2 header's length is 16 plus its length field"
    );
    assert!(header.len() <= V2_FIXED_LEN + V2_MAX_PAYLOAD);
    // A source only for PROXY over TCP: LOCAL, UNSPEC, UDP and UNIX have none.
    match source {
        Some(SocketAddr::V4(_)) => assert_eq!((header[12], header[13]), (0x21, 0x11)),
        Some(SocketAddr::V6(_)) => assert_eq!((header[12], header[13]), (0x21, 0x21)),
        None => assert!(header[12] == 0x20 || !matches!(header[13], 0x11 | 0x21)),
    }
}

/// Every decision made on a prefix is the decision for the whole.
fn check_prefixes(data: &[u8], whole: &Result<Parse, ProxyError>) {
    for cut in 0..data.len() {
        let part = parse(&data[..cut]);
        match (&part, whole) {
            (Ok(Parse::Incomplete), _) => continue,
            (Ok(Parse::NotProxy), Ok(Parse::NotProxy)) | (Err(_), Err(_)) => {}
            (Ok(Parse::Header { .. }), Ok(Parse::Header { .. })) => {
                assert_eq!(part.as_ref().ok(), whole.as_ref().ok(), "after {cut} bytes");
            }
            _ => panic!(
                "{part:?} after {cut} bytes, but {whole:?} for all {}",
                data.len()
            ),
        }
        return;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// A slice: a read takes as much as the buffer has room for.
    Whole,
    /// One byte per read.
    OneByte,
}

/// Hands out `data` one byte per read; always ready.
struct OneByte<'a> {
    data: &'a [u8],
}

impl AsyncRead for OneByte<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() > 0 {
            if let Some((&first, rest)) = this.data.split_first() {
                buf.put_slice(&[first]);
                this.data = rest;
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Runs `read_header` over `data`; returns its result and how many bytes it consumed.
fn read_from_memory(
    data: &[u8],
    mode: ProxyMode,
    reader: Reader,
) -> (Result<Accepted, ProxyError>, usize) {
    runtime().block_on(async {
        match reader {
            Reader::Whole => {
                let mut stream = data;
                let result = read_header(&mut stream, mode, TIMEOUT).await;
                (result, data.len() - stream.len())
            }
            Reader::OneByte => {
                let mut stream = OneByte { data };
                let result = read_header(&mut stream, mode, TIMEOUT).await;
                (result, data.len() - stream.data.len())
            }
        }
    })
}

/// `read_header` agrees with `parse`: it returns the header `parse` finds with every byte it
/// read past it, or without a header every byte it read.
fn check_read_header(
    data: &[u8],
    whole: &Result<Parse, ProxyError>,
    mode: ProxyMode,
    reader: Reader,
) {
    let (result, consumed) = read_from_memory(data, mode, reader);
    // Formatted only when an assertion fails.
    let context = || format!("{mode:?}, {reader:?}: {result:?} after {consumed} bytes");
    if mode == ProxyMode::Off {
        assert_eq!(consumed, 0, "{}", context());
        assert!(
            matches!(&result, Ok(accepted) if accepted.source.is_none() && accepted.leftover.is_empty()),
            "{}",
            context()
        );
        return;
    }
    match (whole, &result) {
        (Ok(Parse::Header { source, len }), Ok(accepted)) => {
            assert_eq!(accepted.source, *source, "{}", context());
            assert!(consumed >= *len, "{}: read less than the header", context());
            assert_eq!(
                *len + accepted.leftover.len(),
                consumed,
                "{}: header + leftover is not what was read",
                context()
            );
            assert_eq!(accepted.leftover[..], data[*len..consumed], "{}", context());
            if reader == Reader::OneByte {
                assert!(
                    accepted.leftover.is_empty(),
                    "{}: read past the decision",
                    context()
                );
            }
        }
        (Ok(Parse::NotProxy), Ok(accepted)) => {
            assert_eq!(mode, ProxyMode::Optional, "{}", context());
            assert_eq!(accepted.source, None, "{}", context());
            assert_eq!(accepted.leftover[..], data[..consumed], "{}", context());
        }
        (Ok(Parse::NotProxy), Err(ProxyError::Missing)) => {
            assert_eq!(mode, ProxyMode::Required, "{}", context());
        }
        (Ok(Parse::Incomplete), Ok(accepted)) if data.is_empty() => {
            assert_eq!(mode, ProxyMode::Optional, "{}", context());
            assert!(
                accepted.source.is_none() && accepted.leftover.is_empty(),
                "{}",
                context()
            );
        }
        (Ok(Parse::Incomplete), Err(ProxyError::Missing)) if data.is_empty() => {
            assert_eq!(mode, ProxyMode::Required, "{}", context());
        }
        // The stream ended inside a header.
        (Ok(Parse::Incomplete), Err(ProxyError::Malformed(_))) if !data.is_empty() => {
            assert_eq!(consumed, data.len(), "{}", context());
        }
        (Err(_), Err(ProxyError::Malformed(_) | ProxyError::TooLong)) => {}
        _ => panic!("{}, but parse says {whole:?}", context()),
    }
}

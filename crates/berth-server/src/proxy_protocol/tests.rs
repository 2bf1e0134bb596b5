//! The PROXY protocol reader against every header form, split reads, timeouts and modes.

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

/// A seeded stand-in for a fuzz target, run in every test run: random and mutated headers
/// never panic the parser, and its answer for a prefix never contradicts its answer once more
/// bytes arrive — what `read_header` relies on when it stops reading at the first decision.
#[test]
fn random_and_mutated_headers_never_panic_and_decisions_hold_as_bytes_arrive() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let seeds: Vec<Vec<u8>> = vec![
        V1_TCP4.to_vec(),
        V1_TCP6.to_vec(),
        b"PROXY UNKNOWN\r\n".to_vec(),
        tcp4(),
        v2(0x20, 0x00, &[]),
        v2(0x21, 0x21, &block("2001:db8::1", "2001:db8::2")),
        CONNECT.to_vec(),
    ];
    for round in 0..20_000u64 {
        let mut buf = if round % 4 == 0 {
            // Pure noise.
            let len = (next() % 64) as usize;
            (0..len).map(|_| next() as u8).collect()
        } else {
            // A valid header with a few bytes changed, cut or extended.
            let mut buf = seeds[(next() % seeds.len() as u64) as usize].clone();
            for _ in 0..(next() % 4) {
                if !buf.is_empty() {
                    let at = (next() % buf.len() as u64) as usize;
                    buf[at] = next() as u8;
                }
            }
            buf.truncate((next() % (buf.len() as u64 + 1)) as usize + buf.len() / 2);
            buf.extend((0..next() % 8).map(|_| next() as u8));
            buf
        };
        buf.truncate(2_200);
        let whole = parse(&buf);
        for cut in 0..=buf.len() {
            match parse(&buf[..cut]) {
                Ok(Parse::Incomplete) => {}
                Ok(Parse::NotProxy) => {
                    assert!(
                        matches!(whole, Ok(Parse::NotProxy)),
                        "{buf:?}: NotProxy after {cut} bytes, {whole:?} for all"
                    );
                    break;
                }
                Ok(Parse::Header { source, len }) => {
                    assert!(len <= cut, "{buf:?}: a header longer than its input");
                    assert!(
                        matches!(&whole, Ok(Parse::Header { source: s, len: l }) if *s == source && *l == len),
                        "{buf:?}: a header after {cut} bytes, {whole:?} for all"
                    );
                    break;
                }
                Err(_) => {
                    assert!(
                        whole.is_err(),
                        "{buf:?}: an error after {cut} bytes, {whole:?} for all"
                    );
                    break;
                }
            }
        }
    }
}

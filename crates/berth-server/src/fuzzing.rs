//! Entry points for the fuzz targets in `fuzz/`: private transport code run over in-memory
//! streams, so a target can reach it without a socket. Not an API (hidden from the docs); it
//! changes with the targets.
//!
//! ```text
//!  client bytes ─▶ duplex ─▶ ws::accept (upgrade) ─▶ WsIo ─▶ berth-codec decode ─▶ packets
//!  client sink  ◀─ duplex ◀─ HTTP answer, pongs, close, CONNACK / PINGRESP ◀─┘
//! ```
//! Everything here is driven by the bytes alone: no timer, no socket, no spawned task, so a
//! run on a current-thread runtime either finishes or hangs on a bug (which libFuzzer's
//! `-timeout` reports).

use berth_codec::{DecodeOptions, Packet, ProtocolVersion, decode};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// Room in each direction of the in-memory connection. Small, so that the two ends wait on
/// each other as they would over a socket.
const PIPE_CAPACITY: usize = 1024;
/// Room reserved before each read of the MQTT byte stream.
const READ_CHUNK: usize = 512;

/// How a [`ws_session`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsEnd {
    /// The upgrade was refused or failed: no MQTT byte was read.
    UpgradeFailed,
    /// The WebSocket stream ended (a close frame, or the client's end of input).
    StreamEnded,
    /// Reading the WebSocket stream failed (a text message, a protocol violation, a cut frame).
    ReadFailed,
    /// The MQTT bytes did not decode.
    DecodeFailed,
    /// Answering the client failed.
    WriteFailed,
}

/// What a [`ws_session`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsRun {
    pub end: WsEnd,
    /// MQTT bytes the WebSocket layer handed over (binary message payloads).
    pub stream_bytes: usize,
    /// Packets decoded from them.
    pub packets: usize,
}

/// Serves one WebSocket connection whose client sends `client` (an HTTP upgrade request for
/// [`crate::DEFAULT_WS_PATH`], then frames) and then closes its sending side. The server side
/// is the listener's: `ws::accept` with `max_packet_size`, then `WsIo` read as one
/// byte stream and decoded packet by packet (by CONNECT's version once one arrives, V5 before),
/// answering CONNECT and PINGREQ, until the stream ends or fails. Whatever the server sends is
/// read and dropped.
pub async fn ws_session(client: &[u8], max_packet_size: u32) -> WsRun {
    let (server, peer) = tokio::io::duplex(PIPE_CAPACITY);
    let (mut peer_read, mut peer_write) = tokio::io::split(peer);
    let send = async move {
        // Fails once the server has hung up: what it did not read is lost, as on a socket.
        if peer_write.write_all(client).await.is_ok() {
            let _ = peer_write.shutdown().await;
        }
    };
    let drain = async move {
        let mut sink = [0u8; 512];
        // Ends when the server drops its end (end of stream) or the pipe fails.
        loop {
            match peer_read.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let ((), (), run) = tokio::join!(send, drain, serve(server, max_packet_size));
    run
}

/// The server's end; dropping `server` at the end is what lets the client's reader finish.
async fn serve(server: DuplexStream, max_packet_size: u32) -> WsRun {
    let mut run = WsRun {
        end: WsEnd::UpgradeFailed,
        stream_bytes: 0,
        packets: 0,
    };
    let limit = usize::try_from(max_packet_size).unwrap_or(usize::MAX);
    let Ok(mut ws) = crate::ws::accept(server, crate::DEFAULT_WS_PATH, limit).await else {
        return run;
    };
    let mut opts = DecodeOptions::new(ProtocolVersion::V5).with_max_packet_size(max_packet_size);
    let mut buf = BytesMut::new();
    run.end = loop {
        match decode(&mut buf, &opts) {
            Ok(Some(packet)) => {
                run.packets += 1;
                let answer: &[u8] = match &packet {
                    Packet::Connect(connect) => {
                        opts.version = connect.protocol;
                        connack(connect.protocol)
                    }
                    Packet::PingReq => &[0xD0, 0x00],
                    _ => &[],
                };
                if !answer.is_empty()
                    && (ws.write_all(answer).await.is_err() || ws.flush().await.is_err())
                {
                    break WsEnd::WriteFailed;
                }
                continue;
            }
            Ok(None) => {}
            Err(_) => break WsEnd::DecodeFailed,
        }
        buf.reserve(READ_CHUNK);
        match ws.read_buf(&mut buf).await {
            Ok(0) => break WsEnd::StreamEnded,
            Ok(n) => run.stream_bytes += n,
            Err(_) => break WsEnd::ReadFailed,
        }
    };
    // A close frame, as the connection sends when it ends; the client may be gone already.
    let _ = ws.shutdown().await;
    run
}

/// CONNACK, session not present, success, no properties.
fn connack(version: ProtocolVersion) -> &'static [u8] {
    match version {
        ProtocolVersion::V5 => &[0x20, 0x03, 0x00, 0x00, 0x00],
        ProtocolVersion::V3_1 | ProtocolVersion::V3_1_1 => &[0x20, 0x02, 0x00, 0x00],
    }
}

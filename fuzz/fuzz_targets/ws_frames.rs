//! Feeds arbitrary bytes to the MQTT-over-WebSocket path as a client's side of a connection:
//! the listener's upgrade (`ws::accept`, tokio-tungstenite), its adapter from binary messages to
//! a byte stream (`WsIo`) and the MQTT decoder behind it, over an in-memory pipe on a
//! current-thread runtime with no timer (`berth_server::fuzzing::ws_session`).
//!
//! The first input byte picks the setup; the rest is what the client sends:
//! - bits 0-1: a valid upgrade request for `/mqtt` is sent first, offering the subprotocol
//!   `mqtt` (0), none (1) or `mqttv3.1` (2); with 3 the input is the whole stream, HTTP included;
//! - bit 2: a Maximum Packet Size of 128 bytes instead of 64 KiB.
//!
//! A panic, an arithmetic overflow or a run that never ends (libFuzzer's `-timeout`) is a
//! crash. Client frames must be masked; the seeds use the all-zero mask, so their payloads are
//! plain MQTT that mutations change directly.
#![no_main]

use std::sync::OnceLock;

use berth_server::DEFAULT_WS_PATH;
use berth_server::fuzzing::{WsEnd, ws_session};
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;

const SMALL_MAX_PACKET: u32 = 128;
const LARGE_MAX_PACKET: u32 = 64 * 1024;

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    // Neither time nor IO drivers: the session must not need them.
    RUNTIME.get_or_init(
        || match tokio::runtime::Builder::new_current_thread().build() {
            Ok(runtime) => runtime,
            Err(error) => panic!("cannot build the fuzz target's runtime: {error}"),
        },
    )
}

/// The upgrade requests, by the subprotocol they offer.
fn requests() -> &'static [Vec<u8>; 3] {
    static REQUESTS: OnceLock<[Vec<u8>; 3]> = OnceLock::new();
    REQUESTS.get_or_init(|| {
        [
            "Sec-WebSocket-Protocol: mqtt\r\n",
            "",
            "Sec-WebSocket-Protocol: mqttv3.1\r\n",
        ]
        .map(|protocol| {
            format!(
                "GET {DEFAULT_WS_PATH} HTTP/1.1\r\n\
                     Host: localhost\r\n\
                     Upgrade: websocket\r\n\
                     Connection: Upgrade\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                     Sec-WebSocket-Version: 13\r\n\
                     {protocol}\r\n"
            )
            .into_bytes()
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&setup, frames)) = data.split_first() else {
        return;
    };
    let client = match usize::from(setup & 0b11) {
        3 => frames.to_vec(),
        kind => [&requests()[kind][..], frames].concat(),
    };
    let max_packet_size = if setup & 0b100 == 0 {
        LARGE_MAX_PACKET
    } else {
        SMALL_MAX_PACKET
    };
    let run = runtime().block_on(ws_session(&client, max_packet_size));
    // Frames carry at least a 2-byte header and a 4-byte mask besides their payload: the
    // stream cannot hold more bytes than the client sent after its request.
    assert!(
        run.stream_bytes <= frames.len(),
        "{run:?} from {} bytes of frames",
        frames.len()
    );
    // Every MQTT packet is at least 2 bytes.
    assert!(run.packets * 2 <= run.stream_bytes, "{run:?}");
    if run.end == WsEnd::UpgradeFailed {
        assert_eq!((run.stream_bytes, run.packets), (0, 0), "{run:?}");
    }
});

//! MQTT over WebSocket (and over WebSocket over TLS): the HTTP upgrade on the listener's path
//! with the `mqtt` subprotocol, then binary WebSocket messages carrying the MQTT byte stream.
//!
//! ```text
//!  TCP (─▶ TLS) ─▶ GET /mqtt, Upgrade: websocket, Sec-WebSocket-Protocol: mqtt
//!               ─▶ WsIo: binary messages ⇄ AsyncRead / AsyncWrite ─▶ the MQTT codec
//! ```
//! MQTT §6: the payload is binary messages only (a text message closes the connection), an MQTT
//! packet may span messages and a message may hold several packets: the codec sees one byte
//! stream, as over TCP. A client that offers no subprotocol is accepted (browsers' MQTT
//! libraries offer `mqtt`; some embedded ones offer nothing); one that offers only others is
//! refused at the upgrade.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

/// Subprotocols a client may ask for, preferred first ("mqttv3.1" is what MQTT 3.1 clients
/// sent before the standard name).
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Completes the WebSocket upgrade of `stream` on `path`.
pub(crate) async fn accept<S>(
    stream: S,
    path: &str,
    max_message_size: usize,
) -> Result<WsIo<S>, tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let path = path.to_owned();
    // The callback's type is tungstenite's (its error is the HTTP refusal it sends).
    #[allow(clippy::result_large_err)]
    let check = move |request: &Request, response: Response| upgrade(&path, request, response);
    let mut config = WebSocketConfig::default();
    // One MQTT packet is bounded by the listener's Maximum Packet Size; a message holds at most
    // a little more than one (the codec refuses the packet itself when it is too large).
    config.max_message_size = Some(max_message_size.saturating_add(1024));
    config.max_frame_size = Some(max_message_size.saturating_add(1024));
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config)).await?;
    Ok(WsIo {
        ws,
        read: Bytes::new(),
    })
}

/// The upgrade's rules: the path, and the subprotocol answered.
#[allow(clippy::result_large_err)] // tungstenite's callback type
fn upgrade(
    path: &str,
    request: &Request,
    mut response: Response,
) -> Result<Response, ErrorResponse> {
    if request.uri().path() != path {
        return Err(refusal(
            StatusCode::NOT_FOUND,
            format!("MQTT is served on {path}"),
        ));
    }
    let offered: Vec<&str> = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok(response);
    }
    match SUBPROTOCOLS.iter().find(|name| offered.contains(name)) {
        Some(name) => {
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(name),
            );
            Ok(response)
        }
        None => Err(refusal(
            StatusCode::BAD_REQUEST,
            "the WebSocket subprotocol must be mqtt".to_owned(),
        )),
    }
}

fn refusal(status: StatusCode, body: String) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(body));
    *response.status_mut() = status;
    response
}

/// A WebSocket connection as the byte stream MQTT sees: reads take the payloads of binary
/// messages in order, each write sends one binary message.
pub(crate) struct WsIo<S> {
    ws: WebSocketStream<S>,
    /// What is left of the message being read.
    read: Bytes,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.read.is_empty() {
                let n = this.read.len().min(buf.remaining());
                buf.put_slice(&this.read[..n]);
                this.read.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(payload))) => this.read = payload,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text WebSocket message: MQTT is sent in binary messages",
                    )));
                }
                // Pings are answered by tungstenite itself; pongs and raw frames carry nothing.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                // A close, or the end of the stream: the end of the MQTT stream.
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Err(error)) => return Poll::Ready(Err(io::Error::other(error))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let ws = &mut self.get_mut().ws;
        ready!(Pin::new(&mut *ws).poll_ready(cx)).map_err(io::Error::other)?;
        Pin::new(&mut *ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io::Error::other)?;
        // Sent when flushed: the connection flushes after each burst it writes.
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_close(cx)
            .map_err(io::Error::other)
    }
}

//! The connected phase of a connection: packets in, packets out, keep alive, until either side
//! ends it.
//!
//! Its task lives as long as the connection, and most connections are idle most of the time,
//! so the size of this future is most of what an idle connection costs (`bench conns`). It
//! therefore waits by polling what it owns (the socket, the mailbox, one keep-alive timer) with
//! no future kept across the wait but that timer, writes the same way, and boxes what is rare
//! (a wait for room in the broker's channel or for a Raft commit, the last steps of a close):
//! those are allocated only while they run.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use berth_codec::{DecodeOptions, Packet, ProtocolVersion, encode};
use berth_core::{CloseReason, ConnId};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc::Sender;
use tokio::time::{Instant, Sleep, sleep_until};

use super::forward::{self, Replicated};
use super::read_size::ReadSize;
use super::{BATCH_KEEP, CLOSE_GRACE, WRITE_BUFFER_KEEP, to_broker};
use crate::mailbox::Inbox;
use crate::runtime::{Command, Outbound};

/// A connection whose CONNECT the broker has.
pub(super) struct Accepted<R, W> {
    pub(super) conn: ConnId,
    pub(super) commands: Sender<Command>,
    pub(super) max_packet_size: u32,
    pub(super) reader: R,
    pub(super) writer: W,
    pub(super) read_buf: BytesMut,
    pub(super) version: ProtocolVersion,
    pub(super) keep_alive: u16,
    pub(super) inbox: Inbox,
    /// Boxed: inline, the connected phase's future kept room for it twice (~140 bytes more
    /// per connection than this pointer and its allocation).
    pub(super) replicated: Option<Box<Replicated>>,
    /// Bytes in and out are counted per read and per write.
    pub(super) metrics: Arc<crate::Metrics>,
}

/// What ended a wait of the connected phase.
enum Woke {
    Read(std::io::Result<usize>),
    /// Something is in the batch; false: the broker dropped the connection's last handle.
    Inbox(bool),
    KeepAlive,
}

/// Everything the connected phase keeps, in one place: the task's future holds this once, and
/// beside it only what a wait needs (a reference, or a box while something rare runs).
struct Serving<R, W> {
    opts: DecodeOptions,
    a: Accepted<R, W>,
    /// Taken from the inbox and not yet written.
    batch: VecDeque<Outbound>,
    write_buf: BytesMut,
    last_read: Instant,
    reading: bool,
    /// Which of the socket and the mailbox is looked at first, taking turns: neither a client
    /// that floods nor a broker that does can starve the other side.
    socket_first: bool,
    read_size: ReadSize,
    /// The keep-alive timer (boxed: a `Sleep` must stay pinned), set while the client has a
    /// keep alive. Moved only when it fires early: a read just notes its time, so that traffic
    /// costs no timer operation.
    timer: Option<Pin<Box<Sleep>>>,
}

/// The connected phase.
pub(super) fn serve<R, W>(accepted: Accepted<R, W>) -> impl Future<Output = ()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let opts = DecodeOptions::new(accepted.version).with_max_packet_size(accepted.max_packet_size);
    let mut serving = Serving {
        opts,
        a: accepted,
        batch: VecDeque::new(),
        write_buf: BytesMut::new(),
        last_read: Instant::now(),
        reading: true,
        socket_first: true,
        read_size: ReadSize::default(),
        timer: None,
    };
    serving.set_timer();
    run(serving)
}

/// The loop. Its locals are kept few and small on purpose: each one that lives across an
/// await is room in every connection's task. Not an `async fn`: that one moves its parameter
/// into a local and keeps both (a second `Serving` in every connection's task); the block uses
/// the value it captured in place.
#[allow(clippy::manual_async_fn)]
fn run<R, W>(mut s: Serving<R, W>) -> impl Future<Output = ()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    async move {
        loop {
            let offered = s.read_size.prepare(&mut s.a.read_buf);
            let woke = poll_fn(|cx| s.poll_wait(cx)).await;
            match woke {
                Woke::Read(Ok(0) | Err(_)) => {
                    if let Some(wait) = s.report_closed(CloseReason::ConnectionLost) {
                        wait.await;
                    }
                    break;
                }
                Woke::Read(Ok(read)) => {
                    s.read_size.observe(read, offered);
                    s.a.metrics.count_bytes_received(read);
                    s.last_read = Instant::now();
                    let forwarded = match forward::forward_now(
                        forward::Forward::new(
                            s.a.conn,
                            &s.opts,
                            &s.a.commands,
                            s.a.replicated.as_deref(),
                            s.last_read.into_std(),
                        ),
                        &mut s.a.read_buf,
                    ) {
                        // Rare: a wait for room in the broker's channel or for a Raft commit.
                        Some(rest) => rest.await,
                        None => Ok(()),
                    };
                    if let Err(error) = forwarded {
                        s.reading = false;
                        if let Some(wait) = s.report_closed(CloseReason::Malformed(error)) {
                            wait.await;
                        }
                    }
                    ReadSize::release_drained(&mut s.a.read_buf);
                }
                Woke::KeepAlive => {
                    if s.keep_alive_moved() {
                        continue;
                    }
                    s.reading = false;
                    if let Some(wait) = s.report_closed(CloseReason::KeepAliveTimeout) {
                        wait.await;
                    }
                }
                Woke::Inbox(false) => break,
                Woke::Inbox(true) => {
                    let (written, close) = s.encode_batch();
                    let mut done = 0;
                    let wrote =
                        poll_fn(|cx| poll_write_out(cx, &mut s.a.writer, &s.write_buf, &mut done))
                            .await;
                    if wrote.is_err() {
                        if s.reading
                            && let Some(wait) = s.report_closed(CloseReason::ConnectionLost)
                        {
                            wait.await;
                        }
                        break;
                    }
                    s.written(written);
                    if close {
                        Box::pin(shut_down(&mut s.a.writer)).await;
                        return;
                    }
                }
            }
            if !s.reading {
                // Boxed, as below: these steps run once, at the end.
                let batch = std::mem::take(&mut s.batch);
                let write_buf = std::mem::take(&mut s.write_buf);
                Box::pin(write_last_packets(
                    &s.a.inbox,
                    batch,
                    s.a.version,
                    write_buf,
                    &mut s.a.writer,
                ))
                .await;
                return;
            }
        }
        let batch = std::mem::take(&mut s.batch);
        Box::pin(drain_until_close(&s.a.inbox, batch)).await;
    }
}

impl<R, W> Serving<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// Waits for the socket, the mailbox or the keep-alive timer.
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<Woke> {
        self.socket_first = !self.socket_first;
        for socket in [self.socket_first, !self.socket_first] {
            let woke = match socket {
                true if self.reading => poll_read(cx, &mut self.a.reader, &mut self.a.read_buf),
                true => Poll::Pending,
                false => self.a.inbox.poll_recv(cx, &mut self.batch).map(Woke::Inbox),
            };
            if woke.is_ready() {
                return woke;
            }
        }
        if self.reading
            && let Some(timer) = &mut self.timer
            && timer.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Woke::KeepAlive);
        }
        Poll::Pending
    }

    /// Tells the broker the connection is over. Its channel has room almost always; where
    /// it has none, the wait for room is returned, boxed.
    fn report_closed(
        &self,
        reason: CloseReason,
    ) -> Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>> {
        let (conn, commands) = (self.a.conn, &self.a.commands);
        match commands.try_reserve() {
            Ok(permit) => {
                permit.send(Command::Closed { conn, reason });
                None
            }
            Err(tokio::sync::mpsc::error::TrySendError::Full(())) => Some(Box::pin(async move {
                to_broker(commands, move || Command::Closed { conn, reason }).await;
            })),
            Err(tokio::sync::mpsc::error::TrySendError::Closed(())) => None,
        }
    }

    /// (Re)sets the keep-alive timer to the client's deadline: one and a half times its keep
    /// alive after the last read ([MQTT-3.1.2-24]); none without a keep alive.
    fn set_timer(&mut self) {
        if self.a.keep_alive == 0 {
            self.timer = None;
            return;
        }
        let deadline = self.last_read + keep_alive_limit(self.a.keep_alive);
        match &mut self.timer {
            Some(timer) => timer.as_mut().reset(deadline),
            None => self.timer = Some(Box::pin(sleep_until(deadline))),
        }
    }

    /// The timer fired: true if traffic came since it was set (it is moved to the new
    /// deadline), false if the client has been silent too long.
    fn keep_alive_moved(&mut self) -> bool {
        let expires = self.last_read + keep_alive_limit(self.a.keep_alive);
        if Instant::now() >= expires {
            return false;
        }
        self.set_timer();
        true
    }

    /// Encodes what is waiting into the write buffer, in one bounded piece: a backlog is not
    /// copied whole, and reading resumes between pieces. Returns the packets encoded and
    /// whether the broker closes the connection after them.
    fn encode_batch(&mut self) -> (usize, bool) {
        let mut written = 0usize;
        while self.write_buf.len() < WRITE_BUFFER_KEEP {
            let Some(message) = self.batch.pop_front() else {
                break;
            };
            match message {
                Outbound::Packet(packet) => {
                    if let Packet::ConnAck(connack) = &packet
                        && let Some(server_keep_alive) = connack.properties.server_keep_alive
                    {
                        self.a.keep_alive = server_keep_alive;
                        self.set_timer();
                    }
                    written += 1;
                    if encode(&packet, self.a.version, &mut self.write_buf).is_err() {
                        tracing::warn!(conn = ?self.a.conn, "dropping a packet that cannot be encoded");
                    }
                }
                Outbound::Close => return (written, true),
            }
        }
        (written, false)
    }

    /// `written` packets reached the socket: counted, and the room kept as bounded.
    fn written(&mut self, written: usize) {
        self.a.metrics.count_bytes_sent(self.write_buf.len());
        self.a.inbox.written(written);
        self.write_buf.clear();
        if self.write_buf.capacity() > 2 * WRITE_BUFFER_KEEP {
            self.write_buf = BytesMut::new();
        }
        // A wake-up with a single packet (a CONNACK, a PINGRESP, a trickle) keeps no room, here
        // or in the mailbox: an idle connection holds none.
        if self.batch.is_empty() && written <= 1 {
            self.batch = VecDeque::new();
            self.a.inbox.shed();
        } else if self.batch.is_empty() && self.batch.capacity() > BATCH_KEEP {
            self.batch = VecDeque::new();
        }
    }
}

/// Reads what the socket has into `read_buf`. A read future holds nothing between polls (it is
/// cancel safe): one made per poll keeps none across the wait.
fn poll_read<R: AsyncRead + Unpin>(
    cx: &mut Context<'_>,
    reader: &mut R,
    read_buf: &mut BytesMut,
) -> Poll<Woke> {
    std::pin::pin!(reader.read_buf(read_buf))
        .poll(cx)
        .map(Woke::Read)
}

/// How long a client may stay silent: one and a half times its keep alive ([MQTT-3.1.2-24]).
fn keep_alive_limit(keep_alive: u16) -> Duration {
    Duration::from_millis(u64::from(keep_alive) * 1500)
}

/// Writes `bytes[*done..]` and flushes: a no-op flush for TCP, what makes TLS records and
/// WebSocket messages leave now rather than wait in their layer's buffer. `done` keeps the
/// progress between polls, so that no write future is kept.
fn poll_write_out<W: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    writer: &mut W,
    bytes: &[u8],
    done: &mut usize,
) -> Poll<std::io::Result<()>> {
    while *done < bytes.len() {
        match Pin::new(&mut *writer).poll_write(cx, &bytes[*done..]) {
            Poll::Ready(Ok(0)) => {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            Poll::Ready(Ok(n)) => *done += n,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => return Poll::Pending,
        }
    }
    Pin::new(writer).poll_flush(cx)
}

async fn shut_down<W: AsyncWrite + Unpin>(writer: &mut W) {
    let _ = tokio::io::AsyncWriteExt::shutdown(writer).await;
}

/// Reported closed: waits (bounded) for the broker's last packets and Close, writes them and
/// shuts the socket down.
async fn write_last_packets<W: AsyncWrite + Unpin>(
    inbox: &Inbox,
    mut batch: VecDeque<Outbound>,
    version: ProtocolVersion,
    mut write_buf: BytesMut,
    writer: &mut W,
) {
    let deadline = Instant::now() + CLOSE_GRACE;
    'grace: while let Ok(true) = tokio::time::timeout_at(deadline, inbox.recv(&mut batch)).await {
        for message in batch.drain(..) {
            match message {
                Outbound::Packet(packet) => {
                    let _ = encode(&packet, version, &mut write_buf);
                }
                Outbound::Close => break 'grace,
            }
        }
    }
    let _ = tokio::io::AsyncWriteExt::write_all(writer, &write_buf).await;
    shut_down(writer).await;
}

/// After the socket is gone: let the broker's remaining packets for it fall away.
async fn drain_until_close(inbox: &Inbox, mut batch: VecDeque<Outbound>) {
    let deadline = Instant::now() + CLOSE_GRACE;
    while let Ok(true) = tokio::time::timeout_at(deadline, inbox.recv(&mut batch)).await {
        if batch
            .drain(..)
            .any(|message| matches!(message, Outbound::Close))
        {
            return;
        }
    }
}

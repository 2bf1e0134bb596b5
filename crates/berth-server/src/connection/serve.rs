//! The connected phase of a connection: packets in, packets out, keep alive, until either side
//! ends it.
//!
//! Its task lives while the connection has something to do; after a quiet spell the connection
//! parks (`park.rs`): its state waits without a task until the socket, the mailbox or the
//! keep-alive timer wakes it. The task's future is still room in every busy connection, so it
//! waits by polling what it owns (the socket, the mailbox, one timer) with no future kept
//! across the wait but that timer, writes the same way, and boxes what is rare (a wait for room
//! in the broker's channel or for a Raft commit, the last steps of a close): those are
//! allocated only while they run.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use berth_codec::{DecodeOptions, Packet, ProtocolVersion, encode};
use berth_core::{CloseReason, ConnId};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc::Sender;
use tokio::time::{Instant, Sleep, sleep_until};

use super::forward::{self, Replicated};
use super::park::{PARK_AFTER, Parked};
use super::read_size::ReadSize;
use super::{BATCH_KEEP, CLOSE_GRACE, WRITE_BUFFER_KEEP, to_broker};
use crate::mailbox::Inbox;
use crate::runtime::{Command, Outbound};

/// A connection whose CONNECT the broker has.
pub(super) struct Accepted<R, W> {
    /// Its place under the node's connection limits, released when the connection ends
    /// (held for its `Drop`).
    pub(super) _permit: Option<crate::gate::Permit>,
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
enum Woke<R, W> {
    Read(std::io::Result<usize>),
    /// Something is in the batch; false: the broker dropped the connection's last handle.
    Inbox(bool),
    /// The client has been silent longer than its keep alive allows.
    KeepAlive,
    /// Quiet for a while: every source now wakes `Parked`, which the state is to be left with.
    Park(Arc<Parked<Serving<R, W>>>),
}

/// Everything the connected phase keeps, in one place: the task's future holds this once, and
/// beside it only what a wait needs (a reference, or a box while something rare runs). A
/// parked connection is this alone.
pub(super) struct Serving<R, W> {
    a: Accepted<R, W>,
    /// Taken from the inbox and not yet written.
    batch: VecDeque<Outbound>,
    write_buf: BytesMut,
    last_read: Instant,
    reading: bool,
    /// Which of the socket and the mailbox is looked at first, taking turns: neither a client
    /// that floods nor a broker that does can starve the other side.
    socket_first: bool,
    /// A packet came in or went out since the timer was last set: not quiet yet.
    active: bool,
    /// The timer waits for the keep alive only (the connection parked, or nearly): it is set
    /// for the next quiet check at the next wait.
    rearm: bool,
    read_size: ReadSize,
    /// The timer (boxed: a `Sleep` must stay pinned): at the keep-alive deadline or the next
    /// quiet check (`PARK_AFTER`), whichever is first; while parked, at the keep-alive deadline
    /// only (none without a keep alive). A read just notes its time, so that traffic costs no
    /// timer operation but one per quiet check.
    timer: Option<Pin<Box<Sleep>>>,
}

/// The connected phase.
pub(super) fn serve<R, W>(accepted: Accepted<R, W>) -> impl Future<Output = ()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let serving = Serving {
        a: accepted,
        batch: VecDeque::new(),
        write_buf: BytesMut::new(),
        last_read: Instant::now(),
        reading: true,
        socket_first: true,
        active: true,
        rearm: true,
        read_size: ReadSize::default(),
        timer: None,
    };
    run(serving)
}

/// A parked connection woken: served by a new task.
pub(super) fn resume<R, W>(serving: Serving<R, W>) -> impl Future<Output = ()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    serving.a.metrics.connection_unparked();
    run(serving)
}

/// The loop. Its locals are kept few and small on purpose: each one that lives across an
/// await is room in every connection's task. Not an `async fn`: that one moves its parameter
/// into a local and keeps both (a second `Serving` in every connection's task); the block uses
/// the value it captured in place.
#[allow(clippy::manual_async_fn)]
fn run<R, W>(mut s: Serving<R, W>) -> impl Future<Output = ()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
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
                            DecodeOptions::new(s.a.version)
                                .with_max_packet_size(s.a.max_packet_size),
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
                    s.reading = false;
                    if let Some(wait) = s.report_closed(CloseReason::KeepAliveTimeout) {
                        wait.await;
                    }
                }
                Woke::Park(parked) => {
                    s.a.metrics.connection_parked();
                    match parked.park(s) {
                        // The task ends; a wake starts another (`resume`).
                        None => return,
                        Some(woken) => {
                            s = woken;
                            s.a.metrics.connection_unparked();
                        }
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
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    /// Waits for the socket, the mailbox or the timer: a keep alive run out, or a quiet spell
    /// that parks the connection.
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<Woke<R, W>> {
        if let Poll::Ready(woke) = self.poll_sources(cx) {
            return Poll::Ready(woke);
        }
        if !self.reading {
            return Poll::Pending;
        }
        if self.rearm || self.timer.is_none() {
            self.rearm = false;
            self.set_timer(Instant::now());
        }
        while let Some(timer) = &mut self.timer
            && timer.as_mut().poll(cx).is_ready()
        {
            let now = Instant::now();
            if self.keep_alive_expired(now) {
                return Poll::Ready(Woke::KeepAlive);
            }
            if !self.active && self.batch.is_empty() && self.write_buf.is_empty() {
                return self.poll_park();
            }
            self.active = false;
            self.set_timer(now);
        }
        Poll::Pending
    }

    /// The socket and the mailbox, taking turns at going first.
    fn poll_sources(&mut self, cx: &mut Context<'_>) -> Poll<Woke<R, W>> {
        self.socket_first = !self.socket_first;
        for socket in [self.socket_first, !self.socket_first] {
            let woke = match socket {
                true if self.reading => {
                    poll_read(cx, &mut self.a.reader, &mut self.a.read_buf).map(Woke::Read)
                }
                true => Poll::Pending,
                false => self.a.inbox.poll_recv(cx, &mut self.batch).map(Woke::Inbox),
            };
            if woke.is_ready() {
                self.active = true;
                return woke;
            }
        }
        Poll::Pending
    }

    /// Quiet since the last check: every source is polled again with a waker of its own, so
    /// that the task can end and leave the state to it. Something ready meanwhile is returned
    /// as usual (the task's own waker goes back to every source at its next wait).
    fn poll_park(&mut self) -> Poll<Woke<R, W>> {
        self.rearm = true;
        match (self.keep_alive_deadline(), &mut self.timer) {
            (None, _) => self.timer = None,
            (Some(deadline), Some(timer)) => timer.as_mut().reset(deadline),
            (Some(_), None) => {}
        }
        let parked = Parked::new();
        let waker = Waker::from(parked.clone());
        let mut cx = Context::from_waker(&waker);
        if let Poll::Ready(woke) = self.poll_sources(&mut cx) {
            return Poll::Ready(woke);
        }
        if let Some(timer) = &mut self.timer
            && timer.as_mut().poll(&mut cx).is_ready()
        {
            return Poll::Ready(Woke::KeepAlive);
        }
        Poll::Ready(Woke::Park(parked))
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

    /// (Re)sets the timer to the next quiet check or, if it comes first, the client's
    /// keep-alive deadline.
    fn set_timer(&mut self, now: Instant) {
        let check = now + PARK_AFTER;
        let deadline = self
            .keep_alive_deadline()
            .map_or(check, |keep_alive| keep_alive.min(check));
        match &mut self.timer {
            Some(timer) => timer.as_mut().reset(deadline),
            None => self.timer = Some(Box::pin(sleep_until(deadline))),
        }
    }

    /// When the client will have been silent longer than its keep alive allows: one and a half
    /// times its keep alive after the last read ([MQTT-3.1.2-24]); none without a keep alive.
    fn keep_alive_deadline(&self) -> Option<Instant> {
        (self.a.keep_alive != 0).then(|| self.last_read + keep_alive_limit(self.a.keep_alive))
    }

    fn keep_alive_expired(&self, now: Instant) -> bool {
        self.keep_alive_deadline()
            .is_some_and(|deadline| now >= deadline)
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
                        self.rearm = true;
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
) -> Poll<std::io::Result<usize>> {
    std::pin::pin!(reader.read_buf(read_buf)).poll(cx)
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

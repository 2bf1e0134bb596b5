//! The line from the broker thread to one connection task: packets in order, perhaps a close.
//!
//! Not tokio's unbounded channel: that one allocates about 800 bytes per connection up front
//! (its cache-padded sender and receiver halves and a first block of 32 slots), whether or not
//! anything is ever sent, and idle connections are most connections. A mailbox is one small
//! allocation; its queue allocates only while packets wait, and the task takes everything
//! waiting under one lock.
//!
//! The task waits by polling (`Inbox::poll_recv`), its waker kept under the same lock: a
//! `Notify` would need its `Notified` future kept across the wait (about 100 bytes in every
//! idle connection's task), since one dropped while pending loses the wake-up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::runtime::Outbound;

struct Mailbox {
    state: Mutex<State>,
    /// Packets handed over and not yet written to the socket (see `Outbox::pending`).
    pending: AtomicUsize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Outbound>,
    senders: usize,
    /// The task is gone: what is sent from now on is dropped.
    receiver_gone: bool,
    /// The task's waker while it waits: a packet arrived, or the last sender went away, wakes it.
    waiting: Option<Waker>,
}

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-changed.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The sending end; clones share the mailbox, which closes when the last one is dropped.
pub(crate) struct Outbox(Arc<Mailbox>);

/// The connection task's end.
pub(crate) struct Inbox(Arc<Mailbox>);

pub(crate) fn mailbox() -> (Outbox, Inbox) {
    let mailbox = Arc::new(Mailbox {
        state: Mutex::new(State {
            senders: 1,
            ..State::default()
        }),
        pending: AtomicUsize::new(0),
    });
    (Outbox(mailbox.clone()), Inbox(mailbox))
}

impl Outbox {
    /// Queues `message` for the task; false (and dropped) once the task is gone.
    pub fn send(&self, message: Outbound) -> bool {
        let counts = matches!(message, Outbound::Packet(_));
        let waiting = {
            let mut state = self.0.lock();
            if state.receiver_gone {
                return false;
            }
            state.queue.push_back(message);
            state.waiting.take()
        };
        if counts {
            self.0.pending.fetch_add(1, Ordering::Relaxed);
        }
        wake(waiting);
        true
    }

    /// Queues everything in `messages` (left empty, its room kept) in order, with one lock and
    /// one wake; dropped once the task is gone.
    pub fn send_all(&self, messages: &mut Vec<Outbound>) {
        let packets = messages
            .iter()
            .filter(|m| matches!(m, Outbound::Packet(_)))
            .count();
        let waiting = {
            let mut state = self.0.lock();
            if state.receiver_gone {
                messages.clear();
                return;
            }
            state.queue.extend(messages.drain(..));
            state.waiting.take()
        };
        self.0.pending.fetch_add(packets, Ordering::Relaxed);
        wake(waiting);
    }

    /// Packets sent and not yet written to the socket: how far behind the client is.
    pub fn pending(&self) -> usize {
        self.0.pending.load(Ordering::Relaxed)
    }
}

impl Clone for Outbox {
    fn clone(&self) -> Outbox {
        self.0.lock().senders += 1;
        Outbox(self.0.clone())
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let waiting = {
            let mut state = self.0.lock();
            state.senders -= 1;
            if state.senders == 0 {
                state.waiting.take()
            } else {
                None
            }
        };
        wake(waiting);
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}

impl Inbox {
    /// Waits until something is waiting and moves all of it to the back of `batch` (whose
    /// front is taken first: leftovers of an earlier batch are returned at once). False once
    /// nothing is left and every sender is gone.
    pub async fn recv(&self, batch: &mut VecDeque<Outbound>) -> bool {
        std::future::poll_fn(|cx| self.poll_recv(cx, batch)).await
    }

    /// `recv` as a poll: `Pending` leaves the task's waker with the mailbox, woken by the next
    /// message or by the last sender's going.
    pub fn poll_recv(&self, cx: &mut Context<'_>, batch: &mut VecDeque<Outbound>) -> Poll<bool> {
        if !batch.is_empty() {
            return Poll::Ready(true);
        }
        let mut state = self.0.lock();
        if !state.queue.is_empty() {
            // Swapped, not drained: both ends keep the capacity a burst gave them.
            std::mem::swap(&mut state.queue, batch);
            return Poll::Ready(true);
        }
        if state.senders == 0 {
            return Poll::Ready(false);
        }
        // Under the lock that senders take: a message sent after the check above finds it.
        match &mut state.waiting {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waiting => *waiting = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// `written` packets reached the socket.
    pub fn written(&self, written: usize) {
        self.0.pending.fetch_sub(written, Ordering::Relaxed);
    }

    /// Gives up the room of the mailbox's queue if nothing waits in it: the task's own batch
    /// and this queue take turns, and a connection gone quiet after a burst should keep
    /// neither's room.
    pub fn shed(&self) {
        let mut state = self.0.lock();
        if state.queue.is_empty() {
            state.queue = VecDeque::new();
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.receiver_gone = true;
        state.queue = VecDeque::new();
        state.waiting = None;
    }
}

/// Wakes the task outside the mailbox's lock (it takes that lock first thing).
fn wake(waiting: Option<Waker>) {
    if let Some(waker) = waiting {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use berth_codec::Packet;

    use super::*;

    fn packet() -> Outbound {
        Outbound::Packet(Packet::PingResp)
    }

    #[tokio::test]
    async fn messages_arrive_in_order_and_count_as_pending_until_written() {
        let (outbox, inbox) = mailbox();
        assert!(outbox.send(packet()));
        assert!(outbox.send(Outbound::Close));
        assert_eq!(outbox.pending(), 1, "a close is not a packet");
        let mut batch = VecDeque::new();
        assert!(inbox.recv(&mut batch).await);
        assert!(matches!(batch.pop_front(), Some(Outbound::Packet(_))));
        assert!(matches!(batch.pop_front(), Some(Outbound::Close)));
        inbox.written(1);
        assert_eq!(outbox.pending(), 0);
    }

    #[tokio::test]
    async fn a_waiting_task_wakes_for_a_message_sent_later() {
        let (outbox, inbox) = mailbox();
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            outbox.send(packet());
            outbox
        });
        let mut batch = VecDeque::new();
        let got = tokio::time::timeout(Duration::from_secs(5), inbox.recv(&mut batch)).await;
        assert_eq!(got.ok(), Some(true));
        assert_eq!(batch.len(), 1);
        drop(sender.await);
    }

    #[tokio::test]
    async fn the_task_learns_when_the_last_sender_is_gone() {
        let (outbox, inbox) = mailbox();
        let second = outbox.clone();
        drop(outbox);
        second.send(packet());
        drop(second);
        let mut batch = VecDeque::new();
        assert!(
            inbox.recv(&mut batch).await,
            "what was sent is still delivered"
        );
        batch.clear();
        let ended = tokio::time::timeout(Duration::from_secs(5), inbox.recv(&mut batch)).await;
        assert_eq!(ended.ok(), Some(false));
    }

    #[tokio::test]
    async fn a_staged_group_arrives_whole_and_in_order_after_what_was_sent_before() {
        let (outbox, inbox) = mailbox();
        assert!(outbox.send(Outbound::Packet(Packet::PingReq)));
        let mut staged = vec![packet(), packet(), Outbound::Close];
        outbox.send_all(&mut staged);
        assert!(staged.is_empty());
        assert_eq!(outbox.pending(), 3, "three packets; a close is not one");
        let mut batch = VecDeque::new();
        assert!(inbox.recv(&mut batch).await);
        let kinds: Vec<&str> = batch
            .iter()
            .map(|m| match m {
                Outbound::Packet(Packet::PingReq) => "req",
                Outbound::Packet(_) => "resp",
                Outbound::Close => "close",
            })
            .collect();
        assert_eq!(kinds, ["req", "resp", "resp", "close"]);
    }

    #[tokio::test]
    async fn shedding_gives_up_an_empty_queues_room_and_keeps_what_waits() {
        let (outbox, inbox) = mailbox();
        let mut burst: Vec<Outbound> = (0..32).map(|_| packet()).collect();
        outbox.send_all(&mut burst);
        let mut batch = VecDeque::new();
        assert!(inbox.recv(&mut batch).await);
        batch.clear();
        // The burst's room went back to the mailbox with the next turn.
        outbox.send(packet());
        assert!(inbox.recv(&mut batch).await);
        assert!(inbox.0.lock().queue.capacity() >= 32);
        inbox.shed();
        assert_eq!(inbox.0.lock().queue.capacity(), 0);

        outbox.send(packet());
        inbox.shed();
        assert_eq!(inbox.0.lock().queue.len(), 1, "a waiting packet stays");
    }

    #[tokio::test]
    async fn nothing_is_kept_for_a_task_that_is_gone() {
        let (outbox, inbox) = mailbox();
        drop(inbox);
        assert!(!outbox.send(packet()));
        let mut staged = vec![packet()];
        outbox.send_all(&mut staged);
        assert!(staged.is_empty());
        assert_eq!(outbox.pending(), 0);
    }
}

//! A connection with nothing to do gives up its task: its state waits here, and whatever wakes
//! it (the socket, the mailbox, the keep-alive timer) starts a task for it again.
//!
//! Most connections are idle most of the time, and a tokio task is the largest thing an idle
//! connection would hold: the task's cell is aligned to 128 bytes on x86-64, 512 bytes for the
//! connected phase's future, against this one allocation of the state it keeps (`bench conns`).
//! A connection parks only after a quiet spell (`PARK_AFTER`), so that a busy one does not pay a
//! task's start per wake-up.
//!
//! ```text
//!   task: wait ─ quiet for PARK_AFTER ─▶ sources polled with this waker ─▶ state left here,
//!                                                                          the task ends
//!   socket / mailbox / timer ─ wake ─▶ state taken out ─▶ a new task serves it (`resume`)
//! ```
//!
//! The wakers are registered before the state is left here: a wake in between (on another
//! thread, or inside the poll itself) is noted, and the task then goes on instead of ending.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Wake;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::serve::Serving;

/// How long a connection stays quiet (no packet in or out) before it parks: it parks between
/// one and two of these after its last packet (the check rides on the keep-alive timer). A
/// second: a device that reports every second or more often keeps its task (a park and a
/// task's start per message would cost more than the task's room), one that reports less
/// often, or only pings, gives it up between its packets.
pub(super) const PARK_AFTER: Duration = Duration::from_secs(1);

/// Where a parked connection is. One lock guards it all: the wakes that race the task are
/// few (a parked connection is quiet), and the variants without data fit in the state's own
/// spare bit patterns, so the slot is no larger than the state.
enum Slot<T> {
    /// The task registers this waker; nothing has woken it yet.
    Parking,
    /// Woken before the task left its state here: the task goes on with it.
    Notified,
    /// Here, and no task serves it.
    Parked(T),
    /// Woken (or the task went on): later wakes do nothing.
    Done,
}

/// What is parked: started again on the runtime when woken.
pub(super) trait Resume: Send + 'static {
    fn resume(self, runtime: &tokio::runtime::Handle);
}

impl<R, W> Resume for Serving<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    fn resume(self, runtime: &tokio::runtime::Handle) {
        // After the runtime's shutdown the task is dropped at once, and the connection with
        // it: nothing is left behind.
        drop(runtime.spawn(super::serve::resume(self)));
    }
}

/// A parked connection: its state, and the runtime that serves it again.
pub(super) struct Parked<T> {
    slot: Mutex<Slot<T>>,
    /// A wake may come from a thread outside the runtime (the broker thread's mailbox).
    runtime: tokio::runtime::Handle,
}

impl<T> Parked<T> {
    /// Called by the connection's task, inside the runtime.
    pub(super) fn new() -> Arc<Parked<T>> {
        Arc::new(Parked {
            slot: Mutex::new(Slot::Parking),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Leaves `serving` here once every source it waits on holds this waker. `None`: parked,
    /// the task may end; `Some`: woken meanwhile, the task goes on with it.
    pub(super) fn park(&self, serving: T) -> Option<T> {
        let mut slot = self.slot();
        match *slot {
            Slot::Parking => {
                *slot = Slot::Parked(serving);
                None
            }
            _ => {
                *slot = Slot::Done;
                Some(serving)
            }
        }
    }

    fn slot(&self) -> MutexGuard<'_, Slot<T>> {
        // Nothing runs under this lock that could panic half-way.
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<T: Resume> Wake for Parked<T> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut slot = self.slot();
        match std::mem::replace(&mut *slot, Slot::Done) {
            Slot::Parking => *slot = Slot::Notified,
            Slot::Parked(serving) => {
                // Outside the lock: the new task may be polled on another thread at once.
                drop(slot);
                serving.resume(&self.runtime);
            }
            other => *slot = other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use tokio::sync::mpsc;

    use super::*;

    /// Stands in for a connection: resuming it reports its number.
    struct Marker(u32, mpsc::UnboundedSender<u32>);

    impl Resume for Marker {
        fn resume(self, _runtime: &tokio::runtime::Handle) {
            let _ = self.1.send(self.0);
        }
    }

    #[tokio::test]
    async fn a_wake_after_parking_resumes_once_and_later_wakes_do_nothing() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let parked = Parked::new();
        let waker = Waker::from(parked.clone());
        assert!(
            parked.park(Marker(1, tx)).is_none(),
            "nothing woke it: parked"
        );
        waker.wake_by_ref();
        waker.wake_by_ref();
        waker.wake();
        assert_eq!(rx.recv().await, Some(1));
        assert!(
            rx.try_recv().is_err(),
            "resumed once, and the marker dropped"
        );
    }

    #[tokio::test]
    async fn a_wake_while_parking_hands_the_state_back() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let parked = Parked::new();
        // A source woke it between its poll and the park (or inside the poll itself).
        Waker::from(parked.clone()).wake();
        let back = parked.park(Marker(2, tx));
        assert_eq!(
            back.map(|marker| marker.0),
            Some(2),
            "the task goes on with it"
        );
        Waker::from(parked).wake();
        assert!(rx.try_recv().is_err(), "and no second task is started");
    }

    #[test]
    fn wakes_from_many_threads_resume_exactly_once() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for round in 0..200 {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let parked: Arc<Parked<Marker>> = runtime.block_on(async { Parked::new() });
            let wakers: Vec<_> = (0..4)
                .map(|_| {
                    let waker = Waker::from(parked.clone());
                    std::thread::spawn(move || waker.wake())
                })
                .collect();
            let back = parked.park(Marker(round, tx));
            for waker in wakers {
                waker.join().unwrap();
            }
            let resumed = rx.try_recv().ok();
            assert!(
                back.is_some() != resumed.is_some(),
                "round {round}: handed back {}, resumed {resumed:?}",
                back.is_some()
            );
        }
    }
}

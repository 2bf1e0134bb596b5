//! Draining: a node about to stop sends its clients to the other nodes first, a few at a time,
//! so that their persistent sessions move by takeover as they reconnect and the others never
//! meet the whole reconnect storm at once.
//!
//! ```text
//!  SIGTERM / POST /api/v1/drain ─▶ draining: /ready 503 (the load balancer sends no one new),
//!                                  new CONNECTs refused (MQTT 5: CONNACK 0x9C, 3.1.1: code 3)
//!  every tick ─Command::Drain{n}─▶ broker: n connections end with CloseReason::Drained
//!                                  (MQTT 5: DISCONNECT 0x9C Use another server)
//!  no connection left and, in a cluster, every drained session taken over by the node its
//!  client reconnected to (so nothing waits for this node to come back), or the grace period
//!  over ─▶ the usual shutdown (0x8B to the rest)
//! ```
//! The broker thread decides what a drained connection means for its session (core's
//! `CloseReason::Drained`); this only paces it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc::Sender;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::cluster_port::ClusterPort;
use crate::runtime::Command;

/// How often the drain hands the broker its next share of connections.
const TICK: Duration = Duration::from_millis(100);

/// How a node drains before it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainSettings {
    /// The longest the drain may take; zero: no drain, every connection is closed at once.
    pub grace: Duration,
    /// Connections closed per second; `None`: all at once.
    pub per_second: Option<u64>,
}

/// No drain: the library's default keeps `serve`'s shutdown as it was (every connection hears
/// 0x8B at once); the `berth` binary's configuration drains for 10 s by default.
impl Default for DrainSettings {
    fn default() -> Self {
        DrainSettings {
            grace: Duration::ZERO,
            per_second: None,
        }
    }
}

/// Whether the node is draining, and the way to ask it to (shared with the HTTP side).
#[derive(Debug, Default)]
pub struct DrainState {
    draining: AtomicBool,
    asked: Notify,
}

impl DrainState {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Asks the node to drain and then stop, as SIGTERM does.
    pub fn ask(&self) {
        // `notify_one` keeps the request if nobody waits yet.
        self.asked.notify_one();
    }

    pub(crate) async fn asked(&self) {
        self.asked.notified().await;
    }

    /// From now on `/ready` answers 503 and new CONNECTs are sent elsewhere.
    pub(crate) fn mark_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// What a drain came to, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Drained {
    pub took: Duration,
    /// Connections still open when it ended (at the end of the grace period).
    pub left: usize,
    /// Drained clients' sessions still held here (their clients did not reconnect elsewhere
    /// in time: they are taken over when the node is back, or pulled as stranded copies).
    pub held: usize,
}

/// Drains the node: marks it draining, then has the broker close connections at the configured
/// pace until none is left or the grace period is over. `None`: no drain (zero grace).
pub(crate) async fn run(
    state: &DrainState,
    settings: DrainSettings,
    commands: &Sender<Command>,
    cluster: &dyn ClusterPort,
) -> Option<Drained> {
    if settings.grace.is_zero() {
        return None;
    }
    // With other nodes to go to, a drained session is followed until its new node has it;
    // alone, its client can only come back here.
    let sessions_move = cluster.health().await.is_some_and(|h| h.voters > 1);
    state.mark_draining();
    let started = Instant::now();
    let deadline = started + settings.grace;
    tracing::info!(
        grace = ?settings.grace,
        per_second = settings.per_second,
        "draining: sending clients to other nodes"
    );
    let mut closed: u64 = 0;
    let mut left = usize::MAX;
    let mut held = 0;
    loop {
        // The share allowed so far at the configured pace, less what was already closed.
        let count = match settings.per_second {
            None => usize::MAX,
            Some(rate) => {
                let allowed = (started.elapsed().as_secs_f64() * rate as f64).ceil() as u64;
                usize::try_from(allowed.max(1).saturating_sub(closed)).unwrap_or(usize::MAX)
            }
        };
        let (reply, answer) = oneshot::channel();
        if commands
            .send(Command::Drain { count, reply })
            .await
            .is_err()
        {
            break;
        }
        let Ok(outcome) = answer.await else { break };
        closed += outcome.closed as u64;
        left = outcome.left;
        held = if sessions_move { outcome.held } else { 0 };
        if (left == 0 && held == 0) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(TICK.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
    let drained = Drained {
        took: started.elapsed(),
        left: if left == usize::MAX { 0 } else { left },
        held,
    };
    if drained.left == 0 && drained.held == 0 {
        tracing::info!(took = ?drained.took, closed, "drained: no connection left");
    } else {
        tracing::warn!(
            took = ?drained.took,
            closed,
            left = drained.left,
            sessions_not_moved = drained.held,
            "drain grace period over; closing the rest (sessions left here move when their clients reconnect once this node is back)"
        );
    }
    Some(drained)
}

/// The broker's answer to one `Command::Drain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DrainStep {
    /// Connections it closed for this step.
    pub closed: usize,
    /// Connections still open after it.
    pub left: usize,
    /// Sessions of drained clients still held here (not yet taken over elsewhere).
    pub held: usize,
}

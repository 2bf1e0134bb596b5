//! The broker thread: the single owner of `Broker`, fed by connections through one channel.
//!
//! ```text
//!  connection tasks ──Command──▶ std mpsc ──▶ broker thread
//!                                              loop {
//!                                                wait for a command (or the next timer)
//!                                                handle it and every command already waiting
//!                                                  (each event = one store write: WAL, kill-safe)
//!                                                storage.sync → one fsync for the whole group
//!                                                send the group's actions to the connections
//!                                              }
//! ```
//! Acknowledgements leave only after the write (and fsync) that made them true: group commit.
//! The broker runs on its own OS thread because RocksDB calls block; it never awaits.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_codec::{Connect, Packet};
use berth_core::{Action, Broker, CloseReason, ConnId, Event, Store, StoreError, UnixMillis};
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::Metrics;

/// Most commands handled before the group is committed and its actions sent.
const GROUP_LIMIT: usize = 4096;
/// How often the metrics are refreshed and how long the loop sleeps with no timer due.
const IDLE_WAKE: Duration = Duration::from_millis(500);

/// From a connection task to the broker thread.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // boxing every packet would cost an allocation per message
pub(crate) enum Command {
    Connect {
        conn: ConnId,
        connect: Box<Connect>,
        outbound: UnboundedSender<Outbound>,
    },
    Packet {
        conn: ConnId,
        packet: Packet,
    },
    Closed {
        conn: ConnId,
        reason: CloseReason,
    },
    Shutdown,
}

/// From the broker thread to a connection task.
// Nearly every message is a `Packet`; boxing it would add an allocation to each one sent.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Outbound {
    Packet(Packet),
    Close,
}

pub(crate) fn now() -> UnixMillis {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    UnixMillis(u64::try_from(millis).unwrap_or(u64::MAX))
}

pub(crate) struct BrokerLoop<S: Store> {
    pub broker: Broker<S>,
    pub commands: Receiver<Command>,
    pub storage_sync: bool,
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
}

impl<S: Store> BrokerLoop<S> {
    /// Runs until `Command::Shutdown` or every sender is gone.
    pub(crate) fn run(mut self) -> Result<(), StoreError> {
        let mut connections: HashMap<ConnId, UnboundedSender<Outbound>> = HashMap::new();
        let mut last_metrics = Instant::now();
        self.ready.store(true, Ordering::SeqCst);
        let result = loop {
            let timeout = self.time_to_next_deadline();
            let first = match self.commands.recv_timeout(timeout) {
                Ok(command) => Some(command),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(Command::Shutdown),
            };
            let mut shutdown = false;
            let mut outcome = Ok(());
            let mut pending = first;
            let mut handled = 0;
            while let Some(command) = pending.take() {
                match command {
                    Command::Shutdown => {
                        shutdown = true;
                        break;
                    }
                    command => {
                        outcome = self.apply(command, &mut connections);
                        if outcome.is_err() {
                            break;
                        }
                    }
                }
                handled += 1;
                if handled < GROUP_LIMIT {
                    pending = self.commands.try_recv().ok();
                }
            }
            if outcome.is_ok() && self.broker.next_deadline().is_some_and(|at| at <= now()) {
                outcome = self.broker.handle(now(), Event::Tick);
            }
            if shutdown && outcome.is_ok() {
                let conns: Vec<ConnId> = connections.keys().copied().collect();
                for conn in conns {
                    let event = Event::Closed {
                        conn,
                        reason: CloseReason::ServerShutdown,
                    };
                    if let Err(error) = self.broker.handle(now(), event) {
                        outcome = Err(error);
                        break;
                    }
                }
            }
            if outcome.is_ok() && self.storage_sync {
                outcome = self.broker.store_mut().sync();
            }
            if let Err(error) = outcome {
                // The promise behind every acknowledgement is gone: send none, stop.
                tracing::error!(%error, "storage failed; the broker stops");
                break Err(error);
            }
            dispatch(self.broker.take_actions(), &mut connections);
            if shutdown {
                break Ok(());
            }
            if last_metrics.elapsed() >= IDLE_WAKE {
                self.metrics.observe(self.broker.stats());
                last_metrics = Instant::now();
            }
        };
        self.ready.store(false, Ordering::SeqCst);
        self.metrics.observe(self.broker.stats());
        for (_, outbound) in connections.drain() {
            let _ = outbound.send(Outbound::Close);
        }
        result
    }

    fn apply(
        &mut self,
        command: Command,
        connections: &mut HashMap<ConnId, UnboundedSender<Outbound>>,
    ) -> Result<(), StoreError> {
        let event = match command {
            Command::Connect {
                conn,
                connect,
                outbound,
            } => {
                connections.insert(conn, outbound);
                Event::Connect { conn, connect }
            }
            Command::Packet { conn, packet } => Event::Packet { conn, packet },
            Command::Closed { conn, reason } => Event::Closed { conn, reason },
            Command::Shutdown => return Ok(()),
        };
        self.broker.handle(now(), event)
    }

    fn time_to_next_deadline(&self) -> Duration {
        match self.broker.next_deadline() {
            Some(at) => Duration::from_millis(at.0.saturating_sub(now().0)).min(IDLE_WAKE),
            None => IDLE_WAKE,
        }
    }
}

fn dispatch(actions: Vec<Action>, connections: &mut HashMap<ConnId, UnboundedSender<Outbound>>) {
    for action in actions {
        match action {
            Action::Send { conn, packet } => {
                if let Some(outbound) = connections.get(&conn) {
                    let _ = outbound.send(Outbound::Packet(packet));
                }
            }
            Action::Close { conn } => {
                if let Some(outbound) = connections.remove(&conn) {
                    let _ = outbound.send(Outbound::Close);
                }
            }
        }
    }
}

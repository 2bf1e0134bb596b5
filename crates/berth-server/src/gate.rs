//! Admission of new connections before anything is read from them: how many may be open at
//! once (`limits.max_connections`, and a listener's own `max_connections`) and how many may
//! start per second (`limits.connection_rate`, a token bucket holding one second's worth). A
//! refused connection is closed at once, counted by reason: it costs an accept and a close, no
//! task, no parsing, which is what makes a connection storm cheap to turn away.
//!
//! ```text
//!   accept ─▶ listener's place free? ─no─▶ close (berth_listener_refusals_total{listener,reason})
//!                 │yes
//!                 ▼
//!             node's place free, rate credit? ─no─▶ close (berth_connections_refused_total{reason})
//!                 │yes
//!                 ▼
//!             Permit (both places, given back when the connection's task ends)
//! ```
//! The listener is asked first so that a connection its own limit refuses takes nothing of the
//! node's rate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// What the gate lets through; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionLimits {
    pub max_connections: Option<u64>,
    pub per_second: Option<u64>,
}

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The node's `limits.max_connections`.
    MaxConnections,
    /// The node's `limits.connection_rate`.
    ConnectionRate,
    /// The listener's own `max_connections`.
    ListenerMaxConnections,
}

impl Refused {
    /// The node's reasons (`berth_connections_refused_total`).
    pub(crate) const REASONS: [&'static str; 2] = ["max_connections", "connection_rate"];
    /// A listener's reasons (`berth_listener_refusals_total`).
    pub(crate) const LISTENER_REASONS: [&'static str; 1] = ["max_connections"];

    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refused::MaxConnections | Refused::ListenerMaxConnections => "max_connections",
            Refused::ConnectionRate => "connection_rate",
        }
    }

    /// Whether the listener's own limit refused it (counted by listener), not the node's.
    pub(crate) fn by_listener(self) -> bool {
        self == Refused::ListenerMaxConnections
    }
}

/// Shared by every listener: the limits are the node's.
#[derive(Debug)]
pub(crate) struct Gate {
    limits: ConnectionLimits,
    open: AtomicUsize,
    /// Credit in thousandths of a connection, as of the instant. A std mutex: one accept at a
    /// time takes it, for a few instructions, never across an await.
    bucket: Mutex<(u64, Instant)>,
}

/// One listener's own limit of open connections (and its count); `max: None`: no limit of
/// its own, only the node's.
#[derive(Debug)]
pub(crate) struct ListenerGate {
    max: Option<u64>,
    open: AtomicUsize,
}

impl ListenerGate {
    pub(crate) fn new(max: Option<u64>) -> Arc<ListenerGate> {
        Arc::new(ListenerGate {
            max,
            open: AtomicUsize::new(0),
        })
    }
}

/// Held by a connection's task for as long as it is open: its place under the node's limits
/// and, when it came through a listener, under the listener's.
#[derive(Debug)]
pub(crate) struct Permit {
    node: Arc<Gate>,
    listener: Option<Arc<ListenerGate>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.node.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(listener) = &self.listener {
            listener.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A listener's place, given back when dropped (before it becomes part of a [`Permit`]).
struct ListenerPlace(Option<Arc<ListenerGate>>);

impl Drop for ListenerPlace {
    fn drop(&mut self) {
        if let Some(listener) = &self.0 {
            listener.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Gate {
    pub(crate) fn new(limits: ConnectionLimits) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            open: AtomicUsize::new(0),
            bucket: Mutex::new((burst(limits.per_second), Instant::now())),
        })
    }

    /// Admits a connection accepted on `listener`: the listener's own limit first, so that a
    /// refusal there costs none of the node's places or rate; a refusal by the node gives the
    /// listener's place back.
    pub(crate) fn admit(
        self: &Arc<Self>,
        listener: Option<&Arc<ListenerGate>>,
        now: Instant,
    ) -> Result<Permit, Refused> {
        let mut place = ListenerPlace(None);
        if let Some(gate) = listener {
            let open = gate.open.fetch_add(1, Ordering::Relaxed);
            place.0 = Some(gate.clone());
            if let Some(max) = gate.max
                && open as u64 >= max
            {
                return Err(Refused::ListenerMaxConnections);
            }
        }
        let open = self.open.fetch_add(1, Ordering::Relaxed);
        let permit = Permit {
            node: self.clone(),
            listener: place.0.take(),
        };
        if let Some(max) = self.limits.max_connections
            && open as u64 >= max
        {
            return Err(Refused::MaxConnections);
        }
        if let Some(per_second) = self.limits.per_second {
            let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
            let (credit, at) = &mut *bucket;
            let elapsed = now.saturating_duration_since(*at).as_millis() as u64;
            *at = now;
            *credit = credit
                .saturating_add(elapsed.saturating_mul(per_second))
                .min(burst(Some(per_second)));
            if *credit < 1000 {
                return Err(Refused::ConnectionRate);
            }
            *credit -= 1000;
        }
        Ok(permit)
    }
}

fn burst(per_second: Option<u64>) -> u64 {
    per_second.map_or(u64::MAX, |rate| rate.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn at_most_max_connections_are_open_and_a_closed_one_frees_its_place() {
        let gate = Gate::new(ConnectionLimits {
            max_connections: Some(2),
            per_second: None,
        });
        let now = Instant::now();
        let first = gate.admit(None, now).unwrap();
        let _second = gate.admit(None, now).unwrap();
        assert_eq!(gate.admit(None, now).unwrap_err(), Refused::MaxConnections);
        drop(first);
        assert!(gate.admit(None, now).is_ok());
    }

    #[test]
    fn the_rate_allows_a_second_s_worth_at_once_then_refills_over_time() {
        let gate = Gate::new(ConnectionLimits {
            max_connections: None,
            per_second: Some(10),
        });
        let start = Instant::now();
        let mut held = Vec::new();
        for _ in 0..10 {
            held.push(gate.admit(None, start).unwrap());
        }
        assert_eq!(
            gate.admit(None, start).unwrap_err(),
            Refused::ConnectionRate
        );
        // 100 ms later: one more.
        let later = start + Duration::from_millis(100);
        assert!(gate.admit(None, later).is_ok());
        assert_eq!(
            gate.admit(None, later).unwrap_err(),
            Refused::ConnectionRate
        );
        // Long idle: the bucket holds no more than one second's worth.
        let much_later = later + Duration::from_secs(60);
        for _ in 0..10 {
            held.push(gate.admit(None, much_later).unwrap());
        }
        assert!(gate.admit(None, much_later).is_err());
    }

    #[test]
    fn without_limits_everything_is_admitted() {
        let gate = Gate::new(ConnectionLimits::default());
        let now = Instant::now();
        let permits: Vec<_> = (0..1000).map(|_| gate.admit(None, now).unwrap()).collect();
        assert_eq!(permits.len(), 1000);
    }

    #[test]
    fn a_listener_s_own_limit_refuses_on_it_alone_and_takes_nothing_of_the_node_s() {
        let gate = Gate::new(ConnectionLimits {
            max_connections: Some(3),
            per_second: Some(3),
        });
        let small = ListenerGate::new(Some(1));
        let other = ListenerGate::new(None);
        let now = Instant::now();
        let first = gate.admit(Some(&small), now).unwrap();
        let refused = gate.admit(Some(&small), now).unwrap_err();
        assert_eq!(refused, Refused::ListenerMaxConnections);
        assert!(refused.by_listener());
        assert_eq!(refused.reason(), "max_connections");
        // The refusal used none of the node's rate nor its places: two more elsewhere.
        let _a = gate.admit(Some(&other), now).unwrap();
        let _b = gate.admit(Some(&other), now).unwrap();
        // The node is full now (3 open); the listener's limit is not what refuses.
        let later = now + Duration::from_secs(1);
        let refused = gate.admit(Some(&other), later).unwrap_err();
        assert_eq!(refused, Refused::MaxConnections);
        assert!(!refused.by_listener());
        // Closing the one on the small listener frees both of its places.
        drop(first);
        assert!(gate.admit(Some(&small), later).is_ok());
        assert_eq!(small.open.load(Ordering::Relaxed), 0, "given back again");
        assert_eq!(gate.open.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_connection_the_node_refuses_gives_its_listener_place_back() {
        let gate = Gate::new(ConnectionLimits {
            max_connections: Some(1),
            per_second: None,
        });
        let listener = ListenerGate::new(Some(5));
        let now = Instant::now();
        let _held = gate.admit(Some(&listener), now).unwrap();
        for _ in 0..10 {
            assert_eq!(
                gate.admit(Some(&listener), now).unwrap_err(),
                Refused::MaxConnections
            );
        }
        assert_eq!(listener.open.load(Ordering::Relaxed), 1);
    }
}

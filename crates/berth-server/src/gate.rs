//! Admission of new connections before anything is read from them: how many may be open at
//! once (`limits.max_connections`) and how many may start per second
//! (`limits.connection_rate`, a token bucket holding one second's worth). A refused connection
//! is closed at once, counted by reason: it costs an accept and a close, no task, no parsing,
//! which is what makes a connection storm cheap to turn away.

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
    MaxConnections,
    ConnectionRate,
}

impl Refused {
    pub(crate) const REASONS: [&'static str; 2] = ["max_connections", "connection_rate"];

    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refused::MaxConnections => "max_connections",
            Refused::ConnectionRate => "connection_rate",
        }
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

/// Held by a connection's task for as long as it is open.
#[derive(Debug)]
pub(crate) struct Permit(Arc<Gate>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
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

    pub(crate) fn admit(self: &Arc<Self>, now: Instant) -> Result<Permit, Refused> {
        let open = self.open.fetch_add(1, Ordering::Relaxed);
        let permit = Permit(self.clone());
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
        let first = gate.admit(now).unwrap();
        let _second = gate.admit(now).unwrap();
        assert_eq!(gate.admit(now).unwrap_err(), Refused::MaxConnections);
        drop(first);
        assert!(gate.admit(now).is_ok());
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
            held.push(gate.admit(start).unwrap());
        }
        assert_eq!(gate.admit(start).unwrap_err(), Refused::ConnectionRate);
        // 100 ms later: one more.
        let later = start + Duration::from_millis(100);
        assert!(gate.admit(later).is_ok());
        assert_eq!(gate.admit(later).unwrap_err(), Refused::ConnectionRate);
        // Long idle: the bucket holds no more than one second's worth.
        let much_later = later + Duration::from_secs(60);
        for _ in 0..10 {
            held.push(gate.admit(much_later).unwrap());
        }
        assert!(gate.admit(much_later).is_err());
    }

    #[test]
    fn without_limits_everything_is_admitted() {
        let gate = Gate::new(ConnectionLimits::default());
        let now = Instant::now();
        let permits: Vec<_> = (0..1000).map(|_| gate.admit(now).unwrap()).collect();
        assert_eq!(permits.len(), 1000);
    }
}

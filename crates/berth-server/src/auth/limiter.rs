//! Failed-authentication limits per source address: what keeps a password file from being
//! guessed at argon2 speed by one client that reconnects in a loop.
//!
//! Sans-IO: every method takes `now`, so tests drive the clock; [`super::Authenticator`] passes
//! `Instant::now()` and keeps the table behind a mutex.
//!
//! Rules:
//! - **Window.** An address's window opens at its first failure and lasts [`FAILURE_WINDOW`].
//!   Once it holds [`MAX_FAILURES`] failures the address is refused without any check until the
//!   window closes; the next failure after that opens a new window. A success does not reset
//!   the count: otherwise one valid account would let its owner guess other users' passwords
//!   from the same address without limit.
//! - **Sources.** An IPv4-mapped IPv6 address (what a dual-stack listener reports for IPv4
//!   clients) counts as the IPv4 address. Other IPv6 addresses count by their /64 prefix: one
//!   host is usually given a whole /64, so limiting single addresses would limit nothing.
//! - **Bounded memory.** At most `capacity` sources are tracked. A new source in a full table
//!   first evicts every closed window, then, if none had closed, the oldest window. Under a
//!   spread-out attack that loses some counts, which is the price of not growing without bound.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Failures from one source within [`FAILURE_WINDOW`] before it is refused outright.
pub const MAX_FAILURES: u32 = 10;
/// How long a source's failures count, from the first one.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Sources tracked at once by the broker's limiter.
pub const MAX_TRACKED_SOURCES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    opened: Instant,
    failures: u32,
}

impl Window {
    fn closed(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.opened) >= FAILURE_WINDOW
    }
}

/// Recent failures per source, bounded to a fixed number of sources.
#[derive(Debug)]
pub struct Limiter {
    windows: HashMap<IpAddr, Window>,
    capacity: usize,
}

impl Limiter {
    /// A limiter tracking at most `capacity` sources (at least one).
    pub fn new(capacity: usize) -> Self {
        Limiter {
            windows: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether `addr` has used up its failures for the current window.
    pub fn is_limited(&self, addr: IpAddr, now: Instant) -> bool {
        self.windows
            .get(&source(addr))
            .is_some_and(|window| !window.closed(now) && window.failures >= MAX_FAILURES)
    }

    /// Counts one failed authentication from `addr`.
    pub fn record_failure(&mut self, addr: IpAddr, now: Instant) {
        let source = source(addr);
        if let Some(window) = self.windows.get_mut(&source) {
            if window.closed(now) {
                *window = Window {
                    opened: now,
                    failures: 1,
                };
            } else {
                window.failures = window.failures.saturating_add(1);
            }
            return;
        }
        self.make_room(now);
        self.windows.insert(
            source,
            Window {
                opened: now,
                failures: 1,
            },
        );
    }

    /// Frees one slot if the table is full: closed windows first, else the oldest one.
    fn make_room(&mut self, now: Instant) {
        if self.windows.len() < self.capacity {
            return;
        }
        self.windows.retain(|_, window| !window.closed(now));
        if self.windows.len() < self.capacity {
            return;
        }
        // A linear scan: it only runs while more than `capacity` sources are failing within
        // one window, and each of those failures has just cost an argon2 verification.
        let oldest = self
            .windows
            .iter()
            .min_by_key(|(_, window)| window.opened)
            .map(|(source, _)| *source);
        if let Some(oldest) = oldest {
            self.windows.remove(&oldest);
        }
    }

    /// How many sources the table holds.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.windows.len()
    }
}

/// The key failures are counted under (see the module docs).
fn source(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
        }
        v4 @ IpAddr::V4(_) => v4,
    }
}

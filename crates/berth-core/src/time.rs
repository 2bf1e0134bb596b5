//! Wall-clock time as the core sees it: injected by the caller with every event, never read.

use std::fmt;

/// Milliseconds since the Unix epoch. Absolute, so persisted deadlines keep counting while the
/// broker is down (ARCHITECTURE §2: expiry deadlines are absolute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    pub fn plus_millis(self, millis: u64) -> UnixMillis {
        UnixMillis(self.0.saturating_add(millis))
    }

    pub fn plus_secs(self, secs: u32) -> UnixMillis {
        self.plus_millis(u64::from(secs) * 1000)
    }

    /// Whole seconds from `self` until `later`, rounded up; zero if `later` has passed.
    pub fn secs_until(self, later: UnixMillis) -> u32 {
        let millis = later.0.saturating_sub(self.0);
        u32::try_from(millis.div_ceil(1000)).unwrap_or(u32::MAX)
    }
}

impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

//! Latency distributions: an HDR histogram in nanoseconds (3 significant digits, so p99 is exact
//! to 0.1 %), summarised in microseconds.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Values are clamped into this range: 1 ns to 10 minutes.
const LOWEST_NS: u64 = 1;
const HIGHEST_NS: u64 = 600_000_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    #[allow(clippy::expect_used)] // constant bounds, checked by `constant_bounds_are_valid`
    pub fn new() -> Latency {
        Latency {
            histogram: Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)
                .expect("constant histogram bounds are valid"),
        }
    }

    pub fn record_ns(&mut self, ns: u64) {
        self.histogram
            .saturating_record(ns.clamp(LOWEST_NS, HIGHEST_NS));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so every value fits.
        let _ = self.histogram.add(&other.histogram);
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn summary(&self) -> LatencySummary {
        let h = &self.histogram;
        if h.is_empty() {
            return LatencySummary::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1000.0,
        }
    }
}

/// Percentiles in microseconds; all zero when nothing was recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= expected * 0.002 + 0.001
    }

    #[test]
    fn constant_bounds_are_valid() {
        assert!(
            Histogram::<u64>::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS).is_ok()
        );
        assert_eq!(Latency::new().histogram.high(), HIGHEST_NS);
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut l = Latency::new();
        // 1 µs .. 10 ms in 1 µs steps.
        for us in 1..=10_000u64 {
            l.record_ns(us * 1000);
        }
        let s = l.summary();
        assert_eq!(s.count, 10_000);
        assert!(close(s.p50_us, 5_000.0), "{s:?}");
        assert!(close(s.p90_us, 9_000.0), "{s:?}");
        assert!(close(s.p99_us, 9_900.0), "{s:?}");
        assert!(close(s.p999_us, 9_990.0), "{s:?}");
        assert!(close(s.max_us, 10_000.0), "{s:?}");
        assert!(close(s.mean_us, 5_000.5), "{s:?}");
    }

    #[test]
    fn a_rare_outlier_shows_in_max_but_not_p99() {
        let mut l = Latency::new();
        for _ in 0..999 {
            l.record_ns(200_000);
        }
        l.record_ns(50_000_000);
        let s = l.summary();
        assert!(close(s.p99_us, 200.0), "{s:?}");
        assert!(close(s.max_us, 50_000.0), "{s:?}");
    }

    #[test]
    fn out_of_range_values_are_clamped_not_dropped() {
        let mut l = Latency::new();
        l.record_ns(0);
        l.record_ns(u64::MAX);
        let s = l.summary();
        assert_eq!(s.count, 2);
        assert!(close(s.max_us, HIGHEST_NS as f64 / 1000.0), "{s:?}");
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        a.record_ns(1_000);
        b.record_ns(3_000);
        b.record_ns(3_000);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert!(close(a.summary().max_us, 3.0));
    }

    #[test]
    fn empty_summary_is_zero() {
        assert_eq!(Latency::new().summary(), LatencySummary::default());
    }
}

//! The process-level chaos test's parts (`crates/berth/tests/chaos.rs`): HAProxy in front of the
//! nodes, a connection that survives failures, the devices, the publishers, the nemesis and the
//! checker, with what they share. Kept apart from the test so each file stays readable; nothing
//! here decides a verdict except `checker`.

pub mod checker;
pub mod conn;
pub mod devices;
pub mod haproxy;
pub mod nemesis;
pub mod publishers;
pub mod scenario;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use checker::Records;

/// SplitMix64: the test's only randomness, from one printed seed, so a run's schedule of
/// faults, hops and pauses can be told apart from another's and repeated as far as real
/// processes allow.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }

    pub fn millis(&mut self, low: u64, high: u64) -> std::time::Duration {
        std::time::Duration::from_millis(self.range(low, high))
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// A new generator for a task, derived from this one.
    pub fn fork(&mut self) -> Rng {
        Rng(self.next_u64())
    }
}

/// What the clients and the nemesis share.
#[derive(Debug)]
pub struct Shared {
    pub records: Mutex<Records>,
    pub stop: AtomicBool,
    /// The node under a fault now (0: none); direct connections avoid it.
    pub faulty: AtomicU64,
    /// haproxy's address.
    pub lb: SocketAddr,
    /// Each node's MQTT address (node N at N-1).
    pub nodes: Vec<SocketAddr>,
    pub devices: usize,
    /// Messages per second per publisher.
    pub rate: u64,
}

impl Shared {
    pub fn records(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub async fn until_stopped(&self) {
        while !self.stopped() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

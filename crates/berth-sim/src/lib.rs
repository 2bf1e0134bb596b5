//! Berth's deterministic cluster simulator (FoundationDB / turmoil style).
//!
//! Three nodes run the *real* sans-IO broker core (`berth_core::Broker<MemStore>`) and apply the
//! *real* replicated registry (core's `Registry::apply`, fed the log's protobuf commands through
//! `berth_cluster::convert::apply` as the state machine does). What the server does around them in tokio tasks (claims, takeover pulls, forwarding with retries,
//! stranded-backlog offers) is modelled here as explicit state machines driven by one event
//! queue in simulated time, over a simulated network with seeded delays, pauses, crashes
//! (kill -9: the store keeps every written batch, as RocksDB's WAL does) and partitions.
//! Simulated MQTT clients (persistent devices, QoS 1/2 publishers) hop between nodes, and a
//! checker holds the run to Berth's promises (see `checker.rs`).
//!
//! ```text
//!  seed ─▶ Rng ─▶ schedule (client ops, nemesis, scripted stale-copy scenario), delays
//!  event queue (time, seq) ─▶ Sim::dispatch ─┬─ Node: Broker::handle ─▶ actions ─▶ net / clients
//!                                            ├─ Raft: one log; commit iff the proposer reaches
//!                                            │        a majority; nodes apply when connected
//!                                            └─ Clients: MQTT packets (encoded + decoded)
//!  heal ─▶ settle ─▶ Checker ─▶ Report { counts, violations }
//! ```
//!
//! Everything is a function of the seed: collections that order the schedule are `BTreeMap`s
//! and `Vec`s, and the broker's actions (whose order across destinations may follow its
//! internal `HashMap`s) are put in a canonical order before they are executed.

/// Adds a line to the run's trace (only formatted when tracing).
macro_rules! trace {
    ($sim:expr, $($arg:tt)*) => {
        if $sim.tracing() {
            let line = format!($($arg)*);
            $sim.trace_line(line);
        }
    };
}

/// A simulated node, numbered from 1 (core's `berth_core::NodeId` holds the same number).
pub(crate) type NodeId = u64;

mod ack_wait;
mod admission;
mod checker;
mod client;
mod forwarding;
mod leader;
mod net;
mod node;
mod publisher;
mod quiet;
mod raft;
mod replay;
mod rng;
mod schedule;
mod sim;
mod stranded;
mod takeover;
mod wire;

pub use checker::{Report, Violation};
pub use rng::Rng;
pub use schedule::STALE_COPY_WINDOW;

/// What a run looks like. `Default` is the CI mix.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    pub devices: usize,
    pub publishers: usize,
    /// Random schedule steps before the heal phase.
    pub steps: usize,
    /// Simulated milliseconds between steps (uniform in this range).
    pub step_gap_ms: (u64, u64),
    /// Random pauses, crashes and partitions (one at a time).
    pub faults: bool,
    /// Random abrupt disconnects and reconnects of devices and publishers.
    pub bounces: bool,
    /// Probability that a run contains the scripted stale-copy scenario (issue 11).
    pub stale_copy_prob: f64,
    /// Pause length range (simulated ms).
    pub pause_ms: (u64, u64),
    /// How long a crashed node stays down.
    pub crash_down_ms: (u64, u64),
    /// How long a partition lasts.
    pub partition_ms: (u64, u64),
    /// Probability that a device acknowledges a message it receives (before the heal phase).
    pub ack_prob: f64,
    /// Probability that a lagging node catches up by snapshot (`ClusterEvent::Reset`).
    pub snapshot_prob: f64,
    /// Share of QoS 2 publishes.
    pub qos2_share: f64,
    /// `cluster.handoff_after`: how long a forward and a probe may go unanswered before the
    /// forwards are handed back to the broker (hinted handoff; `None`: never, as before it).
    pub handoff_after: Option<u64>,
    /// Probability that a takeover's release never reaches the old owner (its connection reset
    /// on the way): the new owner goes on as after any failed release, and the old owner's copy
    /// stays until it offers it as stranded (`stranded.rs`). 0 draws no random number, so the
    /// other scenarios' seeds replay as before it existed.
    pub release_loss_prob: f64,
    /// Record a human-readable trace of the run.
    pub trace: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 3,
            devices: 6,
            publishers: 3,
            steps: 150,
            step_gap_ms: (20, 400),
            faults: true,
            bounces: true,
            stale_copy_prob: 0.35,
            pause_ms: (1_000, 14_000),
            crash_down_ms: (500, 8_000),
            partition_ms: (1_000, 14_000),
            ack_prob: 0.85,
            snapshot_prob: 0.3,
            qos2_share: 0.25,
            handoff_after: Some(100),
            release_loss_prob: 0.0,
            trace: false,
        }
    }
}

impl SimConfig {
    /// The stale-copy scenario of issue 11 in every run, on a cluster that is otherwise calm
    /// (no random faults, no random reconnects; publishers keep publishing).
    pub fn stale_copy() -> SimConfig {
        SimConfig {
            faults: false,
            bounces: false,
            stale_copy_prob: 1.0,
            ..SimConfig::default()
        }
    }

    /// The chaos schedules with half of the takeovers' releases lost on the way: the old
    /// owner keeps a copy of a session whose new owner has already connected its client, until
    /// it offers that copy back as stranded.
    pub fn lost_release() -> SimConfig {
        SimConfig {
            release_loss_prob: 0.5,
            ..SimConfig::default()
        }
    }

    /// Client hops and load only: no pauses, crashes or partitions.
    pub fn calm() -> SimConfig {
        SimConfig {
            faults: false,
            stale_copy_prob: 0.0,
            ..SimConfig::default()
        }
    }
}

/// Runs one seeded schedule and checks it.
pub fn run(seed: u64, config: &SimConfig) -> Report {
    sim::Sim::new(seed, config.clone()).run()
}

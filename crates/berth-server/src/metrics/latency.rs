//! Latency histograms: how long a client waits for its CONNACK and its PUBACK, and what the
//! steps behind them (group commit, Raft commit, forward to another node) take.

use prometheus::{Histogram, HistogramOpts, HistogramVec, Registry};

use super::MetricsError;

/// 50 µs … 10 s: a local group commit sits at the low end, a takeover or a Raft commit under a
/// partition at the high end.
const BUCKETS: [f64; 17] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// How a CONNECT ended, the `outcome` label of `berth_connect_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// A new session (Session Present 0).
    New,
    /// A session this node held (Session Present 1).
    Resumed,
    /// A session taken over from another node.
    TakenOver,
    /// CONNACK with a refusal.
    Refused,
}

impl ConnectOutcome {
    pub const ALL: [ConnectOutcome; 4] = [Self::New, Self::Resumed, Self::TakenOver, Self::Refused];

    pub fn label(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Resumed => "resumed",
            Self::TakenOver => "taken_over",
            Self::Refused => "refused",
        }
    }
}

/// The histograms, registered in the node's registry.
pub(crate) struct Latency {
    pub connect: HistogramVec,
    pub publish_ack: Histogram,
    pub group_commit: Histogram,
    pub raft_commit: Histogram,
    pub forward: Histogram,
}

impl Latency {
    pub(crate) fn register(registry: &Registry) -> Result<Latency, MetricsError> {
        let histogram = |name: &'static str, help: &str| -> Result<Histogram, MetricsError> {
            let opts = HistogramOpts::new(name, help).buckets(BUCKETS.to_vec());
            super::register(registry, name, Histogram::with_opts(opts))
        };
        let name = "berth_connect_duration_seconds";
        let opts = HistogramOpts::new(
            name,
            "From a CONNECT read off the socket to its CONNACK handed to the connection, by outcome: new (Session Present 0), resumed (a session held here), taken_over (a session pulled from another node), refused. Includes the cluster's claim.",
        )
        .buckets(BUCKETS.to_vec());
        let connect = super::register(registry, name, HistogramVec::new(opts, &["outcome"]))?;
        for outcome in ConnectOutcome::ALL {
            let _ = connect.with_label_values(&[outcome.label()]);
        }
        Ok(Latency {
            connect,
            publish_ack: histogram(
                "berth_publish_ack_duration_seconds",
                "From a QoS 1/2 PUBLISH read off the socket to its PUBACK/PUBREC handed to the connection: the durable write (group commit) and, for subscribers on other nodes, their owners' acknowledgement.",
            )?,
            group_commit: histogram(
                "berth_group_commit_duration_seconds",
                "One group commit of the broker thread: the store write of a group of events and, with storage.sync, its fsync.",
            )?,
            raft_commit: histogram(
                "berth_raft_commit_duration_seconds",
                "From a proposal (a claim, a SUBSCRIBE, a retained message) to its commit and apply by this node's Raft.",
            )?,
            forward: histogram(
                "berth_forward_duration_seconds",
                "Round trip of one batch of messages forwarded to the node owning their sessions, until it has stored them.",
            )?,
        })
    }
}

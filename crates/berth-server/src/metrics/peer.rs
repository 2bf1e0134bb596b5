//! What passes between nodes: messages forwarded to each peer by how their forward ended, and
//! sessions taken over from another node by how the takeover ended. The cluster side
//! (`berth-node`) decides both outcomes and counts them here; the broker thread never sees them.
//!
//! Counting stays off the hot path's allocator: a forward queue resolves its peer's counters
//! once ([`ForwardCounts`]) and a batch then costs one atomic add; takeover counters are
//! resolved at start-up.

use berth_core::NodeId;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use super::MetricsError;

/// How forwarded messages ended, the `result` label of `berth_forwards_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardResult {
    /// The peer stored them for the sessions it owns.
    Stored,
    /// The peer no longer owned some of their sessions: sent on to the new owner (or kept here
    /// for it, when it could not be reached).
    Rerouted,
    /// Not stored before the forward deadline, or no owner took them: their publishers hear a
    /// failure (MQTT 5: an error PUBACK; 3.1.1: the connection closed unacknowledged).
    Failed,
    /// The peer answered neither the forward nor a probe within `cluster.handoff_after`: kept
    /// here (hinted handoff) until it answers again.
    HandedBack,
}

impl ForwardResult {
    /// In the order of the variants (each one's index in [`ForwardCounts`]).
    pub const ALL: [ForwardResult; 4] =
        [Self::Stored, Self::Rerouted, Self::Failed, Self::HandedBack];

    pub fn label(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Rerouted => "rerouted",
            Self::Failed => "failed",
            Self::HandedBack => "handed_back",
        }
    }
}

/// One peer's `berth_forwards_total` series, resolved once (by its forward queue).
#[derive(Debug, Clone)]
pub struct ForwardCounts {
    by_result: [IntCounter; ForwardResult::ALL.len()],
}

impl ForwardCounts {
    /// `messages` forwarded to this peer ended with `result`.
    pub fn add(&self, result: ForwardResult, messages: usize) {
        if messages > 0 {
            self.by_result[result as usize].inc_by(messages as u64);
        }
    }
}

/// How a takeover of a session from another node ended, the `result` label of
/// `berth_takeovers_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeoverResult {
    /// The old owner's state and backlog were pulled and stored here, and its copy released.
    Completed,
    /// The old owner held nothing, but the registry kept the session (its state is on its way
    /// through another node): it goes on with the registry's subscriptions.
    FromRegistry,
    /// The old owner held nothing: the session had ended there, and starts afresh here.
    StartedAfresh,
    /// The old owner did not answer in time, failed, or broke off its stream: the session goes
    /// on with the registry's subscriptions, and its backlog stays there (stranded) until that
    /// node is back and offers it.
    OldOwnerUnreachable,
}

impl TakeoverResult {
    /// In the order of the variants.
    pub const ALL: [TakeoverResult; 4] = [
        Self::Completed,
        Self::FromRegistry,
        Self::StartedAfresh,
        Self::OldOwnerUnreachable,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::FromRegistry => "from_registry",
            Self::StartedAfresh => "started_afresh",
            Self::OldOwnerUnreachable => "old_owner_unreachable",
        }
    }
}

pub(crate) struct PeerCounters {
    forwards: IntCounterVec,
    takeovers: [IntCounter; TakeoverResult::ALL.len()],
}

impl PeerCounters {
    pub(crate) fn register(registry: &Registry) -> Result<PeerCounters, MetricsError> {
        let name = "berth_forwards_total";
        let forwards = super::register(
            registry,
            name,
            IntCounterVec::new(
                Opts::new(
                    name,
                    "Messages forwarded to the node owning their subscribers' sessions, by peer (its node id) and result: stored (the peer stored them), rerouted (the peer no longer owned some of their sessions: sent on to the new owner, or kept here for it), failed (not stored before the forward deadline, or no owner took them: their publishers heard a failure), handed_back (the peer answered neither the forward nor a probe within cluster.handoff_after: kept here as hinted handoff). A peer's series appear with its first forward.",
                ),
                &["peer", "result"],
            ),
        )?;
        let name = "berth_takeovers_total";
        let takeovers = super::register(
            registry,
            name,
            IntCounterVec::new(
                Opts::new(
                    name,
                    "Sessions taken over from another node (this node's claim of a session held there, for a CONNECT here), by result: completed (state and backlog pulled), from_registry (the old owner held nothing; the registry's subscriptions go on), started_afresh (the session had ended on the old owner), old_owner_unreachable (no answer from it: the session goes on with the registry's subscriptions, its backlog stranded there until it is back).",
                ),
                &["result"],
            ),
        )?;
        Ok(PeerCounters {
            forwards,
            // Resolved now: every result is exported from the start, and counting is an add.
            takeovers: TakeoverResult::ALL
                .map(|result| takeovers.with_label_values(&[result.label()])),
        })
    }

    /// `peer`'s forward counters, every result at 0 from now on.
    pub(crate) fn forwards_to(&self, peer: NodeId) -> ForwardCounts {
        let peer = peer.0.to_string();
        ForwardCounts {
            by_result: ForwardResult::ALL.map(|result| {
                self.forwards
                    .with_label_values(&[peer.as_str(), result.label()])
            }),
        }
    }

    pub(crate) fn count_takeover(&self, result: TakeoverResult) {
        self.takeovers[result as usize].inc();
    }
}

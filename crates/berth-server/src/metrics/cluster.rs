//! Raft's health as gauges, read from the cluster port at every scrape, and the elections
//! counted from the term's increases between scrapes.

use std::sync::{Mutex, PoisonError};

use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

use super::MetricsError;
use crate::cluster_port::ClusterHealth;

pub(crate) struct RaftGauges {
    is_leader: IntGauge,
    has_leader: IntGauge,
    term: IntGauge,
    last_log_index: IntGauge,
    committed_index: IntGauge,
    applied_index: IntGauge,
    snapshot_index: IntGauge,
    voters: IntGauge,
    follower_lag: IntGaugeVec,
    elections: IntCounter,
    /// The term at the previous scrape; `None` before the first, whose term is the baseline
    /// (a restarted node reads its persisted term: those elections were counted before).
    last_term: Mutex<Option<u64>>,
}

impl RaftGauges {
    pub(crate) fn register(registry: &Registry) -> Result<RaftGauges, MetricsError> {
        let gauge = |name, help| super::gauge(registry, name, help);
        let name = "berth_raft_follower_lag_entries";
        let follower_lag = super::register(
            registry,
            name,
            IntGaugeVec::new(
                Opts::new(
                    name,
                    "On the leader: how many log entries each follower is behind the leader's last one.",
                ),
                &["follower"],
            ),
        )?;
        Ok(RaftGauges {
            is_leader: gauge("berth_raft_leader", "1 while this node is the Raft leader.")?,
            has_leader: gauge(
                "berth_raft_has_leader",
                "1 while this node knows a Raft leader (0 during an election or when cut off from the majority).",
            )?,
            term: gauge(
                "berth_raft_term",
                "The current Raft term; each increase is an election.",
            )?,
            last_log_index: gauge(
                "berth_raft_last_log_index",
                "Index of the last entry in this node's Raft log.",
            )?,
            committed_index: gauge(
                "berth_raft_committed_index",
                "Index of the last Raft entry this node knows to be committed.",
            )?,
            applied_index: gauge(
                "berth_raft_applied_index",
                "Index of the last Raft entry applied to this node's registry.",
            )?,
            snapshot_index: gauge(
                "berth_raft_snapshot_index",
                "Index of the last entry included in this node's latest Raft snapshot.",
            )?,
            voters: gauge("berth_raft_voters", "Voting members of the cluster.")?,
            follower_lag,
            elections: super::counter(
                registry,
                "berth_raft_elections_total",
                "Raft elections this node has seen since its first scrape: each increase of the term counts one (the term grows only when a candidate stands). The term is read at every scrape, so elections between two scrapes add up; the first scrape's term is the baseline (a restarted node reads its persisted term).",
            )?,
            last_term: Mutex::new(None),
        })
    }

    pub(crate) fn set(&self, health: &ClusterHealth) {
        let int = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.is_leader.set(i64::from(health.is_leader));
        self.has_leader.set(i64::from(health.leader.is_some()));
        self.term.set(int(health.term));
        self.last_log_index.set(int(health.last_log_index));
        self.committed_index.set(int(health.committed_index));
        self.applied_index.set(int(health.applied_index));
        self.snapshot_index.set(int(health.snapshot_index));
        self.voters.set(int(health.voters as u64));
        self.count_elections(health.term);
        // Followers come and go (and a follower reports none): the series are the current ones.
        self.follower_lag.reset();
        for (follower, lag) in &health.follower_lag {
            self.follower_lag
                .with_label_values(&[&follower.0.to_string()])
                .set(int(*lag));
        }
    }

    /// Counts the elections between the previous reading of the term and `term`.
    fn count_elections(&self, term: u64) {
        let mut last_term = self
            .last_term
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let previous: Option<u64> = *last_term;
        if let Some(previous) = previous
            && term > previous
        {
            self.elections.inc_by(term - previous);
        }
        // Never lowered: the term is persisted and only grows, so a lower reading is stale.
        *last_term = Some(previous.map_or(term, |previous| previous.max(term)));
    }
}

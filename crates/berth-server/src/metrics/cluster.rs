//! Raft's health as gauges, read from the cluster port at every scrape.

use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};

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
        // Followers come and go (and a follower reports none): the series are the current ones.
        self.follower_lag.reset();
        for (follower, lag) in &health.follower_lag {
            self.follower_lag
                .with_label_values(&[&follower.0.to_string()])
                .set(int(*lag));
        }
    }
}

//! Raft as one linearizable log owned by the simulator.
//!
//! A proposal from node N commits (is appended, applied to the leader's registry, and its result
//! returned after a small delay) only while N is up and reaches a majority, itself included;
//! otherwise N retries every 100 ms until the commit timeout (5 s, the server's default) and the
//! proposal fails. Each node applies the log in order into its own `Registry` while it is up and
//! connected to a majority (core's `Registry::apply` through `berth_cluster::convert::apply`, as
//! the state machine does); the events it yields go to the broker.
//! A node far behind may catch up by snapshot instead (`ClusterEvent::Reset`), and a restarted
//! node rebuilds its registry from a snapshot of some earlier index plus the committed entries
//! after it, then reports `CaughtUp` once it has applied the end of the log.

use std::collections::BTreeMap;

use crate::NodeId;
use berth_cluster::pb;
use berth_core::Event;
use berth_core::Registry;

use crate::node::{ClaimStage, Status};
use crate::sim::{Id, NodeEv, Sim, Time};
use berth_cluster::convert::apply;

/// The server's commit timeout (`cluster.commit_timeout`, 5 s by default).
const COMMIT_TIMEOUT: Time = 5_000;
/// A node this far behind may be sent a snapshot instead of the entries.
const SNAPSHOT_LAG: usize = 8;

#[derive(Debug, Default)]
pub(crate) struct Raft {
    pub log: Vec<pb::Command>,
    /// The registry at the end of the log (the leader's).
    pub registry: Registry,
    /// Highest epoch each client has been granted (registry epochs never go backwards).
    pub epochs: BTreeMap<String, u64>,
}

/// What a proposal is for (the proposer's continuation).
// Packets travel inline: a simulator has no reason to box its messages.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum ProposalFor {
    Claim {
        conn: berth_core::ConnId,
    },
    /// A SUBSCRIBE / UNSUBSCRIBE that commits before the broker sees it.
    Packet {
        conn: berth_core::ConnId,
        packet: berth_codec::Packet,
    },
    /// A broker `Action::Replicate` (fire and forget).
    Replicate,
}

#[derive(Debug)]
pub(crate) struct Proposal {
    pub command: pb::Command,
    pub deadline: Time,
    pub purpose: ProposalFor,
}

impl Sim {
    /// Whether `node` is up and reaches a majority of the cluster (itself included).
    pub fn majority(&self, node: NodeId) -> bool {
        if self.node(node).status != Status::Up {
            return false;
        }
        let reached = self
            .node_ids()
            .into_iter()
            .filter(|&m| m == node || self.responsive(node, m))
            .count();
        reached * 2 > self.nodes.len()
    }

    pub fn propose(&mut self, node: NodeId, command: pb::Command, purpose: ProposalFor) {
        let id = self.id();
        let deadline = self.now + COMMIT_TIMEOUT;
        self.node_mut(node).proposals.insert(
            id,
            Proposal {
                command,
                deadline,
                purpose,
            },
        );
        let delay = self.rng.range(1, 3);
        self.at_node(node, delay, NodeEv::ProposeTry { id });
    }

    pub fn propose_try(&mut self, node: NodeId, id: Id) {
        let Some(proposal) = self.node(node).proposals.get(&id) else {
            return;
        };
        if self.now >= proposal.deadline {
            let Some(proposal) = self.node_mut(node).proposals.remove(&id) else {
                return;
            };
            trace!(self, "n{node} proposal {id} failed: no quorum");
            self.proposal_done(node, proposal.purpose, None);
            return;
        }
        if !self.majority(node) {
            self.at_node(node, 100, NodeEv::ProposeTry { id });
            return;
        }
        let command = proposal.command.clone();
        let mut scratch = Vec::new();
        let mut result = apply(&mut self.raft.registry, &command, &mut scratch);
        self.raft.log.push(command);
        let index = self.raft.log.len() as u64;
        result.log_index = index;
        if let Some(pb::command_result::Kind::Claim(claimed)) = &result.kind
            && let Some(pb::command::Kind::Claim(claim)) =
                self.raft.log.last().and_then(|c| c.kind.as_ref())
        {
            let client = claim.client_id.clone();
            let previous = self.raft.epochs.get(&client).copied().unwrap_or(0);
            if claimed.epoch <= previous {
                // Epochs fence stale copies: one handed out twice fences nothing.
                self.report.violate(
                    "3-epoch",
                    format!(
                        "claim of {client} got epoch {} after epoch {previous} was granted (log index {index})",
                        claimed.epoch
                    ),
                );
            }
            self.raft.epochs.insert(client, claimed.epoch.max(previous));
        }
        trace!(
            self,
            "raft #{index} committed from n{node}: {}",
            describe(&self.raft.log[index as usize - 1])
        );
        let delay = self.rng.range(1, 4);
        self.at_node(node, delay, NodeEv::Committed { id, result });
        for n in self.node_ids() {
            let delay = self.rng.range(1, 8);
            self.at_node(n, delay, NodeEv::RaftApply);
        }
    }

    pub fn committed(&mut self, node: NodeId, id: Id, result: pb::CommandResult) {
        let Some(proposal) = self.node_mut(node).proposals.remove(&id) else {
            return;
        };
        self.proposal_done(node, proposal.purpose, Some(result));
    }

    /// Applies what `node` has not applied yet, if it can hear the leader.
    pub fn raft_apply(&mut self, node: NodeId) {
        if !self.majority(node) {
            return;
        }
        let end = self.raft.log.len();
        let applied = self.node(node).applied as usize;
        if end > applied {
            if end - applied > SNAPSHOT_LAG && self.rng.chance(self.cfg.snapshot_prob) {
                trace!(
                    self,
                    "n{node} installs a snapshot at #{end} (was at #{applied})"
                );
                self.report.snapshots += 1;
                let registry = self.raft.registry.clone();
                let event = registry.reset_event();
                let n = self.node_mut(node);
                n.registry = registry;
                n.applied = end as u64;
                self.call(node, Event::Cluster(event));
            } else {
                for index in applied + 1..=end {
                    self.apply_entry(node, index);
                }
            }
        }
        self.after_apply(node);
    }

    /// Applies log entry `index` on `node` and hands its events to the broker.
    fn apply_entry(&mut self, node: NodeId, index: usize) {
        let command = self.raft.log[index - 1].clone();
        let mut events = Vec::new();
        let n = self.node_mut(node);
        apply(&mut n.registry, &command, &mut events);
        n.applied = index as u64;
        for event in events {
            self.call(node, Event::Cluster(event));
        }
    }

    /// What waited for the broker to have applied some index goes on.
    fn after_apply(&mut self, node: NodeId) {
        let applied = self.node(node).applied;
        let ready: Vec<berth_core::ConnId> = self
            .node(node)
            .claims
            .iter()
            .filter(|(_, c)| matches!(c.stage, ClaimStage::WaitApplied { index, .. } if index <= applied))
            .map(|(conn, _)| *conn)
            .collect();
        for conn in ready {
            self.claim_applied(node, conn);
        }
        let waits: Vec<(NodeId, Id)> = self
            .node(node)
            .endpoint_waits
            .iter()
            .filter(|w| w.index <= applied)
            .map(|w| (w.from, w.rpc))
            .collect();
        for (from, rpc) in waits {
            self.endpoint_export(node, from, rpc);
        }
        let end = self.raft.log.len() as u64;
        let n = self.node_mut(node);
        if !n.caught_up && applied >= end {
            n.caught_up = true;
            // `release_timers_when_caught_up`: one more heartbeat round, then CaughtUp.
            self.at_node(node, 500, NodeEv::CaughtUp);
        }
    }

    /// A restarted node: its registry from a snapshot of some index it had applied, a `Reset`,
    /// then the committed entries after the snapshot replayed (openraft re-applies them at
    /// start). The server's pump may convert the `Reset` before or after that replay.
    pub fn rebuild_registry(&mut self, node: NodeId) {
        let persisted = self.node(node).applied_at_crash as usize;
        let snapshot = if self.rng.chance(0.5) {
            self.rng.range(0, persisted as u64) as usize
        } else {
            0
        };
        let mut registry = Registry::default();
        let mut scratch = Vec::new();
        for command in &self.raft.log[..snapshot] {
            apply(&mut registry, command, &mut scratch);
            scratch.clear();
        }
        let n = self.node_mut(node);
        n.registry = registry;
        n.applied = snapshot as u64;
        n.caught_up = false;
        // The registry at the snapshot, as the state machine hands it over when it loads it.
        if snapshot > 0 {
            let event = self.node(node).registry.reset_event();
            self.call(node, Event::Cluster(event));
        }
        // The replayed entries' events.
        let mut events = Vec::new();
        for index in snapshot + 1..=persisted {
            let command = self.raft.log[index - 1].clone();
            let n = self.node_mut(node);
            apply(&mut n.registry, &command, &mut events);
            n.applied = index as u64;
        }
        for event in events {
            self.call(node, Event::Cluster(event));
        }
        trace!(
            self,
            "n{node} restarted: snapshot #{snapshot}, replayed to #{persisted}"
        );
    }
}

/// A one-line description of a command, for traces.
pub(crate) fn describe(command: &pb::Command) -> String {
    use pb::command::Kind;
    match command.kind.as_ref() {
        Some(Kind::Claim(c)) => format!(
            "Claim {} by n{} clean={}",
            c.client_id, c.node_id, c.clean_start
        ),
        Some(Kind::Subscribe(s)) => format!("Subscribe {} e{}", s.client_id, s.epoch),
        Some(Kind::Unsubscribe(s)) => format!("Unsubscribe {} e{}", s.client_id, s.epoch),
        Some(Kind::Detach(d)) => format!("Detach {} e{}", d.client_id, d.epoch),
        Some(Kind::DropSession(d)) => format!("Drop {} e{}", d.client_id, d.epoch),
        Some(Kind::WillFired(w)) => format!("WillFired {} e{}", w.client_id, w.epoch),
        Some(other) => format!("{other:?}"),
        None => "empty".into(),
    }
}

//! The leader's watch over the other members (`berth-cluster`'s `leader.rs`): every 500 ms the
//! leader probes each member; one that has not answered for 3 s is declared down with a
//! `NodeDown` command (its connected sessions count as disconnected from 3 s ago). A paused or
//! cut-off node is declared down this way while it still holds its sessions.
//!
//! Modelled: which node leads (the lowest-numbered node that reaches a majority), the probes
//! (a member answers when it is up and on the leader's side of any partition) and the
//! proposals. Not modelled: the leader publishing wills and ending expired sessions of down
//! owners (the simulated clients send no wills and keep their sessions for an hour).

use std::collections::{BTreeMap, BTreeSet};

use crate::NodeId;
use berth_cluster::pb;

use crate::raft::ProposalFor;
use crate::sim::{Sim, Time};

/// `leader::OWNER_TIMEOUT`.
const OWNER_TIMEOUT: Time = 3_000;

#[derive(Debug, Default)]
pub(crate) struct LeaderWatch {
    leader: Option<NodeId>,
    last_seen: BTreeMap<NodeId, Time>,
    reported: BTreeSet<NodeId>,
}

impl Sim {
    /// The node that leads now: the lowest-numbered one that reaches a majority.
    pub fn leader(&self) -> Option<NodeId> {
        self.node_ids().into_iter().find(|&n| self.majority(n))
    }

    /// Node `n`'s periodic wake: if it leads, it looks at the other members.
    pub fn leader_round(&mut self, n: NodeId) {
        let leader = self.leader();
        if self.watch.leader != leader {
            self.watch = LeaderWatch {
                leader,
                ..LeaderWatch::default()
            };
        }
        if leader != Some(n) {
            return;
        }
        let now = self.now;
        let mut down = Vec::new();
        for m in self.node_ids() {
            if m == n {
                continue;
            }
            let answers = self.responsive(n, m);
            let watch = &mut self.watch;
            let seen = watch.last_seen.entry(m).or_insert(now);
            if answers {
                *seen = now;
                watch.reported.remove(&m);
            } else if now.saturating_sub(*seen) > OWNER_TIMEOUT && watch.reported.insert(m) {
                down.push(m);
            }
        }
        for m in down {
            trace!(self, "n{n} (leader) declares n{m} down");
            self.report.nodes_declared_down += 1;
            let at_ms = self.unix().0.saturating_sub(OWNER_TIMEOUT);
            let command = pb::Command {
                kind: Some(pb::command::Kind::NodeDown(pb::NodeDown {
                    node_id: m,
                    at_ms,
                })),
            };
            self.propose(n, command, ProposalFor::Replicate);
        }
    }
}

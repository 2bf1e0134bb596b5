//! Whether a node is quiet: what the heal phase waits for before the checks.

use crate::NodeId;
use crate::node::{FwdStage, Node};
use crate::sim::Sim;

impl Node {
    /// Whether anything of the cluster machinery is still under way here.
    pub fn busy(&mut self) -> Option<String> {
        if let Some(waits) = self.qos2_waits() {
            return Some(waits);
        }
        let kept = self
            .broker
            .as_mut()
            .map_or(0, |b| b.stats().handoff_messages);
        if kept > 0 {
            return Some(format!("n{}: {kept} handoff entries", self.id));
        }
        if !self.claims.is_empty() {
            return Some(format!("n{}: {} claims", self.id, self.claims.len()));
        }
        if !self.pulls.is_empty() {
            return Some(format!("n{}: {} pulls", self.id, self.pulls.len()));
        }
        for (target, queue) in &self.fwd {
            if let Some(batch) = &queue.batch {
                let stage = match &batch.stage {
                    FwdStage::Sending { rpc } => format!("sending (rpc {rpc})"),
                    FwdStage::Sleeping => "backing off".to_string(),
                    FwdStage::Rerouting {
                        attempt,
                        outstanding,
                        ..
                    } => {
                        format!("re-routing (attempt {attempt}, {outstanding} answers outstanding)")
                    }
                    FwdStage::RerouteSleeping { attempt, .. } => {
                        format!("re-routing, sleeping before attempt {attempt}")
                    }
                };
                return Some(format!(
                    "n{}: forward batch to n{target} of {} messages {stage}",
                    self.id,
                    batch.items.len()
                ));
            }
            if !queue.waiting.is_empty() {
                return Some(format!("n{}: forwards waiting for n{target}", self.id));
            }
        }
        if !self.proposals.is_empty() {
            return Some(format!("n{}: proposals", self.id));
        }
        None
    }

    /// Sessions whose deliveries wait (up to `QOS2_STATE_WAIT`) for an older copy's QoS 2
    /// state: what is held goes out once the wait ends, so the run is not over before.
    pub fn qos2_waits(&self) -> Option<String> {
        let waits = self.broker.as_ref().map_or(0, |b| b.qos2_waits());
        (waits > 0).then(|| {
            format!(
                "n{}: {waits} sessions wait for an older copy's QoS 2 state",
                self.id
            )
        })
    }
}

impl Sim {
    /// Adds node `n`'s counts of QoS 2 state waits to the report: at a crash (its broker's
    /// counters go with it) and at the end.
    pub(crate) fn count_qos2_waits(&mut self, n: NodeId) {
        if let Some(broker) = self.node_mut(n).broker.as_mut() {
            let stats = broker.stats();
            let (begun, expired) = (
                stats.qos2_state_waits_total,
                stats.qos2_state_waits_expired_total,
            );
            self.report.qos2_waits += begun;
            self.report.qos2_waits_expired += expired;
        }
    }
}

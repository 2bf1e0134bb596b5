//! The check `7-ack-wait` (issue 15): an owner that cannot be reached does not hold a
//! publisher's acknowledgement longer than the handoff bound allows.

use berth_core::ConnId;

use crate::client::Outgoing;
use crate::sim::{Sim, Time};

/// What `7-ack-wait` allows beyond the handoff bound: the publisher flow control's longest hold
/// (1 s) and the network.
const ACK_WAIT_SLACK: Time = 1_300;

impl Sim {
    /// `7-ack-wait`: a PUBLISH acknowledged on the connection it was first sent on, through a
    /// node that stayed up all the while, waited no longer than the handoff bound allows (plus
    /// the publisher flow control's longest hold, 1 s, and the network): an owner that cannot
    /// be reached must not hold it (issue 15).
    pub(crate) fn check_ack_wait(&mut self, p: usize, conn: ConnId, out: &Outgoing) {
        let Some(bound) = self.cfg.handoff_after else {
            return;
        };
        let (first_conn, sent_at) = out.first;
        if first_conn != conn {
            return;
        }
        // Acknowledgements leave in order: one behind an older exchange still open (a re-sent
        // PUBLISH or PUBREL held for a copy recovered late, not judged here) waited for it.
        let behind = self.publishers[p]
            .inflight
            .values()
            .any(|o| o.order < out.order && o.key != out.key);
        if behind {
            return;
        }
        let Some(node) = self.conns.get(&conn).map(|c| c.node) else {
            return;
        };
        if self.node(node).steady_since > sent_at {
            return;
        }
        let waited = self.now.saturating_sub(sent_at);
        if waited > bound + ACK_WAIT_SLACK {
            self.report.violate(
                "7-ack-wait",
                format!(
                    "p{}:{} waited {waited} ms for its acknowledgement on conn {} (n{node} up all the while)",
                    out.key.0, out.key.1, conn.0
                ),
            );
        }
    }
}

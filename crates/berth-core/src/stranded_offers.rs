//! When a node offers the copies it holds of sessions that other nodes have claimed (stranded
//! backlogs) to their owners: the one rule for `berth-node`'s `stranded.rs` and the simulator.
//!
//! A copy is offered once it has been moving for [`OFFER_AFTER_MS`] (a takeover pulls within
//! milliseconds of its claim, so a copy still here after that was not going to be pulled), then
//! at every look, until it is pulled or its session ends. The time counts from when the copy
//! was first seen moving, whatever claim it moves to: a client that reconnects to its owner
//! every few seconds claims the session anew each time, and timed per claim its copy was not
//! offered until the client stayed put (simulator seeds 12654 and 16165: an older copy's QoS 2
//! state came back after the session had stopped waiting for it).

use std::collections::BTreeMap;

use crate::ids::{ClientId, Epoch, NodeId};

/// How long a copy may wait for its owner's pull before it is offered.
pub const OFFER_AFTER_MS: u64 = 5_000;

/// Since when each copy held here has been moving (ordered: a simulated run stays a function
/// of its seed).
#[derive(Debug, Default)]
pub struct StrandedOffers {
    first_seen: BTreeMap<ClientId, u64>,
    /// When this node (re)started, on the same clock.
    started_ms: u64,
}

impl StrandedOffers {
    /// For a node (re)started at `started_ms`. The copies it finds moving in its first
    /// [`OFFER_AFTER_MS`] waited for their pull while it was down (the claims that moved them
    /// could not reach it): they are offered at once, not after a wait of their own. A node
    /// back for a few seconds between faults offered nothing before (simulator `--scenario
    /// lost-release`, seed 2401 of session 40: up 4.7 s, its copy came back 3 ms after the
    /// session had stopped waiting for it).
    pub fn starting_at(started_ms: u64) -> StrandedOffers {
        StrandedOffers {
            first_seen: BTreeMap::new(),
            started_ms,
        }
    }

    /// The copies to offer at `now_ms` (any monotonic clock, in milliseconds), in the order of
    /// `moving`: the copies held on node `me` that other nodes have claimed, each with its
    /// owner and the claim's epoch.
    pub fn due(
        &mut self,
        now_ms: u64,
        me: NodeId,
        moving: Vec<(ClientId, NodeId, Epoch)>,
    ) -> Vec<(ClientId, NodeId, Epoch)> {
        self.first_seen
            .retain(|client, _| moving.iter().any(|(c, _, _)| c == client));
        moving
            .into_iter()
            .filter(|(client, owner, _)| {
                let at_start = now_ms < self.started_ms.saturating_add(OFFER_AFTER_MS);
                let first = if at_start {
                    now_ms.saturating_sub(OFFER_AFTER_MS)
                } else {
                    now_ms
                };
                let since = *self.first_seen.entry(client.clone()).or_insert(first);
                now_ms.saturating_sub(since) >= OFFER_AFTER_MS && *owner != me
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x() -> ClientId {
        ClientId::new(berth_codec::MqttString::new("x").unwrap())
    }

    fn moving(owner: u64, epoch: u64) -> Vec<(ClientId, NodeId, Epoch)> {
        vec![(x(), NodeId(owner), Epoch(epoch))]
    }

    /// Node 1, up since 0; times from 10 s on, past its start.
    fn running() -> StrandedOffers {
        StrandedOffers::starting_at(0)
    }

    #[test]
    fn a_copy_is_offered_once_it_has_waited_for_its_pull() {
        let mut offers = running();
        assert!(offers.due(10_000, NodeId(1), moving(2, 3)).is_empty());
        assert!(offers.due(14_999, NodeId(1), moving(2, 3)).is_empty());
        assert_eq!(offers.due(15_000, NodeId(1), moving(2, 3)), moving(2, 3));
        assert_eq!(
            offers.due(17_000, NodeId(1), moving(2, 3)),
            moving(2, 3),
            "again"
        );
    }

    #[test]
    fn new_claims_of_the_session_do_not_put_the_offer_off() {
        let mut offers = running();
        offers.due(10_000, NodeId(1), moving(2, 3));
        // The client reconnects every 2 s: epochs 4, 5, 6, on node 2 and then node 3.
        assert!(offers.due(12_000, NodeId(1), moving(2, 4)).is_empty());
        assert!(offers.due(14_000, NodeId(1), moving(2, 5)).is_empty());
        assert_eq!(offers.due(16_000, NodeId(1), moving(3, 6)), moving(3, 6));
    }

    #[test]
    fn a_copy_that_left_waits_anew_when_one_moves_again() {
        let mut offers = running();
        offers.due(10_000, NodeId(1), moving(2, 3));
        assert!(
            offers.due(12_000, NodeId(1), Vec::new()).is_empty(),
            "pulled"
        );
        assert!(offers.due(16_000, NodeId(1), moving(2, 5)).is_empty());
        assert_eq!(offers.due(21_000, NodeId(1), moving(2, 5)), moving(2, 5));
    }

    #[test]
    fn a_copy_claimed_by_this_node_is_not_offered() {
        let mut offers = running();
        offers.due(10_000, NodeId(1), moving(1, 3));
        assert!(offers.due(19_000, NodeId(1), moving(1, 3)).is_empty());
    }

    #[test]
    fn copies_found_just_after_a_restart_are_offered_at_once() {
        let mut offers = StrandedOffers::starting_at(30_000);
        assert_eq!(offers.due(32_000, NodeId(1), moving(2, 3)), moving(2, 3));
        let x2 = (
            ClientId::new(berth_codec::MqttString::new("y").unwrap()),
            NodeId(2),
            Epoch(4),
        );
        let both = vec![moving(2, 3).remove(0), x2.clone()];
        assert_eq!(
            offers.due(36_000, NodeId(1), both),
            moving(2, 3),
            "a copy first seen after the start waits as usual"
        );
    }
}

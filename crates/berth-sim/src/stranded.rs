//! Stranded copies (`stranded.rs` of `berth-node`): the holder offers a copy that stays moving
//! to the session's owner every 2 s once it has waited 5 s; the owner accepts an offer for a
//! session it runs, settled, at that epoch, and pulls the copy as a late backlog.

use crate::NodeId;
use berth_core::Epoch;

use crate::net::{NetBody, Purpose};
use crate::node::*;
use crate::sim::Sim;
use crate::wire::client_id;

impl Sim {
    /// The holder's side: offers copies that stay moving to their owners.
    pub(crate) fn offer_stranded(&mut self, n: NodeId) {
        let Some(broker) = self.node(n).broker.as_ref() else {
            return;
        };
        let mut moving = broker.moving_sessions();
        moving.sort();
        let now = self.now;
        let node = self.node_mut(n);
        node.first_seen.retain(|(client, epoch), _| {
            moving.iter().any(|(c, _, e)| c == client && e.0 == *epoch)
        });
        let mut offers = Vec::new();
        for (client, owner, epoch) in moving {
            let owner = owner.0;
            let since = *node
                .first_seen
                .entry((client.clone(), epoch.0))
                .or_insert(now);
            if now - since < OFFER_AFTER || owner == n {
                continue;
            }
            offers.push((client, owner, epoch.0));
        }
        for (client, owner, epoch) in offers {
            trace!(
                self,
                "n{n} offers its copy of {client} e{epoch} to n{owner}"
            );
            let body = NetBody::Offer {
                client: client.as_str().to_string(),
                epoch,
                holder: n,
            };
            self.start_rpc(n, owner, Purpose::Offer, body, Some(OFFER_TIMEOUT));
        }
    }

    /// The owner's side of an offer (`stranded::accept_offer`).
    pub(crate) fn accept_offer(
        &mut self,
        n: NodeId,
        client: &str,
        epoch: u64,
        holder: NodeId,
    ) -> bool {
        let Some(client) = client_id(client) else {
            return false;
        };
        if self.node(n).late_pulls.contains(&client) {
            return true;
        }
        if self
            .node(n)
            .pulled
            .contains(&(client.clone(), epoch, holder))
        {
            self.release(n, client, holder, epoch, None);
            return true;
        }
        let accepts = self
            .node(n)
            .broker
            .as_ref()
            .is_some_and(|b| b.accepts_late_backlog(&client, Epoch(epoch)));
        if !accepts {
            return false;
        }
        self.node_mut(n).late_pulls.insert(client.clone());
        trace!(
            self,
            "n{n} pulls the stranded copy of {client} e{epoch} from n{holder}"
        );
        self.start_pull(n, client, holder, epoch, 0, PullMode::Late);
        true
    }
}

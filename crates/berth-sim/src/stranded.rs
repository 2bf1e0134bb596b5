//! Stranded copies (`stranded.rs` of `berth-node`): the holder offers a copy that stays moving
//! to the session's owner every 2 s once it has waited 5 s (`berth_core::stranded_offers`);
//! the owner accepts an offer for a session it runs, settled, at that epoch, and pulls the
//! copy as a late backlog.

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
        let offers = self
            .node_mut(n)
            .offers
            .due(now, berth_core::NodeId(n), moving);
        for (client, owner, epoch) in offers {
            let (owner, epoch) = (owner.0, epoch.0);
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

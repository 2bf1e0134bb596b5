//! Publish order across an owner change ([MQTT-4.6.0-5]: per publisher and topic, subscribers
//! get messages in the order they were published).
//!
//! This node sends each owner its forwards in one ordered queue, but a session that moves from
//! owner A to owner B while forwards to A are still on their way (A paused, cut off, or busy)
//! would get the newer messages straight from B, and the older ones later, when A answers
//! "not mine" and they are re-routed to B. So when the registry moves a session away from a
//! node this node still has forwards out to, the session is *fenced*: what this node routes to
//! it from then on waits here, in order, until every forward sent to the old owner before the
//! move has ended (stored, re-routed and stored, or failed), and then goes to whoever owns the
//! session at that moment. The publisher's acknowledgement waits with it, as it would for an
//! owner (bounded: a forward its node does not answer is kept here, `handoff`, and so ends).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::Broker;
use crate::cluster::{Forwarded, NodeId};
use crate::ids::ClientId;
use crate::message::Message;
use crate::store::Store;
use crate::time::UnixMillis;

/// Forwards this node has out, per target node, by publisher token (QoS 1/2 only: a QoS 0
/// message is not tracked and not waited for).
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    by_node: HashMap<NodeId, VecDeque<u64>>,
}

impl InFlight {
    pub fn sent(&mut self, node: NodeId, token: u64) {
        self.by_node.entry(node).or_default().push_back(token);
    }

    /// One forward with `token` to `node` ended (each send ends once).
    pub fn ended(&mut self, node: NodeId, token: u64) {
        if let Some(tokens) = self.by_node.get_mut(&node) {
            if let Some(at) = tokens.iter().position(|t| *t == token) {
                tokens.remove(at);
            }
            if tokens.is_empty() {
                self.by_node.remove(&node);
            }
        }
    }

    /// The newest token out to `node`, if any is.
    fn newest(&self, node: NodeId) -> Option<u64> {
        self.by_node
            .get(&node)
            .and_then(|t| t.iter().max().copied())
    }

    /// Whether a forward with a token up to `upto` is still out to `node`.
    fn any_upto(&self, node: NodeId, upto: u64) -> bool {
        self.by_node
            .get(&node)
            .is_some_and(|t| t.iter().any(|token| *token <= upto))
    }
}

/// A session whose messages from this node wait for the forwards to its old owner.
#[derive(Debug)]
pub(crate) struct Fence {
    node: NodeId,
    upto: u64,
    held: Vec<HeldMessage>,
}

#[derive(Debug)]
struct HeldMessage {
    token: Option<u64>,
    message: Arc<Message>,
    publisher: Option<ClientId>,
}

impl<S: Store> Broker<S> {
    /// The registry moves `client` from the node its messages went to so far to `new_owner`:
    /// fences it if forwards to that node are still out.
    pub(super) fn fence_on_move(&mut self, client: &ClientId, new_owner: NodeId) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if cluster.fences.contains_key(client) {
            return;
        }
        // Where this node's messages for `client` went so far: the node its copy here was moving
        // to, or the owner it routed to. (What this node keeps for a session it imports is in
        // its handoff, not in flight: newer messages from here queue behind it there.)
        let old = cluster
            .moving
            .get(client)
            .map(|(to, _)| *to)
            .or_else(|| cluster.remote.get(client).map(|r| r.owner));
        let Some(old) = old.filter(|old| *old != new_owner) else {
            return;
        };
        if let Some(upto) = cluster.in_flight.newest(old) {
            cluster.fences.insert(
                client.clone(),
                Fence {
                    node: old,
                    upto,
                    held: Vec::new(),
                },
            );
        }
    }

    pub(super) fn is_fenced(&self, client: &ClientId) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| !c.fences.is_empty() && c.fences.contains_key(client))
    }

    /// Holds `message` for the fenced `client`; returns whether the publisher's token now
    /// waits for it.
    pub(super) fn hold_fenced(
        &mut self,
        client: &ClientId,
        token: Option<u64>,
        message: &Arc<Message>,
        publisher: Option<&ClientId>,
    ) -> bool {
        let Some(fence) = self.cluster.as_mut().and_then(|c| c.fences.get_mut(client)) else {
            return false;
        };
        fence.held.push(HeldMessage {
            token,
            message: message.clone(),
            publisher: publisher.cloned(),
        });
        token.is_some()
    }

    /// A forward to `node` ended: the sessions fenced behind it go on once nothing older is out.
    pub(super) fn release_fences(&mut self, now: UnixMillis, node: NodeId) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if cluster.fences.is_empty() {
            return;
        }
        let mut open: Vec<ClientId> = cluster
            .fences
            .iter()
            .filter(|(_, f)| f.node == node && !cluster.in_flight.any_upto(node, f.upto))
            .map(|(client, _)| client.clone())
            .collect();
        open.sort();
        for client in open {
            let Some(fence) = self.cluster.as_mut().and_then(|c| c.fences.remove(&client)) else {
                continue;
            };
            for held in fence.held {
                self.dispatch_held(now, &client, held);
            }
        }
    }

    /// A held message goes where `client` is owned now.
    fn dispatch_held(&mut self, now: UnixMillis, client: &ClientId, held: HeldMessage) {
        let Some(node) = self.cluster.as_ref().map(|c| c.node) else {
            return;
        };
        let forwarded = Forwarded {
            message: held.message,
            clients: vec![client.clone()],
            publisher: held.publisher,
            retried: false,
        };
        match self.remote_owner(client) {
            Some(owner) if owner == node => {
                // Being imported here: kept for after the backlog, with the others.
                let publisher = forwarded.publisher.as_ref();
                self.keep_for_import(client, &forwarded.message, publisher, false);
                if let Some(token) = held.token {
                    self.on_forward_done(now, token, true, None);
                }
            }
            Some(owner) => {
                let waits = self.forward_or_hand_off(owner, held.token, forwarded);
                if !waits && let Some(token) = held.token {
                    // Kept here for an owner that cannot be reached: that is the answer.
                    self.on_forward_done(now, token, true, None);
                }
            }
            None => {
                self.deliver_forwarded(now, &forwarded);
                if let Some(token) = held.token {
                    self.on_forward_done(now, token, true, None);
                }
            }
        }
    }
}

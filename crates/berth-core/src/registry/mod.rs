//! The replicated registry and its pure `apply`: which node owns each client's session and at
//! which epoch, every session's subscriptions, expiry deadline and will, and retained messages.
//!
//! Every node applies the same log (Raft, in `berth-cluster`) into its own copy, so `apply` reads
//! nothing but the command and the state (the proposer's clock travels in the command). Besides
//! the outcome for the proposer it yields the [`ClusterEvent`]s the node's broker applies to keep
//! its routing in step. Domain types only: the protobuf form of commands and snapshots is
//! converted in one module of `berth-cluster`.
//!
//! ```text
//!  connection ─ plan (plan.rs) ─▶ Command ─ Raft log ─▶ Registry::apply ─▶ Outcome (proposer)
//!                                                              └──▶ ClusterEvent ─▶ Broker
//! ```

mod command;
pub mod plan;

use std::collections::BTreeMap;

use berth_codec::{ProtocolVersion, TopicFilter, TopicName};

pub use command::{Claim, Claimed, Command, Outcome, Reassert};

use crate::cluster::{ClusterEvent, RemoteSession};
use crate::ids::{ClientId, Epoch, NodeId};
use crate::message::Message;
use crate::store::{CopyRef, SessionExpiry, SubscriptionRecord, WillRecord};
use crate::time::UnixMillis;
use crate::vec_map::VecMap;

/// A session's subscriptions by filter. A sorted `Vec` rather than a map: every node holds every
/// session's subscriptions, most sessions have one or a few, and a `BTreeMap` allocates a node of
/// eleven slots for the first.
pub type Subscriptions = VecMap<TopicFilter, SubscriptionRecord>;

/// One session as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEntry {
    pub owner: NodeId,
    pub epoch: Epoch,
    /// The epoch this session started at (a fresh session); takeovers keep it. 0: unknown.
    pub started: Epoch,
    /// The copy `owner` took the session over from: the node that held it before and the
    /// claim it held it under (kept across `owner`'s own later claims). Its state is there
    /// until `owner` has pulled it. A snapshot carries it, so that a node that learns its own
    /// claim from one knows where to pull from. Epoch 0: not known (a snapshot from before
    /// the epoch was kept).
    pub moved_from: Option<CopyRef>,
    pub protocol: ProtocolVersion,
    /// Set while no connection holds the session (`None` while detached: never expires).
    pub expires_at: Option<UnixMillis>,
    pub detached: bool,
    pub subscriptions: Subscriptions,
    pub expiry: SessionExpiry,
    /// Boxed: most sessions have none, and every node holds an entry for every session.
    pub will: Option<Box<WillRecord>>,
    /// When the will is due (set while detached with a will waiting).
    pub will_due_at: Option<UnixMillis>,
}

impl SessionEntry {
    /// The will to publish at `now`, if it is due.
    pub fn due_will(&self, now: UnixMillis) -> Option<&WillRecord> {
        self.will
            .as_deref()
            .filter(|_| self.will_due_at.is_some_and(|at| at <= now))
    }

    /// Whether the session has ended by `now`.
    pub fn expired(&self, now: UnixMillis) -> bool {
        self.detached && self.expires_at.is_some_and(|at| at <= now)
    }

    fn subscription_list(&self) -> Vec<(TopicFilter, SubscriptionRecord)> {
        self.subscriptions
            .iter()
            .map(|(f, r)| (f.clone(), r.clone()))
            .collect()
    }
}

/// The replicated state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Registry {
    pub sessions: BTreeMap<ClientId, SessionEntry>,
    pub retained: BTreeMap<TopicName, Message>,
}

impl Registry {
    /// Applies one command: its outcome for the proposer; what changed for the broker is pushed
    /// onto `events`, in order.
    pub fn apply(&mut self, command: &Command, events: &mut Vec<ClusterEvent>) -> Outcome {
        match command {
            Command::Claim(claim) => Outcome::Claimed(self.claim(claim, events)),
            Command::Drop { client, epoch } => {
                if let Err(fenced) = self.current(client, *epoch) {
                    return fenced;
                }
                self.sessions.remove(client);
                events.push(ClusterEvent::Dropped {
                    client: client.clone(),
                    epoch: *epoch,
                });
                Outcome::Applied
            }
            Command::Detach {
                client,
                epoch,
                expires_at,
                will_due_at,
            } => {
                let entry = match self.current(client, *epoch) {
                    Ok(entry) => entry,
                    Err(fenced) => return fenced,
                };
                entry.detached = true;
                entry.expires_at = *expires_at;
                entry.will_due_at = *will_due_at;
                if will_due_at.is_none() {
                    // A normal DISCONNECT discards the will.
                    entry.will = None;
                }
                Outcome::Applied
            }
            Command::Subscribe {
                client,
                epoch,
                subscriptions,
            } => {
                let entry = match self.current(client, *epoch) {
                    Ok(entry) => entry,
                    Err(fenced) => return fenced,
                };
                for (filter, record) in subscriptions {
                    entry.subscriptions.insert(filter.clone(), record.clone());
                }
                events.push(ClusterEvent::Subscribed {
                    client: client.clone(),
                    owner: entry.owner,
                    subscriptions: subscriptions.clone(),
                });
                Outcome::Applied
            }
            Command::Unsubscribe {
                client,
                epoch,
                filters,
            } => {
                let entry = match self.current(client, *epoch) {
                    Ok(entry) => entry,
                    Err(fenced) => return fenced,
                };
                for filter in filters {
                    entry.subscriptions.remove(filter);
                }
                events.push(ClusterEvent::Unsubscribed {
                    client: client.clone(),
                    filters: filters.clone(),
                });
                Outcome::Applied
            }
            Command::NodeDown { node, at } => {
                for entry in self.sessions.values_mut() {
                    if entry.owner != *node || entry.detached {
                        continue;
                    }
                    // Its connection ended when its node was lost: the usual rules from then.
                    entry.detached = true;
                    entry.expires_at = match entry.expiry {
                        SessionExpiry::Never => None,
                        SessionExpiry::After(secs) => Some(at.plus_secs(secs)),
                    };
                    let interval = entry.expiry.as_interval();
                    entry.will_due_at = entry
                        .will
                        .as_ref()
                        .map(|will| at.plus_secs(will.delay_secs.min(interval)));
                }
                events.push(ClusterEvent::NodeDown { node: *node });
                Outcome::Applied
            }
            Command::Reassert(reassert) => self.reassert(reassert, events),
            Command::WillFired { client, epoch } => {
                let entry = match self.current(client, *epoch) {
                    Ok(entry) => entry,
                    Err(fenced) => return fenced,
                };
                entry.will = None;
                entry.will_due_at = None;
                events.push(ClusterEvent::WillFired {
                    client: client.clone(),
                    epoch: *epoch,
                });
                Outcome::Applied
            }
            Command::SetRetained(message) => {
                self.retained.insert(message.topic.clone(), message.clone());
                events.push(ClusterEvent::Retained {
                    message: Box::new(message.clone()),
                });
                Outcome::Applied
            }
            Command::ClearRetained(topic) => {
                self.retained.remove(topic);
                // For the broker, a retained message with an empty payload clears the topic.
                events.push(ClusterEvent::Retained {
                    message: Box::new(Message {
                        topic: topic.clone(),
                        payload: bytes::Bytes::new(),
                        qos: berth_codec::QoS::AtMostOnce,
                        retain: true,
                        properties: Default::default(),
                        expires_at: None,
                        received_at: None,
                        id: None,
                    }),
                });
                Outcome::Applied
            }
        }
    }

    /// Every session, as the broker's [`ClusterEvent::Reset`] (a snapshot installed, or the
    /// registry loaded at start).
    pub fn reset_event(&self) -> ClusterEvent {
        ClusterEvent::Reset {
            sessions: self
                .sessions
                .iter()
                .map(|(client, entry)| RemoteSession {
                    client: client.clone(),
                    owner: entry.owner,
                    epoch: entry.epoch,
                    started: entry.started,
                    moved_from: entry.moved_from,
                    subscriptions: entry.subscription_list(),
                })
                .collect(),
        }
    }

    /// The session of `client` if `epoch` is still its epoch; otherwise the fenced outcome.
    fn current(&mut self, client: &ClientId, epoch: Epoch) -> Result<&mut SessionEntry, Outcome> {
        match self.sessions.get_mut(client) {
            Some(entry) if entry.epoch == epoch => Ok(entry),
            other => Err(Outcome::Fenced {
                current: other.map_or(Epoch(0), |e| e.epoch),
            }),
        }
    }

    fn reassert(&mut self, r: &Reassert, events: &mut Vec<ClusterEvent>) -> Outcome {
        match self.sessions.get_mut(&r.client) {
            Some(entry) if entry.epoch == r.epoch && entry.owner == r.node => {
                entry.detached = false;
                entry.expires_at = None;
                entry.will_due_at = None;
                Outcome::Applied
            }
            Some(entry) => Outcome::Fenced {
                current: entry.epoch,
            },
            None => {
                self.sessions.insert(
                    r.client.clone(),
                    SessionEntry {
                        owner: r.node,
                        epoch: r.epoch,
                        started: r.epoch,
                        moved_from: None,
                        protocol: r.protocol,
                        expires_at: None,
                        detached: false,
                        subscriptions: r.subscriptions.iter().cloned().collect(),
                        expiry: r.expiry,
                        will: r.will.clone().map(Box::new),
                        will_due_at: None,
                    },
                );
                events.push(ClusterEvent::Owner {
                    client: r.client.clone(),
                    owner: r.node,
                    epoch: r.epoch,
                    kept: true,
                    subscriptions: r.subscriptions.clone(),
                    moved_from: None,
                });
                Outcome::Applied
            }
        }
    }

    fn claim(&mut self, claim: &Claim, events: &mut Vec<ClusterEvent>) -> Claimed {
        let existing = self.sessions.get(&claim.client);
        let alive =
            existing.is_some_and(|e| !e.detached || e.expires_at.is_none_or(|at| at > claim.now));
        let kept = alive && !claim.clean_start;
        let previous_epoch = existing.map_or(Epoch(0), |e| e.epoch);
        let previous_expiry = existing.map_or(SessionExpiry::After(0), |e| e.expiry);
        let previous_owner = existing
            .filter(|e| kept && e.owner != claim.node)
            .map(|e| e.owner);
        let (subscriptions, started) = match existing {
            Some(e) if kept => (e.subscriptions.clone(), e.started),
            _ => (Subscriptions::default(), previous_epoch.next()),
        };
        let moved_from = match existing {
            Some(e) if kept && e.owner != claim.node => Some(CopyRef {
                node: e.owner,
                epoch: e.epoch,
            }),
            Some(e) if kept => e.moved_from,
            _ => None,
        };
        // Where the previous owner took the session from: if that owner's import never landed
        // (it crashed while pulling), the state this claim cannot find there is still there.
        let previous_from = existing
            .filter(|e| kept && e.owner != claim.node)
            .and_then(|e| e.moved_from)
            .filter(|copy| copy.epoch > Epoch(0));
        let entry = SessionEntry {
            owner: claim.node,
            epoch: previous_epoch.next(),
            started,
            moved_from,
            protocol: claim.protocol,
            expires_at: None,
            detached: false,
            subscriptions,
            expiry: claim.expiry,
            will: claim.will.clone().map(Box::new),
            will_due_at: None,
        };
        let list = entry.subscription_list();
        let epoch = entry.epoch;
        self.sessions.insert(claim.client.clone(), entry);
        events.push(ClusterEvent::Owner {
            client: claim.client.clone(),
            owner: claim.node,
            epoch,
            kept,
            subscriptions: list.clone(),
            moved_from,
        });
        Claimed {
            epoch,
            session_present: kept,
            previous_owner,
            previous_epoch,
            previous_from,
            subscriptions: list,
            previous_expiry,
        }
    }
}

#[cfg(test)]
mod tests;

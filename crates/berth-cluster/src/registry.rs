//! The replicated state itself and its pure `apply`: the session registry (client → owner node,
//! epoch, protocol, expiry deadline), every session's subscriptions, and retained messages.
//!
//! `apply` is deterministic — it reads nothing but the command and the state (the proposer's
//! clock travels in the command) — so every node that applies the same log holds the same
//! registry. Besides the result for the proposer it returns the [`Notice`]s the local broker
//! needs to keep its routing in step.

use std::collections::BTreeMap;

use berth_core::vec_map::VecMap;
use berth_proto::v1 as pb;

use crate::types::NodeId;

/// One session as the cluster knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEntry {
    pub owner: NodeId,
    pub epoch: u64,
    /// The epoch this session started at (a fresh session); takeovers keep it.
    pub started_epoch: u64,
    pub protocol: u32,
    /// Set while no connection holds the session (absent: connected, or never expires).
    pub expires_at_ms: Option<u64>,
    pub detached: bool,
    pub subscriptions: Subscriptions,
    /// Session Expiry Interval (seconds; `u32::MAX`: never).
    pub expiry_interval: u32,
    /// Boxed: most sessions have none, and every node holds an entry for every session.
    pub will: Option<Box<pb::Will>>,
    /// When the will is due (set while detached with a will waiting).
    pub will_due_at_ms: Option<u64>,
}

/// A session's subscriptions by filter. A sorted `Vec` rather than a map: every node holds every
/// session's subscriptions, most sessions have one or a few, and a `BTreeMap` allocates a node of
/// eleven slots for the first.
pub type Subscriptions = VecMap<String, pb::Subscription>;

impl SessionEntry {
    /// The will to publish at `now`, if it is due.
    pub fn due_will(&self, now_ms: u64) -> Option<&pb::Will> {
        self.will
            .as_deref()
            .filter(|_| self.will_due_at_ms.is_some_and(|at| at <= now_ms))
    }

    /// Whether the session has ended by `now`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.detached && self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }
}

/// What changed, for the node's own broker.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// `client` is owned by `owner` from `epoch` on. `kept`: its session and subscriptions go on
    /// (a takeover); otherwise whatever an older owner held is discarded.
    Owner {
        client: String,
        owner: NodeId,
        epoch: u64,
        kept: bool,
        subscriptions: Vec<pb::Subscription>,
    },
    Subscribed {
        client: String,
        owner: NodeId,
        subscriptions: Vec<pb::Subscription>,
    },
    Unsubscribed {
        client: String,
        filters: Vec<String>,
    },
    Dropped {
        client: String,
        epoch: u64,
    },
    WillFired {
        client: String,
        epoch: u64,
    },
    /// The leader declared `node` down: its connected sessions count as disconnected. Seen by
    /// that node itself while alive, it re-asserts the sessions it still holds (`Reassert`).
    NodeDown {
        node: NodeId,
    },
    RetainedSet {
        message: pb::Message,
    },
    RetainedCleared {
        topic: String,
    },
    /// The whole state was replaced (snapshot installed, or loaded at start).
    Reset,
}

/// The replicated state.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Registry {
    pub sessions: BTreeMap<String, SessionEntry>,
    pub retained: BTreeMap<String, pb::Message>,
}

fn applied() -> pb::CommandResult {
    pb::CommandResult {
        kind: Some(pb::command_result::Kind::Applied(pb::Blank {})),
        log_index: 0,
    }
}

fn fenced(current: u64) -> pb::CommandResult {
    pb::CommandResult {
        kind: Some(pb::command_result::Kind::Fenced(pb::Fenced {
            current_epoch: current,
        })),
        log_index: 0,
    }
}

impl Registry {
    /// Applies one command; returns its result and the notices for the local broker.
    pub fn apply(&mut self, command: &pb::Command, notices: &mut Vec<Notice>) -> pb::CommandResult {
        use pb::command::Kind;
        let Some(kind) = &command.kind else {
            return applied();
        };
        match kind {
            Kind::Claim(claim) => self.claim(claim, notices),
            Kind::DropSession(drop) => {
                let current = self.epoch_of(&drop.client_id);
                if current != Some(drop.epoch) {
                    return fenced(current.unwrap_or(0));
                }
                self.sessions.remove(&drop.client_id);
                notices.push(Notice::Dropped {
                    client: drop.client_id.clone(),
                    epoch: drop.epoch,
                });
                applied()
            }
            Kind::Detach(detach) => match self.sessions.get_mut(&detach.client_id) {
                Some(entry) if entry.epoch == detach.epoch => {
                    entry.detached = true;
                    entry.expires_at_ms = detach.expires_at_ms;
                    entry.will_due_at_ms = detach.will_due_at_ms;
                    if detach.will_due_at_ms.is_none() {
                        // A normal DISCONNECT discards the will.
                        entry.will = None;
                    }
                    applied()
                }
                other => fenced(other.map_or(0, |e| e.epoch)),
            },
            Kind::Subscribe(sub) => match self.sessions.get_mut(&sub.client_id) {
                Some(entry) if entry.epoch == sub.epoch => {
                    for s in &sub.subscriptions {
                        entry.subscriptions.insert(s.filter.clone(), s.clone());
                    }
                    notices.push(Notice::Subscribed {
                        client: sub.client_id.clone(),
                        owner: entry.owner,
                        subscriptions: sub.subscriptions.clone(),
                    });
                    applied()
                }
                other => fenced(other.map_or(0, |e| e.epoch)),
            },
            Kind::Unsubscribe(unsub) => match self.sessions.get_mut(&unsub.client_id) {
                Some(entry) if entry.epoch == unsub.epoch => {
                    for filter in &unsub.filters {
                        entry.subscriptions.remove(filter);
                    }
                    notices.push(Notice::Unsubscribed {
                        client: unsub.client_id.clone(),
                        filters: unsub.filters.clone(),
                    });
                    applied()
                }
                other => fenced(other.map_or(0, |e| e.epoch)),
            },
            Kind::NodeDown(down) => {
                for entry in self.sessions.values_mut() {
                    if entry.owner != down.node_id || entry.detached {
                        continue;
                    }
                    // Its connection ended when its node was lost: the usual rules from then.
                    entry.detached = true;
                    let interval = entry.expiry_interval;
                    entry.expires_at_ms = (interval != u32::MAX)
                        .then(|| down.at_ms.saturating_add(u64::from(interval) * 1000));
                    entry.will_due_at_ms = entry.will.as_ref().map(|will| {
                        let delay = will.delay_secs.min(interval);
                        down.at_ms.saturating_add(u64::from(delay) * 1000)
                    });
                }
                notices.push(Notice::NodeDown { node: down.node_id });
                applied()
            }
            Kind::Reassert(reassert) => self.reassert(reassert, notices),
            Kind::WillFired(fired) => match self.sessions.get_mut(&fired.client_id) {
                Some(entry) if entry.epoch == fired.epoch => {
                    entry.will = None;
                    entry.will_due_at_ms = None;
                    notices.push(Notice::WillFired {
                        client: fired.client_id.clone(),
                        epoch: fired.epoch,
                    });
                    applied()
                }
                other => fenced(other.map_or(0, |e| e.epoch)),
            },
            Kind::SetRetained(set) => {
                if let Some(message) = &set.message {
                    self.retained.insert(message.topic.clone(), message.clone());
                    notices.push(Notice::RetainedSet {
                        message: message.clone(),
                    });
                }
                applied()
            }
            Kind::ClearRetained(clear) => {
                self.retained.remove(&clear.topic);
                notices.push(Notice::RetainedCleared {
                    topic: clear.topic.clone(),
                });
                applied()
            }
        }
    }

    /// See `pb::Reassert`.
    fn reassert(&mut self, r: &pb::Reassert, notices: &mut Vec<Notice>) -> pb::CommandResult {
        match self.sessions.get_mut(&r.client_id) {
            Some(entry) if entry.epoch == r.epoch && entry.owner == r.node_id => {
                entry.detached = false;
                entry.expires_at_ms = None;
                entry.will_due_at_ms = None;
                applied()
            }
            Some(entry) => fenced(entry.epoch),
            None => {
                let subscriptions: Subscriptions = r
                    .subscriptions
                    .iter()
                    .map(|s| (s.filter.clone(), s.clone()))
                    .collect();
                self.sessions.insert(
                    r.client_id.clone(),
                    SessionEntry {
                        owner: r.node_id,
                        epoch: r.epoch,
                        started_epoch: r.epoch,
                        protocol: r.protocol,
                        expires_at_ms: None,
                        detached: false,
                        subscriptions,
                        expiry_interval: r.expiry_interval,
                        will: r.will.clone().map(Box::new),
                        will_due_at_ms: None,
                    },
                );
                notices.push(Notice::Owner {
                    client: r.client_id.clone(),
                    owner: r.node_id,
                    epoch: r.epoch,
                    kept: true,
                    subscriptions: r.subscriptions.clone(),
                });
                applied()
            }
        }
    }

    fn epoch_of(&self, client: &str) -> Option<u64> {
        self.sessions.get(client).map(|e| e.epoch)
    }

    fn claim(&mut self, claim: &pb::Claim, notices: &mut Vec<Notice>) -> pb::CommandResult {
        let existing = self.sessions.get(&claim.client_id);
        let alive = existing
            .is_some_and(|e| !e.detached || e.expires_at_ms.is_none_or(|at| at > claim.now_ms));
        let kept = alive && !claim.clean_start;
        let previous_epoch = existing.map_or(0, |e| e.epoch);
        let previous_owner = existing
            .filter(|e| kept && e.owner != claim.node_id)
            .map(|e| e.owner);
        let subscriptions = match existing {
            Some(e) if kept => e.subscriptions.clone(),
            _ => Subscriptions::default(),
        };
        let epoch = previous_epoch + 1;
        let started_epoch = match existing {
            Some(e) if kept => e.started_epoch,
            _ => epoch,
        };
        let list: Vec<pb::Subscription> = subscriptions.values().cloned().collect();
        self.sessions.insert(
            claim.client_id.clone(),
            SessionEntry {
                owner: claim.node_id,
                epoch,
                started_epoch,
                protocol: claim.protocol,
                expires_at_ms: None,
                detached: false,
                subscriptions,
                expiry_interval: claim.expiry_interval,
                will: claim.will.clone().map(Box::new),
                will_due_at_ms: None,
            },
        );
        notices.push(Notice::Owner {
            client: claim.client_id.clone(),
            owner: claim.node_id,
            epoch,
            kept,
            subscriptions: list.clone(),
        });
        pb::CommandResult {
            kind: Some(pb::command_result::Kind::Claim(pb::ClaimResult {
                epoch,
                session_present: kept,
                previous_owner,
                previous_epoch,
                subscriptions: list,
            })),
            log_index: 0,
        }
    }

    /// The registry as a snapshot message (without Raft's own fields).
    pub fn to_snapshot(&self) -> (Vec<pb::SessionEntry>, Vec<pb::Message>) {
        let sessions = self
            .sessions
            .iter()
            .map(|(client, e)| pb::SessionEntry {
                client_id: client.clone(),
                owner: e.owner,
                epoch: e.epoch,
                started_epoch: e.started_epoch,
                protocol: e.protocol,
                expires_at_ms: if e.detached {
                    Some(e.expires_at_ms.unwrap_or(u64::MAX))
                } else {
                    None
                },
                subscriptions: e.subscriptions.values().cloned().collect(),
                expiry_interval: e.expiry_interval,
                will: e.will.as_deref().cloned(),
                will_due_at_ms: e.will_due_at_ms,
            })
            .collect();
        (sessions, self.retained.values().cloned().collect())
    }

    pub fn from_snapshot(sessions: Vec<pb::SessionEntry>, retained: Vec<pb::Message>) -> Registry {
        Registry {
            sessions: sessions
                .into_iter()
                .map(|s| {
                    let detached = s.expires_at_ms.is_some();
                    let expires_at_ms = s.expires_at_ms.filter(|at| *at != u64::MAX);
                    (
                        s.client_id,
                        SessionEntry {
                            owner: s.owner,
                            epoch: s.epoch,
                            started_epoch: s.started_epoch,
                            protocol: s.protocol,
                            expires_at_ms,
                            detached,
                            subscriptions: s
                                .subscriptions
                                .into_iter()
                                .map(|sub| (sub.filter.clone(), sub))
                                .collect(),
                            expiry_interval: s.expiry_interval,
                            will: s.will.map(Box::new),
                            will_due_at_ms: s.will_due_at_ms,
                        },
                    )
                })
                .collect(),
            retained: retained.into_iter().map(|m| (m.topic.clone(), m)).collect(),
        }
    }
}

#[cfg(test)]
mod tests;

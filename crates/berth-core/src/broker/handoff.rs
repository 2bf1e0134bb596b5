//! Hinted handoff: a message for another node's session whose owner cannot be reached is kept
//! here, durably, and its publisher is acknowledged at once; the entries go to the session's
//! owner once it can be reached again, or to whichever node owns the session by then.
//!
//! ```text
//!  forward to X unanswered (berth-node: no answer, and no answer to a probe, within the bound)
//!    ─Event::HandOff { node: X, items }─▶ entries stored, X unreachable, publishers acknowledged
//!  while X is unreachable: matches on X's sessions are stored as entries at once
//!  a session with entries here: newer matches from here queue behind them (publish order)
//!  X answers a probe ─Event::NodeReachable─▶ Action::ForwardResume, then rounds of forwards to
//!    the owner the registry names now (DUP = 1 where an earlier try may have arrived); an
//!    entry is deleted once that owner stored it; a session owned here by then gets them here
//! ```
//!
//! The same entries hold what arrives for a session this node is importing (published here,
//! forwarded, or released by a fence): kept and acknowledged at once, delivered behind the
//! backlog when the import ends, or joined to the copy's queue if the session was claimed away
//! meanwhile (`keep_for_import`, `hand_over_kept`) — publishers do not wait for an old owner
//! that may be away for seconds.
//!
//! A session that ends (or starts afresh) takes its entries with it. Order: per publisher, the
//! entries keep their order and follow what reached the owner before; a session that moved
//! meanwhile gets them after what its new owner received since (late, like a stranded backlog).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::{Action, Broker};
use crate::cluster::{Forwarded, NodeId};
use crate::config::DropPolicy;
use crate::ids::{ClientId, Epoch};
use crate::message::Message;
use crate::stats::DropReason;
use crate::store::{HandoffRecord, Op, Store};
use crate::time::UnixMillis;

/// Entries of one session sent to its owner at a time.
const ROUND: usize = 64;
/// How often entries that could not go out are tried again (an owner being imported here, a
/// fenced session, a round that failed).
const PUMP_EVERY_MS: u64 = 1_000;

/// What this node keeps for other nodes' sessions.
#[derive(Debug, Default)]
pub(crate) struct Handoff {
    queues: BTreeMap<ClientId, HandoffQueue>,
    total: u64,
    next_seq: u64,
    /// Entries out to an owner, by forward token.
    out: HashMap<u64, (ClientId, u64)>,
    /// Nodes whose forwards are handed off, until one of their probes answers.
    unreachable: HashSet<NodeId>,
    /// When entries are tried again (`None` before the first try: at once).
    pump_at: Option<UnixMillis>,
}

#[derive(Debug, Default)]
struct HandoffQueue {
    entries: VecDeque<Entry>,
    /// How many of the first entries are out to an owner (one round at a time, so that a
    /// round never overtakes the one before).
    sending: usize,
    /// A round was not stored: the next waits for a tick.
    failed: bool,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    /// The session's epoch as this node knew it (`HandoffRecord::epoch`).
    epoch: Epoch,
    message: Arc<Message>,
    publisher: Option<ClientId>,
    retried: bool,
}

impl Handoff {
    /// Rebuilds the entries found in storage (in `seq` order).
    pub fn restore(records: Vec<HandoffRecord>) -> Handoff {
        let mut handoff = Handoff::default();
        for record in records {
            handoff.next_seq = handoff.next_seq.max(record.seq + 1);
            handoff.total += 1;
            handoff
                .queues
                .entry(record.client)
                .or_default()
                .entries
                .push_back(Entry {
                    seq: record.seq,
                    epoch: record.epoch,
                    message: Arc::new(record.message),
                    publisher: record.publisher,
                    retried: record.retried,
                });
        }
        handoff
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// When the broker's next tick must come for these entries (see `pump_handoff`).
    pub fn next_pump(&self) -> Option<UnixMillis> {
        if self.queues.is_empty() {
            None
        } else {
            Some(self.pump_at.unwrap_or(UnixMillis(0)))
        }
    }

    pub fn pump_due(&self, now: UnixMillis) -> bool {
        self.next_pump().is_some_and(|at| at <= now)
    }

    /// Whether messages are kept here for `client` (newer ones queue behind them).
    pub fn holds(&self, client: &ClientId) -> bool {
        !self.queues.is_empty() && self.queues.contains_key(client)
    }

    /// Whether a match on `client`, owned by `owner`, is kept here instead of forwarded: its
    /// owner cannot be reached, or older entries for it wait here.
    pub fn takes(&self, owner: NodeId, client: &ClientId) -> bool {
        (!self.unreachable.is_empty() && self.unreachable.contains(&owner))
            || (!self.queues.is_empty() && self.queues.contains_key(client))
    }
}

impl<S: Store> Broker<S> {
    /// The messages kept here for sessions, per session in order (for an operator's view,
    /// and the simulator's checker).
    pub fn handoff_entries(&self) -> Vec<(ClientId, Arc<Message>)> {
        self.handoff
            .queues
            .iter()
            .flat_map(|(client, q)| {
                q.entries
                    .iter()
                    .map(|e| (client.clone(), e.message.clone()))
            })
            .collect()
    }

    /// Keeps `message` for `client`, a session this node is importing (or that has entries
    /// kept here): delivered after its backlog (`hand_over_kept` at the import's end).
    pub(super) fn keep_for_import(
        &mut self,
        client: &ClientId,
        message: &Arc<Message>,
        publisher: Option<&ClientId>,
        retried: bool,
    ) {
        if !self.hand_off(client, message, publisher, retried) {
            self.route_quota_drops += 1;
        }
    }

    /// Keeps `message` for `client` (its owner cannot be reached, or older entries wait);
    /// false when the handoff is full and the drop policy refuses it.
    pub(super) fn hand_off(
        &mut self,
        client: &ClientId,
        message: &Arc<Message>,
        publisher: Option<&ClientId>,
        retried: bool,
    ) -> bool {
        let limits = self.config.handoff.clone();
        loop {
            let queued = self
                .handoff
                .queues
                .get(client)
                .map_or(0, |q| q.entries.len() as u64);
            if limits.max_per_session.allows(queued + 1)
                && limits.max_total.allows(self.handoff.total + 1)
            {
                break;
            }
            // The queue's drop policy: the oldest entry of this session not yet on its way
            // makes room, or the new message is refused.
            let oldest = (self.config.queue.drop_policy == DropPolicy::DropOldest)
                .then(|| self.handoff.queues.get_mut(client))
                .flatten()
                .and_then(|q| {
                    let at = q.sending;
                    q.entries.remove(at)
                });
            self.stats.count_drop(DropReason::HandoffFull);
            let Some(oldest) = oldest else {
                return false;
            };
            self.handoff.total -= 1;
            self.batch.push(Op::DeleteHandoff {
                client: client.clone(),
                seq: oldest.seq,
            });
        }
        let seq = self.handoff.next_seq;
        self.handoff.next_seq += 1;
        self.handoff.total += 1;
        let epoch = self.known_epoch(client);
        self.batch.push(Op::PutHandoff {
            record: HandoffRecord {
                seq,
                client: client.clone(),
                epoch,
                message: (**message).clone(),
                publisher: publisher.cloned(),
                retried,
            },
        });
        self.handoff
            .queues
            .entry(client.clone())
            .or_default()
            .entries
            .push_back(Entry {
                seq,
                epoch,
                message: message.clone(),
                publisher: publisher.cloned(),
                retried,
            });
        true
    }

    /// Sends `forwarded` to `owner`, or keeps it here for the sessions whose owner cannot be
    /// reached or that have entries waiting; returns whether `token` now waits for a forward.
    pub(super) fn forward_or_hand_off(
        &mut self,
        owner: NodeId,
        token: Option<u64>,
        forwarded: Forwarded,
    ) -> bool {
        let (kept, direct): (Vec<ClientId>, Vec<ClientId>) = forwarded
            .clients
            .iter()
            .cloned()
            .partition(|client| self.handoff.takes(owner, client));
        for client in &kept {
            let publisher = forwarded.publisher.as_ref();
            if !self.hand_off(client, &forwarded.message, publisher, forwarded.retried) {
                self.route_quota_drops += 1;
            }
        }
        if direct.is_empty() {
            return false;
        }
        let forwarded = Forwarded {
            clients: direct,
            ..forwarded
        };
        self.send_forward(owner, token, forwarded);
        true
    }

    /// berth-node could not reach `node` within the bound: what it had for `node` is kept here
    /// (it may have arrived: DUP = 1 later), and the publishers waiting for it are answered.
    pub(super) fn on_hand_off(
        &mut self,
        now: UnixMillis,
        node: NodeId,
        items: Vec<(Option<u64>, Forwarded)>,
    ) {
        if self.handoff.unreachable.insert(node) {
            self.actions.push(Action::ProbeNode { node });
        }
        for (token, forwarded) in items {
            if let Some(token) = token
                && self.handoff_round_ended(token, false)
            {
                // An entry already kept here: it stays (the round is over).
                continue;
            }
            let mut kept = true;
            for client in &forwarded.clients {
                kept &= self.hand_off(
                    client,
                    &forwarded.message,
                    forwarded.publisher.as_ref(),
                    true,
                );
            }
            if let Some(token) = token {
                self.on_forward_done(now, token, kept, Some(node));
            }
        }
    }

    /// A probe of `node` answered: its forwards go out again, and so do the entries kept here.
    pub(super) fn on_node_reachable(&mut self, now: UnixMillis, node: NodeId) {
        self.handoff.unreachable.remove(&node);
        self.actions.push(Action::ForwardResume { node });
        self.pump_handoff(now);
    }

    /// A forward with `token` ended; true if it was a handoff entry's.
    pub(super) fn on_handoff_forward_done(
        &mut self,
        now: UnixMillis,
        token: u64,
        delivered: bool,
    ) -> bool {
        let Some(client) = self.handoff.out.get(&token).map(|(c, _)| c.clone()) else {
            return false;
        };
        self.handoff_round_ended(token, delivered);
        if self
            .handoff
            .queues
            .get(&client)
            .is_some_and(|q| q.sending == 0 && !q.failed)
        {
            self.send_handoff_round(now, &client);
        }
        true
    }

    /// The entry out under `token` was stored by its owner (deleted here) or not (kept, and
    /// the next round waits for a tick); false if `token` is not an entry's.
    fn handoff_round_ended(&mut self, token: u64, stored: bool) -> bool {
        let Some((client, seq)) = self.handoff.out.remove(&token) else {
            return false;
        };
        let Some(queue) = self.handoff.queues.get_mut(&client) else {
            return true;
        };
        queue.sending = queue.sending.saturating_sub(1);
        if !stored {
            queue.failed = true;
            // Unanswered, not refused: it may have arrived and been delivered; it goes again
            // with DUP = 1 (written down, for a restart too).
            if let Some(entry) = queue.entries.iter_mut().find(|e| e.seq == seq)
                && !entry.retried
            {
                entry.retried = true;
                let record = HandoffRecord {
                    seq,
                    client: client.clone(),
                    epoch: entry.epoch,
                    message: (*entry.message).clone(),
                    publisher: entry.publisher.clone(),
                    retried: true,
                };
                self.batch.push(Op::PutHandoff { record });
            }
            return true;
        }
        if let Some(at) = queue.entries.iter().position(|e| e.seq == seq) {
            queue.entries.remove(at);
            queue.sending = queue.sending.min(queue.entries.len());
            self.handoff.total -= 1;
            self.stats.handoff_delivered_total += 1;
            self.batch.push(Op::DeleteHandoff {
                client: client.clone(),
                seq,
            });
        }
        if queue.entries.is_empty() && queue.sending == 0 {
            self.handoff.queues.remove(&client);
        }
        true
    }

    /// Sends a round of every session's entries whose owner can be reached (a tick, or a node
    /// reachable again).
    pub(super) fn pump_handoff(&mut self, now: UnixMillis) {
        self.handoff.pump_at = Some(UnixMillis(now.0 + PUMP_EVERY_MS));
        // Before this node has caught up with the log it does not know the owners yet.
        if self.handoff.queues.is_empty() || self.timers_held() {
            return;
        }
        let idle: Vec<ClientId> = self
            .handoff
            .queues
            .iter_mut()
            .filter(|(_, q)| q.sending == 0)
            .map(|(client, q)| {
                q.failed = false;
                client.clone()
            })
            .collect();
        for client in idle {
            self.send_handoff_round(now, &client);
        }
    }

    /// `client`'s import here is done: its entries go on now (delivered here if it stays),
    /// not at the next tick, after newer messages that waited for the import. Only at the end
    /// of an import may they join a copy claimed away (`abandon_kept` otherwise).
    pub(super) fn hand_over_kept(&mut self, now: UnixMillis, client: &ClientId) {
        if self
            .handoff
            .queues
            .get(client)
            .is_none_or(|q| q.sending > 0)
        {
            return;
        }
        if self.is_moving(client) && self.sessions.contains_key(client) {
            // Claimed by another node while it arrived here: the entries join the copy's
            // queue, behind its backlog, and go with it to the new owner (whose own kept
            // messages, newer, follow that backlog there). The copy is not exported before
            // this (the export waits for the import).
            let Some(queue) = self.handoff.queues.remove(client) else {
                return;
            };
            for entry in queue.entries {
                self.handoff.total -= 1;
                self.batch.push(Op::DeleteHandoff {
                    client: client.clone(),
                    seq: entry.seq,
                });
                let publisher = entry.publisher.as_ref();
                if let Some(mut delivery) = self.delivery_for(client, &entry.message, publisher) {
                    delivery.redelivery =
                        entry.retried && delivery.qos != berth_codec::QoS::AtMostOnce;
                    self.deliver(now, client, delivery);
                }
            }
            return;
        }
        self.send_handoff_round(now, client);
    }

    /// `client`'s import here was abandoned (its claim overtaken before it pulled): what was
    /// kept for it goes to the session's owner, not into a copy here.
    pub(super) fn abandon_kept(&mut self, now: UnixMillis, client: &ClientId) {
        // While the log is replayed at start, owners are history: the pump decides later.
        if !self.timers_held()
            && self
                .handoff
                .queues
                .get(client)
                .is_some_and(|q| q.sending == 0)
        {
            self.send_handoff_round(now, client);
        }
    }

    /// The next entries of `client` go to the node that owns it now.
    fn send_handoff_round(&mut self, now: UnixMillis, client: &ClientId) {
        if self.is_fenced(client) || self.import_pending(client) {
            // Forwards to its old owner are still out, or its state is still arriving here
            // (also when another node claimed it since: the copy here takes them along, see
            // `hand_over_kept`): the entries follow.
            return;
        }
        let Some(node) = self.cluster.as_ref().map(|c| c.node) else {
            return;
        };
        match self.remote_owner(client) {
            // Being imported here: after its backlog (a later tick).
            Some(owner) if owner == node => {}
            Some(owner) if self.handoff.unreachable.contains(&owner) => {}
            Some(owner) => {
                let round: Vec<(u64, Forwarded)> =
                    self.handoff
                        .queues
                        .get(client)
                        .map_or_else(Vec::new, |queue| {
                            queue
                                .entries
                                .iter()
                                .take(ROUND)
                                .map(|e| (e.seq, entry_forward(client, e)))
                                .collect()
                        });
                if let Some(queue) = self.handoff.queues.get_mut(client) {
                    queue.sending = round.len();
                }
                for (seq, forwarded) in round {
                    let Some(token) = self.new_token() else {
                        return;
                    };
                    self.handoff.out.insert(token, (client.clone(), seq));
                    self.actions.push(Action::Forward {
                        node: owner,
                        token: Some(token),
                        message: forwarded.message,
                        clients: forwarded.clients,
                        publisher: forwarded.publisher,
                        retried: forwarded.retried,
                    });
                }
            }
            None if self.sessions.contains_key(client) => {
                // The session moved here meanwhile.
                let Some(queue) = self.handoff.queues.remove(client) else {
                    return;
                };
                for entry in queue.entries {
                    self.deliver_forwarded(now, &entry_forward(client, &entry));
                    self.handoff.total -= 1;
                    self.stats.handoff_delivered_total += 1;
                    self.batch.push(Op::DeleteHandoff {
                        client: client.clone(),
                        seq: entry.seq,
                    });
                }
            }
            // Ended: its entries go with it.
            None => self.discard_handoff(client),
        }
    }

    /// `client`'s session ended at `epoch` (`Dropped`): what was kept for it up to that
    /// epoch goes (a replayed old end leaves what was kept for a later session).
    pub(super) fn discard_handoff_upto(&mut self, client: &ClientId, epoch: Epoch) {
        self.discard_handoff_where(client, |e| e <= epoch);
    }

    /// `client` started afresh at `epoch` (a Clean Start claim): what was kept for an older
    /// session goes.
    pub(super) fn discard_handoff_before(&mut self, client: &ClientId, epoch: Epoch) {
        self.discard_handoff_where(client, |e| e < epoch);
    }

    /// The session `client` is gone: all that was kept for it goes.
    fn discard_handoff(&mut self, client: &ClientId) {
        self.discard_handoff_where(client, |_| true);
    }

    fn discard_handoff_where(&mut self, client: &ClientId, void: impl Fn(Epoch) -> bool) {
        let Some(queue) = self.handoff.queues.get_mut(client) else {
            return;
        };
        let mut kept = VecDeque::with_capacity(queue.entries.len());
        let mut gone = Vec::new();
        for (at, entry) in queue.entries.drain(..).enumerate() {
            // An entry out to an owner stays until its round ends.
            if at >= queue.sending && void(entry.epoch) {
                gone.push(entry.seq);
            } else {
                kept.push_back(entry);
            }
        }
        queue.entries = kept;
        if queue.entries.is_empty() {
            self.handoff.queues.remove(client);
        }
        for seq in gone {
            self.handoff.total -= 1;
            self.batch.push(Op::DeleteHandoff {
                client: client.clone(),
                seq,
            });
        }
    }

    /// The newest epoch of `client`'s session this node knows.
    fn known_epoch(&self, client: &ClientId) -> Epoch {
        let remote = self
            .cluster
            .as_ref()
            .and_then(|c| c.remote.get(client))
            .map(|r| r.epoch);
        let local = self.sessions.get(client).map(|s| s.epoch);
        remote.max(local).unwrap_or_default()
    }
}

fn entry_forward(client: &ClientId, entry: &Entry) -> Forwarded {
    Forwarded {
        message: entry.message.clone(),
        clients: vec![client.clone()],
        publisher: entry.publisher.clone(),
        retried: entry.retried,
    }
}

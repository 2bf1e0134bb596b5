//! Forwarding (`forwarding.rs` of `berth-node`): one ordered queue per target node, batches of
//! up to 512 retried with backoff (5 s per attempt) until the 10 s deadline, clients the target
//! no longer owns re-routed to the owners this node's registry names (20 rounds), and the
//! outcome reported to the broker as `ForwardDone`; a target that answers neither a batch nor a
//! probe within the handoff bound gets its batch and queue handed back (`HandOff`), and so
//! does everything after, until a probe answers (`NodeReachable`) and the broker resumes the
//! queue (`ForwardResume`); one that answers probes but not the batch gets the batch again
//! (`RESEND_UNANSWERED`).

use std::collections::BTreeMap;

use crate::NodeId;
use berth_cluster::pb;
use berth_core::Event;

use crate::net::{NetBody, Purpose};
use crate::node::*;
use crate::sim::{Id, NodeEv, Sim, Timer};
use crate::wire::{client_id, forwarded_from_pb};

impl Sim {
    pub(crate) fn forward_kick(&mut self, n: NodeId, target: NodeId) {
        let Some(queue) = self.node_mut(n).fwd.get_mut(&target) else {
            return;
        };
        if queue.batch.is_some() || queue.waiting.is_empty() {
            return;
        }
        if queue.returning {
            let items: Vec<FwdItem> = queue.waiting.drain(..).collect();
            self.hand_back(n, target, items);
            return;
        }
        let take = queue.waiting.len().min(FORWARD_BATCH);
        let items: Vec<FwdItem> = queue.waiting.drain(..take).collect();
        let id = self.id();
        if let Some(queue) = self.node_mut(n).fwd.get_mut(&target) {
            queue.batch = Some(FwdBatch {
                id,
                items,
                attempts: 0,
                backoff: 50,
                stage: FwdStage::Sleeping,
                sent_at: 0,
                resend_after: RESEND_UNANSWERED,
                reroute_since: 0,
            });
        }
        if let Some(bound) = self.cfg.handoff_after {
            self.at_node(
                n,
                bound / 2,
                NodeEv::Timer(Timer::ForwardWatch { target, batch: id }),
            );
        }
        self.forward_attempt(n, target);
    }

    /// `send_watched`: the batch `batch` is still unanswered after the bound; probe.
    pub(crate) fn forward_watch(&mut self, n: NodeId, target: NodeId, batch: Id) {
        let watched = self
            .node(n)
            .fwd
            .get(&target)
            .and_then(|q| q.batch.as_ref())
            .is_some_and(|b| {
                b.id == batch && matches!(b.stage, FwdStage::Sending { .. } | FwdStage::Sleeping)
            });
        if watched {
            let purpose = Purpose::Probe {
                target,
                batch: Some(batch),
            };
            let body = NetBody::Forward(Vec::new(), false);
            let half = self.cfg.handoff_after.map(|b| b / 2);
            self.start_rpc(n, target, purpose, body, half);
        }
    }

    /// A probe's outcome: for a batch's watch (unanswered: hand everything back), or for a
    /// handed-back queue (answered: tell the broker).
    pub(crate) fn probe_reply(
        &mut self,
        n: NodeId,
        target: NodeId,
        batch: Option<Id>,
        answered: bool,
    ) {
        let Some(queue) = self.node(n).fwd.get(&target) else {
            return;
        };
        let Some(id) = batch else {
            if answered && queue.returning {
                trace!(self, "n{n}: n{target} reachable again");
                let event = Event::NodeReachable {
                    node: berth_core::NodeId(target),
                };
                self.at_node(n, 0, NodeEv::Broker(Box::new(event)));
            }
            return;
        };
        let current = queue.batch.as_ref().is_some_and(|b| {
            b.id == id && matches!(b.stage, FwdStage::Sending { .. } | FwdStage::Sleeping)
        });
        if !current {
            return;
        }
        if answered {
            // Alive: its broker answers forwards at once, so a batch unanswered this long was
            // lost with its connection; sent again, as a retry.
            let now = self.now;
            let resend = self.fwd_batch(n, target).is_some_and(|b| {
                let due = matches!(b.stage, FwdStage::Sending { .. })
                    && now.saturating_sub(b.sent_at) >= b.resend_after;
                if due {
                    b.resend_after = (b.resend_after * 2).min(FORWARD_ATTEMPT);
                }
                due
            });
            if resend {
                trace!(
                    self,
                    "n{n}: n{target} answers probes but not the batch: sending it again"
                );
                self.forward_attempt(n, target);
            }
            let half = self.cfg.handoff_after.unwrap_or(100) / 2;
            self.at_node(
                n,
                half,
                NodeEv::Timer(Timer::ForwardWatch { target, batch: id }),
            );
            return;
        }
        trace!(
            self,
            "n{n}: n{target} unreachable, handing its forwards back"
        );
        let Some(queue) = self.node_mut(n).fwd.get_mut(&target) else {
            return;
        };
        let Some(batch) = queue.batch.take() else {
            return;
        };
        queue.returning = true;
        // Sent: it may have arrived (`sent_once` of `berth-node`).
        let mut items = batch.items;
        for item in &mut items {
            item.forwarded.retried = true;
        }
        items.extend(queue.waiting.drain(..));
        self.hand_back(n, target, items);
        self.at_node(n, PROBE_EVERY, NodeEv::Timer(Timer::ProbeTick { target }));
    }

    /// `Event::HandOff` of `items`, in order.
    fn hand_back(&mut self, n: NodeId, target: NodeId, items: Vec<FwdItem>) {
        if items.is_empty() {
            return;
        }
        let event = Event::HandOff {
            node: berth_core::NodeId(target),
            items: items.into_iter().map(|i| (i.token, i.forwarded)).collect(),
        };
        self.at_node(n, 0, NodeEv::Broker(Box::new(event)));
    }

    /// A handed-back queue probes its target now and then.
    pub(crate) fn probe_tick(&mut self, n: NodeId, target: NodeId) {
        if !self.node(n).fwd.get(&target).is_some_and(|q| q.returning) {
            return;
        }
        let purpose = Purpose::Probe {
            target,
            batch: None,
        };
        let body = NetBody::Forward(Vec::new(), false);
        self.start_rpc(n, target, purpose, body, self.cfg.handoff_after);
        self.at_node(n, PROBE_EVERY, NodeEv::Timer(Timer::ProbeTick { target }));
    }

    /// `Action::ForwardResume`: the queue sends again.
    pub(crate) fn forward_resume(&mut self, n: NodeId, target: NodeId) {
        if let Some(queue) = self.node_mut(n).fwd.get_mut(&target) {
            queue.returning = false;
        }
        self.forward_kick(n, target);
    }

    pub(crate) fn forward_attempt(&mut self, n: NodeId, target: NodeId) {
        let now = self.now;
        let Some(batch) = self.fwd_batch(n, target) else {
            return;
        };
        let messages = batch.items.iter().map(|i| i.msg.clone()).collect();
        let retry = batch.attempts > 0;
        batch.attempts += 1;
        batch.sent_at = now;
        let rpc = self.start_rpc(
            n,
            target,
            Purpose::Forward { target },
            NetBody::Forward(messages, retry),
            Some(FORWARD_ATTEMPT),
        );
        if let Some(batch) = self.fwd_batch(n, target) {
            batch.stage = FwdStage::Sending { rpc };
        }
    }

    pub(crate) fn forward_retry(&mut self, n: NodeId, target: NodeId) {
        let sleeping = self
            .node(n)
            .fwd
            .get(&target)
            .and_then(|q| q.batch.as_ref())
            .is_some_and(|b| matches!(b.stage, FwdStage::Sleeping));
        if sleeping {
            self.forward_attempt(n, target);
        }
    }

    pub(crate) fn forward_reply(
        &mut self,
        n: NodeId,
        target: NodeId,
        rpc: Id,
        result: Result<NetBody, String>,
    ) {
        let now = self.now;
        let Some(batch) = self.fwd_batch(n, target) else {
            return;
        };
        if !matches!(batch.stage, FwdStage::Sending { rpc: r } if r == rpc) {
            return;
        }
        match result {
            Ok(NetBody::ForwardAck(not_owned)) if not_owned.is_empty() => {
                self.forward_done(n, target, true);
            }
            Ok(NetBody::ForwardAck(not_owned)) => self.reroute_round(n, target, 0, not_owned),
            _ => {
                let deadline = batch.items.iter().map(|i| i.deadline).min().unwrap_or(now);
                if now + batch.backoff > deadline {
                    trace!(self, "n{n} forwarding to n{target} failed");
                    self.forward_done(n, target, false);
                    return;
                }
                let backoff = batch.backoff;
                batch.backoff = (batch.backoff * 2).min(1_000);
                batch.stage = FwdStage::Sleeping;
                self.at_node(n, backoff, NodeEv::Timer(Timer::ForwardRetry { target }));
            }
        }
    }

    /// One round of `forwarding::reroute`: the clients `target` did not own go to the owners
    /// this node's registry names now.
    pub(crate) fn reroute_round(
        &mut self,
        n: NodeId,
        target: NodeId,
        attempt: u64,
        not_owned: Vec<String>,
    ) {
        let round = self.id();
        let now = self.now;
        let node = self.node_mut(n);
        let Some(batch) = node.fwd.get_mut(&target).and_then(|q| q.batch.as_mut()) else {
            return;
        };
        if attempt == 0 {
            batch.reroute_since = now;
        }
        let owners: BTreeMap<String, NodeId> = not_owned
            .iter()
            .filter_map(|c| {
                let owner = node.registry.sessions.get(&client_id(c)?)?.owner;
                Some((c.clone(), owner.0))
            })
            .collect();
        // Sent more than once to `target`: an earlier attempt may be stored there (and moved
        // on with its session), so the re-routed copies count as retries too.
        let retried = batch.attempts > 1 || attempt > 0;
        let mut pending: BTreeMap<NodeId, Vec<pb::ForwardedMessage>> = BTreeMap::new();
        for item in &batch.items {
            for client in &item.msg.client_ids {
                let Some(owner) = owners.get(client) else {
                    continue;
                };
                if !not_owned.contains(client) {
                    continue;
                }
                let mut message = item.msg.clone();
                message.client_ids = vec![client.clone()];
                pending.entry(*owner).or_default().push(message);
            }
        }
        batch.stage = FwdStage::Rerouting {
            attempt,
            round,
            outstanding: pending.len(),
            refused: Vec::new(),
            refused_here: Vec::new(),
        };
        if pending.is_empty() {
            self.reroute_evaluate(n, target);
            return;
        }
        let wait = self.cfg.handoff_after.map(|b| b.max(REROUTE_WAIT));
        for (owner, messages) in pending {
            if owner == n {
                let Ok(forwarded) = forwarded_from_pb(&messages, retried) else {
                    self.reroute_reply(n, target, round, RerouteOutcome::RefusedHere(messages));
                    continue;
                };
                let node = self.node_mut(n);
                node.next_token += 1;
                let token = node.next_token;
                node.fwd_replies.insert(
                    token,
                    ReplyTo::Local {
                        target,
                        round,
                        messages,
                    },
                );
                let event = Event::Forwarded {
                    token,
                    messages: forwarded,
                };
                self.at_node(n, 0, NodeEv::Broker(Box::new(event)));
            } else {
                let purpose = Purpose::Reroute {
                    target,
                    round,
                    owner,
                    messages: messages.clone(),
                };
                let body = NetBody::Forward(messages, retried);
                self.start_rpc(n, owner, purpose, body, wait);
            }
        }
    }

    pub(crate) fn reroute_reply(
        &mut self,
        n: NodeId,
        target: NodeId,
        round: u64,
        outcome: RerouteOutcome,
    ) {
        let handoff = self.cfg.handoff_after.is_some();
        let Some(batch) = self.fwd_batch(n, target) else {
            return;
        };
        let FwdStage::Rerouting {
            round: current,
            outstanding,
            refused,
            refused_here,
            ..
        } = &mut batch.stage
        else {
            return;
        };
        if *current != round {
            return;
        }
        *outstanding = outstanding.saturating_sub(1);
        let done = *outstanding == 0;
        let mut keep = None;
        match outcome {
            RerouteOutcome::Taken => {}
            RerouteOutcome::Refused(owner, messages) => refused.push((owner, messages)),
            RerouteOutcome::RefusedHere(messages) => refused_here.extend(messages),
            // Not reachable within the bound: kept here for it, as its own queue would.
            RerouteOutcome::Unreachable(owner, messages) if handoff => {
                keep = Some((owner, messages));
            }
            RerouteOutcome::Unreachable(owner, messages) => refused.push((owner, messages)),
        }
        if let Some((owner, messages)) = keep {
            self.keep_rerouted(n, owner, &messages);
        }
        if done {
            self.reroute_evaluate(n, target);
        }
    }

    /// `forwarding::keep`: a `HandOff` without a token.
    fn keep_rerouted(&mut self, n: NodeId, owner: NodeId, messages: &[pb::ForwardedMessage]) {
        let Ok(forwarded) = forwarded_from_pb(messages, true) else {
            return;
        };
        trace!(self, "n{n}: re-routed messages for n{owner} kept here");
        let event = Event::HandOff {
            node: berth_core::NodeId(owner),
            items: forwarded.into_iter().map(|f| (None, f)).collect(),
        };
        self.at_node(n, 0, NodeEv::Broker(Box::new(event)));
    }

    pub(crate) fn reroute_evaluate(&mut self, n: NodeId, target: NodeId) {
        let now = self.now;
        let wait = self.cfg.handoff_after.map(|b| b.max(REROUTE_WAIT));
        let Some(batch) = self.fwd_batch(n, target) else {
            return;
        };
        let since = batch.reroute_since;
        let FwdStage::Rerouting {
            attempt,
            mut refused,
            refused_here,
            ..
        } = std::mem::replace(&mut batch.stage, FwdStage::Sleeping)
        else {
            return;
        };
        if wait.is_some_and(|wait| now.saturating_sub(since) >= wait) {
            for (owner, messages) in std::mem::take(&mut refused) {
                self.keep_rerouted(n, owner, &messages);
            }
        }
        // The next round re-routes only what was refused and not kept.
        let not_owned: Vec<String> = refused
            .iter()
            .flat_map(|(_, messages)| messages)
            .chain(&refused_here)
            .flat_map(|m| m.client_ids.iter().cloned())
            .collect();
        let Some(batch) = self.fwd_batch(n, target) else {
            return;
        };
        if not_owned.is_empty() {
            self.forward_done(n, target, true);
        } else if attempt + 1 < 20 {
            batch.stage = FwdStage::RerouteSleeping {
                attempt: attempt + 1,
                not_owned,
            };
            self.at_node(
                n,
                100 * (attempt + 1),
                NodeEv::Timer(Timer::RerouteRetry { target }),
            );
        } else {
            self.forward_done(n, target, false);
        }
    }

    pub(crate) fn reroute_retry(&mut self, n: NodeId, target: NodeId) {
        let Some(batch) = self.fwd_batch(n, target) else {
            return;
        };
        if let FwdStage::RerouteSleeping { attempt, not_owned } =
            std::mem::replace(&mut batch.stage, FwdStage::Sleeping)
        {
            self.reroute_round(n, target, attempt, not_owned);
        }
    }

    /// `Action::ProbeNode`: the broker counts `target` unreachable; its queue probes it.
    pub(crate) fn probe_node(&mut self, n: NodeId, target: NodeId) {
        let queue = self.node_mut(n).fwd.entry(target).or_default();
        if queue.returning {
            return;
        }
        queue.returning = true;
        self.at_node(n, PROBE_EVERY, NodeEv::Timer(Timer::ProbeTick { target }));
    }

    /// The batch is through (or given up): every publish waiting on it hears the outcome.
    pub(crate) fn forward_done(&mut self, n: NodeId, target: NodeId, delivered: bool) {
        let Some(batch) = self
            .node_mut(n)
            .fwd
            .get_mut(&target)
            .and_then(|q| q.batch.take())
        else {
            return;
        };
        for item in batch.items {
            if let Some(token) = item.token {
                let event = Event::ForwardDone {
                    token,
                    delivered,
                    node: berth_core::NodeId(target),
                };
                self.at_node(n, 0, NodeEv::Broker(Box::new(event)));
            }
        }
        self.forward_kick(n, target);
    }

    /// Node `n`'s batch in flight to `target`, if any.
    fn fwd_batch(&mut self, n: NodeId, target: NodeId) -> Option<&mut FwdBatch> {
        self.node_mut(n)
            .fwd
            .get_mut(&target)
            .and_then(|q| q.batch.as_mut())
    }
}

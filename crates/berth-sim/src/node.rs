//! One node: the real broker core on a `MemStore`, its own copy of the registry, the dispatch of
//! its events and of the broker's actions, crash / restart / pause. The server's cluster steps
//! around the broker are modelled as explicit state machines in their own modules
//! (`admission.rs`, `takeover.rs`, `forwarding.rs`, `stranded.rs`):
//!
//! - a CONNECT's claim (`admission::claim`): propose, wait until the broker applied the claim,
//!   take the session over from its previous owner if it lives elsewhere, then `ConnectAs`;
//! - the new owner's pull (`ClusterLink::take_over` / `pull`): `ImportBegin`, header,
//!   `ImportState`, `ImportQueue` pages, release, `ImportDone`; the registry's subscriptions
//!   as fallback when the old owner does not answer; the same pull for a stranded backlog
//!   (`ImportLate`);
//! - the old owner's endpoint (`endpoint.rs`): wait for the claim, export state and pages,
//!   release;
//! - forwarding (`forwarding.rs`): one ordered queue per target node, batches retried with
//!   backoff until the deadline, re-routing of clients the target no longer owns;
//! - stranded copies (`stranded.rs`): offer a copy that stays moving to its owner, accept an
//!   offer by pulling;
//! - SUBSCRIBE committed before the broker sees it; broker `Replicate` actions proposed.
//!
//! A crash drops the broker and every task; the `MemStore` is kept whole (every batch the
//! broker wrote is in it, as RocksDB's WAL keeps it over a kill -9) and a restart reopens the
//! broker on it, as the server does.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::NodeId;
use berth_cluster::pb;
use berth_codec::{Packet, ProtocolVersion};
use berth_core::Registry;
use berth_core::{
    Action, Broker, BrokerConfig, ClientId, ConnId, Delivery, Event, MemStore, SessionExport,
};

use crate::net::{NetBody, Purpose};
use crate::raft::{Proposal, ProposalFor};
use crate::sim::{Ev, FromClient, Id, NodeEv, Sim, Time, Timer, ToClient};
use crate::wire::{forwarded_to_pb, over_socket, replicate_command};

/// `forwarding.rs`: messages per Forward RPC, the deadline of a forward, attempt timeout.
pub(crate) const FORWARD_BATCH: usize = 512;
pub(crate) const FORWARD_DEADLINE: Time = 10_000;
pub(crate) const FORWARD_ATTEMPT: Time = 5_000;
/// `forwarding.rs`: how often a node handed back is probed.
pub(crate) const PROBE_EVERY: Time = 250;
/// `forwarding.rs`: `RESEND_UNANSWERED`.
pub(crate) const RESEND_UNANSWERED: Time = 500;
/// `forwarding.rs`: `REROUTE_WAIT`.
pub(crate) const REROUTE_WAIT: Time = 500;
/// `cluster_link.rs`: `broker_caught_up`'s bound, `TAKEOVER_HEADER_WAIT`, the pull's timeout.
pub(crate) const CAUGHT_UP_WAIT: Time = 10_000;
pub(crate) const TAKEOVER_HEADER_WAIT: Time = 20_000;
/// How long an export waits for an import of the same session still under way.
pub(crate) const IMPORT_WAIT: Time = 15_000;
pub(crate) const PULL_TIMEOUT: Time = 60_000;
/// `runtime.rs`: messages per takeover page; the broker loop's idle wake.
pub(crate) const EXPORT_PAGE: usize = 1000;
pub(crate) const WAKE_EVERY: Time = 500;
/// `stranded.rs`: a copy moving this long is offered; offers every 2 s (every 4th wake), 5 s.
pub(crate) const OFFER_TIMEOUT: Time = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Up,
    Paused { until: Time },
    Crashed,
}

/// The server's end of one client connection.
#[derive(Debug)]
pub(crate) struct SConn {
    pub protocol: ProtocolVersion,
    /// The broker has its CONNECT (the claim is done).
    pub serving: bool,
    /// A packet of this connection waits for its Raft commit; later ones wait behind it.
    pub busy: bool,
    pub backlog: VecDeque<FromClient>,
    pub grant: Option<(ClientId, u64)>,
}

#[derive(Debug)]
pub(crate) enum ClaimStage {
    Proposing,
    WaitApplied {
        index: u64,
        claimed: Box<pb::ClaimResult>,
    },
    TakingOver,
}

#[derive(Debug)]
pub(crate) struct Claim {
    pub connect: Box<berth_codec::Connect>,
    pub stage: ClaimStage,
}

#[derive(Debug)]
pub(crate) enum PullMode {
    /// A takeover for a connection's claim, or (`conn: None`) for a claim whose CONNECT was
    /// refused (`Action::Adopt`).
    Takeover {
        conn: Option<ConnId>,
        fallback: Box<SessionExport>,
        /// Go on with `fallback` when the old owner holds nothing
        /// (`Claimed::resumes_without_state`).
        resume_if_absent: bool,
    },
    Late,
}

#[derive(Debug)]
pub(crate) struct Pull {
    pub(crate) client: ClientId,
    pub(crate) from: NodeId,
    pub(crate) epoch: u64,
    pub(crate) mode: PullMode,
    pub(crate) rpc: Id,
    pub(crate) header_seen: bool,
    pub(crate) found: bool,
    pub(crate) expected: u64,
    pub(crate) received: u64,
    pub(crate) late: Vec<Delivery>,
    /// The late copy's state (`Event::ImportLate::export`), from its header.
    pub(crate) late_export: Option<Box<berth_core::SessionExport>>,
}

#[derive(Debug)]
pub(crate) struct FwdItem {
    pub(crate) token: Option<u64>,
    pub(crate) msg: pb::ForwardedMessage,
    /// The broker's form, handed back to it if the target cannot be reached (`HandOff`).
    pub(crate) forwarded: berth_core::Forwarded,
    pub(crate) deadline: Time,
}

#[derive(Debug)]
pub(crate) enum FwdStage {
    Sending {
        rpc: Id,
    },
    Sleeping,
    Rerouting {
        attempt: u64,
        round: u64,
        outstanding: usize,
        /// Owners that answered "not owned", with what they refused.
        refused: Vec<(NodeId, Vec<pb::ForwardedMessage>)>,
        /// What this node's own broker refused (it has not seen the move yet).
        refused_here: Vec<pb::ForwardedMessage>,
    },
    RerouteSleeping {
        attempt: u64,
        not_owned: Vec<String>,
    },
}

#[derive(Debug)]
pub(crate) struct FwdBatch {
    /// Names the batch for its watch (`Timer::ForwardWatch`).
    pub(crate) id: Id,
    pub(crate) items: Vec<FwdItem>,
    /// Attempts sent so far (a later one is a retry: `ForwardBatch.retry`).
    pub(crate) attempts: u32,
    pub(crate) backoff: Time,
    pub(crate) stage: FwdStage,
    /// When the attempt in flight was sent, and how long it may go unanswered by a node that
    /// answers probes before it is sent again (`send_watched`).
    pub(crate) sent_at: Time,
    pub(crate) resend_after: Time,
    /// When re-routing began (its bound: `REROUTE_WAIT`).
    pub(crate) reroute_since: Time,
}

#[derive(Debug, Default)]
pub(crate) struct FwdQueue {
    pub(crate) waiting: VecDeque<FwdItem>,
    pub(crate) batch: Option<FwdBatch>,
    /// The target answered neither the batch nor a probe: everything goes back to the broker
    /// (`HandOff`) until it resumes the queue (`ForwardResume`).
    pub(crate) returning: bool,
}

/// Who waits for the broker's `ForwardAccepted` of a server token.
#[derive(Debug)]
pub(crate) enum ReplyTo {
    Remote {
        from: NodeId,
        rpc: Id,
    },
    Local {
        target: NodeId,
        round: u64,
        messages: Vec<pb::ForwardedMessage>,
    },
}

/// One owner's answer in a re-routing round.
#[derive(Debug)]
pub(crate) enum RerouteOutcome {
    Taken,
    /// Answered "not owned" (the registry here is ahead of it, or behind).
    Refused(NodeId, Vec<pb::ForwardedMessage>),
    /// This node's own broker refused.
    RefusedHere(Vec<pb::ForwardedMessage>),
    /// No answer within the bound.
    Unreachable(NodeId, Vec<pb::ForwardedMessage>),
}

/// The old owner waits until its broker has the claim before exporting.
#[derive(Debug)]
pub(crate) struct EndpointWait {
    pub from: NodeId,
    pub rpc: Id,
    pub client: ClientId,
    pub epoch: u64,
    pub index: u64,
    /// Set once the claim is applied but the session is still arriving here (a chained
    /// takeover): the export waits for the import until then (`endpoint.rs`'s `IMPORT_WAIT`).
    pub import_deadline: Option<Time>,
    /// A look-again timer is pending (one at a time).
    pub import_armed: bool,
}

#[derive(Debug)]
pub(crate) struct Node {
    pub id: NodeId,
    pub status: Status,
    /// Bumped at every crash: events of an earlier incarnation are void.
    pub inc: u64,
    /// When it was last paused, resumed, crashed or restarted (the check `7-ack-wait` only
    /// judges waits on a node that stayed up throughout).
    pub steady_since: Time,
    pub broker: Option<Broker<MemStore>>,
    /// The store while the node is down.
    pub store: Option<MemStore>,
    pub registry: Registry,
    pub applied: u64,
    pub applied_at_crash: u64,
    pub caught_up: bool,
    pub held: Vec<NodeEv>,
    pub conns: BTreeMap<ConnId, SConn>,
    pub claims: BTreeMap<ConnId, Claim>,
    pub proposals: BTreeMap<Id, Proposal>,
    pub rpcs: BTreeMap<Id, crate::net::Rpc>,
    pub pulls: BTreeMap<Id, Pull>,
    pub fwd: BTreeMap<NodeId, FwdQueue>,
    pub fwd_replies: BTreeMap<u64, ReplyTo>,
    pub next_token: u64,
    pub endpoint_waits: Vec<EndpointWait>,
    /// `ClusterLink::pulled`: copies stored here whose release was not confirmed.
    pub pulled: BTreeSet<(ClientId, u64, NodeId)>,
    pub late_pulls: BTreeSet<ClientId>,
    pub offers: berth_core::stranded_offers::StrandedOffers,
    pub wakes: u64,
}

impl Node {
    /// A node that has just started on an empty store.
    pub fn new(id: NodeId) -> Node {
        let mut broker = Broker::open(
            BrokerConfig::default(),
            MemStore::new(),
            crate::sim::unix(0),
        )
        .ok();
        if let Some(broker) = broker.as_mut() {
            broker.join_cluster(berth_core::NodeId(id));
        }
        Node {
            broker,
            ..Node::blank(id)
        }
    }

    /// A node without a broker (its fields all empty).
    pub fn blank(id: NodeId) -> Node {
        Node {
            id,
            status: Status::Up,
            inc: 0,
            steady_since: 0,
            broker: None,
            store: None,
            registry: Registry::default(),
            applied: 0,
            applied_at_crash: 0,
            caught_up: false,
            held: Vec::new(),
            conns: BTreeMap::new(),
            claims: BTreeMap::new(),
            proposals: BTreeMap::new(),
            rpcs: BTreeMap::new(),
            pulls: BTreeMap::new(),
            fwd: BTreeMap::new(),
            fwd_replies: BTreeMap::new(),
            next_token: 0,
            endpoint_waits: Vec::new(),
            pulled: BTreeSet::new(),
            late_pulls: BTreeSet::new(),
            offers: Default::default(),
            wakes: 0,
        }
    }
}

impl Sim {
    pub fn handle_node(&mut self, n: NodeId, ev: NodeEv) {
        match ev {
            NodeEv::Wake => self.wake(n),
            NodeEv::RaftApply => self.raft_apply(n),
            NodeEv::CaughtUp => {
                trace!(self, "n{n} caught up");
                self.call(n, Event::Cluster(berth_core::ClusterEvent::CaughtUp));
            }
            NodeEv::ProposeTry { id } => self.propose_try(n, id),
            NodeEv::Committed { id, result } => self.committed(n, id, result),
            NodeEv::FromClient { conn, item } => self.client_bytes(n, conn, item),
            NodeEv::Net(msg) => {
                if !self.net.linked(msg.from, n) || self.net.stream_held(msg.from, n, msg.rpc) {
                    self.hold_back(n, msg);
                    return;
                }
                if msg.body.is_request() {
                    if !self.node(msg.from).rpcs.contains_key(&msg.rpc) {
                        // The caller gave up (deadline, keep alive): its stream was reset
                        // before this node read the request.
                        trace!(
                            self,
                            "n{n} ignores rpc {} from n{}: the caller gave up", msg.rpc, msg.from
                        );
                        return;
                    }
                    self.serve_request(n, msg);
                } else {
                    self.rpc_response(n, msg);
                }
            }
            NodeEv::Timer(timer) => match timer {
                Timer::ClaimApplied { conn } => self.claim_timeout(n, conn),
                Timer::EndpointApplied { from, rpc } => self.endpoint_timeout(n, from, rpc),
                Timer::EndpointImport { from, rpc } => {
                    if let Some(wait) = self
                        .node_mut(n)
                        .endpoint_waits
                        .iter_mut()
                        .find(|w| w.from == from && w.rpc == rpc)
                    {
                        wait.import_armed = false;
                    }
                    self.endpoint_export(n, from, rpc)
                }
                Timer::ForwardRetry { target } => self.forward_retry(n, target),
                Timer::ForwardWatch { target, batch } => self.forward_watch(n, target, batch),
                Timer::ProbeTick { target } => self.probe_tick(n, target),
                Timer::RerouteRetry { target } => self.reroute_retry(n, target),
                Timer::PullHeader { rpc } => {
                    let waiting = self
                        .node(n)
                        .pulls
                        .values()
                        .any(|p| p.rpc == rpc && !p.header_seen);
                    if waiting {
                        self.rpc_fail(n, rpc, "takeover header timed out");
                    }
                }
                other => self.rpc_timer(n, other),
            },
            NodeEv::Broker(event) => self.call(n, *event),
        }
    }

    /// Hands `event` to node `n`'s broker and executes the actions it produced.
    pub fn call(&mut self, n: NodeId, event: Event) {
        let now = self.unix();
        if let Event::ImportLate {
            client,
            page,
            export,
            ..
        } = &event
        {
            self.ledger.note_late_page(client, &sent_of(export));
            self.ledger.note_late_page(client, page);
        }
        if let Event::ImportQueue { client, page } = &event
            && self
                .node(n)
                .broker
                .as_ref()
                .is_some_and(|b| b.receives_late_import(client))
        {
            self.ledger.note_late_page(client, page);
        }
        if let Event::ImportState { client, .. } = &event
            && let Some(Ok(backlog)) = self.node(n).broker.as_ref().map(|b| b.held_backlog(client))
        {
            // An older copy still here is merged behind the imported window: late.
            self.ledger.note_late_page(client, &backlog);
        }
        // An import a newer one overtook (`receives_late_import` after it): its window is late.
        let imported_window = match &event {
            Event::ImportState { client, export } => Some((client.clone(), sent_of(export))),
            _ => None,
        };
        if self.tracing() {
            let line = crate::replay::describe_event(&event);
            if !line.is_empty() {
                trace!(self, "n{n} broker <- {line}");
            }
        }
        let Some(broker) = self.node_mut(n).broker.as_mut() else {
            return;
        };
        let result = broker.handle(now, event);
        let mut actions = broker.take_actions();
        let late_window = imported_window.filter(|(client, _)| broker.receives_late_import(client));
        for (client, message) in broker.handoff_entries() {
            self.ledger.note_handed_off(&client, &message);
        }
        if let Some((client, window)) = late_window {
            self.ledger.note_late_page(&client, &window);
        }
        if let Err(error) = result {
            self.report
                .violate("store", format!("n{n}: the broker's store failed: {error}"));
        }
        crate::replay::canonical(&mut actions);
        for action in actions {
            self.act(n, action);
        }
    }

    pub(crate) fn act(&mut self, n: NodeId, action: Action) {
        match action {
            Action::Send { conn, packet } => {
                let Some(protocol) = self.node(n).conns.get(&conn).map(|c| c.protocol) else {
                    return;
                };
                self.send_to_client(conn, &packet, protocol);
            }
            Action::Close { conn } => {
                if self.node_mut(n).conns.remove(&conn).is_some() {
                    self.node_to_client(conn, ToClient::Close);
                }
            }
            Action::Forward {
                node: target,
                token,
                message,
                clients,
                publisher,
                retried,
            } => {
                let target = target.0;
                let mut msg = forwarded_to_pb(&message, &clients, publisher.as_ref());
                msg.retried = retried;
                let deadline = self.now + FORWARD_DEADLINE;
                let forwarded = berth_core::Forwarded {
                    message,
                    clients,
                    publisher,
                    retried,
                };
                let queue = self.node_mut(n).fwd.entry(target).or_default();
                queue.waiting.push_back(FwdItem {
                    token,
                    msg,
                    forwarded,
                    deadline,
                });
                self.forward_kick(n, target);
            }
            Action::ForwardResume { node: target } => self.forward_resume(n, target.0),
            Action::ProbeNode { node: target } => self.probe_node(n, target.0),
            Action::ForwardAccepted { token, not_owned } => {
                match self.node_mut(n).fwd_replies.remove(&token) {
                    Some(ReplyTo::Remote { from, rpc }) => {
                        let not_owned = not_owned.iter().map(|c| c.as_str().to_string()).collect();
                        self.send(n, from, rpc, NetBody::ForwardAck(not_owned));
                    }
                    Some(ReplyTo::Local {
                        target,
                        round,
                        messages,
                    }) => {
                        let outcome = if not_owned.is_empty() {
                            RerouteOutcome::Taken
                        } else {
                            RerouteOutcome::RefusedHere(messages)
                        };
                        self.reroute_reply(n, target, round, outcome);
                    }
                    None => {}
                }
            }
            Action::Replicate(change) => {
                self.propose(n, replicate_command(n, change), ProposalFor::Replicate);
            }
            Action::Adopt {
                client,
                epoch,
                from,
                fallback,
            } => {
                trace!(self, "n{n} adopts {client} e{} from {from:?}", epoch.0);
                match from {
                    Some(from) => {
                        let mode = PullMode::Takeover {
                            conn: None,
                            fallback,
                            resume_if_absent: false,
                        };
                        // The claim is applied here: the old owner waits until it is there too.
                        let applied = self.node(n).applied;
                        self.start_pull(n, client, from.0, epoch.0, applied, mode);
                    }
                    None => {
                        self.call(
                            n,
                            Event::ImportState {
                                client: client.clone(),
                                export: fallback,
                            },
                        );
                        self.call(n, Event::ImportDone { client });
                    }
                }
            }
        }
    }

    /// A packet to a client as its side decodes it.
    pub fn send_to_client(&mut self, conn: ConnId, packet: &Packet, protocol: ProtocolVersion) {
        match over_socket(packet, protocol) {
            Ok(packet) => self.node_to_client(conn, ToClient::Packet(packet)),
            Err(error) => self.report.violate(
                "codec",
                format!(
                    "a packet to conn {} does not survive the wire: {error}: {packet:?}",
                    conn.0
                ),
            ),
        }
    }

    pub(crate) fn wake(&mut self, n: NodeId) {
        let due = self
            .node(n)
            .broker
            .as_ref()
            .and_then(|b| b.next_deadline())
            .is_some_and(|at| at <= self.unix());
        if due {
            self.call(n, Event::Tick);
        }
        let node = self.node_mut(n);
        node.wakes += 1;
        if node.wakes % 4 == 1 {
            self.offer_stranded(n);
        }
        self.leader_round(n);
        self.at_node(n, WAKE_EVERY, NodeEv::Wake);
    }

    pub fn rpc_done(
        &mut self,
        n: NodeId,
        rpc: Id,
        purpose: Purpose,
        result: Result<NetBody, String>,
    ) {
        match purpose {
            Purpose::Forward { target } => self.forward_reply(n, target, rpc, result),
            Purpose::Probe { target, batch } => self.probe_reply(n, target, batch, result.is_ok()),
            Purpose::Reroute {
                target,
                round,
                owner,
                messages,
            } => {
                let outcome = match &result {
                    Ok(NetBody::ForwardAck(not_owned)) if not_owned.is_empty() => {
                        RerouteOutcome::Taken
                    }
                    Ok(NetBody::ForwardAck(_)) => RerouteOutcome::Refused(owner, messages),
                    _ => RerouteOutcome::Unreachable(owner, messages),
                };
                self.reroute_reply(n, target, round, outcome);
            }
            Purpose::Pull { pull } => self.pull_chunk(n, pull, result),
            Purpose::Release {
                client,
                from,
                epoch,
                then,
            } => {
                if matches!(result, Ok(NetBody::Released)) {
                    self.node_mut(n).pulled.remove(&(client, epoch, from));
                }
                if let Some(pull) = then {
                    self.finish_pull(n, pull, Ok(true));
                }
            }
            Purpose::Offer => {
                if let Ok(NetBody::OfferReply(accepted)) = result {
                    trace!(self, "n{n} offer rpc {rpc}: accepted = {accepted}");
                }
            }
        }
    }

    pub fn crash(&mut self, n: NodeId) {
        self.report.crashes += 1;
        trace!(self, "NEMESIS crash n{n}");
        // Requests this node was serving: their connections reset.
        let mut resets: Vec<(NodeId, Id)> = self
            .node(n)
            .fwd_replies
            .values()
            .filter_map(|r| match r {
                ReplyTo::Remote { from, rpc } => Some((*from, *rpc)),
                ReplyTo::Local { .. } => None,
            })
            .collect();
        resets.extend(self.node(n).endpoint_waits.iter().map(|w| (w.from, w.rpc)));
        for (from, rpc) in resets {
            self.send(n, from, rpc, NetBody::Error("connection reset".into()));
        }
        let inc = self.node(n).inc;
        let lost: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.node == n && c.inc == inc)
            .map(|(conn, _)| *conn)
            .collect();
        for conn in lost {
            self.client_lost(conn);
        }
        self.count_qos2_waits(n);
        let now_ms = self.now;
        let node = self.node_mut(n);
        let store = node
            .broker
            .take()
            .map(|mut b| std::mem::take(b.store_mut()));
        let fresh = Node::blank(n);
        let applied = node.applied;
        *node = Node {
            status: Status::Crashed,
            inc: inc + 1,
            steady_since: now_ms,
            broker: None,
            store,
            applied_at_crash: applied,
            ..fresh
        };
    }

    pub fn restart(&mut self, n: NodeId) {
        if self.node(n).status != Status::Crashed {
            return;
        }
        trace!(self, "NEMESIS restart n{n}");
        let now = self.unix();
        let node = self.node_mut(n);
        let store = node.store.take().unwrap_or_default();
        match Broker::open(BrokerConfig::default(), store, now) {
            Ok(mut broker) => {
                broker.join_cluster(berth_core::NodeId(n));
                node.broker = Some(broker);
            }
            Err(error) => {
                self.report
                    .violate("store", format!("n{n} cannot reopen its store: {error}"));
                return;
            }
        }
        self.node_mut(n).status = Status::Up;
        self.node_mut(n).steady_since = self.now;
        self.node_mut(n).offers =
            berth_core::stranded_offers::StrandedOffers::starting_at(self.now);
        self.rebuild_registry(n);
        let delay = self.rng.range(1, 500);
        self.at_node(n, delay, NodeEv::Wake);
        self.raft_everywhere();
    }

    pub fn pause(&mut self, n: NodeId, until: Time) {
        if self.node(n).status != Status::Up {
            return;
        }
        self.report.pauses += 1;
        trace!(self, "NEMESIS pause n{n} for {} ms", until - self.now);
        self.node_mut(n).status = Status::Paused { until };
        self.node_mut(n).steady_since = self.now;
        let inc = self.node(n).inc;
        let conns: Vec<(ConnId, crate::client::Who)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.node == n && c.inc == inc)
            .map(|(conn, c)| (*conn, c.who))
            .collect();
        for (conn, who) in conns {
            let delay = self.rng.range(1_000, 3_000);
            self.after(
                delay,
                Ev::Client {
                    who,
                    ev: crate::sim::ClientEv::Probe { conn },
                },
            );
        }
    }

    pub fn resume(&mut self, n: NodeId) {
        if !matches!(self.node(n).status, Status::Paused { .. }) {
            return;
        }
        trace!(self, "NEMESIS resume n{n}");
        let now = self.now;
        let node = self.node_mut(n);
        node.status = Status::Up;
        node.steady_since = now;
        let inc = node.inc;
        // Handled now, in arrival order, before anything that arrives from here on: queued
        // behind it, a stream's next message overtook the one held (simulator seed 453: a
        // takeover's Page before its Header, so the backlog was dropped).
        let held = std::mem::take(&mut node.held);
        for ev in held {
            self.node_event_now(n, inc, ev);
        }
        self.raft_everywhere();
    }

    /// Connectivity changed: every node catches up with the log if it can.
    pub fn raft_everywhere(&mut self) {
        for n in self.node_ids() {
            let delay = self.rng.range(1, 20);
            self.at_node(n, delay, NodeEv::RaftApply);
        }
    }
}

/// The messages of an exported in-flight window (those not yet acknowledged).
fn sent_of(export: &berth_core::SessionExport) -> Vec<Delivery> {
    export
        .inflight
        .iter()
        .filter_map(|(_, record)| match record {
            berth_core::InflightRecord::Sent { delivery, .. } => Some(delivery.clone()),
            berth_core::InflightRecord::Released { .. } => None,
        })
        .collect()
}

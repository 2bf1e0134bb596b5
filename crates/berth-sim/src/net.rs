//! The simulated network: node-to-node messages with seeded delays (so independent requests
//! reorder; one stream or connection stays in order), partitions that hold back what crosses
//! the cut until they heal (TCP retransmits on an established connection; a request whose
//! caller has given up meanwhile is not served: its stream was reset), RPC bookkeeping on the caller (deadlines, HTTP/2 keep alive against an unresponsive
//! peer), and the client links (one ordered byte stream per MQTT connection).
//!
//! Mirrors the server's timeouts: a forward attempt 5 s (`forwarding.rs`), the takeover header
//! 20 s and the whole pull 60 s (`cluster_link.rs`), an offer 5 s (`stranded.rs`); requests
//! without a deadline of their own (release, re-routed forwards) fail only through the channel's
//! keep alive (`pool.rs`: ping every 10 s, 5 s to answer) while the peer does not respond.

use std::collections::{BTreeMap, BTreeSet};

use crate::NodeId;
use berth_cluster::pb;
use berth_core::{ConnId, SessionExport};

use crate::node::Status;
use crate::sim::{ClientEv, Ev, FromClient, Id, NodeEv, Sim, Time, Timer, ToClient};

/// How often the keep alive pings an open channel, and how long a ping may go unanswered.
const KEEP_ALIVE_EVERY: Time = 10_000;
const KEEP_ALIVE_TIMEOUT: Time = 5_000;

#[derive(Debug, Default)]
pub(crate) struct Net {
    /// Nodes cut off from the others (empty: no partition).
    pub cut: BTreeSet<NodeId>,
    /// Last arrival time per (from, to, rpc), so that one stream stays in order.
    streams: BTreeMap<(NodeId, NodeId, Id), Time>,
    /// Messages held back by the partition, in order: (to, message).
    pub blocked: Vec<(NodeId, NetMsg)>,
}

impl Net {
    /// Whether messages between `a` and `b` get through the partition.
    pub fn linked(&self, a: NodeId, b: NodeId) -> bool {
        a == b || self.cut.contains(&a) == self.cut.contains(&b)
    }

    /// Whether an earlier message of the stream `rpc` from `from` to `to` is held back: a
    /// later one waits behind it (TCP never delivers a stream's bytes out of order; a Page
    /// overtaking its Header was dropped by the importer, simulator seed 453).
    pub fn stream_held(&self, from: NodeId, to: NodeId, rpc: Id) -> bool {
        self.blocked
            .iter()
            .any(|(t, m)| *t == to && m.from == from && m.rpc == rpc)
    }
}

#[derive(Debug)]
pub(crate) struct NetMsg {
    pub from: NodeId,
    pub rpc: Id,
    pub body: NetBody,
}

#[derive(Debug)]
pub(crate) enum NetBody {
    // Requests.
    /// A forward batch; `true`: a retry (`ForwardBatch.retry`).
    Forward(Vec<pb::ForwardedMessage>, bool),
    Takeover {
        client: String,
        epoch: u64,
        claim_log_index: u64,
    },
    Release {
        client: String,
        epoch: u64,
    },
    Offer {
        client: String,
        epoch: u64,
        holder: NodeId,
    },
    // Responses.
    ForwardAck(Vec<String>),
    /// Takeover stream: the header (`None`: nothing found there).
    Header(Option<Box<SessionExport>>),
    Page(Vec<pb::Delivery>),
    End,
    Released,
    OfferReply(bool),
    Error(String),
}

/// A message's payload, which names it in the simulator (`p0:10`).
fn payload_name(message: Option<&pb::Message>) -> String {
    message
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .unwrap_or_default()
}

/// A short description of a message, for traces.
fn describe(body: &NetBody) -> String {
    match body {
        NetBody::Forward(batch, _) => {
            let items: Vec<String> = batch
                .iter()
                .map(|m| {
                    let payload = payload_name(m.message.as_ref());
                    format!("{payload}->{}", m.client_ids.join("+"))
                })
                .collect();
            format!("Forward [{}]", items.join(", "))
        }
        NetBody::Takeover {
            client,
            epoch,
            claim_log_index,
        } => format!("Takeover {client} e{epoch} (claim #{claim_log_index})"),
        NetBody::Release { client, epoch } => format!("Release {client} e{epoch}"),
        NetBody::Offer { client, epoch, .. } => format!("Offer {client} e{epoch}"),
        NetBody::ForwardAck(not_owned) => format!("ForwardAck not_owned={not_owned:?}"),
        NetBody::Header(Some(export)) => format!(
            "Header found: {} queued, {} in flight",
            export.queued,
            export.inflight.len()
        ),
        NetBody::Header(None) => "Header: nothing here".into(),
        NetBody::Page(page) => {
            let names: Vec<String> = page
                .iter()
                .map(|d| format!("{} q{}", payload_name(d.message.as_ref()), d.qos))
                .collect();
            format!("Page of {}: [{}]", page.len(), names.join(", "))
        }
        NetBody::Error(error) => format!("Error: {error}"),
        other => other.name().to_string(),
    }
}

impl NetBody {
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            NetBody::Forward(..)
                | NetBody::Takeover { .. }
                | NetBody::Release { .. }
                | NetBody::Offer { .. }
        )
    }

    /// A response after which the RPC is over (a stream's header and pages are not).
    pub fn is_final(&self) -> bool {
        !matches!(self, NetBody::Header(Some(_)) | NetBody::Page(_))
    }

    pub fn name(&self) -> &'static str {
        match self {
            NetBody::Forward(..) => "Forward",
            NetBody::Takeover { .. } => "Takeover",
            NetBody::Release { .. } => "Release",
            NetBody::Offer { .. } => "Offer",
            NetBody::ForwardAck(_) => "ForwardAck",
            NetBody::Header(_) => "Header",
            NetBody::Page(_) => "Page",
            NetBody::End => "End",
            NetBody::Released => "Released",
            NetBody::OfferReply(_) => "OfferReply",
            NetBody::Error(_) => "Error",
        }
    }
}

/// What an RPC a node started is for (the caller's continuation).
#[derive(Debug, Clone)]
pub(crate) enum Purpose {
    /// One attempt of a forward queue's batch.
    Forward {
        target: NodeId,
    },
    /// An empty forward: does `target` answer? For the watch of `batch`, or (`None`) while
    /// its queue is handed back.
    Probe {
        target: NodeId,
        batch: Option<Id>,
    },
    /// One owner's part of a re-route round of `target`'s batch.
    Reroute {
        target: NodeId,
        round: u64,
        owner: NodeId,
        messages: Vec<berth_cluster::pb::ForwardedMessage>,
    },
    Pull {
        pull: Id,
    },
    Release {
        client: berth_core::ClientId,
        from: NodeId,
        epoch: u64,
        then: Option<Id>,
    },
    Offer,
}

#[derive(Debug)]
pub(crate) struct Rpc {
    pub peer: NodeId,
    pub purpose: Purpose,
}

impl Sim {
    /// Whether `peer` answers `from` now (up, and on the same side of any partition).
    pub fn responsive(&self, from: NodeId, peer: NodeId) -> bool {
        self.net.linked(from, peer) && self.node(peer).status == Status::Up
    }

    fn net_delay(&mut self) -> Time {
        if self.rng.chance(0.05) {
            self.rng.range(5, 40)
        } else {
            self.rng.range(1, 5)
        }
    }

    /// Sends `body` from `from` to `to`, in order with earlier messages of the same RPC.
    pub fn send(&mut self, from: NodeId, to: NodeId, rpc: Id, body: NetBody) {
        let msg = NetMsg { from, rpc, body };
        if !self.net.linked(from, to) || self.net.stream_held(from, to, rpc) {
            trace!(
                self,
                "net  n{from}->n{to} rpc {rpc} {}: held by the partition",
                describe(&msg.body)
            );
            self.net.blocked.push((to, msg));
            return;
        }
        trace!(
            self,
            "net  n{from}->n{to} rpc {rpc} {}",
            describe(&msg.body)
        );
        let delay = self.net_delay();
        let key = (from, to, rpc);
        let at = (self.now + delay).max(self.net.streams.get(&key).map_or(0, |t| t + 1));
        self.net.streams.insert(key, at);
        let inc = self.node(to).inc;
        self.at(
            at,
            Ev::Node {
                node: to,
                inc,
                ev: NodeEv::Net(msg),
            },
        );
    }

    /// The partition is over: what it held back goes on, in order.
    pub fn release_blocked(&mut self) {
        let blocked = std::mem::take(&mut self.net.blocked);
        for (to, msg) in blocked {
            self.send(msg.from, to, msg.rpc, msg.body);
        }
    }

    /// A message arrives at `to` across a partition that started while it travelled.
    pub fn hold_back(&mut self, to: NodeId, msg: NetMsg) {
        self.net.blocked.push((to, msg));
    }

    /// A message reached node `at`, which is down: a request is refused (the caller sees the
    /// connection fail); anything else is lost.
    pub fn net_refused(&mut self, at: NodeId, msg: NetMsg) {
        if !self.net.linked(at, msg.from) {
            self.hold_back(at, msg);
            return;
        }
        if msg.body.is_request() {
            self.send(
                at,
                msg.from,
                msg.rpc,
                NetBody::Error("connection refused".into()),
            );
        }
    }

    /// Starts an RPC from `from` to `to`; its outcome goes to `purpose`'s handler.
    pub fn start_rpc(
        &mut self,
        from: NodeId,
        to: NodeId,
        purpose: Purpose,
        body: NetBody,
        deadline: Option<Time>,
    ) -> Id {
        let rpc = self.id();
        self.node_mut(from)
            .rpcs
            .insert(rpc, Rpc { peer: to, purpose });
        self.send(from, to, rpc, body);
        if let Some(deadline) = deadline {
            self.at_node(from, deadline, NodeEv::Timer(Timer::RpcDeadline { rpc }));
        }
        let first_ping = self.rng.range(1_000, KEEP_ALIVE_EVERY);
        self.at_node(
            from,
            first_ping,
            NodeEv::Timer(Timer::KeepAliveCheck { rpc }),
        );
        rpc
    }

    /// An RPC whose request never reaches `to` (its connection reset on the way): the caller
    /// hears of the failure `after` ms later.
    pub fn lose_rpc(
        &mut self,
        from: NodeId,
        to: NodeId,
        purpose: Purpose,
        body: &NetBody,
        after: Time,
    ) -> Id {
        let rpc = self.id();
        self.node_mut(from)
            .rpcs
            .insert(rpc, Rpc { peer: to, purpose });
        trace!(
            self,
            "net  n{from}->n{to} rpc {rpc} {}: lost",
            describe(body)
        );
        self.at_node(from, after, NodeEv::Timer(Timer::RpcDeadline { rpc }));
        rpc
    }

    /// A response arrived at `node` for one of its RPCs.
    pub fn rpc_response(&mut self, node: NodeId, msg: NetMsg) {
        let Some(rpc) = self.node(node).rpcs.get(&msg.rpc) else {
            trace!(
                self,
                "net  {}->{node} {} rpc {}: nobody waits",
                msg.from,
                msg.body.name(),
                msg.rpc
            );
            return;
        };
        let purpose = rpc.purpose.clone();
        if msg.body.is_final() {
            self.node_mut(node).rpcs.remove(&msg.rpc);
        }
        let result = match msg.body {
            NetBody::Error(error) => Err(error),
            body => Ok(body),
        };
        self.rpc_done(node, msg.rpc, purpose, result);
    }

    /// The RPC failed on the caller's side (deadline, keep alive).
    pub fn rpc_fail(&mut self, node: NodeId, rpc: Id, error: &str) {
        let Some(pending) = self.node_mut(node).rpcs.remove(&rpc) else {
            return;
        };
        trace!(
            self,
            "n{node} rpc {rpc} to n{} failed: {error}", pending.peer
        );
        self.rpc_done(node, rpc, pending.purpose, Err(error.to_string()));
    }

    pub fn rpc_timer(&mut self, node: NodeId, timer: Timer) {
        match timer {
            Timer::RpcDeadline { rpc } => self.rpc_fail(node, rpc, "timed out"),
            Timer::KeepAliveCheck { rpc } => {
                let Some(peer) = self.node(node).rpcs.get(&rpc).map(|r| r.peer) else {
                    return;
                };
                let next = if self.responsive(node, peer) {
                    Timer::KeepAliveCheck { rpc }
                } else {
                    Timer::KeepAliveFail { rpc }
                };
                let wait = match next {
                    Timer::KeepAliveFail { .. } => KEEP_ALIVE_TIMEOUT,
                    _ => KEEP_ALIVE_EVERY,
                };
                self.at_node(node, wait, NodeEv::Timer(next));
            }
            Timer::KeepAliveFail { rpc } => {
                let Some(peer) = self.node(node).rpcs.get(&rpc).map(|r| r.peer) else {
                    return;
                };
                if self.responsive(node, peer) {
                    self.at_node(
                        node,
                        KEEP_ALIVE_EVERY,
                        NodeEv::Timer(Timer::KeepAliveCheck { rpc }),
                    );
                } else {
                    self.rpc_fail(node, rpc, "keep alive: the peer does not answer");
                }
            }
            _ => {}
        }
    }

    fn client_delay(&mut self) -> Time {
        self.rng.range(1, 4)
    }

    /// Client → node, in order on the connection.
    pub fn client_to_node(&mut self, conn: ConnId, item: FromClient) {
        let delay = self.client_delay();
        let now = self.now;
        let Some(link) = self.conns.get_mut(&conn) else {
            return;
        };
        let at = (now + delay).max(link.up + 1);
        link.up = at;
        let (node, inc) = (link.node, link.inc);
        let ev = NodeEv::FromClient { conn, item };
        self.at(at, Ev::Node { node, inc, ev });
    }

    /// Node → client, in order on the connection.
    pub fn node_to_client(&mut self, conn: ConnId, item: ToClient) {
        let delay = self.client_delay();
        let now = self.now;
        let Some(link) = self.conns.get_mut(&conn) else {
            return;
        };
        let at = (now + delay).max(link.down + 1);
        link.down = at;
        let who = link.who;
        self.at(
            at,
            Ev::Client {
                who,
                ev: ClientEv::Arrive { conn, item },
            },
        );
    }

    /// The connection failed under the client (refused or reset by a dead node).
    pub fn client_lost(&mut self, conn: ConnId) {
        self.node_to_client(conn, ToClient::Lost);
    }
}

//! The simulator's spine: simulated time, the event queue, and the dispatch of events to
//! nodes (gated by pause, crash and incarnation), clients and the schedule.
//!
//! One event queue ordered by (time, insertion sequence) drives everything, so two events at the
//! same millisecond run in the order they were scheduled. A paused node's events wait in its
//! `held` list and run, in order, when it resumes (a stopped process handles nothing; its
//! sockets and timers fire late). A crashed node's events are dropped; requests that reach it are
//! answered with an error (connection refused / reset).

use std::collections::{BTreeMap, BTreeSet};

use crate::NodeId;
use berth_codec::{Connect, Packet};
use berth_core::{ConnId, UnixMillis};

use crate::SimConfig;
use crate::checker::{Ledger, Report};
use crate::client::{ClientConn, Device, Publisher, Who};
use crate::net::{Net, NetMsg};
use crate::node::{Node, Status};
use crate::raft::Raft;
use crate::rng::Rng;
use crate::schedule::{NemesisState, ScriptOp};

/// Simulated milliseconds since the start of the run.
pub(crate) type Time = u64;

/// The wall clock the brokers see at simulated time 0.
pub(crate) const T0: u64 = 1_700_000_000_000;

/// The broker clock at simulated time `t`.
pub(crate) fn unix(t: Time) -> UnixMillis {
    UnixMillis(T0 + t)
}

/// A proposal, an RPC, a pull: ids unique within a run.
pub(crate) type Id = u64;

#[derive(Debug)]
pub(crate) enum Ev {
    /// The next random schedule step; `left` steps remain.
    Step {
        left: usize,
    },
    Script(ScriptOp),
    /// A nemesis ends (ignored if another one has replaced it).
    NemesisEnd {
        id: u64,
    },
    /// The heal phase: every node back, no more faults.
    HealStart,
    /// Heal phase: every client connects and acknowledges everything.
    HealConnect,
    /// Heal phase: is everything delivered and settled?
    Quiesce,
    Node {
        node: NodeId,
        inc: u64,
        ev: NodeEv,
    },
    Client {
        who: Who,
        ev: ClientEv,
    },
}

/// Something that happens on (or arrives at) one node.
#[derive(Debug)]
pub(crate) enum NodeEv {
    /// Periodic: broker timers, stranded-copy offers.
    Wake,
    /// Raft: apply what the log has beyond this node's applied index (if connected).
    RaftApply,
    /// `release_timers_when_caught_up`: the broker may run wills and expiry.
    CaughtUp,
    /// Raft: try to commit proposal `id` (or give up at its deadline).
    ProposeTry {
        id: Id,
    },
    /// Raft: proposal `id` committed with this result.
    Committed {
        id: Id,
        result: berth_cluster::pb::CommandResult,
    },
    /// Bytes from a client connection (in order per connection).
    FromClient {
        conn: ConnId,
        item: FromClient,
    },
    /// A message from another node.
    Net(NetMsg),
    Timer(Timer),
    /// An event for the broker that a broker action led to (the server sends these through its
    /// command channel, so they run after the current group).
    Broker(Box<berth_core::Event>),
}

// Packets travel inline: a simulator has no reason to box its messages.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum FromClient {
    Connect(Box<Connect>),
    Packet(Packet),
    /// The client closed (or abandoned) the socket.
    Fin,
}

#[derive(Debug)]
pub(crate) enum Timer {
    /// `broker_caught_up` for a claim gave up (10 s).
    ClaimApplied { conn: ConnId },
    /// The old owner's wait for the claim to reach its broker gave up (10 s).
    EndpointApplied { from: NodeId, rpc: Id },
    /// The old owner looks again whether the import it waits for is done (every 20 ms).
    EndpointImport { from: NodeId, rpc: Id },
    /// An RPC's own deadline.
    RpcDeadline { rpc: Id },
    /// A takeover pull's header did not arrive in time (`TAKEOVER_HEADER_WAIT`, 20 s).
    PullHeader { rpc: Id },
    /// HTTP/2 keep alive: is the peer still answering pings?
    KeepAliveCheck { rpc: Id },
    /// HTTP/2 keep alive: the ping went unanswered.
    KeepAliveFail { rpc: Id },
    /// A forward queue's backoff before the next attempt.
    ForwardRetry { target: NodeId },
    /// A forward queue's pause between re-route rounds.
    RerouteRetry { target: NodeId },
    /// The handoff bound of a batch: still unanswered, the target is probed.
    ForwardWatch { target: NodeId, batch: Id },
    /// A handed-back target is probed again.
    ProbeTick { target: NodeId },
}

// Packets travel inline: a simulator has no reason to box its messages.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum ClientEv {
    /// Something from the server on `conn`.
    Arrive { conn: ConnId, item: ToClient },
    /// Time to (re)connect, to `node` or a random one.
    Connect { node: Option<NodeId> },
    /// Is the node behind `conn` still answering? (a paused node is given up after a while)
    Probe { conn: ConnId },
    /// No CONNACK in time: give up on `conn`.
    ConnackTimeout { conn: ConnId },
    /// A device whose SUBSCRIBE was refused tries again on the same connection.
    Resubscribe { conn: ConnId },
}

// Packets travel inline: a simulator has no reason to box its messages.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum ToClient {
    Packet(Packet),
    /// The server closed the connection (after the packets before it).
    Close,
    /// The connection failed (refused, reset).
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Chaos,
    Healing,
    Done,
}

pub(crate) struct Sim {
    pub cfg: SimConfig,
    pub rng: Rng,
    pub now: Time,
    queue: BTreeMap<(Time, u64), Ev>,
    seq: u64,
    pub nodes: Vec<Node>,
    pub raft: Raft,
    pub net: Net,
    pub devices: Vec<Device>,
    pub publishers: Vec<Publisher>,
    pub conns: BTreeMap<ConnId, ClientConn>,
    /// The epoch each client connection was granted (from the claim), for the checker.
    pub conn_epoch: BTreeMap<ConnId, u64>,
    pub ledger: Ledger,
    pub report: Report,
    pub watch: crate::leader::LeaderWatch,
    pub next_id: Id,
    pub next_conn: u64,
    pub phase: Phase,
    pub nemesis: Option<NemesisState>,
    pub nemesis_seq: u64,
    /// Clients a running script drives; random steps leave them alone.
    pub scripted: BTreeSet<Who>,
    pub script_running: bool,
    /// A tag for the messages being published now (the checker names it in violations).
    pub tag: Option<&'static str>,
    /// The step (counted down) at which the stale-copy script starts, if this run has it.
    pub script_at: Option<usize>,
    pub heal_started: Time,
    pub last_activity: Time,
    pub events: u64,
}

impl Sim {
    pub fn new(seed: u64, cfg: SimConfig) -> Sim {
        let mut rng = Rng::new(seed);
        let nodes = (1..=cfg.nodes as NodeId).map(Node::new).collect();
        let devices = (0..cfg.devices).map(|i| Device::new(i, &mut rng)).collect();
        let publishers = (0..cfg.publishers).map(Publisher::new).collect();
        let mut report = Report {
            seed,
            ..Report::default()
        };
        if cfg.trace {
            report.trace = Some(Vec::new());
        }
        Sim {
            cfg,
            rng,
            now: 0,
            queue: BTreeMap::new(),
            seq: 0,
            nodes,
            raft: Raft::default(),
            net: Net::default(),
            devices,
            publishers,
            conns: BTreeMap::new(),
            conn_epoch: BTreeMap::new(),
            ledger: Ledger::default(),
            report,
            watch: Default::default(),
            next_id: 0,
            next_conn: 0,
            phase: Phase::Chaos,
            nemesis: None,
            nemesis_seq: 0,
            scripted: BTreeSet::new(),
            script_running: false,
            script_at: None,
            tag: None,
            heal_started: 0,
            last_activity: 0,
            events: 0,
        }
    }

    pub fn unix(&self) -> UnixMillis {
        unix(self.now)
    }

    pub fn id(&mut self) -> Id {
        self.next_id += 1;
        self.next_id
    }

    pub fn at(&mut self, at: Time, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at.max(self.now), self.seq), ev);
    }

    pub fn after(&mut self, delay: Time, ev: Ev) {
        self.at(self.now + delay, ev);
    }

    /// An event for node `node`'s current incarnation.
    pub fn at_node(&mut self, node: NodeId, delay: Time, ev: NodeEv) {
        let inc = self.node(node).inc;
        self.after(delay, Ev::Node { node, inc, ev });
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    pub fn node_ids(&self) -> Vec<NodeId> {
        (1..=self.nodes.len() as NodeId).collect()
    }

    pub fn tracing(&self) -> bool {
        self.report.trace.is_some()
    }

    pub fn trace_line(&mut self, line: String) {
        let t = self.now;
        if let Some(trace) = self.report.trace.as_mut() {
            trace.push(format!("{:>4}.{:03} {line}", t / 1000, t % 1000));
        }
    }

    /// Runs the whole schedule, the heal phase and the checks.
    pub fn run(mut self) -> Report {
        self.start();
        while let Some(((at, _), ev)) = self.queue.pop_first() {
            self.now = at;
            self.report.now = at;
            self.events += 1;
            self.dispatch(ev);
            if self.phase == Phase::Done {
                break;
            }
            if self.events > 3_000_000 {
                self.report
                    .note("the run did not end within 3,000,000 events".to_string());
                break;
            }
        }
        self.finish()
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Step { left } => self.step(left),
            Ev::Script(op) => self.script(op),
            Ev::NemesisEnd { id } => self.nemesis_end(id),
            Ev::HealStart => self.heal_start(),
            Ev::HealConnect => self.heal_connect(),
            Ev::Quiesce => self.quiesce(),
            Ev::Node { node, inc, ev } => self.node_event(node, inc, ev),
            Ev::Client { who, ev } => self.client_event(who, ev),
        }
    }

    /// [`Sim::node_event`], from a node's resume.
    pub(crate) fn node_event_now(&mut self, id: NodeId, inc: u64, ev: NodeEv) {
        self.node_event(id, inc, ev);
    }

    fn node_event(&mut self, id: NodeId, inc: u64, ev: NodeEv) {
        let node = self.node(id);
        let current = node.inc == inc;
        match node.status {
            Status::Crashed => {
                self.refuse(id, ev);
                return;
            }
            _ if !current => {
                self.refuse(id, ev);
                return;
            }
            Status::Paused { until } => {
                if matches!(ev, NodeEv::Wake) {
                    // A periodic timer: one late tick at resume, not one per missed period.
                    self.at(until + 1, Ev::Node { node: id, inc, ev });
                } else {
                    self.node_mut(id).held.push(ev);
                }
                return;
            }
            Status::Up => {}
        }
        self.handle_node(id, ev);
    }

    /// An event reached a node that is gone (crashed, or restarted since it was sent): requests
    /// and client bytes get the error a dead socket gives; everything else is dropped.
    fn refuse(&mut self, id: NodeId, ev: NodeEv) {
        match ev {
            NodeEv::Net(msg) => self.net_refused(id, msg),
            NodeEv::FromClient { conn, .. } => self.client_lost(conn),
            _ => {}
        }
    }
}

//! What happens in a run: a warm-up (every client connects, devices subscribe), a random
//! schedule of client operations and faults (one fault at a time: a pause of 1–14 s, a crash
//! and restart, one node partitioned from the others), sometimes the scripted stale-copy
//! scenario of issue 11, then the heal phase (every node back, every client connected, every
//! message acknowledged) until the cluster is quiet, and the checks.
//!
//! The stale-copy script (node A holds an older copy of device S's session; S comes back to A
//! while B, its current owner, is paused; a publisher on A publishes to S meanwhile):
//!
//! ```text
//!  +0     S → A            +1000  crash A          +1300  S → B (takeover, A unreachable)
//!  +2000  P publishes to S  +3500  restart A (its copy of S is now "moving" to B)
//!  +3800  P → A            +4500  pause B 8–13 s   +4700  S → A (A's pull from B waits)
//!  +5500 … +10000  P publishes to S through A
//! ```

use std::collections::BTreeSet;

use crate::NodeId;

use crate::client::Who;
use crate::node::Status;
use crate::sim::{Ev, Phase, Sim, Time};

/// The fault under way, if any.
#[derive(Debug, Clone)]
pub(crate) struct NemesisState {
    pub id: u64,
    pub kind: Fault,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {
    Pause(NodeId),
    Crash(NodeId),
    Partition(NodeId),
}

#[derive(Debug, Clone)]
pub(crate) enum ScriptOp {
    Bounce {
        who: Who,
        node: NodeId,
    },
    Crash(NodeId),
    Restart(NodeId),
    Pause {
        node: NodeId,
        ms: Time,
    },
    Resume(NodeId),
    /// `window`: while S's pull from paused B waits on A (the messages issue 11 lost).
    Publish {
        p: usize,
        d: usize,
        count: usize,
        window: bool,
    },
    End,
}

/// The tag of messages the script publishes while S's pull waits (see the module header).
pub const STALE_COPY_WINDOW: &str = "published during the stale-copy window";

/// Least time the heal phase lasts (stranded offers start after 5 s).
const HEAL_MIN: Time = 20_000;
/// Longest the heal phase may take before the run is declared unsettled.
const HEAL_MAX: Time = 300_000;

impl Sim {
    pub fn start(&mut self) {
        for n in self.node_ids() {
            let delay = self.rng.range(1, 500);
            self.at_node(n, delay, crate::sim::NodeEv::Wake);
        }
        for who in self.all_clients() {
            let delay = self.rng.range(0, 200);
            self.after(
                delay,
                Ev::Client {
                    who,
                    ev: crate::sim::ClientEv::Connect { node: None },
                },
            );
        }
        if self.rng.chance(self.cfg.stale_copy_prob) && self.cfg.steps > 0 {
            self.script_at = Some(self.rng.range(1, self.cfg.steps as u64) as usize);
        }
        self.after(
            3_000,
            Ev::Step {
                left: self.cfg.steps,
            },
        );
    }

    pub fn step(&mut self, left: usize) {
        if self.phase != Phase::Chaos {
            return;
        }
        if left == 0 {
            if self.script_running {
                // The scripted scenario plays to its end first.
                self.after(500, Ev::Step { left: 0 });
            } else {
                self.after(0, Ev::HealStart);
            }
            return;
        }
        if self.script_at == Some(left) {
            if self.nemesis.is_none() && !self.script_running {
                self.script_at = None;
                self.stale_copy_script();
            } else {
                self.script_at = Some(left - 1).filter(|l| *l > 0);
            }
        }
        let roll = self.rng.below(100);
        match roll {
            0..45 => {
                let p = self.rng.index(self.publishers.len());
                if !self.scripted.contains(&Who::Publisher(p)) {
                    let count = self.rng.range(1, 3) as usize;
                    let device = if self.rng.chance(0.5) {
                        Some(self.rng.index(self.devices.len()))
                    } else {
                        None
                    };
                    self.publish(p, device, count);
                }
            }
            45..65 if self.cfg.bounces => {
                let d = self.rng.index(self.devices.len());
                let delay = self.rng.range(0, 1_500);
                if !self.scripted.contains(&Who::Device(d)) {
                    trace!(self, "OP bounce d{d}");
                    self.bounce(Who::Device(d), None, delay);
                }
            }
            65..72 if self.cfg.bounces => {
                let p = self.rng.index(self.publishers.len());
                let delay = self.rng.range(0, 1_500);
                if !self.scripted.contains(&Who::Publisher(p)) {
                    trace!(self, "OP bounce p{p}");
                    self.bounce(Who::Publisher(p), None, delay);
                }
            }
            72..84 if self.cfg.faults && self.nemesis.is_none() && !self.script_running => {
                let node = self.rng.range(1, self.nodes.len() as u64);
                let kind = match self.rng.below(100) {
                    0..40 => Fault::Pause(node),
                    40..75 => Fault::Crash(node),
                    _ => Fault::Partition(node),
                };
                self.nemesis_start(kind);
            }
            _ => {}
        }
        let gap = self
            .rng
            .range(self.cfg.step_gap_ms.0, self.cfg.step_gap_ms.1);
        self.after(gap, Ev::Step { left: left - 1 });
    }

    fn nemesis_start(&mut self, kind: Fault) {
        self.nemesis_seq += 1;
        let id = self.nemesis_seq;
        let duration = match kind {
            Fault::Pause(node) => {
                let ms = self.rng.range(self.cfg.pause_ms.0, self.cfg.pause_ms.1);
                self.pause(node, self.now + ms);
                ms
            }
            Fault::Crash(node) => {
                self.crash(node);
                self.rng
                    .range(self.cfg.crash_down_ms.0, self.cfg.crash_down_ms.1)
            }
            Fault::Partition(node) => {
                let ms = self
                    .rng
                    .range(self.cfg.partition_ms.0, self.cfg.partition_ms.1);
                self.report.partitions += 1;
                trace!(self, "NEMESIS partition n{node} for {ms} ms");
                self.net.cut = BTreeSet::from([node]);
                ms
            }
        };
        self.nemesis = Some(NemesisState { id, kind });
        self.after(duration, Ev::NemesisEnd { id });
    }

    pub fn nemesis_end(&mut self, id: u64) {
        let Some(state) = self.nemesis.take_if(|s| s.id == id) else {
            return;
        };
        match state.kind {
            Fault::Pause(node) => self.resume(node),
            Fault::Crash(node) => self.restart(node),
            Fault::Partition(_) => {
                trace!(self, "NEMESIS heal partition");
                self.net.cut.clear();
                self.raft_everywhere();
            }
        }
    }

    fn stale_copy_script(&mut self) {
        let count = self.nodes.len() as u64;
        let a = self.rng.range(1, count);
        let b = (a % count) + 1;
        let s = self.rng.index(self.devices.len());
        let p = self.rng.index(self.publishers.len());
        self.report.stale_copy_scripts += 1;
        self.script_running = true;
        self.scripted = BTreeSet::from([Who::Device(s), Who::Publisher(p)]);
        trace!(
            self,
            "SCRIPT stale copy: A = n{a}, B = n{b}, S = d{s}, P = p{p}"
        );
        let pause = self.rng.range(8_000, 13_000);
        let plan = [
            (
                0,
                ScriptOp::Bounce {
                    who: Who::Device(s),
                    node: a,
                },
            ),
            (1_000, ScriptOp::Crash(a)),
            (
                1_300,
                ScriptOp::Bounce {
                    who: Who::Device(s),
                    node: b,
                },
            ),
            (
                2_000,
                ScriptOp::Publish {
                    p,
                    d: s,
                    count: 2,
                    window: false,
                },
            ),
            (3_500, ScriptOp::Restart(a)),
            (
                3_800,
                ScriptOp::Bounce {
                    who: Who::Publisher(p),
                    node: a,
                },
            ),
            (4_500, ScriptOp::Pause { node: b, ms: pause }),
            (
                4_700,
                ScriptOp::Bounce {
                    who: Who::Device(s),
                    node: a,
                },
            ),
            (
                5_500,
                ScriptOp::Publish {
                    p,
                    d: s,
                    count: 2,
                    window: true,
                },
            ),
            (
                6_500,
                ScriptOp::Publish {
                    p,
                    d: s,
                    count: 2,
                    window: true,
                },
            ),
            (
                8_000,
                ScriptOp::Publish {
                    p,
                    d: s,
                    count: 2,
                    window: true,
                },
            ),
            (
                10_000,
                ScriptOp::Publish {
                    p,
                    d: s,
                    count: 2,
                    window: true,
                },
            ),
            (4_500 + pause, ScriptOp::Resume(b)),
            (4_500 + pause + 2_000, ScriptOp::End),
        ];
        for (at, op) in plan {
            self.after(at, Ev::Script(op));
        }
    }

    pub fn script(&mut self, op: ScriptOp) {
        if self.phase != Phase::Chaos {
            return;
        }
        match op {
            ScriptOp::Bounce { who, node } => {
                trace!(self, "SCRIPT bounce {who:?} to n{node}");
                self.bounce(who, Some(node), 1);
            }
            ScriptOp::Crash(node) => {
                if self.node(node).status == Status::Up {
                    self.crash(node);
                }
            }
            ScriptOp::Restart(node) => self.restart(node),
            ScriptOp::Pause { node, ms } => self.pause(node, self.now + ms),
            ScriptOp::Resume(node) => self.resume(node),
            ScriptOp::Publish {
                p,
                d,
                count,
                window,
            } => {
                trace!(self, "SCRIPT publish p{p} -> d{d} x{count}");
                self.tag = window.then_some(STALE_COPY_WINDOW);
                self.publish(p, Some(d), count);
                self.tag = None;
            }
            ScriptOp::End => {
                trace!(self, "SCRIPT end");
                self.script_running = false;
                let scripted = std::mem::take(&mut self.scripted);
                for who in scripted {
                    self.after(
                        1,
                        Ev::Client {
                            who,
                            ev: crate::sim::ClientEv::Connect { node: None },
                        },
                    );
                }
            }
        }
    }

    pub fn heal_start(&mut self) {
        if self.phase != Phase::Chaos {
            return;
        }
        trace!(self, "HEAL: every node back, no more faults");
        self.phase = Phase::Healing;
        self.heal_started = self.now;
        self.nemesis = None;
        self.script_running = false;
        let scripted = std::mem::take(&mut self.scripted);
        for n in self.node_ids() {
            match self.node(n).status {
                Status::Paused { .. } => self.resume(n),
                Status::Crashed => self.restart(n),
                Status::Up => {}
            }
        }
        self.net.cut.clear();
        self.release_blocked();
        self.raft_everywhere();
        for who in scripted {
            self.after(
                1,
                Ev::Client {
                    who,
                    ev: crate::sim::ClientEv::Connect { node: None },
                },
            );
        }
        self.after(2_000, Ev::HealConnect);
    }

    /// Heal phase: every connection a client believes open must belong to the session's
    /// current claim; then every client reconnects (to a random node) and drains.
    pub fn heal_connect(&mut self) {
        for d in 0..self.devices.len() {
            let device = &self.devices[d];
            let (Some(conn), true) = (device.conn, device.online) else {
                continue;
            };
            let node = self.conns.get(&conn).map(|c| c.node);
            let epoch = self.conn_epoch.get(&conn).copied();
            let entry = crate::wire::client_id(&device.id)
                .and_then(|c| self.raft.registry.sessions.get(&c));
            let current = entry.map(|e| (e.owner.0, e.epoch.0));
            if let (Some(node), Some(epoch)) = (node, epoch)
                && current != Some((node, epoch))
            {
                let id = device.id.clone();
                self.report.violate(
                    "3-zombie",
                    format!(
                        "{id} is still connected (conn {}) to n{node} at epoch {epoch}, but the session is n{}'s at epoch {}: nobody closed the stale connection",
                        conn.0,
                        current.map_or(0, |c| c.0),
                        current.map_or(0, |c| c.1)
                    ),
                );
            }
        }
        for who in self.all_clients() {
            let delay = self.rng.range(1, 500);
            self.bounce(who, None, delay);
        }
        self.after(1_000, Ev::Quiesce);
    }

    pub fn quiesce(&mut self) {
        if self.nodes.iter().any(|n| n.qos2_waits().is_some()) {
            // Held deliveries go out when the wait ends: that counts as activity, so the run
            // goes on until they have arrived.
            self.last_activity = self.now;
        }
        let waiting = self
            .clients_settled()
            .or_else(|| self.nodes.iter_mut().find_map(|n| n.busy()))
            .or_else(|| {
                self.nodes.iter().find_map(|n| {
                    let moving = n.broker.as_ref().map_or(0, |b| b.moving_sessions().len());
                    (moving > 0).then(|| format!("n{}: {moving} copies still moving", n.id))
                })
            })
            .or_else(|| {
                (self.now < self.last_activity + 3_000).then(|| "deliveries going on".to_string())
            });
        let elapsed = self.now - self.heal_started;
        match waiting {
            None if elapsed >= HEAL_MIN => {
                self.phase = Phase::Done;
                return;
            }
            Some(reason) if elapsed >= HEAL_MAX => {
                self.report
                    .note(format!("did not settle within {HEAL_MAX} ms: {reason}"));
                self.phase = Phase::Done;
                return;
            }
            _ => {}
        }
        for d in 0..self.devices.len() {
            if self.devices[d].online {
                self.device_ack_all(d);
            }
        }
        self.after(1_000, Ev::Quiesce);
    }

    pub fn finish(mut self) -> crate::Report {
        for n in self.node_ids() {
            self.count_qos2_waits(n);
        }
        self.report.now = self.now;
        self.report.sim_ms = self.now;
        self.report.events = self.events;
        self.ledger.finish(&mut self.report);
        let end = self.raft.log.len() as u64;
        for n in self.node_ids() {
            let node = self.node(n);
            if node.applied == end && node.registry != self.raft.registry {
                self.report.violate(
                    "registry",
                    format!(
                        "n{n}'s registry differs from the leader's after applying the whole log"
                    ),
                );
            } else if node.applied != end {
                let applied = node.applied;
                self.report
                    .note(format!("n{n} applied {applied} of {end} log entries"));
            }
        }
        self.report
    }
}

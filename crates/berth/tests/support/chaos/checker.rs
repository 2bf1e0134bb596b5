//! What the chaos test saw, and the verdict. Devices record every PUBLISH they receive
//! (publisher, sequence number, DUP flag, when); publishers record every message with its send
//! attempts and whether a success PUBACK came back. The checker then counts, per the cluster's
//! guarantees (README, "What the cluster guarantees"):
//! - LOST: acknowledged (PUBACK Success) and never delivered to its device. Must be 0.
//! - lost sessions: a reconnect (Clean Start 0) answered with Session Present 0. Must be 0.
//! - 0x10 (No matching subscribers) for a device that had its persistent subscription: must
//!   not happen, as must no message reach another device's topic or one never published.
//! - duplicates (allowed for QoS 1), split into those the publisher caused by sending again,
//!   copies the broker queued twice (both on one connection, the first acknowledged), and
//!   re-sends of an unacknowledged message after a reconnect; of these, those with DUP = 0
//!   (the spec wants 1).
//! - reordered: a first delivery after a higher sequence number of the same publisher to the
//!   same device; "late" when the message was sent once (a stranded backlog delivered after
//!   newer messages, allowed as documented), else caused by the publisher's re-send.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::ops::Range;
use std::time::{Duration, Instant};

/// One PUBLISH a device received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub publisher: usize,
    pub seq: u64,
    pub dup: bool,
    /// The connection it came on (`Conn::serial`).
    pub conn: u64,
    pub at: Duration,
    /// Received in the final drain, after the cluster healed.
    pub drain: bool,
}

/// One message a publisher made.
#[derive(Debug, Clone)]
pub struct Message {
    pub device: usize,
    pub attempts: u32,
    pub first_sent: Option<Duration>,
    pub acked_at: Option<Duration>,
    /// Client ports of the connections it was sent on (haproxy's log names their nodes).
    pub ports: Vec<u16>,
}

/// `DeviceConn::target` of a step on the connection before it (a SUBSCRIBE).
pub const SAME: &str = "(same)";

/// A device's connection (or a step on it).
#[derive(Debug, Clone)]
pub struct DeviceConn {
    pub at: Duration,
    /// `lb` (through haproxy) or `nN`.
    pub target: String,
    pub port: u16,
    /// What came of it: `session present` (true/false), a refusal, or no CONNACK.
    pub outcome: String,
}

#[derive(Debug)]
pub struct Records {
    pub start: Instant,
    pub deliveries: Vec<Vec<Delivery>>,
    seen: Vec<HashSet<(usize, u64)>>,
    /// When a device last received a message for the first time.
    pub last_new: Instant,
    pub device_conns: Vec<Vec<DeviceConn>>,
    /// Per publisher, indexed by sequence number.
    pub messages: Vec<Vec<Message>>,
    pub publish_started: Option<Duration>,
    pub publish_stopped: Option<Duration>,
    pub latencies: Vec<Duration>,
    /// Non-success PUBACK reasons (MQTT 5) and their count.
    pub reasons: BTreeMap<String, u64>,
    pub violations: Vec<String>,
    pub lost_sessions: Vec<String>,
    /// (device, when) of each lost session, for `explain`.
    pub lost_session_at: Vec<(usize, Duration)>,
    /// (device, from the CONNECT that found its session lost to the SUBACK that restored its
    /// subscription): what was routed to it then had nowhere to go.
    pub reset_windows: Vec<(usize, Range<Duration>)>,
    /// PUBACK 0x10: (publisher, seq, device, when).
    pub no_subscribers: Vec<(usize, u64, usize, Duration)>,
    /// What the nemesis and the phases did, in order.
    pub events: Vec<(Duration, String)>,
    pub counters: BTreeMap<String, u64>,
}

impl Records {
    pub fn new(devices: usize, publishers: usize) -> Records {
        let now = Instant::now();
        Records {
            start: now,
            deliveries: vec![Vec::new(); devices],
            seen: vec![HashSet::new(); devices],
            last_new: now,
            device_conns: vec![Vec::new(); devices],
            messages: vec![Vec::new(); publishers],
            publish_started: None,
            publish_stopped: None,
            latencies: Vec::new(),
            reasons: BTreeMap::new(),
            violations: Vec::new(),
            lost_sessions: Vec::new(),
            lost_session_at: Vec::new(),
            reset_windows: Vec::new(),
            no_subscribers: Vec::new(),
            events: Vec::new(),
            counters: BTreeMap::new(),
        }
    }

    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn count(&mut self, what: &str) {
        *self.counters.entry(what.to_string()).or_default() += 1;
    }

    pub fn event(&mut self, what: String) {
        let at = self.now();
        eprintln!("chaos [{:7.2}s] {what}", at.as_secs_f64());
        self.events.push((at, what));
    }

    /// A PUBLISH with payload `P:SEQ` on `chaos/dN` received by device `device` with its DUP
    /// flag on connection `conn`.
    pub fn deliver(
        &mut self,
        device: usize,
        topic: &str,
        payload: &[u8],
        (dup, conn): (bool, u64),
        drain: bool,
    ) {
        let at = self.now();
        let text = String::from_utf8_lossy(payload);
        let parsed = text.split_once(':').and_then(|(p, s)| {
            let publisher: usize = p.parse().ok()?;
            let seq: u64 = s.parse().ok()?;
            Some((publisher, seq))
        });
        let Some((publisher, seq)) = parsed else {
            self.violations
                .push(format!("device {device} got an unknown payload {text:?}"));
            return;
        };
        let known = self
            .messages
            .get(publisher)
            .and_then(|m| m.get(seq as usize))
            .map(|m| m.device);
        match known {
            None => self.violations.push(format!(
                "device {device} got {publisher}:{seq}, which was never published"
            )),
            Some(target) if target != device || topic != format!("chaos/d{device}") => {
                self.violations.push(format!(
                    "device {device} got {publisher}:{seq} (for device {target}) on {topic}"
                ))
            }
            Some(_) => {}
        }
        if self.seen[device].insert((publisher, seq)) {
            self.last_new = Instant::now();
        }
        self.deliveries[device].push(Delivery {
            publisher,
            seq,
            dup,
            conn,
            at,
            drain,
        });
    }
}

/// The figures of a run.
#[derive(Debug, Default)]
pub struct Report {
    pub published: u64,
    pub acked: u64,
    pub unconfirmed: u64,
    pub retried: u64,
    pub delivered: u64,
    pub lost: Vec<(usize, u64)>,
    /// Of `lost`, those acknowledged while their device's lost session was being subscribed
    /// again (a consequence of the lost session).
    pub lost_in_reset: u64,
    pub duplicates: u64,
    pub duplicates_resent: u64,
    /// The same message queued twice: both copies on one connection, the first acknowledged.
    pub stored_twice: u64,
    /// Sent again after a reconnect (it was in flight, unacknowledged, when the connection
    /// dropped): must carry DUP = 1.
    pub redeliveries: u64,
    pub dup0_redeliveries: u64,
    /// (device, publisher, seq, first delivery, the DUP = 0 one).
    pub dup0: Vec<(usize, usize, u64, Duration, Duration)>,
    pub reordered: u64,
    pub late: u64,
    pub drained: u64,
    pub lost_sessions: usize,
    /// PUBACK 0x10 while the device had its persistent subscription: a violation.
    pub no_subscribers: usize,
    /// PUBACK 0x10 while a lost session re-subscribed (counted with the lost session).
    pub no_subscribers_reset: usize,
    pub violations: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub rate: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Records {
    pub fn report(&self) -> Report {
        let mut r = Report::default();
        for (publisher, messages) in self.messages.iter().enumerate() {
            for (seq, m) in messages.iter().enumerate() {
                r.published += 1;
                r.retried += u64::from(m.attempts.saturating_sub(1));
                if m.acked_at.is_some() {
                    r.acked += 1;
                    if !self.seen[m.device].contains(&(publisher, seq as u64)) {
                        r.lost.push((publisher, seq as u64));
                        r.lost_in_reset += u64::from(self.in_reset(m));
                    }
                } else {
                    r.unconfirmed += 1;
                }
            }
        }
        let attempts = |publisher: usize, seq: u64| {
            self.messages
                .get(publisher)
                .and_then(|m| m.get(seq as usize))
                .map_or(1, |m| m.attempts)
        };
        for (device, deliveries) in self.deliveries.iter().enumerate() {
            let mut seen = HashMap::new();
            let mut highest: HashMap<usize, u64> = HashMap::new();
            for d in deliveries {
                if let Some(&(first, conn)) = seen.get(&(d.publisher, d.seq)) {
                    r.duplicates += 1;
                    if attempts(d.publisher, d.seq) > 1 {
                        r.duplicates_resent += 1;
                    } else if conn == d.conn {
                        r.stored_twice += 1;
                    } else {
                        r.redeliveries += 1;
                        if !d.dup {
                            r.dup0_redeliveries += 1;
                            r.dup0.push((device, d.publisher, d.seq, first, d.at));
                        }
                    }
                    continue;
                }
                seen.insert((d.publisher, d.seq), (d.at, d.conn));
                r.delivered += 1;
                r.drained += u64::from(d.drain);
                let top = highest.entry(d.publisher).or_insert(d.seq);
                if d.seq < *top {
                    r.reordered += 1;
                    r.late += u64::from(attempts(d.publisher, d.seq) <= 1);
                } else {
                    *top = d.seq;
                }
            }
        }
        let mut latencies = self.latencies.clone();
        latencies.sort();
        r.p50 = percentile(&latencies, 0.50);
        r.p99 = percentile(&latencies, 0.99);
        r.max = latencies.last().copied().unwrap_or_default();
        let window = match (self.publish_started, self.publish_stopped) {
            (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
            _ => 1.0,
        };
        r.rate = r.acked as f64 / window;
        r.lost_sessions = self.lost_sessions.len();
        r.no_subscribers = self.no_subscriber_violations().len();
        r.no_subscribers_reset = self.no_subscribers.len() - r.no_subscribers;
        r.violations = self.violations.len();
        r
    }

    /// The PUBACKs 0x10 for a device that had its subscription (not re-subscribing after a
    /// lost session).
    pub fn no_subscriber_violations(&self) -> Vec<String> {
        self.no_subscribers
            .iter()
            .filter(|(_, _, device, at)| !self.resetting(*device, *at))
            .map(|(publisher, seq, device, at)| {
                format!(
                    "PUBACK 0x10 for {publisher}:{seq} to device {device} at {:.2}s",
                    at.as_secs_f64()
                )
            })
            .collect()
    }

    /// Device `device` was re-subscribing after losing its session at `at`.
    fn resetting(&self, device: usize, at: Duration) -> bool {
        self.reset_windows
            .iter()
            .any(|(d, window)| *d == device && window.contains(&at))
    }

    /// `m` was acknowledged while its device was re-subscribing after losing its session.
    fn in_reset(&self, m: &Message) -> bool {
        m.acked_at.is_some_and(|at| self.resetting(m.device, at))
    }

    /// Device `device`'s connections and the nemesis' events within `window`.
    fn context(
        &self,
        out: &mut String,
        device: usize,
        window: Range<Duration>,
        routes: &HashMap<u16, String>,
    ) {
        let node_of = |port: u16| routes.get(&port).cloned().unwrap_or_else(|| "?".into());
        for c in self.device_conns[device]
            .iter()
            .filter(|c| window.contains(&c.at))
        {
            let how = match c.target.as_str() {
                "lb" => format!("connects via lb → {}", node_of(c.port)),
                SAME => "on the same connection".into(),
                node => format!("connects via {node}"),
            };
            let _ = writeln!(
                out,
                "    [{:.2}s] device {device} {how} (port {}): {}",
                c.at.as_secs_f64(),
                c.port,
                c.outcome
            );
        }
        for (at, what) in self.events.iter().filter(|(at, _)| window.contains(at)) {
            let _ = writeln!(out, "    [{:.2}s] {what}", at.as_secs_f64());
        }
    }

    /// The lost sessions and the first re-deliveries with DUP = 0, each with the device's
    /// connections and the faults around it.
    pub fn explain(&self, report: &Report, routes: &HashMap<u16, String>, limit: usize) -> String {
        let mut out = String::new();
        let back = |at: Duration, secs: u64| at.saturating_sub(Duration::from_secs(secs));
        for &(device, at) in self.lost_session_at.iter().take(limit) {
            let _ = writeln!(
                out,
                "LOST SESSION of device {device} (chaos-dev-{device}) at {:.2}s:",
                at.as_secs_f64()
            );
            self.context(
                &mut out,
                device,
                back(at, 30)..at + Duration::from_millis(1),
                routes,
            );
        }
        for &(device, publisher, seq, first, again) in report.dup0.iter().take(limit) {
            let _ = writeln!(
                out,
                "DUP = 0 re-delivery of {publisher}:{seq} to device {device}: first {:.2}s, again {:.2}s",
                first.as_secs_f64(),
                again.as_secs_f64()
            );
            self.context(
                &mut out,
                device,
                back(first, 2)..again + Duration::from_millis(1),
                routes,
            );
        }
        out
    }

    /// Why each lost message may have been lost: its sends, the device's connections around
    /// it and the nemesis' events (at most `limit` messages).
    pub fn explain_lost(
        &self,
        lost: &[(usize, u64)],
        routes: &HashMap<u16, String>,
        limit: usize,
    ) -> String {
        let mut out = String::new();
        let node_of = |port: u16| routes.get(&port).cloned().unwrap_or_else(|| "?".into());
        for &(publisher, seq) in lost.iter().take(limit) {
            let m = &self.messages[publisher][seq as usize];
            let acked = m.acked_at.unwrap_or_default();
            let via: Vec<String> = m
                .ports
                .iter()
                .map(|p| format!("port {p} → {}", node_of(*p)))
                .collect();
            let _ = writeln!(
                out,
                "LOST {publisher}:{seq} for device {} (chaos/d{}){}: first sent {:.2}s, acked {:.2}s, {} attempt(s) via {}",
                m.device,
                m.device,
                if self.in_reset(m) {
                    " while its lost session re-subscribed"
                } else {
                    ""
                },
                m.first_sent.unwrap_or_default().as_secs_f64(),
                acked.as_secs_f64(),
                m.attempts,
                via.join(", ")
            );
            self.context(
                &mut out,
                m.device,
                acked.saturating_sub(Duration::from_secs(20))..acked + Duration::from_secs(20),
                routes,
            );
            let around: Vec<String> = self.deliveries[m.device]
                .iter()
                .filter(|d| d.publisher == publisher && d.seq.abs_diff(seq) <= 3 * 24)
                .map(|d| format!("{}@{:.2}s", d.seq, d.at.as_secs_f64()))
                .collect();
            let _ = writeln!(
                out,
                "    device received from publisher {publisher} nearby: {}",
                around.join(" ")
            );
        }
        if lost.len() > limit {
            let _ = writeln!(out, "... and {} more", lost.len() - limit);
        }
        out
    }
}

impl Records {
    /// When the slow acknowledgements (over `threshold`) were first sent, by whole second of
    /// the run: to lay beside the nemesis' timeline.
    pub fn slow_acks(&self, threshold: Duration) -> String {
        let mut by_second: std::collections::BTreeMap<u64, (usize, Duration)> = Default::default();
        for m in self.messages.iter().flatten() {
            if let (Some(sent), Some(acked)) = (m.first_sent, m.acked_at)
                && acked.saturating_sub(sent) > threshold
            {
                let slot = by_second.entry(sent.as_secs()).or_default();
                slot.0 += 1;
                slot.1 = slot.1.max(acked - sent);
            }
        }
        let total: usize = by_second.values().map(|(n, _)| n).sum();
        let seconds: Vec<String> = by_second
            .iter()
            .map(|(s, (n, max))| format!("{s}s:{n} (max {:.1}s)", max.as_secs_f64()))
            .collect();
        format!(
            "chaos: {total} PUBACKs slower than {threshold:?}, by second first sent: {}",
            seconds.join(", ")
        )
    }
}

impl Report {
    pub fn table(&self) -> String {
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        let n = |v: u64| v.to_string();
        let rows = [
            ("messages published", n(self.published)),
            ("  acked (PUBACK Success)", n(self.acked)),
            ("  never confirmed (at the end)", n(self.unconfirmed)),
            ("  re-sends by publishers", n(self.retried)),
            ("delivered (distinct)", n(self.delivered)),
            ("LOST (acked, never delivered)", n(self.lost.len() as u64)),
            (
                "  while a lost session re-subscribed",
                n(self.lost_in_reset),
            ),
            ("duplicates", n(self.duplicates)),
            ("  from publishers' re-sends", n(self.duplicates_resent)),
            ("  queued twice by the broker", n(self.stored_twice)),
            ("  re-sent after a reconnect", n(self.redeliveries)),
            ("    of which with DUP = 0", n(self.dup0_redeliveries)),
            ("reordered (per publisher, device)", n(self.reordered)),
            ("  late (sent once: stranded)", n(self.late)),
            (
                "  after a publisher's re-send",
                n(self.reordered - self.late),
            ),
            ("first delivered in the final drain", n(self.drained)),
            (
                "lost sessions (Session Present 0)",
                n(self.lost_sessions as u64),
            ),
            (
                "PUBACK 0x10 with a subscription",
                n(self.no_subscribers as u64),
            ),
            (
                "  (0x10 while a lost session re-subscribed)",
                n(self.no_subscribers_reset as u64),
            ),
            ("other violations", n(self.violations as u64)),
            ("PUBACK latency p50", ms(self.p50)),
            ("PUBACK latency p99", ms(self.p99)),
            ("PUBACK latency max", ms(self.max)),
            ("achieved rate (acked/s)", format!("{:.0}", self.rate)),
        ];
        let mut out = String::from("| chaos check | value |\n| --- | ---: |\n");
        for (name, value) in rows {
            let _ = writeln!(out, "| {name} | {value} |");
        }
        out
    }
}

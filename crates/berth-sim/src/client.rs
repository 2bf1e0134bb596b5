//! Simulated MQTT clients: persistent devices that subscribe once to `dev/<id>/#` and hop
//! between nodes, and publishers with persistent sessions that publish QoS 1 and QoS 2 to the
//! devices' topics with a per-publisher sequence number in the payload.
//!
//! They behave as real clients do: a device acknowledges what it receives (or, before the heal
//! phase, sometimes not: as if it died before sending the PUBACK), answers PUBREL with PUBCOMP
//! and keeps a QoS 2 packet identifier until its PUBREL (method A: delivered once, on first
//! receipt); a publisher re-sends unacknowledged PUBLISHes with DUP = 1 and the same packet
//! identifier (and PUBREL for QoS 2 past PUBREC) after reconnecting. A connection to a node
//! that crashes fails at once; one to a paused node is given up after 1–3 s (the client's ping
//! goes unanswered), and the client connects again to a random node. The publishers' packets
//! and publishing are in `publisher.rs`.

use std::collections::{BTreeMap, BTreeSet};

use crate::NodeId;
use berth_codec::{
    Connect, ConnectProperties, MqttString, Packet, PacketId, ProtocolVersion, PubAck, PubComp,
    PubRec, Publish, QoS, Subscribe, Subscription, SubscriptionOptions, TopicFilter,
};
use berth_core::ConnId;

use crate::node::Status;
use crate::rng::Rng;
use crate::sim::{ClientEv, Ev, FromClient, Phase, Sim, Time, ToClient};
use crate::wire::over_socket;

pub(crate) use crate::publisher::{Outgoing, Publisher};

/// How long a client waits for CONNACK before it gives up on the connection.
const CONNACK_TIMEOUT: Time = 10_000;

/// Publisher index and its sequence number: one published message.
pub(crate) type MsgKey = (usize, u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Who {
    Device(usize),
    Publisher(usize),
}

/// The client's side of one connection (and the two ordered directions of its socket).
#[derive(Debug)]
pub(crate) struct ClientConn {
    pub who: Who,
    pub node: NodeId,
    pub inc: u64,
    pub protocol: ProtocolVersion,
    pub up: Time,
    pub down: Time,
}

#[derive(Debug)]
pub(crate) struct Device {
    pub id: String,
    pub v5: bool,
    pub sub_qos: QoS,
    pub conn: Option<ConnId>,
    pub online: bool,
    pub subscribed_at: Option<Time>,
    pub sub_pending: bool,
    /// Refused SUBSCRIBEs on the current connection.
    pub sub_refusals: u32,
    /// The session needs its subscription (new, or found gone).
    pub sub_needed: bool,
    pub had_session: bool,
    /// Received on the current connection and not acknowledged: packet id → message.
    pub unacked: BTreeMap<u16, (MsgKey, QoS)>,
    /// Received on an earlier connection and never acknowledged: re-deliveries need DUP = 1.
    pub prev_unacked: BTreeMap<MsgKey, u16>,
    /// QoS 2 packet ids received and not yet released (PUBREL).
    pub qos2_pending: BTreeMap<u16, MsgKey>,
}

impl Device {
    pub fn new(index: usize, _rng: &mut Rng) -> Device {
        Device {
            id: format!("d{index}"),
            v5: index.is_multiple_of(2),
            sub_qos: if index % 3 == 2 {
                QoS::ExactlyOnce
            } else {
                QoS::AtLeastOnce
            },
            conn: None,
            online: false,
            subscribed_at: None,
            sub_pending: false,
            sub_refusals: 0,
            sub_needed: true,
            had_session: false,
            unacked: BTreeMap::new(),
            prev_unacked: BTreeMap::new(),
            qos2_pending: BTreeMap::new(),
        }
    }
}

pub(crate) fn pid(value: u16) -> Option<PacketId> {
    PacketId::new(value)
}

/// The CONNECT of a persistent session: 3.1.1 Clean Session 0, or 5.0 Clean Start 0 with
/// Session Expiry 3600.
fn connect_packet(id: &str, v5: bool) -> Option<Connect> {
    Some(Connect {
        protocol: if v5 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        },
        clean_start: false,
        keep_alive: 60,
        client_id: MqttString::new(id).ok()?,
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties {
            session_expiry_interval: v5.then_some(3600),
            ..Default::default()
        },
    })
}

/// `dev/<device>/p<publisher>` + payload `p<publisher>:<seq>` → the message's key.
pub(crate) fn parse_key(payload: &[u8]) -> Option<MsgKey> {
    let text = std::str::from_utf8(payload).ok()?;
    let (publisher, seq) = text.strip_prefix('p')?.split_once(':')?;
    Some((publisher.parse().ok()?, seq.parse().ok()?))
}

impl Sim {
    fn who_conn(&self, who: Who) -> Option<ConnId> {
        match who {
            Who::Device(d) => self.devices[d].conn,
            Who::Publisher(p) => self.publishers[p].conn,
        }
    }

    fn who_name(&self, who: Who) -> String {
        match who {
            Who::Device(d) => self.devices[d].id.clone(),
            Who::Publisher(p) => self.publishers[p].id.clone(),
        }
    }

    pub fn client_event(&mut self, who: Who, ev: ClientEv) {
        match ev {
            ClientEv::Arrive { conn, item } => {
                if self.who_conn(who) != Some(conn) {
                    return;
                }
                match item {
                    ToClient::Packet(packet) => match who {
                        Who::Device(d) => self.device_packet(d, conn, packet),
                        Who::Publisher(p) => self.publisher_packet(p, conn, packet),
                    },
                    ToClient::Close | ToClient::Lost => {
                        trace!(self, "{} conn {} ended", self.who_name(who), conn.0);
                        self.connection_ended(who);
                        self.reconnect_later(who);
                    }
                }
            }
            ClientEv::Connect { node } => {
                if self.who_conn(who).is_none() {
                    self.connect(who, node);
                }
            }
            ClientEv::Probe { conn } => {
                let Some(link) = self.conns.get(&conn) else {
                    return;
                };
                let paused = matches!(self.node(link.node).status, Status::Paused { .. });
                if paused && self.who_conn(who) == Some(conn) {
                    trace!(
                        self,
                        "{} gives up conn {} (node paused)",
                        self.who_name(who),
                        conn.0
                    );
                    self.abandon(who);
                    self.reconnect_later(who);
                }
            }
            ClientEv::Resubscribe { conn } => {
                if let Who::Device(d) = who
                    && self.devices[d].conn == Some(conn)
                    && self.devices[d].online
                    && self.devices[d].sub_needed
                {
                    self.device_subscribe(d, conn);
                }
            }
            ClientEv::ConnackTimeout { conn } => {
                let online = match who {
                    Who::Device(d) => self.devices[d].online,
                    Who::Publisher(p) => self.publishers[p].online,
                };
                if self.who_conn(who) == Some(conn) && !online {
                    trace!(
                        self,
                        "{} gives up conn {} (no CONNACK)",
                        self.who_name(who),
                        conn.0
                    );
                    self.abandon(who);
                    self.reconnect_later(who);
                }
            }
        }
    }

    /// Opens a connection to `node` (a random one if `None`).
    pub fn connect(&mut self, who: Who, node: Option<NodeId>) {
        let node = match node {
            Some(node) => node,
            None => self.rng.range(1, self.nodes.len() as u64),
        };
        let (id, v5) = match who {
            Who::Device(d) => (self.devices[d].id.clone(), self.devices[d].v5),
            Who::Publisher(p) => (self.publishers[p].id.clone(), self.publishers[p].v5),
        };
        let Some(connect) = connect_packet(&id, v5) else {
            return;
        };
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        let inc = self.node(node).inc;
        self.conns.insert(
            conn,
            ClientConn {
                who,
                node,
                inc,
                protocol: connect.protocol,
                up: self.now,
                down: self.now,
            },
        );
        match who {
            Who::Device(d) => {
                self.devices[d].conn = Some(conn);
                self.devices[d].online = false;
            }
            Who::Publisher(p) => {
                self.publishers[p].conn = Some(conn);
                self.publishers[p].online = false;
            }
        }
        trace!(self, "{id} connects to n{node} (conn {})", conn.0);
        let packet = Packet::Connect(Box::new(connect));
        match over_socket(
            &packet,
            if v5 {
                ProtocolVersion::V5
            } else {
                ProtocolVersion::V3_1_1
            },
        ) {
            Ok(Packet::Connect(connect)) => {
                self.client_to_node(conn, FromClient::Connect(connect));
            }
            other => {
                self.report.violate(
                    "codec",
                    format!("CONNECT does not survive the wire: {other:?}"),
                );
            }
        }
        self.after(
            CONNACK_TIMEOUT,
            Ev::Client {
                who,
                ev: ClientEv::ConnackTimeout { conn },
            },
        );
        if matches!(self.node(node).status, Status::Paused { .. }) {
            let delay = self.rng.range(1_000, 3_000);
            self.after(
                delay,
                Ev::Client {
                    who,
                    ev: ClientEv::Probe { conn },
                },
            );
        }
    }

    /// The client drops its connection abruptly (the node sees the socket close).
    pub fn abandon(&mut self, who: Who) {
        if let Some(conn) = self.who_conn(who) {
            self.client_to_node(conn, FromClient::Fin);
            self.connection_ended(who);
        }
    }

    fn connection_ended(&mut self, who: Who) {
        match who {
            Who::Device(d) => {
                let device = &mut self.devices[d];
                device.conn = None;
                device.online = false;
                device.sub_pending = false;
                device.sub_refusals = 0;
                let unacked = std::mem::take(&mut device.unacked);
                for (pid, (key, _)) in unacked {
                    device.prev_unacked.insert(key, pid);
                }
            }
            Who::Publisher(p) => {
                self.publishers[p].conn = None;
                self.publishers[p].online = false;
            }
        }
    }

    fn reconnect_later(&mut self, who: Who) {
        if self.phase == Phase::Done || self.scripted.contains(&who) {
            return;
        }
        let delay = self.rng.range(200, 2_000);
        self.after(
            delay,
            Ev::Client {
                who,
                ev: ClientEv::Connect { node: None },
            },
        );
    }

    /// Drops the connection and connects again to `node` (a random one if `None`).
    pub fn bounce(&mut self, who: Who, node: Option<NodeId>, delay: Time) {
        self.abandon(who);
        self.after(
            delay,
            Ev::Client {
                who,
                ev: ClientEv::Connect { node },
            },
        );
    }

    /// A packet from a client, as the node decodes it.
    pub(crate) fn client_send(&mut self, conn: ConnId, packet: Packet) {
        let Some(protocol) = self.conns.get(&conn).map(|c| c.protocol) else {
            return;
        };
        match over_socket(&packet, protocol) {
            Ok(packet) => self.client_to_node(conn, FromClient::Packet(packet)),
            Err(error) => self.report.violate(
                "codec",
                format!("a client packet does not survive the wire: {error}: {packet:?}"),
            ),
        }
    }

    fn ack_probability(&self) -> f64 {
        if self.phase == Phase::Chaos {
            self.cfg.ack_prob
        } else {
            1.0
        }
    }

    // ---- devices ------------------------------------------------------------------------

    fn device_packet(&mut self, d: usize, conn: ConnId, packet: Packet) {
        match packet {
            Packet::ConnAck(ack) => {
                if ack.reason.is_error() {
                    return;
                }
                self.note_started(conn);
                let device = &mut self.devices[d];
                device.online = true;
                let lost = !ack.session_present && device.had_session;
                device.had_session = true;
                if !ack.session_present {
                    device.qos2_pending.clear();
                    device.prev_unacked.clear();
                }
                if lost {
                    device.sub_needed = true;
                }
                let resubscribe = device.sub_needed;
                if lost {
                    let id = device.id.clone();
                    self.report.lost_sessions += 1;
                    self.report.violate(
                        "lost-session",
                        format!("{id} reconnected on conn {} and its session was gone (session present = 0)", conn.0),
                    );
                }
                trace!(
                    self,
                    "{} online on conn {} (session present {})",
                    self.devices[d].id,
                    conn.0,
                    ack.session_present
                );
                if resubscribe {
                    self.device_subscribe(d, conn);
                }
            }
            Packet::SubAck(suback) => {
                let device = &mut self.devices[d];
                device.sub_pending = false;
                if suback.reason_codes.iter().all(|c| !c.is_error()) {
                    device.sub_needed = false;
                    if device.subscribed_at.is_none() {
                        device.subscribed_at = Some(self.now);
                    }
                } else if device.sub_refusals < 10 {
                    // Not committed (no quorum, or fenced): again in a moment.
                    device.sub_refusals += 1;
                    self.after(
                        1_000,
                        Ev::Client {
                            who: Who::Device(d),
                            ev: ClientEv::Resubscribe { conn },
                        },
                    );
                }
            }
            Packet::Publish(publish) => self.device_publish(d, conn, publish),
            Packet::PubRel(rel) => {
                // Traced: a PUBREL that releases an id the client holds for another message
                // than the one the broker meant is how a QoS 2 message is taken twice.
                let held = self.devices[d].qos2_pending.remove(&rel.packet_id.get());
                if let Some((p, n)) = held {
                    trace!(
                        self,
                        "{} <- PUBREL id {} conn {} (releases p{p}:{n})",
                        self.devices[d].id,
                        rel.packet_id.get(),
                        conn.0
                    );
                }
                self.client_send(conn, Packet::PubComp(PubComp::new(rel.packet_id)));
            }
            _ => {}
        }
    }

    fn device_subscribe(&mut self, d: usize, conn: ConnId) {
        let device = &mut self.devices[d];
        if device.sub_pending {
            return;
        }
        let (Ok(filter), Some(id)) = (TopicFilter::parse(&format!("dev/{}/#", device.id)), pid(1))
        else {
            return;
        };
        device.sub_pending = true;
        let subscribe = Subscribe {
            packet_id: id,
            subscriptions: vec![Subscription {
                filter,
                options: SubscriptionOptions::new(device.sub_qos),
            }],
            properties: Default::default(),
        };
        self.client_send(conn, Packet::Subscribe(subscribe));
    }

    fn device_publish(&mut self, d: usize, conn: ConnId, publish: Publish) {
        let Some(key) = parse_key(&publish.payload) else {
            let device = self.devices[d].id.clone();
            self.report.violate(
                "foreign",
                format!("{device} received a message it cannot read: {publish:?}"),
            );
            return;
        };
        let epoch = self.conn_epoch.get(&conn).copied().unwrap_or(0);
        let packet_id = publish.packet_id.map_or(0, |p| p.get());
        let device = &mut self.devices[d];
        // Method A for QoS 2: a PUBLISH whose packet id is still held (no PUBREL yet) is the
        // same message again and is not delivered to the application twice.
        let mut app = true;
        if publish.qos == QoS::ExactlyOnce {
            match device.qos2_pending.get(&packet_id) {
                Some(held) if *held == key => app = false,
                Some(held) => {
                    let held = *held;
                    let id = device.id.clone();
                    self.report.violate(
                        "6-qos2-id",
                        format!("{id} got p{}:{} with packet id {packet_id} while that id still held p{}:{} (no PUBREL yet): a real client drops it as a duplicate", key.0, key.1, held.0, held.1),
                    );
                }
                None => {}
            }
            self.devices[d].qos2_pending.insert(packet_id, key);
        }
        let device = &mut self.devices[d];
        let earlier_unacked = device.prev_unacked.get(&key).copied();
        let receipt = crate::checker::Receipt {
            device: d,
            device_id: device.id.clone(),
            key,
            epoch,
            conn,
            dup: publish.dup,
            qos: publish.qos,
            packet_id,
            app,
            earlier_unacked,
        };
        self.last_activity = self.now;
        trace!(
            self,
            "{} <- p{}:{} qos{} dup={} id {packet_id} conn {} e{epoch}{}",
            self.devices[d].id,
            key.0,
            key.1,
            publish.qos as u8,
            publish.dup,
            conn.0,
            if app { "" } else { " (held id)" }
        );
        self.ledger.receipt(&mut self.report, receipt, self.now);
        let ack = self.rng.chance(self.ack_probability());
        let device = &mut self.devices[d];
        let Some(id) = publish.packet_id else {
            return;
        };
        if ack {
            device.prev_unacked.remove(&key);
            device.unacked.remove(&packet_id);
            let reply = match publish.qos {
                QoS::ExactlyOnce => Packet::PubRec(PubRec::new(id)),
                _ => Packet::PubAck(PubAck::new(id)),
            };
            self.client_send(conn, reply);
        } else {
            device.unacked.insert(packet_id, (key, publish.qos));
        }
    }

    /// Heal phase: a device acknowledges what it left unacknowledged on this connection.
    pub fn device_ack_all(&mut self, d: usize) {
        let Some(conn) = self.devices[d].conn else {
            return;
        };
        let unacked = std::mem::take(&mut self.devices[d].unacked);
        for (packet_id, (key, qos)) in unacked {
            self.devices[d].prev_unacked.remove(&key);
            let Some(id) = pid(packet_id) else { continue };
            let reply = if qos == QoS::ExactlyOnce {
                Packet::PubRec(PubRec::new(id))
            } else {
                Packet::PubAck(PubAck::new(id))
            };
            self.client_send(conn, reply);
        }
    }

    /// Whether a client still has work in flight (heal phase).
    pub fn clients_settled(&self) -> Option<String> {
        for device in &self.devices {
            if !device.online {
                return Some(format!("{} offline", device.id));
            }
            if !device.unacked.is_empty() {
                return Some(format!("{} has unacknowledged messages", device.id));
            }
        }
        for publisher in &self.publishers {
            if !publisher.online {
                return Some(format!("{} offline", publisher.id));
            }
            if !publisher.inflight.is_empty() {
                return Some(format!(
                    "{} waits for {} acknowledgements",
                    publisher.id,
                    publisher.inflight.len()
                ));
            }
        }
        None
    }

    pub fn all_clients(&self) -> BTreeSet<Who> {
        let mut all: BTreeSet<Who> = (0..self.devices.len()).map(Who::Device).collect();
        all.extend((0..self.publishers.len()).map(Who::Publisher));
        all
    }
}

//! Simulated publishers (`client.rs` has the devices and the connections): persistent
//! sessions that publish QoS 1 and QoS 2 to the devices' topics with a per-publisher sequence
//! number in the payload, and re-send what is unacknowledged with DUP = 1 after reconnecting.

use std::collections::BTreeMap;

use berth_codec::{Packet, PubRel, Publish, QoS, TopicName};
use berth_core::ConnId;
use bytes::Bytes;

use crate::client::{MsgKey, pid};
use crate::sim::{Sim, Time};

#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub key: MsgKey,
    pub qos: QoS,
    /// PUBREC received: PUBREL sent, PUBCOMP awaited.
    pub released: bool,
    pub order: u64,
    pub publish: Publish,
    /// The connection it was first sent on, and when (`7-ack-wait`).
    pub first: (ConnId, Time),
}

#[derive(Debug)]
pub(crate) struct Publisher {
    pub id: String,
    pub v5: bool,
    pub conn: Option<ConnId>,
    pub online: bool,
    pub next_seq: u64,
    pub next_pid: u16,
    pub next_order: u64,
    pub inflight: BTreeMap<u16, Outgoing>,
    pub had_session: bool,
}

impl Publisher {
    pub fn new(index: usize) -> Publisher {
        Publisher {
            id: format!("p{index}"),
            v5: index % 2 == 1,
            conn: None,
            online: false,
            next_seq: 1,
            next_pid: 1,
            next_order: 0,
            inflight: BTreeMap::new(),
            had_session: false,
        }
    }

    fn allocate_pid(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            let pid = self.next_pid;
            self.next_pid = if pid == u16::MAX { 1 } else { pid + 1 };
            if !self.inflight.contains_key(&pid) {
                return Some(pid);
            }
        }
        None
    }
}

impl Sim {
    pub(crate) fn publisher_packet(&mut self, p: usize, conn: ConnId, packet: Packet) {
        match packet {
            Packet::ConnAck(ack) => {
                if ack.reason.is_error() {
                    return;
                }
                self.note_started(conn);
                let publisher = &mut self.publishers[p];
                publisher.online = true;
                let lost = !ack.session_present && publisher.had_session;
                publisher.had_session = true;
                if lost {
                    let id = publisher.id.clone();
                    let pending = publisher.inflight.len();
                    self.report.lost_sessions += 1;
                    self.report.violate(
                        "lost-session",
                        format!("{id} reconnected on conn {} and its session was gone (session present = 0; {pending} messages in flight discarded)", conn.0),
                    );
                }
                if !ack.session_present {
                    // MQTT 5 §4.1: a client that gets Session Present 0 discards its session
                    // state (what it had in flight was never acknowledged: no promise).
                    self.publishers[p].inflight.clear();
                }
                // Unacknowledged PUBLISHes again with DUP = 1, PUBRELs again, in order.
                let mut pending: Vec<Outgoing> =
                    self.publishers[p].inflight.values().cloned().collect();
                pending.sort_by_key(|o| o.order);
                for out in pending {
                    if out.released {
                        if let Some(id) = out.publish.packet_id {
                            self.client_send(conn, Packet::PubRel(PubRel::new(id)));
                        }
                    } else {
                        let mut publish = out.publish.clone();
                        publish.dup = true;
                        self.ledger.transmitted(out.key);
                        self.client_send(conn, Packet::Publish(publish));
                    }
                }
            }
            Packet::PubAck(ack) => {
                let id = ack.packet_id.get();
                let publisher = &mut self.publishers[p];
                let is_qos1 = publisher
                    .inflight
                    .get(&id)
                    .is_some_and(|o| o.qos == QoS::AtLeastOnce);
                if is_qos1 && let Some(out) = publisher.inflight.remove(&id) {
                    self.check_ack_wait(p, conn, &out);
                    self.ledger
                        .acked(&mut self.report, out.key, ack.reason as u8, self.now);
                }
            }
            Packet::PubRec(rec) => {
                let id = rec.packet_id.get();
                let publisher = &mut self.publishers[p];
                let Some(out) = publisher.inflight.get_mut(&id) else {
                    return;
                };
                if out.qos != QoS::ExactlyOnce {
                    return;
                }
                let key = out.key;
                if !out.released {
                    let first_ack = out.clone();
                    self.check_ack_wait(p, conn, &first_ack);
                    if rec.reason.is_error() {
                        self.publishers[p].inflight.remove(&id);
                        self.ledger
                            .acked(&mut self.report, key, rec.reason as u8, self.now);
                        return;
                    }
                    if let Some(out) = self.publishers[p].inflight.get_mut(&id) {
                        out.released = true;
                    }
                    self.ledger
                        .acked(&mut self.report, key, rec.reason as u8, self.now);
                }
                self.client_send(conn, Packet::PubRel(PubRel::new(rec.packet_id)));
            }
            Packet::PubComp(comp) => {
                let id = comp.packet_id.get();
                let publisher = &mut self.publishers[p];
                if publisher.inflight.get(&id).is_some_and(|o| o.released) {
                    publisher.inflight.remove(&id);
                }
            }
            _ => {}
        }
    }

    /// Publishes `count` messages to `device` (random devices if `None`).
    pub fn publish(&mut self, p: usize, device: Option<usize>, count: usize) {
        for _ in 0..count {
            let publisher = &self.publishers[p];
            let (Some(conn), true) = (publisher.conn, publisher.online) else {
                return;
            };
            let d = device.unwrap_or_else(|| self.rng.index(self.devices.len()));
            let qos = if self.rng.chance(self.cfg.qos2_share) {
                QoS::ExactlyOnce
            } else {
                QoS::AtLeastOnce
            };
            let publisher = &mut self.publishers[p];
            let Some(packet_id) = publisher.allocate_pid() else {
                return;
            };
            let seq = publisher.next_seq;
            publisher.next_seq += 1;
            let key = (p, seq);
            let Ok(topic) = TopicName::parse(&format!("dev/{}/p{p}", self.devices[d].id)) else {
                return;
            };
            let publish = Publish {
                dup: false,
                qos,
                retain: false,
                topic,
                packet_id: pid(packet_id),
                payload: Bytes::from(format!("p{p}:{seq}")),
                properties: Default::default(),
            };
            let publisher = &mut self.publishers[p];
            let order = publisher.next_order;
            publisher.next_order += 1;
            publisher.inflight.insert(
                packet_id,
                Outgoing {
                    key,
                    qos,
                    released: false,
                    order,
                    publish: publish.clone(),
                    first: (conn, self.now),
                },
            );
            let v5 = publisher.v5;
            let target = &self.devices[d];
            self.ledger.sent(crate::checker::Sent {
                key,
                device: d,
                qos,
                sub_qos: target.sub_qos,
                v5,
                subscribed: target.subscribed_at.is_some(),
                at: self.now,
                tag: self.tag,
            });
            self.last_activity = self.now;
            trace!(
                self,
                "p{p} -> {} p{p}:{seq} qos{} id {packet_id} conn {}",
                self.devices[d].id,
                qos as u8,
                conn.0
            );
            self.client_send(conn, Packet::Publish(publish));
        }
    }
}

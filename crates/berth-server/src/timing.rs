//! What clients wait for, timed on the broker thread: CONNECT → CONNACK and QoS 1/2 PUBLISH →
//! PUBACK/PUBREC, from when the connection read the packet off the socket (so the wait for the
//! broker's channel and for the cluster's claim count) to when the answer is handed back to it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_codec::{ConnectReasonCode, Packet, PacketId};
use berth_core::ConnId;
use berth_core::fast_map::FastMap;

use crate::metrics::{ConnectOutcome, Metrics};

/// A PUBLISH whose acknowledgement has not come after this long is forgotten: its connection
/// closed before it was acknowledged (the client sends it again on its next connection).
const ACK_FORGET: Duration = Duration::from_secs(60);

pub(crate) struct Timing {
    metrics: Arc<Metrics>,
    /// CONNECTs waiting for their CONNACK: when they were read, and whether the cluster took
    /// their session over from another node.
    connects: FastMap<ConnId, (Instant, bool)>,
    /// QoS 1/2 PUBLISHes waiting for their acknowledgement.
    acks: FastMap<(ConnId, PacketId), Instant>,
}

impl Timing {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Timing {
        Timing {
            metrics,
            connects: FastMap::default(),
            acks: FastMap::default(),
        }
    }

    pub(crate) fn connect_read(&mut self, conn: ConnId, read: Instant, taken_over: bool) {
        self.connects.insert(conn, (read, taken_over));
    }

    pub(crate) fn packet_read(&mut self, conn: ConnId, packet: &Packet, read: Instant) {
        if let Packet::Publish(publish) = packet
            && let Some(id) = publish.packet_id
        {
            self.acks.insert((conn, id), read);
        }
    }

    /// `packet` is handed to `conn` now.
    pub(crate) fn sent(&mut self, conn: ConnId, packet: &Packet, now: Instant) {
        match packet {
            Packet::ConnAck(connack) => {
                let Some((read, taken_over)) = self.connects.remove(&conn) else {
                    return;
                };
                let outcome = if connack.reason != ConnectReasonCode::Success {
                    self.metrics.count_connect_refused(connack.reason.code());
                    ConnectOutcome::Refused
                } else if taken_over {
                    ConnectOutcome::TakenOver
                } else if connack.session_present {
                    ConnectOutcome::Resumed
                } else {
                    ConnectOutcome::New
                };
                self.metrics
                    .observe_connect(outcome, now.saturating_duration_since(read));
            }
            Packet::PubAck(ack) => self.acknowledged(conn, ack.packet_id, now),
            Packet::PubRec(rec) => self.acknowledged(conn, rec.packet_id, now),
            _ => {}
        }
    }

    fn acknowledged(&mut self, conn: ConnId, id: PacketId, now: Instant) {
        if let Some(read) = self.acks.remove(&(conn, id)) {
            self.metrics
                .observe_publish_ack(now.saturating_duration_since(read));
        }
    }

    /// `conn` ended: a CONNACK it never got is not a latency.
    pub(crate) fn closed(&mut self, conn: ConnId) {
        self.connects.remove(&conn);
    }

    /// Forgets acknowledgements that will not come (see [`ACK_FORGET`]).
    pub(crate) fn forget_stale(&mut self, now: Instant) {
        self.acks
            .retain(|_, read| now.saturating_duration_since(*read) < ACK_FORGET);
    }
}

//! Packets and bytes in and out. Every packet passes the broker thread, which counts them by
//! type in a plain array ([`PacketCounts`]) and adds the array to the counters when it refreshes
//! the metrics; bytes are counted by the connections, once per read and per write.

use berth_codec::PacketType;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::MetricsError;

/// The `type` label of each packet type, indexed by its number (0 is unused).
const TYPE_LABELS: [&str; 16] = [
    "",
    "connect",
    "connack",
    "publish",
    "puback",
    "pubrec",
    "pubrel",
    "pubcomp",
    "subscribe",
    "suback",
    "unsubscribe",
    "unsuback",
    "pingreq",
    "pingresp",
    "disconnect",
    "auth",
];

/// Packets by type since the last flush, kept by the broker thread.
#[derive(Debug, Default)]
pub(crate) struct PacketCounts {
    received: [u64; 16],
    sent: [u64; 16],
}

impl PacketCounts {
    pub(crate) fn received(&mut self, packet: PacketType) {
        self.received[packet as usize] += 1;
    }

    pub(crate) fn sent(&mut self, packet: PacketType) {
        self.sent[packet as usize] += 1;
    }
}

pub(crate) struct Traffic {
    packets_received: IntCounterVec,
    packets_sent: IntCounterVec,
    pub(crate) bytes_received: IntCounter,
    pub(crate) bytes_sent: IntCounter,
    /// Connections parked after a quiet spell: no task serves them until one of them is woken.
    pub(crate) connections_parked: IntGauge,
}

impl Traffic {
    pub(crate) fn register(registry: &Registry) -> Result<Traffic, MetricsError> {
        let by_type = |name: &'static str, help: &str| -> Result<IntCounterVec, MetricsError> {
            let counter = super::register(
                registry,
                name,
                IntCounterVec::new(Opts::new(name, help), &["type"]),
            )?;
            for label in &TYPE_LABELS[1..] {
                let _ = counter.with_label_values(&[*label]);
            }
            Ok(counter)
        };
        let counter = |name, help| super::counter(registry, name, help);
        Ok(Traffic {
            packets_received: by_type(
                "berth_packets_received_total",
                "MQTT packets received from clients, by type.",
            )?,
            packets_sent: by_type(
                "berth_packets_sent_total",
                "MQTT packets sent to clients, by type.",
            )?,
            bytes_received: counter(
                "berth_bytes_received_total",
                "Bytes of MQTT received from clients (after TLS and WebSocket framing).",
            )?,
            bytes_sent: counter(
                "berth_bytes_sent_total",
                "Bytes of MQTT sent to clients (before TLS and WebSocket framing).",
            )?,
            connections_parked: super::gauge(
                registry,
                "berth_connections_parked",
                "Open connections parked after a quiet spell: held without a task until woken.",
            )?,
        })
    }

    /// Adds `counts` to the counters and starts them again from zero.
    pub(crate) fn flush(&self, counts: &mut PacketCounts) {
        for (index, label) in TYPE_LABELS.iter().enumerate().skip(1) {
            for (counter, count) in [
                (&self.packets_received, &mut counts.received[index]),
                (&self.packets_sent, &mut counts.sent[index]),
            ] {
                if *count > 0 {
                    counter.with_label_values(&[*label]).inc_by(*count);
                    *count = 0;
                }
            }
        }
    }
}

//! The chaos test's publishers: numbered QoS 1 messages `P:SEQ` round robin to the devices'
//! topics through haproxy, a window at a time, at a set rate. A message counts as acknowledged
//! only on PUBACK Success; on a lost connection, no progress, or any other reason code (0x80,
//! 0x10 — recorded for the checker) the publisher reconnects and sends the unacknowledged ones
//! again (recorded as re-sends of the same message, not as new ones).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_codec::{Packet, ProtocolVersion, PubAckReasonCode, Publish, QoS};
use berth_e2e::client::{connect_packet, connect_v5, topic};
use bytes::Bytes;

use super::Shared;
use super::checker::Message;
use super::conn::Conn;

/// A publisher whose oldest unacknowledged message waited this long gives up the connection:
/// longer than the broker's own 10 s owner wait, so that it answers first (0x80 in MQTT 5, a
/// closed connection in 3.1.1).
const PROGRESS_WAIT: Duration = Duration::from_secs(15);
/// Unacknowledged messages per publisher.
const WINDOW: usize = 8;
/// After the stop, how long publishers keep trying to get their last messages acknowledged.
const FINISH_WAIT: Duration = Duration::from_secs(30);

pub fn publisher_version(idx: usize) -> ProtocolVersion {
    if idx < 2 {
        ProtocolVersion::V3_1_1
    } else {
        ProtocolVersion::V5
    }
}

/// One publisher's connection and what is in flight on it.
struct Link {
    conn: Conn,
    /// Packet id → (sequence number, sent at).
    inflight: BTreeMap<u16, (u64, Instant)>,
}

/// Publishes until the run stops, then until everything is acknowledged (or `FINISH_WAIT`).
pub async fn publisher(shared: Arc<Shared>, idx: usize) {
    let version = publisher_version(idx);
    let id = format!("chaos-pub-{idx}");
    let interval = Duration::from_secs_f64(1.0 / shared.rate.max(1) as f64);
    let mut next_due = Instant::now();
    let mut pending: VecDeque<u64> = VecDeque::new();
    let mut link: Option<Link> = None;
    let mut stopped_at: Option<Instant> = None;
    loop {
        if shared.stopped() && stopped_at.is_none() {
            stopped_at = Some(Instant::now());
        }
        let inflight = link.as_ref().map_or(0, |l| l.inflight.len());
        if let Some(at) = stopped_at
            && ((pending.is_empty() && inflight == 0) || at.elapsed() > FINISH_WAIT)
        {
            break;
        }
        let Some(current) = link.as_mut() else {
            let connect = match version {
                ProtocolVersion::V5 => connect_v5(&id, true, None),
                v => connect_packet(v, &id, true),
            };
            match Conn::connect(shared.lb, connect, Duration::from_secs(10)).await {
                Ok((conn, connack)) if !connack.reason.is_error() => {
                    link = Some(Link {
                        conn,
                        inflight: BTreeMap::new(),
                    });
                    shared.records().count("publisher connections");
                }
                _ => {
                    shared.records().count("publisher connect attempts failed");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
            continue;
        };
        let mut broken = false;
        while current.inflight.len() < WINDOW {
            let now = Instant::now();
            let seq = if let Some(seq) = pending.pop_front() {
                seq
            } else if stopped_at.is_none() && now >= next_due {
                // Behind schedule after an outage: go on at the rate, do not burst.
                next_due = (next_due + interval)
                    .max(now.checked_sub(Duration::from_secs(1)).unwrap_or(now));
                let mut records = shared.records();
                let seq = records.messages[idx].len() as u64;
                let device = (seq as usize + idx) % shared.devices;
                records.messages[idx].push(Message {
                    device,
                    attempts: 0,
                    first_sent: None,
                    acked_at: None,
                    ports: Vec::new(),
                });
                seq
            } else {
                break;
            };
            let packet_id = current.conn.next_packet_id();
            let device = {
                let mut records = shared.records();
                let at = records.now();
                let port = current.conn.local_port;
                let m = &mut records.messages[idx][seq as usize];
                m.attempts += 1;
                m.first_sent.get_or_insert(at);
                if m.ports.last() != Some(&port) {
                    m.ports.push(port);
                }
                m.device
            };
            let publish = Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: topic(&format!("chaos/d{device}")),
                packet_id: Some(packet_id),
                payload: Bytes::from(format!("{idx}:{seq}")),
                properties: Default::default(),
            });
            current
                .inflight
                .insert(packet_id.get(), (seq, Instant::now()));
            if current.conn.send(&publish).await.is_err() {
                shared.records().count("publisher connection lost (write)");
                broken = true;
                break;
            }
        }
        if !broken {
            let wait = next_due
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), Duration::from_millis(100));
            match current.conn.recv(wait).await {
                Ok(Some(Packet::PubAck(ack))) => {
                    if let Some((seq, sent)) = current.inflight.remove(&ack.packet_id.get()) {
                        broken = !acknowledged(&shared, idx, seq, sent, ack.reason);
                        if broken {
                            pending.push_back(seq);
                        }
                    }
                }
                Ok(Some(Packet::Disconnect(_))) => {
                    shared.records().count("publisher DISCONNECT from server");
                    broken = true;
                }
                Ok(_) => {
                    let oldest = current.inflight.values().map(|(_, at)| *at).min();
                    if oldest.is_some_and(|at| at.elapsed() > PROGRESS_WAIT) {
                        shared
                            .records()
                            .count("publisher gave up waiting for PUBACK");
                        broken = true;
                    }
                }
                Err(_) => {
                    shared.records().count("publisher connection lost");
                    broken = true;
                }
            }
        }
        if broken {
            // Send every unacknowledged message again, in order, on a new connection.
            if let Some(old) = link.take() {
                pending.extend(old.inflight.values().map(|(seq, _)| *seq));
            }
            let mut again: Vec<u64> = pending.drain(..).collect();
            again.sort_unstable();
            again.dedup();
            pending.extend(again);
        }
    }
}

/// Records a PUBACK; false when it was not Success (the message is to be sent again).
fn acknowledged(
    shared: &Shared,
    idx: usize,
    seq: u64,
    sent: Instant,
    reason: PubAckReasonCode,
) -> bool {
    let mut records = shared.records();
    let at = records.now();
    if reason == PubAckReasonCode::Success {
        records.latencies.push(sent.elapsed());
        records.messages[idx][seq as usize]
            .acked_at
            .get_or_insert(at);
        return true;
    }
    *records.reasons.entry(format!("{reason:?}")).or_default() += 1;
    if reason == PubAckReasonCode::NoMatchingSubscribers {
        let device = records.messages[idx][seq as usize].device;
        records.no_subscribers.push((idx, seq, device, at));
        records.event(format!("PUBACK 0x10 for {idx}:{seq} (device {device})"));
    }
    false
}

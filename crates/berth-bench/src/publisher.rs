//! The publishing loop: one task per connection, no channel, no allocation per message.
//!
//! ```text
//!  ┌─▶ room = batch ∧ window − in flight ∧ rate-due ∧ source left
//!  │   encode `room` messages into one BytesMut (template copy + patch)   ── one write_all
//!  │   QoS 0 unpaced: loop at once
//!  └── otherwise wait for the first of: PUBACKs (read, decode in place, free ids),
//!      the next send the rate allows, the deadline; no PUBACK for `ack_timeout`: error
//! ```
//!
//! QoS 2: each PUBREC is answered with a PUBREL (those of one read in one write), and the id is
//! freed by the PUBCOMP, so the window counts a message until its flow is complete.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use berth_codec::{Packet, PacketId, ProtocolVersion, QoS, TopicName, decode};
use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::time::{sleep, sleep_until, timeout};

use crate::board::Board;
use crate::conn::Conn;
use crate::frame::{Ack, PublishTemplate, append_ack};
use crate::latency::Latency;
use crate::payload::{Clock, Stamp};
use crate::window::InFlight;

/// Where a publisher's messages come from.
pub trait Source {
    fn has_next(&self) -> bool;
    /// Appends the next message, stamped `sent_ns` and carrying `id` (QoS 1).
    fn append(
        &mut self,
        out: &mut BytesMut,
        id: Option<PacketId>,
        sent_ns: u64,
    ) -> anyhow::Result<()>;
    /// Messages appended so far.
    fn sent(&self) -> u64;
    /// Posts the final count of every stream this source fed.
    fn finish(&self, board: &Board);
}

/// One stream on one topic: sequence numbers 0, 1, 2, … up to an optional limit.
#[derive(Debug)]
pub struct StreamSource {
    template: PublishTemplate,
    stream: u32,
    next_seq: u64,
    limit: Option<u64>,
}

impl StreamSource {
    pub fn new(template: PublishTemplate, stream: u32, limit: Option<u64>) -> StreamSource {
        StreamSource {
            template,
            stream,
            next_seq: 0,
            limit,
        }
    }
}

impl Source for StreamSource {
    fn has_next(&self) -> bool {
        self.limit.is_none_or(|limit| self.next_seq < limit)
    }

    fn append(
        &mut self,
        out: &mut BytesMut,
        id: Option<PacketId>,
        sent_ns: u64,
    ) -> anyhow::Result<()> {
        let stamp = Stamp {
            stream: self.stream,
            seq: self.next_seq,
            sent_ns,
        };
        self.template.append(out, id, &stamp);
        self.next_seq += 1;
        Ok(())
    }

    fn sent(&self) -> u64 {
        self.next_seq
    }

    fn finish(&self, board: &Board) {
        board.finish(self.stream, self.next_seq);
    }
}

/// `per_topic` messages to each of several topics in turn, each topic its own stream (the
/// sessions scenario: one topic per persistent session).
#[derive(Debug)]
pub struct TopicsSource {
    topics: Vec<(u32, TopicName)>,
    per_topic: u64,
    qos: QoS,
    payload: usize,
    version: ProtocolVersion,
    index: usize,
    seq: u64,
    template: Option<PublishTemplate>,
    sent: u64,
}

impl TopicsSource {
    pub fn new(
        topics: Vec<(u32, TopicName)>,
        per_topic: u64,
        qos: QoS,
        payload: usize,
        version: ProtocolVersion,
    ) -> TopicsSource {
        TopicsSource {
            topics,
            per_topic,
            qos,
            payload,
            version,
            index: 0,
            seq: 0,
            template: None,
            sent: 0,
        }
    }
}

impl Source for TopicsSource {
    fn has_next(&self) -> bool {
        self.per_topic > 0 && self.index < self.topics.len()
    }

    fn append(
        &mut self,
        out: &mut BytesMut,
        id: Option<PacketId>,
        sent_ns: u64,
    ) -> anyhow::Result<()> {
        let Some((stream, topic)) = self.topics.get(self.index) else {
            bail!("no topic left");
        };
        let template = match &self.template {
            Some(template) => template,
            None => self.template.insert(PublishTemplate::new(
                topic,
                self.qos,
                self.payload,
                self.version,
            )?),
        };
        let stamp = Stamp {
            stream: *stream,
            seq: self.seq,
            sent_ns,
        };
        template.append(out, id, &stamp);
        self.sent += 1;
        self.seq += 1;
        if self.seq == self.per_topic {
            self.seq = 0;
            self.index += 1;
            self.template = None;
        }
        Ok(())
    }

    fn sent(&self) -> u64 {
        self.sent
    }

    fn finish(&self, board: &Board) {
        for (i, (stream, _)) in self.topics.iter().enumerate() {
            let sent = if i < self.index {
                self.per_topic
            } else if i == self.index {
                self.seq
            } else {
                0
            };
            board.finish(*stream, sent);
        }
    }
}

/// How one publisher sends.
#[derive(Debug, Clone)]
pub struct PublisherPlan {
    pub qos: QoS,
    /// QoS 1 and 2 messages awaiting PUBACK (PUBCOMP) at most (also capped by the broker's
    /// Receive Maximum).
    pub window: u32,
    /// Messages encoded into one write at most.
    pub batch: u32,
    /// Common start of all publishers; the rate is counted from it.
    pub start: Instant,
    pub deadline: Option<Instant>,
    /// Messages per second for this publisher; `None`: as fast as the broker takes them.
    pub rate: Option<f64>,
    /// Longest wait for a PUBACK while the window is full or draining, and for the broker to
    /// take a batch.
    pub ack_timeout: Duration,
}

#[derive(Debug)]
pub struct PublisherOutcome {
    pub sent: u64,
    pub acked: u64,
    /// PUBACKs (PUBRECs) with an error reason code (MQTT 5).
    pub refused: u64,
    /// PUBACKs, PUBRECs or PUBCOMPs for identifiers not in flight.
    pub unexpected_acks: u64,
    /// Messages whose PUBACK never came (after an error).
    pub unacked: u64,
    /// When the last message was written.
    pub sending_ended: Instant,
    /// When the last PUBACK (PUBCOMP) arrived (QoS 1 and 2) or the last message was written
    /// (QoS 0).
    pub ended: Instant,
    /// Send to PUBACK (QoS 2: to PUBCOMP).
    pub ack_latency: Latency,
    pub error: Option<String>,
}

/// Publishes everything `source` has (or until the deadline), then waits for the last PUBACKs and
/// posts the final counts to `board`. Errors end the loop and are reported in the outcome.
pub async fn run<S: Source>(
    conn: &mut Conn,
    mut source: S,
    plan: &PublisherPlan,
    clock: Clock,
    board: Arc<Board>,
) -> PublisherOutcome {
    let mut state = Loop {
        inflight: InFlight::new(),
        releases: BytesMut::new(),
        outcome: PublisherOutcome {
            sent: 0,
            acked: 0,
            refused: 0,
            unexpected_acks: 0,
            unacked: 0,
            sending_ended: plan.start,
            ended: plan.start,
            ack_latency: Latency::new(),
            error: None,
        },
    };
    let result = state.drive(conn, &mut source, plan, clock).await;
    source.finish(&board);
    let mut outcome = state.outcome;
    outcome.sent = source.sent();
    outcome.unacked = u64::from(state.inflight.len());
    if let Err(error) = result {
        outcome.error = Some(format!("{error:#}"));
    }
    outcome
}

struct Loop {
    inflight: InFlight,
    /// PUBRELs answering the PUBRECs of one read (QoS 2), written together.
    releases: BytesMut,
    outcome: PublisherOutcome,
}

impl Loop {
    async fn drive<S: Source>(
        &mut self,
        conn: &mut Conn,
        source: &mut S,
        plan: &PublisherPlan,
        clock: Clock,
    ) -> anyhow::Result<()> {
        // QoS 1 and 2 messages hold a packet id until their flow completes.
        let acknowledged = plan.qos != QoS::AtMostOnce;
        let window = plan.window.min(u32::from(conn.receive_maximum)).max(1);
        let batch = plan.batch.max(1);
        let mut out = BytesMut::with_capacity(64 * 1024);
        let mut sending = true;
        conn.rbuf.reserve(16 * 1024);
        loop {
            let now = Instant::now();
            if sending && (!source.has_next() || plan.deadline.is_some_and(|d| now >= d)) {
                sending = false;
                self.outcome.sending_ended = now;
            }
            if sending {
                let mut room = u64::from(batch);
                if acknowledged {
                    room = room.min(u64::from(window.saturating_sub(self.inflight.len())));
                }
                if let Some(rate) = plan.rate {
                    let due = (rate * now.duration_since(plan.start).as_secs_f64()) as u64 + 1;
                    room = room.min(due.saturating_sub(source.sent()));
                }
                if room > 0 {
                    let now_ns = clock.ns(now);
                    for _ in 0..room {
                        if !source.has_next() {
                            break;
                        }
                        let id = if acknowledged {
                            match self.inflight.open(now_ns) {
                                Some(id) => Some(id),
                                None => break,
                            }
                        } else {
                            None
                        };
                        source.append(&mut out, id, now_ns)?;
                    }
                    // A broker that takes no bytes for this long has stalled.
                    timeout(plan.ack_timeout, conn.stream.write_all_flushed(&out))
                        .await
                        .map_err(|_| anyhow!("the broker took no data for {:?}", plan.ack_timeout))?
                        .context("write")?;
                    out.clear();
                    self.outcome.sending_ended = Instant::now();
                }
                let window_open = !acknowledged || self.inflight.len() < window;
                if window_open && plan.rate.is_none() {
                    continue;
                }
            }
            if !sending && self.inflight.is_empty() {
                self.outcome.ended = if acknowledged {
                    self.outcome.ended.max(self.outcome.sending_ended)
                } else {
                    self.outcome.sending_ended
                };
                return Ok(());
            }
            // Wake for the next send the rate allows (or the deadline) unless the window is full.
            let wake = match (sending, plan.rate) {
                (true, Some(rate)) if !acknowledged || self.inflight.len() < window => {
                    let next = plan.start + Duration::from_secs_f64(source.sent() as f64 / rate);
                    Some(plan.deadline.map_or(next, |d| next.min(d)))
                }
                _ => None,
            };
            tokio::select! {
                biased;
                read = conn.stream.read_buf(&mut conn.rbuf) => {
                    if read.context("read")? == 0 {
                        bail!("the broker closed the connection");
                    }
                    self.take_acks(conn, clock)?;
                    self.send_releases(conn, plan.ack_timeout).await?;
                }
                () = sleep_until(wake.unwrap_or(now).into()), if wake.is_some() => {}
                () = sleep(plan.ack_timeout), if wake.is_none() => {
                    bail!("no PUBACK within {:?} ({} in flight)", plan.ack_timeout, self.inflight.len());
                }
            }
        }
    }

    fn take_acks(&mut self, conn: &mut Conn, clock: Clock) -> anyhow::Result<()> {
        let now_ns = clock.now_ns();
        while let Some(packet) =
            decode(&mut conn.rbuf, &conn.opts).context("decoding from the broker")?
        {
            match packet {
                Packet::PubAck(ack) => {
                    self.complete(ack.packet_id, ack.reason.is_error(), now_ns);
                }
                // A PUBREC with an error code ends the QoS 2 exchange (MQTT 5): no PUBREL follows.
                Packet::PubRec(rec) if rec.reason.is_error() => {
                    self.complete(rec.packet_id, true, now_ns);
                }
                Packet::PubRec(rec) => {
                    if self.inflight.contains(rec.packet_id) {
                        append_ack(&mut self.releases, Ack::Pubrel, rec.packet_id, conn.version);
                    } else {
                        self.outcome.unexpected_acks += 1;
                    }
                }
                Packet::PubComp(comp) => {
                    self.complete(comp.packet_id, comp.reason.is_error(), now_ns);
                }
                Packet::PingResp => {}
                Packet::Disconnect(d) => bail!("the broker disconnected: {:?}", d.reason),
                other => bail!("unexpected {} from the broker", other.packet_type()),
            }
        }
        self.outcome.ended = Instant::now();
        if conn.rbuf.capacity() - conn.rbuf.len() < 4096 {
            conn.rbuf.reserve(16 * 1024);
        }
        Ok(())
    }

    /// Writes the PUBRELs that `take_acks` prepared.
    async fn send_releases(&mut self, conn: &mut Conn, limit: Duration) -> anyhow::Result<()> {
        if self.releases.is_empty() {
            return Ok(());
        }
        timeout(limit, conn.stream.write_all_flushed(&self.releases))
            .await
            .map_err(|_| anyhow!("the broker took no PUBREL for {limit:?}"))?
            .context("write PUBRELs")?;
        self.releases.clear();
        Ok(())
    }

    /// The last acknowledgement of a message's flow (PUBACK, PUBCOMP, or a refusing PUBREC):
    /// its id is free again.
    fn complete(&mut self, id: PacketId, refused: bool, now_ns: u64) {
        match self.inflight.close(id) {
            Some(sent_ns) => {
                self.outcome.acked += 1;
                if refused {
                    self.outcome.refused += 1;
                }
                self.outcome
                    .ack_latency
                    .record_ns(now_ns.saturating_sub(sent_ns));
            }
            None => self.outcome.unexpected_acks += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(text: &str) -> TopicName {
        TopicName::parse(text).unwrap()
    }

    #[test]
    fn stream_source_counts_up_to_its_limit() {
        let template =
            PublishTemplate::new(&topic("t"), QoS::AtMostOnce, 64, ProtocolVersion::V3_1_1)
                .unwrap();
        let mut source = StreamSource::new(template, 4, Some(2));
        let mut out = BytesMut::new();
        assert!(source.has_next());
        source.append(&mut out, None, 1).unwrap();
        source.append(&mut out, None, 2).unwrap();
        assert!(!source.has_next());
        let board = Board::new(5);
        source.finish(&board);
        assert_eq!(board.sent(4), Some(2));
    }

    #[test]
    fn topics_source_walks_topics_and_posts_partial_counts() {
        let topics = vec![(0, topic("s/0")), (1, topic("s/1")), (2, topic("s/2"))];
        let mut source = TopicsSource::new(topics, 2, QoS::AtLeastOnce, 32, ProtocolVersion::V5);
        let mut out = BytesMut::new();
        for _ in 0..3 {
            source.append(&mut out, PacketId::new(9), 0).unwrap();
        }
        assert_eq!(source.sent(), 3);
        let board = Board::new(3);
        source.finish(&board);
        assert_eq!(
            (board.sent(0), board.sent(1), board.sent(2)),
            (Some(2), Some(1), Some(0))
        );
        for _ in 0..3 {
            source.append(&mut out, PacketId::new(9), 0).unwrap();
        }
        assert!(!source.has_next());
        assert!(source.append(&mut out, PacketId::new(9), 0).is_err());
    }
}

//! The receiving loop: large reads, packets decoded in place from the read buffer, every message
//! accounted in the ledger and the latency histogram, the acknowledgements of a whole read (QoS 1
//! PUBACK; QoS 2 PUBREC, and PUBCOMP for each PUBREL) sent in one write.
//!
//! It ends when every expected stream has posted its final count to the board and all of those
//! messages arrived, or when nothing arrived for `drain_timeout` after that (messages lost).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use berth_codec::{Packet, QoS, decode};
use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::time::timeout;

use crate::board::Board;
use crate::conn::{Conn, HOT_READ_BUF};
use crate::frame::{Ack, append_ack};
use crate::latency::Latency;
use crate::ledger::Ledger;
use crate::payload::{Clock, Stamp};

/// How often an idle subscriber checks whether it is done.
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct SubscriberPlan {
    /// How long to wait for missing messages once all publishers are done.
    pub drain_timeout: Duration,
    /// Latency is recorded for messages sent at or after this clock time (warm-up excluded).
    pub latency_from_ns: u64,
    /// Longest run at all, a bound for broken brokers.
    pub give_up: Duration,
    /// Longest wait for the broker to take our PUBACKs.
    pub io_timeout: Duration,
}

#[derive(Debug)]
pub struct SubscriberOutcome {
    pub ledger: Ledger,
    pub latency: Latency,
    /// Every PUBLISH received, duplicates included.
    pub received: u64,
    pub first_at: Option<Instant>,
    pub last_at: Option<Instant>,
    /// All expected messages arrived.
    pub complete: bool,
    pub error: Option<String>,
}

pub async fn run(
    conn: &mut Conn,
    ledger: Ledger,
    plan: &SubscriberPlan,
    clock: Clock,
    board: Arc<Board>,
) -> SubscriberOutcome {
    let mut state = Receiver {
        outcome: SubscriberOutcome {
            ledger,
            latency: Latency::new(),
            received: 0,
            first_at: None,
            last_at: None,
            complete: false,
            error: None,
        },
        acks: BytesMut::with_capacity(16 * 1024),
        latency_from_ns: plan.latency_from_ns,
        io_timeout: plan.io_timeout,
    };
    if let Err(error) = state.drive(conn, plan, clock, &board).await {
        state.outcome.error = Some(format!("{error:#}"));
    }
    state.outcome
}

struct Receiver {
    outcome: SubscriberOutcome,
    acks: BytesMut,
    latency_from_ns: u64,
    io_timeout: Duration,
}

impl Receiver {
    async fn drive(
        &mut self,
        conn: &mut Conn,
        plan: &SubscriberPlan,
        clock: Clock,
        board: &Board,
    ) -> anyhow::Result<()> {
        conn.make_hot();
        let began = Instant::now();
        let mut all_sent_at: Option<Instant> = None;
        // Bytes that arrived with the CONNACK or SUBACK are processed first.
        self.take(conn, clock).await?;
        loop {
            if let Some(expected) = board.expected(self.outcome.ledger.streams()) {
                if self.outcome.ledger.unique() >= expected {
                    self.outcome.complete = true;
                    return Ok(());
                }
                let since = *all_sent_at.get_or_insert_with(Instant::now);
                let idle_from = self.outcome.last_at.map_or(since, |last| last.max(since));
                if idle_from.elapsed() >= plan.drain_timeout {
                    return Ok(());
                }
            }
            if began.elapsed() >= plan.give_up {
                bail!("still receiving after {:?}", plan.give_up);
            }
            if conn.rbuf.capacity() - conn.rbuf.len() < HOT_READ_BUF / 4 {
                conn.rbuf.reserve(HOT_READ_BUF);
            }
            match timeout(POLL, conn.stream.read_buf(&mut conn.rbuf)).await {
                Err(_idle) => continue,
                Ok(read) => {
                    if read.context("read")? == 0 {
                        bail!("the broker closed the connection");
                    }
                    self.take(conn, clock).await?;
                }
            }
        }
    }

    /// Decodes every complete packet in the read buffer, then acknowledges the QoS 1 and 2 ones
    /// in one write.
    async fn take(&mut self, conn: &mut Conn, clock: Clock) -> anyhow::Result<()> {
        let now = Instant::now();
        let now_ns = clock.ns(now);
        let mut any = false;
        while let Some(packet) =
            decode(&mut conn.rbuf, &conn.opts).context("decoding from the broker")?
        {
            match packet {
                Packet::Publish(publish) => {
                    any = true;
                    self.outcome.received += 1;
                    match Stamp::read(&publish.payload) {
                        Some(stamp) => {
                            self.outcome.ledger.record(stamp.stream, stamp.seq);
                            if stamp.sent_ns >= self.latency_from_ns {
                                self.outcome
                                    .latency
                                    .record_ns(now_ns.saturating_sub(stamp.sent_ns));
                            }
                        }
                        None => self.outcome.ledger.record_foreign(),
                    }
                    if let Some(id) = publish.packet_id {
                        // QoS 2: PUBREC now, PUBCOMP when the broker's PUBREL comes. The
                        // message is counted on arrival, so a second delivery shows as a duplicate.
                        let ack = if publish.qos == QoS::ExactlyOnce {
                            Ack::Pubrec
                        } else {
                            Ack::Puback
                        };
                        append_ack(&mut self.acks, ack, id, conn.version);
                    }
                }
                Packet::PubRel(rel) => {
                    append_ack(&mut self.acks, Ack::Pubcomp, rel.packet_id, conn.version);
                }
                Packet::PingResp => {}
                Packet::Disconnect(d) => bail!("the broker disconnected: {:?}", d.reason),
                other => bail!("unexpected {} from the broker", other.packet_type()),
            }
        }
        if any {
            self.outcome.first_at.get_or_insert(now);
            self.outcome.last_at = Some(now);
        }
        if !self.acks.is_empty() {
            timeout(self.io_timeout, conn.stream.write_all_flushed(&self.acks))
                .await
                .map_err(|_| anyhow!("the broker took no PUBACK for {:?}", self.io_timeout))?
                .context("write PUBACKs")?;
            self.acks.clear();
        }
        Ok(())
    }
}

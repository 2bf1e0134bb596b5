//! reconnect-storm: N persistent sessions, each offline with M queued QoS 1 messages, all
//! reconnecting at once, as clients do when a broker or a network comes back.
//!
//! ```text
//!  N × (CONNECT Clean Session 0, SUBSCRIBE <prefix>/s/<i> QoS 1, DISCONNECT)   (as sessions)
//!  P publishers: M messages to each <prefix>/s/<i> (stream i, seq 0..M)         (as sessions)
//!  t0 ─ N tasks; each CONNECTs (Clean Session 0) when one of C slots is free ─┐
//!       CONNACK (Session Present must be 1) frees the slot                    │ the storm
//!       the session drains its M messages, one PUBACK write per read          │
//!  last CONNACK ─▶ connack_all_s;  last backlog complete ─▶ delivered_all_s  ─┘
//!  then every session DISCONNECTs
//! ```
//!
//! The slots bound CONNECTs awaiting their CONNACK, not connections: every session stays
//! connected until all are done, as returning clients would, so the broker serves the whole
//! storm at once rather than sessions that come and go.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use berth_codec::{Packet, QoS, decode};
use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::sessions::{FillPlan, create_sessions, fill_queues, session_id};
use super::{connect_spec, seconds};
use crate::board::Board;
use crate::cli::Settings;
use crate::conn::{Conn, SessionKind};
use crate::frame::{Ack, append_ack};
use crate::latency::Latency;
use crate::ledger::{Ledger, Tally};
use crate::payload::{Clock, Stamp};
use crate::report::{Report, StreamTally, micros, thousands};
use crate::sys::{self, CpuSnapshot};

/// Per-stream tallies kept in the JSON: those of sessions that lost or duplicated, at most this
/// many (20,000 clean tallies would make a 2 MB result line).
const STREAMS_SHOWN: usize = 100;

/// Room made in a session's read buffer before each read: a backlog of 10 messages of 64 bytes
/// is about 900 bytes, and 20,000 sessions each holding a traffic-sized buffer would be gigabytes.
const READ_RESERVE: usize = 2048;

#[derive(Debug, Clone, Copy)]
pub struct StormPlan {
    pub sessions: u32,
    pub per_session: u32,
    /// Sessions created at once, before the storm.
    pub concurrency: u32,
    /// CONNECTs awaiting their CONNACK at once during the storm.
    pub storm_concurrency: u32,
    /// Publishers that fill the queues.
    pub publishers: u32,
}

/// One session's return.
#[derive(Debug)]
struct Resumed {
    session: u32,
    /// Held open until every session is done.
    conn: Option<Conn>,
    connack_at: Option<Instant>,
    /// TCP connect → CONNACK, the wait for a slot left out.
    connect_ns: u64,
    session_present: bool,
    ledger: Ledger,
    /// When the last message of its backlog arrived.
    last_at: Option<Instant>,
    error: Option<String>,
}

pub async fn scenario(s: &Settings, plan: StormPlan) -> anyhow::Result<Report> {
    if s.qos != QoS::AtLeastOnce {
        bail!("reconnect-storm measures QoS 1 backlogs");
    }
    let fd_limit = sys::raise_open_files_limit();
    if u64::from(plan.sessions) + 64 > fd_limit {
        bail!(
            "{} sessions connected at once need more open files than this process may have ({fd_limit}); raise `ulimit -n`",
            plan.sessions
        );
    }
    let created = create_sessions(s, plan.sessions, plan.concurrency).await?;
    let mut errors = created.errors;
    let clock = Clock::new();
    let board = Arc::new(Board::new(plan.sessions as usize));
    let fill_plan = FillPlan {
        sessions: plan.sessions,
        per_session: plan.per_session,
        publishers: plan.publishers,
    };
    let fill = fill_queues(s, fill_plan, clock, &board).await?;
    errors.extend(fill.errors);

    // The storm: every session at once, C CONNECTs in flight at most.
    let before = CpuSnapshot::take(s.broker_pid);
    let start = Instant::now();
    let storm_began = unix_seconds();
    let slots = Arc::new(Semaphore::new(plan.storm_concurrency as usize));
    let shared = Arc::new(s.clone());
    let mut tasks = JoinSet::new();
    for i in 0..plan.sessions {
        let (s, slots, board) = (Arc::clone(&shared), Arc::clone(&slots), Arc::clone(&board));
        tasks.spawn(async move { resume(&s, i, &slots, &board).await });
    }
    let mut resumed = Vec::with_capacity(plan.sessions as usize);
    while let Some(joined) = tasks.join_next().await {
        resumed.push(joined.context("reconnect task")?);
    }
    let cpu = before.report(&CpuSnapshot::take(s.broker_pid));
    // For a profile of the storm alone (`perf record -k CLOCK_REALTIME`, then `perf report
    // --time FROM,TO`): the set-up before it takes longer than the storm itself.
    eprintln!(
        "reconnect-storm: the storm ran from {storm_began:.6} to {:.6} (Unix seconds)",
        unix_seconds()
    );

    let mut goodbyes = JoinSet::new();
    for conn in resumed.iter_mut().filter_map(|r| r.conn.take()) {
        goodbyes.spawn(conn.disconnect(s.timeout));
    }
    while goodbyes.join_next().await.is_some() {}

    resumed.sort_by_key(|r| r.session);
    errors.extend(storm_errors(&resumed));
    let mut connect = Latency::new();
    let mut delivery = Tally::default();
    let mut streams = Vec::new();
    for r in &resumed {
        if r.connack_at.is_some() {
            connect.record_ns(r.connect_ns);
        }
        for (stream, tally) in r.ledger.tallies(|st| board.sent(st).unwrap_or(0)) {
            delivery.add(&tally);
            if (tally.lost > 0 || tally.duplicates > 0) && streams.len() < STREAMS_SHOWN {
                streams.push(StreamTally {
                    subscriber: r.session,
                    stream,
                    tally,
                });
            }
        }
    }

    let connected = resumed.iter().filter(|r| r.connack_at.is_some()).count();
    let not_present = resumed
        .iter()
        .filter(|r| r.connack_at.is_some() && !r.session_present)
        .count();
    let connack_all_s = resumed
        .iter()
        .filter_map(|r| r.connack_at)
        .max()
        .map_or(0.0, |at| seconds(start, at));
    // A session that received nothing counts from its CONNACK: its loss shows in `lost`.
    let delivered_all_s = resumed
        .iter()
        .filter_map(|r| r.last_at.or(r.connack_at))
        .max()
        .map_or(0.0, |at| seconds(start, at));
    let rate = |count: f64, secs: f64| if secs > 0.0 { count / secs } else { 0.0 };
    let reconnect_rate = rate(connected as f64, connack_all_s);
    let drain_rate = rate(delivery.unique as f64, delivered_all_s);
    let c = connect.summary();

    let mut r = Report {
        scenario: "reconnect-storm".to_owned(),
        case: s
            .case
            .clone()
            .unwrap_or_else(|| "reconnect-storm".to_owned()),
        broker: s.label.clone(),
        params: format!(
            "{} persistent sessions × {} queued QoS 1 msgs, all reconnecting ({} CONNECTs in flight), MQTT {}, {} B",
            plan.sessions,
            plan.per_session,
            plan.storm_concurrency,
            s.version_name(),
            s.payload
        ),
        delivery: Some(delivery),
        streams,
        cpu,
        errors,
        ..Report::default()
    };
    r.metric("sessions", f64::from(plan.sessions));
    r.metric("per_session", f64::from(plan.per_session));
    r.metric("create_per_s", created.rate);
    r.metric("fill_msg_s", fill.rate);
    r.metric("connected", connected as f64);
    r.metric("not_present", not_present as f64);
    r.metric("connack_all_s", connack_all_s);
    r.metric("delivered_all_s", delivered_all_s);
    r.metric("reconnect_per_s", reconnect_rate);
    r.metric("drain_msg_s", drain_rate);
    r.metric("connect_p50_us", c.p50_us);
    r.metric("connect_p99_us", c.p99_us);
    r.metric("connect_max_us", c.max_us);
    r.metric("lost", delivery.lost as f64);
    r.metric("dup", delivery.duplicates as f64);
    r.metric("reordered", delivery.reordered as f64);
    r.summary = format!(
        "{connected} of {} sessions back: every CONNACK after {connack_all_s:.2} s ({} reconnects/s; CONNACK p50 {} p99 {}), every backlog delivered after {delivered_all_s:.2} s ({} msg/s); before the storm, sessions created at {}/s and queues filled at {} msg/s",
        plan.sessions,
        thousands(reconnect_rate),
        micros(c.p50_us),
        micros(c.p99_us),
        thousands(drain_rate),
        thousands(created.rate),
        thousands(fill.rate),
    );
    Ok(r)
}

/// One session: wait for a slot, CONNECT (Clean Session 0), free the slot at the CONNACK, then
/// drain the backlog. Failures are kept in the outcome, not raised, so one session's error does
/// not hide the others' figures.
async fn resume(s: &Settings, session: u32, slots: &Semaphore, board: &Board) -> Resumed {
    let mut r = Resumed {
        session,
        conn: None,
        connack_at: None,
        connect_ns: 0,
        session_present: false,
        ledger: Ledger::new(vec![session]),
        last_at: None,
        error: None,
    };
    if let Err(error) = reconnect_and_drain(s, slots, board, &mut r).await {
        r.error = Some(format!("{error:#}"));
    }
    r
}

async fn reconnect_and_drain(
    s: &Settings,
    slots: &Semaphore,
    board: &Board,
    r: &mut Resumed,
) -> anyhow::Result<()> {
    let spec = connect_spec(
        s,
        session_id(s, r.session),
        SessionKind::Persistent { fresh: false },
    );
    let conn = {
        let _slot = slots.acquire().await.context("the storm's slots closed")?;
        let t0 = Instant::now();
        let conn = Conn::connect(s.sub_addr, &spec, s.timeout).await?;
        let now = Instant::now();
        r.connect_ns = u64::try_from(now.duration_since(t0).as_nanos()).unwrap_or(u64::MAX);
        r.connack_at = Some(now);
        conn
    };
    r.session_present = conn.session_present;
    let conn = r.conn.insert(conn);
    // The queues were filled before the storm, so every stream's count is final.
    let expected = board.sent(r.session).unwrap_or(0);
    let drain = Drain {
        expected,
        idle: s.drain_timeout,
        io_timeout: s.timeout,
    };
    drain.run(conn, &mut r.ledger, &mut r.last_at).await
}

/// Receiving a session's backlog. A lighter loop than `subscriber::run`, which is built for one
/// connection carrying traffic (a 256 KiB read buffer, a 50 ms poll): 20,000 of those would
/// take gigabytes and wake 400,000 times a second.
#[derive(Debug, Clone, Copy)]
struct Drain {
    /// Messages the session's stream sent.
    expected: u64,
    /// Once nothing arrives for this long, the rest is counted lost.
    idle: Duration,
    /// Longest wait for the broker to take our PUBACKs.
    io_timeout: Duration,
}

impl Drain {
    async fn run(
        self,
        conn: &mut Conn,
        ledger: &mut Ledger,
        last_at: &mut Option<Instant>,
    ) -> anyhow::Result<()> {
        let mut acks = BytesMut::new();
        loop {
            // Bytes that came with the CONNACK are taken first.
            let mut arrived = false;
            while let Some(packet) =
                decode(&mut conn.rbuf, &conn.opts).context("decoding from the broker")?
            {
                match packet {
                    Packet::Publish(publish) => {
                        arrived = true;
                        match Stamp::read(&publish.payload) {
                            Some(stamp) => {
                                ledger.record(stamp.stream, stamp.seq);
                            }
                            None => ledger.record_foreign(),
                        }
                        if let Some(id) = publish.packet_id {
                            append_ack(&mut acks, Ack::Puback, id, conn.version);
                        }
                    }
                    Packet::PingResp => {}
                    Packet::Disconnect(d) => bail!("the broker disconnected: {:?}", d.reason),
                    other => bail!("unexpected {} from the broker", other.packet_type()),
                }
            }
            if arrived {
                *last_at = Some(Instant::now());
            }
            if !acks.is_empty() {
                timeout(self.io_timeout, conn.stream.write_all_flushed(&acks))
                    .await
                    .map_err(|_| anyhow!("the broker took no PUBACK for {:?}", self.io_timeout))?
                    .context("write PUBACKs")?;
                acks.clear();
            }
            if ledger.unique() >= self.expected {
                return Ok(());
            }
            if conn.rbuf.capacity() - conn.rbuf.len() < READ_RESERVE / 2 {
                conn.rbuf.reserve(READ_RESERVE);
            }
            match timeout(self.idle, conn.stream.read_buf(&mut conn.rbuf)).await {
                Err(_idle) => return Ok(()),
                Ok(read) => {
                    if read.context("read")? == 0 {
                        bail!("the broker closed the connection");
                    }
                }
            }
        }
    }
}

/// The storm's failures, counted: sessions that could not reconnect, CONNACKs without the
/// session, sessions that failed while draining, messages from elsewhere.
fn storm_errors(resumed: &[Resumed]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut count = |what: &str, failed: Vec<&Resumed>| {
        if let Some(first) = failed.first() {
            let detail = match &first.error {
                Some(e) => format!("; first, session {}: {e}", first.session),
                None => String::new(),
            };
            errors.push(format!(
                "{} of {} sessions {what}{detail}",
                failed.len(),
                resumed.len()
            ));
        }
    };
    count(
        "could not reconnect",
        resumed
            .iter()
            .filter(|r| r.connack_at.is_none() && r.error.is_some())
            .collect(),
    );
    count(
        "came back without their session (CONNACK Session Present = 0)",
        resumed
            .iter()
            .filter(|r| r.connack_at.is_some() && !r.session_present)
            .collect(),
    );
    count(
        "failed while draining",
        resumed
            .iter()
            .filter(|r| r.connack_at.is_some() && r.error.is_some())
            .collect(),
    );
    let foreign: u64 = resumed.iter().map(|r| r.ledger.foreign()).sum();
    if foreign > 0 {
        errors.push(format!("{foreign} messages not from this session's stream"));
    }
    errors
}

/// Now, in seconds since the Unix epoch (perf's realtime clock).
fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resumed(session: u32, connected: bool, present: bool, error: Option<&str>) -> Resumed {
        Resumed {
            session,
            conn: None,
            connack_at: connected.then(Instant::now),
            connect_ns: 0,
            session_present: present,
            ledger: Ledger::new(vec![session]),
            last_at: None,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn storm_errors_count_each_kind_with_its_first_detail() {
        let all = vec![
            resumed(0, true, true, None),
            resumed(1, false, false, Some("no CONNACK within 10s")),
            resumed(2, false, false, Some("TCP connect")),
            resumed(3, true, false, None),
            resumed(4, true, true, Some("the broker closed the connection")),
        ];
        let errors = storm_errors(&all);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_eq!(
            errors[0],
            "2 of 5 sessions could not reconnect; first, session 1: no CONNACK within 10s"
        );
        assert_eq!(
            errors[1],
            "1 of 5 sessions came back without their session (CONNACK Session Present = 0)"
        );
        assert!(
            errors[2].starts_with("1 of 5 sessions failed while draining; first, session 4"),
            "{errors:?}"
        );
        assert!(storm_errors(&[resumed(0, true, true, None)]).is_empty());
    }
}

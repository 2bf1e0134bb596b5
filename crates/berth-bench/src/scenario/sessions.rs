//! sessions: N offline persistent sessions, each subscribed to its own topic with M queued QoS 1
//! messages. The broker's RSS is read before, with the empty sessions, and with the queues full;
//! with `--metrics-url`, so is the memory its databases hold for themselves (RocksDB's
//! memtables and caches, bounded by configuration), and the RSS per session is also given
//! without it.
//!
//! ```text
//!  baseline RSS
//!  N × (CONNECT Clean Session 0, SUBSCRIBE <prefix>/s/<i> QoS 1, DISCONNECT)   → RSS, sessions/s
//!  P publishers: M messages to each <prefix>/s/<i> (stream i, seq 0..M)         → RSS, msg/s
//!  a sample of sessions reconnects and must receive exactly its M messages
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_codec::QoS;
use tokio::task::JoinSet;

use super::{connect_spec, prefix, seconds, topic};
use crate::board::Board;
use crate::cli::Settings;
use crate::conn::{Conn, SessionKind};
use crate::ledger::{Ledger, Tally};
use crate::payload::Clock;
use crate::publisher::{self, PublisherPlan, TopicsSource};
use crate::report::{Report, StreamTally, thousands};
use crate::subscriber::{self, SubscriberPlan};
use crate::sys::{self, CpuSnapshot};

#[derive(Debug, Clone, Copy)]
pub struct SessionsPlan {
    pub sessions: u32,
    pub per_session: u32,
    pub concurrency: u32,
    pub publishers: u32,
    pub settle: Duration,
    pub verify: u32,
}

pub async fn scenario(s: &Settings, plan: SessionsPlan) -> anyhow::Result<Report> {
    let rss = |settle| async move {
        match s.broker_pid {
            Some(pid) => sys::settled_rss(pid, settle).await.map(Some),
            None => Ok(None),
        }
    };
    // What the broker's databases hold for themselves (memtables, caches), read with each RSS.
    // A failed reading costs the run only the figures without it (the first failure is noted).
    let mut unread: Option<String> = None;
    let stores = async |unread: &mut Option<String>| match &s.metrics_url {
        Some(url) => match crate::scrape::store_memory(url).await {
            Ok(bytes) => Some(bytes),
            Err(error) => {
                unread.get_or_insert_with(|| format!("{error:#}"));
                None
            }
        },
        None => None,
    };
    super::warm_up(s, true).await?;
    let rss_before = rss(plan.settle).await?;
    let stores_before = stores(&mut unread).await;
    let before = CpuSnapshot::take(s.broker_pid);

    let created = create_sessions(s, plan.sessions, plan.concurrency).await?;
    let mut errors = created.errors;
    let rss_sessions = rss(plan.settle).await?;
    let stores_sessions = stores(&mut unread).await;

    let clock = Clock::new();
    let board = Arc::new(Board::new(plan.sessions as usize));
    let fill = fill_queues(s, plan.fill(), clock, &board).await?;
    errors.extend(fill.errors);
    let (create_rate, fill_rate) = (created.rate, fill.rate);
    let rss_queued = rss(plan.settle).await?;
    let stores_queued = stores(&mut unread).await;
    let cpu = before.report(&CpuSnapshot::take(s.broker_pid));

    // Check a sample: every message there exactly once.
    let (verified, delivery, streams) = verify(s, &plan, &board, clock, &mut errors).await;

    let mut r = Report {
        scenario: "sessions".to_owned(),
        case: s.case.clone().unwrap_or_else(|| "sessions".to_owned()),
        broker: s.label.clone(),
        params: format!(
            "{} offline sessions × {} queued QoS 1 msgs, MQTT {}, {} B",
            plan.sessions,
            plan.per_session,
            s.version_name(),
            s.payload
        ),
        delivery: Some(delivery),
        streams,
        cpu,
        errors,
        ..Report::default()
    };
    let n = f64::from(plan.sessions);
    r.metric("sessions", n);
    r.metric("create_per_s", create_rate);
    r.metric("fill_msg_s", fill_rate);
    r.metric("verified_sessions", verified as f64);
    r.metric("lost", delivery.lost as f64);
    r.metric("dup", delivery.duplicates as f64);
    let mut summary = format!(
        "created {} sessions/s, queued {} msg/s",
        thousands(create_rate),
        thousands(fill_rate)
    );
    if let (Some(b), Some(e), Some(q)) = (rss_before, rss_sessions, rss_queued) {
        let per_session = q.saturating_sub(b) as f64 / n;
        let per_empty = e.saturating_sub(b) as f64 / n;
        let messages = n * f64::from(plan.per_session);
        let per_message = q.saturating_sub(e) as f64 / messages.max(1.0);
        r.metric("rss_before_b", b as f64);
        r.metric("rss_sessions_b", e as f64);
        r.metric("rss_queued_b", q as f64);
        r.metric("rss_per_session_b", per_session);
        r.metric("rss_per_empty_session_b", per_empty);
        r.metric("rss_per_queued_msg_b", per_message);
        summary.push_str(&format!(
            "; broker RSS {} → {} → {} KiB: {} B per session with its queue ({} B empty, {} B per queued message)",
            thousands(b as f64 / 1024.0),
            thousands(e as f64 / 1024.0),
            thousands(q as f64 / 1024.0),
            thousands(per_session),
            thousands(per_empty),
            thousands(per_message)
        ));
        if let (Some(sb), Some(se), Some(sq)) = (stores_before, stores_sessions, stores_queued) {
            let per_session = per_session_beyond((b, q), (sb, sq), n);
            let per_empty = per_session_beyond((b, e), (sb, se), n);
            r.metric("store_memory_before_b", sb as f64);
            r.metric("store_memory_sessions_b", se as f64);
            r.metric("store_memory_queued_b", sq as f64);
            r.metric("rss_per_session_beyond_stores_b", per_session);
            r.metric("rss_per_empty_session_beyond_stores_b", per_empty);
            summary.push_str(&format!(
                "; the databases' own memory (memtables, caches) {} → {} → {} KiB: {} B per session beyond it ({} B empty)",
                thousands(sb as f64 / 1024.0),
                thousands(se as f64 / 1024.0),
                thousands(sq as f64 / 1024.0),
                thousands(per_session),
                thousands(per_empty)
            ));
        }
        if let Some(error) = &unread {
            summary.push_str(&format!("; the databases' own memory not read: {error}"));
        }
    } else {
        summary.push_str("; broker RSS not measured (no --broker-pid)");
    }
    summary.push_str(&format!("; {verified} sampled sessions checked"));
    r.summary = summary;
    Ok(r)
}

/// RSS per session beyond the databases' own memory: the growth of the broker's RSS from
/// `rss.0` to `rss.1` less the databases' growth over the same span (negative when a memtable
/// was flushed meanwhile), divided by the `sessions` created.
fn per_session_beyond(rss: (u64, u64), stores: (u64, u64), sessions: f64) -> f64 {
    let grown = rss.1 as f64 - rss.0 as f64;
    let stores_grown = stores.1 as f64 - stores.0 as f64;
    (grown - stores_grown) / sessions
}

/// What creating the sessions did.
#[derive(Debug)]
pub(super) struct Created {
    /// Sessions per second.
    pub rate: f64,
    /// How many failed and the first failure, if any did.
    pub errors: Vec<String>,
}

/// Creates persistent sessions `0..sessions`, session i subscribed at QoS 1 to its own topic
/// (`session_topic`), `concurrency` at a time. Shared with reconnect-storm.
pub(super) async fn create_sessions(
    s: &Settings,
    sessions: u32,
    concurrency: u32,
) -> anyhow::Result<Created> {
    let p = prefix(s);
    let started = Instant::now();
    let workers = concurrency.clamp(1, sessions.max(1));
    let mut tasks = JoinSet::new();
    for w in 0..workers {
        let (s, p) = (s.clone(), p.clone());
        tasks.spawn(async move {
            let mut failures = (0u64, None::<String>);
            for i in (w..sessions).step_by(workers as usize) {
                if let Err(e) = create_session(&s, &p, i).await {
                    failures.0 += 1;
                    failures
                        .1
                        .get_or_insert_with(|| format!("session {i}: {e:#}"));
                }
            }
            failures
        });
    }
    let mut errors = Vec::new();
    let mut failed = 0;
    while let Some(joined) = tasks.join_next().await {
        let (n, first) = joined?;
        failed += n;
        errors.extend(first);
    }
    if failed > 0 {
        errors.insert(
            0,
            format!("{failed} of {sessions} sessions could not be created"),
        );
    }
    Ok(Created {
        rate: f64::from(sessions) / seconds(started, Instant::now()),
        errors,
    })
}

async fn create_session(s: &Settings, p: &str, i: u32) -> anyhow::Result<()> {
    let kind = SessionKind::Persistent { fresh: true };
    super::subscribe_and_leave(s, session_id(s, i), kind, &session_topic(p, i)).await
}

/// The client id of session i.
pub(super) fn session_id(s: &Settings, i: u32) -> String {
    format!("bb{}-s{i}", s.run_id)
}

/// The topic session i subscribes to; messages to it are stream i.
fn session_topic(prefix: &str, i: u32) -> String {
    format!("{prefix}/s/{i}")
}

/// How the session queues are filled.
#[derive(Debug, Clone, Copy)]
pub(super) struct FillPlan {
    pub sessions: u32,
    pub per_session: u32,
    pub publishers: u32,
}

impl SessionsPlan {
    fn fill(&self) -> FillPlan {
        FillPlan {
            sessions: self.sessions,
            per_session: self.per_session,
            publishers: self.publishers,
        }
    }
}

/// What filling the queues did.
#[derive(Debug)]
pub(super) struct Fill {
    /// Acknowledged messages per second.
    pub rate: f64,
    pub errors: Vec<String>,
}

/// Publishes `per_session` QoS 1 messages to the topic of every session (stream i to session
/// i), from `publishers` connections each taking every publishers-th session, and posts the
/// counts to `board`. Shared with reconnect-storm.
pub(super) async fn fill_queues(
    s: &Settings,
    plan: FillPlan,
    clock: Clock,
    board: &Arc<Board>,
) -> anyhow::Result<Fill> {
    let p = prefix(s);
    let start = Instant::now();
    let publishers = plan.publishers.max(1);
    let pub_plan = PublisherPlan {
        qos: QoS::AtLeastOnce,
        window: s.window,
        batch: s.batch,
        start,
        deadline: None,
        rate: s.rate.map(|r| r / f64::from(publishers)),
        ack_timeout: s.timeout,
    };
    let mut pubs = JoinSet::new();
    for k in 0..publishers.min(plan.sessions) {
        let topics = (k..plan.sessions)
            .step_by(publishers as usize)
            .map(|i| Ok((i, topic(&session_topic(&p, i))?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let source = TopicsSource::new(
            topics,
            u64::from(plan.per_session),
            QoS::AtLeastOnce,
            s.payload,
            s.version,
        );
        let spec = connect_spec(s, format!("bb{}-fill{k}", s.run_id), SessionKind::Clean);
        let (s, pub_plan, board) = (s.clone(), pub_plan.clone(), board.clone());
        pubs.spawn(async move {
            let mut conn = Conn::connect(s.addr, &spec, s.timeout).await?;
            let outcome = publisher::run(&mut conn, source, &pub_plan, clock, board).await;
            let _ = conn.disconnect(s.timeout).await;
            anyhow::Ok(outcome)
        });
    }
    let (mut acked, mut last_ack) = (0u64, start);
    let mut errors = Vec::new();
    while let Some(joined) = pubs.join_next().await {
        match joined? {
            Ok(outcome) => {
                acked += outcome.acked;
                last_ack = last_ack.max(outcome.ended);
                errors.extend(outcome.error.map(|e| format!("filling queues: {e}")));
            }
            Err(e) => errors.push(format!("filling queues: {e:#}")),
        }
    }
    Ok(Fill {
        rate: acked as f64 / seconds(start, last_ack),
        errors,
    })
}

/// Reconnects `plan.verify` sessions spread over the range and drains them.
async fn verify(
    s: &Settings,
    plan: &SessionsPlan,
    board: &Arc<Board>,
    clock: Clock,
    errors: &mut Vec<String>,
) -> (u32, Tally, Vec<StreamTally>) {
    let count = plan.verify.min(plan.sessions);
    let mut tasks = JoinSet::new();
    for k in 0..count {
        let i = (u64::from(k) * u64::from(plan.sessions) / u64::from(count.max(1))) as u32;
        let (s, board) = (s.clone(), board.clone());
        tasks.spawn(async move {
            let spec = connect_spec(
                &s,
                session_id(&s, i),
                SessionKind::Persistent { fresh: false },
            );
            let mut conn = Conn::connect(s.addr, &spec, s.timeout).await?;
            let present = conn.session_present;
            let sub_plan = SubscriberPlan {
                drain_timeout: s.drain_timeout,
                latency_from_ns: u64::MAX,
                give_up: Duration::from_secs(600),
                io_timeout: s.timeout,
            };
            let outcome =
                subscriber::run(&mut conn, Ledger::new(vec![i]), &sub_plan, clock, board).await;
            let _ = conn.disconnect(s.timeout).await;
            anyhow::Ok((i, present, outcome))
        });
    }
    let (mut verified, mut sum, mut streams) = (0, Tally::default(), Vec::new());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok((i, present, outcome))) => {
                verified += 1;
                if !present {
                    errors.push(format!("session {i}: CONNACK said no session present"));
                }
                if let Some(e) = outcome.error {
                    errors.push(format!("session {i}: {e}"));
                }
                for (stream, tally) in outcome
                    .ledger
                    .tallies(|stream| board.sent(stream).unwrap_or(0))
                {
                    sum.add(&tally);
                    streams.push(StreamTally {
                        subscriber: i,
                        stream,
                        tally,
                    });
                }
            }
            Ok(Err(e)) => errors.push(format!("verifying: {e:#}")),
            Err(e) => errors.push(format!("verifying: {e}")),
        }
    }
    (verified, sum, streams)
}

#[cfg(test)]
mod tests {
    use super::per_session_beyond;

    #[test]
    fn the_databases_growth_is_left_out_and_their_shrinking_added_back() {
        // RSS +3 MB, the databases +1 MB: 2 MB for 1,000 sessions.
        let grew = per_session_beyond((10_000_000, 13_000_000), (5_000_000, 6_000_000), 1000.0);
        assert_eq!(grew, 2000.0);
        // A memtable flushed between the readings (the databases −2 MB): the RSS kept that
        // memory, so the sessions are charged with it, as the figure says.
        let shrank = per_session_beyond((10_000_000, 11_000_000), (6_000_000, 4_000_000), 1000.0);
        assert_eq!(shrank, 3000.0);
    }
}

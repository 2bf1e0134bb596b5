//! Publishers and subscribers wired by a topology: fan-in, fan-out, pairs and latency, and the
//! phases of offline-queue.
//!
//! ```text
//!  connect + SUBSCRIBE every subscriber ─▶ connect every publisher ─▶ start (CPU snapshot)
//!  ─▶ one task per connection: publisher::run / subscriber::run, sharing only the Board
//!  ─▶ join ─▶ CPU snapshot ─▶ DISCONNECT all ─▶ figures
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_codec::{QoS, TopicFilter, TopicName};
use tokio::task::JoinSet;

use super::{connect_spec, describe, filter, prefix, seconds, topic};
use crate::board::Board;
use crate::cli::Settings;
use crate::conn::{Conn, SessionKind};
use crate::frame::PublishTemplate;
use crate::latency::Latency;
use crate::ledger::{Ledger, Tally};
use crate::payload::Clock;
use crate::publisher::{self, PublisherOutcome, PublisherPlan, StreamSource};
use crate::report::{Report, StreamTally, micros, thousands};
use crate::subscriber::{self, SubscriberOutcome, SubscriberPlan};
use crate::sys::{CpuReport, CpuSnapshot};

#[derive(Debug, Clone)]
pub struct PublisherSpec {
    pub topic: TopicName,
    pub stream: u32,
    /// Messages to send at most.
    pub limit: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct SubscriberSpec {
    pub filters: Vec<TopicFilter>,
    /// Streams whose every message must arrive here.
    pub streams: Vec<u32>,
    /// Clean, or persistent so that the broker keeps (and may store durably) what it delivers.
    pub session: SessionKind,
}

#[derive(Debug, Clone, Default)]
pub struct Topology {
    pub publishers: Vec<PublisherSpec>,
    pub subscribers: Vec<SubscriberSpec>,
}

/// Run-wide pacing and accounting choices.
#[derive(Debug, Clone)]
pub struct Pace {
    pub deadline_after: Option<Duration>,
    /// Over all publishers together.
    pub total_rate: Option<f64>,
    /// Latency is not recorded for messages sent this early.
    pub warmup: Duration,
    /// Client id infix, so that phases of one run do not collide.
    pub phase: &'static str,
}

/// What a topology run measured.
#[derive(Debug)]
pub struct Traffic {
    pub start: Instant,
    pub publishers: Vec<PublisherOutcome>,
    pub subscribers: Vec<SubscriberOutcome>,
    pub board: Arc<Board>,
    pub cpu: CpuReport,
}

impl Traffic {
    pub fn sent(&self) -> u64 {
        self.publishers.iter().map(|p| p.sent).sum()
    }

    pub fn acked(&self) -> u64 {
        self.publishers.iter().map(|p| p.acked).sum()
    }

    /// Messages per second the publishers got out: written (QoS 0) or acknowledged (QoS 1).
    pub fn publish_rate(&self, qos: QoS) -> f64 {
        let (count, end) = match qos {
            QoS::AtMostOnce => (
                self.sent(),
                self.publishers.iter().map(|p| p.sending_ended).max(),
            ),
            _ => (self.acked(), self.publishers.iter().map(|p| p.ended).max()),
        };
        end.map_or(0.0, |end| count as f64 / seconds(self.start, end))
    }

    /// Distinct messages received per second, from the start to the last arrival.
    pub fn receive_rate(&self) -> f64 {
        let unique: u64 = self.subscribers.iter().map(|s| s.ledger.unique()).sum();
        self.subscribers
            .iter()
            .filter_map(|s| s.last_at)
            .max()
            .map_or(0.0, |end| unique as f64 / seconds(self.start, end))
    }

    pub fn latency(&self) -> Latency {
        let mut all = Latency::new();
        for s in &self.subscribers {
            all.merge(&s.latency);
        }
        all
    }

    pub fn ack_latency(&self) -> Latency {
        let mut all = Latency::new();
        for p in &self.publishers {
            all.merge(&p.ack_latency);
        }
        all
    }

    pub fn tallies(&self) -> (Tally, Vec<StreamTally>) {
        let mut sum = Tally::default();
        let mut streams = Vec::new();
        for (i, s) in self.subscribers.iter().enumerate() {
            for (stream, tally) in s
                .ledger
                .tallies(|stream| self.board.sent(stream).unwrap_or(0))
            {
                sum.add(&tally);
                streams.push(StreamTally {
                    subscriber: i as u32,
                    stream,
                    tally,
                });
            }
        }
        (sum, streams)
    }

    pub fn errors(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for (i, p) in self.publishers.iter().enumerate() {
            if let Some(e) = &p.error {
                errors.push(format!("publisher {i}: {e}"));
            }
            if p.unexpected_acks > 0 {
                errors.push(format!(
                    "publisher {i}: {} PUBACKs for ids not in flight",
                    p.unexpected_acks
                ));
            }
            if p.refused > 0 {
                errors.push(format!(
                    "publisher {i}: {} PUBACKs with an error reason code",
                    p.refused
                ));
            }
        }
        for (i, s) in self.subscribers.iter().enumerate() {
            if let Some(e) = &s.error {
                errors.push(format!("subscriber {i}: {e}"));
            }
            if s.ledger.foreign() > 0 {
                errors.push(format!(
                    "subscriber {i}: {} messages not from this run's streams",
                    s.ledger.foreign()
                ));
            }
        }
        errors
    }
}

/// Connects a subscriber and subscribes it at the run's QoS.
pub async fn subscriber_conn(
    s: &Settings,
    id: String,
    session: SessionKind,
    filters: &[TopicFilter],
) -> anyhow::Result<Conn> {
    let mut conn =
        Conn::connect(s.sub_addr, &connect_spec(s, id.clone(), session), s.timeout).await?;
    conn.subscribe(filters, s.qos, s.timeout)
        .await
        .with_context(|| format!("{id}: SUBSCRIBE"))?;
    Ok(conn)
}

/// Connects everything in `topology`, runs it to completion, and disconnects.
pub async fn run(s: &Settings, topology: &Topology, pace: &Pace) -> anyhow::Result<Traffic> {
    let clock = Clock::new();
    let streams = topology
        .publishers
        .iter()
        .map(|p| p.stream as usize + 1)
        .max()
        .unwrap_or(0);
    let board = Arc::new(Board::new(streams));

    let mut sub_conns = JoinSet::new();
    for (i, spec) in topology.subscribers.iter().enumerate() {
        let (s, filters, session) = (s.clone(), spec.filters.clone(), spec.session);
        let id = format!("bb{}-{}s{i}", s.run_id, pace.phase);
        sub_conns.spawn(async move { (i, subscriber_conn(&s, id, session, &filters).await) });
    }
    let mut subscribers = collect_indexed(sub_conns, topology.subscribers.len()).await?;
    let mut pub_conns = JoinSet::new();
    for i in 0..topology.publishers.len() {
        let spec = connect_spec(
            s,
            format!("bb{}-{}p{i}", s.run_id, pace.phase),
            SessionKind::Clean,
        );
        let (addr, limit) = (s.addr, s.timeout);
        pub_conns.spawn(async move { (i, Conn::connect(addr, &spec, limit).await) });
    }
    let publishers = collect_indexed(pub_conns, topology.publishers.len()).await?;

    let before = CpuSnapshot::take(s.broker_pid);
    let start = Instant::now();
    let per_publisher_rate = pace
        .total_rate
        .map(|r| r / topology.publishers.len().max(1) as f64);
    let plan = PublisherPlan {
        qos: s.qos,
        window: s.window,
        batch: s.batch,
        start,
        deadline: pace.deadline_after.map(|d| start + d),
        rate: per_publisher_rate,
        ack_timeout: s.timeout,
    };
    let sub_plan = SubscriberPlan {
        drain_timeout: s.drain_timeout,
        latency_from_ns: clock.ns(start + pace.warmup),
        give_up: pace.deadline_after.unwrap_or(Duration::from_secs(3600))
            + Duration::from_secs(3600),
        io_timeout: s.timeout,
    };

    let mut sub_tasks = JoinSet::new();
    for (i, (mut conn, spec)) in subscribers.drain(..).zip(&topology.subscribers).enumerate() {
        let (ledger, plan, board) = (
            Ledger::new(spec.streams.clone()),
            sub_plan.clone(),
            board.clone(),
        );
        sub_tasks.spawn(async move {
            let outcome = subscriber::run(&mut conn, ledger, &plan, clock, board).await;
            (i, (conn, outcome))
        });
    }
    let mut pub_tasks = JoinSet::new();
    for (i, (mut conn, spec)) in publishers.into_iter().zip(&topology.publishers).enumerate() {
        let template = PublishTemplate::new(&spec.topic, s.qos, s.payload, s.version)?;
        let source = StreamSource::new(template, spec.stream, spec.limit);
        let (plan, board) = (plan.clone(), board.clone());
        pub_tasks.spawn(async move {
            let outcome = publisher::run(&mut conn, source, &plan, clock, board).await;
            (i, (conn, outcome))
        });
    }
    let publishers = join_indexed(pub_tasks, topology.publishers.len()).await?;
    let subscribers = join_indexed(sub_tasks, topology.subscribers.len()).await?;
    let cpu = before.report(&CpuSnapshot::take(s.broker_pid));

    let mut goodbyes = JoinSet::new();
    let mut pub_outcomes = Vec::new();
    let mut sub_outcomes = Vec::new();
    for (conn, outcome) in publishers {
        goodbyes.spawn(conn.disconnect(s.timeout));
        pub_outcomes.push(outcome);
    }
    for (conn, outcome) in subscribers {
        goodbyes.spawn(conn.disconnect(s.timeout));
        sub_outcomes.push(outcome);
    }
    while goodbyes.join_next().await.is_some() {}

    Ok(Traffic {
        start,
        publishers: pub_outcomes,
        subscribers: sub_outcomes,
        board,
        cpu,
    })
}

/// Results of tasks that each return `(index, Result<T>)`, in index order; the first error fails.
async fn collect_indexed<T: 'static>(
    mut set: JoinSet<(usize, anyhow::Result<T>)>,
    n: usize,
) -> anyhow::Result<Vec<T>> {
    let mut slots: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, result) = joined.context("connection task")?;
        slots[i] = Some(result?);
    }
    slots
        .into_iter()
        .map(|slot| slot.context("connection task vanished"))
        .collect()
}

async fn join_indexed<T: 'static>(
    mut set: JoinSet<(usize, T)>,
    n: usize,
) -> anyhow::Result<Vec<T>> {
    let mut slots: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, value) = joined.context("task")?;
        slots[i] = Some(value);
    }
    slots
        .into_iter()
        .map(|slot| slot.context("task vanished"))
        .collect()
}

/// The four traffic scenarios.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// `persistent`: the subscriber's session is persistent (persistent fan-in).
    FanIn {
        publishers: u32,
        persistent: bool,
    },
    FanOut {
        subscribers: u32,
    },
    Pairs {
        pairs: u32,
    },
    Latency {
        publishers: u32,
        warmup: Duration,
    },
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::FanIn {
                persistent: true, ..
            } => "persistent-fan-in",
            Shape::FanIn { .. } => "fan-in",
            Shape::FanOut { .. } => "fan-out",
            Shape::Pairs { .. } => "pairs",
            Shape::Latency { .. } => "latency",
        }
    }

    fn subscriber_session(self) -> SessionKind {
        match self {
            // A new session (no leftovers of an earlier run), kept when the subscriber leaves.
            Shape::FanIn {
                persistent: true, ..
            } => SessionKind::Persistent { fresh: true },
            _ => SessionKind::Clean,
        }
    }

    fn topology(self, s: &Settings) -> anyhow::Result<Topology> {
        let p = prefix(s);
        let limit = s.messages;
        let session = self.subscriber_session();
        let mut t = Topology::default();
        match self {
            Shape::FanIn { publishers, .. } | Shape::Latency { publishers, .. } => {
                for i in 0..publishers {
                    t.publishers.push(PublisherSpec {
                        topic: topic(&format!("{p}/in/{i}"))?,
                        stream: i,
                        limit,
                    });
                }
                t.subscribers.push(SubscriberSpec {
                    filters: vec![filter(&format!("{p}/in/+"))?],
                    streams: (0..publishers).collect(),
                    session,
                });
            }
            Shape::FanOut { subscribers } => {
                t.publishers.push(PublisherSpec {
                    topic: topic(&format!("{p}/out"))?,
                    stream: 0,
                    limit,
                });
                for _ in 0..subscribers {
                    t.subscribers.push(SubscriberSpec {
                        filters: vec![filter(&format!("{p}/out"))?],
                        streams: vec![0],
                        session,
                    });
                }
            }
            Shape::Pairs { pairs } => {
                for i in 0..pairs {
                    t.publishers.push(PublisherSpec {
                        topic: topic(&format!("{p}/pair/{i}"))?,
                        stream: i,
                        limit,
                    });
                    t.subscribers.push(SubscriberSpec {
                        filters: vec![filter(&format!("{p}/pair/{i}"))?],
                        streams: vec![i],
                        session,
                    });
                }
            }
        }
        Ok(t)
    }

    fn words(self) -> String {
        match self {
            Shape::FanIn {
                publishers,
                persistent: true,
            } => format!("{publishers} → 1 (persistent subscriber)"),
            Shape::FanIn { publishers, .. } => format!("{publishers} → 1"),
            Shape::FanOut { subscribers } => format!("1 → {subscribers}"),
            Shape::Pairs { pairs } => format!("{pairs} pairs"),
            Shape::Latency { publishers, .. } => format!("{publishers} → 1"),
        }
    }
}

/// Runs a traffic scenario and reports it.
pub async fn scenario(s: &Settings, shape: Shape) -> anyhow::Result<Report> {
    let topology = shape.topology(s)?;
    let (total_rate, warmup) = match shape {
        Shape::Latency { warmup, .. } => (Some(s.rate.unwrap_or(20_000.0)), warmup),
        _ => (s.rate, Duration::ZERO),
    };
    let pace = Pace {
        deadline_after: s.duration_or_default(),
        total_rate,
        warmup,
        phase: "",
    };
    let traffic = run(s, &topology, &pace).await?;
    let mut settings = s.clone();
    settings.rate = total_rate;
    Ok(traffic_report(
        &settings,
        shape.name(),
        &shape.words(),
        &traffic,
    ))
}

/// The report of a traffic run.
pub fn traffic_report(s: &Settings, scenario: &str, shape: &str, traffic: &Traffic) -> Report {
    let (delivery, streams) = traffic.tallies();
    let latency = traffic.latency().summary();
    let ack = traffic.ack_latency().summary();
    let mut r = Report {
        scenario: scenario.to_owned(),
        case: s
            .case
            .clone()
            .unwrap_or_else(|| format!("{scenario}-qos{}", s.qos_number())),
        broker: s.label.clone(),
        params: describe(s, shape),
        delivery: Some(delivery),
        latency: Some(latency),
        streams,
        cpu: traffic.cpu,
        errors: traffic.errors(),
        ..Report::default()
    };
    let recv = traffic.receive_rate();
    let publish = traffic.publish_rate(s.qos);
    r.metric("recv_msg_s", recv);
    r.metric("pub_msg_s", publish);
    r.metric("sent", traffic.sent() as f64);
    r.metric("acked", traffic.acked() as f64);
    r.metric(
        "received",
        traffic.subscribers.iter().map(|s| s.received).sum::<u64>() as f64,
    );
    r.metric("lost", delivery.lost as f64);
    r.metric("dup", delivery.duplicates as f64);
    r.metric("reordered", delivery.reordered as f64);
    r.metric("p50_us", latency.p50_us);
    r.metric("p99_us", latency.p99_us);
    r.metric("p999_us", latency.p999_us);
    r.metric("max_us", latency.max_us);
    if s.qos != QoS::AtMostOnce {
        r.metric("ack_p50_us", ack.p50_us);
        r.metric("ack_p99_us", ack.p99_us);
    }
    r.summary = format!(
        "{} msg/s received ({} msg/s published); latency p50 {} p99 {} max {}",
        thousands(recv),
        thousands(publish),
        micros(latency.p50_us),
        micros(latency.p99_us),
        micros(latency.max_us),
    );
    r
}

//! takeover: one persistent session moving between two nodes of a cluster, round after round.
//!
//! ```text
//!  round r: K QoS 1 messages published through node A (the session's current owner, offline)
//!           t0 ─ CONNECT (Clean Session 0) at node B ─ CONNACK (Session Present = 1)  → takeover
//!              ─ the K messages arrive, each acknowledged                          → drain
//!           next round from B back to A
//! ```
//! Against one broker (`--sub-port` = `--port`) it measures a plain resume.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_codec::{Packet, PubAck, QoS};

use super::traffic::{self, Pace, PublisherSpec, Topology};
use super::{connect_spec, filter, prefix, topic};
use crate::cli::Settings;
use crate::conn::{Conn, SessionKind};
use crate::latency::Latency;
use crate::report::{Report, micros};

pub async fn scenario(s: &Settings, rounds: u32, queued: u64) -> anyhow::Result<Report> {
    if s.qos != QoS::AtLeastOnce {
        bail!("takeover measures QoS 1 backlogs");
    }
    let p = prefix(s);
    let client_id = format!("bb{}-mover", s.run_id);
    let topic_name = format!("{p}/tk");
    let filters = [filter(&topic_name)?];
    let nodes = [s.addr, s.sub_addr];

    let first = traffic::subscriber_conn(
        &Settings {
            sub_addr: nodes[0],
            ..s.clone()
        },
        client_id.clone(),
        SessionKind::Persistent { fresh: true },
        &filters,
    )
    .await
    .context("creating the persistent session")?;
    first.disconnect(s.timeout).await?;

    let mut takeover = Latency::new();
    let mut drain = Latency::new();
    let mut errors = Vec::new();
    let mut received_total = 0u64;
    for round in 0..rounds {
        let from = nodes[round as usize % 2];
        let to = nodes[(round as usize + 1) % 2];
        if queued > 0 {
            let topology = Topology {
                publishers: vec![PublisherSpec {
                    topic: topic(&topic_name)?,
                    stream: 0,
                    limit: Some(queued),
                }],
                subscribers: Vec::new(),
            };
            let publisher = Settings {
                addr: from,
                messages: Some(queued),
                duration: None,
                ..s.clone()
            };
            let pace = Pace {
                deadline_after: None,
                total_rate: s.rate,
                warmup: Duration::ZERO,
                phase: "tk",
            };
            let run = traffic::run(&publisher, &topology, &pace)
                .await
                .with_context(|| format!("round {round}: publishing the backlog"))?;
            errors.extend(run.errors());
        }
        let started = Instant::now();
        let mut conn = Conn::connect(
            to,
            &connect_spec(
                s,
                client_id.clone(),
                SessionKind::Persistent { fresh: false },
            ),
            s.timeout,
        )
        .await
        .with_context(|| format!("round {round}: CONNECT at {to}"))?;
        takeover.record_ns(started.elapsed().as_nanos() as u64);
        if !conn.session_present {
            errors.push(format!("round {round}: CONNACK said no session present"));
        }
        let mut received = 0u64;
        while received < queued {
            let packet = tokio::time::timeout(s.timeout, conn.recv_unbounded())
                .await
                .with_context(|| {
                    format!("round {round}: {received} of {queued} messages arrived")
                })??;
            if let Packet::Publish(publish) = packet {
                received += 1;
                if let Some(id) = publish.packet_id {
                    conn.send(&Packet::PubAck(PubAck::new(id))).await?;
                }
            }
        }
        received_total += received;
        drain.record_ns(started.elapsed().as_nanos() as u64);
        conn.disconnect(s.timeout).await?;
    }
    let t = takeover.summary();
    let d = drain.summary();
    let mut r = Report {
        scenario: "takeover".to_owned(),
        case: s
            .case
            .clone()
            .unwrap_or_else(|| format!("takeover-{queued}")),
        broker: s.label.clone(),
        params: format!(
            "{rounds} rounds between {} and {}, {queued} queued QoS 1 msgs each, MQTT {}, {} B",
            s.addr,
            s.sub_addr,
            s.version_name(),
            s.payload
        ),
        errors,
        latency: Some(t),
        ..Report::default()
    };
    r.metric("rounds", f64::from(rounds));
    r.metric("queued", queued as f64);
    r.metric("takeover_p50_us", t.p50_us);
    r.metric("takeover_p99_us", t.p99_us);
    r.metric("takeover_max_us", t.max_us);
    r.metric("drain_p50_us", d.p50_us);
    r.metric("drain_p99_us", d.p99_us);
    r.metric("received", received_total as f64);
    r.summary = format!(
        "CONNECT→CONNACK p50 {} p99 {} max {}; backlog of {queued} drained in p50 {} p99 {}",
        micros(t.p50_us),
        micros(t.p99_us),
        micros(t.max_us),
        micros(d.p50_us),
        micros(d.p99_us),
    );
    Ok(r)
}

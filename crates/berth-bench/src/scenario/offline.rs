//! offline-queue: what a persistent session costs the publishers while its subscriber is away,
//! and how fast it drains when the subscriber comes back.
//!
//! ```text
//!  A. reference: P publishers ─K QoS 1─▶ online clean subscriber          → online publish rate
//!  B. persistent subscriber: CONNECT (Clean Session 0) + SUBSCRIBE QoS 1 + DISCONNECT
//!     P publishers ─K QoS 1─▶ broker (queues for the offline session)     → offline publish rate
//!  C. the subscriber reconnects (Clean Session 0) and receives all K      → drain rate, lost, dup
//! ```

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use berth_codec::QoS;

use super::traffic::{self, Pace, PublisherSpec, SubscriberSpec, Topology};
use super::{connect_spec, filter, prefix, seconds, topic};
use crate::cli::Settings;
use crate::conn::{Conn, SessionKind};
use crate::ledger::{Ledger, Tally};
use crate::payload::Clock;
use crate::report::{Report, StreamTally, thousands};
use crate::subscriber::{self, SubscriberPlan};
use crate::sys::CpuSnapshot;

pub async fn scenario(s: &Settings, publishers: u32) -> anyhow::Result<Report> {
    if s.qos != QoS::AtLeastOnce {
        bail!("offline-queue measures QoS 1 (QoS 0 messages are not queued for offline sessions)");
    }
    let total = s.messages.unwrap_or(100_000);
    let p = prefix(s);
    let limits = split(total, publishers);
    let before = CpuSnapshot::take(s.broker_pid);
    let pace = |phase| Pace {
        deadline_after: s.duration,
        total_rate: s.rate,
        warmup: std::time::Duration::ZERO,
        phase,
    };

    // A. The same publishers to an online clean subscriber.
    let mut online = Topology::default();
    for (i, &limit) in limits.iter().enumerate() {
        online.publishers.push(PublisherSpec {
            topic: topic(&format!("{p}/on/{i}"))?,
            stream: i as u32,
            limit: Some(limit),
        });
    }
    online.subscribers.push(SubscriberSpec {
        filters: vec![filter(&format!("{p}/on/+"))?],
        streams: (0..publishers).collect(),
        session: SessionKind::Clean,
    });
    let online_run = traffic::run(s, &online, &pace("on"))
        .await
        .context("online reference phase")?;
    let online_rate = online_run.publish_rate(QoS::AtLeastOnce);

    // B. Publish into the offline session.
    let client_id = format!("bb{}-queue", s.run_id);
    let filters = [filter(&format!("{p}/off/+"))?];
    let sub = traffic::subscriber_conn(
        s,
        client_id.clone(),
        SessionKind::Persistent { fresh: true },
        &filters,
    )
    .await
    .context("creating the persistent session")?;
    sub.disconnect(s.timeout).await?;
    let mut offline = Topology::default();
    for (i, &limit) in limits.iter().enumerate() {
        offline.publishers.push(PublisherSpec {
            topic: topic(&format!("{p}/off/{i}"))?,
            stream: i as u32,
            limit: Some(limit),
        });
    }
    let offline_run = traffic::run(s, &offline, &pace("off"))
        .await
        .context("offline publish phase")?;
    let offline_rate = offline_run.publish_rate(QoS::AtLeastOnce);

    // C. Reconnect and drain.
    let clock = Clock::new();
    let drain_start = Instant::now();
    let mut conn = Conn::connect(
        s.sub_addr,
        &connect_spec(s, client_id, SessionKind::Persistent { fresh: false }),
        s.timeout,
    )
    .await
    .context("reconnecting the persistent session")?;
    let session_present = conn.session_present;
    let plan = SubscriberPlan {
        drain_timeout: s.drain_timeout,
        latency_from_ns: u64::MAX,
        give_up: std::time::Duration::from_secs(3600),
        io_timeout: s.timeout,
    };
    let ledger = Ledger::new((0..publishers).collect());
    let drained = subscriber::run(
        &mut conn,
        ledger,
        &plan,
        clock,
        Arc::clone(&offline_run.board),
    )
    .await;
    let _ = conn.disconnect(s.timeout).await;
    let cpu = before.report(&CpuSnapshot::take(s.broker_pid));

    let drain_s = drained
        .last_at
        .map_or(0.0, |last| seconds(drain_start, last));
    let unique = drained.ledger.unique();
    let drain_rate = if drain_s > 0.0 {
        unique as f64 / drain_s
    } else {
        0.0
    };
    let mut delivery = Tally::default();
    let mut streams = Vec::new();
    for (stream, tally) in drained
        .ledger
        .tallies(|stream| offline_run.board.sent(stream).unwrap_or(0))
    {
        delivery.add(&tally);
        streams.push(StreamTally {
            subscriber: 0,
            stream,
            tally,
        });
    }
    let mut errors: Vec<String> = online_run
        .errors()
        .into_iter()
        .map(|e| format!("online phase: {e}"))
        .collect();
    errors.extend(
        offline_run
            .errors()
            .into_iter()
            .map(|e| format!("offline phase: {e}")),
    );
    if let Some(e) = &drained.error {
        errors.push(format!("drain: {e}"));
    }
    if !session_present {
        errors.push("drain: CONNACK said no session present".to_owned());
    }
    let (online_delivery, _) = online_run.tallies();
    if online_delivery.lost > 0 {
        errors.push(format!(
            "online phase: {} messages lost",
            online_delivery.lost
        ));
    }

    let mut r = Report {
        scenario: "offline-queue".to_owned(),
        case: s.case.clone().unwrap_or_else(|| "offline-queue".to_owned()),
        broker: s.label.clone(),
        params: format!(
            "{total} QoS 1 msgs from {publishers} publisher(s) into 1 offline session, MQTT {}, {} B",
            s.version_name(),
            s.payload
        ),
        delivery: Some(delivery),
        streams,
        cpu,
        errors,
        ..Report::default()
    };
    let ratio = if online_rate > 0.0 {
        offline_rate / online_rate
    } else {
        0.0
    };
    r.metric("messages", total as f64);
    r.metric("online_pub_msg_s", online_rate);
    r.metric("offline_pub_msg_s", offline_rate);
    r.metric("offline_pub_ratio", ratio);
    r.metric(
        "offline_ack_p99_us",
        offline_run.ack_latency().summary().p99_us,
    );
    r.metric("drain_msg_s", drain_rate);
    r.metric("drain_s", drain_s);
    r.metric("session_present", f64::from(u8::from(session_present)));
    r.metric("lost", delivery.lost as f64);
    r.metric("dup", delivery.duplicates as f64);
    r.metric("reordered", delivery.reordered as f64);
    r.summary = format!(
        "publish into offline session {} msg/s ({:.0} % of {} msg/s to an online subscriber); drain {} msg/s ({unique} in {drain_s:.2} s)",
        thousands(offline_rate),
        ratio * 100.0,
        thousands(online_rate),
        thousands(drain_rate),
    );
    Ok(r)
}

/// `total` split over `parts` as evenly as possible.
fn split(total: u64, parts: u32) -> Vec<u64> {
    let parts = u64::from(parts.max(1));
    (0..parts)
        .map(|i| total / parts + u64::from(i < total % parts))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_even_and_adds_up() {
        assert_eq!(split(10, 3), vec![4, 3, 3]);
        assert_eq!(split(100_000, 1), vec![100_000]);
        assert_eq!(split(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(split(7, 0), vec![7]);
    }
}

//! conns: C idle MQTT connections held open. Connect rate (TCP connect → CONNACK), and the
//! broker's RSS per connection: (RSS with all of them open − RSS before) ÷ C, "before" being after a
//! warm-up (see `warm_up`).
//!
//! `concurrency` tasks each open their share of the connections one after another and keep the
//! sockets (with their TLS sessions, if any); nothing is read or written after the CONNACK. With
//! `--tls-ca` each connection is a full TLS handshake first, so the rate is TLS handshakes (plus
//! CONNECTs) per second.

use std::time::Instant;

use anyhow::bail;
use berth_codec::TopicFilter;
use tokio::task::JoinSet;

use super::{connect_spec, seconds};
use crate::cli::Settings;
use crate::conn::{Conn, SessionKind};
use crate::latency::Latency;
use crate::report::{Report, micros, thousands};
use crate::sys::{self, CpuSnapshot};
use crate::transport::BrokerStream;

#[derive(Debug, Clone, Copy)]
pub struct ConnsPlan {
    pub connections: u32,
    pub concurrency: u32,
    pub settle: std::time::Duration,
    pub hold: std::time::Duration,
    /// Subscribe each connection to a topic of its own after its CONNACK.
    pub subscribe: bool,
}

struct Opened {
    streams: Vec<BrokerStream>,
    latency: Latency,
    /// SUBSCRIBE → SUBACK, with `--subscribe`.
    subscribe: Latency,
    failures: u64,
    first_error: Option<String>,
}

pub async fn scenario(s: &Settings, plan: ConnsPlan) -> anyhow::Result<Report> {
    let fd_limit = sys::raise_open_files_limit();
    if u64::from(plan.connections) + 64 > fd_limit {
        bail!(
            "{} connections need more open files than this process may have ({fd_limit}); raise `ulimit -n`",
            plan.connections
        );
    }
    super::warm_up(s, false).await?;
    let rss_before = match s.broker_pid {
        Some(pid) => Some(sys::settled_rss(pid, plan.settle).await?),
        None => None,
    };
    let before = CpuSnapshot::take(s.broker_pid);
    let start = Instant::now();
    let workers = plan.concurrency.min(plan.connections);
    let mut tasks = JoinSet::new();
    for w in 0..workers {
        let s = s.clone();
        let total = plan.connections;
        let subscribe = plan.subscribe;
        tasks.spawn(async move {
            let mut opened = Opened {
                streams: Vec::new(),
                latency: Latency::new(),
                subscribe: Latency::new(),
                failures: 0,
                first_error: None,
            };
            for i in (w..total).step_by(workers as usize) {
                let spec = connect_spec(&s, format!("bb{}-c{i}", s.run_id), SessionKind::Clean);
                let t0 = Instant::now();
                match Conn::connect(s.addr, &spec, s.timeout).await {
                    Ok(mut conn) => {
                        opened.latency.record_ns(t0.elapsed().as_nanos() as u64);
                        if subscribe {
                            let t1 = Instant::now();
                            let subscribed =
                                match TopicFilter::parse(&format!("bb{}/c{i}", s.run_id)) {
                                    Ok(filter) => conn.subscribe(&[filter], s.qos, s.timeout).await,
                                    Err(e) => Err(anyhow::anyhow!("topic filter: {e}")),
                                };
                            if let Err(e) = subscribed {
                                opened.failures += 1;
                                opened.first_error.get_or_insert_with(|| format!("{e:#}"));
                                continue;
                            }
                            opened.subscribe.record_ns(t1.elapsed().as_nanos() as u64);
                        }
                        opened.streams.push(conn.into_stream());
                    }
                    Err(e) => {
                        opened.failures += 1;
                        opened.first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            opened
        });
    }
    let mut streams = Vec::with_capacity(plan.connections as usize);
    let mut latency = Latency::new();
    let mut subscribe_latency = Latency::new();
    let mut failures = 0;
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let opened = joined?;
        streams.extend(opened.streams);
        latency.merge(&opened.latency);
        subscribe_latency.merge(&opened.subscribe);
        failures += opened.failures;
        errors.extend(opened.first_error);
    }
    let elapsed = seconds(start, Instant::now());
    let cpu = before.report(&CpuSnapshot::take(s.broker_pid));
    let rss_after = match s.broker_pid {
        Some(pid) => Some(sys::settled_rss(pid, plan.settle).await?),
        None => None,
    };
    let open = streams.len() as u64;
    if !plan.hold.is_zero() {
        tokio::time::sleep(plan.hold).await;
    }
    drop(streams);

    if failures > 0 {
        errors.insert(
            0,
            format!("{failures} of {} connections failed", plan.connections),
        );
    }
    let connect = latency.summary();
    let rate = open as f64 / elapsed;
    let mut r = Report {
        scenario: "conns".to_owned(),
        case: s.case.clone().unwrap_or_else(|| "conns".to_owned()),
        broker: s.label.clone(),
        params: format!(
            "{} idle connections, MQTT {}, {} at a time",
            plan.connections,
            s.version_name(),
            workers
        ),
        cpu,
        errors,
        ..Report::default()
    };
    r.metric("connections", open as f64);
    r.metric("failed", failures as f64);
    r.metric("connect_per_s", rate);
    r.metric("connect_p50_us", connect.p50_us);
    r.metric("connect_p99_us", connect.p99_us);
    let mut summary = format!(
        "{open} connected at {} conn/s (CONNACK p50 {} p99 {})",
        thousands(rate),
        micros(connect.p50_us),
        micros(connect.p99_us)
    );
    if plan.subscribe {
        let sub = subscribe_latency.summary();
        r.metric("subscribe_p50_us", sub.p50_us);
        r.metric("subscribe_p99_us", sub.p99_us);
        summary.push_str(&format!(
            ", each subscribed (SUBACK p50 {} p99 {}; connect + subscribe {} per s)",
            micros(sub.p50_us),
            micros(sub.p99_us),
            thousands(rate)
        ));
    }
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        let per_conn = after.saturating_sub(before) as f64 / open.max(1) as f64;
        r.metric("rss_before_b", before as f64);
        r.metric("rss_after_b", after as f64);
        r.metric("rss_per_conn_b", per_conn);
        summary.push_str(&format!(
            "; broker RSS {} → {} KiB: {} B per connection",
            thousands(before as f64 / 1024.0),
            thousands(after as f64 / 1024.0),
            thousands(per_conn)
        ));
    } else {
        summary.push_str("; broker RSS not measured (no --broker-pid)");
    }
    r.summary = summary;
    Ok(r)
}

//! One run of the process-level cluster test, shared by the chaos test (`tests/chaos.rs`: a
//! nemesis of kills, pauses and partitions) and the rolling restart (`tests/rolling_restart.rs`:
//! each node drained with SIGTERM and restarted in turn): three real `berth` nodes behind
//! Debian's `haproxy`, persistent devices hopping between nodes, QoS 1 publishers, the faults,
//! then every device reconnects and drains, and the checker counts. It asserts the cluster's
//! promises (README, "What the cluster guarantees"): no acknowledged message lost, no session
//! lost, no PUBACK 0x10 for a device with its persistent subscription. The table is printed on
//! every run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_codec::ProtocolVersion;
use berth_e2e::client::connect_packet;

use super::Rng;
use super::checker::{Records, Report};
use super::conn::Conn;
use super::haproxy::{self, Backend, HaProxy};
use super::nemesis::{NODES, RECOVER_WAIT, nemesis, rolling_restart, wait_recovered};
use super::{Shared, devices, publishers};
use crate::support::Options;
use crate::support::cluster::{Cluster, options};
use crate::support::netns::Net;

const DEVICES: usize = 24;
const PUBLISHERS: usize = 4;
/// The final drain ends once no device got a new message for this long (a stranded backlog
/// is offered 5 s after its node caught up, then every 2 s).
const QUIET: Duration = Duration::from_secs(12);
const DRAIN_MAX: Duration = Duration::from_secs(120);

/// What happens to the cluster while the clients run.
#[derive(Debug, Clone, Copy)]
pub enum Faults {
    /// Kills, pauses and partitions, one at a time, for this long.
    Nemesis { secs: u64 },
    /// Each node in turn: SIGTERM (it drains and stops), restarted on its data and ports.
    RollingRestart,
}

/// What a run measured besides the checker's report.
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    /// Rolling restart: each node and how long it took from SIGTERM to its exit.
    pub drains: Vec<(u64, Duration)>,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The haproxy program, `None` (after a SKIP line) where it clearly cannot be installed.
fn haproxy_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(program) = haproxy::find() {
        return Some(program);
    }
    if let Some(why) = haproxy::cannot_install() {
        println!("SKIP {test}: haproxy is not installed and cannot be installed here ({why})");
        return None;
    }
    panic!("haproxy is not installed: run scripts/setup.sh (it installs Debian's haproxy)");
}

/// A clean CONNECT through haproxy is accepted.
async fn wait_lb(lb: SocketAddr) {
    let deadline = Instant::now() + RECOVER_WAIT;
    loop {
        let connect = connect_packet(ProtocolVersion::V3_1_1, "chaos-probe", true);
        if let Ok((_, connack)) = Conn::connect(lb, connect, Duration::from_secs(5)).await
            && !connack.reason.is_error()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "haproxy never let a CONNECT through"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the scenario and asserts the promises; `None` where haproxy cannot be had (SKIP).
pub async fn run(test: &str, faults: Faults) -> Option<Outcome> {
    let program = haproxy_or_skip(test)?;
    let rate = env_u64("BERTH_CHAOS_RATE", 100);
    let seed = std::env::var("BERTH_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!(
        "{test}: seed {seed} (BERTH_CHAOS_SEED), {faults:?}, \
         {PUBLISHERS} publishers x {rate} msg/s, {DEVICES} devices"
    );
    let mut rng = Rng::new(seed);
    // Partitions need network namespaces; a rolling restart needs none.
    let net = match faults {
        Faults::Nemesis { .. } => match Net::try_create(NODES as usize) {
            Ok(net) => Some(Arc::new(net)),
            Err(error) => {
                println!("{test}: partitions skipped (no network namespaces here: {error})");
                None
            }
        },
        Faults::RollingRestart => None,
    };
    // Draining nodes move their 24 devices in about a second; the grace period is a bound.
    let drain_env = vec![
        ("BERTH_DRAIN_GRACE".to_owned(), "20s".to_owned()),
        ("BERTH_DRAIN_RATE".to_owned(), "20".to_owned()),
    ];
    let cluster = match &net {
        Some(net) => {
            let hosts = net.clone();
            Cluster::start_with(NODES, move |id, join| Options {
                wrapper: hosts.wrapper(id as usize),
                mqtt_ip: Some(hosts.client_ip(id as usize)),
                cluster_ip: Some(hosts.cluster_ip(id as usize)),
                ..options(id, join)
            })
            .await
        }
        None => {
            Cluster::start_with(NODES, move |id, join| Options {
                env: drain_env.clone(),
                ..options(id, join)
            })
            .await
        }
    };
    let backends: Vec<Backend> = (1..=NODES)
        .map(|id| Backend {
            id,
            mqtt: cluster.mqtt(id),
            http: cluster.node(id).http,
        })
        .collect();
    let lb = tokio::task::block_in_place(|| match faults {
        Faults::Nemesis { .. } => HaProxy::start(&program, &backends),
        Faults::RollingRestart => HaProxy::start_ready(&program, &backends),
    })
    .unwrap_or_else(|error| panic!("cannot start haproxy: {error}"));
    wait_recovered(&cluster, &backends).await;
    wait_lb(lb.addr).await;

    let shared = Arc::new(Shared {
        records: Mutex::new(Records::new(DEVICES, PUBLISHERS)),
        stop: AtomicBool::new(false),
        faulty: AtomicU64::new(0),
        lb: lb.addr,
        nodes: backends.iter().map(|b| b.mqtt).collect(),
        devices: DEVICES,
        rate,
    });
    shared.records().event(format!(
        "cluster up: nodes at {:?}, haproxy at {}",
        shared.nodes, lb.addr
    ));

    // Devices: every one subscribed before anything is published.
    let ready = Arc::new(AtomicUsize::new(0));
    let devices: Vec<_> = (0..DEVICES)
        .map(|idx| {
            tokio::spawn(devices::device(
                shared.clone(),
                idx,
                rng.fork(),
                ready.clone(),
            ))
        })
        .collect();
    let deadline = Instant::now() + RECOVER_WAIT;
    while ready.load(Ordering::Acquire) < DEVICES {
        assert!(
            Instant::now() < deadline,
            "only {} of {DEVICES} devices subscribed",
            ready.load(Ordering::Acquire)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Publishers and the faults.
    {
        let mut records = shared.records();
        records.publish_started = Some(records.now());
        records.event("devices subscribed; publishing and faults begin".into());
    }
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|idx| tokio::spawn(publishers::publisher(shared.clone(), idx)))
        .collect();
    let faulted = match faults {
        Faults::Nemesis { secs } => {
            let until = Instant::now() + Duration::from_secs(secs);
            let nemesis = tokio::spawn(nemesis(
                cluster,
                net.clone(),
                shared.clone(),
                backends.clone(),
                rng.fork(),
                until,
            ));
            tokio::time::sleep_until(until.into()).await;
            stop_publishing(&shared);
            nemesis.await.map(|cluster| (cluster, Vec::new()))
        }
        Faults::RollingRestart => {
            // Traffic before, during and after: the restart starts a few seconds in, and the
            // publishers stop a few seconds after the last node is back.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let restart = tokio::spawn(rolling_restart(cluster, shared.clone(), backends.clone()));
            let outcome = restart.await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            stop_publishing(&shared);
            outcome
        }
    };
    let (cluster, drains) = match faulted {
        Ok(done) => done,
        Err(error) => {
            print_report(test, &shared, &lb);
            panic!("the faults' task failed (the cluster did not recover): {error}");
        }
    };
    wait_recovered(&cluster, &backends).await;
    for task in devices.into_iter().chain(publishers) {
        task.await.expect("client task");
    }
    shared
        .records()
        .event("healed; every device reconnects and drains".into());

    final_drain(&shared).await;

    let report = print_report(test, &shared, &lb);
    drop(lb);
    drop(cluster);
    drop(net);
    let records = shared.records();
    assert!(
        report.lost.is_empty(),
        "{} acknowledged messages were never delivered (see LOST above)",
        report.lost.len()
    );
    assert!(
        records.lost_sessions.is_empty(),
        "sessions lost: {:?}",
        records.lost_sessions
    );
    assert!(
        report.no_subscribers == 0,
        "PUBACK 0x10 for devices with a persistent subscription: {:?}",
        records.no_subscriber_violations()
    );
    assert!(
        records.violations.is_empty(),
        "deliveries that were never published or went to another device: {:?}",
        &records.violations[..records.violations.len().min(20)]
    );
    let panics = crate::support::node_panics();
    assert!(panics.is_empty(), "nodes panicked: {panics:?}");
    drop(records);
    Some(Outcome { report, drains })
}

fn stop_publishing(shared: &Shared) {
    shared.stop.store(true, Ordering::Release);
    let mut records = shared.records();
    records.publish_stopped = Some(records.now());
    records.event("fault phase over: publishers finish, devices stop hopping".into());
}

/// Every device reconnects (Clean Start 0) and receives until nothing new comes for `QUIET`.
async fn final_drain(shared: &Arc<Shared>) {
    let quiet = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicUsize::new(0));
    let drains: Vec<_> = (0..DEVICES)
        .map(|idx| {
            tokio::spawn(devices::drain(
                shared.clone(),
                idx,
                quiet.clone(),
                connected.clone(),
            ))
        })
        .collect();
    let started = Instant::now();
    let mut all_connected: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if all_connected.is_none() && connected.load(Ordering::Acquire) == DEVICES {
            all_connected = Some(Instant::now());
        }
        let last_new = shared.records().last_new;
        if all_connected.is_some_and(|at| at.elapsed() >= QUIET) && last_new.elapsed() >= QUIET {
            break;
        }
        if started.elapsed() > DRAIN_MAX {
            shared.records().event(format!(
                "the drain did not go quiet within {DRAIN_MAX:?} ({} devices connected)",
                connected.load(Ordering::Acquire)
            ));
            break;
        }
    }
    quiet.store(true, Ordering::Release);
    for task in drains {
        task.await.expect("drain task");
    }
    shared.records().event(format!(
        "drain over after {:.1}s",
        started.elapsed().as_secs_f64()
    ));
}

/// The table and what explains it; printed on every run.
fn print_report(test: &str, shared: &Shared, lb: &HaProxy) -> Report {
    let records = shared.records();
    let report = records.report();
    let mut faults = std::collections::BTreeMap::<&str, u32>::new();
    for (_, what) in &records.events {
        for kind in ["kill -9", "SIGSTOP", "cut node", "SIGTERM"] {
            if what.starts_with(&format!("nemesis: {kind}")) {
                *faults.entry(kind).or_default() += 1;
            }
        }
    }
    println!("\n{test}: faults {faults:?}");
    println!("{test}: non-success PUBACK reasons {:?}", records.reasons);
    for (what, n) in &records.counters {
        println!("{test}: {what}: {n}");
    }
    println!("\n{}", report.table());
    println!("{}", records.slow_acks(Duration::from_millis(100)));
    let routes = lb.routes();
    if !report.lost.is_empty() {
        println!("{}", records.explain_lost(&report.lost, &routes, 30));
    }
    println!("{}", records.explain(&report, &routes, 10));
    for line in records
        .lost_sessions
        .iter()
        .chain(&records.no_subscriber_violations())
        .chain(records.violations.iter().take(20))
    {
        println!("VIOLATION {line}");
    }
    if !report.lost.is_empty() || !records.lost_sessions.is_empty() {
        println!("{test}: timeline");
        for (at, what) in &records.events {
            println!("  [{:7.2}s] {what}", at.as_secs_f64());
        }
        for line in lb.events().iter().take(200) {
            println!("  haproxy: {line}");
        }
    }
    report
}

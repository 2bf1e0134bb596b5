//! The chaos test's nemesis: one node at a time killed (`kill -9`, then restarted on its data
//! directory and ports), paused (`SIGSTOP`, then `SIGCONT`) or cut off from the cluster network
//! (network namespaces), each for a few seconds; after each fault it waits until the cluster
//! has recovered (every `/health` 200, one leader in one term, every node caught up) so that
//! faults never overlap and a majority always exists.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Rng;
use super::Shared;
use super::haproxy::{self, Backend};
use crate::support::cluster::{Cluster, status};
use crate::support::netns::Net;

pub const NODES: u64 = 3;
/// How long the cluster may take to recover from a fault before the test fails.
pub const RECOVER_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    Kill,
    Pause,
    Partition,
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// Every node answers `/health` 200 and agrees on three voters and one leader.
pub async fn wait_recovered(cluster: &Cluster, backends: &[Backend]) {
    let deadline = Instant::now() + RECOVER_WAIT;
    for b in backends {
        while !haproxy::healthy(b.http).await {
            assert!(
                Instant::now() < deadline,
                "node {} not healthy within {RECOVER_WAIT:?}",
                b.id
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Ready too (a leader known, caught up, not draining): what the balancer checks when it
    // runs with `/ready`.
    for b in backends {
        while !haproxy::ready(b.http).await {
            assert!(
                Instant::now() < deadline,
                "node {} not ready within {RECOVER_WAIT:?}",
                b.id
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    cluster.wait_voters(NODES as usize).await;
    // And agree: one leader in one term, every node applied at least what the leader had
    // applied a moment ago (a node back from a fault has caught up before the next one).
    let mut leader_applied = None;
    loop {
        let mut statuses = Vec::new();
        for node in cluster.nodes.iter().flatten() {
            statuses.push(status(node.cluster.expect("cluster listener")).await);
        }
        let all: Vec<_> = statuses.iter().flatten().collect();
        let agreed = all.len() == NODES as usize
            && all[0].leader_id.is_some()
            && all
                .iter()
                .all(|s| s.leader_id == all[0].leader_id && s.term == all[0].term);
        if agreed {
            let min_applied = all.iter().map(|s| s.last_applied.unwrap_or(0)).min();
            if leader_applied.is_some_and(|target| min_applied >= Some(target)) {
                return;
            }
            leader_applied = all
                .iter()
                .find(|s| Some(s.node_id) == s.leader_id)
                .and_then(|s| s.last_applied);
        }
        assert!(
            Instant::now() < deadline,
            "the nodes did not agree within {RECOVER_WAIT:?}: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One fault at a time until `until`, each followed by recovery. Returns the cluster healed.
pub async fn nemesis(
    mut cluster: Cluster,
    net: Option<Arc<Net>>,
    shared: Arc<Shared>,
    backends: Vec<Backend>,
    mut rng: Rng,
    until: Instant,
) -> Cluster {
    let mut kinds = vec![Fault::Kill, Fault::Pause];
    if net.is_some() {
        kinds.push(Fault::Partition);
    }
    let event = |what: String| shared.records().event(what);
    // Sleeps `wanted`, or less so that the phase ends on time.
    let hold = |wanted: Duration| {
        let left = until.saturating_duration_since(Instant::now());
        tokio::time::sleep(wanted.min(left).max(Duration::from_millis(300)))
    };
    tokio::time::sleep(rng.millis(1000, 3000)).await;
    while Instant::now() + Duration::from_secs(3) < until {
        let kind = kinds[rng.range(0, kinds.len() as u64 - 1) as usize];
        let node = rng.range(1, NODES);
        let b = backends[node as usize - 1];
        shared.faulty.store(node, Ordering::Release);
        let started = Instant::now();
        match kind {
            Fault::Kill => {
                event(format!("nemesis: kill -9 node {node}"));
                cluster.kill9(node);
                hold(rng.millis(1000, 6000)).await;
                event(format!("nemesis: restart node {node}"));
                tokio::task::block_in_place(|| cluster.restart_on(node, b.mqtt, b.http));
            }
            Fault::Pause => {
                let pid = cluster.node(node).pid();
                let wanted = rng.millis(1000, 14000);
                event(format!(
                    "nemesis: SIGSTOP node {node} (for {:.1}s)",
                    wanted.as_secs_f64()
                ));
                signal(pid, "STOP");
                hold(wanted).await;
                signal(pid, "CONT");
                event(format!("nemesis: SIGCONT node {node}"));
            }
            Fault::Partition => {
                let net = net.as_ref().expect("partitions need namespaces");
                event(format!("nemesis: cut node {node} off the cluster network"));
                net.cut(node as usize);
                hold(rng.millis(2000, 8000)).await;
                net.heal(node as usize);
                event(format!("nemesis: heal node {node}"));
            }
        }
        wait_recovered(&cluster, &backends).await;
        shared.faulty.store(0, Ordering::Release);
        event(format!(
            "nemesis: healthy again, {:.1}s after the fault began",
            started.elapsed().as_secs_f64()
        ));
        hold(rng.millis(1000, 3000)).await;
    }
    cluster
}

/// How long a node may take from SIGTERM to its exit (its drain grace period is 20 s).
const DRAIN_WAIT: Duration = Duration::from_secs(40);

/// A rolling restart, as an operator upgrades a cluster: each node in turn gets SIGTERM (it
/// drains: `/ready` turns 503 so the balancer sends it no one, and its clients are sent to the
/// others), its exit is awaited, it is restarted on its data and ports, and the next node goes
/// only once the cluster has recovered. Returns each node's time from SIGTERM to exit.
pub async fn rolling_restart(
    mut cluster: Cluster,
    shared: Arc<Shared>,
    backends: Vec<Backend>,
) -> (Cluster, Vec<(u64, Duration)>) {
    let event = |what: String| shared.records().event(what);
    let mut drains = Vec::new();
    for node in 1..=NODES {
        let b = backends[node as usize - 1];
        shared.faulty.store(node, Ordering::Release);
        event(format!(
            "nemesis: SIGTERM node {node} (it drains and stops)"
        ));
        let took = tokio::task::block_in_place(|| cluster.terminate(node, DRAIN_WAIT));
        event(format!(
            "nemesis: node {node} drained and exited {:.2}s after SIGTERM",
            took.as_secs_f64()
        ));
        drains.push((node, took));
        event(format!("nemesis: restart node {node}"));
        tokio::task::block_in_place(|| cluster.restart_on(node, b.mqtt, b.http));
        wait_recovered(&cluster, &backends).await;
        shared.faulty.store(0, Ordering::Release);
        event(format!("nemesis: node {node} ready again"));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    (cluster, drains)
}

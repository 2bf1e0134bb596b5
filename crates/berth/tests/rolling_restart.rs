//! A rolling restart of a three-node cluster behind Debian's `haproxy` (checking `/ready`, as
//! `deploy/haproxy.cfg` does) while persistent devices hop between nodes and QoS 1 publishers
//! run: each node in turn gets SIGTERM, drains (its `/ready` turns 503, its clients hear
//! DISCONNECT 0x9C Use another server at `drain.rate` per second and take their sessions to
//! the nodes they reconnect to), exits, and comes back on its data. Nothing acknowledged may be
//! lost, no session may be lost, and each node must finish its drain well within its grace
//! period. The run is `support/chaos/scenario.rs`, shared with the chaos test.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

mod support;

use std::time::Duration;

use support::chaos::scenario::{self, Faults};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_haproxy_loses_no_acknowledged_message_and_no_session() {
    let Some(outcome) = scenario::run("rolling restart", Faults::RollingRestart).await else {
        return;
    };
    for (node, took) in &outcome.drains {
        println!(
            "rolling restart: node {node} drained and exited {:.2} s after SIGTERM",
            took.as_secs_f64()
        );
    }
    assert_eq!(outcome.drains.len(), 3, "every node restarted once");
    // About 8 devices per node at 20 per second: well under a second of pacing; the grace
    // period (20 s) is only reached if the drain stalls.
    for (node, took) in &outcome.drains {
        assert!(
            *took < Duration::from_secs(15),
            "node {node} took {took:?} to drain (grace period 20 s)"
        );
    }
    assert!(
        outcome.report.acked > 0,
        "the publishers' messages were acknowledged during the restart"
    );
}

//! The cluster under a nemesis, as a user would run it: three real `berth` nodes (RocksDB in
//! temp dirs) behind Debian's `haproxy` (round robin, `/health` checks), persistent devices
//! hopping between nodes, QoS 1 publishers, and one node at a time killed (`kill -9`, restarted
//! on its data dir and ports), paused (`SIGSTOP` 1–14 s, `SIGCONT`) or — where network
//! namespaces can be made (root, iproute2; see `support/netns.rs`) — cut off from the cluster
//! network. Then everything heals, every device reconnects and drains, and the checker
//! (`support/chaos/checker.rs`) counts. It asserts the cluster's promises (README, "What the
//! cluster guarantees"): no acknowledged message lost, no session lost, no PUBACK 0x10 for a
//! device with its persistent subscription. The table is printed on every run.
//!
//! CI runs the short run (~2 min, alone: `.config/nextest.toml`); a long run is one command:
//!
//! ```text
//! cargo nextest run -p berth --test chaos                      # the short run, as CI does
//! BERTH_CHAOS_SECS=600 cargo nextest run -p berth --test chaos --profile chaos-long
//! BERTH_CHAOS_SECS=600 cargo test -p berth --test chaos -- --nocapture   # the same, no runner timeout
//! ```
//! `BERTH_CHAOS_SECS` is the nemesis phase (default 80), `BERTH_CHAOS_SEED` repeats a schedule
//! (printed at the start), `BERTH_CHAOS_RATE` is messages/s per publisher (default 100). The
//! run itself is `support/chaos/scenario.rs`, shared with the rolling restart.
//! Needs `haproxy` (`scripts/setup.sh` installs it); without it the test fails, unless this
//! machine clearly cannot install it, then it prints SKIP.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

mod support;

use support::chaos::scenario::{self, Faults};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_message_or_session_is_lost_behind_haproxy_under_kills_pauses_and_partitions()
 {
    let secs = std::env::var("BERTH_CHAOS_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(80);
    // The promises are asserted inside the run.
    scenario::run("chaos", Faults::Nemesis { secs }).await;
}

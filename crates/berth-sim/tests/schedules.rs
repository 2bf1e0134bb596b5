//! Seeded cluster schedules: every run must keep every promise (see `checker.rs`).
//!
//! `BERTH_SIM_SEEDS` sets how many seeds `seeded_schedules_keep_every_promise` runs (default
//! 1,000; `BERTH_SIM_FIRST_SEED` the first one). A failure lists the seeds with the command
//! that replays each exactly.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_sim::{Report, STALE_COPY_WINDOW, SimConfig, run};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `count` seeds from `first` on every core; returns the reports that `failed` selects.
fn run_seeds(
    first: u64,
    count: u64,
    config: &SimConfig,
    failed: impl Fn(&Report) -> bool + Sync,
) -> (Vec<Report>, Report) {
    let next = AtomicU64::new(first);
    let failures = Mutex::new(Vec::new());
    let totals = Mutex::new(Report::default());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= first + count {
                        return;
                    }
                    let report = run(seed, config);
                    {
                        let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
                        t.published += report.published;
                        t.acked += report.acked;
                        t.delivered += report.delivered;
                        t.takeovers += report.takeovers;
                        t.pauses += report.pauses;
                        t.crashes += report.crashes;
                        t.partitions += report.partitions;
                        t.stale_copy_scripts += report.stale_copy_scripts;
                    }
                    if failed(&report) {
                        failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(report);
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    failures.sort_by_key(|r| r.seed);
    (
        failures,
        totals.into_inner().unwrap_or_else(|p| p.into_inner()),
    )
}

/// The totals of a run of seeds, in one line.
fn totals_line(totals: &Report) -> String {
    format!(
        "published {} acked {} delivered {} takeovers {} | pauses {} crashes {} partitions {} stale-copy scripts {}",
        totals.published,
        totals.acked,
        totals.delivered,
        totals.takeovers,
        totals.pauses,
        totals.crashes,
        totals.partitions,
        totals.stale_copy_scripts,
    )
}

fn describe(failures: &[Report], scenario: &str) -> String {
    let mut text = format!("{} seeds failed:\n", failures.len());
    for report in failures.iter().take(20) {
        text.push_str(&format!(
            "  seed {} ({}): {}\n    replay: cargo run -p berth-sim --release -- --scenario {scenario} --seed {} --trace\n",
            report.seed,
            report.kinds().join(", "),
            report
                .violations
                .first()
                .map(|v| v.to_string())
                .unwrap_or_default(),
            report.seed,
        ));
    }
    let seeds: Vec<String> = failures.iter().map(|r| r.seed.to_string()).collect();
    text.push_str(&format!("all failing seeds: {}\n", seeds.join(" ")));
    text
}

/// Crashes, pauses and partitions on top of clients moving between nodes, every promise: no
/// acknowledged message lost, no PUBACK 0x10 for a subscribed session, one connection per
/// client and epoch, no connection started at a stale epoch or left running at a superseded
/// one, publish order per publisher and epoch, DUP = 1 on every re-delivery, no persistent
/// session lost, no acknowledgement held by an unreachable owner past the handoff bound, and
/// QoS 2 exactly-once. Seeds 0..1,000 (the default) all pass; over 0..12,000 two still fail
/// (7482, 11040: a returning in-flight QoS 2 message re-sent under a new packet id, see
/// `crates/berth-sim/README.md`), so a longer run (`BERTH_SIM_SEEDS`) finds them.
#[test]
fn seeded_schedules_keep_every_promise() {
    let count = env_u64("BERTH_SIM_SEEDS", 1_000);
    let first = env_u64("BERTH_SIM_FIRST_SEED", 0);
    let config = SimConfig::default();
    let started = std::time::Instant::now();
    let (failures, totals) = run_seeds(first, count, &config, |r| !r.ok());
    eprintln!(
        "{count} schedules in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        totals_line(&totals)
    );
    assert!(
        totals.crashes > count && totals.pauses > count,
        "the schedules had faults"
    );
    assert!(failures.is_empty(), "{}", describe(&failures, "chaos"));
}

/// Clients reconnecting to random nodes (takeovers, QoS 1 and 2 publishers through every node),
/// without faults: every promise holds in every schedule.
#[test]
fn seeded_schedules_without_faults_keep_every_promise() {
    let count = env_u64("BERTH_SIM_SEEDS", 1_000);
    let (failures, totals) = run_seeds(0, count, &SimConfig::calm(), |r| !r.ok());
    eprintln!(
        "{count} calm schedules: published {} acked {} delivered {} takeovers {}",
        totals.published, totals.acked, totals.delivered, totals.takeovers
    );
    assert!(totals.takeovers > count, "the schedules moved sessions");
    assert!(failures.is_empty(), "{}", describe(&failures, "calm"));
}

/// Issue 11's stale copy: node A holds an older copy of S, S comes back to A while its
/// current owner B is paused, and a publisher on A publishes to S during A's pull. None of
/// those messages may be acknowledged and lost (or acknowledged 0x10).
#[test]
fn messages_published_while_a_stale_copy_is_taken_back_are_not_lost() {
    let count = env_u64("BERTH_SIM_SEEDS", 1_000);
    let config = SimConfig::stale_copy();
    let window = |r: &Report| {
        r.violations
            .iter()
            .any(|v| v.detail.contains(STALE_COPY_WINDOW))
    };
    let (failures, _) = run_seeds(0, count, &config, window);
    assert!(failures.is_empty(), "{}", describe(&failures, "stale-copy"));
}

/// The chaos schedules with half of the takeovers' releases lost on the way: the old owner
/// keeps its copy after the new owner connected the client, and the copy comes back later (a
/// takeover back merges it, or it is offered as a stranded backlog). Every promise holds: no
/// acknowledged message is lost, nor a session, nor the order, and QoS 2 is exactly once
/// (asserted here since session 38: seeds 0..4,000 all pass; 1 of 4,000..8,000 does not, see
/// `crates/berth-sim/README.md`).
#[test]
fn with_releases_lost_every_promise_holds() {
    let count = env_u64("BERTH_SIM_SEEDS", 1_000);
    let broken = |r: &Report| !r.ok();
    let (failures, totals) = run_seeds(0, count, &SimConfig::lost_release(), broken);
    eprintln!("{count} lost-release schedules: {}", totals_line(&totals));
    assert!(totals.takeovers > count, "the schedules moved sessions");
    assert!(
        failures.is_empty(),
        "{}",
        describe(&failures, "lost-release")
    );
}

/// Schedules that once broke QoS 2 exactly-once (a merge that dropped the incoming ids of the
/// very copy its session waited for; an older copy standing in for a newer one's deliveries;
/// an older copy's QoS 2 message coming back under a new packet id because its own was in use)
/// or, while that was being fixed, lost messages (the identities of a pull cut short marking
/// messages as had; a heal phase ending before a held delivery went out) or their order:
/// every promise holds in each. A seed replays its schedule only while the simulator draws
/// its random numbers as it did: after a change to the simulator, re-check that these still
/// reach the cases named in `crates/berth-sim/README.md`.
#[test]
fn schedules_that_broke_qos2_exactly_once_keep_every_promise() {
    const SEEDS: [u64; 13] = [
        31, 1370, 3625, 5331, 10071, 10997, 11551, 45, 2149, 4543, 9329, 7482, 11040,
    ];
    let config = SimConfig::default();
    let failures: Vec<Report> = SEEDS
        .iter()
        .map(|&seed| run(seed, &config))
        .filter(|r| !r.ok())
        .collect();
    assert!(failures.is_empty(), "{}", describe(&failures, "chaos"));
}

/// Schedules with takeovers' releases lost that delivered a QoS 2 message twice until session 37
/// (904, 1155, 3942 and 6058 until 38), each for one of its causes: a late copy older than the one
/// the session lacked ended the wait for it (77, 86, 652, 876); a merge with the lacked copy
/// re-sent what that copy had completed (505, 519, 694, 835, 901, 963); a second pull for one claim
/// voided what the first said was taken (298, 623); a wait begun for an earlier lack let the next
/// one's messages go at once (864, 893, 996); a crash between the old copy's release and the
/// import's end lost what its pages settled (272); a merge of two doubts about copies on different
/// nodes named neither, so that no copy could settle it (3213, 3344; 2162 at 5 %); a copy behind
/// its own node's claim, whose import a crash cut short, was exported as complete (1636, and 1174,
/// 1915); a merge with a copy lacked before the one named re-sent what it had completed once the
/// wait for the named one ran out (904); a copy that landed under a newer claim of its node was not
/// known as the lacked one, and forgot what it took (1155, 3942, 6058; 3715 at 5 %); a claim whose
/// owner crashed while pulling left the copy it pulled from unnamed, and a merge with that copy
/// re-sent what it had completed (6148); a copy behind its node's dormant claim exported its queue
/// as never sent, and a message the claim's source had sent went out again with DUP = 0 (9547).
/// Every promise holds in each, at the probability it failed at.
#[test]
fn lost_release_schedules_that_broke_qos2_exactly_once_keep_every_promise() {
    const HALF: [u64; 27] = [
        77, 86, 272, 298, 505, 519, 623, 652, 694, 835, 864, 876, 893, 901, 904, 963, 996, 1155,
        1174, 1636, 1915, 3213, 3344, 3942, 6058, 6148, 9547,
    ];
    const TWENTIETH: [u64; 4] = [612, 994, 2162, 3715];
    let half = SimConfig::lost_release();
    let twentieth = SimConfig {
        release_loss_prob: 0.05,
        ..SimConfig::default()
    };
    let failures: Vec<Report> = HALF
        .iter()
        .map(|&seed| run(seed, &half))
        .chain(TWENTIETH.iter().map(|&seed| run(seed, &twentieth)))
        .filter(|r| !r.ok())
        .collect();
    assert!(
        failures.is_empty(),
        "{}",
        describe(&failures, "lost-release")
    );
}

/// Seeds beyond those run before (chaos 12,000..18,000, releases lost 12,000..20,000) that
/// failed until session 40: a node that learnt its own claim from a snapshot while an older
/// claim's import ran kept routing the session's messages to the node before, which answered
/// "not mine" for seconds (chaos 15499, 15710: `7-ack-wait`); a copy stranded on a node was
/// offered only 5 s after its latest claim, or after its node's restart, so the session's
/// wait for its QoS 2 state ran out first (releases lost 12654, 16165, 17417, 18841, and 2401
/// once the schedules moved); an older claim's import landing after a newer one's did not end
/// what it had delivered (releases lost 6058 once the schedules moved). Every promise holds.
#[test]
fn schedules_found_in_session_40_keep_every_promise() {
    const CHAOS: [u64; 2] = [15499, 15710];
    const HALF: [u64; 6] = [2401, 6058, 12654, 16165, 17417, 18841];
    let chaos = SimConfig::default();
    let half = SimConfig::lost_release();
    let failures: Vec<Report> = CHAOS
        .iter()
        .map(|&seed| run(seed, &chaos))
        .chain(HALF.iter().map(|&seed| run(seed, &half)))
        .filter(|r| !r.ok())
        .collect();
    assert!(
        failures.is_empty(),
        "{}",
        describe(&failures, "chaos / lost-release")
    );
}

/// Schedules that failed until session 41. Releases lost (0.5), 19957 (`6-qos2`): a session
/// resumed without node 3's copy recovered node 1's, which had taken the session on from the
/// state there and completed a QoS 2 message under id 1; the PUBREL that ended it there freed
/// id 1, which the client held for a message node 3 had sent since, and that message was
/// taken twice when node 3's copy came back. Chaos 14409 (`6-qos2-id`, `6-qos2`): a QoS 2
/// message queued ahead of one that waited for its packet id (displaced by a merge; the
/// client held the id for it) was given that id when the wait for a lacked copy ran out.
/// Every promise holds.
#[test]
fn schedules_found_in_session_41_keep_every_promise() {
    let failures: Vec<Report> = [run(19957, &SimConfig::lost_release())]
        .into_iter()
        .chain([run(14409, &SimConfig::default())])
        .filter(|r| !r.ok())
        .collect();
    assert!(
        failures.is_empty(),
        "{}",
        describe(&failures, "lost-release / chaos")
    );
}

/// Every event of a seed, twice: the same. Forty seeds of the chaos mix and forty with releases
/// lost, since a set iterated into what a node sends (an export's QoS 2 ids, until session 32)
/// shows only where a schedule reaches it: seed 3 reached one only after a schedule changed.
#[test]
fn a_seed_replays_exactly() {
    let chaos = SimConfig {
        trace: true,
        ..SimConfig::default()
    };
    let lost_release = SimConfig {
        trace: true,
        ..SimConfig::lost_release()
    };
    for config in [&chaos, &lost_release] {
        replays_exactly(config, 0..40);
    }
}

fn replays_exactly(config: &SimConfig, seeds: impl Iterator<Item = u64>) {
    for seed in seeds {
        let a = run(seed, config);
        let b = run(seed, config);
        assert_eq!(a.trace, b.trace, "seed {seed} ran differently twice");
        assert_eq!(a.summary(), b.summary());
        assert!(
            a.events > 100,
            "seed {seed} did almost nothing: {}",
            a.summary()
        );
    }
}

//! `berth-sim`: runs seeded cluster schedules and reports broken promises.
//!
//! ```text
//! berth-sim --seeds 0..10000          many seeds, a summary per failing seed
//! berth-sim --seed 42 --trace         one seed, replayed exactly, with its schedule and events
//! options: --scenario chaos|stale-copy|calm|lost-release  (default chaos; give it before other options)
//!          --steps N  --no-nemesis  --no-bounces  --stale-copy P (probability of the script)
//!          --release-loss P (probability that a takeover's release is lost)
//!          --verbose (a summary line for every seed)
//! ```

use std::process::ExitCode;

use berth_sim::{SimConfig, run};

struct Args {
    seeds: std::ops::Range<u64>,
    trace: bool,
    verbose: bool,
    config: SimConfig,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        seeds: 0..100,
        trace: false,
        verbose: false,
        config: SimConfig::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--seeds" => {
                let v = value("--seeds")?;
                let (a, b) = v
                    .split_once("..")
                    .ok_or_else(|| format!("--seeds wants A..B, got {v}"))?;
                let a: u64 = a.parse().map_err(|_| format!("bad seed {a}"))?;
                let b: u64 = b.parse().map_err(|_| format!("bad seed {b}"))?;
                args.seeds = a..b;
            }
            "--seed" => {
                let v = value("--seed")?;
                let seed: u64 = v.parse().map_err(|_| format!("bad seed {v}"))?;
                args.seeds = seed..seed + 1;
            }
            "--steps" => {
                let v = value("--steps")?;
                args.config.steps = v.parse().map_err(|_| format!("bad step count {v}"))?;
            }
            "--stale-copy" => {
                let v = value("--stale-copy")?;
                args.config.stale_copy_prob =
                    v.parse().map_err(|_| format!("bad probability {v}"))?;
            }
            "--release-loss" => {
                let v = value("--release-loss")?;
                args.config.release_loss_prob =
                    v.parse().map_err(|_| format!("bad probability {v}"))?;
            }
            "--no-nemesis" => {
                args.config.faults = false;
                args.config.stale_copy_prob = 0.0;
            }
            "--no-bounces" => args.config.bounces = false,
            "--no-handoff" => args.config.handoff_after = None,
            "--scenario" => {
                let v = value("--scenario")?;
                let steps = args.config.steps;
                args.config = match v.as_str() {
                    "chaos" => SimConfig::default(),
                    "stale-copy" => SimConfig::stale_copy(),
                    "calm" => SimConfig::calm(),
                    "lost-release" => SimConfig::lost_release(),
                    other => {
                        return Err(format!(
                            "unknown scenario {other} (chaos, stale-copy, calm, lost-release)"
                        ));
                    }
                };
                args.config.steps = steps;
            }
            "--trace" => args.trace = true,
            "--verbose" | "-v" => args.verbose = true,
            "--help" | "-h" => {
                return Err("usage: berth-sim [--seeds A..B | --seed N] [--trace] [--verbose] [--scenario chaos|stale-copy|calm|lost-release] [--steps N] [--stale-copy P] [--release-loss P] [--no-nemesis] [--no-bounces] [--no-handoff]".into());
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    args.config.trace = args.trace;
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let started = std::time::Instant::now();
    let mut failed = Vec::new();
    let mut total = berth_sim::Report::default();
    let mut seeds_with_expired_waits = 0u64;
    let count = args.seeds.end.saturating_sub(args.seeds.start);
    for seed in args.seeds.clone() {
        let report = run(seed, &args.config);
        if let Some(trace) = &report.trace {
            for line in trace {
                println!("{line}");
            }
        }
        if args.verbose || args.trace || !report.ok() {
            println!("{}", report.summary());
        }
        for note in &report.notes {
            println!("  note: {note}");
        }
        if !report.ok() {
            for violation in &report.violations {
                println!("  {violation}");
            }
            println!("  replay: cargo run -p berth-sim --release -- --seed {seed} --trace");
            failed.push((seed, report.kinds()));
        }
        total.published += report.published;
        total.acked += report.acked;
        total.delivered += report.delivered;
        total.lost += report.lost;
        total.duplicates += report.duplicates;
        total.late_stranded += report.late_stranded;
        total.late_resent += report.late_resent;
        total.late_handoff += report.late_handoff;
        total.takeovers += report.takeovers;
        total.pauses += report.pauses;
        total.crashes += report.crashes;
        total.partitions += report.partitions;
        total.stale_copy_scripts += report.stale_copy_scripts;
        total.releases_lost += report.releases_lost;
        total.qos2_waits += report.qos2_waits;
        total.qos2_waits_expired += report.qos2_waits_expired;
        if report.qos2_waits_expired > 0 {
            seeds_with_expired_waits += 1;
        }
        total.ack_ms.extend(&report.ack_ms);
    }
    println!(
        "{count} seeds in {:.1}s: {} failed | published {} acked {} delivered {} lost {} duplicates {} late {} (stranded {}, resent {}, handoff {}) takeovers {} pauses {} crashes {} partitions {} stale-copy scripts {} releases lost {} | QoS 2 state waits {} (expired {}, in {} seeds)",
        started.elapsed().as_secs_f64(),
        failed.len(),
        total.published,
        total.acked,
        total.delivered,
        total.lost,
        total.duplicates,
        total.late_stranded + total.late_resent + total.late_handoff,
        total.late_stranded,
        total.late_resent,
        total.late_handoff,
        total.takeovers,
        total.pauses,
        total.crashes,
        total.partitions,
        total.stale_copy_scripts,
        total.releases_lost,
        total.qos2_waits,
        total.qos2_waits_expired,
        seeds_with_expired_waits,
    );
    total.ack_ms.sort_unstable();
    let at = |q: f64| {
        let n = total.ack_ms.len();
        if n == 0 {
            return 0;
        }
        total.ack_ms[((n as f64 * q) as usize).min(n - 1)]
    };
    println!(
        "acknowledgement after first send, simulated ms: p50 {} p90 {} p99 {} p99.9 {} max {} | over 1 s: {} of {}",
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999),
        total.ack_ms.last().copied().unwrap_or(0),
        total.ack_ms.iter().filter(|ms| **ms > 1_000).count(),
        total.ack_ms.len(),
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        let list: Vec<String> = failed
            .iter()
            .take(50)
            .map(|(seed, kinds)| format!("{seed} ({})", kinds.join(", ")))
            .collect();
        let more = failed.len().saturating_sub(list.len());
        let more = if more > 0 {
            format!(" … and {more} more")
        } else {
            String::new()
        };
        println!("failing seeds: {}{more}", list.join(", "));
        let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
        for (_, run_kinds) in &failed {
            for kind in run_kinds {
                *kinds.entry(kind).or_default() += 1;
            }
        }
        let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        println!("seeds failing per kind: {}", kinds.join(", "));
        ExitCode::FAILURE
    }
}

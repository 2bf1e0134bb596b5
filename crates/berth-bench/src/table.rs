//! The comparison table of `bench/compare`: medians of repeated runs per broker, the ratio of the
//! subject (Berth) to the best peer (Mosquitto, rumqttd), and each target of issue 14 beside it.
//!
//! Input: JSON lines, one [`Report`] per run (`berth-bench … --json --label NAME`). Runs that
//! reported errors are listed and left out of the medians.
//!
//! "Best" only counts peers that lost nothing where the case promises delivery (every case but
//! QoS 0): a broker that drops what it cannot keep up with has a rate that is not comparable. Such
//! a peer keeps its figure in its column, marked "(lost N)" with N its worst run's losses.

mod rows;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;

use self::rows::{ROWS, Row, Target, Unit};
use crate::report::{Report, micros, thousands};

/// Runs of one case on one broker.
#[derive(Debug, Default)]
struct Runs {
    ok: Vec<Report>,
    failed: Vec<Report>,
}

/// One broker's figure in one row.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Cell {
    /// The median over its runs (the worst run for [`Target::Zero`] rows).
    value: Option<f64>,
    /// Messages lost in its worst run, when the case must lose none and some were.
    lost: Option<f64>,
}

impl Cell {
    fn lossless(&self) -> bool {
        self.lost.is_none()
    }
}

/// Reads the result files and renders the Markdown. `peers` empty: every other broker in them.
pub fn render_files(files: &[PathBuf], subject: &str, peers: &[String]) -> anyhow::Result<String> {
    let mut reports = Vec::new();
    let mut unreadable = 0;
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
            match serde_json::from_str::<Report>(line) {
                Ok(report) => reports.push(report),
                Err(_) => unreadable += 1,
            }
        }
    }
    let mut out = render(&reports, subject, peers);
    if unreadable > 0 {
        let _ = writeln!(out, "\n{unreadable} result line(s) could not be read.");
    }
    Ok(out)
}

pub fn render(reports: &[Report], subject: &str, peers: &[String]) -> String {
    let peers = if peers.is_empty() {
        other_labels(reports, subject)
    } else {
        peers.to_vec()
    };
    let mut groups: BTreeMap<(String, String), Runs> = BTreeMap::new();
    let mut case_order: Vec<String> = Vec::new();
    for report in reports {
        if !case_order.contains(&report.case) {
            case_order.push(report.case.clone());
        }
        let runs = groups
            .entry((report.case.clone(), report.broker.clone()))
            .or_default();
        if report.errors.is_empty() {
            runs.ok.push(report.clone());
        } else {
            runs.failed.push(report.clone());
        }
    }
    let empty = Runs::default();
    let runs_of = |case: &str, broker: &str| {
        groups
            .get(&(case.to_owned(), broker.to_owned()))
            .unwrap_or(&empty)
    };
    let brokers: Vec<&str> = std::iter::once(subject)
        .chain(peers.iter().map(String::as_str))
        .collect();
    // The run's shape, from the first broker that has a good run of the case.
    let params_of = |case: &str| {
        brokers
            .iter()
            .find_map(|&broker| runs_of(case, broker).ok.first())
            .map(|r| r.params.clone())
            .unwrap_or_default()
    };
    let cells = |case: &str, metric: &str, target: Target| {
        let subject_cell = cell(runs_of(case, subject), case, metric, target);
        let peer_cells: Vec<(&str, Cell)> = peers
            .iter()
            .map(|peer| {
                let peer = peer.as_str();
                (peer, cell(runs_of(case, peer), case, metric, target))
            })
            .collect();
        (subject_cell, peer_cells)
    };

    // Known rows for the cases present, then a throughput row for any other case.
    let rows: Vec<Row> = ROWS
        .iter()
        .copied()
        .filter(|row| case_order.iter().any(|c| c == row.case))
        .collect();
    let extra_cases: Vec<&String> = case_order
        .iter()
        .filter(|c| !ROWS.iter().any(|r| r.case == c.as_str()))
        .collect();

    let mut out = String::new();
    out.push_str("| scenario |");
    for &broker in &brokers {
        let _ = write!(out, " {} |", display(broker));
    }
    let _ = writeln!(out, " {} ÷ best peer | target | met? |", display(subject));
    let _ = writeln!(out, "|---|{}---:|---|:---:|", "---:|".repeat(brokers.len()));
    let mut previous_case = "";
    for row in rows {
        // The run's shape once per case, on its first row.
        let params = if row.case == previous_case {
            String::new()
        } else {
            params_of(row.case)
        };
        previous_case = row.case;
        let (subject_cell, peer_cells) = cells(row.case, row.metric, row.target);
        let _ = writeln!(
            out,
            "{}",
            line(
                row.title,
                row.unit,
                row.target,
                &params,
                subject_cell,
                &peer_cells
            )
        );
    }
    for case in extra_cases {
        let (subject_cell, peer_cells) = cells(case, "recv_msg_s", Target::None);
        let title = format!("{case}, msg/s received");
        let _ = writeln!(
            out,
            "{}",
            line(
                &title,
                Unit::PerSecond,
                Target::None,
                &params_of(case),
                subject_cell,
                &peer_cells
            )
        );
    }

    let _ = writeln!(
        out,
        "\nDelivery and CPU (medians over runs; CPU in cores, i.e. CPU seconds per second):\n"
    );
    let _ = writeln!(
        out,
        "| case | broker | runs ok/all | lost | dup | reordered | bench CPU | broker CPU | other CPU |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut failures = Vec::new();
    for case in &case_order {
        for &broker in &brokers {
            let runs = runs_of(case, broker);
            let all = runs.ok.len() + runs.failed.len();
            if all == 0 {
                continue;
            }
            let sum = |name: &str| {
                runs.ok
                    .iter()
                    .filter_map(|r| r.metrics.get(name))
                    .sum::<f64>()
            };
            let cpu = |f: fn(&Report) -> Option<f64>| {
                median(runs.ok.iter().filter_map(f).collect())
                    .map_or("–".to_owned(), |v| format!("{v:.2}"))
            };
            let has_delivery = runs.ok.iter().any(|r| r.delivery.is_some());
            let count = |name: &str| {
                if has_delivery {
                    thousands(sum(name))
                } else {
                    "–".to_owned()
                }
            };
            let _ = writeln!(
                out,
                "| {case} | {broker} | {}/{all} | {} | {} | {} | {} | {} | {} |",
                runs.ok.len(),
                count("lost"),
                count("dup"),
                count("reordered"),
                cpu(|r| Some(r.cpu.bench_cores)),
                cpu(|r| r.cpu.broker_cores),
                cpu(|r| r.cpu.other_cores),
            );
            for (n, failed) in runs.failed.iter().enumerate() {
                failures.push(format!(
                    "- {case} / {broker}, failed run {}: {}",
                    n + 1,
                    failed.errors.join("; ")
                ));
            }
        }
    }
    if !failures.is_empty() {
        let _ = writeln!(out, "\nFailed runs (left out of the medians):\n");
        for f in failures {
            let _ = writeln!(out, "{f}");
        }
    }
    out
}

/// Every broker in the reports but the subject, sorted: the peers when none are named.
fn other_labels(reports: &[Report], subject: &str) -> Vec<String> {
    let mut labels: Vec<String> = reports
        .iter()
        .filter(|r| r.broker != subject)
        .map(|r| r.broker.clone())
        .collect();
    labels.sort();
    labels.dedup();
    labels
}

/// A broker's name in headings: its label, capitalised for the two that are proper names.
fn display(label: &str) -> &str {
    match label {
        "berth" => "Berth",
        "mosquitto" => "Mosquitto",
        other => other,
    }
}

/// Whether the case promises delivery, so that a loss disqualifies: every case but QoS 0, where
/// a broker may drop.
fn must_not_lose(case: &str) -> bool {
    !case.ends_with("qos0")
}

/// One broker's figure for a row, with its worst run's losses when they disqualify it.
fn cell(runs: &Runs, case: &str, metric: &str, target: Target) -> Cell {
    let worst_lost = runs
        .ok
        .iter()
        .filter_map(|r| r.metrics.get("lost").copied())
        .reduce(f64::max);
    // On the row of the losses themselves, the value already says it.
    let lost = worst_lost.filter(|&lost| lost > 0.0 && must_not_lose(case) && metric != "lost");
    Cell {
        value: aggregate(&runs.ok, metric, target),
        lost,
    }
}

/// The median over runs; the worst (largest) value for [`Target::Zero`] rows.
fn aggregate(runs: &[Report], metric: &str, target: Target) -> Option<f64> {
    let values: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.metrics.get(metric).copied())
        .collect();
    if target == Target::Zero {
        return values.into_iter().reduce(f64::max);
    }
    median(values)
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// The best figure among the peers that lost nothing, and whose it is: the highest for rates,
/// the lowest for latency, times and memory.
fn best_peer<'a>(peers: &[(&'a str, Cell)], unit: Unit) -> Option<(&'a str, f64)> {
    let higher = unit.higher_is_better();
    peers
        .iter()
        .filter(|(_, cell)| cell.lossless())
        .filter_map(|&(name, cell)| cell.value.map(|v| (name, v)))
        .reduce(|best, next| {
            let better = if higher {
                next.1 > best.1
            } else {
                next.1 < best.1
            };
            if better { next } else { best }
        })
}

fn ratio(subject: Option<f64>, other: Option<f64>) -> Option<f64> {
    match (subject, other) {
        (Some(s), Some(o)) if o != 0.0 => Some(s / o),
        _ => None,
    }
}

fn line(
    title: &str,
    unit: Unit,
    target: Target,
    params: &str,
    subject: Cell,
    peers: &[(&str, Cell)],
) -> String {
    let best = best_peer(peers, unit);
    let ratio_text = match (ratio(subject.value, best.map(|(_, b)| b)), best) {
        (Some(r), Some((name, _))) => format!("{r:.2}× {}", display(name)),
        _ => "–".to_owned(),
    };
    let (target_text, met) = judge(target, unit, subject, peers, best);
    let scenario = if params.is_empty() {
        title.to_owned()
    } else {
        format!("{title} ({params})")
    };
    let mut out = format!("| {scenario} | {} |", show(unit, subject));
    for (_, cell) in peers {
        let _ = write!(out, " {} |", show(unit, *cell));
    }
    let _ = write!(out, " {ratio_text} | {target_text} | {met} |");
    out
}

fn show(unit: Unit, cell: Cell) -> String {
    let mut text = cell
        .value
        .map_or("n/a".to_owned(), |v| format_value(unit, v));
    if let Some(lost) = cell.lost {
        let _ = write!(text, " (lost {})", thousands(lost));
    }
    text
}

/// The target in words and whether the subject meets it (✅ met, ❌ not, – not measurable).
fn judge(
    target: Target,
    unit: Unit,
    subject: Cell,
    peers: &[(&str, Cell)],
    best: Option<(&str, f64)>,
) -> (String, &'static str) {
    // A named peer's figure, unless it lost what it should have delivered.
    let peer = |name: &str| {
        peers
            .iter()
            .find(|(p, _)| *p == name)
            .map(|&(_, cell)| cell)
            .filter(Cell::lossless)
            .and_then(|cell| cell.value)
    };
    let s = subject.value;
    let (text, ok) = match target {
        Target::BestRatioAtLeast(x) => (
            format!("≥ {x}× best peer"),
            ratio(s, best.map(|(_, b)| b)).map(|r| r >= x),
        ),
        Target::PeerRatioAtLeast(name, x) => {
            let r = ratio(s, peer(name));
            let mut text = format!("≥ {x}× {}", display(name));
            if let Some(r) = r {
                let _ = write!(text, " (now {r:.2}×)");
            }
            (text, r.map(|r| r >= x))
        }
        Target::AtMostPeer(name) => (
            format!("≤ {}", display(name)),
            s.zip(peer(name)).map(|(s, p)| s <= p),
        ),
        Target::AtMostAndBelowPeers(x) => (
            format!("≤ {} and below every peer", format_value(unit, x)),
            s.map(|s| s <= x && best.is_none_or(|(_, b)| s < b)),
        ),
        Target::AtMost(x) => (format!("≤ {}", format_value(unit, x)), s.map(|s| s <= x)),
        Target::Zero => ("0".to_owned(), s.map(|s| s == 0.0)),
        Target::None => return (String::new(), ""),
    };
    // A subject that lost what it promised to deliver meets no target of the case.
    let ok = if subject.lossless() { ok } else { Some(false) };
    let verdict = match ok {
        Some(true) => "✅",
        Some(false) => "❌",
        None => "–",
    };
    (text, verdict)
}

fn format_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::PerSecond | Unit::Count => thousands(v),
        Unit::Micros => micros(v),
        Unit::Seconds => format!("{v:.2} s"),
        Unit::Bytes => format!("{} B", thousands(v)),
        Unit::Fraction => format!("{:.0} %", v * 100.0),
    }
}

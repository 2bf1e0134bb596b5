//! The comparison table of `bench/compare`: medians of repeated runs per broker, the ratio
//! subject ÷ baseline (Berth ÷ Mosquitto), and each target of issue 5 beside it.
//!
//! Input: JSON lines, one [`Report`] per run (`berth-bench … --json --label NAME`). Runs that
//! reported errors are listed and left out of the medians.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;

use crate::report::{Report, micros, thousands};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    /// Messages (or connections) per second.
    PerSecond,
    Micros,
    Bytes,
    /// A fraction shown as a percentage.
    Fraction,
    Count,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// subject ÷ baseline ≥ x.
    RatioAtLeast(f64),
    /// subject ≤ x and subject < baseline.
    AtMostAndBelowBaseline(f64),
    /// subject ≤ x.
    AtMost(f64),
    /// subject ≥ x.
    AtLeast(f64),
    /// subject = 0 in every run.
    Zero,
    None,
}

#[derive(Debug, Clone, Copy)]
struct Row {
    case: &'static str,
    metric: &'static str,
    title: &'static str,
    unit: Unit,
    target: Target,
}

/// The rows of issue 5's target table, in its order, plus a few figures shown for reference.
const ROWS: &[Row] = &[
    Row {
        case: "fan-in-qos0",
        metric: "recv_msg_s",
        title: "fan-in QoS 0, msg/s",
        unit: Unit::PerSecond,
        target: Target::RatioAtLeast(2.5),
    },
    Row {
        case: "fan-in-qos1",
        metric: "recv_msg_s",
        title: "fan-in QoS 1, msg/s",
        unit: Unit::PerSecond,
        target: Target::RatioAtLeast(5.0),
    },
    Row {
        case: "fan-out-qos1",
        metric: "recv_msg_s",
        title: "fan-out QoS 1, deliveries/s",
        unit: Unit::PerSecond,
        target: Target::RatioAtLeast(7.0),
    },
    Row {
        case: "pairs-qos1",
        metric: "recv_msg_s",
        title: "pairs QoS 1, msg/s",
        unit: Unit::PerSecond,
        target: Target::RatioAtLeast(5.0),
    },
    Row {
        case: "latency-qos1",
        metric: "p99_us",
        title: "QoS 1 latency p99",
        unit: Unit::Micros,
        target: Target::AtMostAndBelowBaseline(1000.0),
    },
    Row {
        case: "latency-qos1",
        metric: "p50_us",
        title: "QoS 1 latency p50",
        unit: Unit::Micros,
        target: Target::None,
    },
    Row {
        case: "latency-qos1",
        metric: "max_us",
        title: "QoS 1 latency max",
        unit: Unit::Micros,
        target: Target::None,
    },
    Row {
        case: "offline-queue",
        metric: "drain_msg_s",
        title: "offline-queue drain, msg/s",
        unit: Unit::PerSecond,
        target: Target::RatioAtLeast(1.0),
    },
    Row {
        case: "offline-queue",
        metric: "offline_pub_ratio",
        title: "offline-queue publish rate, offline ÷ online",
        unit: Unit::Fraction,
        target: Target::AtLeast(0.5),
    },
    Row {
        case: "offline-queue",
        metric: "offline_pub_msg_s",
        title: "offline-queue publish into offline session, msg/s",
        unit: Unit::PerSecond,
        target: Target::None,
    },
    Row {
        case: "offline-queue",
        metric: "lost",
        title: "offline-queue lost (worst run)",
        unit: Unit::Count,
        target: Target::Zero,
    },
    Row {
        case: "conns",
        metric: "rss_per_conn_b",
        title: "idle connections, broker RSS per connection",
        unit: Unit::Bytes,
        target: Target::AtMost(2048.0),
    },
    Row {
        case: "conns",
        metric: "connect_per_s",
        title: "idle connections, connects/s",
        unit: Unit::PerSecond,
        target: Target::None,
    },
    Row {
        case: "sessions",
        metric: "rss_per_session_b",
        title: "offline sessions, broker RSS per session",
        unit: Unit::Bytes,
        target: Target::AtMost(200.0),
    },
    Row {
        case: "sessions",
        metric: "rss_per_empty_session_b",
        title: "offline sessions, RSS per session before queueing",
        unit: Unit::Bytes,
        target: Target::None,
    },
];

/// Runs of one case on one broker.
#[derive(Debug, Default)]
struct Runs {
    ok: Vec<Report>,
    failed: Vec<Report>,
}

/// Reads the result files and renders the Markdown.
pub fn render_files(files: &[PathBuf], subject: &str, baseline: &str) -> anyhow::Result<String> {
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
    let mut out = render(&reports, subject, baseline);
    if unreadable > 0 {
        let _ = writeln!(out, "\n{unreadable} result line(s) could not be read.");
    }
    Ok(out)
}

pub fn render(reports: &[Report], subject: &str, baseline: &str) -> String {
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

    // Known rows for the cases present, then a throughput row for any other case.
    let rows: Vec<Row> = ROWS
        .iter()
        .copied()
        .filter(|row| case_order.iter().any(|c| c == row.case))
        .collect();
    let extra_titles: Vec<String> = case_order
        .iter()
        .filter(|c| !ROWS.iter().any(|r| r.case == c.as_str()))
        .cloned()
        .collect();

    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | {subject} | {baseline} | {subject} ÷ {baseline} | target | met |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|:---:|");
    let mut previous_case = "";
    for row in rows {
        let (s_runs, b_runs) = (runs_of(row.case, subject), runs_of(row.case, baseline));
        // The run's shape once per case, on its first row.
        let params = if row.case == previous_case {
            String::new()
        } else {
            s_runs
                .ok
                .first()
                .or(b_runs.ok.first())
                .map(|r| r.params.clone())
                .unwrap_or_default()
        };
        previous_case = row.case;
        let s = aggregate(&s_runs.ok, row.metric, row.target);
        let b = aggregate(&b_runs.ok, row.metric, row.target);
        let _ = writeln!(
            out,
            "{}",
            line(row.title, row.unit, row.target, &params, s, b)
        );
    }
    for case in &extra_titles {
        let (s_runs, b_runs) = (runs_of(case, subject), runs_of(case, baseline));
        let params = s_runs
            .ok
            .first()
            .or(b_runs.ok.first())
            .map(|r| r.params.clone())
            .unwrap_or_default();
        let s = aggregate(&s_runs.ok, "recv_msg_s", Target::None);
        let b = aggregate(&b_runs.ok, "recv_msg_s", Target::None);
        let title = format!("{case}, msg/s received");
        let _ = writeln!(
            out,
            "{}",
            line(&title, Unit::PerSecond, Target::None, &params, s, b)
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
        for broker in [subject, baseline] {
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

fn line(
    title: &str,
    unit: Unit,
    target: Target,
    params: &str,
    subject: Option<f64>,
    baseline: Option<f64>,
) -> String {
    let show = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format_value(unit, v));
    let ratio = match (subject, baseline) {
        (Some(s), Some(b)) if b != 0.0 => Some(s / b),
        _ => None,
    };
    let ratio_text = ratio.map_or("–".to_owned(), |r| format!("{r:.2}×"));
    let (target, met) = judge(target, subject, baseline, ratio);
    let scenario = if params.is_empty() {
        title.to_owned()
    } else {
        format!("{title} ({params})")
    };
    format!(
        "| {scenario} | {} | {} | {ratio_text} | {target} | {met} |",
        show(subject),
        show(baseline)
    )
}

fn judge(
    target: Target,
    subject: Option<f64>,
    baseline: Option<f64>,
    ratio: Option<f64>,
) -> (String, &'static str) {
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "✅",
        Some(false) => "❌",
        None => "–",
    };
    match target {
        Target::RatioAtLeast(x) => (format!("≥ {x}×"), verdict(ratio.map(|r| r >= x))),
        Target::AtMostAndBelowBaseline(x) => (
            format!("≤ {} and below baseline", micros(x)),
            verdict(subject.map(|s| s <= x && baseline.is_none_or(|b| s < b))),
        ),
        Target::AtMost(x) => (
            format!("≤ {} B", thousands(x)),
            verdict(subject.map(|s| s <= x)),
        ),
        Target::AtLeast(x) => (
            format!("≥ {:.0} %", x * 100.0),
            verdict(subject.map(|s| s >= x)),
        ),
        Target::Zero => ("0".to_owned(), verdict(subject.map(|s| s == 0.0))),
        Target::None => (String::new(), ""),
    }
}

fn format_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::PerSecond => thousands(v),
        Unit::Micros => micros(v),
        Unit::Bytes => format!("{} B", thousands(v)),
        Unit::Fraction => format!("{:.0} %", v * 100.0),
        Unit::Count => thousands(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(case: &str, broker: &str, metrics: &[(&str, f64)]) -> Report {
        let mut r = Report {
            case: case.into(),
            broker: broker.into(),
            params: "8 → 1".into(),
            ..Report::default()
        };
        for (name, value) in metrics {
            r.metric(name, *value);
        }
        r
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![f64::NAN, 1.0]), Some(1.0));
    }

    #[test]
    fn ratio_rows_use_medians_and_judge_the_target() {
        let mut reports = Vec::new();
        for v in [300.0, 100.0, 280.0] {
            reports.push(report(
                "fan-in-qos1",
                "berth",
                &[("recv_msg_s", v * 1000.0)],
            ));
        }
        for v in [50.0, 60.0, 55.0] {
            reports.push(report(
                "fan-in-qos1",
                "mosquitto",
                &[("recv_msg_s", v * 1000.0)],
            ));
        }
        let table = render(&reports, "berth", "mosquitto");
        let row = table
            .lines()
            .find(|l| l.starts_with("| fan-in QoS 1"))
            .unwrap();
        assert!(
            row.contains("| 280,000 | 55,000 | 5.09× | ≥ 5× | ✅ |"),
            "{row}"
        );
        assert!(table.contains("| fan-in-qos1 | berth | 3/3 |"), "{table}");
    }

    #[test]
    fn failed_runs_are_listed_and_left_out() {
        let mut bad = report("pairs-qos1", "berth", &[("recv_msg_s", 1.0)]);
        bad.errors.push("publisher 0: no PUBACK within 10s".into());
        let reports = vec![
            bad,
            report("pairs-qos1", "berth", &[("recv_msg_s", 500_000.0)]),
            report("pairs-qos1", "mosquitto", &[("recv_msg_s", 200_000.0)]),
        ];
        let table = render(&reports, "berth", "mosquitto");
        let row = table
            .lines()
            .find(|l| l.starts_with("| pairs QoS 1"))
            .unwrap();
        assert!(
            row.contains("| 500,000 | 200,000 | 2.50× | ≥ 5× | ❌ |"),
            "{row}"
        );
        assert!(table.contains("| pairs-qos1 | berth | 1/2 |"));
        assert!(
            table.contains("failed run 1: publisher 0: no PUBACK"),
            "{table}"
        );
    }

    #[test]
    fn absolute_targets_and_missing_baseline() {
        let reports = vec![
            report(
                "latency-qos1",
                "berth",
                &[("p99_us", 800.0), ("p50_us", 100.0), ("max_us", 5000.0)],
            ),
            report(
                "latency-qos1",
                "mosquitto",
                &[("p99_us", 900.0), ("p50_us", 150.0), ("max_us", 4000.0)],
            ),
            report(
                "conns",
                "berth",
                &[("rss_per_conn_b", 3000.0), ("connect_per_s", 9000.0)],
            ),
            report(
                "offline-queue",
                "berth",
                &[
                    ("lost", 0.0),
                    ("offline_pub_ratio", 0.6),
                    ("drain_msg_s", 1.0),
                    ("offline_pub_msg_s", 1.0),
                ],
            ),
            report(
                "offline-queue",
                "berth",
                &[
                    ("lost", 2.0),
                    ("offline_pub_ratio", 0.6),
                    ("drain_msg_s", 1.0),
                    ("offline_pub_msg_s", 1.0),
                ],
            ),
        ];
        let table = render(&reports, "berth", "mosquitto");
        let p99 = table
            .lines()
            .find(|l| l.starts_with("| QoS 1 latency p99"))
            .unwrap();
        assert!(
            p99.contains("| 800 µs | 900 µs | 0.89× | ≤ 1.00 ms and below baseline | ✅ |"),
            "{p99}"
        );
        let rss = table
            .lines()
            .find(|l| l.starts_with("| idle connections, broker RSS"))
            .unwrap();
        assert!(
            rss.contains("| 3,000 B | n/a | – | ≤ 2,048 B | ❌ |"),
            "{rss}"
        );
        let lost = table
            .lines()
            .find(|l| l.starts_with("| offline-queue lost"))
            .unwrap();
        assert!(
            lost.contains("| 2 | n/a | – | 0 | ❌ |"),
            "worst run counts: {lost}"
        );
        let ratio = table
            .lines()
            .find(|l| l.starts_with("| offline-queue publish rate"))
            .unwrap();
        assert!(
            ratio.contains("| 60 % |") && ratio.contains("✅"),
            "{ratio}"
        );
        assert!(!table.contains("| sessions"), "absent cases have no rows");
    }

    #[test]
    fn unknown_cases_get_a_throughput_row() {
        let reports = vec![report("fan-out-qos0", "berth", &[("recv_msg_s", 10.0)])];
        let table = render(&reports, "berth", "mosquitto");
        assert!(
            table.contains("| fan-out-qos0, msg/s received (8 → 1) | 10 | n/a |"),
            "{table}"
        );
    }
}

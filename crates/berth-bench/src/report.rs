//! The result of one run: a human line, and a JSON object for scripts (`bench/compare`, `table`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::latency::LatencySummary;
use crate::ledger::Tally;
use crate::sys::CpuReport;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    /// fan-in, fan-out, pairs, latency, offline-queue, conns, sessions.
    pub scenario: String,
    /// Key in comparison tables, e.g. `fan-in-qos1`.
    pub case: String,
    /// The `--label` of the broker.
    pub broker: String,
    /// The run's shape in words: "8 → 1, MQTT 3.1.1, QoS 1, 64 B, 10 s".
    pub params: String,
    /// The headline figures in words.
    pub summary: String,
    /// Every figure by name (`recv_msg_s`, `p99_us`, `rss_per_conn_b`, …).
    pub metrics: BTreeMap<String, f64>,
    /// Delivery over all subscribers and streams.
    pub delivery: Option<Tally>,
    /// Publish → receive.
    pub latency: Option<LatencySummary>,
    /// Per subscriber and publisher stream.
    pub streams: Vec<StreamTally>,
    pub cpu: CpuReport,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct StreamTally {
    pub subscriber: u32,
    pub stream: u32,
    #[serde(flatten)]
    pub tally: Tally,
}

impl Report {
    pub fn metric(&mut self, name: &str, value: f64) {
        self.metrics.insert(name.to_owned(), value);
    }

    /// One line for people.
    pub fn human(&self) -> String {
        let mut line = format!(
            "{} [{}] {}: {}",
            self.scenario, self.broker, self.params, self.summary
        );
        if let Some(d) = &self.delivery {
            let _ = write!(
                line,
                "; lost {} dup {} reordered {}",
                d.lost, d.duplicates, d.reordered
            );
        }
        let c = &self.cpu;
        let _ = write!(line, "; CPU cores: bench {:.2}", c.bench_cores);
        if let Some(broker) = c.broker_cores {
            let _ = write!(line, ", broker {broker:.2}");
        }
        if let Some(other) = c.other_cores {
            let _ = write!(line, ", other {other:.2}");
        }
        let _ = write!(line, " (of {})", c.cores);
        for error in &self.errors {
            let _ = write!(line, "\n  error: {error}");
        }
        line
    }
}

/// `1234567.8` → `1,234,568`.
pub fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let rounded = value.round() as i64;
    let digits = rounded.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if rounded < 0 { format!("-{out}") } else { out }
}

/// Microseconds as `850 µs` or `1.20 ms`.
pub fn micros(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(-12_345.0), "-12,345");
    }

    #[test]
    fn micros_switch_to_milliseconds() {
        assert_eq!(micros(850.2), "850 µs");
        assert_eq!(micros(1200.0), "1.20 ms");
    }

    #[test]
    fn json_round_trips() {
        let mut report = Report {
            scenario: "fan-in".into(),
            case: "fan-in-qos1".into(),
            delivery: Some(Tally {
                sent: 10,
                unique: 10,
                ..Tally::default()
            }),
            ..Report::default()
        };
        report.metric("recv_msg_s", 123.0);
        let text = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back.metrics["recv_msg_s"], 123.0);
        assert_eq!(back.delivery.unwrap().sent, 10);
        assert!(report.human().contains("lost 0 dup 0 reordered 0"));
    }

    #[test]
    fn a_bare_error_line_from_the_script_is_a_report() {
        let line = r#"{"scenario":"conns","case":"conns","broker":"berth","errors":["the broker did not start"]}"#;
        let report: Report = serde_json::from_str(line).unwrap();
        assert_eq!(report.broker, "berth");
        assert_eq!(report.errors.len(), 1);
        assert!(report.metrics.is_empty());
    }
}

//! The scenarios. Each builds its connections, drives them, and returns a `Report`.
//!
//! - `traffic`: fan-in, fan-out, pairs and latency — publishers and subscribers wired by a
//!   `traffic::Topology`;
//! - `offline`: offline-queue;
//! - `conns`: idle connections;
//! - `sessions`: offline persistent sessions with queued messages.

pub mod conns;
pub mod offline;
pub mod sessions;
pub mod takeover;
pub mod traffic;

use anyhow::anyhow;
use berth_codec::{TopicFilter, TopicName};

use crate::cli::Settings;
use crate::conn::{ConnectSpec, SessionKind};

pub fn topic(text: &str) -> anyhow::Result<TopicName> {
    TopicName::parse(text).map_err(|e| anyhow!("topic {text:?}: {e}"))
}

pub fn filter(text: &str) -> anyhow::Result<TopicFilter> {
    TopicFilter::parse(text).map_err(|e| anyhow!("topic filter {text:?}: {e}"))
}

/// Topics of this run start with this.
pub fn prefix(s: &Settings) -> String {
    format!("berth-bench/{}", s.run_id)
}

pub fn connect_spec(s: &Settings, client_id: String, session: SessionKind) -> ConnectSpec {
    ConnectSpec {
        version: s.version,
        client_id,
        session,
        keep_alive: s.keep_alive,
    }
}

/// `8 → 1, MQTT 3.1.1, QoS 1, 64 B` and the limits.
pub fn describe(s: &Settings, shape: &str) -> String {
    let mut text = format!(
        "{shape}, MQTT {}, QoS {}, {} B",
        s.version_name(),
        s.qos_number(),
        s.payload
    );
    if let Some(d) = s.duration_or_default() {
        text.push_str(&format!(", {:.0} s", d.as_secs_f64()));
    }
    if let Some(m) = s.messages {
        text.push_str(&format!(", {m} msgs/publisher"));
    }
    if let Some(r) = s.rate {
        text.push_str(&format!(", {r:.0} msg/s"));
    }
    text
}

/// Seconds between two instants as a positive divisor.
pub fn seconds(from: std::time::Instant, to: std::time::Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64().max(1e-9)
}

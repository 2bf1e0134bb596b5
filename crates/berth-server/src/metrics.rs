//! Prometheus export of the broker's [`Stats`].
//!
//! The broker keeps plain numbers ([`Stats`]); something on the tokio side calls
//! [`Metrics::observe`] with a snapshot now and then, and `GET /metrics` calls
//! [`Metrics::render`]. Levels are gauges; `_total` values are counters, advanced by the
//! difference since the previous snapshot, so they never go down (a counter exported as a gauge
//! would break `rate()`). The registry is this struct's own, not the process-global one, so that
//! several servers in one test process do not share metrics.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use berth_core::{DropReason, Stats};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("registering metric {name} failed: {source}")]
    Register {
        name: &'static str,
        #[source]
        source: prometheus::Error,
    },
}

/// The broker's metrics in a registry of their own.
pub struct Metrics {
    registry: Registry,
    connections: IntGauge,
    sessions: IntGauge,
    queued_messages: IntGauge,
    retained_messages: IntGauge,
    connects_total: IntCounter,
    publishes_received_total: IntCounter,
    publishes_sent_total: IntCounter,
    wills_published_total: IntCounter,
    sessions_expired_total: IntCounter,
    protocol_errors_total: IntCounter,
    stranded_messages: IntGauge,
    stranded_recovered_total: IntCounter,
    handoff_messages: IntGauge,
    handoff_delivered_total: IntCounter,
    publish_acks_held_total: IntCounter,
    publish_rate_exceeded_total: IntCounter,
    connections_refused_total: IntCounterVec,
    messages_dropped_total: IntCounterVec,
    proxy_headers_refused_total: IntCounterVec,
    tls_handshakes_failed_total: IntCounter,
    ws_upgrades_failed_total: IntCounter,
    connects_refused_auth_total: IntCounterVec,
    /// The snapshot the counters stand at; `observe` advances them by the difference.
    last: Mutex<Stats>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let gauge = |name: &'static str, help: &str| -> Result<IntGauge, MetricsError> {
            let gauge = IntGauge::with_opts(Opts::new(name, help))
                .map_err(|source| MetricsError::Register { name, source })?;
            registry
                .register(Box::new(gauge.clone()))
                .map_err(|source| MetricsError::Register { name, source })?;
            Ok(gauge)
        };
        let counter = |name: &'static str, help: &str| -> Result<IntCounter, MetricsError> {
            let counter = IntCounter::with_opts(Opts::new(name, help))
                .map_err(|source| MetricsError::Register { name, source })?;
            registry
                .register(Box::new(counter.clone()))
                .map_err(|source| MetricsError::Register { name, source })?;
            Ok(counter)
        };
        let connections = gauge("berth_connections", "Open MQTT connections.")?;
        let sessions = gauge(
            "berth_sessions",
            "Sessions this node holds, connected or not.",
        )?;
        let queued_messages = gauge(
            "berth_queued_messages",
            "Messages waiting in session queues.",
        )?;
        let retained_messages = gauge("berth_retained_messages", "Retained messages.")?;
        let connects_total = counter("berth_connects_total", "CONNECT packets handled.")?;
        let publishes_received_total = counter(
            "berth_publishes_received_total",
            "PUBLISH packets received from clients.",
        )?;
        let publishes_sent_total = counter(
            "berth_publishes_sent_total",
            "PUBLISH packets sent to clients.",
        )?;
        let wills_published_total =
            counter("berth_wills_published_total", "Will messages published.")?;
        let sessions_expired_total = counter(
            "berth_sessions_expired_total",
            "Sessions ended because their expiry interval ran out.",
        )?;
        let protocol_errors_total = counter(
            "berth_protocol_errors_total",
            "Connections closed for a malformed packet or a protocol violation.",
        )?;

        let stranded_messages = gauge(
            "berth_stranded_messages",
            "Messages held here for sessions another node took over without reaching this node; they go to it once it pulls them.",
        )?;
        let stranded_recovered_total = counter(
            "berth_stranded_messages_recovered_total",
            "Messages of such stranded backlogs recovered from another node into sessions owned here.",
        )?;

        let handoff_messages = gauge(
            "berth_handoff_messages",
            "Messages kept here for other nodes' sessions whose owner could not be reached (hinted handoff), not yet delivered.",
        )?;
        let handoff_delivered_total = counter(
            "berth_handoff_delivered_total",
            "Hinted-handoff messages delivered to their session's owner.",
        )?;

        let publish_acks_held_total = counter(
            "berth_publish_acks_held_total",
            "QoS 1/2 acknowledgements held back because the message was queued for a connected subscriber that is not keeping up (publisher flow control).",
        )?;
        let publish_rate_exceeded_total = counter(
            "berth_publish_rate_exceeded_total",
            "Connections closed for publishing faster than limits.publish_rate (MQTT 5: DISCONNECT 0x96).",
        )?;

        // Every reason is exported from the start (at 0), so a query never meets a missing series.
        let by_reason = |name: &'static str,
                         help: &str,
                         reasons: &[&str]|
         -> Result<IntCounterVec, MetricsError> {
            let counter = IntCounterVec::new(Opts::new(name, help), &["reason"])
                .map_err(|source| MetricsError::Register { name, source })?;
            registry
                .register(Box::new(counter.clone()))
                .map_err(|source| MetricsError::Register { name, source })?;
            for reason in reasons {
                let _ = counter.with_label_values(&[*reason]);
            }
            Ok(counter)
        };
        let drop_reasons: Vec<&str> = DropReason::ALL.iter().map(|r| r.label()).collect();
        let messages_dropped_total = by_reason(
            "berth_messages_dropped_total",
            "Messages dropped instead of delivered, by reason.",
            &drop_reasons,
        )?;
        let proxy_headers_refused_total = by_reason(
            "berth_proxy_headers_refused_total",
            "Connections closed before MQTT because their PROXY protocol header was missing (where required), malformed, too long or late, by reason.",
            &crate::proxy_protocol::ProxyError::REASONS,
        )?;
        let tls_handshakes_failed_total = counter(
            "berth_tls_handshakes_failed_total",
            "TLS connections closed before MQTT because the TLS handshake failed or timed out (bad or missing client certificate, a client that does not trust the server's, plain MQTT sent to the TLS port).",
        )?;
        let connections_refused_total = by_reason(
            "berth_connections_refused_total",
            "Connections closed as soon as they were accepted, before reading anything: max_connections (limits.max_connections open already), connection_rate (over limits.connection_rate new connections per second).",
            &crate::gate::Refused::REASONS,
        )?;
        let ws_upgrades_failed_total = counter(
            "berth_ws_upgrades_failed_total",
            "WebSocket connections closed before MQTT because the HTTP upgrade failed or timed out (wrong path, a subprotocol other than mqtt, not a WebSocket request).",
        )?;
        let connects_refused_auth_total = by_reason(
            "berth_connects_refused_auth_total",
            "CONNECTs refused by authentication, by reason: bad_credentials (CONNACK 0x86 / 3.1.1 code 4), not_authorized (0x87 / 5), rate_limited (0x9F / 3: too many failures from the address).",
            &crate::auth::Refusal::REASONS,
        )?;

        Ok(Metrics {
            registry,
            connections,
            sessions,
            queued_messages,
            retained_messages,
            connects_total,
            publishes_received_total,
            publishes_sent_total,
            wills_published_total,
            sessions_expired_total,
            protocol_errors_total,
            stranded_messages,
            stranded_recovered_total,
            handoff_messages,
            handoff_delivered_total,
            publish_acks_held_total,
            publish_rate_exceeded_total,
            connections_refused_total,
            messages_dropped_total,
            proxy_headers_refused_total,
            tls_handshakes_failed_total,
            ws_upgrades_failed_total,
            connects_refused_auth_total,
            last: Mutex::new(Stats::default()),
        })
    }

    /// A connection closed for its PROXY protocol header (`ProxyError::reason`).
    pub fn count_proxy_refused(&self, reason: &str) {
        self.proxy_headers_refused_total
            .with_label_values(&[reason])
            .inc();
    }

    pub fn count_tls_refused(&self) {
        self.tls_handshakes_failed_total.inc();
    }

    pub fn count_connection_refused(&self, reason: &str) {
        self.connections_refused_total
            .with_label_values(&[reason])
            .inc();
    }

    pub fn count_ws_refused(&self) {
        self.ws_upgrades_failed_total.inc();
    }

    pub fn count_auth_refused(&self, reason: &str) {
        self.connects_refused_auth_total
            .with_label_values(&[reason])
            .inc();
    }

    /// Brings the metrics to `stats`: gauges take its levels, counters grow by what its totals
    /// grew since the previous call. A total below the previous one means the source started
    /// again from zero; then all of it is new (as Prometheus treats a counter reset).
    pub fn observe(&self, stats: &Stats) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        set(&self.connections, stats.connections);
        set(&self.sessions, stats.sessions);
        set(&self.queued_messages, stats.queued_messages);
        set(&self.retained_messages, stats.retained_messages);
        set(&self.stranded_messages, stats.stranded_messages);
        set(&self.handoff_messages, stats.handoff_messages);
        advance(
            &self.handoff_delivered_total,
            last.handoff_delivered_total,
            stats.handoff_delivered_total,
        );
        advance(
            &self.stranded_recovered_total,
            last.stranded_recovered_total,
            stats.stranded_recovered_total,
        );
        advance(
            &self.publish_acks_held_total,
            last.publish_acks_held_total,
            stats.publish_acks_held_total,
        );
        advance(
            &self.publish_rate_exceeded_total,
            last.publish_rate_exceeded_total,
            stats.publish_rate_exceeded_total,
        );
        advance(
            &self.connects_total,
            last.connects_total,
            stats.connects_total,
        );
        advance(
            &self.publishes_received_total,
            last.publishes_received_total,
            stats.publishes_received_total,
        );
        advance(
            &self.publishes_sent_total,
            last.publishes_sent_total,
            stats.publishes_sent_total,
        );
        advance(
            &self.wills_published_total,
            last.wills_published_total,
            stats.wills_published_total,
        );
        advance(
            &self.sessions_expired_total,
            last.sessions_expired_total,
            stats.sessions_expired_total,
        );
        advance(
            &self.protocol_errors_total,
            last.protocol_errors_total,
            stats.protocol_errors_total,
        );
        for reason in DropReason::ALL {
            advance(
                &self
                    .messages_dropped_total
                    .with_label_values(&[reason.label()]),
                last.dropped_total(reason),
                stats.dropped_total(reason),
            );
        }
        *last = stats.clone();
    }

    /// Every metric in the Prometheus text format (`text/plain; version=0.0.4`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(error) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            // Only invalid metric names make the encoder fail; ours are fixed and valid.
            tracing::error!(%error, "encoding metrics failed");
        }
        out
    }
}

fn set(gauge: &IntGauge, value: u64) {
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
}

fn advance(counter: &IntCounter, last: u64, now: u64) {
    let delta = if now >= last { now - last } else { now };
    if delta > 0 {
        counter.inc_by(delta);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn connects(connects_total: u64, connections: u64) -> Stats {
        let mut stats = Stats::default();
        stats.connects_total = connects_total;
        stats.connections = connections;
        stats
    }

    fn line_value(text: &str, series: &str) -> u64 {
        let line = text
            .lines()
            .find(|line| line.split_once(' ').map(|(name, _)| name) == Some(series))
            .unwrap_or_else(|| panic!("no series {series} in:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn every_metric_is_exported_with_its_type_before_any_observation() {
        let text = Metrics::new().unwrap().render();
        for gauge in [
            "berth_connections",
            "berth_sessions",
            "berth_queued_messages",
            "berth_retained_messages",
        ] {
            assert!(
                text.contains(&format!("# TYPE {gauge} gauge\n")),
                "{gauge} in:\n{text}"
            );
            assert_eq!(line_value(&text, gauge), 0);
        }
        for counter in [
            "berth_connects_total",
            "berth_publishes_received_total",
            "berth_publishes_sent_total",
            "berth_wills_published_total",
            "berth_sessions_expired_total",
            "berth_protocol_errors_total",
            "berth_messages_dropped_total",
        ] {
            assert!(
                text.contains(&format!("# TYPE {counter} counter\n")),
                "{counter} in:\n{text}"
            );
        }
        for reason in DropReason::ALL {
            let series = format!(
                "berth_messages_dropped_total{{reason=\"{}\"}}",
                reason.label()
            );
            assert_eq!(line_value(&text, &series), 0, "{series}");
        }
    }

    #[test]
    fn counters_advance_by_deltas_and_gauges_follow_levels() {
        let metrics = Metrics::new().unwrap();
        let mut stats = Stats::default();
        stats.connections = 5;
        stats.sessions = 7;
        stats.queued_messages = 100;
        stats.retained_messages = 3;
        stats.connects_total = 10;
        stats.publishes_received_total = 50;
        stats.publishes_sent_total = 40;
        stats.wills_published_total = 1;
        stats.sessions_expired_total = 2;
        stats.protocol_errors_total = 4;
        stats.count_drop(DropReason::QueueFull);
        metrics.observe(&stats);
        // Observing the same snapshot again changes nothing.
        metrics.observe(&stats);
        assert_eq!(metrics.connects_total.get(), 10);
        assert_eq!(metrics.publishes_received_total.get(), 50);

        stats.connections = 2;
        stats.queued_messages = 30;
        stats.connects_total = 13;
        stats.publishes_received_total = 65;
        stats.publishes_sent_total = 41;
        stats.count_drop(DropReason::QueueFull);
        stats.count_drop(DropReason::Expired);
        metrics.observe(&stats);

        let text = metrics.render();
        assert_eq!(line_value(&text, "berth_connections"), 2);
        assert_eq!(line_value(&text, "berth_queued_messages"), 30);
        assert_eq!(line_value(&text, "berth_connects_total"), 13);
        assert_eq!(line_value(&text, "berth_publishes_received_total"), 65);
        assert_eq!(line_value(&text, "berth_publishes_sent_total"), 41);
        assert_eq!(line_value(&text, "berth_wills_published_total"), 1);
        assert_eq!(line_value(&text, "berth_sessions_expired_total"), 2);
        assert_eq!(line_value(&text, "berth_protocol_errors_total"), 4);
        assert_eq!(
            line_value(&text, "berth_messages_dropped_total{reason=\"queue_full\"}"),
            2
        );
        assert_eq!(
            line_value(&text, "berth_messages_dropped_total{reason=\"expired\"}"),
            1
        );
        assert_eq!(
            line_value(
                &text,
                "berth_messages_dropped_total{reason=\"qos0_offline\"}"
            ),
            0
        );
    }

    #[test]
    fn a_lower_total_is_a_restart_of_the_source_and_never_lowers_a_counter() {
        let metrics = Metrics::new().unwrap();
        metrics.observe(&connects(10, 4));
        // The source restarted from zero and has counted 3 connects since.
        metrics.observe(&connects(3, 1));
        assert_eq!(metrics.connects_total.get(), 13);
        assert_eq!(metrics.connections.get(), 1);
        metrics.observe(&connects(5, 1));
        assert_eq!(metrics.connects_total.get(), 15);
    }

    #[test]
    fn two_instances_do_not_share_values() {
        let a = Metrics::new().unwrap();
        let b = Metrics::new().unwrap();
        a.observe(&connects(9, 0));
        assert_eq!(line_value(&b.render(), "berth_connects_total"), 0);
        assert_eq!(line_value(&a.render(), "berth_connects_total"), 9);
    }
}

//! Prometheus export of the broker's [`Stats`], the latency histograms ([`latency`]), Raft's
//! health ([`cluster`]), what passes between nodes ([`peer`]: forwards by peer, takeovers) and
//! the process's own figures (CPU, memory, file descriptors, threads).
//!
//! The broker keeps plain numbers ([`Stats`]); something on the tokio side calls
//! [`Metrics::observe`] with a snapshot now and then, and `GET /metrics` calls
//! [`Metrics::render`]. Levels are gauges; `_total` values are counters, advanced by the
//! difference since the previous snapshot, so they never go down (a counter exported as a gauge
//! would break `rate()`). The registry is this struct's own, not the process-global one, so that
//! several servers in one test process do not share metrics.

mod cluster;
pub mod latency;
mod peer;
mod store;
mod traffic;

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use berth_core::{CloseCause, DropReason, LimitReason, NodeId, Stats};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::cluster_port::ClusterHealth;
pub use latency::ConnectOutcome;
pub use peer::{ForwardCounts, ForwardResult, TakeoverResult};
pub(crate) use traffic::PacketCounts;

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
    qos2_state_waits_total: IntCounter,
    qos2_state_waits_expired_total: IntCounter,
    handoff_messages: IntGauge,
    handoff_delivered_total: IntCounter,
    publish_acks_held_total: IntCounter,
    publish_rate_exceeded_total: IntCounter,
    publish_bytes_rate_exceeded_total: IntCounter,
    connections_refused_total: IntCounterVec,
    listener_refusals_total: IntCounterVec,
    messages_dropped_total: IntCounterVec,
    limit_refusals_total: IntCounterVec,
    proxy_headers_refused_total: IntCounterVec,
    tls_handshakes_failed_total: IntCounter,
    ws_upgrades_failed_total: IntCounter,
    connects_refused_auth_total: IntCounterVec,
    connections_closed_total: IntCounterVec,
    connects_refused_total: IntCounterVec,
    draining: IntGauge,
    ready: IntGauge,
    pub(crate) latency: latency::Latency,
    traffic: traffic::Traffic,
    subscriptions: IntGauge,
    largest_queue_messages: IntGauge,
    raft: cluster::RaftGauges,
    peer: peer::PeerCounters,
    store: store::StoreGauges,
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
        let gauge = |name, help| gauge(&registry, name, help);
        let counter = |name, help| counter(&registry, name, help);
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

        let qos2_state_waits_total = counter(
            "berth_qos2_state_waits_total",
            "Waits begun for an older copy's QoS 2 state: a session held QoS 2 deliveries or a re-sent QoS 2 PUBLISH until the copy it resumed without is back (at most 30 s).",
        )?;
        let qos2_state_waits_expired_total = counter(
            "berth_qos2_state_waits_expired_total",
            "Of those waits, the ones that ran out with the state still missing: what was held went on without it, and exactly once is not promised for it.",
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
        let publish_bytes_rate_exceeded_total = counter(
            "berth_publish_bytes_rate_exceeded_total",
            "Connections closed for publishing more bytes (topic and payload) per second than limits.publish_rate_bytes (MQTT 5: DISCONNECT 0x96).",
        )?;

        // Every reason is exported from the start (at 0), so a query never meets a missing series.
        let by_reason = |name: &'static str,
                         help: &str,
                         reasons: &[&str]|
         -> Result<IntCounterVec, MetricsError> {
            let counter = register(
                &registry,
                name,
                IntCounterVec::new(Opts::new(name, help), &["reason"]),
            )?;
            for reason in reasons {
                let _ = counter.with_label_values(&[*reason]);
            }
            Ok(counter)
        };
        let drop_reasons: Vec<&str> = DropReason::ALL.iter().map(|r| r.label()).collect();
        let messages_dropped_total = by_reason(
            "berth_messages_dropped_total",
            "Messages dropped instead of delivered, by reason (purged: an operator emptied the queue).",
            &drop_reasons,
        )?;
        let limit_reasons: Vec<&str> = LimitReason::ALL.iter().map(|r| r.label()).collect();
        let limit_refusals_total = by_reason(
            "berth_limit_refusals_total",
            "PUBLISHes, SUBSCRIBE filters and wills refused by a per-client limit, by the limit's key: max_subscriptions (SUBACK 0x97; 3.1.1: 0x80), max_topic_length and max_topic_levels (PUBACK/PUBREC 0x90, SUBACK 0x8F, CONNACK 0x90; 3.1.1: a PUBLISH acknowledged and dropped, SUBACK 0x80, CONNACK 5).",
            &limit_reasons,
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
        // Each listener's series are made (at 0) before the HTTP listener serves (`show_listener`).
        let name = "berth_listener_refusals_total";
        let listener_refusals_total = register(
            &registry,
            name,
            IntCounterVec::new(
                Opts::new(
                    name,
                    "Connections closed as soon as they were accepted by a listener's own limit, by listener name and reason: max_connections (its max_connections open already).",
                ),
                &["listener", "reason"],
            ),
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

        let close_causes: Vec<&str> = CloseCause::ALL.iter().map(|c| c.label()).collect();
        let connections_closed_total = by_reason(
            "berth_connections_closed_total",
            "Connections that had their CONNACK and ended, by reason: client_disconnect, connection_lost (no DISCONNECT), keep_alive_timeout, protocol_error (a malformed packet or a violation; MQTT 5 hears the reason code), rate_limited (limits.publish_rate, limits.publish_rate_bytes), taken_over (the session connected again, here or on another node), forward_failed (a 3.1.1 PUBLISH its subscribers' node did not store: closed unacknowledged), drained, kicked (an operator, through the admin API), server_shutdown.",
            &close_causes,
        )?;
        let name = "berth_connects_refused_total";
        let connects_refused_total = register(
            &registry,
            name,
            IntCounterVec::new(
                Opts::new(
                    name,
                    "CONNECTs answered with a refusing CONNACK, by MQTT 5 reason code (3.1.1 clients hear the nearest return code): 0x85 client id not valid, 0x86/0x87 authentication, 0x88 no consensus, 0x9C draining, 0x9F too many failures, ...",
                ),
                &["code"],
            ),
        )?;
        // The refusals Berth sends, at 0 from the start (a query never meets a missing series).
        for code in [
            0x80u8, 0x81, 0x82, 0x84, 0x85, 0x86, 0x87, 0x88, 0x8C, 0x90, 0x95, 0x9C, 0x9F,
        ] {
            let _ = connects_refused_total.with_label_values(&[&format!("0x{code:02X}")]);
        }
        let draining = gauge(
            "berth_draining",
            "1 while the node drains: /ready answers 503, new CONNECTs are refused and connected clients are sent to other nodes.",
        )?;
        let ready = gauge(
            "berth_ready",
            "1 while /ready answers 200: the broker runs, a Raft leader is known, everything committed is applied here, and the node is not draining.",
        )?;
        let latency = latency::Latency::register(&registry)?;
        let traffic = traffic::Traffic::register(&registry)?;
        let subscriptions = gauge(
            "berth_subscriptions",
            "Subscriptions of the sessions this node holds.",
        )?;
        let largest_queue_messages = gauge(
            "berth_largest_queue_messages",
            "The most messages one session's queue here holds.",
        )?;
        let raft = cluster::RaftGauges::register(&registry)?;
        let peer = peer::PeerCounters::register(&registry)?;
        let store = store::StoreGauges::register(&registry)?;
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .map_err(|source| MetricsError::Register {
                name: "process_collector",
                source,
            })?;

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
            qos2_state_waits_total,
            qos2_state_waits_expired_total,
            handoff_messages,
            handoff_delivered_total,
            publish_acks_held_total,
            publish_rate_exceeded_total,
            publish_bytes_rate_exceeded_total,
            connections_refused_total,
            listener_refusals_total,
            messages_dropped_total,
            limit_refusals_total,
            proxy_headers_refused_total,
            tls_handshakes_failed_total,
            ws_upgrades_failed_total,
            connects_refused_auth_total,
            connections_closed_total,
            connects_refused_total,
            draining,
            ready,
            latency,
            traffic,
            subscriptions,
            largest_queue_messages,
            raft,
            peer,
            store,
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

    /// A connection closed at accept by the limit of the listener named `listener`.
    pub fn count_listener_refused(&self, listener: &str, reason: &str) {
        self.listener_refusals_total
            .with_label_values(&[listener, reason])
            .inc();
    }

    /// Makes the refusal series of the listener named `listener`, at 0.
    pub fn show_listener(&self, listener: &str) {
        for reason in crate::gate::Refused::LISTENER_REASONS {
            let _ = self
                .listener_refusals_total
                .with_label_values(&[listener, reason]);
        }
    }

    pub fn count_ws_refused(&self) {
        self.ws_upgrades_failed_total.inc();
    }

    pub fn count_auth_refused(&self, reason: &str) {
        self.connects_refused_auth_total
            .with_label_values(&[reason])
            .inc();
    }

    /// A CONNECT answered with a refusing CONNACK (`code`: its MQTT 5 reason code).
    pub fn count_connect_refused(&self, code: u8) {
        self.connects_refused_total
            .with_label_values(&[&format!("0x{code:02X}")])
            .inc();
    }

    pub fn set_draining(&self, draining: bool) {
        self.draining.set(i64::from(draining));
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Raft's health as this node sees it (set at every scrape; a term higher than at the
    /// previous scrape counts its elections).
    pub fn observe_cluster(&self, health: &ClusterHealth) {
        self.raft.set(health);
        self.store.set(store::Database::Raft, health.memory);
    }

    /// What the session store holds in memory for itself (the broker thread's, with `observe`).
    pub fn observe_store(&self, memory: berth_core::StoreMemory) {
        self.store.set(store::Database::Sessions, memory);
    }

    /// `peer`'s series of `berth_forwards_total`, for its forward queue to count batches
    /// without a label lookup.
    pub fn forwards_to(&self, peer: NodeId) -> ForwardCounts {
        self.peer.forwards_to(peer)
    }

    /// A takeover of a session from another node ended with `result`.
    pub fn count_takeover(&self, result: TakeoverResult) {
        self.peer.count_takeover(result);
    }

    /// Adds the broker thread's packet counts (and zeroes them).
    pub(crate) fn add_packets(&self, counts: &mut PacketCounts) {
        self.traffic.flush(counts);
    }

    pub fn count_bytes_received(&self, bytes: usize) {
        self.traffic.bytes_received.inc_by(bytes as u64);
    }

    pub fn count_bytes_sent(&self, bytes: usize) {
        self.traffic.bytes_sent.inc_by(bytes as u64);
    }

    pub(crate) fn connection_parked(&self) {
        self.traffic.connections_parked.inc();
    }

    pub(crate) fn connection_unparked(&self) {
        self.traffic.connections_parked.dec();
    }

    pub fn observe_connect(&self, outcome: ConnectOutcome, took: Duration) {
        self.latency
            .connect
            .with_label_values(&[outcome.label()])
            .observe(took.as_secs_f64());
    }

    pub fn observe_publish_ack(&self, took: Duration) {
        self.latency.publish_ack.observe(took.as_secs_f64());
    }

    pub fn observe_group_commit(&self, took: Duration) {
        self.latency.group_commit.observe(took.as_secs_f64());
    }

    /// A Raft proposal committed and applied here after `took`.
    pub fn observe_raft_commit(&self, took: Duration) {
        self.latency.raft_commit.observe(took.as_secs_f64());
    }

    /// A batch forwarded to another node was stored there after `took`.
    pub fn observe_forward(&self, took: Duration) {
        self.latency.forward.observe(took.as_secs_f64());
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
        set(&self.subscriptions, stats.subscriptions);
        set(&self.largest_queue_messages, stats.largest_queue_messages);
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
            &self.qos2_state_waits_total,
            last.qos2_state_waits_total,
            stats.qos2_state_waits_total,
        );
        advance(
            &self.qos2_state_waits_expired_total,
            last.qos2_state_waits_expired_total,
            stats.qos2_state_waits_expired_total,
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
            &self.publish_bytes_rate_exceeded_total,
            last.publish_bytes_rate_exceeded_total,
            stats.publish_bytes_rate_exceeded_total,
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
        for cause in CloseCause::ALL {
            advance(
                &self
                    .connections_closed_total
                    .with_label_values(&[cause.label()]),
                last.closed_total(cause),
                stats.closed_total(cause),
            );
        }
        for reason in LimitReason::ALL {
            advance(
                &self
                    .limit_refusals_total
                    .with_label_values(&[reason.label()]),
                last.limit_refusals_total(reason),
                stats.limit_refusals_total(reason),
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

/// Registers `made`, a new metric (or collector) named `name`, in `registry`.
pub(crate) fn register<M>(
    registry: &Registry,
    name: &'static str,
    made: prometheus::Result<M>,
) -> Result<M, MetricsError>
where
    M: prometheus::core::Collector + Clone + 'static,
{
    let metric = made.map_err(|source| MetricsError::Register { name, source })?;
    registry
        .register(Box::new(metric.clone()))
        .map_err(|source| MetricsError::Register { name, source })?;
    Ok(metric)
}

pub(crate) fn gauge(
    registry: &Registry,
    name: &'static str,
    help: &str,
) -> Result<IntGauge, MetricsError> {
    register(registry, name, IntGauge::with_opts(Opts::new(name, help)))
}

pub(crate) fn counter(
    registry: &Registry,
    name: &'static str,
    help: &str,
) -> Result<IntCounter, MetricsError> {
    register(registry, name, IntCounter::with_opts(Opts::new(name, help)))
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
mod tests;

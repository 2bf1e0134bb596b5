//! The rows of the comparison table: the targets of issue 14, in its order, and figures shown
//! beside them for reference (among them issue 12's TLS cases, which have no target).

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Unit {
    /// Messages (or connections) per second.
    PerSecond,
    Micros,
    Seconds,
    Bytes,
    /// A fraction shown as a percentage.
    Fraction,
    Count,
}

impl Unit {
    /// Rates are better high; latencies, times, memory and counts of losses are better low.
    pub(super) fn higher_is_better(self) -> bool {
        matches!(self, Unit::PerSecond | Unit::Fraction)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Target {
    /// subject ÷ the best peer that lost nothing ≥ x.
    BestRatioAtLeast(f64),
    /// subject ÷ the named peer ≥ x.
    PeerRatioAtLeast(&'static str, f64),
    /// subject ≤ the named peer (for times: no later than it).
    AtMostPeer(&'static str),
    /// subject ≤ x and below every peer that lost nothing.
    AtMostAndBelowPeers(f64),
    /// subject ≤ x.
    AtMost(f64),
    /// subject = 0 in every run.
    Zero,
    None,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Row {
    pub case: &'static str,
    pub metric: &'static str,
    pub title: &'static str,
    pub unit: Unit,
    pub target: Target,
}

/// Issue 14's targets (same run, Berth ÷ the best of Mosquitto and rumqttd), plus reference
/// figures. Rows of one case stay together: the run's shape is printed on the first.
pub(super) const ROWS: &[Row] = &[
    Row {
        case: "fan-in-qos0",
        metric: "recv_msg_s",
        title: "fan-in QoS 0, msg/s",
        unit: Unit::PerSecond,
        target: Target::BestRatioAtLeast(1.0),
    },
    Row {
        case: "fan-in-qos1",
        metric: "recv_msg_s",
        title: "fan-in QoS 1, msg/s",
        unit: Unit::PerSecond,
        target: Target::BestRatioAtLeast(1.0),
    },
    // Fan-in QoS 1 where every message takes the durable path: the issue's "durable where the
    // workload is" applied to the fan-in target.
    Row {
        case: "persistent-fan-in-qos1",
        metric: "recv_msg_s",
        title: "fan-in QoS 1, persistent subscriber, msg/s",
        unit: Unit::PerSecond,
        target: Target::BestRatioAtLeast(1.0),
    },
    Row {
        case: "fan-out-qos1",
        metric: "recv_msg_s",
        title: "fan-out QoS 1, deliveries/s",
        unit: Unit::PerSecond,
        target: Target::BestRatioAtLeast(1.0),
    },
    Row {
        case: "pairs-qos1",
        metric: "recv_msg_s",
        title: "pairs QoS 1, msg/s",
        unit: Unit::PerSecond,
        target: Target::BestRatioAtLeast(1.0),
    },
    Row {
        case: "pairs-qos2",
        metric: "recv_msg_s",
        title: "pairs QoS 2, msg/s",
        unit: Unit::PerSecond,
        target: Target::BestRatioAtLeast(1.0),
    },
    // Issue 12: the same pairs over TLS, every broker presenting one certificate. No target:
    // the figure is what TLS costs each broker.
    Row {
        case: "pairs-qos1-tls",
        metric: "recv_msg_s",
        title: "pairs QoS 1 over TLS, msg/s",
        unit: Unit::PerSecond,
        target: Target::None,
    },
    Row {
        case: "latency-qos1",
        metric: "p99_us",
        title: "QoS 1 latency p99",
        unit: Unit::Micros,
        target: Target::AtMostAndBelowPeers(500.0),
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
        target: Target::PeerRatioAtLeast("mosquitto", 1.0),
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
        metric: "offline_pub_ratio",
        title: "offline-queue publish rate, offline ÷ online",
        unit: Unit::Fraction,
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
        metric: "connect_per_s",
        title: "idle connections, connects/s",
        unit: Unit::PerSecond,
        target: Target::PeerRatioAtLeast("mosquitto", 1.0),
    },
    Row {
        case: "conns",
        metric: "rss_per_conn_b",
        title: "idle connections, broker RSS per connection",
        unit: Unit::Bytes,
        target: Target::AtMost(1024.0),
    },
    // Issue 12: conns over TLS, each connection a full handshake (no resumption). No target.
    Row {
        case: "conns-tls",
        metric: "connect_per_s",
        title: "TLS connections, handshakes/s (TCP + TLS + CONNECT → CONNACK)",
        unit: Unit::PerSecond,
        target: Target::None,
    },
    Row {
        case: "conns-tls",
        metric: "connect_p99_us",
        title: "TLS connections, TCP connect → CONNACK p99",
        unit: Unit::Micros,
        target: Target::None,
    },
    Row {
        case: "conns-tls",
        metric: "rss_per_conn_b",
        title: "TLS connections, broker RSS per idle connection",
        unit: Unit::Bytes,
        target: Target::None,
    },
    Row {
        case: "reconnect-storm",
        metric: "delivered_all_s",
        title: "reconnect storm, every backlog delivered after",
        unit: Unit::Seconds,
        target: Target::AtMostPeer("mosquitto"),
    },
    Row {
        case: "reconnect-storm",
        metric: "connack_all_s",
        title: "reconnect storm, every CONNACK after",
        unit: Unit::Seconds,
        target: Target::None,
    },
    Row {
        case: "reconnect-storm",
        metric: "reconnect_per_s",
        title: "reconnect storm, reconnects/s",
        unit: Unit::PerSecond,
        target: Target::None,
    },
    Row {
        case: "reconnect-storm",
        metric: "lost",
        title: "reconnect storm lost (worst run)",
        unit: Unit::Count,
        target: Target::Zero,
    },
    // Issue 14: "≤ 500 B RAM per session beyond fixed caches (disk-resident)". Berth's
    // databases report their memtables and caches (`--metrics-url`); the peers keep sessions in
    // memory and have no such figure.
    Row {
        case: "sessions",
        metric: "rss_per_session_beyond_stores_b",
        title: "offline sessions, RSS per session beyond the databases' memtables and caches",
        unit: Unit::Bytes,
        target: Target::AtMost(500.0),
    },
    Row {
        case: "sessions",
        metric: "rss_per_session_b",
        title: "offline sessions, broker RSS per session",
        unit: Unit::Bytes,
        target: Target::None,
    },
    Row {
        case: "sessions",
        metric: "store_memory_queued_b",
        title: "offline sessions, the databases' memtables and caches (queues full)",
        unit: Unit::Bytes,
        target: Target::None,
    },
    Row {
        case: "sessions",
        metric: "rss_per_empty_session_b",
        title: "offline sessions, RSS per session before queueing",
        unit: Unit::Bytes,
        target: Target::None,
    },
];

//! Counters the broker keeps about itself. Plain numbers: the server exports them to
//! Prometheus; the core does not know Prometheus exists.

/// Why a message was dropped instead of delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The session's queue was at its message-count or byte limit.
    QueueFull,
    /// Its Message Expiry Interval ran out while it waited.
    Expired,
    /// Larger than the Maximum Packet Size the receiving client accepts.
    TooLargeForClient,
    /// QoS 0 for an offline session while QoS 0 queueing is off.
    Qos0Offline,
    /// QoS 0 for a connected client that is not reading fast enough (its outbound buffer was
    /// full): dropping is what QoS 0 allows, buffering without bound is not.
    SlowConsumer,
    /// A second copy of a QoS 2 message the session already took (a retried or re-routed
    /// forward, an older copy of the session merged): exactly once drops it.
    Duplicate,
    /// Kept for a session whose owner could not be reached while this node's handoff for it
    /// (or for all sessions) was at its limit.
    HandoffFull,
    /// The ACL does not let the publisher publish to its topic (a 3.1.1 publisher's message is
    /// acknowledged and dropped; MQTT 5 hears 0x87), or the receiver receive from it.
    NotAuthorized,
    /// An operator purged the session's queue (`DELETE /api/v1/sessions/{id}/queue`).
    Purged,
}

impl DropReason {
    pub const ALL: [DropReason; 9] = [
        Self::QueueFull,
        Self::Expired,
        Self::TooLargeForClient,
        Self::Qos0Offline,
        Self::SlowConsumer,
        Self::Duplicate,
        Self::HandoffFull,
        Self::NotAuthorized,
        Self::Purged,
    ];

    /// The `reason` label value in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::Expired => "expired",
            Self::TooLargeForClient => "too_large_for_client",
            Self::Qos0Offline => "qos0_offline",
            Self::SlowConsumer => "slow_consumer",
            Self::Duplicate => "duplicate",
            Self::HandoffFull => "handoff_full",
            Self::NotAuthorized => "not_authorized",
            Self::Purged => "purged",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which per-client limit refused a packet, or one filter of a SUBSCRIBE (the `reason` label of
/// `berth_limit_refusals_total`). Named after the configuration key, so that an operator reads
/// which key to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitReason {
    /// `limits.max_subscriptions`: a SUBSCRIBE filter one more than the session may hold
    /// (SUBACK 0x97 Quota exceeded; 3.1.1: 0x80).
    MaxSubscriptions,
    /// `limits.max_topic_length`: a PUBLISH topic (PUBACK/PUBREC 0x90), a SUBSCRIBE filter
    /// (SUBACK 0x8F) or a will topic (CONNACK 0x90) longer than that.
    MaxTopicLength,
    /// `limits.max_topic_levels`: the same, for more levels than that.
    MaxTopicLevels,
}

impl LimitReason {
    pub const ALL: [LimitReason; 3] = [
        Self::MaxSubscriptions,
        Self::MaxTopicLength,
        Self::MaxTopicLevels,
    ];

    /// The `reason` label value in metrics: the configuration key's name in `[limits]`.
    pub fn label(self) -> &'static str {
        match self {
            Self::MaxSubscriptions => "max_subscriptions",
            Self::MaxTopicLength => "max_topic_length",
            Self::MaxTopicLevels => "max_topic_levels",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a connection that had its CONNACK ended (the `reason` label of
/// `berth_connections_closed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCause {
    /// The client sent DISCONNECT.
    ClientDisconnect,
    /// The socket closed or failed without a DISCONNECT.
    ConnectionLost,
    /// Nothing arrived within 1.5 × the keep alive.
    KeepAliveTimeout,
    /// A malformed packet or a protocol violation (DISCONNECT with its reason code in MQTT 5).
    ProtocolError,
    /// Over a limit of the server (`limits.publish_rate` or `limits.publish_rate_bytes`:
    /// DISCONNECT 0x96).
    RateLimited,
    /// Another connection took the session (here or on another node; DISCONNECT 0x8E).
    TakenOver,
    /// A 3.1.1 PUBLISH could not be stored on its owner's node: closed unacknowledged so that
    /// the client sends it again.
    ForwardFailed,
    /// The server moved the client away while draining (DISCONNECT 0x9C Use another server).
    Drained,
    /// An operator closed it (`POST /api/v1/sessions/{id}/kick`, or the session discarded:
    /// DISCONNECT 0x98 Administrative action).
    Kicked,
    /// The server shut down (DISCONNECT 0x8B).
    ServerShutdown,
}

impl CloseCause {
    pub const ALL: [CloseCause; 10] = [
        Self::ClientDisconnect,
        Self::ConnectionLost,
        Self::KeepAliveTimeout,
        Self::ProtocolError,
        Self::RateLimited,
        Self::TakenOver,
        Self::ForwardFailed,
        Self::Drained,
        Self::Kicked,
        Self::ServerShutdown,
    ];

    /// The `reason` label value in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::ClientDisconnect => "client_disconnect",
            Self::ConnectionLost => "connection_lost",
            Self::KeepAliveTimeout => "keep_alive_timeout",
            Self::ProtocolError => "protocol_error",
            Self::RateLimited => "rate_limited",
            Self::TakenOver => "taken_over",
            Self::ForwardFailed => "forward_failed",
            Self::Drained => "drained",
            Self::Kicked => "kicked",
            Self::ServerShutdown => "server_shutdown",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Monotonic counters (`_total`) and current levels. Counters only ever grow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub connections: u64,
    pub sessions: u64,
    pub queued_messages: u64,
    /// The most messages one session's queue holds.
    pub largest_queue_messages: u64,
    /// Subscriptions of the sessions held here.
    pub subscriptions: u64,
    pub retained_messages: u64,
    pub connects_total: u64,
    pub publishes_received_total: u64,
    pub publishes_sent_total: u64,
    pub wills_published_total: u64,
    pub sessions_expired_total: u64,
    pub protocol_errors_total: u64,
    /// Messages held here in sessions another node has claimed but not yet pulled (its owner
    /// could not reach this node at the takeover): a backlog waiting to be recovered.
    pub stranded_messages: u64,
    /// Messages of such backlogs recovered later and appended to sessions owned here.
    pub stranded_recovered_total: u64,
    /// Waits begun for an older copy's QoS 2 state (`QOS2_STATE_WAIT`): a session here held
    /// QoS 2 deliveries or a client's re-sent QoS 2 PUBLISH until that copy is back.
    pub qos2_state_waits_total: u64,
    /// Of those, waits that ran out with the state still missing: what was held went on
    /// without it (exactly once is then not promised for it).
    pub qos2_state_waits_expired_total: u64,
    /// QoS 1/2 acknowledgements held back because the message was queued for a connected
    /// session that is not keeping up (publisher flow control, `queue.backpressure`).
    pub publish_acks_held_total: u64,
    /// Connections closed for publishing faster than `limits.publish_rate`.
    pub publish_rate_exceeded_total: u64,
    /// Connections closed for publishing more bytes per second than `limits.publish_rate_bytes`.
    pub publish_bytes_rate_exceeded_total: u64,
    /// Messages kept here for other nodes' sessions whose owner could not be reached (hinted
    /// handoff), not yet delivered.
    pub handoff_messages: u64,
    /// Handoff entries delivered to their session's owner.
    pub handoff_delivered_total: u64,
    dropped_total: [u64; DropReason::ALL.len()],
    closed_total: [u64; CloseCause::ALL.len()],
    limit_refusals_total: [u64; LimitReason::ALL.len()],
}

impl Stats {
    pub fn dropped_total(&self, reason: DropReason) -> u64 {
        self.dropped_total[reason.index()]
    }

    pub fn count_drop(&mut self, reason: DropReason) {
        self.count_drops(reason, 1);
    }

    /// `n` messages dropped at once for `reason` (a purged queue).
    pub fn count_drops(&mut self, reason: DropReason, n: u64) {
        self.dropped_total[reason.index()] += n;
    }

    /// Connections that had their CONNACK and ended for `cause`.
    pub fn closed_total(&self, cause: CloseCause) -> u64 {
        self.closed_total[cause.index()]
    }

    pub fn count_close(&mut self, cause: CloseCause) {
        self.closed_total[cause.index()] += 1;
    }

    /// Packets (or SUBSCRIBE filters) refused by the per-client limit `reason`.
    pub fn limit_refusals_total(&self, reason: LimitReason) -> u64 {
        self.limit_refusals_total[reason.index()]
    }

    pub fn count_limit(&mut self, reason: LimitReason) {
        self.limit_refusals_total[reason.index()] += 1;
    }
}

//! The broker's rules that operators choose, as typed values. Parsing and validation of the
//! TOML file, environment and flags live in the `berth` binary; this crate only takes the result.

use berth_codec::{SubAckReasonCode, TopicFilter};

use crate::acl::{Acl, Principal};
use crate::stats::LimitReason;
use crate::store::SessionExpiry;

/// A limit that is either a number or explicitly `unlimited`: `0` never means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Unlimited,
    AtMost(u64),
}

impl Limit {
    pub fn allows(self, value: u64) -> bool {
        match self {
            Limit::Unlimited => true,
            Limit::AtMost(max) => value <= max,
        }
    }

    /// As a rate per second: a full bucket (one second's worth, in thousandths).
    pub fn credit_burst(self) -> u64 {
        match self {
            Limit::Unlimited => u64::MAX,
            Limit::AtMost(per_second) => per_second.saturating_mul(1000),
        }
    }

    /// As a rate per second: refills `credit` for the time since `at` (up to one second's
    /// worth) and takes one unit from it; false when there is not a whole unit.
    pub fn take_credit(
        self,
        credit: &mut u64,
        at: &mut crate::time::UnixMillis,
        now: crate::time::UnixMillis,
    ) -> bool {
        self.take_credits(credit, at, now, 1)
    }

    /// [`Limit::take_credit`] for `units` at once (the bytes of a PUBLISH): false, and nothing
    /// taken, when the bucket holds fewer. More than one second's worth is never there.
    pub fn take_credits(
        self,
        credit: &mut u64,
        at: &mut crate::time::UnixMillis,
        now: crate::time::UnixMillis,
        units: u64,
    ) -> bool {
        let Limit::AtMost(per_second) = self else {
            return true;
        };
        let elapsed = now.0.saturating_sub(at.0);
        *at = now;
        *credit = credit
            .saturating_add(elapsed.saturating_mul(per_second))
            .min(self.credit_burst());
        let cost = units.saturating_mul(1000);
        if *credit < cost {
            return false;
        }
        *credit -= cost;
        true
    }
}

/// What happens to a message that would overflow a full offline queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DropPolicy {
    /// The new message is dropped (the queue keeps the oldest).
    #[default]
    DropNewest,
    /// The oldest queued message is dropped to make room.
    DropOldest,
}

/// Per-session queue limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub max_messages: Limit,
    pub max_bytes: Limit,
    pub drop_policy: DropPolicy,
    /// Whether QoS 0 messages are queued for offline persistent sessions.
    pub queue_qos0: bool,
    /// Publisher flow control: a QoS 1/2 publish routed to a connected session whose queue is
    /// backing up is acknowledged only once that queue has drained (or after a bounded wait),
    /// so that publishers slow to what the subscriber takes instead of filling its queue.
    pub backpressure: bool,
}

impl QueueConfig {
    /// Queue length at which a connected session counts as congested: half the message limit,
    /// at most 1,024 (four pages), so that publishers are slowed well before messages would be
    /// dropped, with enough queued to keep the session's send window full.
    pub fn congested_at(&self) -> u64 {
        match self.max_messages {
            Limit::AtMost(max) => (max / 2).clamp(1, 1024),
            Limit::Unlimited => 1024,
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_messages: Limit::AtMost(1000),
            max_bytes: Limit::AtMost(64 * 1024 * 1024),
            drop_policy: DropPolicy::DropNewest,
            queue_qos0: false,
            backpressure: true,
        }
    }
}

/// Session lifetime rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Expiry of MQTT 3.1/3.1.1 sessions with Clean Session = 0, which the protocol cannot state.
    pub v3_persistent_expiry: SessionExpiry,
    /// Upper bound for any requested Session Expiry Interval; CONNACK reports a clamped value.
    pub max_expiry: SessionExpiry,
}

impl SessionConfig {
    /// The expiry a CONNECT's session gets (the one place this is decided; a cluster node's
    /// claim records the same value in the registry): MQTT 5 says it, a 3.1/3.1.1 persistent
    /// session gets the configured default, a clean one ends with its connection; the
    /// configured maximum applies (CONNACK reports a clamped value).
    pub fn expiry_of(&self, connect: &berth_codec::Connect) -> SessionExpiry {
        self.clamp(self.requested_expiry(connect))
    }

    /// The expiry a CONNECT asks for, before the configured maximum.
    pub fn requested_expiry(&self, connect: &berth_codec::Connect) -> SessionExpiry {
        if connect.protocol.is_v5() {
            SessionExpiry::from_interval(connect.properties.session_expiry_interval.unwrap_or(0))
        } else if connect.clean_start {
            SessionExpiry::After(0)
        } else {
            self.v3_persistent_expiry
        }
    }

    /// `requested`, at most the configured maximum.
    pub fn clamp(&self, requested: SessionExpiry) -> SessionExpiry {
        match (requested, self.max_expiry) {
            (_, SessionExpiry::Never) => requested,
            (SessionExpiry::Never, max) => max,
            (SessionExpiry::After(r), SessionExpiry::After(m)) => SessionExpiry::After(r.min(m)),
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            v3_persistent_expiry: SessionExpiry::After(2 * 60 * 60),
            max_expiry: SessionExpiry::Never,
        }
    }
}

/// Protocol limits the broker announces and enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolLimits {
    /// Largest packet accepted from a client (CONNACK Maximum Packet Size).
    pub max_packet_size: u32,
    /// QoS 1/2 PUBLISHes a client may have unacknowledged towards us (CONNACK Receive Maximum).
    pub receive_maximum: u16,
    /// Un-acknowledged QoS 1/2 messages we send to a client, capped by its Receive Maximum.
    pub max_inflight: u16,
    /// Topic aliases a client may use towards us (CONNACK Topic Alias Maximum).
    pub topic_alias_maximum: u16,
    /// Largest keep alive accepted from MQTT 5 clients; larger ones get Server Keep Alive.
    pub max_keep_alive: u16,
    /// PUBLISHes per second one connection may send (bursts up to one second's worth); beyond
    /// it the connection is closed (MQTT 5: DISCONNECT 0x96 Message rate too high).
    pub publish_rate: Limit,
    /// Bytes of PUBLISH (topic and payload) per second one connection may send (bursts up to
    /// one second's worth, so a PUBLISH larger than that is always over it); beyond it the
    /// connection is closed as for `publish_rate`.
    pub publish_rate_bytes: Limit,
    /// Subscriptions one session may hold. A SUBSCRIBE filter that would be one more is refused
    /// (SUBACK 0x97 Quota exceeded; 3.1.1: 0x80); one the session holds already is replaced and
    /// does not count again. Unlimited by default: a bridge or a gateway legitimately holds
    /// thousands, and what a client may hold is the operator's call (each subscription is kept
    /// in every node's registry, so a cluster open to untrusted clients should set it).
    pub max_subscriptions: Limit,
    /// Longest topic, in bytes: of a PUBLISH (after its Topic Alias is resolved), of a will,
    /// and of a SUBSCRIBE filter (the part matched against topics: a shared subscription's
    /// `$share/<group>/` is not counted). 65535, the protocol's own maximum, means no limit.
    pub max_topic_length: u16,
    /// Most levels (`a/b/c` has three) of the same topics and filters.
    pub max_topic_levels: Limit,
}

impl ProtocolLimits {
    /// The topic limit `topic` is over, if any: `topic` is a topic name, or the part of a
    /// filter that is matched against topic names ([`TopicFilter::matching_filter`]).
    pub fn topic_over(&self, topic: &str) -> Option<LimitReason> {
        if topic.len() > usize::from(self.max_topic_length) {
            return Some(LimitReason::MaxTopicLength);
        }
        let Limit::AtMost(max) = self.max_topic_levels else {
            return None;
        };
        // Levels are what lies between the separators: one more than there are `/`.
        let separators = topic.bytes().filter(|&byte| byte == b'/').count();
        let levels = u64::try_from(separators)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        (levels > max).then_some(LimitReason::MaxTopicLevels)
    }
}

impl Default for ProtocolLimits {
    fn default() -> Self {
        ProtocolLimits {
            max_packet_size: 1024 * 1024,
            receive_maximum: 1024,
            max_inflight: 32,
            topic_alias_maximum: 64,
            max_keep_alive: 65_535,
            publish_rate: Limit::Unlimited,
            publish_rate_bytes: Limit::Unlimited,
            max_subscriptions: Limit::Unlimited,
            max_topic_length: u16::MAX,
            // EMQX's default: no real topic tree is that deep, and every level is a step of
            // every index match and every ACL check, so this bounds what one PUBLISH costs.
            max_topic_levels: Limit::AtMost(128),
        }
    }
}

/// Why one filter of a SUBSCRIBE is refused; [`SubscribeRefusal::reason_code`] is its SUBACK
/// code (3.1.1 clients hear 0x80 for every refusal: the codec writes it so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeRefusal {
    /// A per-client limit: `max_topic_length` or `max_topic_levels` (0x8F Topic Filter invalid:
    /// the filter is well formed but not one this server accepts), or `max_subscriptions`
    /// (0x97 Quota exceeded).
    Limit(LimitReason),
    /// `acl.denied_filters`, the rules file or the connection's grants (0x87).
    NotAuthorized,
}

impl SubscribeRefusal {
    pub fn reason_code(self) -> SubAckReasonCode {
        match self {
            SubscribeRefusal::Limit(LimitReason::MaxSubscriptions) => {
                SubAckReasonCode::QuotaExceeded
            }
            SubscribeRefusal::Limit(_) => SubAckReasonCode::TopicFilterInvalid,
            SubscribeRefusal::NotAuthorized => SubAckReasonCode::NotAuthorized,
        }
    }
}

/// How much a cluster node keeps for other nodes' sessions while their owner cannot be
/// reached (hinted handoff). Entries are kept in memory too (they are sent from there), so the
/// node-wide limit bounds that memory as well as the disk. A full handoff applies the queue's
/// drop policy (`queue.drop_policy`), counted as `handoff_full`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffLimits {
    pub max_per_session: Limit,
    pub max_total: Limit,
}

impl Default for HandoffLimits {
    fn default() -> Self {
        HandoffLimits {
            max_per_session: Limit::AtMost(10_000),
            max_total: Limit::AtMost(200_000),
        }
    }
}

/// Everything the broker core is configured with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BrokerConfig {
    pub session: SessionConfig,
    pub queue: QueueConfig,
    pub limits: ProtocolLimits,
    pub handoff: HandoffLimits,
    /// Filters that SUBSCRIBE refuses, for everyone: a requested filter equal to one of these,
    /// or matched by one of them when treated as a topic, is refused, and a wider subscription
    /// (`#`) gets nothing from their topics.
    pub denied_filters: Vec<TopicFilter>,
    /// The rules file's rules (`acl.file`), shared with the cluster admission and replaced
    /// whole on SIGHUP.
    pub acl: Acl,
}

impl BrokerConfig {
    /// Decides every filter of one SUBSCRIBE, in order: the one place this is decided, for
    /// SUBSCRIBE here ([`crate::Broker`]) and for the cluster's replication of it before the
    /// broker sees it (`registry::plan::change`, with the registry's view of the session).
    /// `holding`: how many subscriptions the session holds; `held`: whether it holds a filter.
    ///
    /// Each filter, in this order: the topic limits (a property of the filter itself), then
    /// the ACL ([`BrokerConfig::may_subscribe`]), then the quota — so only a filter that would
    /// otherwise be granted takes a place. A filter the session holds already, or granted
    /// earlier in the same packet, is a replacement (MQTT §3.8.4) and takes none.
    pub fn vet_subscribe<'f>(
        &self,
        who: &Principal,
        holding: usize,
        held: impl Fn(&TopicFilter) -> bool,
        filters: impl IntoIterator<Item = &'f TopicFilter>,
    ) -> Vec<Result<(), SubscribeRefusal>> {
        let mut count = u64::try_from(holding).unwrap_or(u64::MAX);
        let mut added: Vec<&TopicFilter> = Vec::new();
        let mut verdicts = Vec::new();
        for filter in filters {
            let verdict = match self.vet_filter(who, filter) {
                Err(refusal) => Err(refusal),
                Ok(()) if held(filter) || added.contains(&filter) => Ok(()),
                Ok(())
                    if !self
                        .limits
                        .max_subscriptions
                        .allows(count.saturating_add(1)) =>
                {
                    Err(SubscribeRefusal::Limit(LimitReason::MaxSubscriptions))
                }
                Ok(()) => {
                    count = count.saturating_add(1);
                    added.push(filter);
                    Ok(())
                }
            };
            verdicts.push(verdict);
        }
        verdicts
    }

    /// One filter on its own: the topic limits, then the ACL (no quota).
    pub fn vet_filter(
        &self,
        who: &Principal,
        filter: &TopicFilter,
    ) -> Result<(), SubscribeRefusal> {
        if let Some(limit) = self.limits.topic_over(filter.matching_filter()) {
            return Err(SubscribeRefusal::Limit(limit));
        }
        if !self.may_subscribe(who, filter) {
            return Err(SubscribeRefusal::NotAuthorized);
        }
        Ok(())
    }

    /// Whether `who` may subscribe to `filter`: `denied_filters`, then the rules, then the
    /// connection's grants (both must allow: [`crate::acl::grants`]).
    pub fn may_subscribe(&self, who: &Principal, filter: &TopicFilter) -> bool {
        self.may_hold(filter)
            && self.acl.may_subscribe(who, filter)
            && who.granted(|grants| grants.may_subscribe(who, filter))
    }

    /// Whether any session may hold `filter`, whoever its client is: what is checked for
    /// subscriptions that arrive with a session from another node or from the registry, before
    /// its client is known here — `denied_filters` and the topic limits, which do not depend
    /// on the client (the quota is not: a session keeps what it was granted when it
    /// subscribed, as under a limit lowered since). The rules and grants for that client apply
    /// at delivery ([`BrokerConfig::may_receive`]), so a subscription kept here delivers
    /// nothing they deny.
    pub fn may_hold(&self, filter: &TopicFilter) -> bool {
        self.limits.topic_over(filter.matching_filter()).is_none()
            && !self
                .denied_filters
                .iter()
                .any(|denied| covers(denied, filter))
    }

    /// Whether `who` may publish to `topic` (a client's PUBLISH, a retained one before it is
    /// replicated, a will at CONNECT): the rules, then the connection's grants.
    pub fn may_publish(&self, who: &Principal, topic: &str) -> bool {
        self.acl.may_publish(who, topic) && who.granted(|grants| grants.may_publish(who, topic))
    }

    /// Whether a message on `topic` may be delivered to `who`: checked at every delivery, so
    /// that a wildcard subscription, one imported from another node, or one made before the
    /// rules changed delivers nothing the rules (or `denied_filters`, or the grants of the
    /// connection it goes out on) deny now.
    pub fn may_receive(&self, who: &Principal, topic: &berth_codec::TopicName) -> bool {
        !self
            .denied_filters
            .iter()
            .any(|denied| denied.matches(topic))
            && self.acl.may_receive(who, topic.as_str())
            && who.granted(|grants| grants.may_receive(who, topic.as_str()))
    }
}

/// Whether `denied` covers `requested`: every topic `requested` could match, `denied` matches
/// too (a literal `+` or `#` in `requested` counts as a level that `denied` must also cover).
fn covers(denied: &TopicFilter, requested: &TopicFilter) -> bool {
    let mut requested_levels = requested.levels();
    for level in denied.levels() {
        match level {
            "#" => return true,
            "+" => match requested_levels.next() {
                Some("#") | None => return false,
                Some(_) => {}
            },
            literal => match requested_levels.next() {
                Some(r) if r == literal => {}
                _ => return false,
            },
        }
    }
    requested_levels.next().is_none()
}

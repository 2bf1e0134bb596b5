//! The storage port: what the broker needs from durable storage, without knowing it is RocksDB.
//!
//! The broker is the only writer. Each event's changes go to [`Store::write`] as one atomic
//! [`Batch`]; once `write` returns, the changes survive the broker *process* being killed (for
//! RocksDB: they are in the write-ahead log). [`Store::sync`] makes everything written so far
//! survive power loss too (fsync); the server calls it once per group of events when
//! `storage.sync = true`, before any acknowledgement of those events leaves the broker.
//!
//! Queue contents are never loaded whole: [`Store::load`] returns queue *bounds*, and the broker
//! pages messages in with [`Store::read_queue`] as a session's delivery window drains.

use berth_codec::{
    PacketId, ProtocolVersion, SubscriptionId, SubscriptionOptions, TopicFilter, TopicName,
};

use crate::ids::{ClientId, Epoch, MessageId, NodeId, QueueSeq};
use crate::message::{Delivery, Message};
use crate::time::UnixMillis;

/// Storage failure. The broker treats any of these as fatal for the operation that caused it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed during {operation}: {message}")]
    Io {
        operation: &'static str,
        message: String,
    },
    #[error("stored record {key} is corrupt: {message}")]
    Corrupt { key: String, message: String },
}

/// How long a session outlives its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionExpiry {
    /// Seconds after the connection ends (0: the session ends with the connection).
    After(u32),
    Never,
}

impl SessionExpiry {
    /// From the MQTT 5 Session Expiry Interval value (`u32::MAX` means never).
    pub fn from_interval(secs: u32) -> SessionExpiry {
        if secs == u32::MAX {
            SessionExpiry::Never
        } else {
            SessionExpiry::After(secs)
        }
    }

    pub fn as_interval(self) -> u32 {
        match self {
            SessionExpiry::After(secs) => secs,
            SessionExpiry::Never => u32::MAX,
        }
    }

    pub fn is_zero(self) -> bool {
        self == SessionExpiry::After(0)
    }
}

/// The Will Message of a session, with its delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WillRecord {
    pub message: Message,
    pub delay_secs: u32,
}

impl WillRecord {
    /// The will a CONNECT carries, as the broker keeps it until it is published. The one place
    /// this rule is decided (a node's claim in the cluster registry uses it too).
    ///
    /// MQTT 5 §3.1.3.2.4: the will's Message Expiry Interval is its lifetime from when it is
    /// *published*, not from CONNECT. Until then the record keeps the interval itself in
    /// `properties` (stored with the will, so it survives a restart or a move to another node);
    /// [`WillRecord::published_at`] turns it into `expires_at`. 3.1/3.1.1 have no will delay:
    /// the will is due when the connection is lost.
    pub fn of_connect(will: berth_codec::LastWill) -> WillRecord {
        WillRecord {
            delay_secs: will.properties.will_delay_interval.unwrap_or(0),
            message: Message {
                topic: will.topic,
                payload: will.payload,
                qos: will.qos,
                retain: will.retain,
                expires_at: None,
                // Set when it is published (`published_at`), like its expiry.
                received_at: None,
                properties: berth_codec::PublishProperties {
                    message_expiry_interval: will.properties.message_expiry_interval,
                    payload_format_indicator: will.properties.payload_format_indicator,
                    content_type: will.properties.content_type,
                    response_topic: will.properties.response_topic,
                    correlation_data: will.properties.correlation_data,
                    user_properties: will.properties.user_properties,
                    ..Default::default()
                }
                .into(),
                id: None,
            },
        }
    }

    /// The will as a message published at `now`: from here on its expiry is absolute, like any
    /// routed message's, and its age counts from `now`.
    pub fn published_at(message: Message, now: UnixMillis) -> Message {
        let mut message = message;
        message.received_at = Some(now);
        message.expires_at = message
            .properties
            .get_mut()
            .and_then(|set| set.message_expiry_interval.take())
            .map(|secs| now.plus_secs(secs));
        message.properties.compact();
        message
    }
}

/// What is stored about a session besides its subscriptions and messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub epoch: Epoch,
    pub protocol: ProtocolVersion,
    pub expiry: SessionExpiry,
    /// Absolute end of an offline session; `None` while it is connected.
    pub expires_at: Option<UnixMillis>,
    pub will: Option<WillRecord>,
    /// When the will is due, if the connection ended abnormally and the will still waits.
    pub will_due_at: Option<UnixMillis>,
    /// The session resumed here without the state of an older copy on a node that could not be
    /// reached (a takeover's fallback): which of the client's QoS 2 PUBLISHes were received is
    /// not known until that copy is recovered (`Event::ImportLate`), so a re-sent one waits
    /// for it rather than be delivered a second time or answered as a duplicate.
    pub qos2_state_elsewhere: bool,
    /// Only the client's side of that is in doubt: an older copy here stood in for the
    /// unreachable owner's state (`Broker::merge_import`). It tells which ids this node's
    /// deliveries used, so they go on, but not which QoS 2 PUBLISHes that owner received: a
    /// re-sent one with an id not known here waits for that owner's copy, as above.
    pub incoming_qos2_elsewhere: bool,
    /// What is known about that doubt (empty when there is none).
    pub qos2_doubt: Qos2Doubt,
    /// The oldest claim this node's copy has served since it was created or imported here
    /// (`epoch` when it has served only one): an import that lacks the copy of this node at
    /// an epoch in `landed..=epoch` lacks exactly this copy (`Broker::merge_import`). Kept in
    /// memory only: after a restart the copy counts as landed at its epoch, a narrower range,
    /// so that a merge then falls back to the rule for a copy not known to be the missing one
    /// (never wrongly exact), and a session row not in doubt keeps the layout older binaries
    /// read. Stores return `epoch` here.
    pub landed: Epoch,
}

/// One node's copy of a session, named by the claim it served: epochs are never handed out
/// twice, so a claim's copy is on one node only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyRef {
    pub node: NodeId,
    pub epoch: Epoch,
}

/// What a session in doubt about its QoS 2 state (`SessionRecord::qos2_state_elsewhere`,
/// `incoming_qos2_elsewhere`) knows about it, so that the copy it lacks can be told apart from
/// a stale one when the two meet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Qos2Doubt {
    /// The copy whose state is missing, when exactly one is (`None`: not known which).
    pub lacking: Option<CopyRef>,
    /// Copies lacked before `lacking` took their place (two doubts met and the later copy is
    /// named: it settles them when it comes back, or names them): the state never had theirs
    /// either. A merge with one of them ends what it completed with the client, as a merge
    /// with the lacked copy does (`Broker::merge_import`). Oldest first, each once, at most
    /// [`Qos2Doubt::EARLIER_KEPT`].
    pub earlier: Vec<CopyRef>,
    /// Every packet id the client released (PUBREL) while the state was in doubt: that
    /// copy's exchange under such an id has ended, and the id may since carry a new message.
    /// Sorted, each id once.
    pub released: Vec<PacketId>,
}

impl Qos2Doubt {
    /// How many earlier lacks a doubt keeps: each needs a copy lost by one takeover and found
    /// by a later one, so a longer chain is not met in practice; the oldest go first.
    pub const EARLIER_KEPT: usize = 8;

    /// Adds `copies` to the earlier lacks, each once; `lacking` is never among them.
    pub fn add_earlier(&mut self, copies: impl IntoIterator<Item = CopyRef>) {
        for copy in copies {
            if !self.earlier.contains(&copy) {
                self.earlier.push(copy);
            }
        }
        let lacking = self.lacking;
        self.earlier.retain(|copy| Some(*copy) != lacking);
        let excess = self.earlier.len().saturating_sub(Self::EARLIER_KEPT);
        self.earlier.drain(..excess);
    }
}

/// A stored subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    pub options: SubscriptionOptions,
    pub subscription_id: Option<SubscriptionId>,
}

/// A message handed to the client and not yet fully acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InflightRecord {
    /// PUBLISH sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2). Re-sent with DUP on resume.
    Sent { order: u64, delivery: Delivery },
    /// QoS 2: PUBREC received and PUBREL sent; waiting for PUBCOMP. PUBREL is re-sent on resume.
    Released { order: u64 },
}

impl InflightRecord {
    /// Send order within the session: resends keep the original order ([MQTT-4.6.0-1]).
    pub fn order(&self) -> u64 {
        match self {
            InflightRecord::Sent { order, .. } | InflightRecord::Released { order } => *order,
        }
    }
}

/// Where a session's persistent queue stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueBounds {
    /// Sequence of the oldest stored message (meaningless when `count == 0`).
    pub first: QueueSeq,
    /// Sequence the next enqueued message gets.
    pub next: QueueSeq,
    pub count: u64,
    pub bytes: u64,
}

/// One session as found in storage at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSession {
    pub client: ClientId,
    pub record: SessionRecord,
    pub subscriptions: Vec<(TopicFilter, SubscriptionRecord)>,
    pub queue: QueueBounds,
    /// Its sent mark (`Op::PutSentMark`), if one is stored.
    pub sent_mark: Option<QueueSeq>,
    /// Its dequeued-through mark (`Op::DequeueThrough`), if one is stored.
    pub dequeued_through: Option<QueueSeq>,
    /// QoS 2 packet identifiers received and awaiting PUBREL.
    pub incoming_qos2: Vec<PacketId>,
    /// QoS 2 PUBLISHes routed but not known to be stored by every owner, with the identity they
    /// were routed under (`Op::PutQos2Retry`).
    pub qos2_retry: Vec<(PacketId, MessageId)>,
    /// The identities of the QoS 2 messages it took last (`Op::PutSeen`), by slot.
    pub seen: Vec<(u64, MessageId)>,
    /// The packet ids kept for its queued messages (`Op::PutKeptIds`), sorted.
    pub kept_ids: Vec<PacketId>,
}

/// A message kept for another node's session while that node could not be reached (hinted
/// handoff, `broker/handoff.rs`): delivered to the session's owner once it can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffRecord {
    /// Orders every handoff entry of this node (one sequence for all sessions).
    pub seq: u64,
    /// The session it is for, at the newest epoch the keeping node knew of (a Clean Start or
    /// an end at a later epoch voids it; one replayed from an older log entry does not).
    pub client: ClientId,
    pub epoch: Epoch,
    pub message: Message,
    /// The client that published it, for No Local.
    pub publisher: Option<ClientId>,
    /// It may have reached the owner already (its forward went unanswered): it goes out with
    /// DUP = 1.
    pub retried: bool,
}

/// Everything the broker rebuilds its memory from at start-up.
#[derive(Debug, Default)]
pub struct Loaded {
    pub sessions: Vec<LoadedSession>,
    pub retained: Vec<Message>,
    /// Hinted-handoff entries, in `seq` order.
    pub handoff: Vec<HandoffRecord>,
}

/// One change; a [`Batch`] applies a list of them atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    PutSession {
        client: ClientId,
        record: SessionRecord,
    },
    /// Removes the session and everything it owns: subscriptions, queue, in-flight, QoS 2 state
    /// (received ids and the identities it took).
    DeleteSession {
        client: ClientId,
    },
    PutSubscription {
        client: ClientId,
        filter: TopicFilter,
        record: SubscriptionRecord,
    },
    DeleteSubscription {
        client: ClientId,
        filter: TopicFilter,
    },
    Enqueue {
        client: ClientId,
        seq: QueueSeq,
        delivery: Delivery,
    },
    Dequeue {
        client: ClientId,
        seq: QueueSeq,
    },
    /// Removes every queued message of `client` with a sequence at or below `seq`: the head a
    /// connected session's client has acknowledged, one op per session and group instead of a
    /// `Dequeue` per PUBACK. A store may keep those rows until a later op with `sweep` set
    /// (RocksDB: a mark hides them, and they are deleted as one range at a sweep), but no read
    /// or load returns them again. [`Store::load`] returns the mark
    /// ([`LoadedSession::dequeued_through`]) and continues sequences above it (as above a sent
    /// mark). The broker never writes a row at or below a mark, in the same batch or later
    /// (a store may hide such a row); the mark goes with the session (`DeleteSession`). One
    /// per session: a later one replaces it (its `seq` never lower).
    DequeueThrough {
        client: ClientId,
        seq: QueueSeq,
        sweep: bool,
    },
    /// Removes every queued message of `client` with a sequence below `before` (an operator's
    /// purge of the whole queue: one range, however long the queue, rather than one `Dequeue`
    /// per message). Enqueues later in the same batch, at `before` or above, stay.
    PurgeQueue {
        client: ClientId,
        before: QueueSeq,
    },
    PutInflight {
        client: ClientId,
        packet_id: PacketId,
        record: InflightRecord,
    },
    /// `client`'s queued messages up to `seq` may have been sent to its client (the mark is
    /// written ahead of what was sent, as a lease: `broker/row_backed.rs`); the rows of those
    /// sent stay until acknowledged, as the in-flight records of a connected session's QoS 1
    /// deliveries. [`Store::read_queue`] returns rows at or below the mark as redeliveries,
    /// [`Store::load`] continues sequences above it and returns it
    /// ([`LoadedSession::sent_mark`]). One per session (a later one replaces it).
    PutSentMark {
        client: ClientId,
        seq: QueueSeq,
    },
    /// Removes `client`'s sent mark (no queued row at or below it is left: those sent were
    /// written as in-flight rows or acknowledged).
    DeleteSentMark {
        client: ClientId,
    },
    /// The packet ids `client`'s queued QoS 2 messages wait for (`Delivery::sent_as`), which no
    /// other message may be given: all of them, sorted, replacing those put before; none
    /// removes the row. Stored apart from the queue rows so that a restart knows every one at
    /// once, not page by page as the rows are read ([`LoadedSession::kept_ids`]).
    PutKeptIds {
        client: ClientId,
        ids: Vec<PacketId>,
    },
    DeleteInflight {
        client: ClientId,
        packet_id: PacketId,
    },
    PutIncomingQos2 {
        client: ClientId,
        packet_id: PacketId,
    },
    /// The QoS 2 PUBLISH `packet_id` was routed under `id` and is not yet known to be stored
    /// by every owner: a re-send is routed again under `id`. It shares its row with
    /// `PutIncomingQos2` (a later one replaces it; `DeleteIncomingQos2` deletes either).
    PutQos2Retry {
        client: ClientId,
        packet_id: PacketId,
        id: MessageId,
    },
    DeleteIncomingQos2 {
        client: ClientId,
        packet_id: PacketId,
    },
    /// The session took the QoS 2 message `id`; `slot` orders the session's rows (see
    /// `Session::seen`).
    PutSeen {
        client: ClientId,
        slot: u64,
        id: MessageId,
    },
    DeleteSeen {
        client: ClientId,
        slot: u64,
    },
    PutRetained {
        message: Message,
    },
    /// Keeps a message for another node's session (hinted handoff).
    PutHandoff {
        record: HandoffRecord,
    },
    /// The handoff entry `seq` of `client` reached the session's owner (or the session ended).
    DeleteHandoff {
        client: ClientId,
        seq: u64,
    },
    DeleteRetained {
        topic: TopicName,
    },
}

/// Changes applied together or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn take(&mut self) -> Batch {
        std::mem::take(self)
    }
}

/// Durable storage of sessions, subscriptions, queues, in-flight windows and retained messages.
pub trait Store: Send {
    /// Reads everything but queue and in-flight contents.
    fn load(&mut self) -> Result<Loaded, StoreError>;
    /// Applies `batch` atomically; durable against a process kill when it returns.
    fn write(&mut self, batch: Batch) -> Result<(), StoreError>;
    /// Up to `limit` queued messages of `client` with sequence `>= from`, in order; those at or
    /// below its sent mark (`Op::PutSentMark`) with `redelivery` set.
    fn read_queue(
        &self,
        client: &ClientId,
        from: QueueSeq,
        limit: usize,
    ) -> Result<Vec<(QueueSeq, Delivery)>, StoreError>;
    /// The in-flight window of `client`, sorted by [`InflightRecord::order`].
    fn read_inflight(
        &self,
        client: &ClientId,
    ) -> Result<Vec<(PacketId, InflightRecord)>, StoreError>;
    /// Makes every completed `write` durable against power loss.
    fn sync(&mut self) -> Result<(), StoreError>;
    /// What the store holds in memory for itself: write buffers and caches, bounded by its
    /// configuration rather than by the number of sessions (for the metrics, so that a
    /// per-session memory figure can leave them out). Default: nothing.
    fn memory(&self) -> StoreMemory {
        StoreMemory::default()
    }
}

/// Memory a store holds for itself, in bytes (RocksDB's approximate usage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreMemory {
    /// Write buffers (memtables), flushed to disk when full.
    pub memtables: u64,
    /// The block cache: recently read blocks of the files on disk.
    pub block_cache: u64,
    /// Open files' indexes and filters kept in memory.
    pub table_readers: u64,
}

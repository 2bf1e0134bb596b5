//! In-memory state of one session: what it subscribes to, its queue position, its in-flight
//! window, and (while connected) the connection's negotiated limits.
//!
//! An offline persistent session keeps only small fixed-size fields here; its queued messages
//! stay on disk until it reconnects (`Queue::head` is emptied when it goes offline).

use std::collections::{HashMap, HashSet, VecDeque};

use berth_codec::{PacketId, ProtocolVersion, Publish, TopicFilter, TopicName};

use crate::ids::{ConnId, Epoch, MessageId, NodeId, QueueSeq};
use crate::lazy::{LazyDeque, LazySet};
use crate::message::Delivery;
use crate::store::{QueueBounds, SessionExpiry, SubscriptionRecord, WillRecord};
use crate::time::UnixMillis;
use crate::vec_map::VecMap;

/// Messages a connected session pages in from its stored queue at a time.
pub(crate) const QUEUE_PAGE: usize = 256;

/// How much of a connected persistent session's queue stays in memory as messages are queued
/// (besides being written), while the whole queue fits: then nothing is read back from the
/// store to send it. A session in lock step with its publishers (persistent fan-in) holds
/// about the congestion mark (`QueueConfig::congested_at`, at most 1,024, where publishers'
/// acknowledgements start to wait) plus what their windows still bring after it. With the
/// bound at one page, every message past the first 256 was written, read back and decoded
/// again: 11 % of the broker thread on persistent fan-in. Past either bound the queue's tail
/// lives in the store only, and is paged in a page at a time, as an offline backlog is.
pub(crate) const QUEUE_HEAD_MESSAGES: usize = 2048;
/// The same bound in bytes (`Delivery::size`): large messages keep a short head.
pub(crate) const QUEUE_HEAD_BYTES: u64 = 1024 * 1024;

#[derive(Debug)]
pub(crate) struct Session {
    pub epoch: Epoch,
    /// The oldest claim this copy has served here ([`crate::store::SessionRecord::landed`]).
    pub landed: Epoch,
    pub protocol: ProtocolVersion,
    pub expiry: SessionExpiry,
    pub subscriptions: VecMap<TopicFilter, SubscriptionRecord>,
    /// Boxed: most sessions have none, and an offline session should cost little memory.
    pub will: Option<Box<WillRecord>>,
    pub will_due_at: Option<UnixMillis>,
    pub expires_at: Option<UnixMillis>,
    pub queue: Queue,
    /// Its sent mark as the store holds it, this group's batch included (`row_backed.rs`):
    /// queue rows at or below it may have reached the client. It never goes down while such a
    /// row is queued, so that none of them goes out again with DUP = 0.
    pub sent_mark: Option<QueueSeq>,
    /// Its dequeued-through mark as the store holds it, this group's batch included
    /// (`Op::DequeueThrough`, `row_backed.rs`): which multiple of `SWEEP_ROWS` it passed last.
    pub dequeued_through: Option<QueueSeq>,
    /// Written through to the store (it was created with a non-zero expiry).
    pub stored: bool,
    pub inflight: super::window::Window,
    /// In-flight PUBLISHes of an earlier connection not yet re-sent on this one, in order: the
    /// client's Receive Maximum may be smaller than the window it left behind.
    pub resend: LazyDeque<PacketId>,
    /// Whether `inflight` reflects storage (it is read when the session resumes).
    pub inflight_loaded: bool,
    pub incoming_qos2: LazySet<PacketId>,
    /// `incoming_qos2` may be missing ids that an unrecovered older copy holds
    /// ([`crate::store::SessionRecord::qos2_state_elsewhere`]).
    pub qos2_state_elsewhere: bool,
    /// Only the client's QoS 2 PUBLISHes are in doubt
    /// ([`crate::store::SessionRecord::incoming_qos2_elsewhere`]): re-sends wait, deliveries
    /// do not.
    pub incoming_qos2_elsewhere: bool,
    /// What waits for the older copy's QoS 2 ids while `qos2_state_elsewhere` (boxed: almost
    /// every session has none).
    pub qos2_wait: Option<Box<Qos2Wait>>,
    /// The QoS 2 messages (by cluster identity) this session took last, so that a second copy
    /// is dropped (boxed: only sessions that receive QoS 2 messages in a cluster have one).
    pub seen: Option<Box<Seen>>,
    /// QoS 2 PUBLISHes of the client whose routing did not end stored everywhere (an owner did
    /// not confirm in time), by packet id, with the identity they were routed under: the
    /// client's re-send (DUP = 1) is routed again under that identity, so that an owner that
    /// did store the first copy drops the second (boxed: almost every session has none).
    // Boxed on purpose: 8 bytes per session instead of a map's 48 (see `Session`'s comment).
    #[allow(clippy::box_collection)]
    pub qos2_retry: Option<Box<std::collections::HashMap<PacketId, MessageId>>>,
    /// The packet ids queued QoS 2 messages wait for (`Delivery::sent_as`: the client may hold
    /// them from an older copy's send), which no other message is given meanwhile (boxed:
    /// only sessions a merge displaced messages of have one).
    // Boxed on purpose, as `qos2_retry`.
    #[allow(clippy::box_collection)]
    pub kept_ids: Option<Box<std::collections::BTreeSet<PacketId>>>,
    pub next_packet_id: u16,
    pub next_order: u64,
    /// Boxed for the same reason: only connected sessions have one.
    pub online: Option<Box<Online>>,
}

/// A session resumed without the QoS 2 state of an unreachable older copy, until that copy's
/// incoming QoS 2 ids arrive (`Broker::recover_qos2_state`).
#[derive(Debug, Default)]
pub(crate) struct Qos2Wait {
    /// Re-sent PUBLISHes (DUP = 1) whose id is not known here: the older copy may have received
    /// them (then they are duplicates) or not (then they must be delivered). Neither routed nor
    /// acknowledged until its ids are here; their PUBREC holds its place among the connection's
    /// acknowledgements (`token`).
    pub held: Vec<HeldQos2>,
    /// Ids the client released (PUBREL) while in doubt, known here or not: the older copy's
    /// exchange with that id ended, and the id may since carry a new message (stored and
    /// exported as [`crate::store::Qos2Doubt::released`]).
    pub released: HashSet<PacketId>,
    /// Until when QoS 2 deliveries wait for the older copy (`Broker::deliveries_held`):
    /// set at the first delivery that has to wait.
    pub deliveries_wait_until: Option<UnixMillis>,
    /// Which copy that is, when exactly one is known ([`crate::store::Qos2Doubt::lacking`]).
    pub lacking: Option<crate::store::CopyRef>,
    /// Copies lacked before that one ([`crate::store::Qos2Doubt::earlier`]).
    pub earlier: Vec<crate::store::CopyRef>,
    /// The newest claim a copy that wrote the window here served: the copy here before the
    /// merge that began the doubt, or a late copy joined since. A late copy that took the
    /// session on from here is newer (`Broker::late_copy_took_over_from_here`). In memory only:
    /// `None` (not known, after a restart or without a copy here before) turns that rule off.
    pub window_from: Option<Epoch>,
}

impl Qos2Wait {
    /// The session now lacks `copy`. Another copy than before gets a wait of its own: one
    /// begun for an earlier lack (a copy of this node, in doubt before a merge) may have run
    /// out already, and what is held for the new one went out at once (simulator `--scenario
    /// lost-release`, seed 864: its wait had begun 26 s earlier). True when a wait was
    /// running or ran out: the caller starts the new one at once (`Broker::qos2_wait_running`),
    /// since what it held waits for no later delivery to start it.
    #[must_use]
    pub fn now_lacking(&mut self, copy: Option<crate::store::CopyRef>) -> bool {
        let restart = self.lacking != copy && self.deliveries_wait_until.is_some();
        if restart {
            self.deliveries_wait_until = None;
        }
        self.lacking = copy;
        restart
    }
}

#[derive(Debug)]
pub(crate) struct HeldQos2 {
    pub conn: ConnId,
    /// The held acknowledgement's token in the connection's queue (`HeldAck::token`).
    pub token: u64,
    /// Its topic resolved (no alias: the alias table may change meanwhile).
    pub publish: Publish,
}

/// How many QoS 2 message identities a session remembers. A copy of a message arrives late
/// when a forward is retried or re-routed (seconds), or when an older copy of the session comes
/// back from a node that was cut off; this many QoS 2 messages taken since then are covered.
pub(crate) const SEEN_WINDOW: usize = 256;

/// The identities of the QoS 2 messages a session took last, oldest first, each with the
/// slot its stored row has (`Op::PutSeen`): slots grow at the back and shrink at the front,
/// so that older identities folded in from an imported copy go before the ones taken here.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    ids: VecDeque<(u64, MessageId)>,
    /// Per origin node, a sequence number at or above that of every identity of that origin in
    /// `ids` (never lowered when one leaves the window). Identities are numbered upwards where
    /// they are received, so a new message's is above it, and `contains` answers without
    /// scanning the 256 identities: that scan was the broker thread's top entry for QoS 2.
    newest: Vec<(NodeId, u64)>,
}

impl Seen {
    /// Slots start in the middle of the range, so that both ends have room.
    const FIRST_SLOT: u64 = 1 << 63;

    /// The stored rows of a session, in slot order.
    pub fn from_rows(rows: Vec<(u64, MessageId)>) -> Seen {
        let mut seen = Seen::default();
        for (_, id) in &rows {
            seen.note(*id);
        }
        seen.ids = rows.into();
        seen
    }

    pub fn contains(&self, id: MessageId) -> bool {
        let above_all = self
            .newest
            .iter()
            .find(|(origin, _)| *origin == id.origin)
            .is_none_or(|(_, newest)| id.seq > *newest);
        !above_all && self.ids.iter().any(|(_, seen)| *seen == id)
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn note(&mut self, id: MessageId) {
        match self
            .newest
            .iter_mut()
            .find(|(origin, _)| *origin == id.origin)
        {
            Some((_, newest)) => *newest = (*newest).max(id.seq),
            None => self.newest.push((id.origin, id.seq)),
        }
    }

    /// Records `id` as the newest; returns its slot and the slot of the identity it pushed
    /// out of the window, if any.
    pub fn push_newest(&mut self, id: MessageId) -> (u64, Option<u64>) {
        let slot = self.ids.back().map_or(Self::FIRST_SLOT, |(s, _)| s + 1);
        self.note(id);
        self.ids.push_back((slot, id));
        let evicted = (self.ids.len() > SEEN_WINDOW)
            .then(|| self.ids.pop_front().map(|(s, _)| s))
            .flatten();
        (slot, evicted)
    }

    /// Records `id` as older than every identity here, if the window has room for it.
    pub fn push_oldest(&mut self, id: MessageId) -> Option<u64> {
        if self.ids.len() >= SEEN_WINDOW {
            return None;
        }
        let slot = self.ids.front().map_or(Self::FIRST_SLOT, |(s, _)| s - 1);
        self.note(id);
        self.ids.push_front((slot, id));
        Some(slot)
    }

    /// Oldest first.
    pub fn ids(&self) -> impl Iterator<Item = MessageId> + '_ {
        self.ids.iter().map(|(_, id)| *id)
    }
}

/// The connection a session is attached to, with the limits negotiated in CONNECT/CONNACK.
#[derive(Debug)]
pub(crate) struct Online {
    pub conn: ConnId,
    /// Who the connected client is, for the ACL.
    /// Shared with the connection's cluster grant where that names the same client.
    pub principal: std::sync::Arc<crate::acl::Principal>,
    /// The publish rate limit's bucket: credit in thousandths of a PUBLISH, as of `credit_at`.
    pub publish_credit: u64,
    pub credit_at: crate::time::UnixMillis,
    /// The byte rate limit's bucket (`publish_rate_bytes`): thousandths of a byte, as of
    /// `bytes_credit_at`.
    pub bytes_credit: u64,
    pub bytes_credit_at: crate::time::UnixMillis,
    /// When its CONNECT was accepted (the admin API's "connected since").
    pub connected_at: crate::time::UnixMillis,
    /// How many QoS 1/2 messages may be un-acknowledged towards the client.
    pub send_window: usize,
    /// Largest packet the client accepts.
    pub max_packet_size: u32,
    /// Topic aliases the client accepts from us.
    pub alias_maximum: u16,
    /// The topic aliases in use, both ways: allocated at the first one. Most connections never
    /// use one, and two empty maps inline cost every connection 96 bytes (`bench conns`).
    pub aliases: Option<Box<Aliases>>,
    /// In-flight QoS 1 deliveries of a stored session whose durable record is still their
    /// queue row, by packet id (`broker/row_backed.rs`).
    pub row_backed: Vec<(PacketId, QueueSeq)>,
    /// How far the sent mark reaches in a written batch (`broker/row_backed.rs`).
    pub lease: Lease,
}

/// A session's sent mark as written: the queue rows at or below `through` may go out before
/// the write of the group that sends them, once batch number `write` is durable.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Lease {
    pub through: QueueSeq,
    /// 0: no mark written (and leased) since the session connected or its rows were settled.
    pub write: u64,
}

impl Lease {
    /// Whether queue row `seq` is covered by a mark that batch `durable_writes` made durable.
    pub fn covers(&self, seq: QueueSeq, durable_writes: u64) -> bool {
        self.write != 0 && self.write <= durable_writes && seq <= self.through
    }
}

/// An MQTT 5 connection's topic aliases (§3.3.2.3.4).
#[derive(Debug, Default)]
pub(crate) struct Aliases {
    /// Those we assigned, by topic.
    pub out: HashMap<TopicName, u16>,
    /// Those the client set towards us.
    pub inbound: HashMap<u16, TopicName>,
}

/// A message sent to the client and not yet fully acknowledged.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    /// PUBLISH sent, waiting for PUBACK / PUBREC.
    Sent { order: u64, delivery: Delivery },
    /// PUBREL sent, waiting for PUBCOMP.
    Released,
}

/// Position and paged-in head of the session's queue.
///
/// Invariant: `head` holds the queued messages from `bounds.first` on, in order, a prefix of
/// the whole queue. Sequences are contiguous except where a merge dropped messages from the
/// middle (`Broker::requeue_older_copy`); readers go by range, so a gap is skipped. For a
/// session that is not persistent, `head` *is* the queue.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub bounds: QueueBounds,
    pub head: VecDeque<(QueueSeq, Delivery)>,
}

impl Queue {
    pub fn is_empty(&self) -> bool {
        self.bounds.count == 0
    }

    /// Whether `head` holds the whole queue, so that a new message may be appended to it.
    pub fn head_is_complete(&self) -> bool {
        self.head.len() as u64 == self.bounds.count
    }

    /// Whether a connected persistent session's complete head may take one more message of
    /// `size` bytes ([`QUEUE_HEAD_MESSAGES`], [`QUEUE_HEAD_BYTES`]): the head is the whole queue
    /// then, so the queue's bytes are the head's.
    pub fn head_has_room(&self, size: u64) -> bool {
        self.head.len() < QUEUE_HEAD_MESSAGES
            && self.bounds.bytes.saturating_add(size) <= QUEUE_HEAD_BYTES
    }
}

/// Where a copy of a session serving claim `epoch` (created, restored, imported, resumed or
/// merged at it) gives out its next packet ids: by the claim's number modulo 4, in one of four
/// quarters of the id space (the first claim, and so a single node's first session, at 1).
/// Copies of one session up to three claims apart (each newer one resumed without the older,
/// which could not be reached) then do not hand out the same ids for their first 16,383
/// messages: a device still holding an id of an older copy's QoS 2 exchange (PUBREC sent,
/// PUBREL not yet) is not sent a new message under it (dropped there as a duplicate), nor
/// released from it by the newer copy's PUBREL, which would make the older copy's re-send,
/// merged later, a second delivery (simulator seeds 2154, 4751 and their kind). By the claim a
/// copy serves, not the one it started at: a copy that lived through several claims would
/// otherwise share its quarter with a copy one claim newer (seed 336).
fn first_packet_id(epoch: Epoch) -> u16 {
    ((epoch.0.wrapping_sub(1) % 4) as u16) * 16_384 + 1
}

impl Session {
    pub fn new(epoch: Epoch, protocol: ProtocolVersion, expiry: SessionExpiry) -> Box<Session> {
        Box::new(Session {
            epoch,
            landed: epoch,
            protocol,
            expiry,
            subscriptions: VecMap::new(),
            will: None,
            will_due_at: None,
            expires_at: None,
            queue: Queue::default(),
            sent_mark: None,
            dequeued_through: None,
            stored: !expiry.is_zero(),
            inflight: super::window::Window::default(),
            resend: LazyDeque::new(),
            inflight_loaded: true,
            incoming_qos2: LazySet::new(),
            qos2_state_elsewhere: false,
            incoming_qos2_elsewhere: false,
            qos2_wait: None,
            seen: None,
            qos2_retry: None,
            kept_ids: None,
            next_packet_id: first_packet_id(epoch),
            next_order: 0,
            online: None,
        })
    }

    /// This copy serves claim `epoch` from now on; at a newer claim its next packet ids come
    /// from that claim's quarter (`first_packet_id`; ids still in the window are skipped) —
    /// unless that is the quarter of the copy this session is in doubt about (`Qos2Doubt::
    /// lacking`, whose ids the client may still hold): every fourth claim comes back to it,
    /// and the ids go on where they are instead.
    pub fn serve_claim(&mut self, epoch: Epoch) {
        let quarter = |epoch: Epoch| epoch.0.wrapping_sub(1) % 4;
        let lacked = self
            .qos2_wait
            .as_ref()
            .filter(|_| self.qos2_in_doubt())
            .and_then(|wait| wait.lacking);
        if epoch != self.epoch && lacked.is_none_or(|copy| quarter(copy.epoch) != quarter(epoch)) {
            self.next_packet_id = first_packet_id(epoch);
        }
        self.epoch = epoch;
    }

    /// Whether some of its QoS 2 state is on an older copy not recovered yet.
    pub fn qos2_in_doubt(&self) -> bool {
        self.qos2_state_elsewhere || self.incoming_qos2_elsewhere
    }

    /// What it knows about that doubt, as stored and exported.
    pub fn qos2_doubt(&self) -> crate::store::Qos2Doubt {
        let Some(wait) = self.qos2_wait.as_deref().filter(|_| self.qos2_in_doubt()) else {
            return crate::store::Qos2Doubt::default();
        };
        let mut released: Vec<PacketId> = wait.released.iter().copied().collect();
        released.sort_unstable();
        crate::store::Qos2Doubt {
            lacking: wait.lacking,
            earlier: wait.earlier.clone(),
            released,
        }
    }

    /// Takes `doubt` over from a stored or imported record (nothing when not in doubt).
    pub fn restore_qos2_doubt(&mut self, doubt: crate::store::Qos2Doubt) {
        if !self.qos2_in_doubt() {
            self.qos2_wait = None;
            return;
        }
        if doubt == crate::store::Qos2Doubt::default() && self.qos2_wait.is_none() {
            return;
        }
        let wait = self.qos2_wait.get_or_insert_with(Default::default);
        wait.lacking = doubt.lacking;
        wait.earlier = doubt.earlier;
        wait.released.extend(doubt.released);
    }

    pub fn conn(&self) -> Option<ConnId> {
        self.online.as_ref().map(|online| online.conn)
    }

    /// Whether the in-flight window uses `id`.
    pub fn uses_packet_id(&self, id: PacketId) -> bool {
        self.inflight.uses(id)
    }

    /// Keeps `id` for the queued message that must go out under it (`kept_ids`); whether it
    /// was not kept before (then the store is told, `Broker::write_kept_ids`).
    pub fn keep_id_for_queued(&mut self, id: PacketId) -> bool {
        self.kept_ids
            .get_or_insert_with(Default::default)
            .insert(id)
    }

    /// `id` is no longer kept: its message went out under it, or the queue is empty. Whether
    /// the kept ids changed.
    pub fn release_kept_id(&mut self, id: Option<PacketId>) -> bool {
        let Some(kept) = self.kept_ids.as_mut() else {
            return false;
        };
        let removed = id.is_some_and(|id| kept.remove(&id));
        if kept.is_empty() || self.queue.is_empty() {
            self.kept_ids = None;
            return true;
        }
        removed
    }

    /// A packet identifier not used by the in-flight window nor kept for a queued message
    /// (`kept_ids`).
    pub fn allocate_packet_id(&mut self) -> Option<PacketId> {
        for _ in 0..u16::MAX {
            let candidate = self.next_packet_id;
            self.next_packet_id = if candidate == u16::MAX {
                1
            } else {
                candidate + 1
            };
            let id = PacketId::new(candidate)?;
            let kept = self
                .kept_ids
                .as_ref()
                .is_some_and(|kept| kept.contains(&id));
            if !kept && !self.inflight.uses_tightening(id) {
                return Some(id);
            }
        }
        None
    }

    pub fn take_order(&mut self) -> u64 {
        let order = self.next_order;
        self.next_order += 1;
        order
    }

    pub fn window_has_room(&self) -> bool {
        self.online
            .as_ref()
            .is_some_and(|online| self.inflight.len() < online.send_window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mid(origin: u64, seq: u64) -> MessageId {
        MessageId {
            origin: NodeId(origin),
            seq,
        }
    }

    #[test]
    fn seen_knows_every_identity_in_its_window_whatever_order_they_came_in() {
        let mut seen = Seen::default();
        for seq in [10, 5, 30, 20] {
            seen.push_newest(mid(1, seq));
        }
        seen.push_oldest(mid(1, 40)); // folded from an older copy, numbered above the rest
        seen.push_oldest(mid(2, 7));
        for id in [
            mid(1, 10),
            mid(1, 5),
            mid(1, 30),
            mid(1, 20),
            mid(1, 40),
            mid(2, 7),
        ] {
            assert!(seen.contains(id), "{id:?}");
        }
        for id in [mid(1, 41), mid(1, 6), mid(2, 8), mid(2, 6), mid(3, 1)] {
            assert!(!seen.contains(id), "{id:?}");
        }
        let loaded = Seen::from_rows(seen.ids.iter().copied().collect());
        assert!(loaded.contains(mid(1, 40)) && loaded.contains(mid(2, 7)));
        assert!(!loaded.contains(mid(1, 41)));
    }

    #[test]
    fn an_identity_pushed_out_of_the_window_is_forgotten() {
        let mut seen = Seen::default();
        for seq in 0..(SEEN_WINDOW as u64 + 1) {
            seen.push_newest(mid(1, seq));
        }
        assert!(!seen.contains(mid(1, 0)));
        assert!(seen.contains(mid(1, 1)) && seen.contains(mid(1, SEEN_WINDOW as u64)));
    }

    fn v5_session(epoch: u64) -> Box<Session> {
        Session::new(
            Epoch(epoch),
            ProtocolVersion::V5,
            SessionExpiry::After(3600),
        )
    }

    /// Seed 336: a copy that started at claim 4 and served claim 7 gave out ids from claim 4's
    /// quarter, the same as a copy one claim newer (8) that resumed without it.
    #[test]
    fn a_copy_gives_out_ids_from_the_quarter_of_the_claim_it_serves() {
        let mut older = v5_session(4);
        older.serve_claim(Epoch(7));
        let mut newer = v5_session(8);
        let older_id = older.allocate_packet_id().map(PacketId::get);
        let newer_id = newer.allocate_packet_id().map(PacketId::get);
        assert_eq!(older_id, Some(32_769));
        assert_eq!(newer_id, Some(49_153));
    }

    /// A session in doubt about the copy that served claim 3 (ids from 32,769) does not come
    /// back to that quarter at claim 7, three reconnects later: the client may still hold ids
    /// of that copy's QoS 2 messages.
    #[test]
    fn a_claim_does_not_take_the_quarter_of_the_copy_the_session_lacks() {
        let mut session = v5_session(4);
        session.qos2_state_elsewhere = true;
        session.qos2_wait = Some(Box::default());
        if let Some(wait) = session.qos2_wait.as_mut() {
            wait.lacking = Some(crate::store::CopyRef {
                node: crate::cluster::NodeId(3),
                epoch: Epoch(3),
            });
        }
        assert_eq!(
            session.allocate_packet_id().map(PacketId::get),
            Some(49_153)
        );
        for claim in 5..=7 {
            session.serve_claim(Epoch(claim));
        }
        let next = session.allocate_packet_id().map(PacketId::get);
        assert!(
            next.is_some_and(|id| !(32_769..49_153).contains(&id)),
            "id {next:?} is in the lacked copy's quarter"
        );
    }

    #[test]
    fn the_same_claim_again_keeps_the_ids_going_and_the_window_is_skipped() {
        let mut session = v5_session(1);
        assert_eq!(session.allocate_packet_id().map(PacketId::get), Some(1));
        session.serve_claim(Epoch(1));
        assert_eq!(session.allocate_packet_id().map(PacketId::get), Some(2));
        session.serve_claim(Epoch(5));
        session
            .inflight
            .push_back((PacketId::new(1).unwrap(), Outgoing::Released));
        assert_eq!(session.allocate_packet_id().map(PacketId::get), Some(2));
    }
}

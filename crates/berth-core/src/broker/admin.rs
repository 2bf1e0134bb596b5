//! What an operator asks of one session on the node that owns it (the admin API: `berth ctl
//! kick|discard|queue|purge`): close its connection, end it, look into its queue, empty its
//! queue. The server reaches these through the broker thread (the cluster relays a request to
//! the session's owner first); the rules are here, as for every other event: each operation
//! changes state through the same paths a client's packets or the clock take, and leaves its
//! effects as actions and store ops for the group commit.
//!
//! - kick: the connection ends as any connection the server closes (`CloseReason::Kicked`,
//!   MQTT 5: DISCONNECT 0x98 Administrative action; 3.1.1: closed), so the will follows its
//!   delay and a session that outlives its connection stays for its client;
//! - discard: the connection (if any) is kicked, then the session ends as an expired one does
//!   (`end_session`: a will still waiting is published, its subscriptions leave the index and
//!   the registry, everything it stored is deleted);
//! - inspect: queue depth and bytes, in-flight count, connection time and address, and the
//!   first queued messages (topic, QoS, size, age, expiry) — what only the owner knows;
//! - purge: the queue is emptied while the session and its subscriptions stay (counted as
//!   dropped, `reason="purged"`);
//! - a subscription added to or removed from a session, online or offline
//!   ([`subscription`]);
//! - a message published by the operator, routed as a client's PUBLISH is ([`publish`]).

mod publish;
mod subscription;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

use berth_codec::{QoS, TopicName};

use super::Broker;
use super::CloseReason;
use super::queue_page::{read_inflight_through, read_queue_through};
use crate::ids::{ClientId, QueueSeq};
use crate::message::Delivery;
use crate::stats::DropReason;
use crate::store::{Op, QueueBounds, Store, StoreError};
use crate::time::UnixMillis;

pub use publish::{
    OperatorPublish, OperatorPublished, PublishRefusal, is_operator_conn, operator_conn,
};
pub use subscription::{SubscriptionAnswer, SubscriptionChange, plan_subscription};

/// The most queued messages one inspection returns (the admin API's `limit` is capped here).
pub const INSPECT_LIMIT: usize = 1000;

/// An operator's request about one session, answered by its owner's broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRequest {
    /// Close the client's connection; the session stays.
    Kick,
    /// End the session (closing its connection first, if any).
    Discard,
    /// The session's owner-only state, with its first `limit` queued messages.
    Inspect { limit: usize },
    /// Empty the session's queue; the session, its subscriptions and its in-flight window stay.
    Purge,
}

/// The owner's answer to an [`AdminRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAnswer {
    Kicked(Kicked),
    Discarded(Discarded),
    Inspected(SessionView),
    Purged(Purged),
}

/// Why the owner could not answer an [`AdminRequest`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("no such session")]
    NoSession,
    /// Another node has claimed it and not yet pulled it, or it is still arriving here from
    /// its previous owner: the request is for whichever node holds it once the move is done.
    #[error("the session is moving between nodes; ask again")]
    Moving,
    /// Reading the session's queue or in-flight window failed (the broker goes on: a read
    /// changes nothing).
    #[error("reading the session failed: {0}")]
    Storage(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kicked {
    /// A connection was open (and is closed now).
    pub was_connected: bool,
    /// The session outlives its connection (false: its expiry was 0, it ended with it).
    pub session_kept: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discarded {
    pub was_connected: bool,
    /// Queued messages that ended with the session (in-flight ones not counted).
    pub messages: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub messages: u64,
    /// Their size as the queue's byte limit counts it (topic and payload).
    pub bytes: u64,
}

/// What only a session's owner knows of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionView {
    /// Messages in the queue (not yet sent; in-flight ones not counted).
    pub queued: u64,
    /// Their size as the queue's byte limit counts it (topic and payload).
    pub queued_bytes: u64,
    /// Messages sent and not yet acknowledged (PUBLISH or PUBREL awaiting its answer).
    pub in_flight: u64,
    /// When the open connection's CONNECT was accepted; `None`: not connected.
    pub connected_since: Option<UnixMillis>,
    /// The connected client's address (the PROXY header's behind a balancer).
    pub address: Option<IpAddr>,
    /// Age of the oldest queued message, if the queue holds any and it carries its time.
    pub oldest_age_ms: Option<u64>,
    /// The first queued messages, oldest first.
    pub messages: Vec<QueuedView>,
}

/// One queued message as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedView {
    pub topic: TopicName,
    /// The QoS it will be delivered with (the subscription's, if lower than the message's).
    pub qos: QoS,
    pub retain: bool,
    /// Payload bytes.
    pub bytes: u64,
    /// Since the broker received it; `None` if it carries no such time.
    pub age_ms: Option<u64>,
    /// Until its Message Expiry Interval runs out (0: expired, dropped when it comes up);
    /// `None`: it does not expire.
    pub expires_in_ms: Option<u64>,
}

impl QueuedView {
    fn of(now: UnixMillis, delivery: &Delivery) -> QueuedView {
        let message = &delivery.message;
        QueuedView {
            topic: message.topic.clone(),
            qos: delivery.qos,
            retain: delivery.retain,
            bytes: message.payload.len() as u64,
            age_ms: message.received_at.map(|at| now.0.saturating_sub(at.0)),
            expires_in_ms: message.expires_at.map(|at| at.0.saturating_sub(now.0)),
        }
    }
}

fn storage(error: StoreError) -> AdminError {
    AdminError::Storage(error.to_string())
}

impl<S: Store> Broker<S> {
    /// Answers an operator's request about `client`'s session. State changes are pending like
    /// those of [`Broker::handle_deferred`]: the caller commits them (and sends the actions)
    /// before it reports the answer.
    pub fn admin(
        &mut self,
        now: UnixMillis,
        client: &ClientId,
        request: AdminRequest,
    ) -> Result<AdminAnswer, AdminError> {
        match request {
            AdminRequest::Kick => self.kick(now, client).map(AdminAnswer::Kicked),
            AdminRequest::Discard => self.discard(now, client).map(AdminAnswer::Discarded),
            AdminRequest::Inspect { limit } => {
                self.inspect(now, client, limit).map(AdminAnswer::Inspected)
            }
            AdminRequest::Purge => self.purge_queue(now, client).map(AdminAnswer::Purged),
        }
    }

    /// Closes `client`'s connection (MQTT 5: DISCONNECT 0x98); the session stays unless it
    /// ends with its connection (expiry 0), exactly as when the server closes a connection for
    /// any other reason. A client that reconnects at once gets its session back.
    pub fn kick(&mut self, now: UnixMillis, client: &ClientId) -> Result<Kicked, AdminError> {
        self.admin_target(now, client)?;
        let conn = self.sessions.get(client).and_then(|s| s.conn());
        if let Some(conn) = conn {
            self.on_closed(now, conn, CloseReason::Kicked);
        }
        Ok(Kicked {
            was_connected: conn.is_some(),
            session_kept: self.sessions.contains_key(client),
        })
    }

    /// Ends `client`'s session: its connection is kicked first (if any), then the session
    /// ends through `end_session`, the one end every session comes to (expiry, Clean Start):
    /// a will still waiting is published, the subscriptions leave the index and the registry
    /// (`Replicate::Drop`: every node forgets its routes), the queue and everything else it
    /// stored are deleted.
    pub fn discard(&mut self, now: UnixMillis, client: &ClientId) -> Result<Discarded, AdminError> {
        self.admin_target(now, client)?;
        let messages = self
            .sessions
            .get(client)
            .map_or(0, |s| s.queue.bounds.count);
        let kicked = self.kick(now, client)?;
        // A session with expiry 0 already ended with its connection.
        self.end_session(now, client);
        Ok(Discarded {
            was_connected: kicked.was_connected,
            messages,
        })
    }

    /// The owner-only state of `client`'s session, with its first `limit` (at most
    /// [`INSPECT_LIMIT`]) queued messages. Reads through what the current group has not
    /// committed yet, as delivery does.
    pub fn inspect(
        &mut self,
        now: UnixMillis,
        client: &ClientId,
        limit: usize,
    ) -> Result<SessionView, AdminError> {
        self.admin_target(now, client)?;
        let limit = limit.min(INSPECT_LIMIT);
        let Some(session) = self.sessions.get(client) else {
            return Err(AdminError::NoSession);
        };
        let bounds = session.queue.bounds;
        // An offline session's window stays on disk until it resumes.
        let in_flight = if session.inflight_loaded {
            session.inflight.len()
        } else {
            read_inflight_through(&self.store, &self.batch, client)
                .map_err(storage)?
                .len()
        };
        // At least one, for the oldest message's age.
        let wanted = limit.max(1);
        let queued: Vec<(QueueSeq, Delivery)> = if bounds.count == 0 {
            Vec::new()
        } else if session.stored {
            read_queue_through(&self.store, &self.batch, client, bounds.first, wanted)
                .map_err(storage)?
        } else {
            // Not persistent: the head in memory is the whole queue.
            session.queue.head.iter().take(wanted).cloned().collect()
        };
        let online = session.online.as_deref();
        Ok(SessionView {
            queued: bounds.count,
            queued_bytes: bounds.bytes,
            in_flight: in_flight as u64,
            connected_since: online.map(|online| online.connected_at),
            address: online.and_then(|online| online.principal.source),
            oldest_age_ms: queued
                .first()
                .and_then(|(_, delivery)| delivery.message.received_at)
                .map(|at| now.0.saturating_sub(at.0)),
            messages: queued
                .iter()
                .take(limit)
                .map(|(_, delivery)| QueuedView::of(now, delivery))
                .collect(),
        })
    }

    /// Empties `client`'s queue while the session and its subscriptions stay; what arrives
    /// next is queued (or delivered) as usual. Messages already in flight to a connected
    /// client stay in its window: the client holds their packet ids and will acknowledge them
    /// (a QoS 2 one may be half-way through PUBREC/PUBREL), and taking them back would leave
    /// it answering for ids this session no longer knows, or reuse an id it still holds for a
    /// new message, which it would then drop as a duplicate.
    pub fn purge_queue(
        &mut self,
        now: UnixMillis,
        client: &ClientId,
    ) -> Result<Purged, AdminError> {
        self.admin_target(now, client)?;
        // The purge's range would take the rows of its in-flight messages with it.
        self.settle_rows(client);
        let Some(session) = self.sessions.get_mut(client) else {
            return Err(AdminError::NoSession);
        };
        let bounds = session.queue.bounds;
        session.queue.head.clear();
        // Sequences go on from where they were: enqueues of the purged messages may still sit
        // in this group's uncommitted batch, which reads see (`read_queue_through` takes those
        // from `first` on), so a purged sequence must not become readable again.
        session.queue.bounds = QueueBounds {
            first: bounds.next,
            next: bounds.next,
            count: 0,
            bytes: 0,
        };
        if session.stored && bounds.count > 0 {
            self.batch.push(Op::PurgeQueue {
                client: client.clone(),
                before: bounds.next,
            });
        }
        // No queued message waits for a packet id any more.
        if session.release_kept_id(None) {
            self.write_kept_ids(client);
        }
        self.stats.count_drops(DropReason::Purged, bounds.count);
        // Publishers whose acknowledgements waited for this queue to drain go on.
        self.note_drained(client);
        Ok(Purged {
            messages: bounds.count,
            bytes: bounds.bytes,
        })
    }

    /// Whether `client`'s session is here to be acted on: due timers run first (a session
    /// past its expiry is gone, as for any event), and a session moving away or still
    /// arriving is refused rather than half-changed on one side of its move.
    fn admin_target(&mut self, now: UnixMillis, client: &ClientId) -> Result<(), AdminError> {
        if self.next_deadline().is_some_and(|at| at <= now) {
            self.on_tick(now);
        }
        if self.is_moving(client) || self.import_pending(client) {
            return Err(AdminError::Moving);
        }
        if !self.sessions.contains_key(client) {
            return Err(AdminError::NoSession);
        }
        Ok(())
    }
}

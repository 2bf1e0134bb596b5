//! Time-driven rules: delayed wills and session expiry, and the end of a session.

use std::sync::Arc;

use super::{Broker, NEVER, Timer, record_of};
use crate::ids::ClientId;
use crate::store::{Op, Store};
use crate::time::UnixMillis;

impl<S: Store> Broker<S> {
    pub(super) fn on_tick(&mut self, now: UnixMillis) {
        while let Some((at, _)) = self.timers.first() {
            if *at > now {
                break;
            }
            let Some((at, timer)) = self.timers.pop_first() else {
                break;
            };
            match timer {
                Timer::Will(client) => self.will_due(now, at, &client),
                Timer::SessionExpiry(client) => self.expiry_due(now, at, &client),
                Timer::AckHold(conn) => self.ack_hold_due(now, conn),
                Timer::Unclaimed(client) => self.unclaimed_due(&client),
                Timer::DeliveryWait(client) => self.delivery_wait_due(now, &client),
            }
        }
    }

    /// Whether a will is due for publication now, or waits until this node has caught up with
    /// the cluster (the leader may have published it while this node was down).
    pub(super) fn will_may_fire(&mut self, client: &ClientId) -> bool {
        if !self.timers_held() {
            return true;
        }
        let Some(session) = self.sessions.get_mut(client) else {
            return false;
        };
        session.will_due_at = None;
        let epoch = session.epoch;
        if let Some(will) = session.will.take() {
            self.park_will(client, epoch, *will);
        }
        false
    }

    /// Timers are not removed when plans change; a timer only acts if it still matches.
    fn will_due(&mut self, now: UnixMillis, at: UnixMillis, client: &ClientId) {
        if self.is_moving(client) {
            return;
        }
        let Some(session) = self.sessions.get(client) else {
            return;
        };
        if session.online.is_some() || session.will_due_at != Some(at) {
            return;
        }
        if !self.will_may_fire(client) {
            return;
        }
        self.publish_will(now, client);
        if let Some(session) = self.sessions.get(client)
            && session.stored
        {
            let op = Op::PutSession {
                client: client.clone(),
                record: record_of(session),
            };
            self.batch.push(op);
        }
    }

    fn expiry_due(&mut self, now: UnixMillis, at: UnixMillis, client: &ClientId) {
        if self.is_moving(client) {
            return;
        }
        let Some(session) = self.sessions.get(client) else {
            return;
        };
        if session.online.is_some() || session.expires_at != Some(at) || at == NEVER {
            return;
        }
        self.stats.sessions_expired_total += 1;
        self.end_session(now, client);
    }

    /// Publishes the session's will (once) as if its client had published it.
    pub(super) fn publish_will(&mut self, now: UnixMillis, client: &ClientId) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        session.will_due_at = None;
        let Some(will) = session.will.take() else {
            return;
        };
        let epoch = session.epoch;
        self.route_will(now, client, epoch, will.message);
    }

    /// Publishes a session's will message (once): counted, recorded in the cluster, routed.
    pub(super) fn route_will(
        &mut self,
        now: UnixMillis,
        client: &ClientId,
        epoch: crate::ids::Epoch,
        mut message: crate::message::Message,
    ) {
        self.stats.wills_published_total += 1;
        self.replicate(crate::cluster::Replicate::WillFired {
            client: client.clone(),
            epoch,
        });
        // The will's lifetime starts now (see `WillRecord::of_connect`).
        message = crate::store::WillRecord::published_at(message, now);
        if message.retain {
            self.set_retained_public(&message);
        }
        let message = Arc::new(message);
        self.route(now, Some(client), message.clone());
        // Wills are not acknowledged to anyone: other owners get them without waiting.
        self.forward_matches(now, &message, Some(client), None);
    }

    /// Ends a session: a will still waiting is published, its subscriptions leave the index and
    /// everything it stored is deleted.
    pub(super) fn end_session(&mut self, now: UnixMillis, client: &ClientId) {
        if self
            .sessions
            .get(client)
            .is_some_and(|s| s.will_due_at.is_some())
            && self.will_may_fire(client)
        {
            self.publish_will(now, client);
        }
        let Some(session) = self.sessions.remove(client) else {
            return;
        };
        for filter in session.subscriptions.keys() {
            self.index.remove(client, filter);
        }
        self.replicate(crate::cluster::Replicate::Drop {
            client: client.clone(),
            epoch: session.epoch,
        });
        if session.stored {
            self.batch.push(Op::DeleteSession {
                client: client.clone(),
            });
            // A mark op before the delete is void: a new session's marks go after it.
            self.forget_marks(client);
        }
    }
}

//! A copy recovered late that took the session on from the state here: what it ended with
//! the client ends here without a word.
//!
//! A session resumed without a newer copy's QoS 2 state runs on an older state (its own
//! stranded copy, a fallback), its QoS 2 deliveries held (`Broker::deliveries_held`). The copy
//! it lacks, or one lacked before it (`Qos2Doubt::earlier`), took the session on from that
//! older state, so it knew every exchange of its window under the same packet ids (a QoS 2
//! message keeps its id through merges, `Delivery::sent_as`). Such a copy, not in doubt itself,
//! that no longer holds an exchange completed it: the client sent PUBCOMP and freed the id,
//! which a copy newer still, lacked here, may have used since. A PUBREL for it from here
//! would free the id the client holds for that newer copy's message, and its re-send would be
//! taken as new (simulator `--scenario lost-release` 0.5, seed 19957: node 2, lacking node 3's
//! copy of epoch 9, recovered node 1's of epoch 8, which had completed `p1:2` under id 1; the
//! PUBREL for id 1 released `p1:18`, which node 3 had sent under id 1, and `p1:18` reached the
//! client twice).

use std::collections::HashSet;

use berth_codec::{PacketId, QoS};

use super::publish::LateHolder;
use super::{Broker, ClientId};
use crate::cluster::QueuePage;
use crate::ids::{Epoch, MessageId};
use crate::store::{InflightRecord, SessionRecord, Store};
use crate::time::UnixMillis;

impl<S: Store> Broker<S> {
    /// Whether the copy `holder` brings late (its record `late`) took `client`'s session on
    /// from the state here: the session waits, deliveries held, for a copy the doubt names,
    /// and this is that copy (or a later claim it served), complete itself.
    pub(super) fn late_copy_took_over_from_here(
        &self,
        now: UnixMillis,
        client: &ClientId,
        holder: LateHolder,
        late: &SessionRecord,
    ) -> bool {
        let Some(session) = self.sessions.get(client) else {
            return false;
        };
        let Some(served) = holder.served else {
            return false;
        };
        // Once the wait ran out, QoS 2 messages went out from here under ids the late copy
        // never knew: the client may hold them.
        let waiting = session
            .qos2_wait
            .as_ref()
            .is_some_and(|wait| wait.deliveries_wait_until.is_none_or(|until| now < until));
        if !session.qos2_state_elsewhere || !waiting || late.qos2_state_elsewhere {
            return false;
        }
        // A copy the doubt names that is older than the window here (the copy here lacked it
        // before, and wrote its window after it) never knew that window.
        let Some(window_from) = session.qos2_wait.as_ref().and_then(|w| w.window_from) else {
            return false;
        };
        let doubt = session.qos2_doubt();
        doubt
            .lacking
            .iter()
            .chain(&doubt.earlier)
            .filter(|copy| copy.epoch > window_from)
            .any(|copy| copy.node == holder.node && served >= copy.epoch)
    }

    /// A late copy that served up to `served` joins `client`'s window: the window is now
    /// written from that claim too (`Qos2Wait::window_from`).
    pub(super) fn window_joined_from(&mut self, client: &ClientId, served: Option<Epoch>) {
        let Some(wait) = self
            .sessions
            .get_mut(client)
            .and_then(|s| s.qos2_wait.as_mut())
        else {
            return;
        };
        wait.window_from = match (wait.window_from, served) {
            (Some(from), Some(served)) => Some(from.max(served)),
            _ => None,
        };
    }

    /// Ends, without a PUBREL, the exchanges of `client`'s window that a copy which took the
    /// session on from here (`late_copy_took_over_from_here`) ended: the QoS 2 messages it
    /// `delivered`, and every PUBREL in flight here — it knew each one, and whichever it still
    /// waits on joins from its own window (`join_late_window`).
    pub(super) fn end_what_the_later_copy_ended(
        &mut self,
        client: &ClientId,
        delivered: &HashSet<MessageId>,
    ) {
        self.settle_rows(client);
        let window = match self.window_records(client) {
            Ok(window) => window,
            Err(error) => {
                self.fault = Some(error);
                return;
            }
        };
        let ended: Vec<(PacketId, bool)> = window
            .into_iter()
            .filter_map(|(id, record)| match record {
                InflightRecord::Sent { delivery, .. } => (delivery.qos == QoS::ExactlyOnce
                    && delivery.message.id.is_some_and(|m| delivered.contains(&m)))
                .then_some((id, true)),
                InflightRecord::Released { .. } => Some((id, false)),
            })
            .collect();
        for (id, message) in ended {
            if let Some(session) = self.sessions.get_mut(client) {
                session.resend.retain(|held| *held != id);
            }
            self.forget_inflight(client, id);
            if message {
                self.stats.count_drop(crate::stats::DropReason::Duplicate);
            }
        }
    }
}

/// The QoS 2 messages a copy of a session took (`seen`) and delivered: neither its in-flight
/// window (`inflight`; a PUBREL there names no message) nor its queue (`page`) holds them.
pub(super) fn delivered_by_copy(
    seen: &[MessageId],
    inflight: &[(PacketId, InflightRecord)],
    page: &QueuePage,
) -> HashSet<MessageId> {
    let mut delivered: HashSet<MessageId> = seen.iter().copied().collect();
    let held = inflight
        .iter()
        .filter_map(|(_, record)| match record {
            InflightRecord::Sent { delivery, .. } => Some(delivery),
            InflightRecord::Released { .. } => None,
        })
        .chain(page.iter());
    for delivery in held {
        if let Some(id) = delivery.message.id {
            delivered.remove(&id);
        }
    }
    delivered
}

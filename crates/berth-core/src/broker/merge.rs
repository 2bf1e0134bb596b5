//! A takeover that finds an older copy of the session still here: the copy and the imported
//! state become one session, without losing either's messages or confusing the client's packet
//! ids.

use std::collections::{HashMap, HashSet, VecDeque};

use berth_codec::{PacketId, QoS, TopicFilter};

use super::Broker;
use super::session::Outgoing;
use crate::cluster::SessionExport;
use crate::ids::Epoch;
use crate::ids::{ClientId, MessageId, QueueSeq};
use crate::message::Delivery;
use crate::store::{InflightRecord, Op, Store, SubscriptionRecord};

impl<S: Store> Broker<S> {
    /// This node still held an older copy of the session it takes over now (it could not be
    /// reached when the session moved away, and the client came back here before the copy was
    /// pulled). The copy is the oldest part of the session, the imported state the newest: the
    /// imported record, subscriptions and in-flight window win (`merge_inflight`), this copy's
    /// queue and unacknowledged messages follow that window — late, like a stranded backlog
    /// recovered — and the imported queue pages follow them (`on_import_queue`). Nothing of
    /// either is dropped, except a second copy of a QoS 2 message the session took. `served`:
    /// the claim the merged copy serves from now on (the import's, before a newer claim of
    /// this node moves the record's epoch on).
    pub(super) fn merge_import(
        &mut self,
        now: crate::time::UnixMillis,
        client: &ClientId,
        mut export: SessionExport,
        served: Epoch,
    ) {
        // Rewritten wholesale below: the window as in-flight rows first (`row_backed`).
        self.settle_rows(client);
        let imported_inflight = std::mem::take(&mut export.inflight);
        for (packet_id, id) in std::mem::take(&mut export.qos2_retry) {
            self.keep_for_retry(client, packet_id, id);
        }
        let imported_seen = export.seen.clone();
        // This copy's queue may hold QoS 2 messages the imported state took (this copy was
        // pulled before, its release lost): those in the imported window go out from there,
        // and this copy's are dropped now; the others are dropped when the import is done,
        // unless its pages bring them (then the copy here is the one delivered, the page's
        // being this copy's duplicate) — a pull cut short never drops them.
        let in_window: HashSet<MessageId> = imported_inflight
            .iter()
            .filter_map(|(_, record)| match record {
                InflightRecord::Sent { delivery, .. } => delivery.message.id,
                InflightRecord::Released { .. } => None,
            })
            .collect();
        // What this copy delivered of the imported window's messages: if the imported state
        // lacks exactly this copy (`lacking_this` below), the client completed them here, and
        // the imported window, sent before, ends them with a PUBREL (`release_delivered`);
        // re-sent, they would be taken twice (simulator `--scenario lost-release`, seed 505).
        let taken_and_sent = self.taken_and_sent(client, &in_window);
        let requeued = self.requeue_older_copy(client, &in_window, true);
        let delivered_here: HashSet<MessageId> =
            taken_and_sent.difference(&requeued).copied().collect();
        let later: HashSet<MessageId> = imported_seen
            .iter()
            .copied()
            .filter(|id| !in_window.contains(id))
            .collect();
        if let Some(cluster) = self.cluster.as_mut().filter(|_| !later.is_empty()) {
            cluster.taken_by_import.insert(client.clone(), later);
        }
        self.defer_seen(client, std::mem::take(&mut export.seen));
        let mut record = export.record;
        // Never back: a second pull for the same claim (an adopted one beside its connection's)
        // must not undo a newer claim of this node that the first import already took.
        record.epoch = self.landing_epoch(client, record.epoch);
        let node = self.cluster.as_ref().map(|c| c.node);
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        session.protocol = record.protocol;
        session.expiry = record.expiry;
        session.will = record.will.clone().map(Box::new);
        session.will_due_at = record.will_due_at;
        session.expires_at = record.expires_at;
        // The copy here is older than the imported state. If that state is complete, its
        // incoming QoS 2 ids are the client's (this copy's may have been released and reused
        // since, and would swallow a new message). If it resumed without an older copy's
        // state (`qos2_state_elsewhere`), this copy stands in for that state's delivery ids
        // only where it holds what that state sent (`stands_in` below) and is complete itself;
        // otherwise the session still waits. Held re-sends belonged to this copy's connection,
        // which is gone.
        //
        // The client's side is exact only when the imported state names the copy it lacks
        // and that copy is this one (`lacking_this`): then this copy's ids join, less those
        // the client released since (`Qos2Doubt::released`, every PUBREL while in doubt), and
        // what is still missing is what this copy lacked. Otherwise the owner before the claim
        // may have been another node, which received QoS 2 PUBLISHes that are in neither (a
        // takeover back after its owner could not be reached), so a re-sent PUBLISH with an
        // id not known here waits for the missing copy (`incoming_qos2_elsewhere`): taken as
        // new, it could be delivered twice (simulator seeds 23, 1661, 1994, 2327, 2727, 875).
        let imported_doubt = std::mem::take(&mut record.qos2_doubt);
        let imported_in_doubt = record.qos2_state_elsewhere || record.incoming_qos2_elsewhere;
        let local_doubt = session.qos2_doubt();
        let local_in_doubt = session.qos2_in_doubt();
        let is_this = |copy: &crate::store::CopyRef| {
            Some(copy.node) == node && session.landed <= copy.epoch && copy.epoch <= session.epoch
        };
        let lacking_this = imported_in_doubt && imported_doubt.lacking.is_some_and(|c| is_this(&c));
        // Lacked before the copy named (`Qos2Doubt::earlier`): the imported state never had this
        // copy's state either, so what the client completed here ends with a PUBREL too
        // (`--scenario lost-release`, seed 904: a message completed on a copy that a later lack
        // had replaced went out again from the imported window once the wait ran out).
        let lacked_before = imported_in_doubt && imported_doubt.earlier.iter().any(is_this);
        let missing = record.qos2_state_elsewhere;
        // This copy stands in for the delivery state the imported one lacks only where it
        // holds what that state sent: it is the lacked copy, or landed here after it. A newer
        // lacked copy may have sent QoS 2 messages this copy still has queued or in flight (the
        // two may share an ancestor whose release was lost); sent again now, under other packet
        // ids, the client would take them twice (simulator seeds 1370, 5331, 10071, 10997), so
        // the session still waits for it (at most `QOS2_STATE_WAIT`).
        let stands_in = lacking_this
            || imported_doubt
                .lacking
                .is_some_and(|copy| copy.epoch < session.landed);
        session.qos2_state_elsewhere = missing && (session.qos2_state_elsewhere || !stands_in);
        session.incoming_qos2_elsewhere = !session.qos2_state_elsewhere
            && if lacking_this {
                local_in_doubt
            } else {
                imported_in_doubt
            };
        let merged_doubt = super::doubt::merged_lack(
            local_in_doubt.then_some(&local_doubt),
            imported_in_doubt.then_some(&imported_doubt),
            lacking_this,
            is_this,
        );
        let lacking = merged_doubt.lacking;
        let released: HashSet<PacketId> = imported_doubt.released.iter().copied().collect();
        session.landed = served;
        let mut restart_wait = false;
        if session.qos2_in_doubt() {
            // Not yet moved on to the import's claim: the claim this copy served last.
            let local_epoch = session.epoch;
            let wait = session.qos2_wait.get_or_insert_with(Default::default);
            wait.window_from = Some(wait.window_from.map_or(local_epoch, |e| e.max(local_epoch)));
            wait.held.clear();
            restart_wait = wait.now_lacking(lacking);
            wait.earlier = merged_doubt.earlier;
            wait.released.extend(released.iter().copied());
        } else {
            session.qos2_wait = None;
        }
        // After the doubt is known: the claim's quarter of packet ids avoids the lacked copy's.
        session.serve_claim(record.epoch);
        let mut stale_ids = Vec::new();
        let imported_ids: HashSet<PacketId> = export.incoming_qos2.iter().copied().collect();
        session.incoming_qos2.retain(|id| {
            // Released since (whichever copy held it), or, from a complete state that does
            // not hold it, released and maybe reused since.
            let keep =
                imported_ids.contains(id) || (!released.contains(id) && (missing || lacking_this));
            if !keep {
                stale_ids.push(*id);
            }
            keep
        });
        let stored = session.stored;
        if stored {
            for packet_id in stale_ids {
                self.batch.push(Op::DeleteIncomingQos2 {
                    client: client.clone(),
                    packet_id,
                });
            }
            self.batch.push(Op::PutSession {
                client: client.clone(),
                record: crate::store::SessionRecord {
                    qos2_state_elsewhere: session.qos2_state_elsewhere,
                    incoming_qos2_elsewhere: session.incoming_qos2_elsewhere,
                    qos2_doubt: session.qos2_doubt(),
                    landed: session.landed,
                    ..record
                },
            });
        }
        let imported: HashMap<TopicFilter, SubscriptionRecord> =
            export.subscriptions.into_iter().collect();
        let gone: Vec<TopicFilter> = session
            .subscriptions
            .keys()
            .filter(|f| !imported.contains_key(*f))
            .cloned()
            .collect();
        for filter in gone {
            session.subscriptions.remove(&filter);
            self.index.remove(client, &filter);
            if stored {
                self.batch.push(Op::DeleteSubscription {
                    client: client.clone(),
                    filter,
                });
            }
        }
        for (filter, sub) in imported {
            self.index.insert(client, &filter, sub.clone());
            if stored {
                self.batch.push(Op::PutSubscription {
                    client: client.clone(),
                    filter: filter.clone(),
                    record: sub.clone(),
                });
            }
            session.subscriptions.insert(filter, sub);
        }
        for packet_id in export.incoming_qos2 {
            if session.incoming_qos2.insert(packet_id) && stored {
                self.batch.push(Op::PutIncomingQos2 {
                    client: client.clone(),
                    packet_id,
                });
            }
        }
        self.merge_inflight(client, imported_inflight, &in_window);
        if restart_wait {
            self.qos2_wait_running(now, client);
        }
        if (lacking_this || lacked_before) && !delivered_here.is_empty() {
            self.release_delivered(client, &delivered_here);
        }
    }

    /// This copy's queue, which follows the imported state (late), as it should go out:
    /// without the QoS 2 messages in `taken` (the imported state took them; delivered after
    /// the imported ones, the client would take them a second time: simulator seed 1994), and,
    /// at the merge (`mark_redelivered`), every QoS 1/2 message with DUP = 1 (rewritten in the
    /// store too, so that a restart keeps the flag) — the newer owner may have pulled this very
    /// copy, its release lost in a crash here, and delivered from it already, so each "might
    /// be a re-delivery" (§3.3.1.1). Merges are rare; the queue is read once, in pages.
    /// Returns the identities of the messages dropped.
    pub(super) fn requeue_older_copy(
        &mut self,
        client: &ClientId,
        taken: &HashSet<MessageId>,
        mark_redelivered: bool,
    ) -> HashSet<MessageId> {
        const PAGE: usize = 256;
        // Rewritten wholesale below: the window as in-flight rows first (`row_backed`).
        self.settle_rows(client);
        let Some(session) = self.sessions.get_mut(client) else {
            return HashSet::new();
        };
        let is_taken = |delivery: &Delivery| {
            delivery.qos == QoS::ExactlyOnce
                && delivery.message.id.is_some_and(|id| taken.contains(&id))
        };
        let mut dropped: Vec<(QueueSeq, u64)> = Vec::new();
        let mut ids = HashSet::new();
        let mut first_kept = None;
        for (seq, delivery) in session.queue.head.iter_mut() {
            if mark_redelivered {
                delivery.redelivery = delivery.qos != QoS::AtMostOnce;
            }
            if !session.stored {
                if is_taken(delivery) {
                    dropped.push((*seq, delivery.size()));
                    ids.extend(delivery.message.id);
                } else if first_kept.is_none() {
                    first_kept = Some(*seq);
                }
            }
        }
        if session.stored && session.queue.bounds.count > 0 {
            let mut from = session.queue.bounds.first;
            loop {
                let page = match super::queue_page::read_queue_through(
                    &self.store,
                    &self.batch,
                    client,
                    from,
                    PAGE,
                ) {
                    Ok(page) => page,
                    Err(error) => {
                        self.fault = Some(error);
                        return ids;
                    }
                };
                let full = page.len() == PAGE;
                let Some(last) = page.last().map(|(seq, _)| *seq) else {
                    break;
                };
                for (seq, mut delivery) in page {
                    if is_taken(&delivery) {
                        dropped.push((seq, delivery.size()));
                        ids.extend(delivery.message.id);
                        continue;
                    }
                    first_kept.get_or_insert(seq);
                    if mark_redelivered && delivery.qos != QoS::AtMostOnce && !delivery.redelivery {
                        delivery.redelivery = true;
                        self.batch.push(Op::Enqueue {
                            client: client.clone(),
                            seq,
                            delivery,
                        });
                    }
                }
                if !full {
                    break;
                }
                from = last.next();
            }
        }
        if dropped.is_empty() {
            return ids;
        }
        let Some(session) = self.sessions.get_mut(client) else {
            return ids;
        };
        let gone: HashSet<QueueSeq> = dropped.iter().map(|(seq, _)| *seq).collect();
        session.queue.head.retain(|(seq, _)| !gone.contains(seq));
        let bounds = &mut session.queue.bounds;
        for (_, size) in &dropped {
            bounds.count = bounds.count.saturating_sub(1);
            bounds.bytes = bounds.bytes.saturating_sub(*size);
        }
        bounds.first = first_kept.unwrap_or(bounds.next);
        if session.stored {
            for (seq, _) in &dropped {
                self.batch.push(Op::Dequeue {
                    client: client.clone(),
                    seq: *seq,
                });
            }
        }
        for _ in &dropped {
            self.stats.count_drop(crate::stats::DropReason::Duplicate);
        }
        ids
    }

    /// The in-flight windows of a merge. The imported one is what the client holds now: its
    /// packet ids name those messages on the client's side (a QoS 2 message it received under
    /// one id and gets again under another reaches its application twice), so it keeps its ids
    /// and is re-sent first. This copy's window is older: its unacknowledged messages follow
    /// (DUP = 1), each under its own id unless the imported window uses it, then this copy's
    /// queue — late, as a stranded backlog recovered is. Where the imported window uses the id,
    /// a QoS 1 message gets a new one; a QoS 2 message is queued behind this copy's queue to go
    /// out under its own once it is free (`Delivery::sent_as`). Of its PUBRELs only
    /// those whose id the imported window does not use are kept (they end an exchange the
    /// client may still hold).
    ///
    /// A message of this window that the imported state took but does not hold in its window
    /// stays here for now, under its own id: the import's queue pages may bring it (then the
    /// page's is the duplicate: this copy took it, `take_once`), or the newer owner delivered
    /// it, and it is dropped once the import is done (`drop_taken_inflight`). Dropped here
    /// at once, while the page's copy was dropped as one this copy took, the message reached
    /// the client from neither (simulator `--scenario lost-release`, seed 949).
    /// `in_window`: the messages the imported window holds.
    fn merge_inflight(
        &mut self,
        client: &ClientId,
        imported: Vec<(PacketId, InflightRecord)>,
        in_window: &HashSet<MessageId>,
    ) {
        let local = match self.window_records(client) {
            Ok(window) => window,
            Err(error) => {
                self.fault = Some(error);
                return;
            }
        };
        let Some(session) = self.sessions.get(client) else {
            return;
        };
        let stored = session.stored;
        let imported_ids: HashSet<PacketId> = imported.iter().map(|(id, _)| *id).collect();
        let mut window: VecDeque<(PacketId, Outgoing)> = VecDeque::new();
        let mut older = Vec::new();
        for (id, record) in local {
            if stored && !imported_ids.contains(&id) {
                self.batch.push(Op::DeleteInflight {
                    client: client.clone(),
                    packet_id: id,
                });
            }
            match record {
                InflightRecord::Released { .. } if !imported_ids.contains(&id) => {
                    window.push_back((id, Outgoing::Released));
                }
                // A message both windows hold (this copy was pulled before, its release lost)
                // goes to the client once, from the imported window.
                InflightRecord::Sent { delivery, .. }
                    if delivery.message.id.is_some_and(|m| in_window.contains(&m)) =>
                {
                    self.stats.count_drop(crate::stats::DropReason::Duplicate);
                }
                InflightRecord::Sent { delivery, .. } => {
                    older.push((
                        id,
                        Delivery {
                            redelivery: delivery.qos != QoS::AtMostOnce,
                            ..delivery
                        },
                    ));
                }
                _ => {}
            }
        }
        let mut imported = imported;
        imported.sort_by_key(|(_, record)| record.order());
        // The imported window's QoS 2 messages are taken here now, as an import without an
        // older copy takes them (`on_import_state`): a second state for the same claim (two
        // pulls, an adopted claim beside its connection's) arriving before this import is done
        // would otherwise send them again under new ids (simulator seed 3272).
        let window_ids: Vec<MessageId> = imported
            .iter()
            .filter_map(|(_, record)| match record {
                InflightRecord::Sent { delivery, .. } => super::identity::qos2_identity(delivery),
                InflightRecord::Released { .. } => None,
            })
            .collect();
        for (id, record) in imported {
            window.push_back(match record {
                InflightRecord::Sent { delivery, .. } => {
                    (id, Outgoing::Sent { order: 0, delivery })
                }
                InflightRecord::Released { .. } => (id, Outgoing::Released),
            });
        }
        self.stats.stranded_recovered_total += older.len() as u64;
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        session.inflight = window.into_iter().collect();
        let mut to_queue = Vec::new();
        let mut displaced = Vec::new();
        for (id, delivery) in older {
            // The client may still hold the message under its old id (received, PUBREL not yet
            // come): re-sent under it, a QoS 2 message is recognised as a duplicate there.
            if !session.uses_packet_id(id) {
                session
                    .inflight
                    .push_back((id, Outgoing::Sent { order: 0, delivery }));
            } else {
                displaced.push((id, delivery));
            }
        }
        // New ids only once every message that keeps its own has joined: a new id is then
        // never one a later message of this copy brings.
        for (id, delivery) in displaced {
            // Under another id it would reach the client's application twice: it waits in the
            // queue until the window no longer uses its own (`Delivery::sent_as`).
            if delivery.qos == QoS::ExactlyOnce {
                to_queue.push(Delivery {
                    sent_as: Some(id),
                    ..delivery
                });
                continue;
            }
            match session.allocate_packet_id() {
                Some(id) => session
                    .inflight
                    .push_back((id, Outgoing::Sent { order: 0, delivery })),
                // Every id in use (65,535 in flight): queued instead, behind this copy's queue.
                None => to_queue.push(delivery),
            }
        }
        // One send order over the merged window, written down (a restart re-sends it so).
        for (order, outgoing) in session.inflight.outgoing_mut().enumerate() {
            if let Outgoing::Sent { order: o, .. } = outgoing {
                *o = order as u64;
            }
        }
        session.next_order = session.inflight.len() as u64;
        session.inflight_loaded = true;
        session.resend.clear();
        if stored {
            for (order, (packet_id, outgoing)) in session.inflight.iter().enumerate() {
                let record = match outgoing {
                    Outgoing::Sent { delivery, .. } => InflightRecord::Sent {
                        order: order as u64,
                        delivery: delivery.clone(),
                    },
                    Outgoing::Released => InflightRecord::Released {
                        order: order as u64,
                    },
                };
                self.batch.push(Op::PutInflight {
                    client: client.clone(),
                    packet_id: *packet_id,
                    record,
                });
            }
        }
        for id in window_ids {
            let taken = self
                .sessions
                .get(client)
                .and_then(|s| s.seen.as_ref())
                .is_some_and(|seen| seen.contains(id));
            if !taken {
                self.take_id(client, id);
            }
        }
        for delivery in to_queue {
            self.enqueue(client, delivery);
        }
    }

    /// The import is done: what this copy's window still holds of the QoS 2 messages the
    /// imported state took (`taken`: its pages did not bring them) the newer owner delivered,
    /// and they go no further (see `merge_inflight`).
    pub(super) fn drop_taken_inflight(&mut self, client: &ClientId, taken: &HashSet<MessageId>) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let is_taken = |outgoing: &Outgoing| {
            matches!(outgoing, Outgoing::Sent { delivery, .. }
                if delivery.qos == QoS::ExactlyOnce
                    && delivery.message.id.is_some_and(|id| taken.contains(&id)))
        };
        let gone: Vec<PacketId> = session
            .inflight
            .iter()
            .filter(|(_, outgoing)| is_taken(outgoing))
            .map(|(id, _)| *id)
            .collect();
        if gone.is_empty() {
            return;
        }
        session.inflight.retain(|(_, outgoing)| !is_taken(outgoing));
        session.resend.retain(|id| !gone.contains(id));
        let stored = session.stored;
        for packet_id in gone {
            self.stats.count_drop(crate::stats::DropReason::Duplicate);
            if stored {
                self.batch.push(Op::DeleteInflight {
                    client: client.clone(),
                    packet_id,
                });
            }
        }
    }

    /// The QoS 2 messages in `client`'s window that a newer copy of the session delivered
    /// (`delivered`, from its state recovered late): their exchange ends with a PUBREL instead
    /// of a re-send (`resend_held` kept them back). The client may still hold the packet id
    /// from this copy's send (PUBREC sent, PUBREL not come); if it does not, it answers the
    /// PUBREL all the same (PUBCOMP), and the id is free on both sides.
    pub(super) fn release_delivered(&mut self, client: &ClientId, delivered: &HashSet<MessageId>) {
        let window = match self.window_records(client) {
            Ok(window) => window,
            Err(error) => {
                self.fault = Some(error);
                return;
            }
        };
        let ended: Vec<(PacketId, u64)> = window
            .into_iter()
            .filter_map(|(id, record)| match record {
                InflightRecord::Sent { order, delivery }
                    if delivery.qos == QoS::ExactlyOnce
                        && delivery.message.id.is_some_and(|m| delivered.contains(&m)) =>
                {
                    Some((id, order))
                }
                _ => None,
            })
            .collect();
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let conn = session.conn();
        for (id, order) in ended {
            // Not loaded, the window is read from the store when the client is back.
            if session.inflight_loaded {
                if let Some(at) = session.inflight.iter().position(|(used, _)| *used == id)
                    && let Some(outgoing) = session.inflight.outgoing_at_mut(at)
                {
                    *outgoing = Outgoing::Released;
                }
                session.resend.retain(|held| *held != id);
                if let Some(conn) = conn {
                    self.actions.push(super::Action::Send {
                        conn,
                        packet: berth_codec::Packet::PubRel(berth_codec::PubRel::new(id)),
                    });
                }
            }
            if session.stored {
                self.batch.push(Op::PutInflight {
                    client: client.clone(),
                    packet_id: id,
                    record: InflightRecord::Released { order },
                });
            }
            self.stats.count_drop(crate::stats::DropReason::Duplicate);
        }
    }

    /// What the copy of `client` held here has in flight and queued, in order: for a harness
    /// that checks delivery order, since a merge (`merge_import`) delivers it after the imported
    /// window, late.
    pub fn held_backlog(
        &self,
        client: &ClientId,
    ) -> Result<crate::cluster::QueuePage, crate::store::StoreError> {
        const PAGE: usize = 256;
        let Some(session) = self.sessions.get(client) else {
            return Ok(Vec::new());
        };
        let mut backlog: Vec<Delivery> = self
            .window_records(client)?
            .into_iter()
            .filter_map(|(_, record)| match record {
                InflightRecord::Sent { delivery, .. } => Some(delivery),
                InflightRecord::Released { .. } => None,
            })
            .collect();
        if !session.stored {
            backlog.extend(session.queue.head.iter().map(|(_, d)| d.clone()));
            return Ok(backlog);
        }
        let mut from = session.queue.bounds.first;
        loop {
            let page = super::queue_page::read_queue_through(
                &self.store,
                &self.batch,
                client,
                from,
                PAGE,
            )?;
            let full = page.len() == PAGE;
            let Some(last) = page.last().map(|(seq, _)| *seq) else {
                break;
            };
            backlog.extend(page.into_iter().map(|(_, d)| d));
            if !full {
                break;
            }
            from = last.next();
        }
        Ok(backlog)
    }

    /// The in-flight window of an older copy recovered late (`Event::ImportLate`), oldest
    /// first. Each unacknowledged message the session has not taken joins its window under its
    /// own packet id where the session does not use that id — the client may still hold it
    /// (received, PUBREL not yet come), and then recognises a QoS 2 message as a duplicate.
    /// Where the session uses the id, a QoS 2 message is queued to go out under it once it is
    /// free (`Delivery::sent_as`), a QoS 1 message is delivered under a new id. A PUBREL whose
    /// id is free is sent again: it ends an exchange the client may still hold.
    /// `moved`: messages this session had queued and gave up for the late entry (see
    /// `on_import_late`), joined although the session took them.
    pub(super) fn join_late_window(
        &mut self,
        now: crate::time::UnixMillis,
        client: &ClientId,
        mut late: Vec<(PacketId, InflightRecord)>,
        moved: &HashSet<MessageId>,
    ) {
        if late.is_empty() {
            return;
        }
        // Rewritten wholesale below: the window as in-flight rows first (`row_backed`).
        self.settle_rows(client);
        late.sort_by_key(|(_, record)| record.order());
        let mut used: HashSet<PacketId> = match self.window_records(client) {
            Ok(window) => window.into_iter().map(|(id, _)| id).collect(),
            Err(error) => {
                self.fault = Some(error);
                return;
            }
        };
        // Messages whose packet id the session uses go out under new ids — after the others
        // joined, so that a new id is never one a later late entry still brings.
        let mut displaced = Vec::new();
        for (id, record) in late {
            let outgoing = match record {
                InflightRecord::Sent { delivery, .. } => {
                    let delivery = Delivery {
                        redelivery: delivery.qos != QoS::AtMostOnce,
                        ..delivery
                    };
                    if delivery.qos == QoS::ExactlyOnce && used.contains(&id) {
                        displaced.push(Delivery {
                            sent_as: Some(id),
                            ..delivery
                        });
                        continue;
                    }
                    if used.contains(&id)
                        || delivery.qos == QoS::AtMostOnce
                        || delivery.message.is_expired(now)
                    {
                        displaced.push(delivery);
                        continue;
                    }
                    let moved_here = delivery.message.id.is_some_and(|m| moved.contains(&m));
                    if !moved_here && !self.take_once(client, &delivery) {
                        continue;
                    }
                    Outgoing::Sent { order: 0, delivery }
                }
                InflightRecord::Released { .. } if !used.contains(&id) => Outgoing::Released,
                InflightRecord::Released { .. } => continue,
            };
            used.insert(id);
            self.join_window(client, id, outgoing);
        }
        for delivery in displaced {
            self.deliver(now, client, delivery);
        }
        if self
            .sessions
            .get(client)
            .is_some_and(|s| s.online.is_some())
        {
            self.pump(now, client);
        }
    }

    /// Adds `outgoing` under `id` at the end of `client`'s in-flight window (stored, and
    /// re-sent on this connection as the send window allows, or on the next one).
    fn join_window(&mut self, client: &ClientId, id: PacketId, outgoing: Outgoing) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let order = session.take_order();
        let (outgoing, record) = match outgoing {
            Outgoing::Sent { delivery, .. } => (
                Outgoing::Sent {
                    order,
                    delivery: delivery.clone(),
                },
                InflightRecord::Sent { order, delivery },
            ),
            Outgoing::Released => (Outgoing::Released, InflightRecord::Released { order }),
        };
        let conn = session.conn();
        if session.inflight_loaded {
            if let (Some(conn), Outgoing::Released) = (conn, &outgoing) {
                self.actions.push(super::Action::Send {
                    conn,
                    packet: berth_codec::Packet::PubRel(berth_codec::PubRel::new(id)),
                });
            } else if conn.is_some() {
                session.resend.push_back(id);
            }
            session.inflight.push_back((id, outgoing));
        }
        if session.stored {
            self.batch.push(Op::PutInflight {
                client: client.clone(),
                packet_id: id,
                record,
            });
        }
    }

    /// `client`'s in-flight window as records, in send order: from memory when it is loaded
    /// there, else from the store (with this event's uncommitted changes).
    pub(super) fn window_records(
        &self,
        client: &ClientId,
    ) -> Result<Vec<(PacketId, InflightRecord)>, crate::store::StoreError> {
        let Some(session) = self.sessions.get(client) else {
            return Ok(Vec::new());
        };
        if !session.inflight_loaded {
            return super::queue_page::read_inflight_through(&self.store, &self.batch, client);
        }
        Ok(session
            .inflight
            .iter()
            .map(|(id, outgoing)| match outgoing {
                Outgoing::Sent { order, delivery } => (
                    *id,
                    InflightRecord::Sent {
                        order: *order,
                        delivery: delivery.clone(),
                    },
                ),
                Outgoing::Released => (*id, InflightRecord::Released { order: 0 }),
            })
            .collect())
    }
}

//! A session moving between nodes: the old owner exports it (state, then queue pages) and
//! deletes it on release; the new owner imports it and then lets waiting messages through.

use std::collections::HashSet;

use berth_codec::{PacketId, QoS, TopicFilter};

use super::Broker;
use super::late_descent::delivered_by_copy;
use super::session::Session;
use crate::cluster::{ExportError, QueuePage, SessionExport};
use crate::ids::{ClientId, MessageId, QueueSeq};
use crate::message::Delivery;
use crate::store::{InflightRecord, Op, Store, StoreError};
use crate::time::UnixMillis;

impl<S: Store> Broker<S> {
    /// The old owner's side of a takeover: the session's state, read from storage.
    pub fn export_session(
        &mut self,
        client: &ClientId,
        epoch: crate::ids::Epoch,
    ) -> Result<Option<SessionExport>, ExportError> {
        if !self.claimed_away(client, epoch) {
            return Ok(None);
        }
        if self.import_pending(client) {
            return Err(ExportError::StillArriving);
        }
        // Read from the store: a connection still open here has its window written there first.
        self.settle_rows(client);
        self.commit()?;
        let Some(session) = self.sessions.get(client) else {
            return Ok(None);
        };
        let inflight = if session.stored {
            self.store.read_inflight(client)?
        } else {
            Vec::new()
        };
        Ok(Some(SessionExport {
            record: self.behind_own_claim(client, super::record_of(session)),
            subscriptions: session
                .subscriptions
                .iter()
                .map(|(f, r)| (f.clone(), r.clone()))
                .collect(),
            inflight,
            // A QoS 2 PUBLISH not yet stored by every owner it went to is not known to be
            // received: its id stays behind, so that the client's re-sent PUBLISH is routed
            // again (at worst a duplicate) instead of answered as a duplicate (a loss).
            // In id order: a set iterates in no fixed order, and a replayed simulator seed must
            // run (and trace) the same.
            incoming_qos2: {
                let in_doubt = self.qos2_in_doubt(client);
                let mut ids: Vec<_> = session
                    .incoming_qos2
                    .iter()
                    .copied()
                    .filter(|id| !in_doubt.contains(id))
                    .collect();
                ids.sort_unstable();
                ids
            },
            queued: session.queue.bounds.count,
            seen: self.seen_ids(client),
            qos2_retry: self.qos2_retry_ids(client),
            served: Some(session.epoch),
        }))
    }

    /// `record`, of the copy here, as exported. A copy behind a claim of this node that was
    /// replayed at a restart and overtaken before its import landed (`dormant_claims`) lacks
    /// the state of the copy that claim took the session from, which may have completed QoS 2
    /// messages this copy still holds: it goes out in doubt about that copy, not as complete
    /// (simulator `--scenario lost-release`, seed 1636: its window's message re-sent by the
    /// puller, whose own copy had completed it). The later of two lacked copies is named, as a
    /// merge names it.
    fn behind_own_claim(
        &self,
        client: &ClientId,
        mut record: crate::store::SessionRecord,
    ) -> crate::store::SessionRecord {
        let Some(from) = self.dormant_claim_from(client, record.epoch) else {
            return record;
        };
        let lacked = record
            .qos2_doubt
            .lacking
            .filter(|_| record.qos2_state_elsewhere || record.incoming_qos2_elsewhere);
        let (named, before) = match lacked {
            Some(lacked) if lacked.epoch > from.epoch => (lacked, Some(from)),
            lacked => (from, lacked.filter(|lacked| *lacked != from)),
        };
        record.qos2_doubt.lacking = Some(named);
        // The other is still lacked (as when two doubts meet in `merge_import`).
        record.qos2_doubt.add_earlier(before);
        record.qos2_state_elsewhere = true;
        record.incoming_qos2_elsewhere = false;
        record
    }

    /// The copy a dormant claim of this node newer than the copy here (at `epoch`) took the
    /// session from: that copy, or one after it, may have delivered what this copy holds.
    fn dormant_claim_from(
        &self,
        client: &ClientId,
        epoch: crate::ids::Epoch,
    ) -> Option<crate::store::CopyRef> {
        self.cluster
            .as_ref()
            .and_then(|c| c.dormant_claims.get(client))
            .filter(|claim| claim.epoch > epoch)
            .and_then(|claim| claim.from)
    }

    /// Whether the copy of `client` here was claimed away by the claim at `epoch`: by the
    /// latest claim, or by an earlier one after this copy's own epoch that a newer claim has
    /// overtaken while it pulled. The puller of an overtaken claim still stores what it pulls
    /// and hands it on (a chained takeover, or its own node's newer claim, which waits for
    /// the import), so it may take and release the copy; a claim at or before the copy's own
    /// epoch may not.
    fn claimed_away(&self, client: &ClientId, epoch: crate::ids::Epoch) -> bool {
        let own = self
            .sessions
            .get(client)
            .map_or(crate::ids::Epoch(0), |s| s.epoch);
        self.cluster
            .as_ref()
            .and_then(|c| c.moving.get(client))
            .is_some_and(|(_, latest)| own < epoch && epoch <= *latest)
    }

    /// One page of a moving session's queue, from `from` on; with the sequence to ask next.
    pub fn export_queue(
        &mut self,
        client: &ClientId,
        from: Option<QueueSeq>,
        limit: usize,
    ) -> Result<(QueuePage, Option<QueueSeq>), StoreError> {
        let Some(session) = self.sessions.get(client).filter(|_| self.is_moving(client)) else {
            return Ok((Vec::new(), None));
        };
        let bounds = session.queue.bounds;
        if bounds.count == 0 {
            return Ok((Vec::new(), None));
        }
        let from = from.unwrap_or(bounds.first);
        // Behind a dormant claim of this node, the copy that claim took the session from may
        // have sent these messages already, its release of this copy lost: each "might be a
        // re-delivery" (§3.3.1.1), as at a merge (`requeue_older_copy`; simulator
        // `--scenario lost-release`, seed 9547: a message re-sent with DUP = 0).
        let redelivery = self.dormant_claim_from(client, session.epoch).is_some();
        let page = if session.stored {
            self.store.read_queue(client, from, limit)?
        } else {
            session
                .queue
                .head
                .iter()
                .filter(|(seq, _)| *seq >= from)
                .take(limit)
                .cloned()
                .collect()
        };
        let next = page.last().map(|(seq, _)| seq.next());
        let more = page.len() == limit;
        let page = page.into_iter().map(|(_, mut delivery)| {
            delivery.redelivery |= redelivery && delivery.qos != QoS::AtMostOnce;
            delivery
        });
        Ok((page.collect(), next.filter(|_| more)))
    }

    /// The new owner has stored the session: the copy here goes, without will or expiry.
    pub(super) fn on_release(&mut self, client: &ClientId, epoch: crate::ids::Epoch) {
        if self.claimed_away(client, epoch) {
            self.discard_moving_copy(client);
        }
    }

    /// Deletes the copy of a session another node owns now (taken, or ended there).
    pub(super) fn discard_moving_copy(&mut self, client: &ClientId) {
        if !self.is_moving(client) {
            return;
        }
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.moving.remove(client);
        }
        let Some(session) = self.sessions.remove(client) else {
            return;
        };
        // Its subscriptions stay in the index: they are the new owner's routes now.
        if session.stored {
            self.batch.push(Op::DeleteSession {
                client: client.clone(),
            });
            // A mark op before the delete is void: a new session's marks go after it.
            self.forget_marks(client);
        }
    }

    /// The new owner's side: the session's state arrives before its queue.
    pub(super) fn on_import_state(
        &mut self,
        now: UnixMillis,
        client: &ClientId,
        export: SessionExport,
    ) {
        // A second state for the same import (the fallback after a pull cut short) voids what
        // the first one said was taken: an older copy's messages stay, and the previous owner's
        // identities, whose queue pages never came, do not mark those messages as had here
        // (a later import bringing them would drop them as duplicates: simulator seed 2149).
        // A second copy's own state (two pulls for one claim: an adopted one beside its
        // connection's) voids nothing: its pages, like the first's, bring what is still queued,
        // and voided, the older copy here kept a QoS 2 message the first had delivered (`--scenario
        // lost-release`, seed 298). Only a fallback, or a peer too old to say, has no `served`.
        if let Some(cluster) = self.cluster.as_mut() {
            if export.served.is_none() {
                cluster.taken_by_import.remove(client);
            }
            // Only where one pull runs: two overlapping pulls each bring their own state.
            if cluster
                .import_started
                .get(client)
                .is_none_or(|running| *running <= 1)
            {
                cluster.import_seen.remove(client);
                cluster.import_pending.remove(client);
            }
            if !export.seen.is_empty() {
                cluster
                    .import_pending
                    .entry(client.clone())
                    .or_default()
                    .push(export.record.epoch);
            }
        }
        let mut moving_on = self.is_moving(client);
        let node = self.cluster.as_ref().map(|c| c.node);
        let elsewhere = self
            .cluster
            .as_ref()
            .and_then(|c| c.remote.get(client))
            .filter(|r| Some(r.owner) != node)
            .map(|r| (r.owner, r.epoch, r.started));
        if let Some((owner, epoch, started)) = elsewhere
            && !moving_on
        {
            if started > export.record.epoch {
                // The session started afresh elsewhere after the claim this state came for
                // (Clean Start): it is over, and so is this import.
                return;
            }
            // Claimed by another node before this pull even began: what arrives is a copy
            // for that node (it pulls it, or it is offered to it as a stranded backlog).
            if let Some(cluster) = self.cluster.as_mut() {
                cluster.moving.insert(client.clone(), (owner, epoch));
            }
            moving_on = true;
        }
        if !moving_on
            && self
                .sessions
                .get(client)
                .is_some_and(|s| s.epoch > export.record.epoch)
        {
            return self.import_overtaken(now, client, export);
        }
        let mut export = export;
        // The claim the copy made here serves (`Session::landed`): a lacked copy named by it
        // is this one, also when a newer claim of this node, already applied, moves the
        // record's epoch on below (simulator seed 31).
        let served = export.record.epoch;
        if !moving_on {
            // A newer claim of this node applied while this import ran (a second CONNECT here)
            // is the session's epoch from now on: a connection still holding the older grant
            // is stale (`superseded`), and what this node records must match the registry.
            export.record.epoch = self.landing_epoch(client, export.record.epoch);
            self.forget_remote(client);
        }
        // Subscriptions arriving with a session obey this node's rules too.
        export
            .subscriptions
            .retain(|(filter, _)| self.config.may_hold(filter));
        if self.sessions.contains_key(client) {
            return self.merge_import(now, client, export, served);
        }
        let mut record = export.record;
        // A copy that lands here starts serving at this claim.
        record.landed = served;
        let mut session = Session::new(record.epoch, record.protocol, record.expiry);
        // Not the epoch a newer claim of this node moved it on to: a state that lacks this
        // copy names it by the claim it came for (`--scenario lost-release`, seed 1155: named
        // by claim 7 and landed at 9, the copy was not known as the lacked one when that state
        // came back, and what it completed went out again).
        session.landed = served;
        session.stored = !record.expiry.is_zero();
        session.will = record.will.clone().map(Box::new);
        session.will_due_at = record.will_due_at;
        session.expires_at = record.expires_at;
        session.inflight_loaded = false;
        session.incoming_qos2 = export.incoming_qos2.iter().copied().collect();
        session.qos2_state_elsewhere = record.qos2_state_elsewhere;
        session.incoming_qos2_elsewhere = record.incoming_qos2_elsewhere;
        session.restore_qos2_doubt(std::mem::take(&mut record.qos2_doubt));
        // The window comes from the imported copy (none from a fallback: nothing before).
        if let Some(wait) = session.qos2_wait.as_mut() {
            wait.window_from = if export.inflight.is_empty() {
                Some(crate::ids::Epoch(0))
            } else {
                export.served
            };
        }
        // As the session holds it (none when not in doubt).
        record.qos2_doubt = session.qos2_doubt();
        if !export.qos2_retry.is_empty() {
            session.qos2_retry = Some(Box::new(export.qos2_retry.iter().copied().collect()));
            if session.stored {
                for (packet_id, id) in &export.qos2_retry {
                    self.batch.push(Op::PutQos2Retry {
                        client: client.clone(),
                        packet_id: *packet_id,
                        id: *id,
                    });
                }
            }
        }
        if session.stored {
            self.batch.push(Op::PutSession {
                client: client.clone(),
                record: record.clone(),
            });
        }
        for (filter, sub) in export.subscriptions {
            self.index.insert(client, &filter, sub.clone());
            if session.stored {
                self.batch.push(Op::PutSubscription {
                    client: client.clone(),
                    filter: filter.clone(),
                    record: sub.clone(),
                });
            }
            session.subscriptions.insert(filter, sub);
        }
        for packet_id in &export.incoming_qos2 {
            if session.stored {
                self.batch.push(Op::PutIncomingQos2 {
                    client: client.clone(),
                    packet_id: *packet_id,
                });
            }
        }
        let sent: Vec<crate::ids::MessageId> = export
            .inflight
            .iter()
            .filter_map(|(_, record)| match record {
                crate::store::InflightRecord::Sent { delivery, .. } => {
                    super::identity::qos2_identity(delivery)
                }
                crate::store::InflightRecord::Released { .. } => None,
            })
            .collect();
        for (packet_id, record) in export.inflight {
            session.next_order = session.next_order.max(record.order() + 1);
            if session.stored {
                self.batch.push(Op::PutInflight {
                    client: client.clone(),
                    packet_id,
                    record,
                });
            }
        }
        if let Some(at) = session.will_due_at {
            self.timers.insert((at, super::Timer::Will(client.clone())));
        }
        if let Some(at) = session.expires_at.filter(|at| *at != super::NEVER) {
            self.timers
                .insert((at, super::Timer::SessionExpiry(client.clone())));
        }
        if moving_on {
            // Claimed by another node while it was arriving (a chained takeover): its filters
            // route to that node, like those of any copy handed over (`hand_over`).
            let filters: Vec<TopicFilter> = session.subscriptions.keys().cloned().collect();
            if let Some(remote) = self.cluster.as_mut().and_then(|c| c.remote.get_mut(client)) {
                for filter in filters {
                    if !remote.filters.contains(&filter) {
                        remote.filters.push(filter);
                    }
                }
            }
        }
        self.sessions.insert(client.clone(), session);
        // Its window keeps the packet ids it had: each message there is taken now, and what
        // the previous owner took before joins once the queue pages are in.
        for id in sent {
            self.take_id(client, id);
        }
        self.defer_seen(client, export.seen);
        let _ = now;
    }

    /// Keeps the identities a session's previous owner took until its import is done (see
    /// `ClusterState::import_seen`).
    pub(super) fn defer_seen(&mut self, client: &ClientId, seen: Vec<crate::ids::MessageId>) {
        if let Some(cluster) = self.cluster.as_mut()
            && !seen.is_empty()
        {
            cluster
                .import_seen
                .entry(client.clone())
                .or_default()
                .extend(seen);
        }
    }

    /// A page of the imported backlog, appended in order.
    pub(super) fn on_import_queue(&mut self, now: UnixMillis, client: &ClientId, page: QueuePage) {
        if !self.sessions.contains_key(client) {
            return;
        }
        // Brought after all: an older copy's own of these stays (`taken_by_import`).
        if let Some(taken) = self
            .cluster
            .as_mut()
            .and_then(|c| c.taken_by_import.get_mut(client))
        {
            for delivery in &page {
                if let Some(id) = delivery.message.id {
                    taken.remove(&id);
                }
            }
        }
        if self.receives_late_import(client) {
            self.stats.stranded_recovered_total += page.len() as u64;
            self.deliver_late_page(now, client, page);
            return;
        }
        for delivery in page {
            if delivery.message.is_expired(now) {
                self.stats.count_drop(crate::stats::DropReason::Expired);
                continue;
            }
            if self.take_once(client, &delivery) {
                self.enqueue(client, delivery);
            }
        }
    }

    /// An import whose claim a newer claim of this node overtook, and whose newer import
    /// landed first (the older pull was held up by a partition or a pause): the state here is
    /// the session's, and this older copy's messages come after what it holds, late rather
    /// than lost, as a stranded backlog's would (`on_import_late`). Taken as that state, it
    /// would put the older record, QoS 2 ids and queue over the newer ones (simulator seed
    /// 147: an older copy's queued message delivered as if in order, after newer ones).
    fn import_overtaken(&mut self, now: UnixMillis, client: &ClientId, export: SessionExport) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.late_imports.insert(client.clone());
        }
        let SessionExport {
            record,
            inflight,
            incoming_qos2,
            seen,
            qos2_retry,
            queued,
            served,
            ..
        } = export;
        self.stats.stranded_recovered_total += inflight.len() as u64;
        // The older copy is the one the session here lacks: what it delivered must not go out
        // again from here, as with a late copy (`on_import_late`; simulator `--scenario
        // lost-release`, seed 6058 of session 40: a QoS 2 message the older copy had completed
        // was still queued here, from the copy before it, and went out again once the wait for
        // this state ended). With pages still to come, what they bring was not delivered: the
        // rest goes once they are all in (`taken_by_import`, `settle_imported_pages`).
        let delivered = delivered_by_copy(&seen, &inflight, &QueuePage::new());
        let sent_there = self.sent_by_late_copy(client, &inflight);
        let moved = if queued == 0 {
            self.yield_to_late_copy(client, &delivered, &sent_there)
        } else {
            if let Some(cluster) = self.cluster.as_mut().filter(|_| !delivered.is_empty()) {
                let taken = cluster.taken_by_import.entry(client.clone()).or_default();
                taken.extend(delivered);
            }
            self.yield_to_late_copy(client, &HashSet::new(), &sent_there)
        };
        if !inflight.is_empty() {
            self.window_joined_from(client, served);
        }
        self.join_late_window(now, client, inflight, &moved);
        // Folded when the import is done: before, they would swallow its pages still to come.
        self.defer_seen(client, seen);
        self.recover_qos2_state(now, client, incoming_qos2, qos2_retry, record, None);
    }

    /// Whether the import under way for `client` brings an older copy than the session here
    /// (`import_overtaken`): its pages are late deliveries.
    pub fn receives_late_import(&self, client: &ClientId) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.late_imports.contains(client))
    }

    /// Whether a backlog recovered late for `client` can be stored here: the session runs here
    /// at `epoch` and is neither arriving (its import decides) nor leaving (its export does).
    pub fn accepts_late_backlog(&self, client: &ClientId, epoch: crate::ids::Epoch) -> bool {
        let settled = self
            .cluster
            .as_ref()
            .is_some_and(|c| !c.moving.contains_key(client) && !c.importing.contains(client));
        settled && self.sessions.get(client).is_some_and(|s| s.epoch == epoch)
    }

    /// A backlog left on a node that could not be reached when the session moved here,
    /// recovered once that node is back. It goes after what the session received since: the
    /// recovered messages keep their order among themselves, but arrive after newer ones —
    /// late rather than lost.
    pub(super) fn on_import_late(
        &mut self,
        now: UnixMillis,
        client: &ClientId,
        epoch: crate::ids::Epoch,
        holder: crate::cluster::NodeId,
        export: SessionExport,
        page: QueuePage,
    ) {
        if !self.accepts_late_backlog(client, epoch) {
            return;
        }
        let SessionExport {
            record,
            inflight,
            incoming_qos2,
            seen,
            qos2_retry,
            served,
            ..
        } = export;
        self.stats.stranded_recovered_total += (inflight.len() + page.len()) as u64;
        // What the late copy took and holds no more, it delivered: a QoS 2 message of it still
        // here (an older copy's, held for this state since a merge, `resend_held`) would reach
        // the client a second time. Queued, it goes; in flight, its exchange is ended with a
        // PUBREL instead (`release_delivered`), or without one if the late copy took the
        // session on from here (`late_descent`).
        let delivered = delivered_by_copy(&seen, &inflight, &page);
        let holder = super::publish::LateHolder {
            node: holder,
            served,
        };
        // A copy that took the session on from here ended those exchanges with the client,
        // which may hold their ids for a newer copy's messages since: ended here silently.
        if self.late_copy_took_over_from_here(now, client, holder, &record) {
            self.end_what_the_later_copy_ended(client, &delivered);
        }
        if !inflight.is_empty() {
            self.window_joined_from(client, served);
        }
        // A QoS 2 message the late copy sent and this session still has queued goes out from
        // the late window, under the id the client may hold for it: from the queue it would go
        // under a new one, and the client would take it twice (simulator `--scenario
        // lost-release`, seed 269). (The two sets are disjoint: the queue is read once.)
        let sent_there = self.sent_by_late_copy(client, &inflight);
        let moved = self.yield_to_late_copy(client, &delivered, &sent_there);
        // What the session took here since is compared first (a copy that came both ways is
        // dropped), then what the late copy took joins, for copies still on their way.
        self.join_late_window(now, client, inflight, &moved);
        self.deliver_late_page(now, client, page);
        self.fold_seen(client, seen);
        self.recover_qos2_state(now, client, incoming_qos2, qos2_retry, record, Some(holder));
    }

    /// What `client`'s session gives up for a late copy: its queued copies of the QoS 2
    /// messages the late copy `delivered` or sent (`sent_there`) go, and the exchanges of those
    /// it delivered end with a PUBREL. Returns the queued ones of `sent_there` it dropped: they
    /// join from the late window although the session took them (`join_late_window`).
    fn yield_to_late_copy(
        &mut self,
        client: &ClientId,
        delivered: &HashSet<MessageId>,
        sent_there: &HashSet<MessageId>,
    ) -> HashSet<MessageId> {
        if delivered.is_empty() && sent_there.is_empty() {
            return HashSet::new();
        }
        let either = delivered.union(sent_there).copied().collect();
        let dropped = self.requeue_older_copy(client, &either, false);
        self.release_delivered(client, delivered);
        dropped.intersection(sent_there).copied().collect()
    }

    /// The QoS 2 messages in a late copy's window (`late`) that would join `client`'s window
    /// under their own packet ids: ids this session's window does not use, for messages it
    /// does not hold in flight itself.
    fn sent_by_late_copy(
        &mut self,
        client: &ClientId,
        late: &[(PacketId, InflightRecord)],
    ) -> HashSet<MessageId> {
        let window = match self.window_records(client) {
            Ok(window) => window,
            Err(error) => {
                self.fault = Some(error);
                return HashSet::new();
            }
        };
        let mut used = HashSet::new();
        let mut in_flight = HashSet::new();
        for (id, record) in &window {
            used.insert(*id);
            if let InflightRecord::Sent { delivery, .. } = record {
                in_flight.extend(delivery.message.id);
            }
        }
        late.iter()
            .filter(|(id, _)| !used.contains(id))
            .filter_map(|(_, record)| match record {
                InflightRecord::Sent { delivery, .. } if delivery.qos == QoS::ExactlyOnce => {
                    delivery.message.id
                }
                _ => None,
            })
            .filter(|m| !in_flight.contains(m))
            .collect()
    }

    /// The queue of a copy recovered late (a stranded backlog, an overtaken import), after
    /// what the session holds. The copy may have been pulled before, its release lost (its node
    /// cut off or restarted first), and its queue delivered by the puller: what it brings may
    /// be a re-delivery, so it carries DUP = 1 [MQTT-3.3.1-1], as an older copy's messages do
    /// at a merge (`requeue_older_copy`). The process chaos test saw such a queued QoS 1
    /// message go out again with DUP = 0, 17 s after the puller had delivered it.
    fn deliver_late_page(&mut self, now: UnixMillis, client: &ClientId, page: QueuePage) {
        for delivery in page {
            let redelivery = delivery.qos != QoS::AtMostOnce;
            self.deliver(
                now,
                client,
                Delivery {
                    redelivery,
                    ..delivery
                },
            );
        }
    }

    /// Sessions held here that other nodes have claimed, with their new owner and epoch: a
    /// copy that stays moving for long was not pulled (its owner could not reach this node).
    pub fn moving_sessions(&self) -> Vec<(ClientId, crate::cluster::NodeId, crate::ids::Epoch)> {
        self.cluster.as_ref().map_or_else(Vec::new, |c| {
            c.moving
                .iter()
                .map(|(client, (owner, epoch))| (client.clone(), *owner, *epoch))
                .collect()
        })
    }

    /// A takeover starts: forwards for `client` wait until its backlog is in.
    pub(super) fn on_import_begin(&mut self, client: &ClientId) {
        // Also when an older copy is still here (`merge_import`): what arrives meanwhile goes
        // behind the imported backlog.
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.importing.insert(client.clone());
            *cluster.import_started.entry(client.clone()).or_default() += 1;
        }
        self.claimed_by_connection(client, crate::ids::Epoch(0));
    }

    /// Every page of the one pull under way came and is stored, and the old owner's copy is
    /// released next: what the previous owner took and its pages did not bring, it delivered,
    /// and its identities join the session's now, stored before that copy goes. Left for
    /// `on_import_done` (after the release), they were lost with a crash between the two: the
    /// merged copy came back complete and still queued a QoS 2 message the previous owner had
    /// delivered (simulator `--scenario lost-release`, seed 272).
    pub(super) fn on_import_complete(&mut self, client: &ClientId, epoch: crate::ids::Epoch) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let one_pull = cluster
            .import_started
            .get(client)
            .is_none_or(|running| *running <= 1);
        // Or every pull that brought identities has all its pages in, the others having brought
        // none yet (or a fallback): left for later, they were voided by the next pull's state
        // as a cut-short pull's are (`--scenario lost-release`, seeds 1155 and 6058: a copy that
        // completed QoS 2 messages forgot it had taken them, and could not end them when a state
        // lacking it came back).
        let all_in = cluster
            .import_pending
            .get_mut(client)
            .is_none_or(|pending| {
                if let Some(at) = pending.iter().position(|claim| *claim == epoch) {
                    pending.remove(at);
                }
                pending.is_empty()
            });
        if (one_pull || all_in) && cluster.importing.contains(client) {
            let late = cluster.late_imports.contains(client);
            self.settle_imported_pages(client, true, late);
        }
    }

    /// The import's pages are all here (or never will be): the previous owner's identities
    /// join the session's, and what it took and the pages did not bring leaves the older copy
    /// here. `into_session`: false when the import was abandoned (the sets only go).
    /// `late`: the import brought an older copy than the session here (`import_overtaken`),
    /// whose exchanges of what it delivered end with a PUBREL (`yield_to_late_copy`).
    fn settle_imported_pages(&mut self, client: &ClientId, into_session: bool, late: bool) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let seen = cluster.import_seen.remove(client);
        let taken = cluster.taken_by_import.remove(client);
        cluster.import_pending.remove(client);
        if !into_session {
            return;
        }
        if let Some(seen) = seen {
            self.fold_seen(client, seen);
        }
        if let Some(taken) = taken.filter(|t| !t.is_empty()) {
            if late {
                self.yield_to_late_copy(client, &taken, &HashSet::new());
            } else {
                self.requeue_older_copy(client, &taken, false);
                self.drop_taken_inflight(client, &taken);
            }
        }
    }

    /// The import is complete: forwarded messages that waited for it are handled now.
    pub(super) fn on_import_done(&mut self, now: UnixMillis, client: &ClientId) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let late = cluster.late_imports.remove(client);
        if let Some(running) = cluster.import_started.get_mut(client) {
            *running = running.saturating_sub(1);
            if *running > 0 {
                // Another pull of the same session is still under way.
                return;
            }
            cluster.import_started.remove(client);
        }
        // Taken in any case: an import abandoned meanwhile (a Clean Start elsewhere) leaves
        // nothing to fold them into, and they must not stay behind.
        let importing = cluster.importing.remove(client);
        self.settle_imported_pages(client, importing, late);
        if !importing {
            return;
        }
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let node = cluster.node;
        if !self.sessions.contains_key(client) {
            // Claimed elsewhere meanwhile, and nothing arrived: nothing to hand over.
            cluster.moving.remove(client);
        }
        let routed_here = cluster.remote.get(client).is_some_and(|r| r.owner == node);
        if routed_here && let Some(session) = self.sessions.get(client) {
            // No state arrived over the older copy still here: the routes that pointed here
            // while it was awaited give way to the copy's own subscriptions.
            let own: Vec<_> = session
                .subscriptions
                .iter()
                .map(|(f, r)| (f.clone(), r.clone()))
                .collect();
            self.forget_remote(client);
            for (filter, record) in own {
                self.index.insert(client, &filter, record);
            }
        }
        // What this node kept for the session while its owner could not be reached follows
        // its backlog, ahead of what waited for the import (newer).
        self.hand_over_kept(now, client);
        self.settle_adopted(now, client);
        self.unpark(now);
    }
}

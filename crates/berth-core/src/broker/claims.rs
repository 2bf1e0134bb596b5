//! Claims that arrive out of step with their connections: a connection granted an epoch that
//! a newer claim has overtaken, a CONNECT that waits (parked) for an import of its session still
//! under way here, and a claim of this node that no connection runs (adopted).

use berth_codec::TopicFilter;

use super::{Action, Broker, Event};
use crate::cluster::Replicate;
use crate::ids::{ClientId, ConnId, Epoch};
use crate::store::{Op, Store, SubscriptionRecord};
use crate::time::UnixMillis;

#[derive(Debug)]
pub(crate) struct Unclaimed {
    pub epoch: Epoch,
    /// The node that held the session before (where its backlog is), and the claim it held
    /// it under.
    pub from: Option<crate::store::CopyRef>,
    /// The copy `from`'s claim took the session over from: lacked too, if `from` cannot be
    /// reached (`Qos2Doubt::earlier`).
    pub earlier: Option<crate::store::CopyRef>,
    pub subscriptions: Vec<(TopicFilter, SubscriptionRecord)>,
    /// The takeover runs without a connection (`Action::Adopt` was sent).
    pub adopted: bool,
}

/// How long a claim of this node may wait for its connection to start the takeover before the
/// node runs it alone. The connection starts it as soon as the broker has the claim, so this
/// only passes when the CONNECT was refused (the claim committed after the admission gave up).
pub(crate) const UNCLAIMED_WAIT_MS: u64 = 10_000;

#[derive(Debug)]
pub(crate) struct Parked {
    pub conn: ConnId,
    pub client: ClientId,
    pub events: Vec<Event>,
}

impl<S: Store> Broker<S> {
    /// Whether a connection granted `epoch` for `client` is stale: this node has already
    /// applied a newer claim (by another node, or another connection here). Such a connection
    /// must not start: it would take the session from the newer one, or run a session that
    /// another node owns (the claim's own answer came late: a slow admission, a lagging
    /// broker).
    pub(super) fn superseded(&self, client: &ClientId, epoch: Epoch) -> bool {
        let Some(cluster) = self.cluster.as_ref() else {
            return false;
        };
        let newer_here = self.sessions.get(client).is_some_and(|s| s.epoch > epoch);
        let moved = cluster.moving.get(client).is_some_and(|(_, e)| *e > epoch);
        let newer_elsewhere = cluster.remote.get(client).is_some_and(|r| r.epoch > epoch);
        let newer_claim_here = cluster.newest_claim.get(client).is_some_and(|e| *e > epoch);
        newer_here || moved || newer_elsewhere || newer_claim_here
    }

    /// The epoch an import for `client` lands at: at least `epoch` (its claim's), and the
    /// newest claim of this node applied meanwhile (a second CONNECT here).
    pub(super) fn landing_epoch(&self, client: &ClientId, epoch: Epoch) -> Epoch {
        let newest = self
            .cluster
            .as_ref()
            .and_then(|c| c.newest_claim.get(client).copied())
            .unwrap_or_default();
        let here = self
            .sessions
            .get(client)
            .map(|s| s.epoch)
            .unwrap_or_default();
        epoch.max(newest).max(here)
    }

    /// Whether a takeover of `client` is pulling its state to this node now (`ImportBegin`).
    pub(super) fn import_started(&self, client: &ClientId) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.import_started.contains_key(client))
    }

    /// Whether the state of `client` is still arriving here from its previous owner: an export
    /// of it must wait until the import is done.
    pub fn import_pending(&self, client: &ClientId) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.importing.contains(client))
    }

    /// Takeover, old owner: whether an export of `client` must wait. It must while the
    /// session's state is still arriving here (a chained takeover), and while a QoS 2 PUBLISH
    /// of this client still waits for other nodes: until then nobody knows whether the
    /// client's re-send of it is a duplicate (once stored, the export carries its packet id
    /// and the new owner answers the re-send with PUBREC alone; if it failed, the re-send is
    /// routed), and exactly once forbids delivering it twice ([MQTT-4.3.3-9]).
    pub fn export_waits(&self, client: &ClientId) -> bool {
        self.import_pending(client) || !self.qos2_in_doubt(client).is_empty()
    }

    /// A claim of this node still has no connection running its takeover: run it alone.
    pub(super) fn unclaimed_due(&mut self, client: &ClientId) {
        if !self.import_pending(client) {
            return;
        }
        let protocol = berth_codec::ProtocolVersion::V3_1_1;
        let expiry = self.config.session.v3_persistent_expiry;
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let Some(unclaimed) = cluster.unclaimed.get_mut(client).filter(|u| !u.adopted) else {
            return;
        };
        unclaimed.adopted = true;
        // What the registry knows, for an old owner that cannot be reached: its
        // subscriptions. (A client that comes back states its protocol and expiry again.)
        let fallback = crate::cluster::SessionExport {
            record: crate::store::SessionRecord {
                epoch: unclaimed.epoch,
                protocol,
                expiry,
                expires_at: None,
                will: None,
                will_due_at: None,
                qos2_state_elsewhere: unclaimed.from.is_some(),
                incoming_qos2_elsewhere: false,
                qos2_doubt: crate::store::Qos2Doubt {
                    lacking: unclaimed.from,
                    earlier: unclaimed.earlier.into_iter().collect(),
                    released: Vec::new(),
                },
                landed: unclaimed.epoch,
            },
            subscriptions: unclaimed.subscriptions.clone(),
            inflight: Vec::new(),
            incoming_qos2: Vec::new(),
            queued: 0,
            seen: Vec::new(),
            qos2_retry: Vec::new(),
            served: None,
        };
        self.actions.push(Action::Adopt {
            client: client.clone(),
            epoch: unclaimed.epoch,
            from: unclaimed.from.map(|copy| copy.node),
            fallback: Box::new(fallback),
        });
    }

    /// The claim at `epoch` asks this node for `client`'s session. If this node holds nothing
    /// for it but a dormant claim that the asking claim overtook, the session is still where
    /// that claim would have pulled it from: pull it now (as an adopted claim) and hand it on;
    /// the export waits for the import (`export_waits`).
    pub(super) fn on_export_wanted(&mut self, client: &ClientId, epoch: Epoch) {
        if self.sessions.contains_key(client) || self.import_pending(client) {
            return;
        }
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if cluster
            .dormant_claims
            .get(client)
            .is_none_or(|d| d.epoch >= epoch)
        {
            return;
        }
        let Some(remote) = cluster.remote.get(client).filter(|r| r.epoch >= epoch) else {
            return;
        };
        let to = (remote.owner, remote.epoch);
        let Some(mut claim) = cluster.dormant_claims.remove(client) else {
            return;
        };
        claim.adopted = false;
        cluster.importing.insert(client.clone());
        // What the import brings is a copy moving to the current owner (a chained takeover).
        cluster.moving.insert(client.clone(), to);
        cluster.unclaimed.insert(client.clone(), claim);
        self.unclaimed_due(client);
    }

    /// A connection (or its takeover) has come for a claim of this node.
    pub(super) fn claimed_by_connection(&mut self, client: &ClientId, epoch: Epoch) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if cluster.unclaimed.get(client).is_some_and(|u| !u.adopted) {
            cluster.unclaimed.remove(client);
        }
        if cluster
            .newest_claim
            .get(client)
            .is_some_and(|e| *e <= epoch)
        {
            // The session runs at its newest claim: nothing older can land any more.
            cluster.newest_claim.remove(client);
        }
    }

    /// An adopted session's import is done: it waits offline here like any session whose
    /// client went away (the registry hears so), or, if nothing came, the claim is withdrawn.
    pub(super) fn settle_adopted(&mut self, now: UnixMillis, client: &ClientId) {
        let Some(unclaimed) = self
            .cluster
            .as_mut()
            .and_then(|c| c.unclaimed.remove(client))
        else {
            return;
        };
        if !unclaimed.adopted {
            return;
        }
        let Some(session) = self.sessions.get_mut(client) else {
            self.replicate(Replicate::Drop {
                client: client.clone(),
                epoch: unclaimed.epoch,
            });
            return;
        };
        if session.online.is_some() {
            return;
        }
        // Its CONNECT was refused: that connection's will never counted.
        session.will = None;
        session.will_due_at = None;
        let expires_at = match session.expiry {
            crate::store::SessionExpiry::After(secs) => Some(now.plus_secs(secs)),
            crate::store::SessionExpiry::Never => None,
        };
        session.expires_at = Some(expires_at.unwrap_or(super::NEVER));
        let epoch = session.epoch;
        if let Some(at) = expires_at {
            self.timers
                .insert((at, super::Timer::SessionExpiry(client.clone())));
        }
        if session.stored {
            let op = Op::PutSession {
                client: client.clone(),
                record: super::record_of(session),
            };
            self.batch.push(op);
        }
        self.replicate(Replicate::Detach {
            client: client.clone(),
            epoch,
            expires_at,
            will_due_at: None,
        });
    }

    /// Parks a CONNECT (`ConnectAs` on `conn`) granted `client` while its import runs here.
    pub(super) fn park_connect(&mut self, conn: ConnId, client: ClientId, event: Event) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.parked.push(Parked {
                conn,
                client,
                events: vec![event],
            });
        }
    }

    /// An event for a parked connection waits behind its CONNECT (a close forgets it);
    /// any other event is given back.
    pub(super) fn park_event(&mut self, event: Event) -> Option<Event> {
        let conn = match &event {
            Event::Packet { conn, .. } | Event::Closed { conn, .. } => *conn,
            _ => return Some(event),
        };
        let Some(cluster) = self.cluster.as_mut() else {
            return Some(event);
        };
        let Some(at) = cluster.parked.iter().position(|p| p.conn == conn) else {
            return Some(event);
        };
        if matches!(event, Event::Closed { .. }) {
            // It never started: nothing of the session changes.
            cluster.parked.remove(at);
        } else {
            cluster.parked[at].events.push(event);
        }
        None
    }

    /// Connections whose session's import is done go on, in the order they arrived.
    pub(super) fn unpark(&mut self, now: UnixMillis) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let importing = &cluster.importing;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut cluster.parked)
            .into_iter()
            .partition(|p| !importing.contains(&p.client));
        cluster.parked = waiting;
        for parked in ready {
            for event in parked.events {
                self.process(now, event);
            }
        }
    }
}

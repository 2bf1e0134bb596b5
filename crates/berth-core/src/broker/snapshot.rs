//! The registry replaced as a whole (a snapshot installed because this node was behind, or
//! loaded at start): what the log entries it stands for would have done here, done at once.

use std::collections::{HashMap, HashSet};

use super::Broker;
use super::cluster::owner_event;
use crate::cluster::RemoteSession;
use crate::ids::{ClientId, Epoch};
use crate::store::Store;
use crate::time::UnixMillis;

impl<S: Store> Broker<S> {
    pub(super) fn on_reset(&mut self, now: UnixMillis, sessions: Vec<RemoteSession>) {
        let Some(node) = self.cluster.as_ref().map(|c| c.node) else {
            return;
        };
        // Moves that reached this node in the snapshot fence like the log entries would.
        for session in &sessions {
            self.fence_on_move(&session.client, session.owner);
        }
        // Claims of this node that reached it in the snapshot (it was behind when they
        // committed): the session's state is elsewhere, and what its connections and
        // routes must wait for is the import, as after the log entry.
        let mine: Vec<_> = sessions
            .iter()
            .filter(|s| {
                s.owner == node
                    && self
                        .sessions
                        .get(&s.client)
                        .is_none_or(|l| l.epoch < s.epoch)
                    && !self.import_pending(&s.client)
            })
            .cloned()
            .collect();
        // Claims of this node whose import runs: their routes point here and what they match
        // waits for the backlog (dropping them would answer PUBLISHes as matching nobody).
        let importing_claims: Vec<(ClientId, Epoch)> = sessions
            .iter()
            .filter(|s| s.owner == node && self.import_pending(&s.client))
            .map(|s| (s.client.clone(), s.epoch))
            .collect();
        let mut claimed_here: HashSet<ClientId> =
            importing_claims.iter().map(|(c, _)| c.clone()).collect();
        // Unless the import runs for an older claim of this node that another node's claim
        // overtook meanwhile: then the routes point to that node, and this claim's entry moves
        // them back here, as the entry would have (simulator seed 15710: the session ran here
        // while this node forwarded what it matched to the node before, which answered "not
        // mine", for seconds).
        let overtaken_imports: Vec<RemoteSession> = sessions
            .iter()
            .filter(|s| {
                claimed_here.contains(&s.client) && !self.routes_here_at(&s.client, s.epoch)
            })
            .cloned()
            .collect();
        for session in overtaken_imports {
            let kept = session.started < session.epoch;
            self.on_cluster(now, owner_event(session, kept));
        }
        // Their newest claim is recorded as the entry would have: a connection still waiting
        // here under an older grant of the same client is stale (`superseded`; simulator seed
        // 2040: three CONNECTs queued on a paused node, the live one started at the middle
        // epoch and was left running under the newest).
        if let Some(cluster) = self.cluster.as_mut() {
            for (client, epoch) in importing_claims {
                let newest = cluster.newest_claim.entry(client).or_default();
                *newest = (*newest).max(epoch);
            }
        }
        for session in mine {
            claimed_here.insert(session.client.clone());
            let kept = session.started < session.epoch;
            let known = self.cluster.as_ref().is_some_and(|c| {
                c.moving.contains_key(&session.client) || c.remote.contains_key(&session.client)
            });
            if kept
                && !known
                && let Some(from) = session
                    .moved_from
                    .map(|copy| copy.node)
                    .filter(|from| *from != node)
            {
                // Nothing here says where the session was (this node restarted from the
                // snapshot): the owner before this node's claim, as the entry before it would
                // have told, so that the import pulls from there.
                self.add_remote(&session.client, from, None, session.subscriptions.clone());
            }
            self.on_cluster(now, owner_event(session, kept));
        }
        let known: Vec<ClientId> = self
            .cluster
            .as_ref()
            .map(|c| {
                c.remote
                    .keys()
                    .filter(|client| !claimed_here.contains(*client))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        // The claims this node is importing for, by epoch, before their routes go.
        let importing: HashMap<ClientId, Epoch> = self
            .cluster
            .as_ref()
            .map(|c| {
                c.importing
                    .iter()
                    .filter_map(|client| {
                        let remote = c.remote.get(client)?;
                        (remote.owner == node).then(|| (client.clone(), remote.epoch))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for client in known {
            self.forget_remote(&client);
        }
        let listed: std::collections::HashSet<ClientId> =
            sessions.iter().map(|s| s.client.clone()).collect();
        let ended: Vec<ClientId> = self
            .cluster
            .as_ref()
            .map(|c| c.moving.keys())
            .into_iter()
            .flatten()
            .filter(|client| !listed.contains(*client))
            .cloned()
            .collect();
        for client in ended {
            // Moved away, then ended on its new owner while this node was behind: as
            // `Dropped` would. (A local session the registry never knew — one from
            // before the cluster — stays.)
            self.discard_moving_copy(&client);
        }
        for session in sessions {
            let superseded = self
                .sessions
                .get(&session.client)
                .is_some_and(|local| local.epoch < session.epoch);
            let import_overtaken = importing
                .get(&session.client)
                .is_some_and(|claim| *claim < session.epoch);
            if session.owner != node && import_overtaken {
                // Claimed elsewhere while this node still imports it for an older claim:
                // as the entry would, the import goes on and its state moves on.
                let kept = session.started <= importing[&session.client];
                self.on_cluster(now, owner_event(session, kept));
            } else if session.owner != node && superseded {
                // Claimed elsewhere while this node was behind (the claim reached it in
                // a snapshot, not as a log entry): hand the copy over as the entry would
                // — unless the session started afresh after the copy's epoch.
                let local = self
                    .sessions
                    .get(&session.client)
                    .map_or(Epoch(0), |s| s.epoch);
                let kept = session.started <= local;
                self.on_cluster(now, owner_event(session, kept));
            } else if session.owner != node && !self.sessions.contains_key(&session.client) {
                self.add_remote(
                    &session.client,
                    session.owner,
                    Some(session.epoch),
                    session.subscriptions,
                );
                if let Some(remote) = self
                    .cluster
                    .as_mut()
                    .and_then(|c| c.remote.get_mut(&session.client))
                {
                    remote.started = session.started;
                    remote.moved_from = session.moved_from;
                }
            }
        }
    }

    /// Whether what matches `client` is routed to this node under its claim at `epoch` (or a
    /// newer one): the registry's routes name this node, or, with none, the session runs here.
    fn routes_here_at(&self, client: &ClientId, epoch: Epoch) -> bool {
        let Some(cluster) = self.cluster.as_ref() else {
            return true;
        };
        match cluster.remote.get(client) {
            Some(remote) => remote.owner == cluster.node && remote.epoch >= epoch,
            None => self.sessions.contains_key(client) && !self.is_moving(client),
        }
    }
}

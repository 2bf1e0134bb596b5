//! A backlog stranded by a takeover: when a session's owner could not be reached as another
//! node took the session over, the new owner went on without the queued messages and the old
//! node kept its copy (durably, in its store). Once that node is back it sees, from the log,
//! that the copy belongs to someone else; if nobody pulls it, it offers it to the session's
//! current owner, which pulls it like a takeover, appends it to the running session and
//! releases the copy. Nothing acknowledged is lost; the recovered messages arrive after those
//! the session received since (late rather than never).
//!
//! ```text
//!  holder: copy "moving" for ≥ OFFER_AFTER_MS ─OfferSession─▶ owner   (`stranded_offers`)
//!  owner: accepts (session here at that epoch) ─TakeoverSession─▶ holder ─pages─▶ ImportLate
//!         ─ReleaseSession─▶ holder deletes its copy
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_cluster::pb;
use berth_core::stranded_offers::StrandedOffers;
use berth_core::{ClientId, Epoch, NodeId};

use berth_cluster::convert::client_id;

use crate::cluster_link::{ClusterLink, Pull};

/// How often the holder looks for stranded copies (and offers them again, until released).
const OFFER_EVERY: Duration = Duration::from_secs(2);
/// How long an offer may wait for the owner's answer.
const OFFER_TIMEOUT: Duration = Duration::from_secs(5);

impl ClusterLink {
    /// The sessions held here that other nodes have claimed.
    async fn moving_sessions(&self) -> Vec<(ClientId, NodeId, Epoch)> {
        self.broker.moving().await.unwrap_or_default()
    }

    /// Whether the session `client` runs here at `epoch`, settled (not arriving or leaving).
    pub(crate) async fn accepts_late(&self, client: &ClientId, epoch: u64) -> bool {
        self.broker.accepts_late(client.clone(), Epoch(epoch)).await
    }
}

/// The holder's side: offers every copy that stays moving to the session's owner, until the
/// owner pulls and releases it (or the session ends, which deletes the copy).
pub(crate) async fn offer_stranded_copies(link: Arc<ClusterLink>) {
    let mut offers = StrandedOffers::starting_at(0);
    let started = Instant::now();
    let mut tick = tokio::time::interval(OFFER_EVERY);
    loop {
        tick.tick().await;
        let moving = link.moving_sessions().await;
        let now_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        for (client, owner, epoch) in offers.due(now_ms, link.node_id(), moving) {
            let Ok(mut rpc) = link.node.client(owner.0) else {
                continue;
            };
            let offer = pb::OfferRequest {
                client_id: client.as_str().to_string(),
                epoch: epoch.0,
                holder: link.node_id().0,
            };
            match tokio::time::timeout(OFFER_TIMEOUT, rpc.offer_session(offer)).await {
                Ok(Ok(reply)) if reply.get_ref().accepted => {
                    tracing::info!(
                        client = client.as_str(),
                        owner = %owner,
                        "stranded backlog offered to its owner"
                    );
                }
                Ok(Ok(_)) => {
                    tracing::debug!(
                        client = client.as_str(),
                        owner = %owner,
                        "offer refused: not the owner at that epoch (yet)"
                    );
                }
                Ok(Err(status)) => {
                    tracing::debug!(client = client.as_str(), owner = %owner, error = %status.message(), "offer failed");
                }
                Err(_) => {
                    tracing::debug!(client = client.as_str(), owner = %owner, "offer timed out");
                }
            }
        }
    }
}

/// The owner's side: accepts an offer for a session running here at the offered epoch and
/// pulls the copy in the background (one pull per client at a time).
pub(crate) async fn accept_offer(link: Arc<ClusterLink>, request: pb::OfferRequest) -> bool {
    let Some(client) = client_id(&request.client_id) else {
        return false;
    };
    if link.late_pulls_contains(&client) {
        return true;
    }
    let (holder, epoch) = (NodeId(request.holder), request.epoch);
    if link.already_pulled(&client, epoch, holder) {
        // Stored here already; only the release did not get through.
        tokio::spawn(async move { link.release(&client, holder, epoch).await });
        return true;
    }
    if !link.accepts_late(&client, request.epoch).await {
        return false;
    }
    if !link.late_pulls_insert(&client) {
        return true;
    }
    tokio::spawn(async move {
        // Index 0: the holder has long applied the claim (it offered because of it).
        let pulled = link.pull(&client, holder, epoch, 0, Pull::Late).await;
        match pulled {
            Ok(true) => {
                tracing::info!(
                    client = client.as_str(),
                    holder = %holder,
                    "stranded backlog recovered"
                );
            }
            Ok(false) => {
                tracing::info!(
                    client = client.as_str(),
                    holder = %holder,
                    "stranded backlog not taken: the session moved on or ended"
                );
            }
            Err(error) => {
                tracing::warn!(client = client.as_str(), holder = %holder, %error, "stranded backlog: pull failed; the holder offers it again");
            }
        }
        link.late_pulls_remove(&client);
    });
    true
}

impl ClusterLink {
    fn late_pulls_contains(&self, client: &ClientId) -> bool {
        self.late_pulls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(client)
    }

    /// Whether `client` was not being pulled (and is now).
    fn late_pulls_insert(&self, client: &ClientId) -> bool {
        self.late_pulls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(client.clone())
    }

    fn late_pulls_remove(&self, client: &ClientId) {
        self.late_pulls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(client);
    }
}

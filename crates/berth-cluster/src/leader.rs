//! What the leader does for nodes that are gone: it notices a member that stopped answering,
//! records that its connected sessions are disconnected from then on (`NodeDown`), publishes their
//! wills when due, and ends their sessions when they expire. A live owner does all of this for its
//! own sessions; the leader only acts for owners it cannot reach.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_core::{Command, UnixMillis, WillRecord};
use berth_proto::v1 as pb;
use openraft::ServerState;

use crate::convert::message_to_pb;
use crate::node::ClusterNode;
use crate::service::BrokerSlot;
use crate::types::NodeId;

/// How often the leader looks.
const PERIOD: Duration = Duration::from_millis(500);
/// A member that has not answered for this long is treated as down.
pub const OWNER_TIMEOUT: Duration = Duration::from_secs(3);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Runs for the life of the node.
pub async fn run(node: ClusterNode, broker: BrokerSlot) {
    let mut last_seen: HashMap<NodeId, Instant> = HashMap::new();
    let mut reported: BTreeSet<NodeId> = BTreeSet::new();
    loop {
        tokio::time::sleep(PERIOD).await;
        let metrics = node.raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            last_seen.clear();
            reported.clear();
            continue;
        }
        let members: Vec<(NodeId, String)> = metrics
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != node.id)
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        let now = Instant::now();
        for (id, _) in &members {
            last_seen.entry(*id).or_insert(now);
        }
        for (id, _) in &members {
            if alive(&node, *id).await {
                last_seen.insert(*id, now);
                reported.remove(id);
            }
        }
        let down: BTreeSet<NodeId> = last_seen
            .iter()
            .filter(|(_, seen)| now.duration_since(**seen) > OWNER_TIMEOUT)
            .map(|(id, _)| *id)
            .collect();
        if down.is_empty() {
            continue;
        }
        let wall = now_ms();
        for id in &down {
            if reported.insert(*id) {
                tracing::warn!(
                    node = id,
                    "a member stopped answering; the leader takes over its sessions' expiry and wills"
                );
                let command = Command::NodeDown {
                    node: berth_core::NodeId(*id),
                    at: UnixMillis(wall.saturating_sub(OWNER_TIMEOUT.as_millis() as u64)),
                };
                let _ = node.propose(&command).await;
            }
        }
        act_for_lost_owners(&node, &broker, &down, UnixMillis(now_ms())).await;
    }
}

/// A cheap liveness probe: the member's Status RPC answers within a second.
async fn alive(node: &ClusterNode, id: NodeId) -> bool {
    let Ok(mut client) = node.client(id) else {
        return false;
    };
    let mut request = tonic::Request::new(pb::StatusRequest {});
    request.set_timeout(Duration::from_secs(1));
    client.status(request).await.is_ok()
}

async fn act_for_lost_owners(
    node: &ClusterNode,
    broker: &BrokerSlot,
    down: &BTreeSet<NodeId>,
    now: UnixMillis,
) {
    let mut wills = Vec::new();
    let mut expired = Vec::new();
    if let Ok(state) = node.state.read() {
        for (client, entry) in &state.registry.sessions {
            if !down.contains(&entry.owner.0) || !entry.detached {
                continue;
            }
            if let Some(will) = entry.due_will(now) {
                wills.push((client.clone(), entry.epoch, will.clone()));
            } else if entry.expired(now) {
                expired.push((client.clone(), entry.epoch));
            }
        }
    }
    for (client, epoch, will) in wills {
        // Its Message Expiry Interval starts now, as on the owner (`WillRecord::published_at`).
        let message = message_to_pb(&WillRecord::published_at(will.message, now));
        let Some(local) = broker.get().cloned() else {
            return;
        };
        // Published here first, then recorded: a crash in between may publish it twice (at
        // least once), never lose it.
        if local.publish(message).await.is_err() {
            continue;
        }
        let _ = node.propose(&Command::WillFired { client, epoch }).await;
    }
    for (client, epoch) in expired {
        let _ = node.propose(&Command::Drop { client, epoch }).await;
    }
}

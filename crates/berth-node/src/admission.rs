//! A connection's cluster steps: the Raft claim of its session before CONNECT reaches the broker
//! (and the takeover from another node it may start), and the replication of SUBSCRIBE,
//! UNSUBSCRIBE and retained PUBLISHes before the broker sees them. A step that cannot commit
//! (this node is cut off from the majority) fails the packet visibly instead of succeeding here
//! alone: CONNACK 0x88 / return code 3, SUBACK 0x80.

use berth_codec::{Connect, Packet};
use berth_core::registry::plan::{self, ConnectPlan};
use berth_core::{Command, CopyRef, Outcome, Qos2Doubt, SessionExport, SessionRecord, UnixMillis};

use berth_server::{Grant, NoConsensus};

use crate::cluster_link::ClusterLink;

/// Claims `connect`'s session for this node. `Ok(None)`: the broker decides alone (a CONNECT it
/// will refuse anyway). `Err(NoConsensus)`: refuse with Server Unavailable.
pub(crate) async fn claim(
    link: &ClusterLink,
    connect: &mut Connect,
    now: UnixMillis,
    sequence: u64,
) -> Result<Option<Grant>, NoConsensus> {
    let ConnectPlan::Claim { claim, assigned } =
        plan::connect(link.rules(), connect, link.node_id(), now, sequence)
    else {
        return Ok(None);
    };
    let client = claim.client.clone();
    let expiry = claim.expiry;
    let proposed = match link.propose(&Command::Claim(*claim)).await {
        Ok(proposed) => proposed,
        Err(error) => {
            tracing::warn!(%error, client = client.as_str(), "CONNECT refused: the claim did not commit");
            return Err(NoConsensus);
        }
    };
    let log_index = proposed.log_index;
    let Outcome::Claimed(claimed) = proposed.outcome else {
        return Err(NoConsensus);
    };
    // The broker must know the new ownership before it sees this CONNECT.
    if !link.broker_caught_up(log_index).await {
        return Err(NoConsensus);
    }
    let epoch = claimed.epoch;
    let resume_if_absent = claimed.resumes_without_state();
    let mut taken_over = false;
    if claimed.session_present
        && let Some(from) = claimed.previous_owner.filter(|n| *n != link.node_id())
    {
        taken_over = true;
        let fallback = SessionExport {
            record: SessionRecord {
                epoch,
                protocol: connect.protocol,
                expiry,
                expires_at: None,
                will: None,
                will_due_at: None,
                qos2_state_elsewhere: true,
                incoming_qos2_elsewhere: false,
                qos2_doubt: Qos2Doubt {
                    lacking: Some(CopyRef {
                        node: from,
                        epoch: claimed.previous_epoch,
                    }),
                    // Where that owner took the session from: if its import never landed, the
                    // state is there (`Qos2Doubt::earlier`).
                    earlier: claimed.previous_from.into_iter().collect(),
                    released: Vec::new(),
                },
                landed: epoch,
            },
            subscriptions: claimed.subscriptions,
            inflight: Vec::new(),
            incoming_qos2: Vec::new(),
            queued: 0,
            seen: Vec::new(),
            qos2_retry: Vec::new(),
            served: None,
        };
        link.take_over(
            &client,
            from,
            epoch.0,
            log_index,
            fallback,
            resume_if_absent,
        )
        .await;
    }
    Ok(Some(Grant {
        client,
        epoch,
        assigned,
        taken_over,
        // The connection names its client (address, username after TLS identity).
        principal: Default::default(),
    }))
}

/// Commits what `packet` changes in the registry (core decides what that is). `Err(reply)`: it
/// did not commit; send `reply` to the client instead of handing the packet to the broker.
pub(crate) async fn commit(
    link: &ClusterLink,
    grant: &Grant,
    packet: &Packet,
    now: UnixMillis,
) -> Result<(), Packet> {
    // The session's subscriptions as the registry here holds them, for the quota
    // (`limits.max_subscriptions`): read under the state's lock, released before anything is
    // awaited. A poisoned lock counts none; the broker counts its own copy again anyway.
    let planned = {
        let state = link.node.state().read();
        let held = state
            .as_ref()
            .ok()
            .and_then(|state| state.registry.sessions.get(&grant.client))
            .map(|entry| &entry.subscriptions);
        plan::change(
            link.rules(),
            &grant.principal,
            &grant.client,
            grant.epoch,
            packet,
            now,
            held,
        )
    };
    let Some(command) = planned else {
        return Ok(());
    };
    let committed = match link.propose(&command).await {
        Ok(proposed) => !matches!(proposed.outcome, Outcome::Fenced { .. }),
        Err(error) => {
            tracing::warn!(%error, client = grant.client.as_str(), "replication failed");
            false
        }
    };
    if committed {
        return Ok(());
    }
    match packet {
        Packet::Subscribe(subscribe) => Err(Packet::SubAck(berth_codec::SubAck {
            packet_id: subscribe.packet_id,
            reason_codes: vec![
                berth_codec::SubAckReasonCode::UnspecifiedError;
                subscribe.subscriptions.len()
            ],
            properties: Default::default(),
        })),
        // Unsubscribing is safe on this node alone: a stale route elsewhere only forwards
        // messages this node no longer delivers.
        // A retained message that could not be replicated is still published here; it is
        // retained on this node only until the next one for its topic.
        _ => Ok(()),
    }
}

//! A connection's cluster steps: the Raft claim of its session before CONNECT reaches the broker
//! (and the takeover from another node it may start), and the replication of SUBSCRIBE,
//! UNSUBSCRIBE and retained PUBLISHes before the broker sees them. A step that cannot commit
//! (this node is cut off from the majority) fails the packet visibly instead of succeeding here
//! alone: CONNACK 0x88 / return code 3, SUBACK 0x80.

use berth_cluster::message::{message_to_pb, will_to_pb};
use berth_cluster::pb;
use berth_cluster::session_pb::subscription_change_to_pb;
use berth_codec::{Connect, MqttString, Packet, ProtocolVersion};
use berth_core::{ClientId, Epoch, Message, SessionExport, SessionRecord, UnixMillis, WillRecord};

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
    let v5 = connect.protocol.is_v5();
    let mut assigned = false;
    if connect.client_id.is_empty() {
        if !v5 && (!connect.clean_start || connect.protocol == ProtocolVersion::V3_1) {
            return Ok(None);
        }
        let id = format!("berth-{}-{:x}-{}", link.node_id(), now.0, sequence);
        connect.client_id = MqttString::new(&id).map_err(|_| NoConsensus)?;
        assigned = true;
    }
    let client = ClientId::new(connect.client_id.clone());
    let command = pb::Command {
        kind: Some(pb::command::Kind::Claim(pb::Claim {
            client_id: client.as_str().to_string(),
            node_id: link.node_id(),
            clean_start: connect.clean_start,
            protocol: u32::from(connect.protocol.level()),
            now_ms: now.0,
            expiry_interval: link.expiry_of(connect).as_interval(),
            // The will as core keeps it (one rule; its expiry interval counts from publication).
            will: connect
                .will
                .clone()
                .map(|will| will_to_pb(&WillRecord::of_connect(will))),
        })),
    };
    let result = match link.node.propose(command).await {
        Ok(result) => result,
        Err(error) => {
            tracing::warn!(%error, client = client.as_str(), "CONNECT refused: the claim did not commit");
            return Err(NoConsensus);
        }
    };
    let log_index = result.log_index;
    let Some(pb::command_result::Kind::Claim(claimed)) = result.kind else {
        return Err(NoConsensus);
    };
    // The broker must know the new ownership before it sees this CONNECT.
    if !link.broker_caught_up(log_index).await {
        return Err(NoConsensus);
    }
    let epoch = Epoch(claimed.epoch);
    if claimed.session_present
        && let Some(from) = claimed.previous_owner.filter(|n| *n != link.node_id())
    {
        let fallback = SessionExport {
            record: SessionRecord {
                epoch,
                protocol: connect.protocol,
                expiry: link.expiry_of(connect),
                expires_at: None,
                will: None,
                will_due_at: None,
            },
            subscriptions: claimed
                .subscriptions
                .iter()
                .filter_map(|s| berth_cluster::message::subscription_from_pb(s).ok())
                .collect(),
            inflight: Vec::new(),
            incoming_qos2: Vec::new(),
            queued: 0,
        };
        link.take_over(&client, from, claimed.epoch, log_index, fallback)
            .await;
    }
    Ok(Some(Grant {
        client,
        epoch,
        assigned,
    }))
}

/// Commits what `packet` changes in the registry. `Err(reply)`: it did not commit; send
/// `reply` to the client instead of handing the packet to the broker.
pub(crate) async fn commit(
    link: &ClusterLink,
    grant: &Grant,
    packet: &Packet,
    now: UnixMillis,
) -> Result<(), Packet> {
    let kind = match packet {
        // Only what core allows is replicated (the broker answers the rest with Not Authorized).
        Packet::Subscribe(_) | Packet::Unsubscribe(_) => {
            match subscription_change_to_pb(&grant.client, grant.epoch.0, packet, |f| {
                link.may_subscribe(f)
            }) {
                Some(kind) => kind,
                None => return Ok(()),
            }
        }
        Packet::Publish(publish) if publish.retain && !publish.topic.is_empty() => {
            if publish.payload.is_empty() {
                pb::command::Kind::ClearRetained(pb::ClearRetained {
                    topic: publish.topic.as_str().to_string(),
                })
            } else {
                let message = Message {
                    topic: publish.topic.clone(),
                    payload: publish.payload.clone(),
                    qos: publish.qos,
                    retain: true,
                    properties: berth_codec::PublishProperties {
                        payload_format_indicator: publish.properties.payload_format_indicator,
                        content_type: publish.properties.content_type.clone(),
                        response_topic: publish.properties.response_topic.clone(),
                        correlation_data: publish.properties.correlation_data.clone(),
                        user_properties: publish.properties.user_properties.clone(),
                        ..Default::default()
                    },
                    expires_at: publish
                        .properties
                        .message_expiry_interval
                        .map(|secs| now.plus_secs(secs)),
                };
                pb::command::Kind::SetRetained(pb::SetRetained {
                    message: Some(message_to_pb(&message)),
                })
            }
        }
        _ => return Ok(()),
    };
    let outcome = link.node.propose(pb::Command { kind: Some(kind) }).await;
    let committed = match &outcome {
        Ok(result) => !matches!(result.kind, Some(pb::command_result::Kind::Fenced(_))),
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

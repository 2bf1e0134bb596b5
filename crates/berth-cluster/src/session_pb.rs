//! The registry's notices and a session's takeover header, protobuf ⇄ core: the conversions
//! between what the Raft state machine and the takeover RPC carry and what the broker core
//! understands. (Messages, deliveries, subscriptions and wills: `message.rs`.)

use berth_codec::MqttString;
use berth_core::{
    ClientId, ClusterEvent, Epoch, InflightRecord, Message, RemoteSession, SessionExpiry,
    SessionExport, SessionRecord,
};
use berth_proto::v1 as pb;

use crate::message::{
    Invalid, delivery_from_pb, delivery_to_pb, message_from_pb, protocol_from,
    subscription_from_pb, subscription_to_pb, will_from_pb, will_to_pb,
};
use crate::registry::{Notice, Registry};

/// A client id as the registry spells it; `None` for one that is not a valid MQTT string.
pub fn client_id(text: &str) -> Option<ClientId> {
    MqttString::new(text).ok().map(ClientId::new)
}

pub fn subscriptions_from(
    subs: &[pb::Subscription],
) -> Vec<(berth_codec::TopicFilter, berth_core::SubscriptionRecord)> {
    subs.iter()
        .filter_map(|s| subscription_from_pb(s).ok())
        .collect()
}

/// The broker's view of one registry change. `Reset` has none of its own: it is the whole
/// registry, [`reset_of`].
pub fn event_of(notice: Notice) -> Option<ClusterEvent> {
    Some(match notice {
        Notice::Owner {
            client,
            owner,
            epoch,
            kept,
            subscriptions,
        } => ClusterEvent::Owner {
            client: client_id(&client)?,
            owner,
            epoch: berth_core::Epoch(epoch),
            kept,
            subscriptions: subscriptions_from(&subscriptions),
        },
        Notice::Subscribed {
            client,
            owner,
            subscriptions,
        } => ClusterEvent::Subscribed {
            client: client_id(&client)?,
            owner,
            subscriptions: subscriptions_from(&subscriptions),
        },
        Notice::Unsubscribed { client, filters } => ClusterEvent::Unsubscribed {
            client: client_id(&client)?,
            filters: filters
                .iter()
                .filter_map(|f| berth_codec::TopicFilter::parse(f).ok())
                .collect(),
        },
        Notice::Dropped { client, epoch } => ClusterEvent::Dropped {
            client: client_id(&client)?,
            epoch: berth_core::Epoch(epoch),
        },
        Notice::WillFired { client, epoch } => ClusterEvent::WillFired {
            client: client_id(&client)?,
            epoch: berth_core::Epoch(epoch),
        },
        Notice::NodeDown { node } => ClusterEvent::NodeDown { node },
        Notice::RetainedSet { message } => ClusterEvent::Retained {
            message: message_from_pb(message).ok()?,
        },
        Notice::RetainedCleared { topic } => ClusterEvent::Retained {
            message: Message {
                topic: berth_codec::TopicName::parse(&topic).ok()?,
                payload: bytes::Bytes::new(),
                qos: berth_codec::QoS::AtMostOnce,
                retain: true,
                properties: Default::default(),
                expires_at: None,
            },
        },
        // The whole registry: see `reset_of`.
        Notice::Reset => return None,
    })
}

/// Every session of `registry`, replacing what a broker knew of the cluster.
pub fn reset_of(registry: &Registry) -> ClusterEvent {
    let sessions = registry
        .sessions
        .iter()
        .filter_map(|(client, entry)| {
            Some(RemoteSession {
                client: client_id(client)?,
                owner: entry.owner,
                epoch: Epoch(entry.epoch),
                started: Epoch(entry.started_epoch),
                subscriptions: subscriptions_from(
                    &entry.subscriptions.values().cloned().collect::<Vec<_>>(),
                ),
            })
        })
        .collect();
    ClusterEvent::Reset { sessions }
}

pub fn export_to_pb(export: &SessionExport) -> pb::SessionHeader {
    let record = &export.record;
    pb::SessionHeader {
        found: true,
        protocol: u32::from(record.protocol.level()),
        expiry_interval: record.expiry.as_interval(),
        subscriptions: export
            .subscriptions
            .iter()
            .map(|(f, r)| subscription_to_pb(f, r))
            .collect(),
        inflight: export
            .inflight
            .iter()
            .map(|(id, record)| pb::InflightEntry {
                packet_id: u32::from(id.get()),
                order: record.order(),
                sent: match record {
                    InflightRecord::Sent { delivery, .. } => Some(delivery_to_pb(delivery)),
                    InflightRecord::Released { .. } => None,
                },
            })
            .collect(),
        incoming_qos2: export
            .incoming_qos2
            .iter()
            .map(|id| u32::from(id.get()))
            .collect(),
        queued: export.queued,
        will: record.will.as_ref().map(will_to_pb),
        will_due_at_ms: record.will_due_at.map(|at| at.0),
    }
}

pub fn export_from_pb(header: pb::SessionHeader, epoch: u64) -> Result<SessionExport, Invalid> {
    let invalid = |field| Invalid { field };
    let protocol = protocol_from(header.protocol)?;
    let mut inflight = Vec::new();
    for entry in header.inflight {
        let id = u16::try_from(entry.packet_id)
            .ok()
            .and_then(berth_codec::PacketId::new)
            .ok_or(invalid("packet_id"))?;
        let record = match entry.sent {
            Some(delivery) => InflightRecord::Sent {
                order: entry.order,
                delivery: delivery_from_pb(delivery)?,
            },
            None => InflightRecord::Released { order: entry.order },
        };
        inflight.push((id, record));
    }
    let will = header.will.map(will_from_pb).transpose()?;
    Ok(SessionExport {
        record: SessionRecord {
            epoch: berth_core::Epoch(epoch),
            protocol,
            expiry: SessionExpiry::from_interval(header.expiry_interval),
            expires_at: None,
            will,
            will_due_at: header.will_due_at_ms.map(berth_core::UnixMillis),
        },
        subscriptions: subscriptions_from(&header.subscriptions),
        inflight,
        incoming_qos2: header
            .incoming_qos2
            .iter()
            .filter_map(|id| u16::try_from(*id).ok().and_then(berth_codec::PacketId::new))
            .collect(),
        queued: header.queued,
    })
}

/// What a SUBSCRIBE or UNSUBSCRIBE changes in the registry, for the session `client` at `epoch`.
/// Only filters `may_subscribe` allows are replicated (core's rule: a refused filter must not
/// reach the registry, whose subscriptions route on every node and come back at a takeover).
/// `None`: not such a packet, or nothing allowed.
pub fn subscription_change_to_pb(
    client: &ClientId,
    epoch: u64,
    packet: &berth_codec::Packet,
    may_subscribe: impl Fn(&berth_codec::TopicFilter) -> bool,
) -> Option<pb::command::Kind> {
    use berth_codec::Packet;
    match packet {
        Packet::Subscribe(subscribe) => {
            let subscription_id = subscribe.properties.subscription_identifier;
            let subscriptions: Vec<pb::Subscription> = subscribe
                .subscriptions
                .iter()
                .filter(|s| may_subscribe(&s.filter))
                .map(|s| {
                    let record = berth_core::SubscriptionRecord {
                        options: s.options,
                        subscription_id,
                    };
                    subscription_to_pb(&s.filter, &record)
                })
                .collect();
            (!subscriptions.is_empty()).then(|| {
                pb::command::Kind::Subscribe(pb::Subscribe {
                    client_id: client.as_str().to_string(),
                    epoch,
                    subscriptions,
                })
            })
        }
        Packet::Unsubscribe(unsubscribe) => Some(pb::command::Kind::Unsubscribe(pb::Unsubscribe {
            client_id: client.as_str().to_string(),
            epoch,
            filters: unsubscribe
                .filters
                .iter()
                .map(|f| f.as_str().to_string())
                .collect(),
        })),
        _ => None,
    }
}

/// A session change the broker records (`Replicate`) as a registry command of node `node`.
pub fn replicate_to_pb(
    node: berth_core::NodeId,
    change: berth_core::Replicate,
) -> pb::command::Kind {
    use berth_core::Replicate;
    match change {
        Replicate::Detach {
            client,
            epoch,
            expires_at,
            will_due_at,
        } => pb::command::Kind::Detach(pb::Detach {
            client_id: client.as_str().to_string(),
            epoch: epoch.0,
            expires_at_ms: expires_at.map(|at| at.0),
            will_due_at_ms: will_due_at.map(|at| at.0),
        }),
        Replicate::WillFired { client, epoch } => pb::command::Kind::WillFired(pb::WillFired {
            client_id: client.as_str().to_string(),
            epoch: epoch.0,
        }),
        Replicate::Drop { client, epoch } => pb::command::Kind::DropSession(pb::DropSession {
            client_id: client.as_str().to_string(),
            epoch: epoch.0,
        }),
        Replicate::Reassert {
            client,
            epoch,
            protocol,
            expiry,
            will,
            subscriptions,
        } => pb::command::Kind::Reassert(pb::Reassert {
            client_id: client.as_str().to_string(),
            node_id: node,
            epoch: epoch.0,
            protocol: u32::from(protocol.level()),
            expiry_interval: expiry.as_interval(),
            will: will.as_deref().map(will_to_pb),
            subscriptions: subscriptions
                .iter()
                .map(|(f, r)| subscription_to_pb(f, r))
                .collect(),
        }),
    }
}

//! A session's takeover header, and client ids, protobuf ⇄ core.

use berth_codec::MqttString;
use berth_core::{ClientId, InflightRecord, SessionExpiry, SessionExport, SessionRecord};
use berth_proto::v1 as pb;

use super::message::{
    Invalid, delivery_from_pb, delivery_to_pb, message_id_from_pb, message_id_to_pb,
    packet_id_from_pb, protocol_from, subscription_from_pb, subscription_to_pb, will_from_pb,
    will_to_pb,
};

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
        qos2_state_elsewhere: record.qos2_state_elsewhere,
        incoming_qos2_elsewhere: record.incoming_qos2_elsewhere,
        qos2_lacking: record.qos2_doubt.lacking.map(|copy| pb::CopyRef {
            node: copy.node.0,
            epoch: copy.epoch.0,
        }),
        qos2_earlier_lacking: record
            .qos2_doubt
            .earlier
            .iter()
            .map(|copy| pb::CopyRef {
                node: copy.node.0,
                epoch: copy.epoch.0,
            })
            .collect(),
        qos2_released: record
            .qos2_doubt
            .released
            .iter()
            .map(|id| u32::from(id.get()))
            .collect(),
        seen: export.seen.iter().copied().map(message_id_to_pb).collect(),
        qos2_retry: export
            .qos2_retry
            .iter()
            .map(|(packet_id, id)| pb::Qos2Retry {
                packet_id: u32::from(packet_id.get()),
                id: Some(message_id_to_pb(*id)),
            })
            .collect(),
        served_epoch: export.served.map(|epoch| epoch.0),
    }
}

pub fn export_from_pb(header: pb::SessionHeader, epoch: u64) -> Result<SessionExport, Invalid> {
    let invalid = |field| Invalid { field };
    let protocol = protocol_from(header.protocol)?;
    let mut inflight = Vec::new();
    for entry in header.inflight {
        let id = packet_id_from_pb(entry.packet_id)?;
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
            qos2_state_elsewhere: header.qos2_state_elsewhere,
            incoming_qos2_elsewhere: header.incoming_qos2_elsewhere,
            qos2_doubt: berth_core::Qos2Doubt {
                lacking: header.qos2_lacking.map(|copy| berth_core::CopyRef {
                    node: berth_core::NodeId(copy.node),
                    epoch: berth_core::Epoch(copy.epoch),
                }),
                earlier: header
                    .qos2_earlier_lacking
                    .iter()
                    .map(|copy| berth_core::CopyRef {
                        node: berth_core::NodeId(copy.node),
                        epoch: berth_core::Epoch(copy.epoch),
                    })
                    .collect(),
                released: header
                    .qos2_released
                    .iter()
                    .map(|id| {
                        u16::try_from(*id)
                            .ok()
                            .and_then(berth_codec::PacketId::new)
                            .ok_or(invalid("qos2_released"))
                    })
                    .collect::<Result<_, _>>()?,
            },
            // The importer's copy starts at its claim (`Broker::on_import_state`).
            landed: berth_core::Epoch(epoch),
        },
        subscriptions: subscriptions_from(&header.subscriptions),
        inflight,
        incoming_qos2: header
            .incoming_qos2
            .iter()
            .filter_map(|id| u16::try_from(*id).ok().and_then(berth_codec::PacketId::new))
            .collect(),
        queued: header.queued,
        seen: header.seen.into_iter().map(message_id_from_pb).collect(),
        qos2_retry: header
            .qos2_retry
            .into_iter()
            .filter_map(|retry| {
                let packet_id = packet_id_from_pb(retry.packet_id).ok()?;
                Some((packet_id, message_id_from_pb(retry.id?)))
            })
            .collect(),
        served: header.served_epoch.map(berth_core::Epoch),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_codec::{PacketId, ProtocolVersion, QoS, TopicName};
    use berth_core::{Delivery, Epoch, Message, MessageId, NodeId};
    use bytes::Bytes;

    use super::*;

    #[test]
    fn a_session_export_round_trips_with_its_qos2_state() {
        let id = |n| PacketId::new(n).unwrap();
        let message_id = |seq| MessageId {
            origin: NodeId(3),
            seq,
        };
        let delivery = Delivery {
            message: Arc::new(Message {
                topic: TopicName::parse("t").unwrap(),
                payload: Bytes::from_static(b"m"),
                qos: QoS::ExactlyOnce,
                retain: false,
                properties: Default::default(),
                expires_at: None,
                received_at: None,
                id: Some(message_id(7)),
            }),
            qos: QoS::ExactlyOnce,
            retain: false,
            subscription_ids: Vec::new(),
            redelivery: false,
            sent_as: berth_codec::PacketId::new(9),
        };
        let export = SessionExport {
            record: SessionRecord {
                epoch: Epoch(4),
                protocol: ProtocolVersion::V5,
                expiry: SessionExpiry::from_interval(600),
                expires_at: None,
                will: None,
                will_due_at: None,
                qos2_state_elsewhere: true,
                incoming_qos2_elsewhere: true,
                qos2_doubt: berth_core::Qos2Doubt {
                    lacking: Some(berth_core::CopyRef {
                        node: berth_core::NodeId(2),
                        epoch: Epoch(3),
                    }),
                    earlier: vec![berth_core::CopyRef {
                        node: berth_core::NodeId(1),
                        epoch: Epoch(2),
                    }],
                    released: vec![id(3), id(11)],
                },
                landed: Epoch(4),
            },
            subscriptions: Vec::new(),
            inflight: vec![
                (id(1), InflightRecord::Sent { order: 0, delivery }),
                (id(2), InflightRecord::Released { order: 1 }),
            ],
            incoming_qos2: vec![id(5)],
            queued: 12,
            seen: vec![message_id(6), message_id(7)],
            qos2_retry: vec![(id(9), message_id(8))],
            served: Some(Epoch(3)),
        };
        assert_eq!(export_from_pb(export_to_pb(&export), 4).unwrap(), export);
    }
}

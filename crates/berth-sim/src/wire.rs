//! The conversions between the broker, the registry and the wire. Where the server's own code
//! is shared (`berth_cluster::session_pb`, `berth_cluster::message`, `berth_core`'s rules) the
//! simulator calls it; what still lives only in `berth-node` (private, async) is copied here,
//! each copy naming its original: these are the candidates for moving into shared code.
//!
//! Packets between clients and nodes are encoded and decoded with `berth_codec` for the
//! connection's protocol version, as on a socket: a 3.1.1 client sees a PUBACK without a
//! reason code, exactly as it would.

use berth_cluster::message::{message_from_pb, message_to_pb, will_to_pb};
use berth_cluster::session_pb::{self, export_from_pb, export_to_pb, reset_of};
use berth_cluster::session_pb::{replicate_to_pb, subscription_change_to_pb};
use berth_cluster::{Notice, Registry, pb};
use berth_codec::{Connect, DecodeOptions, Packet, ProtocolVersion, decode, encode};
use berth_core::{
    BrokerConfig, ClientId, ClusterEvent, Message, SessionConfig, SessionExpiry, SessionExport,
    WillRecord,
};
use bytes::BytesMut;

pub(crate) use berth_cluster::session_pb::{client_id, subscriptions_from};

/// A packet as the peer decodes it after `encode` for `version`.
pub(crate) fn over_socket(packet: &Packet, version: ProtocolVersion) -> Result<Packet, String> {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).map_err(|e| format!("encode: {e:?}"))?;
    let opts = DecodeOptions::new(version);
    match decode(&mut buf, &opts) {
        Ok(Some(packet)) if buf.is_empty() => Ok(packet),
        Ok(Some(_)) => Err("trailing bytes".into()),
        Ok(None) => Err("incomplete packet".into()),
        Err(e) => Err(format!("decode: {e:?}")),
    }
}

/// Registry notice → broker event, as the notice pump in `berth-node`'s `cluster_link.rs`
/// does it (the `Reset` reads the node's registry as it is when the notice is converted).
pub(crate) fn event_of(registry: &Registry, notice: Notice) -> Option<ClusterEvent> {
    match notice {
        Notice::Reset => Some(reset_of(registry)),
        notice => session_pb::event_of(notice),
    }
}

/// The whole registry as one broker event.
pub(crate) fn reset(registry: &Registry) -> ClusterEvent {
    reset_of(registry)
}

/// The session expiry a CONNECT gets (core's rule).
pub(crate) fn expiry_of(session: &SessionConfig, connect: &Connect) -> SessionExpiry {
    session.expiry_of(connect)
}

/// The claim a CONNECT proposes. Copy of the command built in `admission::claim`
/// (`crates/berth-node/src/admission.rs`).
pub(crate) fn claim_command(
    node: u64,
    connect: &Connect,
    session: &SessionConfig,
    now_ms: u64,
) -> pb::Command {
    pb::Command {
        kind: Some(pb::command::Kind::Claim(pb::Claim {
            client_id: connect.client_id.as_str().to_string(),
            node_id: node,
            clean_start: connect.clean_start,
            protocol: u32::from(connect.protocol.level()),
            now_ms,
            expiry_interval: expiry_of(session, connect).as_interval(),
            will: connect
                .will
                .clone()
                .map(|will| will_to_pb(&WillRecord::of_connect(will))),
        })),
    }
}

/// Whether `packet` must commit before the broker sees it. Copy of the rule in
/// `berth-server`'s connection (SUBSCRIBE, UNSUBSCRIBE, retained PUBLISH).
pub(crate) fn needs_commit(packet: &Packet) -> bool {
    match packet {
        Packet::Subscribe(_) | Packet::Unsubscribe(_) => true,
        Packet::Publish(publish) => publish.retain && !publish.topic.is_empty(),
        _ => false,
    }
}

/// The registry change a SUBSCRIBE / UNSUBSCRIBE commits (retained PUBLISHes are not simulated):
/// the conversion `berth-node`'s admission uses. `None`: nothing to commit.
pub(crate) fn packet_command(
    client: &ClientId,
    epoch: u64,
    packet: &Packet,
) -> Option<pb::Command> {
    let rules = BrokerConfig::default();
    let kind = subscription_change_to_pb(client, epoch, packet, |f| rules.may_subscribe(f))?;
    Some(pb::Command { kind: Some(kind) })
}

/// The client a broker session change is about.
pub(crate) fn replicate_client(change: &berth_core::Replicate) -> &ClientId {
    use berth_core::Replicate;
    match change {
        Replicate::Detach { client, .. }
        | Replicate::WillFired { client, .. }
        | Replicate::Drop { client, .. }
        | Replicate::Reassert { client, .. } => client,
    }
}

/// The broker's session change as a registry command (the conversion `berth-node` uses).
pub(crate) fn replicate_command(node: u64, change: berth_core::Replicate) -> pb::Command {
    pb::Command {
        kind: Some(replicate_to_pb(node, change)),
    }
}

/// The export as the new owner decodes it: through the shared takeover header conversions.
pub(crate) fn export_over_wire(
    export: &SessionExport,
    epoch: u64,
) -> Result<SessionExport, String> {
    export_from_pb(export_to_pb(export), epoch).map_err(|e| e.to_string())
}

/// A forwarded message as the owner decodes it (`ClusterLink::forward` → `BrokerEndpoint::forward`).
pub(crate) fn forwarded_to_pb(
    message: &Message,
    clients: &[ClientId],
    publisher: Option<&ClientId>,
) -> pb::ForwardedMessage {
    pb::ForwardedMessage {
        message: Some(message_to_pb(message)),
        client_ids: clients.iter().map(|c| c.as_str().to_string()).collect(),
        publisher: publisher.map(|p| p.as_str().to_string()),
    }
}

/// The owner's side of a forward batch (`BrokerEndpoint::forward`).
pub(crate) fn forwarded_from_pb(
    batch: &[pb::ForwardedMessage],
) -> Result<Vec<berth_core::Forwarded>, String> {
    let mut messages = Vec::with_capacity(batch.len());
    for forwarded in batch {
        let message = forwarded
            .message
            .clone()
            .ok_or_else(|| "forwarded message is missing".to_string())?;
        let message = message_from_pb(message).map_err(|e| e.to_string())?;
        messages.push(berth_core::Forwarded {
            message: std::sync::Arc::new(message),
            clients: forwarded
                .client_ids
                .iter()
                .filter_map(|c| client_id(c))
                .collect(),
            publisher: forwarded.publisher.as_deref().and_then(client_id),
        });
    }
    Ok(messages)
}

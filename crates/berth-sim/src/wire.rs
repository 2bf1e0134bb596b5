//! The conversions between the broker, the registry and the wire. Where the server's own code
//! is shared (`berth_cluster::convert`, `berth_core`'s rules and `registry::plan`) the
//! simulator calls it; what still lives only in `berth-node` (private, async) is copied here,
//! each copy naming its original: these are the candidates for moving into shared code.
//!
//! Packets between clients and nodes are encoded and decoded with `berth_codec` for the
//! connection's protocol version, as on a socket: a 3.1.1 client sees a PUBACK without a
//! reason code, exactly as it would.

use berth_cluster::convert::{
    command_to_pb, export_from_pb, export_to_pb, message_from_pb, message_to_pb,
};
use berth_cluster::pb;
use berth_codec::{Connect, DecodeOptions, Packet, ProtocolVersion, decode, encode};
use berth_core::registry::plan::{self, ConnectPlan};
use berth_core::{
    BrokerConfig, ClientId, Command, Epoch, Message, SessionConfig, SessionExpiry, SessionExport,
    UnixMillis,
};
use bytes::BytesMut;

pub(crate) use berth_cluster::convert::{client_id, subscriptions_from};

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

/// The session expiry a CONNECT gets (core's rule).
pub(crate) fn expiry_of(session: &SessionConfig, connect: &Connect) -> SessionExpiry {
    session.expiry_of(connect)
}

/// The claim a CONNECT proposes, as `berth-node`'s admission plans it (core's
/// `registry::plan::connect`), in its log form. `None`: the broker refuses the CONNECT alone.
pub(crate) fn claim_command(
    node: u64,
    connect: &Connect,
    session: &SessionConfig,
    now_ms: u64,
) -> Option<pb::Command> {
    let rules = BrokerConfig {
        session: session.clone(),
        ..BrokerConfig::default()
    };
    let mut connect = connect.clone();
    match plan::connect(
        &rules,
        &mut connect,
        berth_core::NodeId(node),
        UnixMillis(now_ms),
        0,
    ) {
        ConnectPlan::Claim { claim, .. } => Some(command_to_pb(&Command::Claim(*claim))),
        ConnectPlan::Alone => None,
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

/// The registry change a SUBSCRIBE / UNSUBSCRIBE commits (retained PUBLISHes are not simulated),
/// as `berth-node`'s admission plans it (core's `registry::plan::change`). `None`: nothing to
/// commit.
pub(crate) fn packet_command(
    client: &ClientId,
    epoch: u64,
    packet: &Packet,
) -> Option<pb::Command> {
    let rules = BrokerConfig::default();
    let who = berth_core::acl::Principal {
        client_id: client.as_str().to_owned(),
        ..Default::default()
    };
    // No registry view of the session: the simulator's default rules have no subscription
    // quota, for which alone `plan::change` reads it.
    let command = plan::change(
        &rules,
        &who,
        client,
        Epoch(epoch),
        packet,
        UnixMillis(0),
        None,
    )?;
    Some(command_to_pb(&command))
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
    command_to_pb(&Command::of_replicate(berth_core::NodeId(node), change))
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
        retried: false,
    }
}

/// The owner's side of a forward batch (`BrokerEndpoint::forward`).
pub(crate) fn forwarded_from_pb(
    batch: &[pb::ForwardedMessage],
    retried: bool,
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
            retried: retried || forwarded.retried,
        });
    }
    Ok(messages)
}

/// Whether a takeover goes on with the registry's subscriptions when the old owner holds
/// nothing: core's rule (`Claimed::resumes_without_state`), on the claim's answer as it travels.
pub(crate) fn resumes_without_state(claimed: &pb::ClaimResult) -> bool {
    berth_cluster::convert::claimed_from_pb(claimed).is_ok_and(|c| c.resumes_without_state())
}

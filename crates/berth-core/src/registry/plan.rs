//! What a client's packet asks of the registry, decided by core's rules before a node proposes
//! anything: a connection task in a cluster asks here and builds no command of its own (the
//! empty-id rule, the expiry clamp, the will as kept, the ACL and the per-client limits on
//! SUBSCRIBE and on retained PUBLISHes, the retained message are the broker's, and are decided
//! once).

use berth_codec::{Connect, MqttString, Packet};

use super::Subscriptions;
use super::command::{Claim, Command};
use crate::config::BrokerConfig;
use crate::ids::{ClientId, Epoch, NodeId};
use crate::message::Message;
use crate::store::{SubscriptionRecord, WillRecord};
use crate::time::UnixMillis;

/// 3.1.1 §3.1.3.1: an empty client id needs Clean Session = 1, and 3.1 requires an id. MQTT 5
/// assigns one whatever Clean Start says.
pub fn empty_id_refused(connect: &Connect) -> bool {
    !connect.protocol.is_v5()
        && (!connect.clean_start || connect.protocol == berth_codec::ProtocolVersion::V3_1)
}

/// What a CONNECT asks of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectPlan {
    /// Nothing: the broker refuses this CONNECT by its own rules (an empty client id where the
    /// protocol needs one, a will topic over the topic limits), with no claim.
    Alone,
    /// Claim the session; `assigned`: the client id was assigned here (MQTT 5 tells the client).
    Claim { claim: Box<Claim>, assigned: bool },
}

/// The claim `connect` makes on `node`. An empty client id is replaced in `connect` by the one
/// assigned (`sequence` makes it unique on this node; the node id, across the cluster).
pub fn connect(
    config: &BrokerConfig,
    connect: &mut Connect,
    node: NodeId,
    now: UnixMillis,
    sequence: u64,
) -> ConnectPlan {
    let mut assigned = false;
    if connect
        .will
        .as_ref()
        .is_some_and(|will| config.limits.topic_over(will.topic.as_str()).is_some())
    {
        // The broker refuses it whoever the client is (CONNACK 0x90): claiming the session
        // first would only leave it owned here without a connection.
        return ConnectPlan::Alone;
    }
    if connect.client_id.is_empty() {
        if empty_id_refused(connect) {
            return ConnectPlan::Alone;
        }
        let id = format!("berth-{}-{:x}-{}", node.0, now.0, sequence);
        let Ok(id) = MqttString::new(&id) else {
            return ConnectPlan::Alone;
        };
        connect.client_id = id;
        assigned = true;
    }
    ConnectPlan::Claim {
        claim: Box::new(Claim {
            client: ClientId::new(connect.client_id.clone()),
            node,
            clean_start: connect.clean_start,
            protocol: connect.protocol,
            now,
            expiry: config.session.expiry_of(connect),
            // The will as core keeps it (its expiry interval counts from publication).
            will: connect.will.clone().map(WillRecord::of_connect),
        }),
        assigned,
    }
}

/// What `packet` of `client`'s connection at `epoch` changes in the registry, if anything: the
/// allowed filters of a SUBSCRIBE (a refused one must not reach the registry, whose
/// subscriptions route on every node and come back at a takeover), an UNSUBSCRIBE, a retained
/// PUBLISH (set, or cleared by an empty payload) that `who` may publish and whose topic is
/// within the topic limits (a refused one gets its 0x87 or 0x90 from the broker, and must not
/// be retained anywhere).
///
/// `held`: the session's subscriptions as the registry here holds them (`None`: none known),
/// for `limits.max_subscriptions` — the same count the broker makes of its own copy when the
/// SUBSCRIBE reaches it, so that both grant the same filters.
pub fn change(
    config: &BrokerConfig,
    who: &crate::acl::Principal,
    client: &ClientId,
    epoch: Epoch,
    packet: &Packet,
    now: UnixMillis,
    held: Option<&Subscriptions>,
) -> Option<Command> {
    match packet {
        Packet::Subscribe(subscribe) => {
            let subscription_id = subscribe.properties.subscription_identifier;
            let verdicts = config.vet_subscribe(
                who,
                held.map_or(0, |held| held.len()),
                |filter| held.is_some_and(|held| held.contains_key(filter)),
                subscribe.subscriptions.iter().map(|s| &s.filter),
            );
            let subscriptions: Vec<_> = subscribe
                .subscriptions
                .iter()
                .zip(verdicts)
                .filter(|(_, verdict)| verdict.is_ok())
                .map(|(s, _)| {
                    let record = SubscriptionRecord {
                        options: s.options,
                        subscription_id,
                    };
                    (s.filter.clone(), record)
                })
                .collect();
            (!subscriptions.is_empty()).then(|| Command::Subscribe {
                client: client.clone(),
                epoch,
                subscriptions,
            })
        }
        Packet::Unsubscribe(unsubscribe) => Some(Command::Unsubscribe {
            client: client.clone(),
            epoch,
            filters: unsubscribe.filters.clone(),
        }),
        // An empty topic names a Topic Alias, which only the broker resolves: such a retained
        // PUBLISH is retained on this node alone (a known gap, docs/architecture.md §6).
        Packet::Publish(publish)
            if publish.retain
                && !publish.topic.is_empty()
                && config.limits.topic_over(publish.topic.as_str()).is_none()
                && config.may_publish(who, publish.topic.as_str()) =>
        {
            Some(if publish.payload.is_empty() {
                Command::ClearRetained(publish.topic.clone())
            } else {
                let topic = publish.topic.clone();
                Command::SetRetained(Message::published(publish.clone(), topic, now))
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;

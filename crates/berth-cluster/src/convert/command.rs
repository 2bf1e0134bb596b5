//! The registry's commands, outcomes and snapshot entries, protobuf ⇄ core, and the registry
//! applied to a command as the log carries it.
//!
//! The log and the snapshot hold the protobuf form (what goes into the log is exactly what goes
//! on the wire); core's [`Registry`] applies domain values. A command that does not convert (a
//! peer's field that is not valid) changes nothing, on every node alike, and answers `Fenced`
//! so that its proposer does not take it for done.

use berth_codec::{TopicFilter, TopicName};
use berth_core::registry::{Claim, Claimed, Reassert, SessionEntry};
use berth_core::{
    ClientId, ClusterEvent, Command, CopyRef, Epoch, NodeId, Outcome, Registry, SessionExpiry,
    UnixMillis,
};
use berth_proto::v1 as pb;

use super::message::{
    Invalid, invalid, message_from_pb, message_to_pb, protocol_from, subscription_from_pb,
    subscription_to_pb, will_from_pb, will_to_pb,
};
use super::session::client_id;

fn client(text: &str) -> Result<ClientId, Invalid> {
    client_id(text).ok_or(invalid("client_id"))
}

fn subscriptions_to_pb(
    subs: &[(TopicFilter, berth_core::SubscriptionRecord)],
) -> Vec<pb::Subscription> {
    subs.iter().map(|(f, r)| subscription_to_pb(f, r)).collect()
}

fn subscriptions_from_pb(
    subs: &[pb::Subscription],
) -> Result<Vec<(TopicFilter, berth_core::SubscriptionRecord)>, Invalid> {
    subs.iter().map(subscription_from_pb).collect()
}

fn topic(text: &str) -> Result<TopicName, Invalid> {
    TopicName::parse(text).map_err(|_| invalid("topic"))
}

pub fn command_to_pb(command: &Command) -> pb::Command {
    use pb::command::Kind;
    let kind = match command {
        Command::Claim(c) => Kind::Claim(pb::Claim {
            client_id: c.client.as_str().to_string(),
            node_id: c.node.0,
            clean_start: c.clean_start,
            protocol: u32::from(c.protocol.level()),
            now_ms: c.now.0,
            expiry_interval: c.expiry.as_interval(),
            will: c.will.as_ref().map(will_to_pb),
        }),
        Command::Drop { client, epoch } => Kind::DropSession(pb::DropSession {
            client_id: client.as_str().to_string(),
            epoch: epoch.0,
        }),
        Command::Detach {
            client,
            epoch,
            expires_at,
            will_due_at,
        } => Kind::Detach(pb::Detach {
            client_id: client.as_str().to_string(),
            epoch: epoch.0,
            expires_at_ms: expires_at.map(|at| at.0),
            will_due_at_ms: will_due_at.map(|at| at.0),
        }),
        Command::Subscribe {
            client,
            epoch,
            subscriptions,
        } => Kind::Subscribe(pb::Subscribe {
            client_id: client.as_str().to_string(),
            epoch: epoch.0,
            subscriptions: subscriptions_to_pb(subscriptions),
        }),
        Command::Unsubscribe {
            client,
            epoch,
            filters,
        } => Kind::Unsubscribe(pb::Unsubscribe {
            client_id: client.as_str().to_string(),
            epoch: epoch.0,
            filters: filters.iter().map(|f| f.as_str().to_string()).collect(),
        }),
        Command::NodeDown { node, at } => Kind::NodeDown(pb::NodeDown {
            node_id: node.0,
            at_ms: at.0,
        }),
        Command::Reassert(r) => Kind::Reassert(pb::Reassert {
            client_id: r.client.as_str().to_string(),
            node_id: r.node.0,
            epoch: r.epoch.0,
            protocol: u32::from(r.protocol.level()),
            expiry_interval: r.expiry.as_interval(),
            will: r.will.as_ref().map(will_to_pb),
            subscriptions: subscriptions_to_pb(&r.subscriptions),
        }),
        Command::WillFired { client, epoch } => Kind::WillFired(pb::WillFired {
            client_id: client.as_str().to_string(),
            epoch: epoch.0,
        }),
        Command::SetRetained(message) => Kind::SetRetained(pb::SetRetained {
            message: Some(message_to_pb(message)),
        }),
        Command::ClearRetained(topic) => Kind::ClearRetained(pb::ClearRetained {
            topic: topic.as_str().to_string(),
        }),
    };
    pb::Command { kind: Some(kind) }
}

pub fn command_from_pb(command: &pb::Command) -> Result<Command, Invalid> {
    use pb::command::Kind;
    Ok(match command.kind.as_ref().ok_or(invalid("command"))? {
        Kind::Claim(c) => Command::Claim(Claim {
            client: client(&c.client_id)?,
            node: NodeId(c.node_id),
            clean_start: c.clean_start,
            protocol: protocol_from(c.protocol)?,
            now: UnixMillis(c.now_ms),
            expiry: SessionExpiry::from_interval(c.expiry_interval),
            will: c.will.clone().map(will_from_pb).transpose()?,
        }),
        Kind::DropSession(d) => Command::Drop {
            client: client(&d.client_id)?,
            epoch: Epoch(d.epoch),
        },
        Kind::Detach(d) => Command::Detach {
            client: client(&d.client_id)?,
            epoch: Epoch(d.epoch),
            expires_at: d.expires_at_ms.map(UnixMillis),
            will_due_at: d.will_due_at_ms.map(UnixMillis),
        },
        Kind::Subscribe(s) => Command::Subscribe {
            client: client(&s.client_id)?,
            epoch: Epoch(s.epoch),
            subscriptions: subscriptions_from_pb(&s.subscriptions)?,
        },
        Kind::Unsubscribe(u) => Command::Unsubscribe {
            client: client(&u.client_id)?,
            epoch: Epoch(u.epoch),
            filters: u
                .filters
                .iter()
                .map(|f| TopicFilter::parse(f).map_err(|_| invalid("filter")))
                .collect::<Result<_, _>>()?,
        },
        Kind::NodeDown(d) => Command::NodeDown {
            node: NodeId(d.node_id),
            at: UnixMillis(d.at_ms),
        },
        // Applied command by command (`apply`), never read as one.
        Kind::Batch(_) => return Err(invalid("a batch where one command belongs")),
        Kind::Reassert(r) => Command::Reassert(Reassert {
            client: client(&r.client_id)?,
            node: NodeId(r.node_id),
            epoch: Epoch(r.epoch),
            protocol: protocol_from(r.protocol)?,
            expiry: SessionExpiry::from_interval(r.expiry_interval),
            will: r.will.clone().map(will_from_pb).transpose()?,
            subscriptions: subscriptions_from_pb(&r.subscriptions)?,
        }),
        Kind::WillFired(w) => Command::WillFired {
            client: client(&w.client_id)?,
            epoch: Epoch(w.epoch),
        },
        Kind::SetRetained(s) => Command::SetRetained(message_from_pb(
            s.message.clone().ok_or(invalid("set_retained.message"))?,
        )?),
        Kind::ClearRetained(c) => Command::ClearRetained(topic(&c.topic)?),
    })
}

pub fn outcome_to_pb(outcome: &Outcome) -> pb::CommandResult {
    use pb::command_result::Kind;
    let kind = match outcome {
        Outcome::Applied => Kind::Applied(pb::Blank {}),
        Outcome::Claimed(c) => Kind::Claim(pb::ClaimResult {
            epoch: c.epoch.0,
            session_present: c.session_present,
            previous_owner: c.previous_owner.map(|n| n.0),
            previous_epoch: c.previous_epoch.0,
            previous_from_node: c.previous_from.map(|copy| copy.node.0),
            previous_from_epoch: c.previous_from.map_or(0, |copy| copy.epoch.0),
            subscriptions: subscriptions_to_pb(&c.subscriptions),
            previous_expiry_interval: c.previous_expiry.as_interval(),
        }),
        Outcome::Fenced { current } => Kind::Fenced(pb::Fenced {
            current_epoch: current.0,
        }),
    };
    pb::CommandResult {
        kind: Some(kind),
        log_index: 0,
    }
}

/// A command's outcome as its proposer reads it; `None` for a membership or blank entry's.
pub fn outcome_from_pb(result: &pb::CommandResult) -> Result<Option<Outcome>, Invalid> {
    use pb::command_result::Kind;
    Ok(match result.kind.as_ref().ok_or(invalid("result"))? {
        Kind::Applied(_) => Some(Outcome::Applied),
        Kind::Claim(c) => Some(Outcome::Claimed(claimed_from_pb(c)?)),
        Kind::Fenced(f) => Some(Outcome::Fenced {
            current: Epoch(f.current_epoch),
        }),
        Kind::Internal(_) => None,
        Kind::Batch(_) => return Err(invalid("a batch's results where one belongs")),
    })
}

/// A claim's answer as it travels.
pub fn claimed_from_pb(c: &pb::ClaimResult) -> Result<Claimed, Invalid> {
    Ok(Claimed {
        epoch: Epoch(c.epoch),
        session_present: c.session_present,
        previous_owner: c.previous_owner.map(NodeId),
        previous_epoch: Epoch(c.previous_epoch),
        previous_from: c
            .previous_from_node
            .filter(|_| c.previous_from_epoch > 0)
            .map(|node| CopyRef {
                node: NodeId(node),
                epoch: Epoch(c.previous_from_epoch),
            }),
        subscriptions: subscriptions_from_pb(&c.subscriptions)?,
        previous_expiry: SessionExpiry::from_interval(c.previous_expiry_interval),
    })
}

/// Applies a command as the log carries it (see the module's comment for one that does not
/// convert).
pub fn apply(
    registry: &mut Registry,
    command: &pb::Command,
    events: &mut Vec<ClusterEvent>,
) -> pb::CommandResult {
    if let Some(pb::command::Kind::Batch(batch)) = &command.kind {
        let results = batch
            .commands
            .iter()
            .map(|command| apply(registry, command, events))
            .collect();
        return pb::CommandResult {
            kind: Some(pb::command_result::Kind::Batch(pb::CommandResults {
                results,
            })),
            log_index: 0,
        };
    }
    match command_from_pb(command) {
        Ok(command) => outcome_to_pb(&registry.apply(&command, events)),
        Err(error) => {
            tracing::error!(%error, "a registry command that cannot be read changes nothing");
            outcome_to_pb(&Outcome::Fenced { current: Epoch(0) })
        }
    }
}

pub fn session_entry_to_pb(client: &ClientId, e: &SessionEntry) -> pb::SessionEntry {
    pb::SessionEntry {
        client_id: client.as_str().to_string(),
        owner: e.owner.0,
        epoch: e.epoch.0,
        started_epoch: e.started.0,
        moved_from: e.moved_from.map(|copy| copy.node.0),
        moved_from_epoch: e
            .moved_from
            .map(|copy| copy.epoch.0)
            .filter(|epoch| *epoch > 0),
        protocol: u32::from(e.protocol.level()),
        // Detached and never expiring: u64::MAX (absent means connected).
        expires_at_ms: e.detached.then(|| e.expires_at.map_or(u64::MAX, |at| at.0)),
        subscriptions: e
            .subscriptions
            .iter()
            .map(|(f, r)| subscription_to_pb(f, r))
            .collect(),
        expiry_interval: e.expiry.as_interval(),
        will: e.will.as_deref().map(will_to_pb),
        will_due_at_ms: e.will_due_at.map(|at| at.0),
    }
}

pub fn session_entry_from_pb(s: &pb::SessionEntry) -> Result<(ClientId, SessionEntry), Invalid> {
    Ok((
        client(&s.client_id)?,
        SessionEntry {
            owner: NodeId(s.owner),
            epoch: Epoch(s.epoch),
            started: Epoch(s.started_epoch),
            moved_from: s.moved_from.map(|node| CopyRef {
                node: NodeId(node),
                epoch: Epoch(s.moved_from_epoch.unwrap_or(0)),
            }),
            protocol: protocol_from(s.protocol)?,
            expires_at: s.expires_at_ms.filter(|at| *at != u64::MAX).map(UnixMillis),
            detached: s.expires_at_ms.is_some(),
            subscriptions: subscriptions_from_pb(&s.subscriptions)?
                .into_iter()
                .collect(),
            expiry: SessionExpiry::from_interval(s.expiry_interval),
            will: s.will.clone().map(will_from_pb).transpose()?.map(Box::new),
            will_due_at: s.will_due_at_ms.map(UnixMillis),
        },
    ))
}

/// The registry as a snapshot's sessions and retained messages.
pub fn registry_to_pb(registry: &Registry) -> (Vec<pb::SessionEntry>, Vec<pb::Message>) {
    (
        registry
            .sessions
            .iter()
            .map(|(client, entry)| session_entry_to_pb(client, entry))
            .collect(),
        registry.retained.values().map(message_to_pb).collect(),
    )
}

/// The registry of a snapshot. An entry that does not convert is left out (logged), on every
/// node alike.
pub fn registry_from_pb(sessions: &[pb::SessionEntry], retained: &[pb::Message]) -> Registry {
    let mut registry = Registry::default();
    for entry in sessions {
        match session_entry_from_pb(entry) {
            Ok((client, entry)) => {
                registry.sessions.insert(client, entry);
            }
            Err(error) => {
                tracing::error!(%error, client = entry.client_id, "snapshot entry left out")
            }
        }
    }
    for message in retained {
        match message_from_pb(message.clone()) {
            Ok(message) => {
                registry.retained.insert(message.topic.clone(), message);
            }
            Err(error) => tracing::error!(%error, "retained message of a snapshot left out"),
        }
    }
    registry
}

#[cfg(test)]
mod tests {
    use berth_codec::{MqttString, ProtocolVersion, QoS, SubscriptionOptions};
    use berth_core::{Message, SubscriptionRecord, WillRecord};

    use super::*;

    fn id(text: &str) -> ClientId {
        ClientId::new(MqttString::new(text).unwrap())
    }

    fn will() -> WillRecord {
        let mut message = Message {
            topic: TopicName::parse("wills/x").unwrap(),
            payload: bytes::Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
            expires_at: None,
            received_at: None,
            id: None,
        };
        message.properties.message_expiry_interval = Some(30);
        WillRecord {
            message,
            delay_secs: 5,
        }
    }

    fn sub(filter: &str) -> (TopicFilter, SubscriptionRecord) {
        (
            TopicFilter::parse(filter).unwrap(),
            SubscriptionRecord {
                options: SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    ..SubscriptionOptions::new(QoS::AtMostOnce)
                },
                subscription_id: berth_codec::SubscriptionId::new(7),
            },
        )
    }

    fn every_command() -> Vec<Command> {
        let client = id("x");
        vec![
            Command::Claim(Claim {
                client: client.clone(),
                node: NodeId(2),
                clean_start: false,
                protocol: ProtocolVersion::V5,
                now: UnixMillis(1_000),
                expiry: SessionExpiry::Never,
                will: Some(will()),
            }),
            Command::Drop {
                client: client.clone(),
                epoch: Epoch(3),
            },
            Command::Detach {
                client: client.clone(),
                epoch: Epoch(3),
                expires_at: Some(UnixMillis(9)),
                will_due_at: Some(UnixMillis(5)),
            },
            Command::Subscribe {
                client: client.clone(),
                epoch: Epoch(3),
                subscriptions: vec![sub("a/+"), sub("b/#")],
            },
            Command::Unsubscribe {
                client: client.clone(),
                epoch: Epoch(3),
                filters: vec![TopicFilter::parse("a/+").unwrap()],
            },
            Command::NodeDown {
                node: NodeId(3),
                at: UnixMillis(77),
            },
            Command::Reassert(Reassert {
                client: client.clone(),
                node: NodeId(1),
                epoch: Epoch(4),
                protocol: ProtocolVersion::V3_1_1,
                expiry: SessionExpiry::After(60),
                will: Some(will()),
                subscriptions: vec![sub("c")],
            }),
            Command::WillFired {
                client,
                epoch: Epoch(4),
            },
            // A routed message keeps its expiry as a deadline, never as an interval.
            Command::SetRetained(Message {
                retain: true,
                expires_at: Some(UnixMillis(123)),
                received_at: Some(UnixMillis(120)),
                properties: Default::default(),
                ..will().message
            }),
            Command::ClearRetained(TopicName::parse("t").unwrap()),
        ]
    }

    #[test]
    fn every_command_round_trips_with_all_its_fields() {
        for command in every_command() {
            let back = command_from_pb(&command_to_pb(&command)).unwrap();
            assert_eq!(back, command);
        }
    }

    #[test]
    fn outcomes_round_trip() {
        let outcomes = [
            Outcome::Applied,
            Outcome::Fenced { current: Epoch(9) },
            Outcome::Claimed(Claimed {
                epoch: Epoch(2),
                session_present: true,
                previous_owner: Some(NodeId(1)),
                previous_epoch: Epoch(1),
                previous_from: Some(CopyRef {
                    node: NodeId(3),
                    epoch: Epoch(7),
                }),
                subscriptions: vec![sub("a")],
                previous_expiry: SessionExpiry::After(3600),
            }),
        ];
        for outcome in outcomes {
            assert_eq!(
                outcome_from_pb(&outcome_to_pb(&outcome)).unwrap(),
                Some(outcome)
            );
        }
    }

    #[test]
    fn a_command_that_does_not_convert_changes_nothing_and_is_not_taken_for_done() {
        let mut registry = Registry::default();
        let mut events = Vec::new();
        let bad = pb::Command {
            kind: Some(pb::command::Kind::Subscribe(pb::Subscribe {
                client_id: "x".into(),
                epoch: 1,
                subscriptions: vec![pb::Subscription {
                    filter: "a/#/b".into(),
                    ..Default::default()
                }],
            })),
        };
        let result = apply(&mut registry, &bad, &mut events);
        assert!(matches!(
            result.kind,
            Some(pb::command_result::Kind::Fenced(_))
        ));
        assert_eq!(registry, Registry::default());
        assert!(events.is_empty());
    }

    #[test]
    fn snapshots_round_trip_the_registry() {
        let mut r = Registry::default();
        let mut events = Vec::new();
        for command in every_command() {
            r.apply(&command, &mut events);
        }
        r.apply(
            &Command::Claim(Claim {
                client: id("y"),
                node: NodeId(1),
                clean_start: true,
                protocol: ProtocolVersion::V3_1,
                now: UnixMillis(0),
                expiry: SessionExpiry::After(10),
                will: None,
            }),
            &mut events,
        );
        r.apply(
            &Command::Detach {
                client: id("y"),
                epoch: Epoch(1),
                expires_at: None,
                will_due_at: None,
            },
            &mut events,
        );
        // Taken over: the entry names the copy it came from, epoch included.
        r.apply(
            &Command::Claim(Claim {
                client: id("y"),
                node: NodeId(2),
                clean_start: false,
                protocol: ProtocolVersion::V3_1,
                now: UnixMillis(0),
                expiry: SessionExpiry::After(10),
                will: None,
            }),
            &mut events,
        );
        let copy_of_1 = CopyRef {
            node: NodeId(1),
            epoch: Epoch(1),
        };
        assert_eq!(r.sessions[&id("y")].moved_from, Some(copy_of_1));
        assert!(!r.sessions.is_empty() && !r.retained.is_empty());
        let (sessions, retained) = registry_to_pb(&r);
        assert_eq!(registry_from_pb(&sessions, &retained), r);
    }
}

//! What a cluster node proposes for a packet obeys the same per-client limits and grants as
//! the broker: a refused filter, retained message or will never reaches the registry, and the
//! plan of a SUBSCRIBE grants exactly the filters the broker's SUBACK grants.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Tests start from the default configuration and change a few fields: that reads clearest.
#![allow(clippy::field_reassign_with_default)]

use std::sync::Arc;

use berth_codec::{
    ConnectProperties, LastWill, PacketId, ProtocolVersion, Publish, QoS, SubAckReasonCode,
    Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName,
};
use bytes::Bytes;

use super::*;
use crate::acl::{Granted, Grants, Principal};
use crate::broker::{Action, Broker, Event};
use crate::config::Limit;
use crate::ids::ConnId;
use crate::mem_store::MemStore;

const NOW: UnixMillis = UnixMillis(1_700_000_000_000);

fn filter(text: &str) -> TopicFilter {
    TopicFilter::parse(text).unwrap()
}

fn client() -> ClientId {
    ClientId::new(MqttString::new("x").unwrap())
}

fn who() -> Principal {
    Principal {
        client_id: "x".to_owned(),
        ..Principal::default()
    }
}

fn subscribe_packet(filters: &[&str]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        subscriptions: filters
            .iter()
            .map(|text| Subscription {
                filter: filter(text),
                options: SubscriptionOptions::new(QoS::AtLeastOnce),
            })
            .collect(),
        properties: Default::default(),
    })
}

fn retained_packet(topic: &str) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: TopicName::parse(topic).unwrap(),
        packet_id: PacketId::new(2),
        payload: Bytes::from_static(b"kept"),
        properties: Default::default(),
    })
}

fn connect_packet(will_topic: Option<&str>) -> Connect {
    Connect {
        protocol: ProtocolVersion::V5,
        clean_start: false,
        keep_alive: 60,
        client_id: MqttString::new("x").unwrap(),
        will: will_topic.map(|topic| LastWill {
            topic: TopicName::parse(topic).unwrap(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
        }),
        username: None,
        password: None,
        properties: ConnectProperties {
            session_expiry_interval: Some(600),
            ..Default::default()
        },
    }
}

/// A session's subscriptions as the registry holds them.
fn held(filters: &[&str]) -> Subscriptions {
    let mut held = Subscriptions::new();
    for text in filters {
        held.insert(
            filter(text),
            SubscriptionRecord {
                options: SubscriptionOptions::new(QoS::AtLeastOnce),
                subscription_id: None,
            },
        );
    }
    held
}

/// The filters a planned command subscribes to; empty when nothing is planned.
fn planned_filters(command: Option<Command>) -> Vec<String> {
    match command {
        Some(Command::Subscribe { subscriptions, .. }) => subscriptions
            .into_iter()
            .map(|(f, _)| f.as_str().to_owned())
            .collect(),
        None => Vec::new(),
        Some(other) => panic!("expected a Subscribe command, got {other:?}"),
    }
}

fn limited() -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.limits.max_subscriptions = Limit::AtMost(2);
    config.limits.max_topic_levels = Limit::AtMost(3);
    config.denied_filters = vec![filter("secret/#")];
    config
}

const REQUESTED: [&str; 6] = ["a", "b", "secret/x", "x/y/z/w", "c", "b"];

#[test]
fn a_subscribe_plans_only_the_filters_within_the_limits_and_the_acl() {
    let config = limited();
    let registry = held(&["a"]);
    let command = change(
        &config,
        &who(),
        &client(),
        Epoch(1),
        &subscribe_packet(&REQUESTED),
        NOW,
        Some(&registry),
    );
    // "a" is held (a replacement), "b" takes the second place, "secret/x" is denied,
    // "x/y/z/w" too deep, "c" one too many, "b" again a replacement.
    assert_eq!(planned_filters(command), ["a", "b", "b"]);

    // Without a view of the session, the quota counts from none held.
    let command = change(
        &config,
        &who(),
        &client(),
        Epoch(1),
        &subscribe_packet(&["c", "d", "e"]),
        NOW,
        None,
    );
    assert_eq!(planned_filters(command), ["c", "d"]);

    // Nothing allowed: nothing proposed.
    let command = change(
        &config,
        &who(),
        &client(),
        Epoch(1),
        &subscribe_packet(&["secret/y", "x/y/z/w"]),
        NOW,
        Some(&registry),
    );
    assert!(command.is_none());
}

/// The one rule: what the plan proposes is what the broker's SUBACK grants, for the same
/// session state.
#[test]
fn the_plan_grants_exactly_what_the_broker_grants() {
    let config = limited();
    let mut broker = Broker::open(config.clone(), MemStore::new(), NOW).unwrap();
    let conn = ConnId(1);
    broker
        .handle(
            NOW,
            Event::Connect {
                conn,
                connect: Box::new(connect_packet(None)),
                source: None,
                grants: None,
            },
        )
        .unwrap();
    broker
        .handle(
            NOW,
            Event::Packet {
                conn,
                packet: subscribe_packet(&["a"]),
            },
        )
        .unwrap();
    let _ = broker.take_actions();
    broker
        .handle(
            NOW,
            Event::Packet {
                conn,
                packet: subscribe_packet(&REQUESTED),
            },
        )
        .unwrap();
    let codes = broker
        .take_actions()
        .into_iter()
        .find_map(|action| match action {
            Action::Send {
                packet: Packet::SubAck(suback),
                ..
            } => Some(suback.reason_codes),
            _ => None,
        })
        .expect("SUBACK");
    let granted: Vec<String> = REQUESTED
        .iter()
        .zip(&codes)
        .filter(|(_, code)| !code.is_error())
        .map(|(text, _)| (*text).to_owned())
        .collect();
    let planned = planned_filters(change(
        &config,
        &who(),
        &client(),
        Epoch(1),
        &subscribe_packet(&REQUESTED),
        NOW,
        Some(&held(&["a"])),
    ));
    assert_eq!(planned, granted);
    assert_eq!(
        codes,
        [
            SubAckReasonCode::GrantedQoS1,
            SubAckReasonCode::GrantedQoS1,
            SubAckReasonCode::NotAuthorized,
            SubAckReasonCode::TopicFilterInvalid,
            SubAckReasonCode::QuotaExceeded,
            SubAckReasonCode::GrantedQoS1,
        ]
    );
}

#[test]
fn a_retained_publish_over_the_topic_limits_is_not_replicated() {
    let config = limited();
    let plan = |topic: &str| {
        change(
            &config,
            &who(),
            &client(),
            Epoch(1),
            &retained_packet(topic),
            NOW,
            None,
        )
    };
    assert!(plan("a/b/c/d").is_none());
    assert!(matches!(plan("a/b/c"), Some(Command::SetRetained(_))));
}

#[test]
fn a_will_over_the_topic_limits_claims_nothing() {
    let config = limited();
    let mut over = connect_packet(Some("a/b/c/d"));
    assert_eq!(
        connect(&config, &mut over, NodeId(1), NOW, 0),
        ConnectPlan::Alone
    );
    let mut within = connect_packet(Some("a/b/c"));
    assert!(matches!(
        connect(&config, &mut within, NodeId(1), NOW, 0),
        ConnectPlan::Claim { .. }
    ));
}

/// The connection's grants (a JWT's `acl` claim) ride on its principal into the plan: what
/// they do not allow is neither subscribed nor retained in the registry.
#[test]
fn the_plan_obeys_the_connections_grants() {
    let config = BrokerConfig::default();
    let grants = Grants::parse([
        (Granted::Subscribe, "devices/%c/cmd/#"),
        (Granted::Publish, "devices/%c/state"),
    ])
    .unwrap();
    let who = Principal {
        grants: Some(Arc::new(grants)),
        ..who()
    };
    let command = change(
        &config,
        &who,
        &client(),
        Epoch(1),
        &subscribe_packet(&["devices/x/cmd/+", "devices/y/cmd/+", "devices/x/state"]),
        NOW,
        None,
    );
    assert_eq!(planned_filters(command), ["devices/x/cmd/+"]);
    let plan = |topic: &str| {
        change(
            &config,
            &who,
            &client(),
            Epoch(1),
            &retained_packet(topic),
            NOW,
            None,
        )
    };
    assert!(plan("devices/x/state").is_some());
    assert!(plan("devices/y/state").is_none());
    assert!(plan("devices/x/cmd/reboot").is_none());
}

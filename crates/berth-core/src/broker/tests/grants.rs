//! Topic grants carried by a client's credentials (a JWT's `acl` claim) combined with the rules
//! file: both must allow, at PUBLISH, at SUBSCRIBE, for wills, retained messages on subscribe
//! and every delivery; grants belong to the connection (a queued message is checked by the
//! grants of the connection it goes out on), also for a session the cluster granted.

use std::sync::Arc;

use berth_codec::{ConnectReasonCode, PubAckReasonCode, QoS, SubAckReasonCode};

use super::*;
use crate::acl::{Acl, AclRules, Granted, Grants};

const RULES: &str = r##"
default = "deny"

[[rule]]
permission = "allow"
action = "both"
topic = "devices/%c/#"

[[rule]]
permission = "allow"
action = "both"
topic = "fleet/#"

[[rule]]
permission = "allow"
action = "subscribe"
topic = "#"
username = "ops"
"##;

fn harness(rules: &str) -> Harness {
    let mut config = BrokerConfig::default();
    config.acl = Acl::new(AclRules::parse(rules).unwrap());
    Harness::with_config(config)
}

fn grants(publish: &[&str], subscribe: &[&str]) -> Arc<Grants> {
    let patterns = publish
        .iter()
        .map(|p| (Granted::Publish, *p))
        .chain(subscribe.iter().map(|p| (Granted::Subscribe, *p)));
    Arc::new(Grants::parse(patterns).unwrap())
}

/// The grants a device's token might carry: its telemetry, a fleet status topic and one
/// topic the rules file does not allow; its commands and the fleet's alerts to read.
fn device_grants() -> Arc<Grants> {
    grants(
        &["devices/%c/telemetry", "fleet/status", "other/x"],
        &["devices/%c/cmd/#", "fleet/alerts"],
    )
}

/// Connects `connect` on `conn` with `grants`, as the server does after authentication.
fn connect_with(h: &mut Harness, conn: u64, connect: Connect, grants: Arc<Grants>) -> Out {
    h.event(Event::Connect {
        conn: ConnId(conn),
        connect: Box::new(connect),
        source: None,
        grants: Some(grants),
    })
}

fn as_user(mut connect: Connect, user: &str) -> Connect {
    connect.username = Some(mqtt(user));
    connect
}

fn puback_reason(out: &Out, conn: ConnId) -> PubAckReasonCode {
    match out.only(conn) {
        Packet::PubAck(ack) => ack.reason,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

fn suback_codes(out: &Out, conn: ConnId) -> Vec<SubAckReasonCode> {
    out.to(conn)
        .into_iter()
        .find_map(|packet| match packet {
            Packet::SubAck(suback) => Some(suback.reason_codes),
            _ => None,
        })
        .expect("SUBACK")
}

#[test]
fn a_publish_needs_both_the_rules_and_the_grants() {
    let mut h = harness(RULES);
    let ops = h.connect_ok(as_user(v5("ops", true, None), "ops"));
    h.subscribe(ops, subscribe(1, "#", QoS::AtLeastOnce));
    let out = connect_with(&mut h, 900, v5("d1", true, None), device_grants());
    let d1 = ConnId(900);
    assert_eq!(out.connack(d1).reason, ConnectReasonCode::Success);

    // Both allow.
    let out = h.publish(
        d1,
        publish("devices/d1/telemetry", b"t", QoS::AtLeastOnce, 1),
    );
    assert_eq!(puback_reason(&out, d1), PubAckReasonCode::Success);
    assert_eq!(payloads(&out.publishes(ops)), ["t"]);
    // The rules allow, the grants do not.
    let out = h.publish(d1, publish("devices/d1/state", b"s", QoS::AtLeastOnce, 2));
    assert_eq!(puback_reason(&out, d1), PubAckReasonCode::NotAuthorized);
    assert!(out.publishes(ops).is_empty());
    // The grants allow, the rules do not: a token cannot lift the operator's deny.
    let out = h.publish(d1, publish("other/x", b"o", QoS::AtLeastOnce, 3));
    assert_eq!(puback_reason(&out, d1), PubAckReasonCode::NotAuthorized);
    // Granted for reading only.
    let out = h.publish(d1, publish("fleet/alerts", b"a", QoS::AtLeastOnce, 4));
    assert_eq!(puback_reason(&out, d1), PubAckReasonCode::NotAuthorized);
    assert_eq!(
        h.broker
            .stats()
            .dropped_total(crate::DropReason::NotAuthorized),
        3
    );

    // The same client without grants: the rules alone decide.
    let d1 = h.connect_ok(v5("d1", true, None));
    let out = h.publish(d1, publish("devices/d1/state", b"s", QoS::AtLeastOnce, 5));
    assert_eq!(puback_reason(&out, d1), PubAckReasonCode::Success);
}

#[test]
fn subscribe_retained_and_delivery_need_both_the_rules_and_the_grants() {
    let mut h = harness(RULES);
    let fleet = h.connect_ok(v5("fleet-publisher", true, None));
    h.publish(
        fleet,
        retained("fleet/alerts", b"alert", QoS::AtLeastOnce, 1),
    );
    h.publish(
        fleet,
        retained("fleet/other", b"other", QoS::AtLeastOnce, 2),
    );

    connect_with(&mut h, 900, v5("d1", true, None), device_grants());
    let d1 = ConnId(900);
    let mut request = subscribe(1, "devices/d1/cmd/+", QoS::AtLeastOnce);
    for text in ["devices/d1/state", "fleet/#", "elsewhere/#", "#"] {
        request.subscriptions.push(Subscription {
            filter: filter(text),
            options: SubscriptionOptions::new(QoS::AtLeastOnce),
        });
    }
    let out = h.packet(d1, Packet::Subscribe(request));
    use SubAckReasonCode::{GrantedQoS1, NotAuthorized};
    assert_eq!(
        suback_codes(&out, d1),
        [
            GrantedQoS1,   // devices/d1/cmd/+: granted, and under the rules' devices/%c/#
            NotAuthorized, // devices/d1/state: the rules allow it, the grants do not
            GrantedQoS1,   // fleet/#: both allow part of it (fleet/alerts)
            NotAuthorized, // elsewhere/#: neither
            GrantedQoS1,   // #: both allow part of it; delivery filters
        ]
    );
    // Retained on subscribe: only what both allow, once for each subscription that matches
    // it (fleet/# and #); "fleet/other" is dropped at delivery by the grants.
    assert_eq!(payloads(&out.publishes(d1)), ["alert", "alert"]);

    // Every delivery: both must allow the topic.
    let out = h.publish(fleet, publish("fleet/alerts", b"a2", QoS::AtLeastOnce, 3));
    assert_eq!(payloads(&out.publishes(d1)), ["a2"]);
    let out = h.publish(fleet, publish("fleet/other", b"o2", QoS::AtLeastOnce, 4));
    assert!(out.publishes(d1).is_empty(), "the grants keep it out");
    assert_eq!(
        h.broker
            .stats()
            .dropped_total(crate::DropReason::NotAuthorized),
        // "other" retained, through fleet/# and #; "o2" once.
        3
    );
}

#[test]
fn a_will_needs_both_the_rules_and_the_grants() {
    let mut h = harness(RULES);
    let connect = with_will(v5("d1", true, None), will("devices/d1/state", b"x", None));
    let out = connect_with(&mut h, 900, connect, device_grants());
    assert_eq!(
        out.connack(ConnId(900)).reason,
        ConnectReasonCode::NotAuthorized
    );
    let connect = with_will(
        v5("d1", true, None),
        will("devices/d1/telemetry", b"x", None),
    );
    let out = connect_with(&mut h, 901, connect, device_grants());
    assert_eq!(out.connack(ConnId(901)).reason, ConnectReasonCode::Success);
}

#[test]
fn without_a_rules_file_the_grants_alone_restrict_and_empty_grants_allow_nothing() {
    let mut h = Harness::new();
    let watcher = h.connect_ok(v5("watcher", true, None));
    h.subscribe(watcher, subscribe(1, "#", QoS::AtLeastOnce));
    connect_with(&mut h, 900, v5("d1", true, None), device_grants());
    let d1 = ConnId(900);
    let out = h.publish(d1, publish("other/x", b"o", QoS::AtLeastOnce, 1));
    assert_eq!(puback_reason(&out, d1), PubAckReasonCode::Success);
    let out = h.publish(d1, publish("anything/else", b"a", QoS::AtLeastOnce, 2));
    assert_eq!(puback_reason(&out, d1), PubAckReasonCode::NotAuthorized);

    connect_with(&mut h, 901, v5("mute", true, None), grants(&[], &[]));
    let mute = ConnId(901);
    let out = h.publish(mute, publish("t", b"m", QoS::AtLeastOnce, 1));
    assert_eq!(puback_reason(&out, mute), PubAckReasonCode::NotAuthorized);
    let out = h.packet(mute, Packet::Subscribe(subscribe(2, "#", QoS::AtLeastOnce)));
    assert_eq!(suback_codes(&out, mute), [SubAckReasonCode::NotAuthorized]);
}

/// Grants belong to the connection, not the session: what was queued for a session while it
/// was offline is checked when it is sent, by the grants of the connection it goes out on.
#[test]
fn queued_messages_are_checked_by_the_grants_of_the_connection_they_go_out_on() {
    let mut h = Harness::new();
    connect_with(&mut h, 900, v5("d1", false, Some(600)), grants(&[], &["#"]));
    h.subscribe(ConnId(900), subscribe(1, "#", QoS::AtLeastOnce));
    h.disconnect_normal(ConnId(900));
    let publisher = h.connect_ok(v5("pub", true, None));
    h.publish(publisher, publish("a/1", b"a", QoS::AtLeastOnce, 1));
    h.publish(publisher, publish("b/1", b"b", QoS::AtLeastOnce, 2));

    // Back with a token that grants less: the queued "a/1" is not sent.
    let out = connect_with(
        &mut h,
        901,
        v5("d1", false, Some(600)),
        grants(&[], &["b/#"]),
    );
    assert!(out.connack(ConnId(901)).session_present);
    assert_eq!(payloads(&out.publishes(ConnId(901))), ["b"]);
    assert_eq!(
        h.broker
            .stats()
            .dropped_total(crate::DropReason::NotAuthorized),
        1
    );
}

/// A connection the cluster granted (`ConnectAs`, as the admission hands it over after the
/// claim) carries its grants as a local one does.
#[test]
fn a_cluster_granted_connection_carries_its_grants() {
    let mut h = Harness::new();
    let out = h.event(Event::ConnectAs {
        conn: ConnId(900),
        connect: Box::new(v5("d1", true, None)),
        epoch: crate::ids::Epoch(1),
        assigned: false,
        source: None,
        grants: Some(device_grants()),
        principal: None,
    });
    let d1 = ConnId(900);
    assert_eq!(out.connack(d1).reason, ConnectReasonCode::Success);
    let out = h.publish(d1, publish("anything/else", b"a", QoS::AtLeastOnce, 1));
    assert_eq!(puback_reason(&out, d1), PubAckReasonCode::NotAuthorized);
    let out = h.publish(
        d1,
        publish("devices/d1/telemetry", b"t", QoS::AtLeastOnce, 2),
    );
    assert_eq!(
        puback_reason(&out, d1),
        PubAckReasonCode::NoMatchingSubscribers
    );
}

/// The principal the server built for a connection's claim is the session's own when it names
/// the same client, so that a connection holds one copy; one naming anyone else is not taken.
#[test]
fn a_claims_principal_is_shared_only_when_it_names_the_same_client() {
    let grants = device_grants();
    let principal = |client_id: &str| {
        Arc::new(crate::acl::Principal {
            username: None,
            client_id: client_id.to_owned(),
            source: None,
            grants: Some(grants.clone()),
        })
    };
    let mut h = Harness::new();
    for (conn, client_id, given) in [(901, "d1", principal("d1")), (902, "d2", principal("d3"))] {
        let out = h.event(Event::ConnectAs {
            conn: ConnId(conn),
            connect: Box::new(v5(client_id, true, None)),
            epoch: crate::ids::Epoch(1),
            assigned: false,
            source: None,
            grants: Some(grants.clone()),
            principal: Some(given.clone()),
        });
        assert_eq!(out.connack(ConnId(conn)).reason, ConnectReasonCode::Success);
        let session = &h.broker.sessions[&client(client_id)];
        let held = &session.online.as_ref().expect("connected").principal;
        assert_eq!(
            held.client_id, client_id,
            "the ACL sees the session's own client id"
        );
        assert_eq!(
            Arc::ptr_eq(held, &given),
            client_id == given.client_id,
            "{client_id}: shared only when the server's principal names it"
        );
    }
    // d2's own principal (built, not the one naming d3) decides what it may publish.
    for (topic, id, expected) in [
        (
            "devices/d2/telemetry",
            1,
            PubAckReasonCode::NoMatchingSubscribers,
        ),
        ("devices/d3/telemetry", 2, PubAckReasonCode::NotAuthorized),
    ] {
        let out = h.publish(ConnId(902), publish(topic, b"t", QoS::AtLeastOnce, id));
        assert_eq!(puback_reason(&out, ConnId(902)), expected, "{topic}");
    }
}

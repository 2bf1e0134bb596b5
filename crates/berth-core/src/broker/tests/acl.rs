//! The ACL in the broker: PUBLISH (0x87 in MQTT 5, acknowledged and dropped in 3.1.1), SUBSCRIBE,
//! retained messages on subscribe, wildcard delivery, wills, address rules, and a rule changed
//! while a subscription exists.

use berth_codec::{ConnectReasonCode, PubAckReasonCode, QoS, SubAckReasonCode};

use super::*;
use crate::acl::{Acl, AclRules};

const RULES: &str = r##"
default = "deny"

[[rule]]
permission = "allow"
action = "both"
topic = "devices/%c/#"

[[rule]]
permission = "deny"
action = "subscribe"
topic = "plant/secret/#"

[[rule]]
permission = "allow"
action = "both"
topic = "plant/#"

[[rule]]
permission = "allow"
action = "subscribe"
topic = "#"
username = "ops"
"##;

fn harness(rules: &str) -> (Harness, Acl) {
    let acl = Acl::new(AclRules::parse(rules).unwrap());
    let mut config = BrokerConfig::default();
    config.acl = acl.clone();
    (Harness::with_config(config), acl)
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

#[test]
fn a_denied_publish_is_0x87_in_mqtt5_and_acknowledged_and_dropped_in_3_1_1() {
    let (mut h, _) = harness(RULES);
    let ops = h.connect_ok(as_user(v5("ops", true, None), "ops"));
    h.subscribe(ops, subscribe(1, "#", QoS::AtLeastOnce));

    let v5_pub = h.connect_ok(v5("d1", true, None));
    let out = h.publish(v5_pub, publish("elsewhere/x", b"no", QoS::AtLeastOnce, 1));
    assert_eq!(puback_reason(&out, v5_pub), PubAckReasonCode::NotAuthorized);
    assert!(
        out.publishes(ops).is_empty(),
        "a refused message goes nowhere"
    );
    let out = h.publish(v5_pub, publish("devices/d1/t", b"yes", QoS::AtLeastOnce, 2));
    assert_eq!(puback_reason(&out, v5_pub), PubAckReasonCode::Success);
    assert_eq!(payloads(&out.publishes(ops)), ["yes"]);

    let v3_pub = h.connect_ok(v3("d3", true));
    let out = h.publish(
        v3_pub,
        publish("devices/d1/t", b"not yours", QoS::AtLeastOnce, 1),
    );
    assert_eq!(puback_reason(&out, v3_pub), PubAckReasonCode::Success);
    assert!(out.publishes(ops).is_empty());
    // QoS 2 from 3.1.1: PUBREC as usual, the exchange ends at PUBCOMP, nothing delivered.
    let out = h.publish(v3_pub, publish("elsewhere/y", b"no", QoS::ExactlyOnce, 2));
    assert!(matches!(out.only(v3_pub), Packet::PubRec(_)));
    assert!(out.publishes(ops).is_empty());
    let out = h.pubrel(v3_pub, pid(2));
    assert!(matches!(out.only(v3_pub), Packet::PubComp(_)));
    assert_eq!(
        h.broker
            .stats()
            .dropped_total(crate::DropReason::NotAuthorized),
        3
    );
}

#[test]
fn subscribe_is_refused_only_where_no_allowed_topic_could_match() {
    let (mut h, _) = harness(RULES);
    let d1 = h.connect_ok(v5("d1", true, None));
    let mut request = subscribe(1, "devices/d1/cmd", QoS::AtLeastOnce);
    for text in [
        "devices/d2/cmd",
        "plant/secret/x",
        "plant/+/temp",
        "#",
        "other/#",
    ] {
        request.subscriptions.push(Subscription {
            filter: filter(text),
            options: SubscriptionOptions::new(QoS::AtLeastOnce),
        });
    }
    let out = h.packet(d1, Packet::Subscribe(request));
    let ack = match out.only(d1) {
        Packet::SubAck(ack) => ack,
        other => panic!("expected SUBACK, got {other:?}"),
    };
    use SubAckReasonCode::{GrantedQoS1, NotAuthorized};
    assert_eq!(
        ack.reason_codes,
        [
            GrantedQoS1,   // devices/d1/cmd: its own prefix
            NotAuthorized, // devices/d2/cmd: another client's
            NotAuthorized, // plant/secret/x: covered by the deny
            GrantedQoS1,   // plant/+/temp: covered by allow plant/#
            GrantedQoS1,   // #: allowed topics exist under it; delivery filters
            NotAuthorized, // other/#: nothing under it is allowed
        ]
    );
}

#[test]
fn a_wildcard_subscription_gets_only_what_the_rules_allow_retained_included() {
    let (mut h, _) = harness(RULES);
    let publisher = h.connect_ok(as_user(v5("pub", true, None), "ops"));
    // ops may not publish (its rule is for subscribing): these come from a device.
    let device = h.connect_ok(v5("d1", true, None));
    h.publish(
        device,
        retained("devices/d1/state", b"kept", QoS::AtLeastOnce, 1),
    );
    h.publish(
        device,
        retained("plant/secret/code", b"nope", QoS::AtLeastOnce, 2),
    );
    let _ = publisher;

    let d2 = h.connect_ok(v5("d2", true, None));
    let out = h.subscribe(d2, subscribe(1, "#", QoS::AtLeastOnce));
    assert!(
        out.publishes(d2).is_empty(),
        "neither retained message is d2's to read: {:?}",
        payloads(&out.publishes(d2))
    );
    let out = h.publish(
        device,
        publish("plant/line1/temp", b"21", QoS::AtLeastOnce, 3),
    );
    assert_eq!(payloads(&out.publishes(d2)), ["21"]);
    let out = h.publish(
        device,
        publish("devices/d1/t", b"d1's", QoS::AtLeastOnce, 4),
    );
    assert!(out.publishes(d2).is_empty(), "another device's topic");

    let d1 = h.connect_ok(v5("d1-reader", true, None));
    let out = h.subscribe(d1, subscribe(1, "devices/+/state", QoS::AtLeastOnce));
    assert!(
        out.publishes(d1).is_empty(),
        "devices/d1/* is not d1-reader's"
    );
}

#[test]
fn a_rule_changed_while_subscribed_applies_at_the_next_delivery() {
    let (mut h, acl) = harness(RULES);
    let sub = h.connect_ok(v5("watcher", false, Some(600)));
    h.subscribe(sub, subscribe(1, "plant/#", QoS::AtLeastOnce));
    let device = h.connect_ok(v5("d1", true, None));
    let out = h.publish(device, publish("plant/a", b"before", QoS::AtLeastOnce, 1));
    assert_eq!(payloads(&out.publishes(sub)), ["before"]);
    // The rule goes; the subscription stays, and delivers nothing the rules deny now.
    acl.replace(
        AclRules::parse(
            "default = \"deny\"\n[[rule]]\npermission = \"allow\"\naction = \"publish\"\ntopic = \"#\"\n",
        )
        .unwrap(),
    );
    let out = h.publish(device, publish("plant/a", b"after", QoS::AtLeastOnce, 2));
    assert!(out.publishes(sub).is_empty());
    // Queued while offline under the old rules: checked when it is sent.
    h.disconnect_normal(sub);
    acl.replace(AclRules::parse(RULES).unwrap());
    h.publish(device, publish("plant/a", b"queued", QoS::AtLeastOnce, 3));
    acl.replace(
        AclRules::parse(
            "default = \"deny\"\n[[rule]]\npermission = \"allow\"\naction = \"publish\"\ntopic = \"#\"\n",
        )
        .unwrap(),
    );
    let (back, out) = h.connect(v5("watcher", false, Some(600)));
    assert!(out.connack(back).session_present);
    assert!(out.publishes(back).is_empty(), "denied at delivery");
}

#[test]
fn a_will_on_a_topic_the_client_may_not_publish_to_refuses_the_connect() {
    let (mut h, _) = harness(RULES);
    let connect = with_will(v5("d1", true, None), will("elsewhere/gone", b"x", None));
    let (conn, out) = h.connect(connect);
    assert_eq!(out.connack(conn).reason, ConnectReasonCode::NotAuthorized);
    assert!(out.closed(conn));
    let connect = with_will(v5("d1", true, None), will("devices/d1/gone", b"x", None));
    let (conn, out) = h.connect(connect);
    assert_eq!(out.connack(conn).reason, ConnectReasonCode::Success);
}

#[test]
fn address_rules_match_the_source_the_server_reports() {
    let (mut h, _) = harness(
        "default = \"deny\"\n[[rule]]\npermission = \"allow\"\naction = \"publish\"\n\
         topic = \"#\"\nsource = \"10.1.0.0/16\"\n",
    );
    let inside = ConnId(900);
    let out = h.event(Event::Connect {
        conn: inside,
        connect: Box::new(v5("inside", true, None)),
        source: Some("10.1.2.3".parse().unwrap()),
        grants: None,
    });
    assert_eq!(out.connack(inside).reason, ConnectReasonCode::Success);
    let out = h.publish(inside, publish("t", b"m", QoS::AtLeastOnce, 1));
    assert_eq!(
        puback_reason(&out, inside),
        PubAckReasonCode::NoMatchingSubscribers
    );
    let outside = ConnId(901);
    h.event(Event::Connect {
        conn: outside,
        connect: Box::new(v5("outside", true, None)),
        source: Some("192.168.1.1".parse().unwrap()),
        grants: None,
    });
    let out = h.publish(outside, publish("t", b"m", QoS::AtLeastOnce, 1));
    assert_eq!(
        puback_reason(&out, outside),
        PubAckReasonCode::NotAuthorized
    );
}

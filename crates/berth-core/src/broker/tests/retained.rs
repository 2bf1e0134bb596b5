//! Retained messages: set, replace, delete, Retain Handling, Retain As Published, shared
//! subscriptions, and their independence from sessions.

use berth_codec::{QoS, RetainHandling};

use super::*;

fn options(
    qos: QoS,
    retain_handling: RetainHandling,
    retain_as_published: bool,
) -> SubscriptionOptions {
    SubscriptionOptions {
        retain_handling,
        retain_as_published,
        ..SubscriptionOptions::new(qos)
    }
}

/// A fresh clean-start client that subscribes to `filter_text`; returns the retained
/// messages it got on subscribe.
fn late_subscriber(h: &mut Harness, id: &str, filter_text: &str) -> Vec<Publish> {
    let conn = h.connect_ok(v5(id, true, None));
    h.subscribe(conn, subscribe(1, filter_text, QoS::ExactlyOnce))
        .publishes(conn)
}

#[test]
fn retained_message_is_set_replaced_and_deleted() {
    let mut h = Harness::new();
    let publisher = h.connect_ok(v5("pub", true, None));
    let out = h.publish(publisher, retained("r/a", b"one", QoS::AtLeastOnce, 1));
    assert!(!out.to(publisher).is_empty());
    let got = late_subscriber(&mut h, "s1", "r/#");
    assert_eq!(payloads(&got), ["one"]);
    assert!(
        got[0].retain,
        "sent because of the subscription: RETAIN = 1"
    );
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert_eq!(h.loaded().retained.len(), 1);

    h.publish(publisher, retained("r/a", b"two", QoS::AtMostOnce, 0));
    let got = late_subscriber(&mut h, "s2", "r/#");
    assert_eq!(payloads(&got), ["two"]);
    assert_eq!(got[0].qos, QoS::AtMostOnce);
    assert_eq!(h.broker.stats().retained_messages, 1);

    // An empty retained payload deletes; it is still delivered to current subscribers.
    let watcher = h.connect_ok(v5("watcher", true, None));
    h.subscribe(watcher, subscribe(1, "r/a", QoS::AtMostOnce));
    let out = h.publish(publisher, retained("r/a", b"", QoS::AtMostOnce, 0));
    assert_eq!(payloads(&out.publishes(watcher)), [""]);
    assert!(late_subscriber(&mut h, "s3", "r/#").is_empty());
    assert!(h.loaded().retained.is_empty());
    assert_eq!(h.broker.stats().retained_messages, 0);
}

#[test]
fn retained_messages_are_sent_for_every_matching_topic() {
    let mut h = Harness::new();
    let publisher = h.connect_ok(v5("pub", true, None));
    h.publish(publisher, retained("r/a", b"a", QoS::AtLeastOnce, 1));
    h.publish(publisher, retained("r/b", b"b", QoS::AtLeastOnce, 2));
    h.publish(publisher, retained("other", b"o", QoS::AtLeastOnce, 3));
    h.publish(publisher, retained("$SYS/x", b"sys", QoS::AtLeastOnce, 4));
    let mut got = payloads(&late_subscriber(&mut h, "s1", "r/+"));
    got.sort();
    assert_eq!(got, ["a", "b"]);
    let mut got = payloads(&late_subscriber(&mut h, "s2", "#"));
    got.sort();
    assert_eq!(got, ["a", "b", "o"], "# does not match $ topics");
}

#[test]
fn retained_message_qos_is_capped_by_the_subscription() {
    let mut h = Harness::new();
    let publisher = h.connect_ok(v5("pub", true, None));
    h.publish(publisher, retained("r", b"m", QoS::ExactlyOnce, 1));
    let conn = h.connect_ok(v5("s", true, None));
    let out = h.subscribe(conn, subscribe(1, "r", QoS::AtLeastOnce));
    assert_eq!(out.publish(conn).qos, QoS::AtLeastOnce);
}

#[test]
fn retain_handling_0_1_2() {
    let mut h = Harness::new();
    let publisher = h.connect_ok(v5("pub", true, None));
    h.publish(publisher, retained("r", b"m", QoS::AtLeastOnce, 1));
    let conn = h.connect_ok(v5("s", true, None));

    // 0: on every SUBSCRIBE, also when the subscription exists.
    for _ in 0..2 {
        let out = h.subscribe(
            conn,
            subscribe_opts(
                1,
                "r",
                options(QoS::AtLeastOnce, RetainHandling::SendOnSubscribe, false),
                None,
            ),
        );
        assert_eq!(payloads(&out.publishes(conn)), ["m"]);
    }
    // 1: only if the subscription did not exist.
    let rh1 = options(
        QoS::AtLeastOnce,
        RetainHandling::SendIfNewSubscription,
        false,
    );
    let out = h.subscribe(conn, subscribe_opts(2, "r", rh1, None));
    assert!(out.publishes(conn).is_empty(), "r already existed");
    let out = h.subscribe(conn, subscribe_opts(3, "+", rh1, None));
    assert_eq!(payloads(&out.publishes(conn)), ["m"]);
    // 2: never.
    let rh2 = options(QoS::AtLeastOnce, RetainHandling::DoNotSend, false);
    let out = h.subscribe(conn, subscribe_opts(4, "#", rh2, None));
    assert!(out.publishes(conn).is_empty());
}

#[test]
fn retain_as_published_controls_the_flag_on_normal_delivery() {
    let mut h = Harness::new();
    let keep = h.connect_ok(v5("keep", true, None));
    h.subscribe(
        keep,
        subscribe_opts(
            1,
            "r",
            options(QoS::AtLeastOnce, RetainHandling::SendOnSubscribe, true),
            None,
        ),
    );
    let clear = h.connect_ok(v5("clear", true, None));
    h.subscribe(clear, subscribe(1, "r", QoS::AtLeastOnce));
    let v3_sub = h.connect_ok(v3("v3", true));
    h.subscribe(v3_sub, subscribe(1, "r", QoS::AtLeastOnce));

    let publisher = h.connect_ok(v5("pub", true, None));
    let out = h.publish(publisher, retained("r", b"m", QoS::AtLeastOnce, 1));
    assert!(out.publish(keep).retain);
    assert!(!out.publish(clear).retain);
    assert!(!out.publish(v3_sub).retain);
    let out = h.publish(publisher, publish("r", b"plain", QoS::AtLeastOnce, 2));
    assert!(!out.publish(keep).retain);
}

#[test]
fn retained_messages_are_not_sent_for_shared_subscriptions() {
    let mut h = Harness::new();
    let publisher = h.connect_ok(v5("pub", true, None));
    h.publish(publisher, retained("jobs", b"m", QoS::AtLeastOnce, 1));
    let worker = h.connect_ok(v5("worker", true, None));
    let out = h.subscribe(worker, subscribe(1, "$share/g/jobs", QoS::AtLeastOnce));
    assert!(out.publishes(worker).is_empty());
}

#[test]
fn retained_messages_survive_the_end_of_the_publishing_session() {
    let mut h = Harness::new();
    let publisher = h.connect_ok(v3("pub", true));
    h.publish(publisher, retained("r", b"m", QoS::AtLeastOnce, 1));
    h.disconnect_normal(publisher);
    assert_eq!(h.broker.stats().sessions, 0);
    assert_eq!(payloads(&late_subscriber(&mut h, "s", "r")), ["m"]);
}

#[test]
fn retained_messages_survive_a_broker_restart() {
    let mut h = Harness::new();
    let publisher = h.connect_ok(v5("pub", true, None));
    h.publish(publisher, retained("r/a", b"a", QoS::AtLeastOnce, 1));
    h.publish(publisher, retained("r/b", b"b", QoS::AtLeastOnce, 2));
    h.publish(publisher, retained("r/b", b"", QoS::AtLeastOnce, 3));
    h.restart_after(5);
    assert_eq!(h.broker.stats().retained_messages, 1);
    let got = late_subscriber(&mut h, "s", "r/#");
    assert_eq!(payloads(&got), ["a"]);
    assert!(got[0].retain);
}

#[test]
fn an_expired_retained_message_is_not_sent() {
    let mut h = Harness::new();
    let publisher = h.connect_ok(v5("pub", true, None));
    let mut message = retained("r", b"m", QoS::AtLeastOnce, 1);
    message.properties.message_expiry_interval = Some(10);
    h.publish(publisher, message);
    h.tick_after(4);
    let got = late_subscriber(&mut h, "s1", "r");
    assert_eq!(got[0].properties.message_expiry_interval, Some(6));
    h.tick_after(6);
    assert!(late_subscriber(&mut h, "s2", "r").is_empty());
}

#[test]
fn an_unacked_retained_message_is_resent_with_retain_on_resume() {
    let mut h = Harness::new();
    let publisher = h.connect_ok(v5("pub", true, None));
    h.publish(publisher, retained("r", b"m", QoS::AtLeastOnce, 1));
    let sub = h.connect_ok(v5("sub", false, Some(60)));
    let out = h.subscribe(sub, subscribe(1, "r", QoS::AtLeastOnce));
    assert_eq!(payloads(&out.publishes(sub)), ["m"]);
    h.lose(sub);
    let (sub, out) = h.connect(v5("sub", false, Some(60)));
    // The un-acked retained message is re-sent with DUP, still with RETAIN = 1.
    let resent = out.publish(sub);
    assert!(resent.dup);
    assert!(resent.retain);
}

#[test]
fn retained_messages_carry_the_subscription_identifier() {
    let mut h = Harness::new();
    let publisher = h.connect_ok(v5("pub", true, None));
    h.publish(publisher, retained("r", b"m", QoS::AtLeastOnce, 1));
    let conn = h.connect_ok(v5("s", true, None));
    let out = h.subscribe(
        conn,
        subscribe_opts(1, "r", SubscriptionOptions::new(QoS::AtLeastOnce), Some(77)),
    );
    assert_eq!(
        out.publish(conn).properties.subscription_identifiers,
        [sub_id(77)]
    );
}

#[test]
fn retained_messages_follow_the_suback() {
    let mut h = Harness::new();
    let publisher = h.connect_ok(v5("pub", true, None));
    h.publish(publisher, retained("r", b"m", QoS::AtLeastOnce, 1));
    let conn = h.connect_ok(v5("s", true, None));
    let out = h.subscribe(conn, subscribe(1, "r", QoS::AtLeastOnce));
    let packets = out.to(conn);
    assert!(
        matches!(packets[0], berth_codec::Packet::SubAck(_)),
        "{packets:?}"
    );
    assert!(
        matches!(packets[1], berth_codec::Packet::Publish(_)),
        "{packets:?}"
    );
}

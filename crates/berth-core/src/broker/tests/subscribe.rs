//! Subscriptions: matching (wildcards, `$` topics), No Local, Subscription Identifiers,
//! overlapping subscriptions, shared subscriptions, UNSUBSCRIBE, denied filters, persistence.

use berth_codec::{
    Packet, ProtocolVersion, QoS, SubAck, SubAckReasonCode, UnsubAckReasonCode, encode,
};
use bytes::BytesMut;

use super::*;
use crate::store::SubscriptionRecord;

fn suback(out: &Out, conn: ConnId) -> SubAck {
    out.to(conn)
        .into_iter()
        .find_map(|packet| match packet {
            Packet::SubAck(suback) => Some(suback),
            _ => None,
        })
        .expect("SUBACK")
}

/// Which of `topics` reach a subscriber of `filter_text`.
fn matching(filter_text: &str, topics: &[&str]) -> Vec<String> {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", true, None));
    h.subscribe(sub, subscribe(1, filter_text, QoS::AtMostOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    let mut reached = Vec::new();
    for name in topics {
        let out = h.publish(publisher, publish(name, b"", QoS::AtMostOnce, 0));
        reached.extend(
            out.publishes(sub)
                .into_iter()
                .map(|p| p.topic.as_str().to_owned()),
        );
    }
    reached
}

#[test]
fn wildcards_match_by_level() {
    let topics = ["a", "a/b", "a/b/c", "a/c", "b/b", "a/", "/a"];
    assert_eq!(matching("a/b", &topics), ["a/b"]);
    assert_eq!(matching("a/+", &topics), ["a/b", "a/c", "a/"]);
    assert_eq!(matching("a/#", &topics), ["a", "a/b", "a/b/c", "a/c", "a/"]);
    assert_eq!(matching("+/b", &topics), ["a/b", "b/b"]);
    assert_eq!(matching("+/+", &topics), ["a/b", "a/c", "b/b", "a/", "/a"]);
    assert_eq!(matching("#", &topics), topics);
    assert_eq!(matching("+", &topics), ["a"]);
}

#[test]
fn wildcards_at_the_first_level_do_not_match_dollar_topics() {
    let topics = ["$SYS/load", "$SYS", "sys/load"];
    assert_eq!(matching("#", &topics), ["sys/load"]);
    assert_eq!(matching("+/load", &topics), ["sys/load"]);
    assert_eq!(matching("$SYS/#", &topics), ["$SYS/load", "$SYS"]);
    assert_eq!(matching("$SYS/+", &topics), ["$SYS/load"]);
}

#[test]
fn no_local_keeps_a_clients_own_messages_from_it() {
    let mut h = Harness::new();
    let a = h.connect_ok(v5("a", true, None));
    h.subscribe(
        a,
        subscribe_opts(
            1,
            "chat",
            SubscriptionOptions {
                no_local: true,
                ..SubscriptionOptions::new(QoS::AtLeastOnce)
            },
            None,
        ),
    );
    let b = h.connect_ok(v5("b", true, None));
    h.subscribe(b, subscribe(1, "chat", QoS::AtLeastOnce));

    let out = h.publish(a, publish("chat", b"from a", QoS::AtLeastOnce, 1));
    assert!(out.publishes(a).is_empty());
    assert_eq!(payloads(&out.publishes(b)), ["from a"]);
    // Without No Local a client gets its own messages.
    let out = h.publish(b, publish("chat", b"from b", QoS::AtLeastOnce, 1));
    assert_eq!(payloads(&out.publishes(a)), ["from b"]);
    assert_eq!(payloads(&out.publishes(b)), ["from b"]);
}

#[test]
fn subscription_identifier_is_sent_with_matching_messages() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", true, None));
    h.subscribe(
        sub,
        subscribe_opts(
            1,
            "a/+",
            SubscriptionOptions::new(QoS::AtLeastOnce),
            Some(42),
        ),
    );
    h.subscribe(sub, subscribe(2, "b", QoS::AtLeastOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    let out = h.publish(publisher, publish("a/x", b"m", QoS::AtLeastOnce, 1));
    assert_eq!(
        out.publish(sub).properties.subscription_identifiers,
        [sub_id(42)]
    );
    let out = h.publish(publisher, publish("b", b"m", QoS::AtLeastOnce, 2));
    assert!(
        out.publish(sub)
            .properties
            .subscription_identifiers
            .is_empty()
    );
}

#[test]
fn overlapping_subscriptions_deliver_once_at_max_qos_with_all_identifiers() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", true, None));
    h.subscribe(
        sub,
        subscribe_opts(1, "s/#", SubscriptionOptions::new(QoS::AtMostOnce), Some(1)),
    );
    h.subscribe(
        sub,
        subscribe_opts(
            2,
            "s/+/t",
            SubscriptionOptions::new(QoS::ExactlyOnce),
            Some(2),
        ),
    );
    h.subscribe(sub, subscribe(3, "s/x/t", QoS::AtLeastOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    let out = h.publish(publisher, publish("s/x/t", b"m", QoS::ExactlyOnce, 1));
    let delivered = out.publish(sub);
    assert_eq!(delivered.qos, QoS::ExactlyOnce);
    let mut ids: Vec<u32> = delivered
        .properties
        .subscription_identifiers
        .iter()
        .map(|id| id.get())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2]);
    // Only s/# matches here.
    let out = h.publish(publisher, publish("s/y", b"m", QoS::ExactlyOnce, 2));
    let delivered = out.publish(sub);
    assert_eq!(delivered.qos, QoS::AtMostOnce);
    assert_eq!(delivered.properties.subscription_identifiers, [sub_id(1)]);
}

#[test]
fn shared_subscription_delivers_each_message_to_one_member() {
    let mut h = Harness::new();
    let w1 = h.connect_ok(v5("w1", true, None));
    let w2 = h.connect_ok(v5("w2", true, None));
    h.subscribe(w1, subscribe(1, "$share/g/jobs/+", QoS::AtLeastOnce));
    h.subscribe(w2, subscribe(1, "$share/g/jobs/+", QoS::AtLeastOnce));
    let plain = h.connect_ok(v5("plain", true, None));
    h.subscribe(plain, subscribe(1, "jobs/+", QoS::AtLeastOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    let (mut n1, mut n2) = (0, 0);
    for n in 1..=6u16 {
        let out = h.publish(publisher, publish("jobs/x", b"job", QoS::AtLeastOnce, n));
        let (c1, c2) = (out.publishes(w1).len(), out.publishes(w2).len());
        assert_eq!(c1 + c2, 1, "exactly one member per message");
        assert_eq!(
            out.publishes(plain).len(),
            1,
            "non-shared subscribers all get it"
        );
        n1 += c1;
        n2 += c2;
        // Keep the windows open.
        for (conn, p) in out
            .publishes(w1)
            .iter()
            .map(|p| (w1, p))
            .chain(out.publishes(w2).iter().map(|p| (w2, p)))
        {
            h.puback(conn, p.packet_id.unwrap());
        }
    }
    assert_eq!((n1, n2), (3, 3), "round robin");
}

#[test]
fn shared_subscription_prefers_connected_members() {
    let mut h = Harness::new();
    let w1 = h.connect_ok(v5("w1", false, Some(600)));
    let w2 = h.connect_ok(v5("w2", true, None));
    h.subscribe(w1, subscribe(1, "$share/g/jobs", QoS::AtLeastOnce));
    h.subscribe(w2, subscribe(1, "$share/g/jobs", QoS::AtLeastOnce));
    h.lose(w1);
    let publisher = h.connect_ok(v5("pub", true, None));
    for n in 1..=4u16 {
        let out = h.publish(publisher, publish("jobs", b"job", QoS::AtLeastOnce, n));
        assert_eq!(out.publishes(w2).len(), 1);
    }
    assert!(h.stored_queue("w1").is_empty());
}

#[test]
fn unsubscribe_reports_per_filter_and_is_persisted() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", false, Some(60)));
    h.subscribe(sub, subscribe(1, "a", QoS::AtLeastOnce));
    h.subscribe(sub, subscribe(2, "b/#", QoS::AtLeastOnce));
    assert_eq!(h.stored_session("sub").unwrap().subscriptions.len(), 2);

    let out = h.packet(sub, Packet::Unsubscribe(unsubscribe(3, &["a", "nope"])));
    let Packet::UnsubAck(unsuback) = out.only(sub) else {
        panic!("{:?}", out.actions)
    };
    assert_eq!(unsuback.packet_id, pid(3));
    assert_eq!(
        unsuback.reason_codes,
        [
            UnsubAckReasonCode::Success,
            UnsubAckReasonCode::NoSubscriptionExisted
        ]
    );
    let stored: Vec<String> = h
        .stored_session("sub")
        .unwrap()
        .subscriptions
        .into_iter()
        .map(|(f, _)| f.as_str().to_owned())
        .collect();
    assert_eq!(stored, ["b/#"]);

    let publisher = h.connect_ok(v5("pub", true, None));
    let out = h.publish(publisher, publish("a", b"m", QoS::AtLeastOnce, 1));
    assert!(out.publishes(sub).is_empty());
    let out = h.publish(publisher, publish("b/c", b"m", QoS::AtLeastOnce, 2));
    assert_eq!(out.publishes(sub).len(), 1);

    // After a restart the unsubscribed filter stays gone.
    h.restart_after(1);
    let (sub, _) = h.connect(v5("sub", false, Some(60)));
    let publisher = h.connect_ok(v5("pub", true, None));
    let out = h.publish(publisher, publish("a", b"m", QoS::AtLeastOnce, 1));
    assert!(out.publishes(sub).is_empty());
}

#[test]
fn subscriptions_are_persisted_with_options_and_identifier() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", false, Some(60)));
    let options = SubscriptionOptions {
        no_local: true,
        retain_as_published: true,
        retain_handling: berth_codec::RetainHandling::DoNotSend,
        qos: QoS::ExactlyOnce,
    };
    h.subscribe(sub, subscribe_opts(1, "a/+", options, Some(9)));
    let stored = h.stored_session("sub").unwrap();
    assert_eq!(
        stored.subscriptions,
        [(
            filter("a/+"),
            SubscriptionRecord {
                options,
                subscription_id: Some(sub_id(9)),
            }
        )]
    );
}

#[test]
fn resubscribing_replaces_the_subscription() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", true, None));
    h.subscribe(sub, subscribe(1, "a", QoS::ExactlyOnce));
    h.subscribe(sub, subscribe(2, "a", QoS::AtMostOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    let out = h.publish(publisher, publish("a", b"m", QoS::ExactlyOnce, 1));
    let delivered = out.publish(sub);
    assert_eq!(delivered.qos, QoS::AtMostOnce);
}

#[test]
fn suback_grants_the_requested_qos_per_filter() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", true, None));
    let mut request = subscribe(7, "a", QoS::AtMostOnce);
    for (text, qos) in [("b", QoS::AtLeastOnce), ("c", QoS::ExactlyOnce)] {
        request.subscriptions.push(Subscription {
            filter: filter(text),
            options: SubscriptionOptions::new(qos),
        });
    }
    let out = h.subscribe(sub, request);
    let ack = suback(&out, sub);
    assert_eq!(ack.packet_id, pid(7));
    assert_eq!(
        ack.reason_codes,
        [
            SubAckReasonCode::GrantedQoS0,
            SubAckReasonCode::GrantedQoS1,
            SubAckReasonCode::GrantedQoS2
        ]
    );
}

#[test]
fn denied_filters_are_refused_with_not_authorized() {
    let mut config = BrokerConfig::default();
    config.denied_filters = vec![filter("secret/#"), filter("admin/+/keys")];
    let mut h = Harness::with_config(config);
    let sub = h.connect_ok(v5("sub", false, Some(60)));
    let mut request = subscribe(1, "secret/x", QoS::AtLeastOnce);
    for text in [
        "public/x",
        "admin/a/keys",
        "secret/#",
        "#",
        "admin/+/keys",
        "admin/a/other",
    ] {
        request.subscriptions.push(Subscription {
            filter: filter(text),
            options: SubscriptionOptions::new(QoS::AtLeastOnce),
        });
    }
    let out = h.packet(sub, Packet::Subscribe(request));
    let ack = suback(&out, sub);
    use SubAckReasonCode::{GrantedQoS1, NotAuthorized};
    assert_eq!(
        ack.reason_codes,
        [
            NotAuthorized, // secret/x
            GrantedQoS1,   // public/x
            NotAuthorized, // admin/a/keys
            NotAuthorized, // secret/#
            GrantedQoS1,   // # is wider than the denied filters; see `covers`
            NotAuthorized, // admin/+/keys
            GrantedQoS1,   // admin/a/other
        ]
    );
    let stored: Vec<String> = h
        .stored_session("sub")
        .unwrap()
        .subscriptions
        .into_iter()
        .map(|(f, _)| f.as_str().to_owned())
        .collect();
    assert_eq!(stored, ["#", "admin/a/other", "public/x"]);
    // A refused filter delivers nothing, and neither does "#" for the denied topics: delivery
    // checks them too.
    let publisher = h.connect_ok(v5("pub", true, None));
    let out = h.publish(publisher, publish("secret/x", b"m", QoS::AtLeastOnce, 1));
    assert!(out.publishes(sub).is_empty());
    let out = h.publish(publisher, publish("public/x", b"m", QoS::AtLeastOnce, 2));
    // Through "public/x" and "#", once (overlapping subscriptions deliver once).
    assert_eq!(out.publishes(sub).len(), 1);
}

#[test]
fn denied_filter_is_0x80_for_a_v3_client() {
    let mut config = BrokerConfig::default();
    config.denied_filters = vec![filter("secret/#")];
    let mut h = Harness::with_config(config);
    let sub = h.connect_ok(v3("sub", true));
    let mut request = subscribe(1, "secret/x", QoS::AtLeastOnce);
    request.subscriptions.push(Subscription {
        filter: filter("ok"),
        options: SubscriptionOptions::new(QoS::ExactlyOnce),
    });
    let out = h.packet(sub, Packet::Subscribe(request));
    let ack = suback(&out, sub);
    let mut wire = BytesMut::new();
    encode(&Packet::SubAck(ack), ProtocolVersion::V3_1_1, &mut wire).unwrap();
    assert_eq!(&wire[..], [0x90, 0x04, 0x00, 0x01, 0x80, 0x02]);
}

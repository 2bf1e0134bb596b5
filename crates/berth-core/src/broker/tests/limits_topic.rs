//! Per-client limits decided in core: `limits.max_subscriptions` (SUBACK 0x97; replacing a
//! held filter does not count), `limits.max_topic_length` / `max_topic_levels` on SUBSCRIBE
//! (0x8F), PUBLISH (PUBACK/PUBREC 0x90; 3.1.1 acknowledged and dropped) and wills (CONNACK
//! 0x90; 3.1.1 return code 5), for subscriptions imported at a takeover too, each refusal
//! counted by its limit.

use berth_codec::{ConnectReasonCode, PubAckReasonCode, QoS, SubAck, SubAckReasonCode, encode};
use bytes::BytesMut;

use super::*;
use crate::cluster::SessionExport;
use crate::ids::{Epoch, NodeId};
use crate::stats::LimitReason;

fn limited(configure: impl FnOnce(&mut crate::config::ProtocolLimits)) -> Harness {
    let mut config = BrokerConfig::default();
    configure(&mut config.limits);
    Harness::with_config(config)
}

/// One SUBSCRIBE of every filter in `filters`, QoS 1.
fn subscribe_all(id: u16, filters: &[&str]) -> Packet {
    let mut request = subscribe(id, filters[0], QoS::AtLeastOnce);
    for text in &filters[1..] {
        request.subscriptions.push(Subscription {
            filter: filter(text),
            options: SubscriptionOptions::new(QoS::AtLeastOnce),
        });
    }
    Packet::Subscribe(request)
}

fn suback(out: &Out, conn: ConnId) -> SubAck {
    out.to(conn)
        .into_iter()
        .find_map(|packet| match packet {
            Packet::SubAck(suback) => Some(suback),
            _ => None,
        })
        .expect("SUBACK")
}

fn ack_reason(out: &Out, conn: ConnId) -> PubAckReasonCode {
    match out.only(conn) {
        Packet::PubAck(ack) => ack.reason,
        Packet::PubRec(rec) => rec.reason,
        other => panic!("expected PUBACK or PUBREC, got {other:?}"),
    }
}

fn stored_filters(h: &mut Harness, id: &str) -> Vec<String> {
    h.stored_session(id)
        .unwrap()
        .subscriptions
        .into_iter()
        .map(|(f, _)| f.as_str().to_owned())
        .collect()
}

fn refusals(h: &mut Harness, reason: LimitReason) -> u64 {
    h.broker.stats().limit_refusals_total(reason)
}

#[test]
fn a_filter_beyond_max_subscriptions_is_0x97_and_replacing_one_does_not_count() {
    let mut h = limited(|limits| limits.max_subscriptions = crate::Limit::AtMost(2));
    let sub = h.connect_ok(v5("sub", false, Some(600)));
    h.subscribe(sub, subscribe(1, "a", QoS::AtLeastOnce));

    // "a" is held: a replacement. "b" takes the second place; "c" would be a third; "b" again
    // in the same packet replaces the "b" just granted.
    let out = h.packet(sub, subscribe_all(2, &["a", "b", "c", "b"]));
    use SubAckReasonCode::{GrantedQoS1, QuotaExceeded};
    assert_eq!(
        suback(&out, sub).reason_codes,
        [GrantedQoS1, GrantedQoS1, QuotaExceeded, GrantedQoS1]
    );
    assert_eq!(stored_filters(&mut h, "sub"), ["a", "b"]);
    assert_eq!(refusals(&mut h, LimitReason::MaxSubscriptions), 1);

    // The count is the session's, across connections; a place freed by UNSUBSCRIBE is free.
    h.disconnect_normal(sub);
    let (sub, out) = h.connect(v5("sub", false, Some(600)));
    assert!(out.connack(sub).session_present);
    let out = h.packet(sub, subscribe_all(3, &["c"]));
    assert_eq!(suback(&out, sub).reason_codes, [QuotaExceeded]);
    h.packet(sub, Packet::Unsubscribe(unsubscribe(4, &["a"])));
    let out = h.packet(sub, subscribe_all(5, &["c"]));
    assert_eq!(suback(&out, sub).reason_codes, [GrantedQoS1]);
    assert_eq!(stored_filters(&mut h, "sub"), ["b", "c"]);
    assert_eq!(refusals(&mut h, LimitReason::MaxSubscriptions), 2);
}

#[test]
fn quota_exceeded_is_0x80_for_a_3_1_1_client() {
    let mut h = limited(|limits| limits.max_subscriptions = crate::Limit::AtMost(1));
    let sub = h.connect_ok(v3("sub", true));
    let out = h.packet(sub, subscribe_all(1, &["a", "b"]));
    let mut wire = BytesMut::new();
    encode(
        &Packet::SubAck(suback(&out, sub)),
        ProtocolVersion::V3_1_1,
        &mut wire,
    )
    .unwrap();
    assert_eq!(&wire[..], [0x90, 0x04, 0x00, 0x01, 0x01, 0x80]);
}

#[test]
fn a_filter_over_the_topic_limits_is_0x8f_and_takes_no_place() {
    let mut h = limited(|limits| {
        limits.max_topic_length = 10;
        limits.max_topic_levels = crate::Limit::AtMost(3);
        limits.max_subscriptions = crate::Limit::AtMost(2);
    });
    let sub = h.connect_ok(v5("sub", true, None));
    let out = h.packet(
        sub,
        subscribe_all(
            1,
            &[
                "a/b/c",
                "a/b/c/d",
                "0123456789a",
                // The share prefix is not counted: "a/+" is what is matched.
                "$share/a-long-group-name/a/+",
                "a/b/c/#",
            ],
        ),
    );
    use SubAckReasonCode::{GrantedQoS1, TopicFilterInvalid};
    assert_eq!(
        suback(&out, sub).reason_codes,
        [
            GrantedQoS1,
            TopicFilterInvalid, // four levels
            TopicFilterInvalid, // eleven bytes
            GrantedQoS1,        // the second place: the refused ones took none
            TopicFilterInvalid, // `#` is a level too
        ]
    );
    assert_eq!(refusals(&mut h, LimitReason::MaxTopicLevels), 2);
    assert_eq!(refusals(&mut h, LimitReason::MaxTopicLength), 1);
    assert_eq!(refusals(&mut h, LimitReason::MaxSubscriptions), 0);
}

#[test]
fn the_default_allows_128_levels() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", true, None));
    let deep = ["l"; 128].join("/");
    let deeper = ["l"; 129].join("/");
    let out = h.packet(sub, subscribe_all(1, &[deep.as_str(), deeper.as_str()]));
    assert_eq!(
        suback(&out, sub).reason_codes,
        [
            SubAckReasonCode::GrantedQoS1,
            SubAckReasonCode::TopicFilterInvalid
        ]
    );
    let publisher = h.connect_ok(v5("pub", true, None));
    let out = h.publish(publisher, publish(&deeper, b"m", QoS::AtLeastOnce, 2));
    assert_eq!(
        ack_reason(&out, publisher),
        PubAckReasonCode::TopicNameInvalid
    );
    let out = h.publish(publisher, publish(&deep, b"m", QoS::AtLeastOnce, 3));
    assert_eq!(ack_reason(&out, publisher), PubAckReasonCode::Success);
    assert_eq!(payloads(&out.publishes(sub)), ["m"]);
}

#[test]
fn a_publish_over_the_topic_limits_is_0x90_in_mqtt5_and_goes_nowhere() {
    let mut h = limited(|limits| limits.max_topic_length = 8);
    let watcher = h.connect_ok(v5("watcher", true, None));
    h.subscribe(watcher, subscribe(1, "#", QoS::AtLeastOnce));
    let publisher = h.connect_ok(v5("pub", true, None));

    let out = h.publish(publisher, publish("too/long/", b"1", QoS::AtLeastOnce, 1));
    assert_eq!(
        ack_reason(&out, publisher),
        PubAckReasonCode::TopicNameInvalid
    );
    assert!(out.publishes(watcher).is_empty());
    let out = h.publish(publisher, publish("too/long/", b"2", QoS::ExactlyOnce, 2));
    assert_eq!(
        ack_reason(&out, publisher),
        PubAckReasonCode::TopicNameInvalid
    );
    assert!(out.publishes(watcher).is_empty());
    // QoS 0 has no acknowledgement: dropped, counted.
    let out = h.publish(publisher, publish("too/long/", b"3", QoS::AtMostOnce, 0));
    assert!(out.silent(publisher));
    assert!(out.publishes(watcher).is_empty());
    // Nor is a refused retained message kept.
    h.publish(publisher, retained("too/long/", b"4", QoS::AtLeastOnce, 4));
    let late = h.connect_ok(v5("late", true, None));
    let out = h.subscribe(late, subscribe(1, "#", QoS::AtLeastOnce));
    assert!(out.publishes(late).is_empty());
    assert_eq!(refusals(&mut h, LimitReason::MaxTopicLength), 4);
    // Within the limit, as before.
    let out = h.publish(publisher, publish("ok/8byte", b"5", QoS::AtLeastOnce, 5));
    assert_eq!(ack_reason(&out, publisher), PubAckReasonCode::Success);
    assert_eq!(payloads(&out.publishes(watcher)), ["5"]);
}

#[test]
fn a_3_1_1_publish_over_the_topic_limits_is_acknowledged_and_dropped() {
    let mut h = limited(|limits| limits.max_topic_levels = crate::Limit::AtMost(2));
    let watcher = h.connect_ok(v5("watcher", true, None));
    h.subscribe(watcher, subscribe(1, "#", QoS::AtLeastOnce));
    let publisher = h.connect_ok(v3("pub", true));
    let out = h.publish(publisher, publish("a/b/c", b"1", QoS::AtLeastOnce, 1));
    assert_eq!(ack_reason(&out, publisher), PubAckReasonCode::Success);
    assert!(out.publishes(watcher).is_empty());
    // QoS 2: PUBREC as usual; the exchange ends at PUBCOMP, nothing delivered.
    let out = h.publish(publisher, publish("a/b/c", b"2", QoS::ExactlyOnce, 2));
    assert!(matches!(out.only(publisher), Packet::PubRec(_)));
    assert!(out.publishes(watcher).is_empty());
    let out = h.pubrel(publisher, pid(2));
    assert!(matches!(out.only(publisher), Packet::PubComp(_)));
    assert_eq!(refusals(&mut h, LimitReason::MaxTopicLevels), 2);
}

#[test]
fn a_will_over_the_topic_limits_refuses_the_connect_0x90_or_5() {
    let mut h = limited(|limits| limits.max_topic_levels = crate::Limit::AtMost(2));
    let connect = with_will(v5("d1", true, None), will("a/b/c", b"x", None));
    let (conn, out) = h.connect(connect);
    assert_eq!(
        out.connack(conn).reason,
        ConnectReasonCode::TopicNameInvalid
    );
    assert!(out.closed(conn));

    let connect = with_will(v3("d3", true), will("a/b/c", b"x", None));
    let (conn, out) = h.connect(connect);
    let connack = out.connack(conn);
    assert_eq!(connack.reason, ConnectReasonCode::NotAuthorized);
    assert_eq!(connack.reason.v3_return_code(), 5);
    assert!(out.closed(conn));
    assert_eq!(refusals(&mut h, LimitReason::MaxTopicLevels), 2);
    assert!(h.stored_session("d1").is_none() && h.stored_session("d3").is_none());

    let connect = with_will(v5("d1", true, None), will("a/b", b"x", None));
    let (conn, out) = h.connect(connect);
    assert_eq!(out.connack(conn).reason, ConnectReasonCode::Success);
}

/// A session taken over from another node (or rebuilt from the registry) keeps only the
/// subscriptions this node's topic limits allow, as `acl.denied_filters`; the quota is not
/// applied: a session keeps what it was granted.
#[test]
fn an_imported_session_keeps_only_subscriptions_within_the_topic_limits() {
    let mut h = limited(|limits| {
        limits.max_topic_levels = crate::Limit::AtMost(2);
        limits.max_subscriptions = crate::Limit::AtMost(1);
    });
    h.broker.join_cluster(NodeId(1));
    h.event(super::stranded::claim(1, 2));
    h.event(Event::ImportBegin {
        client: client("x"),
    });
    let record = super::stranded::record;
    let export = SessionExport {
        record: crate::store::SessionRecord {
            epoch: Epoch(2),
            protocol: ProtocolVersion::V3_1_1,
            expiry: crate::store::SessionExpiry::Never,
            expires_at: None,
            will: None,
            will_due_at: None,
            qos2_state_elsewhere: false,
            incoming_qos2_elsewhere: false,
            qos2_doubt: Default::default(),
            landed: Epoch(2),
        },
        subscriptions: vec![
            (filter("t"), record()),
            (filter("u/v"), record()),
            (filter("deep/er/than"), record()),
        ],
        inflight: Vec::new(),
        incoming_qos2: Vec::new(),
        queued: 0,
        seen: Vec::new(),
        qos2_retry: Vec::new(),
        served: None,
    };
    h.event(Event::ImportState {
        client: client("x"),
        export: Box::new(export),
    });
    h.event(Event::ImportDone {
        client: client("x"),
    });
    let (conn, out) = h.connect_as(v3("x", false), 2);
    assert!(out.connack(conn).session_present);
    assert_eq!(stored_filters(&mut h, "x"), ["t", "u/v"]);
    // Two held where one is the limit now: a new filter is refused, a held one replaced.
    let out = h.packet(conn, subscribe_all(1, &["w", "t"]));
    assert_eq!(
        suback(&out, conn).reason_codes,
        [
            SubAckReasonCode::QuotaExceeded,
            SubAckReasonCode::GrantedQoS1
        ]
    );
}

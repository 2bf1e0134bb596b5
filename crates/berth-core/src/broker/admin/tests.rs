//! An operator's publish and subscription changes (`Broker::operator_publish`,
//! `Broker::change_subscription`): routed and stored as a client's PUBLISH and SUBSCRIBE are,
//! acknowledged to the operator's own connection, refused by the rules a client's would be.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use berth_codec::{Packet, PubAckReasonCode, QoS, SubscriptionOptions};
use bytes::Bytes;

use super::{
    AdminError, OperatorPublish, OperatorPublished, PublishRefusal, SubscriptionAnswer,
    SubscriptionChange, is_operator_conn, operator_conn, plan_subscription,
};
use crate::broker::tests::{Harness, Out, client, filter, payloads, subscribe, topic, v5};
use crate::config::{BrokerConfig, Limit, SubscribeRefusal};
use crate::ids::{ConnId, Epoch};
use crate::registry::{Command, Subscriptions};
use crate::stats::LimitReason;

fn message(topic_name: &str, payload: &'static [u8], qos: QoS, retain: bool) -> OperatorPublish {
    OperatorPublish {
        topic: topic(topic_name),
        payload: Bytes::from_static(payload),
        qos,
        retain,
        properties: Default::default(),
    }
}

/// Publishes `request` as the server does (then the group's commit), on operator connection 1.
fn operate(
    h: &mut Harness,
    request: OperatorPublish,
) -> (Result<OperatorPublished, PublishRefusal>, Out) {
    let answer = h.broker.operator_publish(h.now, operator_conn(1), request);
    h.broker.commit_pending().unwrap();
    let out = Out {
        actions: h.broker.take_actions(),
    };
    (answer, out)
}

fn change(
    h: &mut Harness,
    id: &str,
    change: SubscriptionChange,
) -> Result<SubscriptionAnswer, AdminError> {
    let answer = h.broker.change_subscription(h.now, &client(id), change);
    h.broker.commit_pending().unwrap();
    h.broker.take_actions();
    answer
}

fn subscribe_to(filter_text: &str, qos: QoS) -> SubscriptionChange {
    SubscriptionChange::Subscribe {
        filter: filter(filter_text),
        options: SubscriptionOptions::new(qos),
    }
}

/// An offline persistent MQTT 5 session (`dev`), with no subscription.
fn offline_device(h: &mut Harness) {
    let dev = h.connect_ok(v5("dev", false, Some(600)));
    h.disconnect_normal(dev);
}

#[test]
fn operator_connections_are_apart_from_client_ones() {
    assert!(is_operator_conn(operator_conn(1)));
    assert!(is_operator_conn(operator_conn(u64::from(u32::MAX))));
    assert!(!is_operator_conn(ConnId(1)));
    assert!(!is_operator_conn(ConnId(u64::from(u32::MAX))));
}

#[test]
fn a_qos1_message_reaches_online_and_offline_subscribers_and_is_acknowledged() {
    let mut h = Harness::new();
    let online = h.connect_ok(v5("online", true, None));
    h.subscribe(online, subscribe(1, "cmd/#", QoS::AtLeastOnce));
    let offline = h.connect_ok(v5("dev", false, Some(600)));
    h.subscribe(offline, subscribe(1, "cmd/dev", QoS::AtLeastOnce));
    h.disconnect_normal(offline);

    let (answer, out) = operate(
        &mut h,
        message("cmd/dev", b"reboot", QoS::AtLeastOnce, false),
    );
    let published = answer.unwrap();
    assert_eq!(published.matched, 2);
    assert!(published.acknowledged);
    assert_eq!(payloads(&out.publishes(online)), ["reboot"]);
    assert_eq!(h.stored_queue("dev"), ["reboot"]);
    // The PUBACK goes to the operator's connection, with the same promise as a client's.
    match out.only(operator_conn(1)) {
        Packet::PubAck(ack) => assert_eq!(ack.reason, PubAckReasonCode::Success),
        other => panic!("expected a PUBACK, got {other:?}"),
    }
    let (dev, back) = h.connect(v5("dev", false, Some(600)));
    assert!(back.connack(dev).session_present);
    assert_eq!(
        payloads(&back.publishes(dev)),
        ["reboot"],
        "the session gets it when it reconnects"
    );
}

#[test]
fn qos0_is_not_acknowledged_and_no_match_is_said() {
    let mut h = Harness::new();
    let (answer, out) = operate(&mut h, message("nobody/here", b"x", QoS::AtMostOnce, false));
    let published = answer.unwrap();
    assert_eq!(published.matched, 0);
    assert!(!published.acknowledged);
    assert!(out.silent(operator_conn(1)));
    let (answer, out) = operate(
        &mut h,
        message("nobody/here", b"x", QoS::ExactlyOnce, false),
    );
    assert!(answer.unwrap().acknowledged);
    match out.only(operator_conn(1)) {
        Packet::PubRec(rec) => assert_eq!(rec.reason, PubAckReasonCode::NoMatchingSubscribers),
        other => panic!("expected a PUBREC, got {other:?}"),
    }
}

#[test]
fn a_retained_message_is_set_and_an_empty_one_clears_it() {
    let mut h = Harness::new();
    let (answer, _) = operate(&mut h, message("status/a", b"up", QoS::AtLeastOnce, true));
    answer.unwrap();
    assert_eq!(h.loaded().retained.len(), 1);
    let late = h.connect_ok(v5("late", true, None));
    let out = h.subscribe(late, subscribe(1, "status/#", QoS::AtLeastOnce));
    assert_eq!(payloads(&out.publishes(late)), ["up"]);

    let (answer, _) = operate(&mut h, message("status/a", b"", QoS::AtMostOnce, true));
    answer.unwrap();
    assert!(h.loaded().retained.is_empty());
    let later = h.connect_ok(v5("later", true, None));
    let out = h.subscribe(later, subscribe(1, "status/#", QoS::AtLeastOnce));
    assert!(out.publishes(later).is_empty());
}

#[test]
fn what_a_client_could_not_publish_the_operator_cannot_either() {
    let mut config = BrokerConfig::default();
    config.limits.max_topic_levels = Limit::AtMost(2);
    config.limits.max_packet_size = 64;
    let mut h = Harness::with_config(config);
    let (answer, out) = operate(&mut h, message("a/b/c", b"x", QoS::AtLeastOnce, true));
    assert_eq!(
        answer,
        Err(PublishRefusal::TopicLimit(LimitReason::MaxTopicLevels))
    );
    assert_eq!(
        h.broker
            .stats()
            .limit_refusals_total(LimitReason::MaxTopicLevels),
        1,
        "counted as a client's PUBLISH over the limit is"
    );
    assert!(out.actions.is_empty());
    assert!(h.loaded().retained.is_empty());
    let (answer, _) = operate(
        &mut h,
        message("a/b", &[b'x'; 100], QoS::AtLeastOnce, false),
    );
    assert!(matches!(
        answer,
        Err(PublishRefusal::TooLarge { limit: 64, .. })
    ));
    assert_eq!(answer.unwrap_err().field(), "payload");

    let mut utf8 = message("a", b"\xff", QoS::AtMostOnce, false);
    utf8.properties.payload_format_indicator = Some(berth_codec::PayloadFormat::Utf8);
    assert_eq!(operate(&mut h, utf8).0, Err(PublishRefusal::NotUtf8));
}

#[test]
fn a_subscription_added_offline_collects_messages_until_it_is_removed() {
    let mut h = Harness::new();
    offline_device(&mut h);
    let sender = h.connect_ok(v5("sender", true, None));

    let answer = change(&mut h, "dev", subscribe_to("cmd/dev", QoS::AtLeastOnce));
    assert_eq!(
        answer,
        Ok(SubscriptionAnswer::Subscribed { replaced: false })
    );
    // Stored with the session: it survives a restart.
    let stored = h.stored_session("dev").unwrap();
    assert_eq!(stored.subscriptions.len(), 1);
    h.publish(
        sender,
        crate::broker::tests::publish("cmd/dev", b"one", QoS::AtLeastOnce, 1),
    );
    assert_eq!(h.stored_queue("dev"), ["one"]);
    let again = change(&mut h, "dev", subscribe_to("cmd/dev", QoS::AtMostOnce));
    assert_eq!(again, Ok(SubscriptionAnswer::Subscribed { replaced: true }));

    let answer = change(
        &mut h,
        "dev",
        SubscriptionChange::Unsubscribe {
            filter: filter("cmd/dev"),
        },
    );
    assert_eq!(
        answer,
        Ok(SubscriptionAnswer::Unsubscribed { existed: true })
    );
    h.publish(
        sender,
        crate::broker::tests::publish("cmd/dev", b"two", QoS::AtLeastOnce, 2),
    );
    assert_eq!(h.stored_queue("dev"), ["one"]);
    assert!(h.stored_session("dev").unwrap().subscriptions.is_empty());
    let gone = change(
        &mut h,
        "dev",
        SubscriptionChange::Unsubscribe {
            filter: filter("cmd/dev"),
        },
    );
    assert_eq!(
        gone,
        Ok(SubscriptionAnswer::Unsubscribed { existed: false })
    );
}

#[test]
fn no_retained_message_follows_an_operators_subscription() {
    let mut h = Harness::new();
    let (answer, _) = operate(&mut h, message("status/a", b"up", QoS::AtLeastOnce, true));
    answer.unwrap();
    let dev = h.connect_ok(v5("dev", false, Some(600)));
    let answer = h.broker.change_subscription(
        h.now,
        &client("dev"),
        subscribe_to("status/#", QoS::AtLeastOnce),
    );
    assert_eq!(
        answer,
        Ok(SubscriptionAnswer::Subscribed { replaced: false })
    );
    h.broker.commit_pending().unwrap();
    let out = Out {
        actions: h.broker.take_actions(),
    };
    assert!(out.silent(dev), "no retained message, no SUBACK");
}

#[test]
fn an_operators_subscription_meets_the_limits_and_an_unknown_session_is_refused() {
    let mut config = BrokerConfig::default();
    config.limits.max_subscriptions = Limit::AtMost(1);
    config.denied_filters = vec![filter("secret/#")];
    let mut h = Harness::with_config(config.clone());
    offline_device(&mut h);
    assert_eq!(
        change(&mut h, "dev", subscribe_to("secret/x", QoS::AtMostOnce)),
        Ok(SubscriptionAnswer::Refused(SubscribeRefusal::NotAuthorized))
    );
    assert!(change(&mut h, "dev", subscribe_to("a", QoS::AtMostOnce)).is_ok());
    assert_eq!(
        change(&mut h, "dev", subscribe_to("b", QoS::AtMostOnce)),
        Ok(SubscriptionAnswer::Refused(SubscribeRefusal::Limit(
            LimitReason::MaxSubscriptions
        )))
    );
    // Replacing the one it holds takes no new place.
    assert_eq!(
        change(&mut h, "dev", subscribe_to("a", QoS::AtLeastOnce)),
        Ok(SubscriptionAnswer::Subscribed { replaced: true })
    );
    assert_eq!(
        change(&mut h, "nobody", subscribe_to("a", QoS::AtMostOnce)),
        Err(AdminError::NoSession)
    );

    // The registry's plan decides the same, from the registry's view of the session.
    let mut held = Subscriptions::new();
    let planned = plan_subscription(
        &config,
        &client("dev"),
        Epoch(3),
        &subscribe_to("a", QoS::AtMostOnce),
        &held,
    );
    assert!(matches!(
        planned,
        Ok(Command::Subscribe {
            epoch: Epoch(3),
            ..
        })
    ));
    held.insert(
        filter("a"),
        crate::store::SubscriptionRecord {
            options: SubscriptionOptions::new(QoS::AtMostOnce),
            subscription_id: None,
        },
    );
    let planned = plan_subscription(
        &config,
        &client("dev"),
        Epoch(3),
        &subscribe_to("b", QoS::AtMostOnce),
        &held,
    );
    assert_eq!(
        planned,
        Err(SubscribeRefusal::Limit(LimitReason::MaxSubscriptions))
    );
}

#[test]
fn a_retained_message_is_planned_for_the_registry_as_a_clients_is() {
    let config = BrokerConfig::default();
    let now = crate::time::UnixMillis(1_700_000_000_000);
    let set = message("status/a", b"up", QoS::AtLeastOnce, true);
    match set.plan_retained(&config, now) {
        Ok(Some(Command::SetRetained(retained))) => {
            assert_eq!(retained.topic, topic("status/a"));
            assert_eq!(&retained.payload[..], b"up");
        }
        other => panic!("expected SetRetained, got {other:?}"),
    }
    let clear = message("status/a", b"", QoS::AtMostOnce, true);
    assert_eq!(
        clear.plan_retained(&config, now),
        Ok(Some(Command::ClearRetained(topic("status/a"))))
    );
    let plain = message("status/a", b"up", QoS::AtLeastOnce, false);
    assert_eq!(plain.plan_retained(&config, now), Ok(None));
}

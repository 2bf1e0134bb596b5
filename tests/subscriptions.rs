//! Subscriptions: wildcards and the `$` rule, No Local, Subscription Identifiers, overlapping
//! subscriptions, shared subscriptions, UNSUBSCRIBE, and filters the configuration denies.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

use std::collections::BTreeSet;
use std::time::Duration;

use berth_codec::{
    ProtocolVersion, Publish, QoS, SubAckReasonCode, SubscriptionOptions, UnsubAckReasonCode,
};
use berth_core::BrokerConfig;
use berth_e2e::client::{TestClient, filter, message, options, text};
use berth_e2e::server::TestServer;

const QUIET: Duration = Duration::from_millis(300);

fn ids(publish: &Publish) -> BTreeSet<u32> {
    publish
        .properties
        .subscription_identifiers
        .iter()
        .map(|id| id.get())
        .collect()
}

#[tokio::test]
async fn wildcards_and_the_dollar_rule() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let topics = [
        "sport/tennis/player1",
        "sport",
        "sport/",
        "a/b",
        "/finance",
        "$internal/monitor",
        "$internal",
    ];
    // Filter → the topics it must match, by index into `topics`.
    let table: [(&str, &[usize]); 8] = [
        ("sport/tennis/+", &[0]),
        ("sport/#", &[0, 1, 2]),
        ("+/+", &[2, 3, 4]),
        ("#", &[0, 1, 2, 3, 4]),
        ("+/monitor", &[]),
        ("$internal/#", &[5, 6]),
        ("$internal/+", &[5]),
        ("+", &[1]),
    ];
    let mut subscribers = Vec::new();
    for (n, (filter_text, _)) in table.iter().enumerate() {
        let (mut sub, _) = TestClient::connect_v5(addr, &format!("wild-{n}"), true, None).await;
        sub.subscribe(filter_text, QoS::AtMostOnce).await;
        subscribers.push(sub);
    }
    let (mut publisher, _) = TestClient::connect_v5(addr, "wild-pub", true, None).await;
    for topic in topics {
        publisher
            .publish(topic, topic.as_bytes(), QoS::AtLeastOnce)
            .await;
    }
    for ((filter_text, expected), sub) in table.iter().zip(&mut subscribers) {
        let got: Vec<String> = sub.drain_publishes(QUIET).await.iter().map(text).collect();
        let want: Vec<&str> = expected.iter().map(|&i| topics[i]).collect();
        assert_eq!(got, want, "filter {filter_text}");
    }
    server.stop().await;
}

#[tokio::test]
async fn no_local_suppresses_only_the_subscribers_own_messages() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let no_local = SubscriptionOptions {
        no_local: true,
        ..options(QoS::AtLeastOnce)
    };
    let (mut alice, _) = TestClient::connect_v5(addr, "alice", true, None).await;
    alice.subscribe_with(&[("chat/room", no_local)], None).await;
    let (mut bob, _) = TestClient::connect_v5(addr, "bob", true, None).await;
    bob.subscribe("chat/room", QoS::AtLeastOnce).await;

    alice
        .publish("chat/room", b"from alice", QoS::AtLeastOnce)
        .await;
    assert_eq!(text(&bob.recv_publish_and_ack().await), "from alice");
    alice.expect_nothing(QUIET).await;
    bob.publish("chat/room", b"from bob", QoS::AtLeastOnce)
        .await;
    assert_eq!(text(&alice.recv_publish_and_ack().await), "from bob");
    assert_eq!(
        text(&bob.recv_publish_and_ack().await),
        "from bob",
        "bob did not ask for No Local"
    );
    server.stop().await;
}

#[tokio::test]
async fn subscription_identifiers_are_sent_with_matching_messages() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut sub, _) = TestClient::connect_v5(addr, "sid", true, None).await;
    sub.subscribe_with(&[("sid/a", options(QoS::AtLeastOnce))], Some(7))
        .await;
    sub.subscribe_with(&[("sid/+", options(QoS::AtLeastOnce))], Some(8))
        .await;
    let (mut publisher, _) = TestClient::connect_v5(addr, "sid-pub", true, None).await;

    publisher.publish("sid/a", b"both", QoS::AtLeastOnce).await;
    let got = sub.recv_publish_and_ack().await;
    assert_eq!(
        ids(&got),
        BTreeSet::from([7, 8]),
        "one PUBLISH with every matching identifier"
    );
    publisher.publish("sid/b", b"one", QoS::AtLeastOnce).await;
    assert_eq!(ids(&sub.recv_publish_and_ack().await), BTreeSet::from([8]));
    sub.expect_nothing(QUIET).await;

    // Subscribing again without an identifier removes it.
    sub.subscribe_with(&[("sid/+", options(QoS::AtLeastOnce))], None)
        .await;
    publisher.publish("sid/b", b"none", QoS::AtLeastOnce).await;
    assert!(
        sub.recv_publish_and_ack()
            .await
            .properties
            .subscription_identifiers
            .is_empty()
    );
    server.stop().await;
}

#[tokio::test]
async fn retained_messages_carry_the_new_subscriptions_identifier() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut publisher, _) = TestClient::connect_v5(addr, "sid-ret-pub", true, None).await;
    publisher
        .publish_with(Publish {
            retain: true,
            ..message("sidr/a", b"kept", QoS::AtLeastOnce)
        })
        .await;
    let (mut sub, _) = TestClient::connect_v5(addr, "sid-ret", true, None).await;
    sub.subscribe_with(&[("sidr/#", options(QoS::AtLeastOnce))], Some(42))
        .await;
    let got = sub.recv_publish_and_ack().await;
    assert!(got.retain);
    assert_eq!(ids(&got), BTreeSet::from([42]));
    server.stop().await;
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_once_at_the_highest_qos() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut sub, _) = TestClient::connect_v5(addr, "overlap", true, None).await;
    sub.subscribe_with(&[("ov/+", options(QoS::AtMostOnce))], Some(1))
        .await;
    sub.subscribe_with(&[("ov/#", options(QoS::ExactlyOnce))], Some(2))
        .await;
    sub.subscribe_with(&[("ov/x", options(QoS::AtLeastOnce))], None)
        .await;
    let (mut publisher, _) = TestClient::connect_v5(addr, "ov-pub", true, None).await;
    publisher.publish("ov/x", b"once", QoS::ExactlyOnce).await;
    let got = sub.recv_publish_and_ack().await;
    assert_eq!(got.qos, QoS::ExactlyOnce);
    assert_eq!(ids(&got), BTreeSet::from([1, 2]));
    sub.expect_nothing(QUIET).await;

    // 3.1.1 too: one copy at the highest granted QoS.
    let (mut v3, _) = TestClient::connect(addr, ProtocolVersion::V3_1_1, "overlap-311", true).await;
    v3.subscribe("ov/#", QoS::AtMostOnce).await;
    v3.subscribe("ov/x", QoS::AtLeastOnce).await;
    publisher.publish("ov/x", b"once", QoS::AtLeastOnce).await;
    assert_eq!(v3.recv_publish_and_ack().await.qos, QoS::AtLeastOnce);
    v3.expect_nothing(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn shared_subscription_delivers_each_message_to_exactly_one_member() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let mut members = Vec::new();
    for name in ["worker-1", "worker-2", "worker-3"] {
        let (mut member, _) = TestClient::connect_v5(addr, name, true, None).await;
        member
            .subscribe("$share/workers/jobs/#", QoS::AtLeastOnce)
            .await;
        members.push(member);
    }
    let (mut other_group, _) = TestClient::connect_v5(addr, "auditor", true, None).await;
    other_group
        .subscribe("$share/audit/jobs/#", QoS::AtLeastOnce)
        .await;
    let (mut plain, _) = TestClient::connect_v5(addr, "monitor", true, None).await;
    plain.subscribe("jobs/#", QoS::AtLeastOnce).await;

    let (mut publisher, _) = TestClient::connect_v5(addr, "jobs-pub", true, None).await;
    let sent: Vec<String> = (0..12).map(|n| format!("job-{n}")).collect();
    for job in &sent {
        publisher
            .publish("jobs/new", job.as_bytes(), QoS::AtLeastOnce)
            .await;
    }
    let mut seen = Vec::new();
    for member in &mut members {
        let got: Vec<String> = member
            .drain_publishes(QUIET)
            .await
            .iter()
            .map(text)
            .collect();
        assert!(!got.is_empty(), "every online member gets a share");
        seen.extend(got);
    }
    seen.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(
        seen, expected,
        "each message to exactly one member of the group"
    );
    let audited: Vec<String> = other_group
        .drain_publishes(QUIET)
        .await
        .iter()
        .map(text)
        .collect();
    assert_eq!(audited, sent, "another group gets its own copy");
    let monitored: Vec<String> = plain
        .drain_publishes(QUIET)
        .await
        .iter()
        .map(text)
        .collect();
    assert_eq!(monitored, sent, "a plain subscription gets everything");

    // A member that unsubscribes gets no more; the rest share everything.
    let unsuback = members[0].unsubscribe(&["$share/workers/jobs/#"]).await;
    assert_eq!(unsuback.reason_codes, [UnsubAckReasonCode::Success]);
    for job in &sent {
        publisher
            .publish("jobs/new", job.as_bytes(), QoS::AtLeastOnce)
            .await;
    }
    members[0].expect_nothing(QUIET).await;
    let mut rest: Vec<String> = Vec::new();
    for member in &mut members[1..] {
        rest.extend(member.drain_publishes(QUIET).await.iter().map(text));
    }
    rest.sort();
    assert_eq!(rest, expected);
    server.stop().await;
}

#[tokio::test]
async fn shared_subscription_prefers_online_members() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut away, _) = TestClient::connect_v5(addr, "member-away", false, Some(60)).await;
    away.subscribe("$share/g/work", QoS::AtLeastOnce).await;
    away.disconnect().await;
    let (mut here, _) = TestClient::connect_v5(addr, "member-here", true, None).await;
    here.subscribe("$share/g/work", QoS::AtLeastOnce).await;
    let (mut publisher, _) = TestClient::connect_v5(addr, "work-pub", true, None).await;
    for n in 0..4 {
        publisher
            .publish("work", format!("w{n}").as_bytes(), QoS::AtLeastOnce)
            .await;
    }
    let got: Vec<String> = here.drain_publishes(QUIET).await.iter().map(text).collect();
    assert_eq!(got, ["w0", "w1", "w2", "w3"], "all to the connected member");
    let (mut away, _) = TestClient::connect_v5(addr, "member-away", false, Some(60)).await;
    away.expect_nothing(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn shared_subscription_gets_no_retained_messages() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut publisher, _) = TestClient::connect_v5(addr, "ret-pub", true, None).await;
    publisher
        .publish_with(Publish {
            retain: true,
            ..message("state/x", b"retained", QoS::AtLeastOnce)
        })
        .await;
    let (mut member, _) = TestClient::connect_v5(addr, "ret-member", true, None).await;
    member.subscribe("$share/g/state/#", QoS::AtLeastOnce).await;
    member.expect_nothing(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut publisher, _) = TestClient::connect_v5(addr, "un-pub", true, None).await;

    let (mut v5, _) = TestClient::connect_v5(addr, "un-5", true, None).await;
    v5.subscribe("un/a", QoS::AtLeastOnce).await;
    v5.subscribe("un/b", QoS::AtLeastOnce).await;
    let unsuback = v5.unsubscribe(&["un/a", "un/never"]).await;
    assert_eq!(
        unsuback.reason_codes,
        [
            UnsubAckReasonCode::Success,
            UnsubAckReasonCode::NoSubscriptionExisted
        ]
    );

    let (mut v3, _) = TestClient::connect(addr, ProtocolVersion::V3_1_1, "un-311", true).await;
    v3.subscribe("un/a", QoS::AtLeastOnce).await;
    v3.unsubscribe(&["un/a"]).await;

    publisher.publish("un/a", b"a", QoS::AtLeastOnce).await;
    publisher.publish("un/b", b"b", QoS::AtLeastOnce).await;
    assert_eq!(text(&v5.recv_publish_and_ack().await), "b");
    v5.expect_nothing(QUIET).await;
    v3.expect_nothing(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn unsubscribe_is_kept_by_a_persistent_session() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut sub, _) = TestClient::connect_v5(addr, "un-persist", false, Some(60)).await;
    sub.subscribe("up/a", QoS::AtLeastOnce).await;
    sub.subscribe("up/b", QoS::AtLeastOnce).await;
    sub.unsubscribe(&["up/a"]).await;
    sub.disconnect().await;
    let (mut publisher, _) = TestClient::connect_v5(addr, "up-pub", true, None).await;
    publisher.publish("up/a", b"a", QoS::AtLeastOnce).await;
    publisher.publish("up/b", b"b", QoS::AtLeastOnce).await;
    let (mut sub, _) = TestClient::connect_v5(addr, "un-persist", false, Some(60)).await;
    let got: Vec<String> = sub.drain_publishes(QUIET).await.iter().map(text).collect();
    assert_eq!(got, ["b"]);
    server.stop().await;
}

fn denying() -> BrokerConfig {
    BrokerConfig {
        denied_filters: vec![filter("private/#"), filter("$SYS/#")],
        ..Default::default()
    }
}

#[tokio::test]
async fn denied_filters_are_refused_v311_with_0x80() {
    let server = TestServer::with_config(denying()).await;
    let addr = server.mqtt;
    let (mut sub, _) = TestClient::connect(addr, ProtocolVersion::V3_1_1, "nosy-311", true).await;
    let suback = sub
        .subscribe_with(
            &[
                ("private/x", options(QoS::AtLeastOnce)),
                ("public/x", options(QoS::AtLeastOnce)),
                ("private/#", options(QoS::AtMostOnce)),
                ("$SYS/broker/load", options(QoS::AtMostOnce)),
            ],
            None,
        )
        .await;
    let codes: Vec<u8> = suback.reason_codes.iter().map(|r| r.code()).collect();
    assert_eq!(codes, [0x80, 0x01, 0x80, 0x80]);

    let (mut publisher, _) =
        TestClient::connect(addr, ProtocolVersion::V3_1_1, "deny-pub", true).await;
    publisher
        .publish("private/x", b"secret", QoS::AtLeastOnce)
        .await;
    publisher
        .publish("public/x", b"news", QoS::AtLeastOnce)
        .await;
    assert_eq!(text(&sub.recv_publish_and_ack().await), "news");
    sub.expect_nothing(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn denied_filters_are_refused_v5_with_0x87() {
    let server = TestServer::with_config(denying()).await;
    let (mut sub, _) = TestClient::connect_v5(server.mqtt, "nosy-5", true, None).await;
    let suback = sub
        .subscribe_with(
            &[
                ("private/+/y", options(QoS::AtLeastOnce)),
                ("public/#", options(QoS::ExactlyOnce)),
            ],
            None,
        )
        .await;
    assert_eq!(
        suback.reason_codes,
        [
            SubAckReasonCode::NotAuthorized,
            SubAckReasonCode::GrantedQoS2
        ]
    );
    assert_eq!(suback.reason_codes[0].code(), 0x87);
    server.stop().await;
}

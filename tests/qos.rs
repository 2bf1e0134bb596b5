//! QoS 0, 1 and 2 in both directions, exactly-once on receive, and what a resumed session
//! re-sends: unacknowledged PUBLISHes with DUP = 1 and their packet identifiers, PUBRELs after
//! PUBREC, all before newer queued messages.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is the test failing

use std::time::Duration;

use berth_codec::{
    Packet, PacketId, ProtocolVersion, PubAckReasonCode, PubComp, PubRec, PubRel, PubRelReasonCode,
    Publish, QoS,
};
use berth_e2e::client::{TestClient, message, text};
use berth_e2e::server::TestServer;

const QUIET: Duration = Duration::from_millis(300);

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn with_id(mut publish: Publish, n: u16) -> Publish {
    publish.packet_id = Some(id(n));
    publish
}

#[tokio::test]
async fn qos0_flows_without_packet_identifiers() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let (mut sub, _) = TestClient::connect(addr, version, "q0-sub", true).await;
        sub.subscribe("q0/t", QoS::ExactlyOnce).await;
        let (mut publisher, _) = TestClient::connect(addr, version, "q0-pub", true).await;
        publisher
            .publish("q0/t", b"fire and forget", QoS::AtMostOnce)
            .await;
        let got = sub.recv_publish().await;
        assert_eq!(
            (got.qos, got.packet_id, got.dup),
            (QoS::AtMostOnce, None, false),
            "{version}"
        );
        assert_eq!(text(&got), "fire and forget");
        sub.expect_nothing(QUIET).await;
        sub.disconnect().await;
        publisher.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn qos1_both_directions() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut sub, _) = TestClient::connect_v5(addr, "q1-sub", true, None).await;
    sub.subscribe("q1/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = TestClient::connect_v5(addr, "q1-pub", true, None).await;

    publisher
        .send(Packet::Publish(with_id(
            message("q1/t", b"one", QoS::AtLeastOnce),
            41,
        )))
        .await;
    match publisher.recv().await {
        Packet::PubAck(ack) => {
            assert_eq!(ack.packet_id, id(41));
            assert_eq!(ack.reason, PubAckReasonCode::Success);
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let got = sub.recv_publish().await;
    assert_eq!(
        (got.qos, got.dup, text(&got).as_str()),
        (QoS::AtLeastOnce, false, "one")
    );
    assert!(got.packet_id.is_some());
    sub.ack(&got).await;

    // No subscriber: MQTT 5 says so in the PUBACK (0x10), the message is still acknowledged.
    publisher
        .send(Packet::Publish(with_id(
            message("q1/nobody", b"x", QoS::AtLeastOnce),
            42,
        )))
        .await;
    match publisher.recv().await {
        Packet::PubAck(ack) => assert_eq!(ack.reason, PubAckReasonCode::NoMatchingSubscribers),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    sub.expect_nothing(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn qos2_both_directions() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let (mut sub, _) = TestClient::connect(addr, version, "q2-sub", true).await;
        sub.subscribe("q2/t", QoS::ExactlyOnce).await;
        let (mut publisher, _) = TestClient::connect(addr, version, "q2-pub", true).await;
        publisher.publish("q2/t", b"once", QoS::ExactlyOnce).await; // PUBREC, PUBREL, PUBCOMP

        let got = sub.recv_publish().await;
        assert_eq!(
            (got.qos, got.dup, text(&got).as_str()),
            (QoS::ExactlyOnce, false, "once")
        );
        let pid = got.packet_id.expect("QoS 2 has a packet id");
        sub.send(Packet::PubRec(PubRec::new(pid))).await;
        match sub.recv().await {
            Packet::PubRel(rel) => assert_eq!(rel.packet_id, pid),
            other => panic!("expected PUBREL, got {other:?}"),
        }
        sub.send(Packet::PubComp(PubComp::new(pid))).await;
        // The exchange is over: the next message flows, and nothing is repeated.
        publisher.publish("q2/t", b"twice", QoS::ExactlyOnce).await;
        assert_eq!(text(&sub.recv_publish_and_ack().await), "twice");
        sub.expect_nothing(QUIET).await;
        sub.disconnect().await;
        publisher.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn delivered_qos_is_the_minimum_of_published_and_subscribed() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    let mut subs = Vec::new();
    for granted in qos {
        let (mut sub, _) =
            TestClient::connect_v5(addr, &format!("min-{}", granted.as_u8()), true, None).await;
        sub.subscribe("min/t", granted).await;
        subs.push((granted, sub));
    }
    let (mut publisher, _) = TestClient::connect_v5(addr, "min-pub", true, None).await;
    for published in qos {
        publisher.publish("min/t", b"m", published).await;
        for (granted, sub) in &mut subs {
            let got = sub.recv_publish_and_ack().await;
            assert_eq!(
                got.qos,
                published.min(*granted),
                "published {published:?}, granted {granted:?}"
            );
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn qos2_duplicate_publish_is_delivered_once() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut sub, _) = TestClient::connect_v5(addr, "eo-sub", true, None).await;
    sub.subscribe("eo/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = TestClient::connect_v5(addr, "eo-pub", true, None).await;

    let first = with_id(message("eo/t", b"exactly once", QoS::ExactlyOnce), 7);
    publisher.send(Packet::Publish(first.clone())).await;
    assert!(matches!(publisher.recv().await, Packet::PubRec(rec) if rec.packet_id == id(7)));
    // The PUBREC "got lost": the publisher sends the PUBLISH again with DUP = 1.
    publisher
        .send(Packet::Publish(Publish {
            dup: true,
            ..first.clone()
        }))
        .await;
    assert!(matches!(publisher.recv().await, Packet::PubRec(rec) if rec.packet_id == id(7)));
    publisher.send(Packet::PubRel(PubRel::new(id(7)))).await;
    match publisher.recv().await {
        Packet::PubComp(comp) => assert_eq!(
            (comp.packet_id, comp.reason),
            (id(7), PubRelReasonCode::Success)
        ),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    assert_eq!(text(&sub.recv_publish_and_ack().await), "exactly once");
    sub.expect_nothing(QUIET).await;

    // After PUBCOMP the identifier is free again: the same id is a new message.
    publisher
        .send(Packet::Publish(with_id(
            message("eo/t", b"new message", QoS::ExactlyOnce),
            7,
        )))
        .await;
    assert!(matches!(publisher.recv().await, Packet::PubRec(rec) if rec.packet_id == id(7)));
    assert_eq!(text(&sub.recv_publish_and_ack().await), "new message");
    server.stop().await;
}

#[tokio::test]
async fn qos2_duplicate_after_reconnect_is_delivered_once() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut sub, _) = TestClient::connect_v5(addr, "eo2-sub", true, None).await;
    sub.subscribe("eo2/t", QoS::ExactlyOnce).await;

    let (mut publisher, _) = TestClient::connect_v5(addr, "eo2-pub", false, Some(60)).await;
    let publish = with_id(message("eo2/t", b"survives reconnect", QoS::ExactlyOnce), 5);
    publisher.send(Packet::Publish(publish.clone())).await;
    assert!(matches!(publisher.recv().await, Packet::PubRec(_)));
    publisher.abort();

    let (mut publisher, connack) = TestClient::connect_v5(addr, "eo2-pub", false, Some(60)).await;
    assert!(connack.session_present);
    publisher
        .send(Packet::Publish(Publish {
            dup: true,
            ..publish
        }))
        .await;
    assert!(matches!(publisher.recv().await, Packet::PubRec(rec) if rec.packet_id == id(5)));
    publisher.send(Packet::PubRel(PubRel::new(id(5)))).await;
    match publisher.recv().await {
        Packet::PubComp(comp) => assert_eq!(
            comp.reason,
            PubRelReasonCode::Success,
            "the QoS 2 state was kept"
        ),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    assert_eq!(
        text(&sub.recv_publish_and_ack().await),
        "survives reconnect"
    );
    sub.expect_nothing(QUIET).await;
    server.stop().await;
}

/// Subscriber with a persistent session, one message received and not acknowledged, the
/// connection dropped, a newer message published: on resume the old one comes first, as DUP.
async fn resend_on_resume(version: ProtocolVersion, qos: QoS) {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let connect = |addr| async move {
        if version.is_v5() {
            TestClient::connect_v5(addr, "resume-sub", false, Some(60)).await
        } else {
            TestClient::connect(addr, version, "resume-sub", false).await
        }
    };
    let (mut sub, _) = connect(addr).await;
    sub.subscribe("resume/t", qos).await;
    let (mut publisher, _) = TestClient::connect(addr, version, "resume-pub", true).await;

    publisher.publish("resume/t", b"old", qos).await;
    let unacked = sub.recv_publish().await;
    assert!(!unacked.dup);
    sub.abort();
    publisher.publish("resume/t", b"new", qos).await;

    let (mut sub, connack) = connect(addr).await;
    assert!(connack.session_present);
    let again = sub.recv_publish().await;
    assert_eq!(
        text(&again),
        "old",
        "the unacknowledged message comes first"
    );
    assert!(again.dup, "re-sent with DUP = 1");
    assert_eq!(
        again.packet_id, unacked.packet_id,
        "with the same packet identifier"
    );
    assert_eq!(again.qos, qos);
    sub.ack(&again).await;
    let newer = sub.recv_publish_and_ack().await;
    assert_eq!((text(&newer).as_str(), newer.dup), ("new", false));
    sub.expect_nothing(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn unacked_qos1_is_resent_with_dup_before_newer_messages_v5() {
    resend_on_resume(ProtocolVersion::V5, QoS::AtLeastOnce).await;
}

#[tokio::test]
async fn unacked_qos1_is_resent_with_dup_before_newer_messages_v311() {
    resend_on_resume(ProtocolVersion::V3_1_1, QoS::AtLeastOnce).await;
}

#[tokio::test]
async fn unacked_qos2_publish_is_resent_with_dup_before_newer_messages() {
    resend_on_resume(ProtocolVersion::V5, QoS::ExactlyOnce).await;
}

#[tokio::test]
async fn the_whole_unacked_window_is_resent_in_order() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut sub, _) = TestClient::connect_v5(addr, "window-sub", false, Some(60)).await;
    sub.subscribe("window/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = TestClient::connect_v5(addr, "window-pub", true, None).await;
    for n in 1..=4 {
        publisher
            .publish("window/t", format!("m{n}").as_bytes(), QoS::AtLeastOnce)
            .await;
    }
    let mut received: Vec<Publish> = Vec::new();
    for _ in 0..4 {
        received.push(sub.recv_publish().await);
    }
    sub.ack(&received[1]).await; // m2 acknowledged, m1, m3, m4 not
    sub.expect_nothing(Duration::from_millis(100)).await;
    sub.abort();
    publisher.publish("window/t", b"m5", QoS::AtLeastOnce).await;

    let (mut sub, _) = TestClient::connect_v5(addr, "window-sub", false, Some(60)).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let publish = sub.recv_publish_and_ack().await;
        got.push((text(&publish), publish.dup, publish.packet_id));
    }
    let expected = [
        ("m1".to_owned(), true, received[0].packet_id),
        ("m3".to_owned(), true, received[2].packet_id),
        ("m4".to_owned(), true, received[3].packet_id),
    ];
    assert_eq!(got[..3], expected[..]);
    assert_eq!((got[3].0.as_str(), got[3].1), ("m5", false));
    sub.expect_nothing(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn pubrel_is_resent_on_resume_after_pubrec() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut sub, _) = TestClient::connect_v5(addr, "rel-sub", false, Some(60)).await;
    sub.subscribe("rel/t", QoS::ExactlyOnce).await;
    let (mut publisher, _) = TestClient::connect_v5(addr, "rel-pub", true, None).await;

    publisher.publish("rel/t", b"first", QoS::ExactlyOnce).await;
    let first = sub.recv_publish().await;
    let pid = first.packet_id.unwrap();
    sub.send(Packet::PubRec(PubRec::new(pid))).await;
    sub.expect_pubrel(pid).await;
    sub.abort(); // no PUBCOMP
    publisher
        .publish("rel/t", b"second", QoS::ExactlyOnce)
        .await;

    let (mut sub, connack) = TestClient::connect_v5(addr, "rel-sub", false, Some(60)).await;
    assert!(connack.session_present);
    match sub.recv().await {
        Packet::PubRel(rel) => assert_eq!(rel.packet_id, pid, "PUBREL again, not the PUBLISH"),
        other => panic!("expected PUBREL first, got {other:?}"),
    }
    sub.send(Packet::PubComp(PubComp::new(pid))).await;
    let second = sub.recv_publish_and_ack().await;
    assert_eq!((text(&second).as_str(), second.dup), ("second", false));
    sub.expect_nothing(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn puback_for_an_unknown_packet_id_is_harmless() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut sub, _) = TestClient::connect_v5(addr, "stray-sub", true, None).await;
    sub.subscribe("stray/t", QoS::AtLeastOnce).await;
    sub.send(Packet::PubAck(berth_codec::PubAck::new(id(999))))
        .await;
    sub.send(Packet::PubRel(PubRel::new(id(998)))).await;
    match sub.recv().await {
        // §4.3.3: PUBCOMP 0x92 for a PUBREL of an unknown identifier.
        Packet::PubComp(comp) => {
            assert_eq!(comp.reason, PubRelReasonCode::PacketIdentifierNotFound)
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    let (mut publisher, _) = TestClient::connect_v5(addr, "stray-pub", true, None).await;
    publisher
        .publish("stray/t", b"still fine", QoS::AtLeastOnce)
        .await;
    assert_eq!(text(&sub.recv_publish_and_ack().await), "still fine");
    server.stop().await;
}

#[tokio::test]
async fn takeover_resends_the_old_connections_unacked_messages() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut old, _) = TestClient::connect_v5(addr, "moving", false, Some(60)).await;
    old.subscribe("moving/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = TestClient::connect_v5(addr, "moving-pub", true, None).await;
    publisher
        .publish("moving/t", b"in flight", QoS::AtLeastOnce)
        .await;
    let unacked = old.recv_publish().await;

    let (mut new, connack) = TestClient::connect_v5(addr, "moving", false, Some(60)).await;
    assert!(connack.session_present);
    let again = new.recv_publish_and_ack().await;
    assert_eq!(
        (text(&again).as_str(), again.dup, again.packet_id),
        ("in flight", true, unacked.packet_id)
    );
    new.expect_nothing(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn resume_respects_a_smaller_receive_maximum() {
    let server = TestServer::start_default().await;
    let addr = server.mqtt;
    let (mut sub, _) = TestClient::connect_v5(addr, "narrowing", false, Some(60)).await;
    sub.subscribe("narrow/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = TestClient::connect_v5(addr, "narrow-pub", true, None).await;
    for n in 1..=3 {
        publisher
            .publish("narrow/t", format!("m{n}").as_bytes(), QoS::AtLeastOnce)
            .await;
    }
    for _ in 1..=3 {
        sub.recv_publish().await; // none acknowledged
    }
    sub.abort();

    // Back with Receive Maximum 1: at most one unacknowledged PUBLISH at a time, re-sends included.
    let mut connect = berth_e2e::client::connect_v5("narrowing", false, Some(60));
    connect.properties.receive_maximum = std::num::NonZeroU16::new(1);
    let (mut sub, connack) = TestClient::connect_with(addr, connect).await;
    assert!(connack.session_present);
    for n in 1..=3 {
        let got = sub.recv_publish().await;
        assert_eq!((text(&got), got.dup), (format!("m{n}"), true));
        sub.expect_nothing(QUIET).await;
        sub.ack(&got).await;
    }
    server.stop().await;
}

//! QoS 0/1/2 in both directions, QoS downgrade, and resending the window on resume.

use berth_codec::{
    Packet, ProtocolVersion, PubAck, PubAckReasonCode, PubRec, PubRel, PubRelReasonCode, QoS,
    encode,
};
use bytes::BytesMut;

use super::*;

/// A subscriber `sub` (MQTT 5, persistent for 60 s) on `filter_text` and a publisher `pub`.
fn pair(h: &mut Harness, filter_text: &str, qos: QoS) -> (ConnId, ConnId) {
    let sub = h.connect_ok(v5("sub", false, Some(60)));
    h.subscribe(sub, subscribe(1, filter_text, qos));
    let publisher = h.connect_ok(v5("pub", true, None));
    (sub, publisher)
}

#[test]
fn qos0_inbound_is_not_acknowledged_and_is_delivered_at_qos0() {
    let mut h = Harness::new();
    let (sub, publisher) = pair(&mut h, "t", QoS::ExactlyOnce);
    let out = h.publish(publisher, publish("t", b"m", QoS::AtMostOnce, 0));
    assert_eq!(out.to(publisher), []);
    let delivered = out.publish(sub);
    assert_eq!(delivered.qos, QoS::AtMostOnce);
    assert_eq!(delivered.packet_id, None);
    assert!(h.stored_inflight("sub").is_empty());
}

#[test]
fn qos1_inbound_gets_puback_success_or_no_matching_subscribers() {
    let mut h = Harness::new();
    let (sub, publisher) = pair(&mut h, "t", QoS::AtLeastOnce);
    let out = h.publish(publisher, publish("t", b"m", QoS::AtLeastOnce, 7));
    let mut ack = PubAck::new(pid(7));
    ack.reason = PubAckReasonCode::Success;
    assert_eq!(out.only(publisher), Packet::PubAck(ack));
    assert_eq!(payloads(&out.publishes(sub)), ["m"]);

    let out = h.publish(publisher, publish("nobody", b"m", QoS::AtLeastOnce, 8));
    let mut ack = PubAck::new(pid(8));
    ack.reason = PubAckReasonCode::NoMatchingSubscribers;
    assert_eq!(out.only(publisher), Packet::PubAck(ack.clone()));
    // On the wire: 0x40, length 3, packet id 8, reason 0x10.
    let mut wire = BytesMut::new();
    encode(&Packet::PubAck(ack.clone()), ProtocolVersion::V5, &mut wire).unwrap();
    assert_eq!(&wire[..], [0x40, 0x03, 0x00, 0x08, 0x10]);
    // A 3.1.1 client gets a plain PUBACK (no reason codes in 3.1.1).
    let mut wire = BytesMut::new();
    encode(&Packet::PubAck(ack), ProtocolVersion::V3_1_1, &mut wire).unwrap();
    assert_eq!(&wire[..], [0x40, 0x02, 0x00, 0x08]);
}

#[test]
fn qos2_inbound_pubrec_dedup_pubrel_pubcomp() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", true, None));
    h.subscribe(sub, subscribe(1, "t", QoS::AtMostOnce));
    let publisher = h.connect_ok(v5("pub", false, Some(60)));

    let out = h.publish(publisher, publish("t", b"once", QoS::ExactlyOnce, 5));
    assert_eq!(out.only(publisher), Packet::PubRec(PubRec::new(pid(5))));
    assert_eq!(payloads(&out.publishes(sub)), ["once"]);
    // The QoS 2 receive state is stored for the persistent publisher.
    assert_eq!(h.stored_session("pub").unwrap().incoming_qos2, vec![pid(5)]);

    // The client did not see PUBREC and sends the PUBLISH again with DUP: not routed again.
    let mut again = publish("t", b"once", QoS::ExactlyOnce, 5);
    again.dup = true;
    let out = h.publish(publisher, again);
    assert_eq!(out.only(publisher), Packet::PubRec(PubRec::new(pid(5))));
    assert!(out.publishes(sub).is_empty());

    let out = h.pubrel(publisher, pid(5));
    assert_eq!(
        out.only(publisher),
        Packet::PubComp(berth_codec::PubComp::new(pid(5)))
    );
    assert!(h.stored_session("pub").unwrap().incoming_qos2.is_empty());

    // The packet id is free again: a new PUBLISH with it is a new message.
    let out = h.publish(publisher, publish("t", b"twice", QoS::ExactlyOnce, 5));
    assert_eq!(payloads(&out.publishes(sub)), ["twice"]);

    // PUBREL for an id that is not awaiting release: PUBCOMP 0x92.
    let out = h.pubrel(publisher, pid(9));
    let mut comp = berth_codec::PubComp::new(pid(9));
    comp.reason = PubRelReasonCode::PacketIdentifierNotFound;
    assert_eq!(out.only(publisher), Packet::PubComp(comp));
}

#[test]
fn qos2_inbound_without_subscribers_reports_no_matching_subscribers_in_pubrec() {
    let mut h = Harness::new();
    let publisher = h.connect_ok(v5("pub", true, None));
    let out = h.publish(publisher, publish("t", b"m", QoS::ExactlyOnce, 1));
    let mut rec = PubRec::new(pid(1));
    rec.reason = PubAckReasonCode::NoMatchingSubscribers;
    assert_eq!(out.only(publisher), Packet::PubRec(rec));
}

#[test]
fn qos1_outbound_waits_for_puback() {
    let mut h = Harness::new();
    let (sub, publisher) = pair(&mut h, "t", QoS::AtLeastOnce);
    let out = h.publish(publisher, publish("t", b"m", QoS::AtLeastOnce, 1));
    let delivered = out.publish(sub);
    assert_eq!(delivered.qos, QoS::AtLeastOnce);
    assert!(!delivered.dup);
    let id = delivered.packet_id.unwrap();
    assert_eq!(h.stored_inflight("sub"), [id.get()]);
    let out = h.puback(sub, id);
    assert!(out.silent(sub));
    assert!(h.stored_inflight("sub").is_empty());
    // A PUBACK for nothing is ignored.
    let out = h.puback(sub, id);
    assert!(out.silent(sub));
}

#[test]
fn qos2_outbound_publish_pubrec_pubrel_pubcomp() {
    let mut h = Harness::new();
    let (sub, publisher) = pair(&mut h, "t", QoS::ExactlyOnce);
    let out = h.publish(publisher, publish("t", b"m", QoS::ExactlyOnce, 1));
    let delivered = out.publish(sub);
    assert_eq!(delivered.qos, QoS::ExactlyOnce);
    let id = delivered.packet_id.unwrap();

    // PUBACK is not the answer to a QoS 2 PUBLISH: ignored.
    let out = h.puback(sub, id);
    assert!(out.silent(sub));
    assert_eq!(h.stored_inflight("sub"), [id.get()]);

    let out = h.pubrec(sub, id);
    assert_eq!(out.only(sub), Packet::PubRel(PubRel::new(id)));
    assert!(matches!(
        h.store().read_inflight(&client("sub")).unwrap()[..],
        [(_, crate::store::InflightRecord::Released { .. })]
    ));
    // A repeated PUBREC gets PUBREL again.
    let out = h.pubrec(sub, id);
    assert_eq!(out.only(sub), Packet::PubRel(PubRel::new(id)));

    let out = h.pubcomp(sub, id);
    assert!(out.silent(sub));
    assert!(h.stored_inflight("sub").is_empty());
}

#[test]
fn qos2_outbound_pubrec_with_error_ends_the_exchange() {
    let mut h = Harness::new();
    let (sub, publisher) = pair(&mut h, "t", QoS::ExactlyOnce);
    let out = h.publish(publisher, publish("t", b"m", QoS::ExactlyOnce, 1));
    let id = out.publish(sub).packet_id.unwrap();
    let mut rec = PubRec::new(id);
    rec.reason = PubAckReasonCode::UnspecifiedError;
    let out = h.packet(sub, Packet::PubRec(rec));
    assert!(out.silent(sub), "no PUBREL after a refusing PUBREC");
    assert!(h.stored_inflight("sub").is_empty());
}

#[test]
fn pubrec_for_an_unknown_packet_id_gets_pubrel_0x92() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", true, None));
    let out = h.pubrec(sub, pid(42));
    let mut rel = PubRel::new(pid(42));
    rel.reason = PubRelReasonCode::PacketIdentifierNotFound;
    assert_eq!(out.only(sub), Packet::PubRel(rel));
}

#[test]
fn qos_is_downgraded_to_the_subscription_qos() {
    for (published, subscribed, expected) in [
        (QoS::ExactlyOnce, QoS::AtLeastOnce, QoS::AtLeastOnce),
        (QoS::ExactlyOnce, QoS::AtMostOnce, QoS::AtMostOnce),
        (QoS::AtLeastOnce, QoS::AtMostOnce, QoS::AtMostOnce),
        (QoS::AtMostOnce, QoS::ExactlyOnce, QoS::AtMostOnce),
        (QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::AtLeastOnce),
    ] {
        let mut h = Harness::new();
        let (sub, publisher) = pair(&mut h, "t", subscribed);
        let out = h.publish(publisher, publish("t", b"m", published, 1));
        let delivered = out.publish(sub);
        assert_eq!(delivered.qos, expected, "{published:?} to {subscribed:?}");
        assert_eq!(
            delivered.packet_id.is_some(),
            expected != QoS::AtMostOnce,
            "{published:?} to {subscribed:?}"
        );
    }
}

#[test]
fn packet_ids_of_the_window_are_distinct() {
    let mut h = Harness::new();
    let (sub, publisher) = pair(&mut h, "t", QoS::AtLeastOnce);
    let mut ids = Vec::new();
    for n in 0..10 {
        let out = h.publish(publisher, publish("t", b"m", QoS::AtLeastOnce, n + 1));
        ids.push(out.publish(sub).packet_id.unwrap());
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len());
}

/// Resume: the unacknowledged window is re-sent first, in its original order (PUBLISH with
/// DUP = 1 and the same packet id, or PUBREL for a PUBREC'd one), then the newer queue.
#[test]
fn resume_resends_the_window_in_order_with_dup_then_the_queue() {
    let mut h = Harness::new();
    let (sub, publisher) = pair(&mut h, "t", QoS::ExactlyOnce);
    let mut sent = Vec::new();
    for (n, (payload, qos)) in [
        (b"m1" as &'static [u8], QoS::AtLeastOnce),
        (b"m2", QoS::ExactlyOnce),
        (b"m3", QoS::ExactlyOnce),
    ]
    .into_iter()
    .enumerate()
    {
        let out = h.publish(publisher, publish("t", payload, qos, n as u16 + 1));
        sent.push(out.publish(sub));
    }
    let ids: Vec<_> = sent.iter().map(|p| p.packet_id.unwrap()).collect();
    // m2 reached PUBREC: the broker released it.
    let out = h.pubrec(sub, ids[1]);
    assert_eq!(out.only(sub), Packet::PubRel(PubRel::new(ids[1])));
    h.lose(sub);

    // Newer messages wait in the queue meanwhile.
    h.publish(publisher, publish("t", b"m4", QoS::AtLeastOnce, 10));
    h.publish(publisher, publish("t", b"m5", QoS::ExactlyOnce, 11));
    assert_eq!(h.stored_queue("sub"), ["m4", "m5"]);

    let (sub, out) = h.connect(v5("sub", false, Some(60)));
    let packets = out.to(sub);
    assert!(matches!(&packets[0], Packet::ConnAck(c) if c.session_present));
    let rest = &packets[1..];
    assert_eq!(rest.len(), 5, "{rest:#?}");
    let Packet::Publish(r1) = &rest[0] else {
        panic!("{rest:#?}")
    };
    assert!(r1.dup);
    assert_eq!(r1.packet_id, Some(ids[0]));
    assert_eq!(r1.qos, QoS::AtLeastOnce);
    assert_eq!(r1.payload, sent[0].payload);
    assert_eq!(rest[1], Packet::PubRel(PubRel::new(ids[1])));
    let Packet::Publish(r3) = &rest[2] else {
        panic!("{rest:#?}")
    };
    assert!(r3.dup);
    assert_eq!(r3.packet_id, Some(ids[2]));
    assert_eq!(r3.payload, sent[2].payload);
    let newer: Vec<Publish> = rest[3..]
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => p.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(payloads(&newer), ["m4", "m5"]);
    assert!(newer.iter().all(|p| !p.dup));
    for p in &newer {
        assert!(!ids.contains(&p.packet_id.unwrap()), "fresh packet ids");
    }
    assert_eq!(h.broker.stats().queued_messages, 0, "all in the window");

    // The resumed exchanges complete normally.
    h.puback(sub, ids[0]);
    h.pubcomp(sub, ids[1]);
    let out = h.pubrec(sub, ids[2]);
    assert_eq!(out.only(sub), Packet::PubRel(PubRel::new(ids[2])));
    h.pubcomp(sub, ids[2]);
    h.puback(sub, newer[0].packet_id.unwrap());
    h.pubrec(sub, newer[1].packet_id.unwrap());
    h.pubcomp(sub, newer[1].packet_id.unwrap());
    assert!(h.stored_inflight("sub").is_empty());
}

#[test]
fn v3_subscriber_gets_the_same_qos_flow() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v3("sub", false));
    h.subscribe(sub, subscribe(1, "t", QoS::ExactlyOnce));
    let publisher = h.connect_ok(v3("pub", true));
    let out = h.publish(publisher, publish("t", b"m", QoS::ExactlyOnce, 1));
    assert_eq!(out.to(publisher), [Packet::PubRec(PubRec::new(pid(1)))]);
    let id = out.publish(sub).packet_id.unwrap();
    let out = h.pubrec(sub, id);
    assert_eq!(out.only(sub), Packet::PubRel(PubRel::new(id)));
    h.pubcomp(sub, id);
    assert!(h.stored_inflight("sub").is_empty());
}

#[test]
fn takeover_resends_the_old_connections_window_on_the_new_one() {
    let mut h = Harness::new();
    let (old, publisher) = pair(&mut h, "t", QoS::AtLeastOnce);
    let first = h
        .publish(publisher, publish("t", b"m1", QoS::AtLeastOnce, 1))
        .publish(old);
    let (new, out) = h.connect(v5("sub", false, Some(60)));
    assert!(out.closed(old));
    let resent = out.publish(new);
    assert!(resent.dup);
    assert_eq!(resent.packet_id, first.packet_id);
    assert_eq!(resent.payload, first.payload);
    assert!(out.publishes(old).is_empty());
    h.puback(new, first.packet_id.unwrap());
    assert!(h.stored_inflight("sub").is_empty());
}

#[test]
fn qos2_receive_state_survives_a_takeover() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v5("sub", true, None));
    h.subscribe(sub, subscribe(1, "t", QoS::AtMostOnce));
    let publisher = h.connect_ok(v5("pub", false, Some(60)));
    let out = h.publish(publisher, publish("t", b"once", QoS::ExactlyOnce, 3));
    assert_eq!(out.publishes(sub).len(), 1);
    let publisher = h.connect_ok(v5("pub", false, Some(60)));
    let mut again = publish("t", b"once", QoS::ExactlyOnce, 3);
    again.dup = true;
    let out = h.publish(publisher, again);
    assert!(out.publishes(sub).is_empty());
    let out = h.pubrel(publisher, pid(3));
    assert_eq!(
        out.only(publisher),
        Packet::PubComp(berth_codec::PubComp::new(pid(3)))
    );
}

#[test]
fn a_v3_clean_session_discards_the_qos2_receive_state() {
    let mut h = Harness::new();
    let sub = h.connect_ok(v3("sub", true));
    h.subscribe(sub, subscribe(1, "t", QoS::AtMostOnce));
    let publisher = h.connect_ok(v3("pub", false));
    h.publish(publisher, publish("t", b"one", QoS::ExactlyOnce, 3));
    h.lose(publisher);
    let publisher = h.connect_ok(v3("pub", true));
    let out = h.publish(publisher, publish("t", b"two", QoS::ExactlyOnce, 3));
    assert_eq!(
        payloads(&out.publishes(sub)),
        ["two"],
        "a new session: a new message"
    );
}

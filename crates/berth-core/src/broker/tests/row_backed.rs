//! A connected persistent session's QoS 1 deliveries from its queue keep their queue row as
//! their in-flight record (`broker/row_backed.rs`): what the store holds while connected, after
//! an orderly end, and after a crash.

use std::num::NonZeroU16;

use berth_codec::QoS;

use super::*;

/// A persistent MQTT 5 subscriber to `t` that takes one QoS 1 message at a time, and three
/// messages for it: `m1` went out at once (an in-flight row), `m2` and `m3` wait in the queue.
fn one_at_a_time() -> (Harness, ConnId) {
    let mut h = Harness::new();
    let mut connect = v5("sub", false, Some(3600));
    connect.properties.receive_maximum = NonZeroU16::new(1);
    let sub = h.connect_ok(connect);
    h.subscribe(sub, subscribe(1, "t", QoS::AtLeastOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    for (n, payload) in [b"m1", b"m2", b"m3"].into_iter().enumerate() {
        h.publish(
            publisher,
            publish("t", payload, QoS::AtLeastOnce, n as u16 + 1),
        );
    }
    (h, sub)
}

fn resume(h: &mut Harness) -> (ConnId, Vec<berth_codec::Publish>) {
    let mut connect = v5("sub", false, Some(3600));
    connect.properties.receive_maximum = NonZeroU16::new(1);
    let (sub, out) = h.connect(connect);
    assert!(out.connack(sub).session_present);
    (sub, out.publishes(sub))
}

#[test]
fn a_delivery_from_the_queue_writes_no_in_flight_row_and_its_puback_deletes_the_queue_row() {
    let (mut h, sub) = one_at_a_time();
    assert_eq!(
        h.stored_inflight("sub"),
        [1],
        "m1 went out at once: an in-flight row"
    );
    assert_eq!(h.stored_queue("sub"), ["m2", "m3"]);

    let out = h.puback(sub, pid(1));
    assert_eq!(payloads(&out.publishes(sub)), ["m2"]);
    assert!(
        h.stored_inflight("sub").is_empty(),
        "m2's record is its queue row"
    );
    assert_eq!(h.stored_queue("sub"), ["m2", "m3"]);

    let id = out.publish(sub).packet_id.unwrap();
    let out = h.puback(sub, id);
    assert_eq!(payloads(&out.publishes(sub)), ["m3"]);
    assert_eq!(h.stored_queue("sub"), ["m3"], "m2's PUBACK deleted its row");
    let id = out.publish(sub).packet_id.unwrap();
    h.puback(sub, id);
    assert!(h.stored_queue("sub").is_empty());
    assert!(h.stored_inflight("sub").is_empty());
}

#[test]
fn an_orderly_end_writes_the_window_as_in_flight_rows_and_a_resume_resends_it_as_before() {
    let (mut h, sub) = one_at_a_time();
    let out = h.puback(sub, pid(1));
    let m2_id = out.publish(sub).packet_id.unwrap();
    h.lose(sub);
    assert_eq!(h.stored_inflight("sub"), [m2_id.get()]);
    assert_eq!(h.stored_queue("sub"), ["m3"]);

    let (_, publishes) = resume(&mut h);
    assert_eq!(payloads(&publishes), ["m2"]);
    assert!(publishes[0].dup, "a re-delivery");
    assert_eq!(publishes[0].packet_id, Some(m2_id), "under its packet id");
}

#[test]
fn after_a_crash_a_sent_row_goes_out_again_with_dup_and_none_is_lost() {
    let (mut h, sub) = one_at_a_time();
    let out = h.puback(sub, pid(1));
    assert_eq!(payloads(&out.publishes(sub)), ["m2"]);
    // Crash: the connection is never told closed, nothing is settled.
    h.restart_after(1);
    let (sub, publishes) = resume(&mut h);
    assert_eq!(payloads(&publishes), ["m2"]);
    assert!(publishes[0].dup, "it may have reached the client: DUP = 1");

    let out = h.puback(sub, publishes[0].packet_id.unwrap());
    let m3 = out.publish(sub);
    assert_eq!(payloads(std::slice::from_ref(&m3)), ["m3"]);
    // Never sent before the crash, but the mark reached over it as a lease (a window's worth
    // of the rows next in line may leave before their group's write): "might be a
    // re-delivery", DUP = 1.
    assert!(m3.dup, "covered by the mark");
    h.puback(sub, m3.packet_id.unwrap());
    assert!(h.stored_queue("sub").is_empty());
    // A message queued now takes a sequence above the mark: a first delivery, DUP = 0.
    let publisher = h.connect_ok(v5("pub", true, None));
    let out = h.publish(publisher, publish("t", b"m4", QoS::AtLeastOnce, 1));
    let m4 = out.publish(sub);
    assert!(!m4.dup);
}

#[test]
fn a_purge_keeps_the_messages_in_flight() {
    let (mut h, sub) = one_at_a_time();
    let out = h.puback(sub, pid(1));
    let m2_id = out.publish(sub).packet_id.unwrap();
    let purged = h.broker.purge_queue(h.now, &client("sub")).expect("purges");
    assert_eq!(purged.messages, 1, "m3 only");
    h.broker.commit_pending().unwrap();
    assert_eq!(
        h.stored_inflight("sub"),
        [m2_id.get()],
        "m2 is still in flight"
    );
    h.restart_after(1);
    let (_, publishes) = resume(&mut h);
    assert_eq!(payloads(&publishes), ["m2"]);
}

#[test]
fn a_direct_send_behind_row_backed_ones_keeps_the_resend_order_after_a_crash() {
    let (mut h, sub) = one_at_a_time();
    // Take the window to 3: m2 and m3 go out from the queue (row-backed), m4 straight.
    let out = h.puback(sub, pid(1));
    let m2 = out.publish(sub).packet_id.unwrap();
    h.puback(sub, m2);
    let publisher = h.connect_ok(v5("pub", true, None));
    h.publish(publisher, publish("t", b"m4", QoS::AtLeastOnce, 1));
    assert_eq!(
        h.stored_queue("sub"),
        ["m3", "m4"],
        "m3 in flight from its row, m4 waits"
    );
    h.lose(sub);
    // Resumed with room for everything: m3 again from its in-flight row, m4 from its queue
    // row (row-backed); then m5 straight out, and a crash with all three unacknowledged.
    let (sub, out) = h.connect(v5("sub", false, Some(3600)));
    assert_eq!(payloads(&out.publishes(sub)), ["m3", "m4"]);
    assert_eq!(h.stored_queue("sub"), ["m4"]);
    let out = h.publish(publisher, publish("t", b"m5", QoS::AtLeastOnce, 2));
    assert_eq!(payloads(&out.publishes(sub)), ["m5"]);
    h.restart_after(1);
    let (sub, out) = h.connect(v5("sub", false, Some(3600)));
    let again = out.publishes(sub);
    assert_eq!(
        payloads(&again),
        ["m3", "m4", "m5"],
        "in the order they were sent"
    );
    assert!(again.iter().all(|p| p.dup));
}

/// PUBACKs in order move the session's dequeued-through mark over their rows (one op per
/// group, `Op::DequeueThrough`); one out of order deletes its row by itself. A crash then
/// re-sends exactly what is unacknowledged, in order, with DUP = 1.
#[test]
fn acknowledged_rows_go_with_the_dequeued_mark_and_a_crash_resends_only_the_rest() {
    let mut h = Harness::new();
    let window = |h: &mut Harness| {
        let mut connect = v5("sub", false, Some(3600));
        connect.properties.receive_maximum = NonZeroU16::new(2);
        h.connect(connect)
    };
    let (sub, _) = window(&mut h);
    h.subscribe(sub, subscribe(1, "t", QoS::AtLeastOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    let mut sent = Vec::new();
    let payloads_in: [&'static [u8]; 7] = [b"m1", b"m2", b"m3", b"m4", b"m5", b"m6", b"m7"];
    for (n, payload) in payloads_in.into_iter().enumerate() {
        let out = h.publish(
            publisher,
            publish("t", payload, QoS::AtLeastOnce, n as u16 + 1),
        );
        sent.extend(out.publishes(sub));
    }
    assert_eq!(
        payloads(&sent),
        ["m1", "m2"],
        "a window of two went out at once"
    );
    let id = |p: &berth_codec::Publish| p.packet_id.unwrap();
    let m3 = h.puback(sub, id(&sent[0])).publish(sub);
    let m4 = h.puback(sub, id(&sent[1])).publish(sub);
    assert_eq!(payloads(&[m3.clone(), m4.clone()]), ["m3", "m4"]);
    let through = |h: &Harness| {
        h.broker
            .sessions
            .get(&client("sub"))
            .unwrap()
            .dequeued_through
    };
    assert_eq!(
        through(&h),
        None,
        "m1 and m2 had in-flight rows of their own"
    );

    // m4 before m3: its row goes by itself, m3 still holds the mark back.
    let m5 = h.puback(sub, id(&m4)).publish(sub);
    assert_eq!(payloads(std::slice::from_ref(&m5)), ["m5"]);
    assert_eq!(h.stored_queue("sub"), ["m3", "m5", "m6", "m7"]);
    assert_eq!(through(&h), None);
    // m3: every row below m5 (in flight now) is acknowledged.
    let m6 = h.puback(sub, id(&m3)).publish(sub);
    assert_eq!(payloads(std::slice::from_ref(&m6)), ["m6"]);
    assert_eq!(h.stored_queue("sub"), ["m5", "m6", "m7"]);
    let m5_seq = through(&h).expect("the mark moved").next();
    assert_eq!(
        h.stored_session("sub").unwrap().queue.first,
        m5_seq,
        "the mark stops just below m5"
    );

    let mark = through(&h);
    h.restart_after(0);
    assert_eq!(through(&h), mark, "the mark is loaded with the session");
    let (sub, out) = window(&mut h);
    assert!(out.connack(sub).session_present);
    let resent = out.publishes(sub);
    assert_eq!(payloads(&resent), ["m5", "m6"]);
    assert!(
        resent.iter().all(|p| p.dup),
        "re-sent with DUP = 1: {resent:?}"
    );
}

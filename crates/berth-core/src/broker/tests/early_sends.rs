//! Sends from queue rows a durable sent mark covers leave before the group's write
//! (`broker/row_backed.rs`): which do, which wait, and what a crash before the write leaves.

use std::num::NonZeroU16;

use berth_codec::QoS;

use super::*;

/// A persistent MQTT 5 subscriber to `t` with a window of 2 and six QoS 1 messages for it:
/// `m1` and `m2` went out at once, `m3`..`m6` wait in the queue. Every write so far is durable.
fn window_of_two() -> (Harness, ConnId, [PacketId; 2]) {
    window_of_two_with(&[QoS::AtLeastOnce; 6])
}

/// [`window_of_two`] with each message published at the QoS given (the subscription takes
/// QoS 2).
fn window_of_two_with(qos: &[QoS; 6]) -> (Harness, ConnId, [PacketId; 2]) {
    let mut h = Harness::new();
    let sub = h.connect_ok(subscriber(2));
    h.subscribe(sub, subscribe(1, "t", QoS::ExactlyOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    let mut ids = Vec::new();
    for (n, payload) in [b"m1", b"m2", b"m3", b"m4", b"m5", b"m6"]
        .into_iter()
        .enumerate()
    {
        let out = h.publish(publisher, publish("t", payload, qos[n], n as u16 + 1));
        ids.extend(out.publishes(sub).iter().filter_map(|p| p.packet_id));
    }
    assert_eq!(h.stored_queue("sub"), ["m3", "m4", "m5", "m6"]);
    h.broker.writes_durable();
    (h, sub, [ids[0], ids[1]])
}

/// The subscriber's CONNECT (resuming its session), with a window of `receive_maximum`.
fn subscriber(receive_maximum: u16) -> Connect {
    let mut connect = v5("sub", false, Some(3600));
    connect.properties.receive_maximum = NonZeroU16::new(receive_maximum);
    connect
}

/// Crash (no write of what is pending), restart, and resume with a window of `window`: what
/// is sent at once.
fn crash_and_resume(h: &mut Harness, window: u16) -> (ConnId, Vec<berth_codec::Publish>) {
    h.restart_after(1);
    let (sub, out) = h.connect(subscriber(window));
    assert!(out.connack(sub).session_present);
    (sub, out.publishes(sub))
}

/// `packets` handled deferred and the early sends taken, as the server does before a group's
/// write; the write is left to the caller (or to a crash).
fn before_the_write(h: &mut Harness, packets: Vec<(ConnId, Packet)>) -> Out {
    for (conn, packet) in packets {
        h.broker
            .handle_deferred(h.now, Event::Packet { conn, packet })
            .unwrap();
    }
    let mut early = Vec::new();
    h.broker.take_early_sends(&mut early);
    Out { actions: early }
}

/// One group as the server runs it: [`before_the_write`], then the write, its durability and
/// the rest of the actions.
fn group(h: &mut Harness, packets: Vec<(ConnId, Packet)>) -> (Out, Out) {
    let early = before_the_write(h, packets);
    h.broker.commit_pending().unwrap();
    h.broker.writes_durable();
    let late = h.broker.take_actions();
    (early, Out { actions: late })
}

fn puback(conn: ConnId, id: PacketId) -> (ConnId, Packet) {
    (conn, Packet::PubAck(PubAck::new(id)))
}

#[test]
fn a_send_waits_for_the_write_until_a_durable_mark_covers_its_row() {
    let (mut h, sub, [m1, m2]) = window_of_two();
    // No mark yet: m3 is sent from its row, but only after the write (that writes the mark).
    let (early, late) = group(&mut h, vec![puback(sub, m1)]);
    assert!(early.actions.is_empty(), "{:?}", early.actions);
    assert_eq!(payloads(&late.publishes(sub)), ["m3"]);
    // That write's mark reached over the next rows: m4 goes before this group's write.
    let (early, late) = group(&mut h, vec![puback(sub, m2)]);
    assert_eq!(payloads(&early.publishes(sub)), ["m4"]);
    assert!(late.publishes(sub).is_empty(), "{:?}", late.actions);
}

#[test]
fn an_early_send_stays_behind_what_waits_for_the_same_connection() {
    let (mut h, sub, [m1, m2]) = window_of_two();
    let (_, late) = group(&mut h, vec![puback(sub, m1)]);
    let m3 = late.publish(sub).packet_id.unwrap();
    // A PINGRESP (made before the write, sent after it) comes first: m4 waits behind it.
    let (early, late) = group(&mut h, vec![(sub, Packet::PingReq), puback(sub, m2)]);
    assert!(early.actions.is_empty(), "{:?}", early.actions);
    assert_eq!(late.to(sub)[0], Packet::PingResp);
    assert_eq!(payloads(&late.publishes(sub)), ["m4"]);
    // Without it, m5 leaves early again.
    let (early, _) = group(&mut h, vec![puback(sub, m3)]);
    assert_eq!(payloads(&early.publishes(sub)), ["m5"]);
}

#[test]
fn no_send_is_early_while_the_write_of_its_mark_is_not_durable() {
    let (mut h, sub, [m1, m2]) = window_of_two();
    // m3 goes out and its group is written, but the server has not said the write is durable
    // (its sync still running, say).
    before_the_write(&mut h, vec![puback(sub, m1)]);
    h.broker.commit_pending().unwrap();
    h.broker.take_actions();
    let early = before_the_write(&mut h, vec![puback(sub, m2)]);
    assert!(early.actions.is_empty(), "{:?}", early.actions);
    assert_eq!(
        payloads(
            &Out {
                actions: h.broker.take_actions()
            }
            .publishes(sub)
        ),
        ["m4"]
    );
}

/// A window of two after m1's PUBACK: m2 acknowledged and m4 sent early, in a group whose
/// write has not happened yet (the broker is about to die).
fn m4_sent_early_before_a_write() -> Harness {
    let (mut h, sub, [m1, m2]) = window_of_two();
    group(&mut h, vec![puback(sub, m1)]);
    let early = before_the_write(&mut h, vec![puback(sub, m2)]);
    assert_eq!(payloads(&early.publishes(sub)), ["m4"]);
    h
}

#[test]
fn a_crash_before_the_write_loses_no_early_send_and_resends_it_with_dup() {
    let mut h = m4_sent_early_before_a_write();
    let (_, again) = crash_and_resume(&mut h, 10);
    // m2's PUBACK was lost with the write: it comes again, as do m3 and m4 (sent), and m5,
    // which the mark covers though it never left (DUP = 1: "might be a re-delivery").
    assert_eq!(payloads(&again), ["m2", "m3", "m4", "m5", "m6"]);
    assert!(again[..4].iter().all(|p| p.dup), "{again:#?}");
    assert!(!again[4].dup, "m6 is beyond the mark: a first delivery");
}

#[test]
fn rows_the_mark_covered_come_again_with_dup_after_a_crash_and_an_orderly_end() {
    let mut h = m4_sent_early_before_a_write();
    // After the crash, the first connection's window re-sends m2 and m3 only, then ends: m4
    // (and m5) wait in the queue, under a mark that must stay.
    let (sub, again) = crash_and_resume(&mut h, 2);
    assert_eq!(payloads(&again), ["m2", "m3"]);
    h.lose(sub);
    let (sub, out) = h.connect(subscriber(10));
    let again = out.publishes(sub);
    assert_eq!(payloads(&again), ["m2", "m3", "m4", "m5", "m6"]);
    assert!(
        again[..4].iter().all(|p| p.dup),
        "m4 reached the client: {again:#?}"
    );
    assert!(!again[4].dup);
}

#[test]
fn the_mark_reaches_no_further_than_the_qos_1_rows_next_in_line() {
    use QoS::{AtLeastOnce as Q1, ExactlyOnce as Q2};
    let (mut h, sub, [m1, _]) = window_of_two_with(&[Q1, Q1, Q1, Q1, Q2, Q1]);
    // m3 goes out; the mark its write holds reaches over m4 and stops at m5 (QoS 2).
    group(&mut h, vec![puback(sub, m1)]);
    let (_, again) = crash_and_resume(&mut h, 10);
    let dups: Vec<(String, bool)> = again
        .iter()
        .map(|p| (String::from_utf8_lossy(&p.payload).into_owned(), p.dup))
        .collect();
    assert_eq!(
        dups,
        [
            ("m2".into(), true),
            ("m3".into(), true),
            ("m4".into(), true),
            ("m5".into(), false),
            ("m6".into(), false)
        ]
    );
}

//! Sends from queue rows a durable sent mark covers leave before the group's write
//! (`broker/row_backed.rs`): which do, which wait, and what a crash before the write leaves.

use std::num::NonZeroU16;

use berth_codec::QoS;

use super::*;

/// A persistent MQTT 5 subscriber to `t` with a window of 2 and six QoS 1 messages for it:
/// `m1` and `m2` went out at once, `m3`..`m6` wait in the queue. Every write so far is durable.
fn window_of_two() -> (Harness, ConnId, [PacketId; 2]) {
    let mut h = Harness::new();
    let mut connect = v5("sub", false, Some(3600));
    connect.properties.receive_maximum = NonZeroU16::new(2);
    let sub = h.connect_ok(connect);
    h.subscribe(sub, subscribe(1, "t", QoS::AtLeastOnce));
    let publisher = h.connect_ok(v5("pub", true, None));
    let mut ids = Vec::new();
    for (n, payload) in [b"m1", b"m2", b"m3", b"m4", b"m5", b"m6"]
        .into_iter()
        .enumerate()
    {
        let out = h.publish(
            publisher,
            publish("t", payload, QoS::AtLeastOnce, n as u16 + 1),
        );
        ids.extend(out.publishes(sub).iter().filter_map(|p| p.packet_id));
    }
    assert_eq!(h.stored_queue("sub"), ["m3", "m4", "m5", "m6"]);
    h.broker.writes_durable();
    (h, sub, [ids[0], ids[1]])
}

/// One group as the server runs it: `packets` handled deferred, the early sends taken, then
/// (unless `crash`) the write, its durability and the rest of the actions.
fn group(h: &mut Harness, packets: Vec<(ConnId, Packet)>) -> (Out, Out) {
    for (conn, packet) in packets {
        h.broker
            .handle_deferred(h.now, Event::Packet { conn, packet })
            .unwrap();
    }
    let mut early = Vec::new();
    h.broker.take_early_sends(&mut early);
    h.broker.commit_pending().unwrap();
    h.broker.writes_durable();
    let late = h.broker.take_actions();
    (Out { actions: early }, Out { actions: late })
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
    let (_, late) = group(&mut h, vec![puback(sub, m1)]);
    assert_eq!(payloads(&late.publishes(sub)), ["m3"]);
    // The mark is written (by the event's own commit) but not yet said to be durable.
    h.broker.durable_writes = 0;
    h.broker
        .handle_deferred(
            h.now,
            Event::Packet {
                conn: sub,
                packet: Packet::PubAck(PubAck::new(m2)),
            },
        )
        .unwrap();
    let mut early = Vec::new();
    h.broker.take_early_sends(&mut early);
    assert!(early.is_empty(), "{early:?}");
}

#[test]
fn a_crash_before_the_write_loses_no_early_send_and_resends_it_with_dup() {
    let (mut h, sub, [m1, m2]) = window_of_two();
    let (_, late) = group(&mut h, vec![puback(sub, m1)]);
    let m3 = late.publish(sub).packet_id.unwrap();
    // m2 acknowledged and m4 sent early; the broker dies before the group's write.
    h.broker
        .handle_deferred(
            h.now,
            Event::Packet {
                conn: sub,
                packet: Packet::PubAck(PubAck::new(m2)),
            },
        )
        .unwrap();
    let mut early = Vec::new();
    h.broker.take_early_sends(&mut early);
    let early = Out { actions: early };
    assert_eq!(payloads(&early.publishes(sub)), ["m4"]);
    let _ = m3;
    h.restart_after(1);

    let mut connect = v5("sub", false, Some(3600));
    connect.properties.receive_maximum = NonZeroU16::new(10);
    let (sub, out) = h.connect(connect);
    assert!(out.connack(sub).session_present);
    let again = out.publishes(sub);
    // m2's PUBACK was lost with the write: it comes again, as do m3 and m4 (sent), and m5,
    // which the mark covers though it never left (DUP = 1: "might be a re-delivery").
    assert_eq!(payloads(&again), ["m2", "m3", "m4", "m5", "m6"]);
    assert!(again[..4].iter().all(|p| p.dup), "{again:#?}");
    assert!(!again[4].dup, "m6 is beyond the mark: a first delivery");
}

//! A QoS 2 message an older copy of a session sent, coming back while the session uses its
//! packet id for another message, goes out under that id once the id is free
//! (`Delivery::sent_as`). The client may still hold the id for it (PUBREC sent, PUBREL not
//! yet) and then recognises it as the same message; under another id its application would
//! get it twice (simulator seeds 7482: a late window; 11040: a merge).

use super::delivery_wait::{older_copy_with_m1_in_flight_as, resumed_without_state};
use super::stranded::{claim, node};
use super::*;
use crate::cluster::SessionExport;
use crate::ids::{Epoch, NodeId};
use crate::message::Delivery;
use crate::store::InflightRecord;

/// Node 2's session `x` has `m0` (QoS 1) in flight, unacknowledged, when node 1's copy comes
/// back with `m1` (QoS 2) in flight under the same packet id (`expired`: `m1`'s Message Expiry
/// already past). Returns the node, `x`'s connection and that id.
fn late_m1_under_the_id_of_m0(expired: bool) -> (Harness, ConnId, PacketId) {
    let (mut b, x, publisher) = resumed_without_state();
    let out = b.publish(publisher, publish("t", b"m0", QoS::AtLeastOnce, 9));
    let m0 = out.publishes(x)[0].packet_id.unwrap();
    let mut late = older_copy_with_m1_in_flight_as(m0);
    if expired && let Some((_, InflightRecord::Sent { delivery, .. })) = late.inflight.first_mut() {
        let mut message = (*delivery.message).clone();
        message.expires_at = Some(crate::time::UnixMillis(1));
        delivery.message = std::sync::Arc::new(message);
    }
    let out = b.event(Event::ImportLate {
        client: client("x"),
        epoch: Epoch(2),
        holder: NodeId(1),
        export: late,
        page: Vec::new(),
    });
    assert!(
        out.publishes(x).is_empty(),
        "m1 waits: its packet id carries m0, not acknowledged yet"
    );
    (b, x, m0)
}

/// The client acknowledges what held `id` on `conn`: `m1` goes out under `id`, DUP = 1, where
/// the client may still hold it for `m1` and drops it as a duplicate.
fn m1_goes_out_under_its_id_once_free(h: &mut Harness, conn: ConnId, id: PacketId) {
    let out = h.puback(conn, id);
    let sent = out.publishes(conn);
    assert_eq!(payloads(&sent), vec!["m1"]);
    assert_eq!(
        (sent[0].packet_id, sent[0].dup),
        (Some(id), true),
        "m1 again under the id the client may hold for it: it drops it as a duplicate"
    );
}

#[test]
fn a_late_qos2_message_waits_for_its_packet_id_and_goes_out_under_it() {
    let (mut b, x, id) = late_m1_under_the_id_of_m0(false);
    m1_goes_out_under_its_id_once_free(&mut b, x, id);
}

#[test]
fn a_qos2_message_waiting_for_its_packet_id_keeps_it_across_a_restart() {
    let (mut b, x, id) = late_m1_under_the_id_of_m0(false);
    b.lose(x);
    b.restart_after(1);
    b.broker.join_cluster(NodeId(2));
    let (x, out) = b.connect_as(v3("x", false), 2);
    assert!(out.connack(x).session_present);
    let sent = out.publishes(x);
    assert_eq!(payloads(&sent), vec!["m0"], "m0 again; m1 still waits");
    assert_eq!(sent[0].packet_id, Some(id));
    m1_goes_out_under_its_id_once_free(&mut b, x, id);
}

/// `x` was on node 1, where `m1` (QoS 2) went out under a packet id that node 2, which served
/// the session meanwhile, used for `m4` (QoS 1). The session comes back to node 1, which merges
/// node 2's state with its older copy: `m4` keeps the id (the client holds the newer window),
/// `m1` waits for it.
#[test]
fn a_merged_older_copys_qos2_message_waits_for_its_packet_id() {
    let mut a = node(1);
    let conn = a.connect_ok(v3("x", false));
    a.subscribe(conn, subscribe(1, "t", QoS::ExactlyOnce));
    let publisher = a.connect_ok(v3("pub", true));
    let out = a.publish(publisher, publish("t", b"m1", QoS::ExactlyOnce, 1));
    let id = out.publishes(conn)[0].packet_id.unwrap();
    a.lose(conn);

    // Node 2's state at epoch 2, as its pull brings it: m4 in flight under the same id.
    a.event(claim(2, 2));
    let mut newer: SessionExport = a
        .broker
        .export_session(&client("x"), Epoch(2))
        .unwrap()
        .unwrap();
    let m4 = Delivery {
        message: super::cluster::message("t", b"m4"),
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: Vec::new(),
        redelivery: false,
        sent_as: None,
    };
    newer.inflight = vec![(
        id,
        InflightRecord::Sent {
            order: 0,
            delivery: m4,
        },
    )];
    newer.queued = 0;
    newer.seen.clear();
    newer.record.epoch = Epoch(3);

    a.event(claim(1, 3));
    a.event(Event::ImportBegin {
        client: client("x"),
    });
    a.event(Event::ImportState {
        client: client("x"),
        export: Box::new(newer),
    });
    a.event(Event::ImportDone {
        client: client("x"),
    });
    let (conn, out) = a.connect_as(v3("x", false), 3);
    assert!(out.connack(conn).session_present);
    let sent = out.publishes(conn);
    assert_eq!(payloads(&sent), vec!["m4"], "m1 waits for m4's id");
    assert_eq!(sent[0].packet_id, Some(id));
    m1_goes_out_under_its_id_once_free(&mut a, conn, id);
}

/// Its delivery has begun (the older copy sent it): a message that waits for its packet id
/// does not expire meanwhile, or the client would keep holding the id for it.
#[test]
fn a_qos2_message_waiting_for_its_packet_id_does_not_expire() {
    let (mut b, x, id) = late_m1_under_the_id_of_m0(true);
    m1_goes_out_under_its_id_once_free(&mut b, x, id);
}

/// Simulator chaos seed 14409: `m2` (QoS 2) was queued ahead of `m1`, which waits for the id
/// node 1's copy sent it under (`m0`'s). When the wait for the older copy's state ends, `m2`
/// goes first, under a new id: never `m1`'s, which the client may hold for `m1` (a new
/// message under it is dropped there as a duplicate, and `m1` after it taken as new) — even
/// where the ids handed out come back to it, as a newer claim's quarter does.
#[test]
fn a_packet_id_kept_for_a_queued_message_is_given_to_no_other() {
    let (mut b, x, publisher) = resumed_without_state();
    let out = b.publish(publisher, publish("t", b"m0", QoS::AtLeastOnce, 9));
    let m0 = out.publishes(x)[0].packet_id.unwrap();
    let out = b.publish(publisher, publish("t", b"m2", QoS::ExactlyOnce, 10));
    assert!(
        out.publishes(x).is_empty(),
        "m2 waits for the older copy's state"
    );
    // Node 1's copy, itself in doubt, comes back with m1 under m0's id: the wait goes on.
    let mut late = older_copy_with_m1_in_flight_as(m0);
    late.record.qos2_state_elsewhere = true;
    b.event(Event::ImportLate {
        client: client("x"),
        epoch: Epoch(2),
        holder: NodeId(1),
        export: late,
        page: Vec::new(),
    });
    let out = b.puback(x, m0);
    assert!(out.publishes(x).is_empty(), "m2 still waits, m1 behind it");
    // The ids handed out come back to m0's (a newer claim of this quarter starts there).
    b.broker
        .sessions
        .get_mut(&client("x"))
        .unwrap()
        .next_packet_id = m0.get();

    let out = b.tick_after_millis(crate::broker::delivery::QOS2_STATE_WAIT);
    let sent = out.publishes(x);
    assert_eq!(payloads(&sent), vec!["m2", "m1"]);
    assert_ne!(sent[0].packet_id, Some(m0), "m0's id is kept for m1");
    assert_eq!((sent[1].packet_id, sent[1].dup), (Some(m0), true));
}

/// `m1` waits for its packet id behind more than a page of the queue (`QUEUE_PAGE`) when the
/// node restarts. Its id is known as kept from the start (`Op::PutKeptIds`), not only once
/// `m1`'s page is read: none of the messages ahead of it is given the id, which the client may
/// hold for `m1`.
#[test]
fn a_packet_id_kept_far_back_in_the_queue_is_kept_across_a_restart() {
    let (mut b, x, publisher) = resumed_without_state();
    let out = b.publish(publisher, publish("t", b"m0", QoS::AtLeastOnce, 9));
    let m0 = out.publishes(x)[0].packet_id.unwrap();
    b.lose(x);
    let ahead = crate::broker::session::QUEUE_PAGE + 8;
    for i in 0..ahead {
        b.publish(
            publisher,
            publish("t", b"q", QoS::AtLeastOnce, 10 + i as u16),
        );
    }
    b.event(Event::ImportLate {
        client: client("x"),
        epoch: Epoch(2),
        holder: NodeId(1),
        export: older_copy_with_m1_in_flight_as(m0),
        page: Vec::new(),
    });
    b.restart_after(1);
    b.broker.join_cluster(NodeId(2));
    let (x, out) = b.connect_as(v3("x", false), 2);
    assert!(out.connack(x).session_present);
    let mut sent: std::collections::VecDeque<_> = out.publishes(x).into();
    assert_eq!(
        (sent[0].packet_id, sent[0].dup),
        (Some(m0), true),
        "m0 again"
    );
    // The ids handed out come back to m0's, as in the test above.
    b.broker
        .sessions
        .get_mut(&client("x"))
        .unwrap()
        .next_packet_id = m0.get();
    let mut delivered = 0;
    while let Some(publish) = sent.pop_front() {
        if publish.payload.as_ref() == &b"m1"[..] {
            assert_eq!((publish.packet_id, publish.dup), (Some(m0), true));
            assert_eq!(
                delivered,
                ahead + 1,
                "m1 last, after m0 and every message ahead"
            );
            return;
        }
        assert!(
            publish.packet_id != Some(m0) || delivered == 0,
            "message {delivered} was given m0's id, kept for m1"
        );
        delivered += 1;
        sent.extend(b.puback(x, publish.packet_id.unwrap()).publishes(x));
    }
    panic!("m1 never went out ({delivered} delivered)");
}

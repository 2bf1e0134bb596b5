//! A session resumed without the state of an older copy it could not reach (a takeover's
//! fallback) does not know which of its client's QoS 2 PUBLISHes that copy received: a re-sent
//! one (DUP = 1) with an id it does not know waits, unacknowledged, until the copy's ids are
//! recovered; then a duplicate is acknowledged alone and any other is delivered. PUBRECs keep
//! the order of their PUBLISHes throughout.

use super::stranded::node;
use super::*;
use crate::cluster::ClusterEvent;
use crate::ids::{Epoch, NodeId};

/// Node 2, with `y` subscribed to `t` at QoS 2, takes `pub` over at epoch 2 from node 1
/// without reaching it; returns the node and the connections of `y` and `pub`.
fn resumed_without_state() -> (Harness, ConnId, ConnId) {
    let mut b = node(2);
    let y = b.connect_ok(v3("y", false));
    b.subscribe(y, subscribe(1, "t", QoS::ExactlyOnce));
    b.event(Event::Cluster(ClusterEvent::Owner {
        client: client("pub"),
        owner: NodeId(2),
        epoch: Epoch(2),
        kept: true,
        moved_from: None,
        subscriptions: Vec::new(),
    }));
    b.event(Event::ImportBegin {
        client: client("pub"),
    });
    b.event(Event::ImportState {
        client: client("pub"),
        export: fallback(2, Vec::new()),
    });
    b.event(Event::ImportDone {
        client: client("pub"),
    });
    let (publisher, out) = b.connect_as(v3("pub", false), 2);
    assert!(out.connack(publisher).session_present);
    (b, y, publisher)
}

fn resent(payload: &'static [u8], id: u16) -> Publish {
    Publish {
        dup: true,
        ..publish("t", payload, QoS::ExactlyOnce, id)
    }
}

fn pubrecs(out: &Out, conn: ConnId) -> Vec<u16> {
    out.to(conn)
        .into_iter()
        .filter_map(|p| match p {
            Packet::PubRec(rec) => Some(rec.packet_id.get()),
            _ => None,
        })
        .collect()
}

fn recovered(b: &mut Harness, ids: &[u16]) -> Out {
    b.event(Event::ImportLate {
        client: client("pub"),
        epoch: Epoch(2),
        holder: crate::ids::NodeId(1),
        export: late_copy(
            Vec::new(),
            ids.iter().map(|id| pid(*id)).collect(),
            Vec::new(),
        ),
        page: Vec::new(),
    })
}

#[test]
fn re_sent_qos2_publishes_wait_for_the_older_copy_and_only_the_ones_it_lacked_are_delivered() {
    let (mut b, y, publisher) = resumed_without_state();

    // m1 reached the older copy before the client lost it; m3 never did. Both come again.
    let out = b.publish(publisher, resent(b"m1", 7));
    assert!(out.to(publisher).is_empty() && out.publishes(y).is_empty());
    // A first send is new whatever the older copy knows: delivered at once, but its PUBREC
    // waits behind m1's.
    let out = b.publish(publisher, publish("t", b"m2", QoS::ExactlyOnce, 8));
    assert_eq!(payloads(&out.publishes(y)), vec!["m2"]);
    assert!(pubrecs(&out, publisher).is_empty());
    let out = b.publish(publisher, resent(b"m3", 9));
    assert!(out.to(publisher).is_empty() && out.publishes(y).is_empty());
    // Sent again on the same connection while it waits: still one PUBREC.
    let out = b.publish(publisher, resent(b"m3", 9));
    assert!(out.to(publisher).is_empty());

    let out = recovered(&mut b, &[7]);
    assert_eq!(pubrecs(&out, publisher), vec![7, 8, 9]);
    assert_eq!(payloads(&out.publishes(y)), vec!["m3"]);
    // The session knows its client's ids now, also after a restart.
    let stored = b.stored_session("pub").unwrap();
    assert!(!stored.record.qos2_state_elsewhere);
    let out = b.publish(publisher, resent(b"m1", 7));
    assert_eq!(pubrecs(&out, publisher), vec![7]);
    assert!(out.publishes(y).is_empty());
}

#[test]
fn an_id_released_meanwhile_is_not_taken_back_from_the_older_copy() {
    let (mut b, y, publisher) = resumed_without_state();
    // The older copy acknowledged m1 (id 5) before it was cut off; the client releases it
    // here and reuses the id.
    let out = b.pubrel(publisher, pid(5));
    match out.only(publisher) {
        Packet::PubComp(comp) => assert!(!comp.reason.is_error()),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    recovered(&mut b, &[5]);
    let out = b.publish(publisher, resent(b"m2", 5));
    assert_eq!(payloads(&out.publishes(y)), vec!["m2"]);
}

#[test]
fn the_wait_survives_a_restart_and_held_publishes_go_with_their_connection() {
    let (mut b, y, publisher) = resumed_without_state();
    b.publish(publisher, resent(b"m1", 7));
    b.lose(publisher);
    b.restart_after(1);
    b.broker.join_cluster(NodeId(2));
    assert!(b.stored_session("pub").unwrap().record.qos2_state_elsewhere);
    let _ = y;
    let y = b.connect_ok(v3("y", false));
    let (publisher, out) = b.connect_as(v3("pub", false), 2);
    assert!(out.connack(publisher).session_present);
    let out = b.publish(publisher, resent(b"m1", 7));
    assert!(out.to(publisher).is_empty());
    // The older copy never got m1: it is delivered once, acknowledged once.
    let out = b.event(Event::ImportLate {
        client: client("pub"),
        epoch: Epoch(2),
        holder: crate::ids::NodeId(1),
        export: late_copy(Vec::new(), Vec::new(), Vec::new()),
        page: Vec::new(),
    });
    assert_eq!(pubrecs(&out, publisher), vec![7]);
    assert_eq!(payloads(&out.publishes(y)), vec!["m1"]);
}

/// Two copies were out of reach: the first one back had itself resumed without the other's
/// state, so it settles only what it knows; a re-send it does not know waits for the second.
#[test]
fn a_late_copy_that_itself_lacked_state_settles_only_what_it_knows() {
    let (mut b, y, publisher) = resumed_without_state();
    let out = b.publish(publisher, resent(b"m1", 7));
    assert!(out.to(publisher).is_empty());
    let out = b.publish(publisher, resent(b"m2", 8));
    assert!(out.to(publisher).is_empty());

    let mut first = late_copy(Vec::new(), vec![pid(7)], Vec::new());
    first.record.qos2_state_elsewhere = true;
    let out = b.event(Event::ImportLate {
        client: client("pub"),
        epoch: Epoch(2),
        holder: crate::ids::NodeId(1),
        export: first,
        page: Vec::new(),
    });
    assert_eq!(
        pubrecs(&out, publisher),
        vec![7],
        "m1 is a duplicate, acknowledged alone"
    );
    assert!(
        out.publishes(y).is_empty(),
        "m2 still waits: the other copy may have it"
    );

    let out = recovered(&mut b, &[8]);
    assert_eq!(pubrecs(&out, publisher), vec![8]);
    assert!(
        out.publishes(y).is_empty(),
        "m2 was received by the second copy"
    );
}

/// The older copy never comes back (its node is gone for good): a re-sent PUBLISH does not
/// wait for it forever, which would stall the publisher's acknowledgements behind it. After
/// `QOS2_STATE_WAIT` it is taken as new: routed and acknowledged, in its place.
#[test]
fn a_held_resend_is_routed_when_the_older_copy_does_not_come_back() {
    use crate::broker::delivery::QOS2_STATE_WAIT;
    let (mut b, y, publisher) = resumed_without_state();
    let out = b.publish(publisher, resent(b"m1", 7));
    assert!(out.to(publisher).is_empty(), "waits for the older copy");
    let out = b.tick_after_millis(QOS2_STATE_WAIT - 1);
    assert!(out.to(publisher).is_empty() && out.publishes(y).is_empty());
    let out = b.tick_after_millis(1);
    assert_eq!(pubrecs(&out, publisher), vec![7]);
    assert_eq!(payloads(&out.publishes(y)), vec!["m1"]);
    let stats = b.broker.stats();
    assert_eq!(
        (
            stats.qos2_state_waits_total,
            stats.qos2_state_waits_expired_total
        ),
        (1, 1),
        "one wait, run out (berth_qos2_state_waits_*_total)"
    );
    // Taken as new, so a later re-send under the same id is a duplicate, acknowledged alone.
    let out = b.publish(publisher, resent(b"m1", 7));
    assert_eq!(pubrecs(&out, publisher), vec![7]);
    assert!(out.publishes(y).is_empty());
}

/// Simulator seed 23: node 2 holds an older copy of `pub` (epoch 1, complete); node 1 claims the
/// session at epoch 2 and receives QoS 2 PUBLISH id 7 there; the client comes back to node 2
/// (epoch 3) while node 1 cannot be reached. The stand-in merged with the copy here lacks what
/// node 1 received: a re-sent id 7 waits for node 1's copy (a duplicate, acknowledged alone)
/// instead of being taken as new and delivered twice.
#[test]
fn an_older_copy_here_does_not_stand_for_the_owner_it_could_not_reach() {
    let mut b = node(2);
    let y = b.connect_ok(v3("y", false));
    b.subscribe(y, subscribe(1, "t", QoS::ExactlyOnce));
    let (publisher, _) = b.connect_as(v3("pub", false), 1);
    b.lose(publisher);
    b.event(owner(1, 2));
    // Node 1 never pulled the copy here; the session comes back at epoch 3.
    b.event(owner(2, 3));
    b.event(Event::ImportBegin {
        client: client("pub"),
    });
    b.event(Event::ImportState {
        client: client("pub"),
        export: fallback(3, Vec::new()),
    });
    b.event(Event::ImportDone {
        client: client("pub"),
    });
    let (publisher, out) = b.connect_as(v3("pub", false), 3);
    assert!(out.connack(publisher).session_present);
    // Node 1's copy is newer than the one here, so it may also have delivered QoS 2 messages
    // this copy holds (the two may share an ancestor): the session's deliveries wait for it
    // too, not only the client's re-sends (simulator seed 1370).
    let stored = b.stored_session("pub").unwrap().record;
    assert!(stored.qos2_state_elsewhere);
    let other = b.connect_ok(v3("other", true));
    b.subscribe(publisher, subscribe(2, "back", QoS::ExactlyOnce));
    let out = b.publish(other, publish("back", b"d1", QoS::ExactlyOnce, 1));
    assert!(
        out.publishes(publisher).is_empty(),
        "waits for node 1's copy"
    );

    let out = b.publish(publisher, resent(b"m1", 7));
    assert!(
        out.to(publisher).is_empty() && out.publishes(y).is_empty(),
        "node 1 may have received it: it waits for node 1's copy"
    );
    let out = b.event(Event::ImportLate {
        client: client("pub"),
        epoch: Epoch(3),
        holder: crate::ids::NodeId(1),
        export: late_copy(Vec::new(), vec![pid(7)], Vec::new()),
        page: Vec::new(),
    });
    assert_eq!(pubrecs(&out, publisher), vec![7]);
    assert!(out.publishes(y).is_empty(), "received by node 1: not again");
    assert_eq!(
        payloads(&out.publishes(publisher)),
        vec!["d1"],
        "node 1's copy is back: the held delivery goes out"
    );
    let record = b.stored_session("pub").unwrap().record;
    assert!(!record.incoming_qos2_elsewhere && !record.qos2_state_elsewhere);
    // The wait ends with the copy back: not counted as run out, also when its timer fires.
    b.tick_after_millis(crate::broker::delivery::QOS2_STATE_WAIT);
    let stats = b.broker.stats();
    assert_eq!(
        (
            stats.qos2_state_waits_total,
            stats.qos2_state_waits_expired_total
        ),
        (1, 0)
    );
}

/// Simulator seed 875: node 2 received QoS 2 PUBLISHes 7 and 8 of `pub` (epoch 1); node 1
/// claimed the session (epoch 2) without reaching node 2, and the client released id 8 there.
/// The state node 1 hands back to node 2 (epoch 3) names the copy it lacks: node 2's, at epoch
/// 1 — this one. The merge takes its ids back, less the one released since: a re-sent 7 is a
/// duplicate, acknowledged alone at once, and a new message under id 8 is delivered.
#[test]
fn the_copy_a_session_lacked_completes_it_when_they_merge() {
    let mut b = node(2);
    let y = b.connect_ok(v3("y", false));
    b.subscribe(y, subscribe(1, "t", QoS::ExactlyOnce));
    let (publisher, _) = b.connect_as(v3("pub", false), 1);
    for (payload, id) in [(&b"m1"[..], 7), (b"m2", 8)] {
        let out = b.publish(publisher, publish("t", payload, QoS::ExactlyOnce, id));
        assert_eq!(out.publishes(y).len(), 1);
    }
    b.lose(publisher);
    b.event(owner(1, 2));
    b.event(owner(2, 3));
    b.event(Event::ImportBegin {
        client: client("pub"),
    });
    // Node 1's state: only the client's side in doubt (an older copy there stood in for this
    // one's deliveries), lacking node 2's copy of epoch 1, id 8 released meanwhile.
    let mut export = fallback(3, Vec::new());
    export.record.qos2_state_elsewhere = false;
    export.record.incoming_qos2_elsewhere = true;
    export.record.qos2_doubt = crate::store::Qos2Doubt {
        lacking: Some(crate::store::CopyRef {
            node: NodeId(2),
            epoch: Epoch(1),
        }),
        earlier: Vec::new(),
        released: vec![pid(8)],
    };
    b.event(Event::ImportState {
        client: client("pub"),
        export,
    });
    b.event(Event::ImportDone {
        client: client("pub"),
    });
    let (publisher, out) = b.connect_as(v3("pub", false), 3);
    assert!(out.connack(publisher).session_present);
    let stored = b.stored_session("pub").unwrap();
    assert!(!stored.record.qos2_state_elsewhere && !stored.record.incoming_qos2_elsewhere);
    assert_eq!(stored.incoming_qos2, vec![pid(7)]);

    let out = b.publish(publisher, resent(b"m1", 7));
    assert_eq!(
        pubrecs(&out, publisher),
        vec![7],
        "a duplicate, known at once"
    );
    assert!(out.publishes(y).is_empty(), "m1 reached y once");
    let out = b.publish(publisher, resent(b"m3", 8));
    assert_eq!(
        payloads(&out.publishes(y)),
        vec!["m3"],
        "id 8 ended at node 1"
    );
}

/// A PUBREL while the state is in doubt is written down in the session's record (what a
/// restart and a takeover read), whether or not the id was known here.
#[test]
fn releases_while_in_doubt_are_stored_with_the_session() {
    let (mut b, _y, publisher) = resumed_without_state();
    b.publish(publisher, publish("t", b"m1", QoS::ExactlyOnce, 4));
    b.pubrel(publisher, pid(4));
    b.pubrel(publisher, pid(9));
    let record = b.stored_session("pub").unwrap().record;
    assert_eq!(record.qos2_doubt.released, vec![pid(4), pid(9)]);
    assert!(record.qos2_state_elsewhere);
}

/// Node `node` claims `pub` at `epoch`, keeping the session.
fn owner(node: u64, epoch: u64) -> Event {
    Event::Cluster(ClusterEvent::Owner {
        client: client("pub"),
        owner: NodeId(node),
        epoch: Epoch(epoch),
        kept: true,
        moved_from: None,
        subscriptions: Vec::new(),
    })
}

/// Simulator seed 5861: the session resumed without node 1's copy (named by its claim); a
/// stale copy on node 3 (pulled before, its release lost) comes back first, complete and
/// empty. It is not the copy the session lacks: the re-send it does not know keeps waiting,
/// and node 1's copy, which has it, settles it as a duplicate (before, node 3's copy ended
/// the wait and m1 was delivered a second time).
#[test]
fn a_stale_copy_from_another_node_does_not_end_the_wait_for_the_one_lacked() {
    let mut b = node(2);
    let y = b.connect_ok(v3("y", false));
    b.subscribe(y, subscribe(1, "t", QoS::ExactlyOnce));
    b.event(owner(2, 2));
    b.event(Event::ImportBegin {
        client: client("pub"),
    });
    let mut state = fallback(2, Vec::new());
    state.record.qos2_doubt.lacking = Some(crate::store::CopyRef {
        node: NodeId(1),
        epoch: Epoch(1),
    });
    b.event(Event::ImportState {
        client: client("pub"),
        export: state,
    });
    b.event(Event::ImportDone {
        client: client("pub"),
    });
    let (publisher, out) = b.connect_as(v3("pub", false), 2);
    assert!(out.connack(publisher).session_present);
    let out = b.publish(publisher, resent(b"m1", 7));
    assert!(out.to(publisher).is_empty(), "m1's re-send waits");

    let out = b.event(Event::ImportLate {
        client: client("pub"),
        epoch: Epoch(2),
        holder: NodeId(3),
        export: late_copy(Vec::new(), Vec::new(), Vec::new()),
        page: Vec::new(),
    });
    assert!(
        pubrecs(&out, publisher).is_empty(),
        "still waiting for node 1's copy"
    );
    assert!(out.publishes(y).is_empty());

    let out = b.event(Event::ImportLate {
        client: client("pub"),
        epoch: Epoch(2),
        holder: NodeId(1),
        export: late_copy(Vec::new(), vec![pid(7)], Vec::new()),
        page: Vec::new(),
    });
    assert_eq!(pubrecs(&out, publisher), vec![7]);
    assert!(out.publishes(y).is_empty(), "node 1 had m1: a duplicate");
}

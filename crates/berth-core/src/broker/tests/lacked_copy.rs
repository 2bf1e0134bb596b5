//! A session in doubt about the QoS 2 state of the copy it lacks (`Qos2Wait::lacking`): what
//! settles that doubt and what does not, found with the simulator's `--scenario lost-release`
//! (each takeover's release lost on the way with probability 0.5), session 37.

use super::delivery_wait::{older_copy_with_m1_in_flight_as, sent_qos2};
use super::stranded::{claim, node, pull_back};
use super::*;
use crate::broker::delivery::QOS2_STATE_WAIT;
use crate::cluster::ClusterEvent;
use crate::ids::{Epoch, MessageId, NodeId};
use crate::store::{CopyRef, SubscriptionRecord};

/// Node 2 resumes `x` (subscribed to `t` at QoS 2) at `epoch` without reaching the copy it
/// lacks (`lacking`); returns the node and `x`'s connection.
fn resumed_lacking(epoch: u64, lacking: CopyRef) -> (Harness, ConnId) {
    let mut b = node(2);
    claimed_without_its_state(&mut b, &[(2, epoch)], lacking);
    let (x, out) = b.connect_as(v3("x", false), epoch);
    assert!(out.connack(x).session_present);
    (b, x)
}

/// The claims of `x` in `claims` (node, epoch) reach `b`, node 2, which takes the last over
/// without reaching the copy before it: its state is a fallback lacking `lacking`.
fn claimed_without_its_state(b: &mut Harness, claims: &[(u64, u64)], lacking: CopyRef) {
    claimed_without_states(b, claims, lacking, &[]);
}

/// As `claimed_without_its_state`, the fallback lacking `earlier` copies before `lacking`.
fn claimed_without_states(
    b: &mut Harness,
    claims: &[(u64, u64)],
    lacking: CopyRef,
    earlier: &[CopyRef],
) {
    for &(owner, epoch) in claims {
        b.event(Event::Cluster(ClusterEvent::Owner {
            client: client("x"),
            owner: NodeId(owner),
            epoch: Epoch(epoch),
            kept: true,
            moved_from: None,
            subscriptions: Vec::new(),
        }));
    }
    let Some(&(_, epoch)) = claims.last() else {
        return;
    };
    b.event(Event::ImportBegin {
        client: client("x"),
    });
    let mut state = fallback(epoch, vec![(filter("t"), qos2_subscription())]);
    state.record.qos2_doubt.lacking = Some(lacking);
    state.record.qos2_doubt.earlier = earlier.to_vec();
    b.event(Event::ImportState {
        client: client("x"),
        export: state,
    });
    b.event(Event::ImportDone {
        client: client("x"),
    });
}

fn qos2_subscription() -> SubscriptionRecord {
    SubscriptionRecord {
        options: SubscriptionOptions::new(QoS::ExactlyOnce),
        subscription_id: None,
    }
}

fn copy(node: u64, epoch: u64) -> CopyRef {
    CopyRef {
        node: NodeId(node),
        epoch: Epoch(epoch),
    }
}

/// Node 1 claims `x` at epoch 4 without pulling node 2's copy (its release never came); node 2
/// takes it back at epoch 5 from node 1, whose state (a fallback) lacks `lacking`.
fn taken_back_lacking(b: &mut Harness, lacking: CopyRef) {
    claimed_without_its_state(b, &[(1, 4), (2, 5)], lacking);
}

/// The state `from` exports of `x` for the claim at `epoch`, as the puller decodes it.
fn state_for(from: &mut Harness, epoch: u64) -> Box<crate::cluster::SessionExport> {
    let mut export = from
        .broker
        .export_session(&client("x"), Epoch(epoch))
        .unwrap()
        .unwrap();
    export.record.epoch = Epoch(epoch);
    Box::new(export)
}

/// `holder`'s copy of `x` (`export`), recovered late by node 2, whose session serves epoch 5.
fn recovered_late(b: &mut Harness, holder: u64, export: Box<crate::cluster::SessionExport>) -> Out {
    b.event(Event::ImportLate {
        client: client("x"),
        epoch: Epoch(5),
        holder: NodeId(holder),
        export,
        page: Vec::new(),
    })
}

/// m1's identity in `older_copy_with_m1_in_flight_as`, given one here.
const M1: MessageId = MessageId {
    origin: NodeId(1),
    seq: 77,
};

/// Simulator seed 77: `x` resumed at node 2 (epoch 5) without node 1's copy of epoch 4. Node
/// 3's copy, pulled at epoch 2 with its release lost, comes back first with m1 in its window:
/// it is older than the lacked copy, which took the session on from it and may have completed
/// m1 since. So m1 waits, and when node 1's copy shows it delivered m1, its exchange ends, and
/// without a PUBREL: node 1 completed m1 under id 11, which the client may have been given
/// for another message since (session 41, seed 19957). (Before, node 3's complete state ended
/// the wait and m1 went out a second time.)
#[test]
fn an_older_copy_from_another_node_does_not_end_the_wait_for_the_lacked_one() {
    let (mut b, x) = resumed_lacking(5, copy(1, 4));
    let mut stale = older_copy_with_m1_in_flight_as(pid(11));
    set_m1_identity(&mut stale);
    stale.served = Some(Epoch(1));
    let out = recovered_late(&mut b, 3, stale);
    assert!(
        out.publishes(x).is_empty(),
        "m1 waits for node 1's copy, which may have completed it"
    );

    // Node 1's copy took m1 and holds it no more: it delivered it.
    let mut lacked = late_copy(Vec::new(), Vec::new(), vec![M1]);
    lacked.served = Some(Epoch(4));
    let out = recovered_late(&mut b, 1, lacked);
    assert!(out.publishes(x).is_empty(), "node 1 delivered m1");
    assert!(out.to(x).is_empty(), "no stale PUBREL for id 11");
    assert!(b.stored_inflight("x").is_empty());
    let out = b.tick_after_millis(QOS2_STATE_WAIT);
    assert!(out.publishes(x).is_empty());
}

/// The same copy from a peer too old to say which claim it served: taken, as before, for a
/// copy that may be newer, its state ends the wait and m1 goes out under the id it was sent
/// under.
#[test]
fn a_late_copy_that_does_not_say_which_claim_it_served_ends_the_wait_as_before() {
    let (mut b, x) = resumed_lacking(5, copy(1, 4));
    let mut stale = older_copy_with_m1_in_flight_as(pid(11));
    set_m1_identity(&mut stale);
    let out = recovered_late(&mut b, 3, stale);
    let sent = out.publishes(x);
    assert_eq!(payloads(&sent), vec!["m1"]);
    assert_eq!((sent[0].packet_id, sent[0].dup), (Some(pid(11)), true));
}

fn set_m1_identity(export: &mut crate::cluster::SessionExport) {
    if let Some((_, crate::store::InflightRecord::Sent { delivery, .. })) =
        export.inflight.first_mut()
    {
        let mut message = (*delivery.message).clone();
        message.id = Some(M1);
        delivery.message = std::sync::Arc::new(message);
    }
}

/// Node 2 resumed `x` at epoch 3 without node 3's copy of epoch 2, and holds m1 (QoS 2) for
/// it; `x` has gone offline.
fn m1_held_for_node3s_copy() -> Harness {
    let (mut b, x) = resumed_lacking(3, copy(3, 2));
    let publisher = b.connect_ok(v5("pub", true, None));
    let out = b.publish(publisher, publish("t", b"m1", QoS::ExactlyOnce, 1));
    assert!(out.publishes(x).is_empty(), "m1 waits for node 3's copy");
    b.lose(x);
    b
}

/// Simulator seed 864: node 2's copy of `x`, in doubt about node 3's copy of epoch 2, held a
/// QoS 2 message from `t0` on. The session moved away and came back (epoch 5) with a state in
/// doubt about another copy: node 3's of epoch 4. The wait for that copy starts at the merge;
/// the one begun at `t0` would run out 10 s after it and let the message go at once.
#[test]
fn a_merge_that_lacks_another_copy_waits_for_it_afresh() {
    let mut b = m1_held_for_node3s_copy();
    b.tick_after_millis(20_000);

    // Back at epoch 5, lacking node 3's copy of epoch 4.
    taken_back_lacking(&mut b, copy(3, 4));
    let (x, out) = b.connect_as(v3("x", false), 5);
    assert!(out.publishes(x).is_empty());
    let out = b.tick_after_millis(QOS2_STATE_WAIT - 20_000);
    assert!(
        out.publishes(x).is_empty(),
        "the first wait's end: node 3's copy of epoch 4 is still awaited"
    );
    let out = b.tick_after_millis(20_000);
    assert_eq!(
        payloads(&out.publishes(x)),
        vec!["m1"],
        "the new wait's end"
    );
}

/// Node 1's copy of `x` queues q1; node 2 pulled it (epoch 2, its release to node 1 lost) and
/// delivered q1, which the client completed there.
fn q1_completed_at_node2() -> (Harness, Harness) {
    let (a, mut b) = super::stale_copy::pulled_with_queued(&[b"q1"]);
    let (conn, out) = b.connect_as(v3("x", false), 2);
    let id = out.publish(conn).packet_id.unwrap();
    b.pubrec(conn, id);
    b.pubcomp(conn, id);
    b.lose(conn);
    (a, b)
}

/// Simulator seed 298: node 1's copy of `x` still queues q1, which node 2 pulled (epoch 2, the
/// release lost) and delivered. Node 1 takes the session back with two pulls of node 2's state
/// for one claim (an adopted claim beside its connection's); the second arrives after a newer
/// claim of node 1 moved the session on, as an overtaken import. It does not void what the
/// first said node 2 took: q1 goes out no more. (Before, it did, and the client took it twice.)
#[test]
fn a_second_pull_for_the_same_claim_keeps_what_the_first_said_was_taken() {
    let (mut a, mut b) = q1_completed_at_node2();

    for epoch in [3, 4] {
        a.event(claim(1, epoch));
        b.event(claim(1, epoch));
    }
    for _ in 0..2 {
        a.event(Event::ImportBegin {
            client: client("x"),
        });
    }
    for _ in 0..2 {
        a.event(Event::ImportState {
            client: client("x"),
            export: state_for(&mut b, 3),
        });
    }
    for _ in 0..2 {
        a.event(Event::ImportDone {
            client: client("x"),
        });
    }
    let (conn, out) = a.connect_as(v3("x", false), 4);
    assert!(out.connack(conn).session_present);
    assert!(out.publishes(conn).is_empty(), "node 2 delivered q1");
    assert!(a.stored_queue("x").is_empty());
}

/// Simulator seed 272: the import's pages settle when the last one is stored, before the old
/// copy is released (`Event::ImportComplete`), not when the import ends after the release: a
/// crash in between lost what node 2 took (its identities, and that it delivered q1), and node
/// 1's copy came back complete with q1 still queued.
#[test]
fn an_import_settles_its_pages_before_the_old_copy_is_released() {
    let (mut a, mut b) = q1_completed_at_node2();

    a.event(claim(1, 3));
    b.event(claim(1, 3));
    a.event(Event::ImportBegin {
        client: client("x"),
    });
    let export = state_for(&mut b, 3);
    let taken = export.seen.clone();
    assert_eq!(taken.len(), 1, "node 2 took q1");
    a.event(Event::ImportState {
        client: client("x"),
        export,
    });
    assert_eq!(
        a.stored_queue("x"),
        vec!["q1"],
        "the pages may still bring it"
    );
    a.event(Event::ImportComplete {
        client: client("x"),
        epoch: Epoch(3),
    });
    assert!(a.stored_queue("x").is_empty(), "node 2 delivered q1");
    let stored: Vec<MessageId> = a
        .stored_session("x")
        .unwrap()
        .seen
        .iter()
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(stored, taken);

    // A crash here, before `ImportDone`: what was settled is stored.
    a.restart_after(1);
    let (conn, out) = a.connect_as(v3("x", false), 3);
    assert!(out.publishes(conn).is_empty());
}

/// `x` connects to `h` at `epoch`: the session is there, and q1, completed by the client on
/// another copy, is not sent again; its exchange under `id` ends with a PUBREL, which the
/// client completes. Returns the connection.
fn back_with_q1_ended(h: &mut Harness, epoch: u64, id: PacketId) -> ConnId {
    let (conn, out) = h.connect_as(v3("x", false), epoch);
    assert!(out.connack(conn).session_present);
    assert!(out.publishes(conn).is_empty(), "q1 was completed before");
    let after_connack: Vec<Packet> = out.to(conn).into_iter().skip(1).collect();
    assert_eq!(after_connack, vec![Packet::PubRel(PubRel::new(id))]);
    h.pubcomp(conn, id);
    conn
}

/// Simulator seed 505: node 1 sent q1 under `id`, and node 2 pulled the session (its release
/// lost) and re-sent q1, which the client completed there. The client came back to node 1
/// while node 2 could not be reached; node 1's window holds q1, held for node 2's copy. Then
/// node 2 takes the session back: the state it pulls lacks exactly its own copy, which
/// completed q1, so q1's exchange in the imported window ends with a PUBREL instead of a
/// re-send the client would take as a new message.
#[test]
fn the_lacked_copy_ends_what_it_completed_when_the_session_comes_back_to_it() {
    let (mut a, mut b, conn, out, id) = super::stale_copy::sent_at_both_then_back(true);
    assert!(out.publishes(conn).is_empty());
    a.lose(conn);

    a.event(claim(2, 4));
    b.event(claim(2, 4));
    b.event(Event::ImportBegin {
        client: client("x"),
    });
    pull_back(&mut b, &mut a, 4);
    back_with_q1_ended(&mut b, 4, id);
    assert!(b.stored_inflight("x").is_empty() && b.stored_queue("x").is_empty());
}

/// Simulator seeds 3213 and 3344: node 2's copy of `x`, in doubt about node 3's copy of epoch
/// 2, merges a state in doubt about node 1's copy of epoch 4. The later lack is the one named:
/// node 1's copy came after this one and settles the earlier doubt or names it. A stale copy
/// from node 3 that comes back first no longer ends the wait as the copy "not known which".
#[test]
fn a_merge_of_two_doubts_about_different_nodes_names_the_later_copy() {
    let mut b = m1_held_for_node3s_copy();
    taken_back_lacking(&mut b, copy(1, 4));
    let record = b.stored_session("x").unwrap().record;
    assert_eq!(record.qos2_doubt.lacking, Some(copy(1, 4)));
    let (x, out) = b.connect_as(v3("x", false), 5);
    assert!(out.publishes(x).is_empty());

    for (holder, served) in [(3, 2), (1, 4)] {
        let mut late = late_copy(Vec::new(), Vec::new(), Vec::new());
        late.served = Some(Epoch(served));
        let out = recovered_late(&mut b, holder, late);
        let sent = payloads(&out.publishes(x));
        if holder == 3 {
            assert!(sent.is_empty(), "node 3's copy is older than node 1's");
        } else {
            assert_eq!(sent, vec!["m1"], "node 1's copy settles the doubt");
        }
    }
}

/// Simulator seed 1636: node 1's copy of `x` (epoch 1) was pulled by node 2 (epoch 2, the
/// release lost). Node 1 claimed `x` back (epoch 3) and crashed before its pull came back;
/// restarted, it replays that claim, overtaken by node 2's at epoch 4, and keeps it dormant.
/// Node 2 pulls from here: the copy is behind node 1's own claim, so it goes out in doubt about
/// node 2's copy of epoch 2 (which may have completed what it holds), not as complete, and its
/// queue as re-deliveries (node 2 may have sent them: seed 9547, a message re-sent with DUP = 0).
#[test]
fn a_copy_behind_its_nodes_own_overtaken_claim_is_exported_in_doubt() {
    let (mut a, _b) = super::stale_copy::pulled_with_queued(&[b"q1"]);
    a.restart_after(1);
    a.broker.join_cluster(NodeId(1));
    for (owner, epoch) in [(1, 1), (2, 2), (1, 3), (2, 4)] {
        a.event(claim(owner, epoch));
    }
    let export = state_for(&mut a, 4);
    assert!(export.record.qos2_state_elsewhere);
    assert_eq!(export.record.qos2_doubt.lacking, Some(copy(2, 2)));
    let (page, _) = a.broker.export_queue(&client("x"), None, 16).unwrap();
    assert!(
        !page.is_empty() && page.iter().all(|delivery| delivery.redelivery),
        "every queued message goes out with DUP = 1: {page:?}"
    );
}

/// Simulator `--scenario lost-release`, seed 904: node 2's copy of `x` (epoch 2) completed q1,
/// which node 1's copy (epoch 3) holds in its window, in doubt about node 2's copy. Node 3
/// claims at epoch 4 and node 1 takes `x` back at epoch 5 without reaching it: two doubts
/// meet, node 3's later copy is named, and node 2's is kept as lacked before it
/// (`Qos2Doubt::earlier`). When node 2 takes the session back, the state it pulls lacks its
/// copy only as an earlier lack, and q1's exchange ends with a PUBREL there as when it is the
/// lack named. (Before, q1 stayed in the window, held for node 3's copy, and went out again
/// when that wait ran out: the client took it twice.)
#[test]
fn a_copy_lacked_before_the_named_one_ends_what_it_completed_when_merged() {
    let (mut a, mut b, conn, _, id) = super::stale_copy::sent_at_both_then_back(true);
    a.lose(conn);
    claimed_without_its_state(&mut a, &[(3, 4), (1, 5)], copy(3, 4));
    let doubt = a.stored_session("x").unwrap().record.qos2_doubt;
    assert_eq!(doubt.lacking, Some(copy(3, 4)));
    assert_eq!(doubt.earlier, vec![copy(2, 2)]);

    for (owner, epoch) in [(3, 4), (1, 5), (2, 6)] {
        b.event(claim(owner, epoch));
    }
    a.event(claim(2, 6));
    b.event(Event::ImportBegin {
        client: client("x"),
    });
    pull_back(&mut b, &mut a, 6);
    let doubt = b.stored_session("x").unwrap().record.qos2_doubt;
    assert_eq!(
        doubt.lacking,
        Some(copy(3, 4)),
        "node 3's copy is still awaited"
    );
    assert!(
        doubt.earlier.is_empty(),
        "node 2's own copy is merged: {doubt:?}"
    );
    let conn = back_with_q1_ended(&mut b, 6, id);
    let out = b.tick_after_millis(QOS2_STATE_WAIT);
    assert!(
        out.publishes(conn).is_empty(),
        "nor when the wait for node 3 runs out"
    );
}

/// Simulator `--scenario lost-release`, seed 1155: node 1 sent q1 to `x` under `id`; node 2
/// pulled the session (epoch 2, the release lost) and the client completed q1 there. Node 3
/// pulls node 2's state for its claim at epoch 3 while node 1's claim (4) and its own next
/// claim (5, a second pull) are applied: the copy lands at epoch 5 but serves claim 3. Node
/// 1's state for claim 5 comes back lacking that copy, "node 3's of epoch 3", with q1 still in
/// its window. The copy here is the one lacked (it landed for claim 3, `Session::landed`) and
/// knows it took q1 (its pull's identities, settled when its pages were in, not voided by the
/// second pull's state), so q1's exchange ends with a PUBREL. (Before, neither held: q1 waited
/// for a copy that never came, and went out a second time when the wait ran out.)
#[test]
fn a_copy_that_landed_under_a_newer_claim_still_ends_what_it_took_when_it_is_lacked() {
    landed_under_a_newer_claim(false);
}

/// Seed 6058: the same with an earlier pull of node 3's, cut short, whose fallback state (it
/// brings no identities) ends while the other two run: the identities the claim-3 pull brought
/// are still settled when its pages are in.
#[test]
fn an_earlier_pull_cut_short_does_not_keep_a_later_one_from_settling() {
    landed_under_a_newer_claim(true);
}

/// See the two tests above; `fallback_first`: node 3 began a pull for a claim at epoch 3 that
/// ended with its fallback, and the pulls named above are for its claims 5 and 7.
fn landed_under_a_newer_claim(fallback_first: bool) {
    let (mut a, mut b, id) = super::stale_copy::sent_at_both(true);

    let mut c = node(3);
    let mut claims = vec![(3, 3), (1, 4), (3, 5)];
    if fallback_first {
        claims.extend([(1, 6), (3, 7)]);
    }
    for &(owner, epoch) in &claims {
        for h in [&mut a, &mut b, &mut c] {
            h.event(claim(owner, epoch));
        }
        if owner == 3 {
            c.event(Event::ImportBegin {
                client: client("x"),
            });
        }
    }
    let (copied, lacked) = if fallback_first { (5, 7) } else { (3, 5) };
    if fallback_first {
        let mut cut_short = fallback(3, vec![(filter("t"), qos2_subscription())]);
        cut_short.record.qos2_doubt.lacking = Some(copy(2, 2));
        c.event(Event::ImportState {
            client: client("x"),
            export: cut_short,
        });
        c.event(Event::ImportDone {
            client: client("x"),
        });
    }
    pull_back(&mut c, &mut b, copied);

    let mut lacking = state_for(&mut a, lacked);
    lacking.record.qos2_state_elsewhere = true;
    lacking.record.qos2_doubt.lacking = Some(copy(3, copied));
    for event in [
        Event::ImportState {
            client: client("x"),
            export: lacking,
        },
        Event::ImportComplete {
            client: client("x"),
            epoch: Epoch(lacked),
        },
        Event::ImportDone {
            client: client("x"),
        },
    ] {
        c.event(event);
    }
    let conn = back_with_q1_ended(&mut c, lacked, id);
    let out = c.tick_after_millis(QOS2_STATE_WAIT);
    assert!(out.publishes(conn).is_empty());
}

/// Node 2 resumes `x` at epoch 5 without node 3's copy of epoch 4, which took the session on
/// from node 1's of epoch 3 (lacked before it). Its older state holds m1 in flight under id 1
/// (brought here by a stale copy of node 4's, which served up to `stale_served`), held for
/// those copies. Returns node 2 and `x`'s connection.
fn m1_held_under_id_1_lacking_node3_after_node1(stale_served: u64) -> (Harness, ConnId) {
    let mut b = node(2);
    claimed_without_states(&mut b, &[(1, 3), (3, 4), (2, 5)], copy(3, 4), &[copy(1, 3)]);
    let (x, out) = b.connect_as(v3("x", false), 5);
    assert!(out.connack(x).session_present);
    let mut stale = late_copy(
        vec![(pid(1), sent_qos2(b"m1", Some(M1)))],
        Vec::new(),
        Vec::new(),
    );
    stale.served = Some(Epoch(stale_served));
    let out = recovered_late(&mut b, 4, stale);
    assert!(out.to(x).is_empty(), "m1 waits for the lacked copies");
    (b, x)
}

/// Node 1's copy of epoch 3, which took m1 and completed it (no longer in its window).
fn node1_completed_m1(in_doubt: bool) -> Box<crate::cluster::SessionExport> {
    let mut late = late_copy(Vec::new(), Vec::new(), vec![M1]);
    late.served = Some(Epoch(3));
    late.record.qos2_state_elsewhere = in_doubt;
    late
}

/// Simulator `--scenario lost-release` 0.5, seed 19957, in small. Node 1's copy, lacked before
/// node 3's, took the session on from the state here and completed m1 under id 1; node 3's
/// then sent m18 under id 1, which the client holds. Node 1's copy comes back first: m1's
/// exchange ends here without a PUBREL (the client would take it as m18's), and when node 3's
/// copy comes, m18 goes out again under id 1, a duplicate the client recognises. (Before, the
/// PUBREL for id 1 went out, and m18 reached the client twice.)
#[test]
fn a_copy_that_took_the_session_on_from_here_ends_what_it_completed_without_a_pubrel() {
    let (mut b, x) = m1_held_under_id_1_lacking_node3_after_node1(1);
    let out = recovered_late(&mut b, 1, node1_completed_m1(false));
    assert!(out.to(x).is_empty(), "no PUBLISH of m1, no PUBREL for id 1");
    assert!(b.stored_inflight("x").is_empty(), "m1's exchange ended");

    let m18 = MessageId {
        origin: NodeId(1),
        seq: 78,
    };
    let mut lacked = late_copy(
        vec![(pid(1), sent_qos2(b"m18", Some(m18)))],
        Vec::new(),
        vec![m18],
    );
    lacked.served = Some(Epoch(4));
    let out = recovered_late(&mut b, 3, lacked);
    let sent = out.publishes(x);
    assert_eq!(payloads(&sent), vec!["m18"]);
    assert_eq!((sent[0].packet_id, sent[0].dup), (Some(pid(1)), true));
}

/// The same copy in doubt itself (it lacked a copy of its own): it may not have known m1's
/// exchange here, so that exchange ends with a PUBREL, as before.
#[test]
fn a_late_copy_in_doubt_itself_still_ends_what_it_delivered_with_a_pubrel() {
    let (mut b, x) = m1_held_under_id_1_lacking_node3_after_node1(1);
    let out = recovered_late(&mut b, 1, node1_completed_m1(true));
    assert!(out.publishes(x).is_empty());
    assert_eq!(out.to(x), vec![Packet::PubRel(PubRel::new(pid(1)))]);
}

/// Once the wait ran out, m1 went out from here under id 1, which the client may hold for it:
/// node 1's copy then ends m1's exchange with a PUBREL.
#[test]
fn after_the_wait_ran_out_what_a_later_copy_completed_ends_with_a_pubrel() {
    let (mut b, x) = m1_held_under_id_1_lacking_node3_after_node1(1);
    let out = b.tick_after_millis(QOS2_STATE_WAIT);
    assert_eq!(payloads(&out.publishes(x)), vec!["m1"]);
    let out = recovered_late(&mut b, 1, node1_completed_m1(false));
    assert_eq!(out.to(x), vec![Packet::PubRel(PubRel::new(pid(1)))]);
}

/// Node 4's copy, which wrote m1 into the window here, served claim 3 itself: node 1's copy of
/// epoch 3 did not take the session on from it and never knew m1 under id 1, which the client
/// may hold for it. m1's exchange ends with a PUBREL, as before.
#[test]
fn a_copy_named_in_the_doubt_no_newer_than_the_window_here_ends_it_with_a_pubrel() {
    let (mut b, x) = m1_held_under_id_1_lacking_node3_after_node1(3);
    let out = recovered_late(&mut b, 1, node1_completed_m1(false));
    assert!(out.publishes(x).is_empty());
    assert_eq!(out.to(x), vec![Packet::PubRel(PubRel::new(pid(1)))]);
}

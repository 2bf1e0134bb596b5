//! A copy of a session that was pulled, its release lost (its node restarted before the
//! release reached it), meets the session again when the client comes back to its node: what
//! the session took since is not taken a second time.

use super::stranded::{claim, node, pull_back};
use super::*;
use crate::ids::Epoch;

/// Simulator seed 1994: node 1 holds `x` offline with QoS 2 messages q1, q2 queued; node 2
/// pulls it (epoch 2) and delivers both, the client completes q1 and leaves q2 unacknowledged;
/// node 1 never got the release. Back on node 1 (epoch 3), the imported window re-sends q2;
/// the stale queue here holds q1 and q2 too, and neither goes out again.
#[test]
fn a_stale_copys_queue_does_not_deliver_what_the_session_took_since() {
    let (mut a, mut b) = pulled_with_queued(&[b"q1", b"q2"]);
    let (conn, out) = b.connect_as(v3("x", false), 2);
    let sent = out.publishes(conn);
    assert_eq!(payloads(&sent), vec!["q1", "q2"]);
    let q1 = sent[0].packet_id.unwrap();
    b.pubrec(conn, q1);
    b.pubcomp(conn, q1);
    b.lose(conn);

    // Back on node 1, which still holds its copy.
    a.event(claim(1, 3));
    b.event(claim(1, 3));
    pull(&mut b, &mut a, 3);
    let (conn, out) = a.connect_as(v3("x", false), 3);
    assert!(out.connack(conn).session_present);
    let sent = out.publishes(conn);
    assert_eq!(
        payloads(&sent),
        vec!["q2"],
        "q1 was completed, q2 goes once"
    );
    assert!(sent[0].dup);
    assert!(a.stored_queue("x").is_empty());
}

/// Where the imported state still has the message queued, that copy (a page arriving after
/// the state) is the one taken: the message goes out once.
#[test]
fn a_message_both_copies_hold_queued_goes_out_once() {
    let (mut a, mut b) = pulled_with_queued(&[b"q1"]);
    // The client does not come to node 2; the session goes back to node 1.
    a.event(claim(1, 3));
    b.event(claim(1, 3));
    pull(&mut b, &mut a, 3);
    let (conn, out) = a.connect_as(v3("x", false), 3);
    assert_eq!(payloads(&out.publishes(conn)), vec!["q1"]);
}

/// Node 1 holds `x` (subscribed to `t` at QoS 2) offline with `queued` QoS 2 messages; node 2
/// claims it (epoch 2) and pulls it whole. Node 1's copy stays: the release never reaches it.
pub(super) fn pulled_with_queued(queued: &[&'static [u8]]) -> (Harness, Harness) {
    let mut a = node(1);
    let conn = a.connect_ok(v3("x", false));
    a.subscribe(conn, subscribe(1, "t", QoS::ExactlyOnce));
    a.lose(conn);
    let publisher = a.connect_ok(v3("pub", true));
    for (id, payload) in (1..).zip(queued) {
        a.publish(publisher, publish("t", payload, QoS::ExactlyOnce, id));
    }
    assert_eq!(a.stored_queue("x").len(), queued.len());
    let mut b = node(2);
    a.event(claim(2, 2));
    b.event(claim(2, 2));
    pull(&mut a, &mut b, 2);
    (a, b)
}

/// `to` takes `x` over at `epoch` and pulls it whole from `from`.
fn pull(from: &mut Harness, to: &mut Harness, epoch: u64) {
    to.event(Event::ImportBegin {
        client: client("x"),
    });
    pull_back(to, from, epoch);
}

/// A pull cut short after the state (the stream broke before the queue pages): the takeover
/// goes on with its fallback, and the older copy's messages here stay — the imported state
/// had only queued them, and its pages never came. Its QoS 2 message waits for the copy the
/// fallback lacks (that copy pulled this one and may have delivered it), and goes out when
/// the wait ends.
#[test]
fn a_pull_cut_short_keeps_the_older_copys_messages() {
    let (mut a, mut b) = pulled_with_queued(&[b"q1"]);
    a.event(claim(1, 3));
    b.event(claim(1, 3));
    a.event(Event::ImportBegin {
        client: client("x"),
    });
    let mut export = b
        .broker
        .export_session(&client("x"), Epoch(3))
        .unwrap()
        .unwrap();
    export.record.epoch = Epoch(3);
    a.event(Event::ImportState {
        client: client("x"),
        export: Box::new(export),
    });
    a.event(Event::ImportState {
        client: client("x"),
        export: fallback(3, Vec::new()),
    });
    a.event(Event::ImportDone {
        client: client("x"),
    });
    let (conn, out) = a.connect_as(v3("x", false), 3);
    assert!(out.publishes(conn).is_empty(), "waits for the lacked copy");
    let out = a.tick_after_millis(crate::broker::delivery::QOS2_STATE_WAIT);
    assert_eq!(payloads(&out.publishes(conn)), vec!["q1"]);
}

/// Reads before a commit see what the batch removed from the middle of a queue (a group of
/// events shares one batch): a dropped message is not paged in again, and a full page stays
/// full.
#[test]
fn a_read_through_the_batch_skips_what_it_dequeued() {
    let mut h = Harness::new();
    let conn = h.connect_ok(v3("x", false));
    h.subscribe(conn, subscribe(1, "t", QoS::AtLeastOnce));
    h.lose(conn);
    let publisher = h.connect_ok(v3("pub", true));
    for (id, payload) in (1..).zip([&b"q1"[..], b"q2", b"q3", b"q4"]) {
        h.publish(publisher, publish("t", payload, QoS::AtLeastOnce, id));
    }
    let queued = h
        .store()
        .read_queue(&client("x"), crate::ids::QueueSeq(0), 10)
        .unwrap();
    let (second, delivery) = queued[1].clone();
    let mut batch = crate::store::Batch::default();
    // Rewritten (as a merge marks it re-delivered), then dropped.
    batch.push(crate::store::Op::Enqueue {
        client: client("x"),
        seq: second,
        delivery,
    });
    batch.push(crate::store::Op::Dequeue {
        client: client("x"),
        seq: second,
    });
    let page = crate::broker::queue_page::read_queue_through(
        h.store(),
        &batch,
        &client("x"),
        crate::ids::QueueSeq(0),
        3,
    )
    .unwrap();
    let payloads: Vec<&[u8]> = page
        .iter()
        .map(|(_, d)| d.message.payload.as_ref())
        .collect();
    assert_eq!(payloads, vec![&b"q1"[..], b"q3", b"q4"]);
}

/// Simulator `--scenario lost-release`, seed 949: node 2 sent q1 (in flight there) after
/// pulling the session, its release to node 1 lost, so node 1 still has q1 queued. The client
/// comes to node 1 while node 2 cannot be reached (fallback: node 1 merges its own copy), then
/// goes back to node 2, which pulls node 1's copy: the import has q1 queued and took it, the
/// copy at node 2 has it in flight. It goes out once: from node 2's window, the page's being
/// the duplicate. (Dropped from the window because the import took it, while the page's copy
/// was dropped as one node 2 took, it reached the client from neither.)
#[test]
fn a_message_in_flight_here_and_queued_in_the_import_goes_out_once() {
    let (mut a, mut b) = pulled_with_queued(&[b"q1"]);
    let (conn, out) = b.connect_as(v3("x", false), 2);
    assert_eq!(payloads(&out.publishes(conn)), vec!["q1"]);
    b.lose(conn);

    resume_at_node1_without_node2(&mut a, &mut b, Vec::new());

    // Back at node 2, which pulls node 1's copy.
    a.event(claim(2, 4));
    b.event(claim(2, 4));
    pull(&mut a, &mut b, 4);
    let (conn, out) = b.connect_as(v3("x", false), 4);
    assert!(out.connack(conn).session_present);
    let sent = out.publishes(conn);
    assert_eq!(payloads(&sent), vec!["q1"], "q1 goes out once");
    assert!(sent[0].dup);
}

/// Node 1 sent q1 to `x` under packet id `id`, and node 2 pulled the session (epoch 2, its
/// release to node 1 lost) and re-sent q1 under the same id; with `complete`, the client
/// completed it there. Returns both nodes and `id`.
pub(super) fn sent_at_both(complete: bool) -> (Harness, Harness, PacketId) {
    let mut a = node(1);
    let conn = a.connect_ok(v3("x", false));
    a.subscribe(conn, subscribe(1, "t", QoS::ExactlyOnce));
    let publisher = a.connect_ok(v3("pub", true));
    let out = a.publish(publisher, publish("t", b"q1", QoS::ExactlyOnce, 1));
    let id = out.publish(conn).packet_id.unwrap();
    a.lose(conn);

    let mut b = node(2);
    a.event(claim(2, 2));
    b.event(claim(2, 2));
    pull(&mut a, &mut b, 2);
    let (conn, out) = b.connect_as(v3("x", false), 2);
    let sent = out.publishes(conn);
    assert_eq!(payloads(&sent), vec!["q1"]);
    assert_eq!(sent[0].packet_id, Some(id));
    if complete {
        b.pubrec(conn, id);
        b.pubcomp(conn, id);
    }
    b.lose(conn);
    (a, b, id)
}

/// Simulator `--scenario lost-release`, seed 43: node 1 sent q1 to `x` under packet id `id`,
/// and node 2 pulled the session (its release to node 1 lost) and re-sent q1 under the same
/// id; with `complete`, the client completed it there (and freed the id). Then node 2 cannot
/// be reached, and `x` comes back to node 1, whose fallback lacks node 2's copy: q1, in node
/// 1's window, must not go out at the CONNECT. Returns both nodes, `x`'s connection at node 1,
/// what it got there and q1's packet id.
pub(super) fn sent_at_both_then_back(complete: bool) -> (Harness, Harness, ConnId, Out, PacketId) {
    let (mut a, mut b, id) = sent_at_both(complete);

    resume_at_node1_without_node2(&mut a, &mut b, vec![(filter("t"), qos2_record())]);
    let (conn, out) = a.connect_as(v3("x", false), 3);
    assert!(out.connack(conn).session_present);
    (a, b, conn, out, id)
}

/// `x`'s subscription to `t`, as the registry holds it.
fn qos2_record() -> crate::store::SubscriptionRecord {
    crate::store::SubscriptionRecord {
        options: SubscriptionOptions::new(QoS::ExactlyOnce),
        subscription_id: None,
    }
}

/// Node 1 claims `x` at epoch 3 while node 2 cannot be reached: the takeover's fallback
/// (with the registry's `subscriptions`), lacking node 2's copy of epoch 2.
fn resume_at_node1_without_node2(
    a: &mut Harness,
    b: &mut Harness,
    subscriptions: Vec<(TopicFilter, crate::store::SubscriptionRecord)>,
) {
    a.event(claim(1, 3));
    b.event(claim(1, 3));
    a.event(Event::ImportBegin {
        client: client("x"),
    });
    let mut state = fallback(3, subscriptions);
    state.record.qos2_doubt.lacking = Some(crate::CopyRef {
        node: crate::cluster::NodeId(2),
        epoch: Epoch(2),
    });
    a.event(Event::ImportState {
        client: client("x"),
        export: state,
    });
    a.event(Event::ImportDone {
        client: client("x"),
    });
}

/// Node 2's copy, recovered late at node 1 (its stranded backlog).
fn recover_late(from: &mut Harness, to: &mut Harness) -> Out {
    let export = from
        .broker
        .export_session(&client("x"), Epoch(3))
        .unwrap()
        .unwrap();
    let (page, _) = from.broker.export_queue(&client("x"), None, 10).unwrap();
    to.event(Event::ImportLate {
        client: client("x"),
        epoch: Epoch(3),
        holder: crate::cluster::NodeId(2),
        export: Box::new(export),
        page,
    })
}

/// Seed 43 itself: the client completed q1 at node 2. Re-sent under its freed id, the client
/// would take it as a new message; node 2's state, once recovered, shows it delivered q1.
#[test]
fn an_older_copys_qos2_message_the_newer_copy_completed_goes_out_no_more() {
    let (mut a, mut b, conn, out, id) = sent_at_both_then_back(true);
    assert!(
        out.publishes(conn).is_empty(),
        "q1 waits for node 2's QoS 2 state"
    );
    let out = recover_late(&mut b, &mut a);
    assert!(out.publishes(conn).is_empty(), "node 2 delivered q1");
    // Its exchange ends without a PUBREL: node 2 took the session on from node 1's copy and
    // completed q1 under the same id, which the client may hold for another message since
    // (session 41, seed 19957).
    assert!(out.to(conn).is_empty(), "no stale PUBREL for {id:?}");
    assert!(a.stored_queue("x").is_empty());
    assert!(a.stored_inflight("x").is_empty());
    let out = a.tick_after_millis(crate::broker::delivery::QOS2_STATE_WAIT);
    assert!(out.publishes(conn).is_empty());
}

/// The client did not acknowledge q1 at node 2: node 2's state shows it still in flight, and
/// q1 goes out once, under the id the client may still hold, with DUP = 1.
#[test]
fn an_older_copys_qos2_message_the_newer_copy_still_holds_goes_out_once() {
    let (mut a, mut b, conn, out, id) = sent_at_both_then_back(false);
    assert!(out.publishes(conn).is_empty());
    let out = recover_late(&mut b, &mut a);
    q1_goes_out_once_under(&mut a, &out, conn, id);
}

/// Node 2 never comes back: q1 goes out when the wait for its state ends (exactly once is
/// then not promised; the message is not lost).
#[test]
fn an_older_copys_held_qos2_message_goes_out_when_the_wait_ends() {
    let (mut a, _b, conn, out, id) = sent_at_both_then_back(false);
    assert!(out.publishes(conn).is_empty());
    let out = a.tick_after_millis(crate::broker::delivery::QOS2_STATE_WAIT);
    let sent = out.publishes(conn);
    assert_eq!(payloads(&sent), vec!["q1"]);
    assert_eq!((sent[0].packet_id, sent[0].dup), (Some(id), true));
}

/// Simulator `--scenario lost-release`, seed 269: node 2 sent q1 (pulled from node 1's queue,
/// the release lost) under its packet id, unacknowledged. Back at node 1 while node 2 cannot be
/// reached, node 1's copy still has q1 queued; when node 2's copy is recovered late, q1 goes
/// out once, from that copy's window under the id the client may hold — not from node 1's
/// queue under a new id, which the client would take as another message.
#[test]
fn a_message_queued_here_and_sent_by_the_late_copy_goes_out_under_that_copys_id() {
    let (mut a, mut b) = pulled_with_queued(&[b"q1"]);
    let (conn, out) = b.connect_as(v3("x", false), 2);
    let id = out.publish(conn).packet_id.unwrap();
    b.lose(conn);
    resume_at_node1_without_node2(&mut a, &mut b, vec![(filter("t"), qos2_record())]);
    let (conn, out) = a.connect_as(v3("x", false), 3);
    assert!(
        out.publishes(conn).is_empty(),
        "q1 waits for node 2's QoS 2 state"
    );
    let out = recover_late(&mut b, &mut a);
    q1_goes_out_once_under(&mut a, &out, conn, id);
}

/// `out` sends `x` q1 once, under `id` with DUP = 1; once the client completes it, nothing of
/// it is left at `a`.
fn q1_goes_out_once_under(a: &mut Harness, out: &Out, conn: ConnId, id: PacketId) {
    let sent = out.publishes(conn);
    assert_eq!(payloads(&sent), vec!["q1"]);
    assert_eq!((sent[0].packet_id, sent[0].dup), (Some(id), true));
    a.pubrec(conn, id);
    a.pubcomp(conn, id);
    assert!(a.stored_queue("x").is_empty() && a.stored_inflight("x").is_empty());
}

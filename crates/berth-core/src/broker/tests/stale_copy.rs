//! A copy of a session that was pulled, its release lost (its node restarted before the
//! release reached it), meets the session again when the client comes back to its node: what
//! the session took since is not taken a second time.

use super::stranded::{claim, node};
use super::*;
use crate::ids::Epoch;

/// Simulator seed 1994: node 1 holds `x` offline with QoS 2 messages q1, q2 queued; node 2
/// pulls it (epoch 2) and delivers both, the client completes q1 and leaves q2 unacknowledged;
/// node 1 never got the release. Back on node 1 (epoch 3), the imported window re-sends q2;
/// the stale queue here holds q1 and q2 too, and neither goes out again.
#[test]
fn a_stale_copys_queue_does_not_deliver_what_the_session_took_since() {
    let mut a = node(1);
    let conn = a.connect_ok(v3("x", false));
    a.subscribe(conn, subscribe(1, "t", QoS::ExactlyOnce));
    a.lose(conn);
    let publisher = a.connect_ok(v3("pub", true));
    a.publish(publisher, publish("t", b"q1", QoS::ExactlyOnce, 1));
    a.publish(publisher, publish("t", b"q2", QoS::ExactlyOnce, 2));
    assert_eq!(a.stored_queue("x"), vec!["q1", "q2"]);

    // Node 2 pulls the session whole.
    let mut b = node(2);
    a.event(claim(2, 2));
    b.event(claim(2, 2));
    b.event(Event::ImportBegin {
        client: client("x"),
    });
    let export = a
        .broker
        .export_session(&client("x"), Epoch(2))
        .unwrap()
        .unwrap();
    let (page, _) = a.broker.export_queue(&client("x"), None, 10).unwrap();
    b.event(Event::ImportState {
        client: client("x"),
        export: Box::new(export),
    });
    b.event(Event::ImportQueue {
        client: client("x"),
        page,
    });
    b.event(Event::ImportDone {
        client: client("x"),
    });
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
    a.event(Event::ImportDone {
        client: client("x"),
    });
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
    let mut a = node(1);
    let conn = a.connect_ok(v3("x", false));
    a.subscribe(conn, subscribe(1, "t", QoS::ExactlyOnce));
    a.lose(conn);
    let publisher = a.connect_ok(v3("pub", true));
    a.publish(publisher, publish("t", b"q1", QoS::ExactlyOnce, 1));

    let mut b = node(2);
    a.event(claim(2, 2));
    b.event(claim(2, 2));
    let pull = |from: &mut Harness, to: &mut Harness, epoch: u64| {
        to.event(Event::ImportBegin {
            client: client("x"),
        });
        let mut export = from
            .broker
            .export_session(&client("x"), Epoch(epoch))
            .unwrap()
            .unwrap();
        export.record.epoch = Epoch(epoch);
        let (page, _) = from.broker.export_queue(&client("x"), None, 10).unwrap();
        to.event(Event::ImportState {
            client: client("x"),
            export: Box::new(export),
        });
        to.event(Event::ImportQueue {
            client: client("x"),
            page,
        });
        to.event(Event::ImportDone {
            client: client("x"),
        });
    };
    pull(&mut a, &mut b, 2);
    // The client does not come to node 2; the session goes back to node 1.
    a.event(claim(1, 3));
    b.event(claim(1, 3));
    pull(&mut b, &mut a, 3);
    let (conn, out) = a.connect_as(v3("x", false), 3);
    assert_eq!(payloads(&out.publishes(conn)), vec!["q1"]);
}
